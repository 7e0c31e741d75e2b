"""Optuna sweeps under an equal, recorded budget: prune, resume, share a study, finalise.

One study per (benchmark, model, budget), named deterministically, so re-running the same
command resumes it and several workers (``m6bench worker``) can share it through an RDB
storage.  Every trial is a run recorded in the ledger (kind ``trial``); the best trial's
config is re-run on test with several seeds (kind ``final``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from m6bench.errors import ConfigError, M6BenchError
from m6bench.registry.catalog import Catalog, load_catalog
from m6bench.runs.config import config_hash, resolve_config
from m6bench.runs.prepare import benchmark_version
from m6bench.runs.run import RunFailed, RunPlan, RunRequest, default_ledger, execute, plan_run
from m6bench_leaderboard import append_record, read_ledger, redact_text

PRUNERS = ("median", "hyperband", "none")
HEARTBEAT_SECONDS = 5
STALE_AFTER_BEATS = 3  # heartbeats a running trial may miss before it is failed and retried
WAIT_SECONDS = 1.0
MAX_ROUNDS = 100_000  # bounds the wait for other workers' trials (each round <= 1 wait)
# A trial that failed for a reason of its own (not a dead worker) carries this user attribute.
ERROR_ATTR = "m6bench_error"
# Trial 0 runs the recipe's defaults as they are, without asking the search space: defaults
# need not be points of it (weight decay 0 outside a log range, a list built from a choice).
DEFAULTS_ATTR = "m6bench_defaults"
# The config keys a trial set (fixed ones and sampled ones): Optuna's params are the search
# space's own names and values (a width from which a layer list is built), not config keys.
OVERRIDES_ATTR = "m6bench_overrides"
# A sampled config the study already evaluated (or is evaluating) is not run again: its trial
# is failed with this attribute (no error attribute, so it does not count against the
# budget, and it has no ledger record) and the sampler asked again.
DUPLICATE_ATTR = "m6bench_duplicate"
# Samples in a row that repeat an evaluated config before the space is taken as exhausted.
MAX_DUPLICATES = 20
SKIPPED_ATTR = "m6bench_skipped"


@dataclass(frozen=True)
class SweepSpec:
    """What defines a study: who, where, and the budget every model gets."""

    plugin: str
    model: str
    benchmark: str
    trials: int | None
    timeout: float | None
    pruner: str = "median"
    sampler_seed: int = 0
    trial_seed: int = 0
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> dict[str, Any]:
        return {"trials": self.trials, "timeout_s": self.timeout, "sampler": "tpe",
                "sampler_seed": self.sampler_seed, "pruner": self.pruner}

    def study_name(self, benchmark_version: str) -> str:
        budget = f"t{self.trials}" if self.trials else "t-"
        if self.timeout:
            budget += f"s{int(self.timeout)}"
        return f"{self.plugin}.{self.model}@{self.benchmark}-{benchmark_version}:{budget}"


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


def default_storage(ledger: Path) -> str:
    path = ledger.parent / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


class _HeartbeatFromTheStart(optuna.storages.RDBStorage):
    """Records a trial's first heartbeat the moment it starts running.

    Optuna starts a trial's heartbeat thread only after ``study.ask`` has created the trial
    and the sampler has run, and it never counts a running trial without a heartbeat as
    stale: a worker killed in between left a running trial that no one retried, and every
    resumption waited on it for good.  The private ``_create_new_trial`` is the one hooked
    because Optuna's storage cache calls it directly (a test pins this on each Optuna).
    """

    def _create_new_trial(self, study_id: int,
                          template_trial: optuna.trial.FrozenTrial | None = None,
                          ) -> optuna.trial.FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self.record_heartbeat(trial._trial_id)
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        # a waiting (enqueued or retried) trial starts running here, not in create_new_trial
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:
            self.record_heartbeat(trial_id)
        return changed


def resumed_sampler_seed(seed: int, trials_in_study: int) -> int:
    """The TPE seed of a process opening a study that already holds ``trials_in_study`` trials.

    A fresh study samples with ``seed`` itself.  A resumed one must not replay the stream its
    first process sampled (those configs are finished): its seed is derived from ``seed`` and
    the study's size, so it differs from every earlier process's and is still deterministic
    given the study's state.
    """
    if trials_in_study == 0:
        return seed
    digest = hashlib.sha256(f"m6bench-sampler:{seed}:{trials_in_study}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@contextlib.contextmanager
def _experimental_features() -> Iterator[None]:
    """Heartbeats and stale-trial retry are what resumption rests on; Optuna labels them
    experimental, and its warning says nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats: a dead worker's running trial is failed and retried."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several processes may share one SQLite file: wait for its lock instead of failing
        engine_kwargs = {"connect_args": {"timeout": 60}}

    def open_storage() -> optuna.storages.RDBStorage:
        with _experimental_features():
            return _HeartbeatFromTheStart(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=HEARTBEAT_SECONDS * STALE_AFTER_BEATS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=3
                ),
            )

    try:
        return open_storage()
    except sqlalchemy.exc.IntegrityError:
        # Two processes opened a fresh database at once and both wrote its schema version:
        # the other one won, so the schema is complete and opening it again reads it.
        return open_storage()


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    # Models learn at different speeds early on: judging before ~10 epochs prunes slow
    # starters that end best, so both pruners wait that long.
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=10, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"Unknown pruner {name!r}; use one of {', '.join(PRUNERS)}.")


