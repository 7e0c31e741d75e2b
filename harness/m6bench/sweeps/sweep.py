"""Optuna sweeps under an equal, recorded budget: prune, resume, share a study, finalise.

One study per (benchmark, model, budget), named deterministically, so re-running the same
command resumes it and several workers (``m6bench worker``) can share it through an RDB
storage.  Every trial is a run recorded in the ledger (kind ``trial``); the best trial's
config is re-run on test with several seeds (kind ``final``).
"""


from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import TrialState

from m6bench.errors import ConfigError, M6BenchError
from m6bench.registry.catalog import Catalog, load_catalog
from m6bench.runs.artifacts import adopt_staged, discard_staged, require_safetensors
from m6bench.runs.config import config_hash, resolve_config
from m6bench.runs.ledger import ledger_path
from m6bench.runs.prepare import benchmark_version
from m6bench.runs.run import RunFailed, RunPlan, RunRequest, execute, plan_run
from m6bench.sweeps.objective import direction, objective_metric
from m6bench.sweeps.optimize import optimize
from m6bench.sweeps.spec import DEFAULTS_ATTR, ERROR_ATTR, OVERRIDES_ATTR, SweepSpec
from m6bench.sweeps.storage import (
    PRUNERS,
    default_storage,
    finished_counts,
    make_pruner,
    make_storage,
    resumed_sampler_seed,
)
from m6bench.sweeps.workers import run_workers, worker_devices
from m6bench_leaderboard import append_record, read_ledger, redact_text


@dataclass
class SweepResult:
    study_name: str
    storage: str
    best_value: float | None
    best_config: dict[str, Any]
    default_value: float | None
    counts: dict[str, int]
    finals: list[dict[str, Any]]
    study: optuna.Study



class SweepFailed(M6BenchError):
    """A study ended with no complete trial: no best config, nothing to finalise."""

    exit_code = 1  # like a failed run; bad input stays 2


def check_complete(result: SweepResult, ledger: str | os.PathLike[str] | None) -> None:
    """Raise :class:`SweepFailed` when ``result``'s study has no complete trial."""
    counts = result.counts
    if counts["complete"]:
        return
    failed = [t for t in result.study.get_trials(deepcopy=False)
              if t.state == TrialState.FAIL and ERROR_ATTR in t.user_attrs]
    last = ""
    if failed:
        error = str(failed[-1].user_attrs[ERROR_ATTR]).strip().splitlines() or ["?"]
        last = f" The last failure, trial {failed[-1].number}: {error[0]}."
    raise SweepFailed(
        f"Study {result.study_name} ended with no complete trial ({counts['failed']} "
        f"failed, {counts['pruned']} pruned), so it has no best config and no final run."
        f"{last} Each failed trial's error and traceback are in its record in the ledger "
        f"{ledger_path(ledger)} (kind trial, sweep_id {result.study_name}). Fix the cause and "
        "sweep again under a new --study NAME: re-running this command resumes this study, "
        "whose failed trials count against its budget."
    )



# what a sweep writes on its study, and what a worker needs before it can join
STUDY_SPEC_ATTRS = ("plugin", "model", "benchmark", "trials", "timeout", "pruner",
                    "sampler_seed", "trial_seed", "overrides", "benchmark_version", "dataset",
                    "dataset_options", "metric")
STUDY_POLL_SECONDS = 0.5


def _wait_for_study(storage: str, study_name: str, wait: float,
                    report: Callable[[str], None]) -> optuna.Study:
    """The shared study once it exists with its whole spec (the sweep writes the spec's
    attributes just after creating it), polling for up to ``wait`` seconds."""
    deadline = time.monotonic() + max(0.0, wait)
    waiting_reported = False
    while True:
        try:
            summaries = optuna.study.get_all_study_summaries(make_storage(storage),
                                                             include_best_trial=False)
        except Exception as exc:
            raise ConfigError(redact_text(f"Cannot open the Optuna storage {storage!r}: {exc}. "
                                          "Check the URL, the server and the credentials.")
                              ) from exc
        names = [s.study_name for s in summaries]
        if study_name in names:
            study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
            if all(key in study.user_attrs for key in STUDY_SPEC_ATTRS):
                return study
        if time.monotonic() >= deadline:
            break
        if not waiting_reported:
            report(f"waiting up to {wait:g} s for study {study_name} to be created")
            waiting_reported = True
        time.sleep(STUDY_POLL_SECONDS)
    if study_name in names:
        raise ConfigError(f"Study {study_name} exists but its sweep has not finished writing "
                          "its spec. Pass --wait SECONDS to wait for it.")
    from m6bench.errors import did_you_mean

    raise ConfigError(did_you_mean(study_name, names, what="study") +
                      " Start it with `m6bench sweep ... --storage URL` first, or pass "
                      "--wait SECONDS to wait for it.")