def finished_counts(study: optuna.Study) -> dict[str, int]:
    """Trials that count against the budget, and the failed ones among them.

    A trial failed because its worker died (heartbeat) or was interrupted has no error
    attribute: it does not count, and its parameters are retried.
    """
    return _count_trials(study.get_trials(deepcopy=False))


def _count_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif trial.state == TrialState.PRUNED:
            counts["pruned"] += 1
        elif trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs:
            counts["failed"] += 1
        elif trial.state == TrialState.RUNNING:
            counts["running"] += 1
    counts["finished"] = counts["complete"] + counts["pruned"] + counts["failed"]
    return counts


class _Interruption:
    """Ctrl-C (SIGINT) during a sweep, remembered as well as raised.

    Python raises ``KeyboardInterrupt`` in whatever code runs when the signal lands; inside
    a finaliser (the garbage collection Optuna runs after each trial) it is printed as
    "Exception ignored" and lost, and the sweep would run on to its budget.  So the handler
    also sets a flag, which the objective checks at its start and every epoch end and the
    optimiser after every trial.

    The handler raises only while the objective runs (:meth:`raising`).  Between trials
    Optuna starts each trial's heartbeat thread; a ``KeyboardInterrupt`` raised inside that
    start left the thread beating for good, and the process hung at exit with its trial
    running.  There the flag alone stops the sweep, at the next trial's start."""

    def __init__(self) -> None:
        self.requested = False
        self.armed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.armed:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Inside: SIGINT raises at once (and a flag set before raises on entry)."""
        self.armed = True
        try:
            self.check()
            yield
        finally:
            self.armed = False

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt("the sweep was interrupted (SIGINT)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Interruption]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers belong to the main thread
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class _Objective:
    """One trial = one recorded run with the trial's sampled config."""

    def __init__(self, spec: SweepSpec, plan: RunPlan, study_name: str,
                 report: Callable[[str], None], interruption: _Interruption) -> None:
        self.interruption = interruption
        self.spec = spec
        self.plan = plan
        self.study_name = study_name
        self.report = report
        self.metric = plan.benchmark.valid_metric if "ranking" in plan.tasks else "rmse"
        self.duplicates_in_a_row = 0
        self.exhausted: str | None = None  # why the search space is taken as exhausted

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            with self.interruption.raising():
                return self._trial(trial)
        except M6BenchError as exc:
            # an error of the trial's own (bad data, an unwritable ledger) counts as its
            # failure; only a dead worker's or interrupted trial goes without this attribute
            if ERROR_ATTR not in trial.user_attrs:
                trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}")
            raise

    def _trial(self, trial: optuna.Trial) -> float:
        self._check_budget(trial)
        if self.plan.model_spec.search_space is None or trial.user_attrs.get(DEFAULTS_ATTR):
            sampled: dict[str, Any] = {}
        else:
            sampled = dict(self.plan.model_spec.search_space(trial))
        overrides = {**self.spec.overrides, **sampled}
        try:
            config = resolve_config(self.plan.model_spec.defaults, overrides=overrides,
                                    model_name=self.plan.model_name,
                                    choices=self.plan.model_spec.choices)
        except ConfigError as exc:
            trial.set_user_attr(ERROR_ATTR, f"ConfigError: {exc}")
            raise
        trial.set_user_attr("config", config)
        self._check_duplicate(trial, config, sampled=bool(sampled))
        request = replace(self.plan.request, overrides=overrides, kind="trial",
                          sweep_id=self.study_name, seed=self.spec.trial_seed)
        plan = replace(self.plan, request=request, config=config)
        trial.set_user_attr(OVERRIDES_ATTR, overrides)

        def on_epoch_end(epoch: int, metrics: Mapping[str, float]) -> None:
            self.interruption.check()
            value = metrics.get(f"valid/{self.metric}")
            if value is None or not math.isfinite(value):
                return
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} ({self.metric}={value:.4f})")

        try:
            record = execute(plan, on_epoch_end=on_epoch_end,
                             extra={"sweep": self._sweep_info(trial)})
        except RunFailed as exc:
            trial.set_user_attr(ERROR_ATTR, exc.record.get("error") or str(exc))
            trial.set_user_attr("run_id", exc.record["run_id"])
            raise
        trial.set_user_attr("run_id", record["run_id"])
        value = record["metrics"]["valid"].get(self.metric)
        if value is None:
            trial.set_user_attr(ERROR_ATTR, f"the run reported no valid {self.metric}")
            raise M6BenchError(f"trial {trial.number} reported no validation {self.metric}")
        return float(value)

    def _check_duplicate(self, trial: optuna.Trial, config: Mapping[str, Any], *,
                         sampled: bool) -> None:
        """Refuse a config the study already evaluated, or another trial is running.

        Configs are compared resolved (what the run would train), against every trial that
        counts as finished and every other running one.  A trial sets its config before it
        reads the others', so of two workers sampling the same config at once at least one
        gives way (both may; they then sample again).  The refused trial fails without an
        error attribute: it takes no budget and writes no record.
        """
        digest = config_hash(dict(config))
        for other in trial.study.get_trials(deepcopy=False):
            if other.number == trial.number or "config" not in other.user_attrs:
                continue
            counted = (other.state in (TrialState.COMPLETE, TrialState.PRUNED,
                                       TrialState.RUNNING)
                       or (other.state == TrialState.FAIL and ERROR_ATTR in other.user_attrs))
            if counted and config_hash(dict(other.user_attrs["config"])) == digest:
                break
        else:
            self.duplicates_in_a_row = 0
            return
        reason = f"same config as trial {other.number} ({other.state.name.lower()})"
        trial.set_user_attr(DUPLICATE_ATTR, reason)
        self.duplicates_in_a_row += 1
        if not sampled and not trial.user_attrs.get(DEFAULTS_ATTR):
            self.exhausted = ("the model's search space sampled no parameter, so every trial "
                              "would run the same config")
        elif self.duplicates_in_a_row >= MAX_DUPLICATES:
            self.exhausted = (f"{MAX_DUPLICATES} samples in a row repeated configs the study "
                              "already evaluated")
        if self.exhausted:
            trial.study.stop()
        raise _Duplicate(f"trial {trial.number}: {reason}")

    def _check_budget(self, trial: optuna.Trial) -> None:
        """Give way when finished trials plus older running ones already fill the budget.

        Trial numbers are assigned atomically by the storage, so of two workers racing for
        the last slot exactly one (the lower number) runs.  Both counts come from one read of
        the study: from two, a trial finishing in between would be in neither, and this trial
        would run one past the budget.
        """
        if self.spec.trials is None:
            return
        study = trial.study
        trials = study.get_trials(deepcopy=False)
        older_running = sum(1 for t in trials
                            if t.state == TrialState.RUNNING and t.number < trial.number)
        if _count_trials(trials)["finished"] + older_running >= self.spec.trials:
            trial.set_user_attr(SKIPPED_ATTR, "budget filled by other workers' trials")
            study.stop()
            raise _BudgetReached(f"trial {trial.number}: budget of {self.spec.trials} filled")

    def _sweep_info(self, trial: optuna.Trial) -> dict[str, Any]:
        return {"id": self.study_name, "trial": trial.number, "budget": self.spec.budget}