def _open_study(spec: SweepSpec, plan: RunPlan, storage: str, study_name: str) -> optuna.Study:
    study = optuna.create_study(
        study_name=study_name,
        storage=make_storage(storage),
        sampler=optuna.samplers.TPESampler(seed=spec.sampler_seed),
        pruner=make_pruner(spec.pruner),
        direction=direction(plan),
        load_if_exists=True,
    )
    existing = len(study.get_trials(deepcopy=False))
    if existing:  # resumed: sample a stream of its own, not the first process's again
        study.sampler = optuna.samplers.TPESampler(
            seed=resumed_sampler_seed(spec.sampler_seed, existing))
    attrs = {"plugin": spec.plugin, "model": spec.model, "benchmark": spec.benchmark,
             "trials": spec.trials, "timeout": spec.timeout, "pruner": spec.pruner,
             "sampler_seed": spec.sampler_seed, "trial_seed": spec.trial_seed,
             "overrides": dict(spec.overrides),
             "benchmark_version": benchmark_version(plan.catalog, plan.benchmark),
             "dataset": plan.request.dataset,
             "dataset_options": dict(plan.request.dataset_options),
             "metric": objective_metric(plan)}
    for key, value in attrs.items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    return study


def sweep(
    plugin: str,
    *,
    model: str | None = None,
    benchmark: str | None = None,
    dataset: str | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    trials: int | None = 20,
    timeout: float | None = None,
    seeds: int = 5,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: str = "median",
    sampler_seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    ledger: str | os.PathLike[str] | None = None,
    catalog: Catalog | None = None,
    report: Callable[[str], None] = lambda line: None,
    report_failure: Callable[[str], None] | None = None,
    save_finals: bool = True,
    workers: int = 1,
) -> SweepResult:
    """Tune ``plugin``'s model with Optuna under a budget, then re-run the best on test.

    :param trials: finished trials the study should end with (complete, pruned or failed),
        each a distinct config; fewer when the search space runs out of configs.
    :param timeout: wall seconds of trials the study may spend (over all resumptions).
    :param seeds: seeds of the final test runs of the best config (0 skips them).
    :param storage: an Optuna RDB URL; default a SQLite file beside the ledger.
    :param report: gets a line per trial and event; ``report_failure`` (default ``report``)
        the line of each failed trial: its number, error type and message.
    :param save_finals: store each final run's trained model beside the ledger (trials
        stage theirs until the sweep finalises; no trial record names one).
    :param workers: trials run in this many worker processes sharing the study (GPUs in
        turn where there are several); 1 runs them in this process.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if trials is None and timeout is None:
        raise ConfigError("A sweep needs a budget: --trials N, --timeout SECONDS, or both.")
    if pruner not in PRUNERS:
        raise ConfigError(f"Unknown pruner {pruner!r}; use one of {', '.join(PRUNERS)}.")
    if save_finals:
        require_safetensors()  # before any trial trains, not when the first one saves
    catalog = catalog or load_catalog()
    # with save, trials stage their models, so the final that reuses the best trial's run
    # has its model without training again
    request = RunRequest(plugin=plugin, model=model, dataset=dataset, benchmark=benchmark,
                         dataset_options=dict(dataset_options or {}),
                         overrides=dict(overrides or {}), device=device, ledger=ledger,
                         save=save_finals)
    plan = plan_run(request, catalog)
    spec = SweepSpec(plugin=plugin, model=plan.model_name, benchmark=plan.benchmark.name,
                     trials=trials, timeout=timeout, pruner=pruner, sampler_seed=sampler_seed,
                     overrides=dict(overrides or {}))
    study_name = study_name or spec.study_name(benchmark_version(plan.catalog, plan.benchmark))
    storage = storage or default_storage(plan.ledger)
    study = _open_study(spec, plan, storage, study_name)
    if not study.get_trials(deepcopy=False) and plan.model_spec.search_space is not None:
        # trial 0 is the recipe's defaults, so a sweep can only improve on them
        study.enqueue_trial({}, user_attrs={DEFAULTS_ATTR: True}, skip_if_exists=True)
    started = time.perf_counter()
    if workers > 1:
        run_workers(study, storage, worker_devices(device, workers), plan.ledger, report)
    else:
        optimize(study, spec, plan, report, report_failure)
    report(f"sweep {study_name}: {time.perf_counter() - started:.1f}s")
    result = finalise(study, spec, plan, seeds=seeds, report=report, save=save_finals)
    result.storage = storage
    return result


def finalise(study: optuna.Study, spec: SweepSpec, plan: RunPlan, *, seeds: int,
             report: Callable[[str], None], save: bool = True) -> SweepResult:
    """Re-run the best trial's config on test with ``seeds`` seeds (skipping recorded ones);
    ``save`` stores each final's model (see :mod:`m6bench.runs.artifacts`)."""
    counts = finished_counts(study)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return SweepResult(study.study_name, "", None, {}, None, counts, [], study)
    best = study.best_trial
    best_config = dict(best.user_attrs.get("config", {}))
    default_trials = [t for t in complete if t.number == 0]
    default_value = default_trials[0].value if default_trials else None
    # a study begun before trials kept their overrides has their resolved config
    overrides = dict(best.user_attrs.get(OVERRIDES_ATTR, best_config))
    config = resolve_config(plan.model_spec.defaults, overrides=overrides,
                            model_name=plan.model_name, choices=plan.model_spec.choices)
    records = read_ledger(plan.ledger).records
    done = {
        r["seed"] for r in records
        if r.get("kind") == "final" and r.get("sweep_id") == study.study_name
        and r.get("status") == "ok"
    }
    finals = []
    for seed in range(seeds):
        if seed in done:
            continue
        request = replace(plan.request, overrides=overrides, kind="final",
                          sweep_id=study.study_name, seed=seed, save=save)
        final_plan = replace(plan, request=request, config=config)
        info = {"id": study.study_name, "trial": best.number, "budget": spec.budget,
                "best_valid": best.value}
        if seed == spec.trial_seed:
            record = _final_from_best_trial(plan, records, best, config, seed, info, save=save)
            if record is not None:
                report(f"final seed {seed}: the best trial's own run (same config and seed), "
                       f"test {plan.benchmark.valid_metric} "
                       f"{record['metrics']['test'].get(plan.benchmark.valid_metric)}")
                finals.append(record)
                continue
        try:
            record = execute(final_plan, extra={"sweep": info})
        except RunFailed as exc:
            report(f"final seed {seed} failed: {exc}")
            continue
        report(f"final seed {seed}: test {plan.benchmark.valid_metric} "
               f"{record['metrics']['test'].get(plan.benchmark.valid_metric)}")
        finals.append(record)
    records = read_ledger(plan.ledger).records
    discard_staged(plan.ledger, [r["run_id"] for r in records if r.get("kind") == "trial"
                                 and r.get("sweep_id") == study.study_name])
    finals = [
        r for r in records
        if r.get("kind") == "final" and r.get("sweep_id") == study.study_name
        and r.get("status") == "ok"
    ]
    return SweepResult(study.study_name, "", best.value, best_config or config, default_value,
                       counts, finals, study)