def _direction(plan: RunPlan) -> str:
    return "maximize" if "ranking" in plan.tasks else "minimize"


def _progress_callback(report: Callable[[str], None], total: int | None,
                       report_failure: Callable[[str], None] | None = None):
    """One line per trial; a failed trial's names its error (its traceback is in its record)."""
    report_failure = report_failure or report

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        for attr in (DUPLICATE_ATTR, SKIPPED_ATTR):
            if attr in trial.user_attrs:
                report(f"trial {trial.number}: not run, {trial.user_attrs[attr]}")
                return
        counts = finished_counts(study)
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "-"
        tally = (f"best {best} | finished {counts['finished']}/{total or '-'} | pruned "
                 f"{counts['pruned']} | failed {counts['failed']}")
        if trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs:
            error = str(trial.user_attrs[ERROR_ATTR]).strip().splitlines() or ["?"]
            report_failure(f"trial {trial.number} failed: {error[0]} | {tally}")
            return
        value = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        report(f"trial {trial.number}: {value} | {tally}")
    return callback


# Optuna logs every failed trial as a warning with its traceback; the sweep reports each in one
# line (the progress callback) and its run's record keeps the traceback.
_OPTUNA_TRIAL_FAILED = re.compile(r"Trial \d+ failed with ")


class _NoTrialFailureLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _OPTUNA_TRIAL_FAILED.match(record.getMessage())


@contextlib.contextmanager
def _quiet_trial_failures() -> Iterator[None]:
    logger = logging.getLogger("optuna.study._optimize")
    quiet = _NoTrialFailureLogs()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _budget_left(study: optuna.Study, spec: SweepSpec) -> tuple[int | None, float | None]:
    counts = finished_counts(study)
    trials_left = None if spec.trials is None else max(0, spec.trials - counts["finished"])
    time_left = None
    if spec.timeout is not None:
        spent = sum((t.duration.total_seconds() for t in study.get_trials(deepcopy=False)
                     if t.duration is not None), 0.0)
        time_left = max(0.0, spec.timeout - spent)
    return trials_left, time_left


class _StopAtBudget:
    """Stops a worker once the shared study has its budget of finished trials."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trials_left, time_left = _budget_left(study, self.spec)
        if trials_left == 0 or time_left == 0:
            study.stop()


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
        f"{ledger_of(ledger)} (kind trial, sweep_id {result.study_name}). Fix the cause and "
        "sweep again under a new --study NAME: re-running this command resumes this study, "
        "whose failed trials count against its budget."
    )


class _BudgetReached(Exception):
    """Other workers' running trials already fill the budget: this trial is not run."""


class _Duplicate(Exception):
    """The trial's config was evaluated already in the study: it is not run again."""


def optimize(study: optuna.Study, spec: SweepSpec, plan: RunPlan,
             report: Callable[[str], None],
             report_failure: Callable[[str], None] | None = None) -> None:
    """Run trials until the study's budget is used (shared with any other workers).

    Trials other workers are running count towards the budget, so the study ends with
    exactly the requested number of finished trials; while they run this worker waits, and
    a dead worker's trial turns stale after the heartbeat grace period and is retried.  No
    config is evaluated twice in a study: a repeated sample is refused and the sampler asked
    again, and the sweep stops early when the search space looks exhausted.
    """
    with _experimental_features():
        _optimize(study, spec, plan, report, report_failure)


def _optimize(study: optuna.Study, spec: SweepSpec, plan: RunPlan,
              report: Callable[[str], None],
              report_failure: Callable[[str], None] | None) -> None:
    interruption = _Interruption()
    objective = _Objective(spec, plan, study.study_name, report, interruption)
    waiting_reported = False
    with interruption.installed(), _quiet_trial_failures():
        for _ in range(MAX_ROUNDS):
            interruption.check()
            optuna.storages.fail_stale_trials(study)
            trials_left, time_left = _budget_left(study, spec)
            if trials_left == 0 or time_left == 0:
                return
            running = finished_counts(study)["running"]
            if trials_left is not None and running >= trials_left:
                if not waiting_reported:
                    report(f"waiting for {running} trial(s) running elsewhere; a dead "
                           f"worker's trial is retried "
                           f"{HEARTBEAT_SECONDS * STALE_AFTER_BEATS}s after its "
                           "last heartbeat")
                    waiting_reported = True
                time.sleep(WAIT_SECONDS)
                continue
            study.optimize(
                objective,
                n_trials=None if trials_left is None else trials_left - running,
                timeout=time_left,
                catch=(M6BenchError, ConfigError, _BudgetReached, _Duplicate),
                callbacks=[_StopAtBudget(spec),
                           _progress_callback(report, spec.trials, report_failure),
                           lambda study, trial: interruption.check()],
                gc_after_trial=True,
            )
            interruption.check()
            if objective.exhausted:
                counts = finished_counts(study)
                report(f"the search space looks exhausted: {objective.exhausted}; the study "
                       f"stops at {counts['finished']} finished trials"
                       + (f" of its budget of {spec.trials}" if spec.trials else ""))
                return
            if trials_left is None:
                return  # a time budget: optimize ran until it was spent