def _final_from_best_trial(plan: RunPlan, records: Sequence[Mapping[str, Any]],
                           best: optuna.trial.FrozenTrial, config: Mapping[str, Any],
                           seed: int, info: Mapping[str, Any],
                           save: bool = False) -> dict[str, Any] | None:
    """The final run the best trial already is, recorded as a final; None when it is not.

    A trial trains on the same cut with the same config and seed as this final and is
    evaluated on test as well, so training it again would repeat the run (bit for bit on a
    CPU).  The copy gets its own run_id, kind ``final`` and ``reuses`` naming the trial's run;
    on a board with one trial per model this halves the cost of a row.  With ``save`` the
    trial's staged model becomes the final's artifact; None when there is none (trained by
    a worker), so the final trains and saves its own.
    """
    run_id = best.user_attrs.get("run_id")
    if not run_id:
        return None
    trial = next((r for r in records if r.get("run_id") == run_id), None)
    if (trial is None or trial.get("status") != "ok" or trial.get("seed") != seed
            or trial.get("config_hash") != config_hash(dict(config))
            or not (trial.get("metrics") or {}).get("test")):
        return None
    final = {**trial, "run_id": uuid.uuid4().hex, "kind": "final", "sweep": dict(info),
             "reuses": run_id}
    if save:
        artifact = adopt_staged(plan.ledger, run_id, final["run_id"])
        if artifact is None:
            return None
        final["artifact"] = artifact
    append_record(plan.ledger, final)
    return final


def join_study(storage: str, study_name: str, *, device: str = "auto",
               ledger: str | os.PathLike[str] | None = None,
               report: Callable[[str], None] = lambda line: None,
               report_failure: Callable[[str], None] | None = None,
               wait: float = 0.0) -> SweepResult:
    """A worker: load a shared study by name and run trials until its budget is used.

    ``wait`` seconds: how long to wait for the study to be created, for workers a scheduler
    starts before (or beside) the ``sweep`` that creates it.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _wait_for_study(storage, study_name, wait, report)
    attrs = study.user_attrs
    attrs = study.user_attrs
    request = RunRequest(plugin=attrs["plugin"], model=attrs["model"],
                         benchmark=None if attrs.get("dataset") else attrs["benchmark"],
                         dataset=attrs.get("dataset"),
                         dataset_options=dict(attrs.get("dataset_options") or {}),
                         overrides=dict(attrs["overrides"]), device=device, ledger=ledger)
    plan = plan_run(request)
    spec = SweepSpec(plugin=attrs["plugin"], model=attrs["model"],
                     benchmark=attrs["benchmark"], trials=attrs["trials"],
                     timeout=attrs["timeout"], pruner=attrs["pruner"],
                     sampler_seed=attrs["sampler_seed"], overrides=dict(attrs["overrides"]))
    study.sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed + os.getpid())
    study.pruner = make_pruner(spec.pruner)
    optimize(study, spec, plan, report, report_failure)
    counts = finished_counts(study)
    best = None
    with contextlib.suppress(ValueError):  # no complete trial yet
        best = study.best_value
    return SweepResult(study_name, storage, best, {}, None, counts, [], study)