def _open_study(spec: SweepSpec, plan: RunPlan, storage: str, study_name: str) -> optuna.Study:
    study = optuna.create_study(
        study_name=study_name,
        storage=make_storage(storage),
        sampler=optuna.samplers.TPESampler(seed=spec.sampler_seed),
        pruner=make_pruner(spec.pruner),
        direction=_direction(plan),
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
             "metric": plan.benchmark.valid_metric if "ranking" in plan.tasks else "rmse"}
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
) -> SweepResult:
    """Tune ``plugin``'s model with Optuna under a budget, then re-run the best on test.

    :param trials: finished trials the study should end with (complete, pruned or failed),
        each a distinct config; fewer when the search space runs out of configs.
    :param timeout: wall seconds of trials the study may spend (over all resumptions).
    :param seeds: seeds of the final test runs of the best config (0 skips them).
    :param storage: an Optuna RDB URL; default a SQLite file beside the ledger.
    :param report: gets a line per trial and event; ``report_failure`` (default ``report``)
        the line of each failed trial: its number, error type and message.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if trials is None and timeout is None:
        raise ConfigError("A sweep needs a budget: --trials N, --timeout SECONDS, or both.")
    if pruner not in PRUNERS:
        raise ConfigError(f"Unknown pruner {pruner!r}; use one of {', '.join(PRUNERS)}.")
    catalog = catalog or load_catalog()
    request = RunRequest(plugin=plugin, model=model, dataset=dataset, benchmark=benchmark,
                         dataset_options=dict(dataset_options or {}),
                         overrides=dict(overrides or {}), device=device, ledger=ledger)
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
    optimize(study, spec, plan, report, report_failure)
    report(f"sweep {study_name}: {time.perf_counter() - started:.1f}s")
    result = finalise(study, spec, plan, seeds=seeds, report=report)
    result.storage = storage
    return result


def finalise(study: optuna.Study, spec: SweepSpec, plan: RunPlan, *, seeds: int,
             report: Callable[[str], None]) -> SweepResult:
    """Re-run the best trial's config on test with ``seeds`` seeds (skipping recorded ones)."""
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
                          sweep_id=study.study_name, seed=seed)
        final_plan = replace(plan, request=request, config=config)
        info = {"id": study.study_name, "trial": best.number, "budget": spec.budget,
                "best_valid": best.value}
        if seed == spec.trial_seed:
            record = _final_from_best_trial(plan, records, best, config, seed, info)
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
    finals = [
        r for r in read_ledger(plan.ledger).records
        if r.get("kind") == "final" and r.get("sweep_id") == study.study_name
        and r.get("status") == "ok"
    ]
    return SweepResult(study.study_name, "", best.value, best_config or config, default_value,
                       counts, finals, study)


def _final_from_best_trial(plan: RunPlan, records: Sequence[Mapping[str, Any]],
                           best: optuna.trial.FrozenTrial, config: Mapping[str, Any],
                           seed: int, info: Mapping[str, Any]) -> dict[str, Any] | None:
    """The final run the best trial already is, recorded as a final; None when it is not.

    A trial trains on the same cut with the same config and seed as this final and is
    evaluated on test as well, so training it again would repeat the run (bit for bit on a
    CPU).  The copy gets its own run_id, kind ``final`` and ``reuses`` naming the trial's run;
    on a board with one trial per model this halves the cost of a row.
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
    append_record(plan.ledger, final)
    return final


def join_study(storage: str, study_name: str, *, device: str = "auto",
               ledger: str | os.PathLike[str] | None = None,
               report: Callable[[str], None] = lambda line: None,
               report_failure: Callable[[str], None] | None = None) -> SweepResult:
    """A worker: load a shared study by name and run trials until its budget is used."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summaries = optuna.study.get_all_study_summaries(make_storage(storage),
                                                         include_best_trial=False)
    except Exception as exc:
        raise ConfigError(redact_text(f"Cannot open the Optuna storage {storage!r}: {exc}. "
                                      "Check the URL, the server and the credentials.")
                          ) from exc
    names = [s.study_name for s in summaries]
    if study_name not in names:
        from m6bench.errors import did_you_mean

        raise ConfigError(did_you_mean(study_name, names, what="study") +
                          " Start it with `m6bench sweep ... --storage URL` first.")
    study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
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


def ledger_of(ledger: str | os.PathLike[str] | None) -> Path:
    return Path(ledger) if ledger else default_ledger()
