"""One run: resolve, prepare, train, evaluate, record.  The CLI is a thin layer over this."""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m6bench.builtin.benchmarks import DEFAULT_BENCHMARK
from m6bench.data.prepared import PreparedBenchmark
from m6bench.data.specs import BenchmarkSpec
from m6bench.errors import ConfigError, LedgerError, M6BenchError, PluginError
from m6bench.evaluation.evaluator import metric_directions, per_user_values, slices
from m6bench.registry import provenance
from m6bench.registry.catalog import Catalog, load_catalog
from m6bench.runs.config import config_hash, read_config_file, resolve_config
from m6bench.runs.ledger import default_ledger as default_ledger  # scripts read it here
from m6bench.runs.ledger import ledger_path
from m6bench.runs.prepare import benchmark_version, prepare_benchmark
from m6bench.training.loop import TrainOutcome, train_model
from m6bench.training.specs import ModelSpec
from m6bench_leaderboard import SCHEMA_VERSION, RecordError, append_record, redact


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; a named device must exist."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(
            f"--device {device!r} is not a device name; use auto, cpu or cuda:N."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was asked for, but CUDA is not available here; "
                          "use --device cpu or auto.")
    return resolved


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_benchmark(
    catalog: Catalog,
    *,
    benchmark: str | BenchmarkSpec | None = None,
    dataset: str | None = None,
    protocol: str | None = None,
) -> tuple[BenchmarkSpec, str | None]:
    """The benchmark to run and, when the embedded default was chosen, a note saying so."""
    if isinstance(benchmark, BenchmarkSpec):
        return benchmark, None
    if benchmark is not None:
        return catalog.benchmarks.get(benchmark), None
    if dataset is None:
        spec = catalog.benchmarks.get(DEFAULT_BENCHMARK)
        if protocol is not None:
            spec = _with_protocol(catalog, spec, protocol)
        return spec, (f"No --dataset given: using the embedded synthetic default "
                      f"(benchmark {spec.name!r}).")
    if dataset in catalog.benchmarks and catalog.benchmarks.get(dataset).dataset == dataset:
        spec = catalog.benchmarks.get(dataset)
        return (_with_protocol(catalog, spec, protocol) if protocol else spec), None
    name = Path(dataset).name if os.sep in dataset or Path(dataset).exists() else dataset
    spec = BenchmarkSpec(name=name, dataset=dataset, protocol=protocol or "random",
                         tasks=("ranking", "rating"), description=f"ad hoc: {dataset}")
    catalog.protocols.get(spec.protocol)
    return spec, None


def _with_protocol(catalog: Catalog, spec: BenchmarkSpec, protocol: str) -> BenchmarkSpec:
    catalog.protocols.get(protocol)
    if protocol == spec.protocol:
        return spec
    return replace(spec, name=f"{spec.name}/{protocol}", protocol=protocol)


@dataclass
class RunRequest:
    plugin: str
    model: str | None = None
    dataset: str | None = None
    benchmark: str | BenchmarkSpec | None = None
    protocol: str | None = None
    seed: int = 0
    # seeds of the protocol cut and of the model (init, sampling); None: ``seed``, so a
    # board can vary one and hold the other fixed across its final runs
    split_seed: int | None = None
    init_seed: int | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"
    ledger: str | os.PathLike[str] | None = None
    kind: str = "run"
    sweep_id: str | None = None
    command: Sequence[str] | None = None
    save: bool = False  # store the trained model beside the ledger (runs.artifacts)


@dataclass
class RunPlan:
    """A run resolved but not started: everything printed before training."""

    request: RunRequest
    catalog: Catalog
    plugin_name: str
    model_name: str
    model_spec: ModelSpec
    benchmark: BenchmarkSpec
    config: dict[str, Any]
    device: torch.device
    ledger: Path
    note: str | None

    @property
    def tasks(self) -> tuple[str, ...]:
        tasks = tuple(t for t in self.benchmark.tasks if t in self.model_spec.tasks)
        if not tasks:
            raise PluginError(
                f"Model {self.model_name!r} supports tasks {list(self.model_spec.tasks)}, but "
                f"benchmark {self.benchmark.name!r} pins {list(self.benchmark.tasks)}; "
                "choose a benchmark with a task the model supports."
            )
        return tasks


def plan_run(request: RunRequest, catalog: Catalog | None = None) -> RunPlan:
    """Resolve plugin, model, benchmark, config and device; raise on bad input."""
    catalog = catalog or load_catalog()
    model_name, model_spec = catalog.model(request.plugin, request.model)
    benchmark, note = resolve_benchmark(catalog, benchmark=request.benchmark,
                                        dataset=request.dataset, protocol=request.protocol)
    if request.dataset_options:
        # loader options that change the data change the version (through the content)
        benchmark = replace(benchmark, dataset_options={**benchmark.dataset_options,
                                                        **request.dataset_options})
    if model_spec.protocols is not None and benchmark.protocol not in model_spec.protocols:
        raise PluginError(
            f"Model {model_name!r} supports protocols {list(model_spec.protocols)}, not "
            f"{benchmark.protocol!r}; pick one of those with --protocol."
        )
    file_values = read_config_file(request.config_file) if request.config_file else None
    config = resolve_config(model_spec.defaults, file_values=file_values,
                            overrides=request.overrides, model_name=model_name,
                            choices=model_spec.choices)
    return RunPlan(
        request=request, catalog=catalog, plugin_name=request.plugin, model_name=model_name,
        model_spec=model_spec, benchmark=benchmark, config=config,
        device=resolve_device(request.device),
        ledger=ledger_path(request.ledger), note=note,
    )


def load_benchmark(
    benchmark: str | None = None,
    *,
    dataset: str | None = None,
    protocol: str | None = None,
    seed: int = 0,
    split_seed: int | None = None,
    device: str | torch.device = "cpu",
    catalog: Catalog | None = None,
) -> PreparedBenchmark:
    """A benchmark by name (or a dataset's default benchmark, or the embedded default),
    loaded, cut and on ``device`` exactly as ``m6bench run --benchmark/--dataset/--protocol
    --seed`` prepares it: for notebooks, and for scripts that hand m6bench's split to another
    library (:meth:`PreparedBenchmark.export_split`)."""
    catalog = catalog or load_catalog()
    spec, _ = resolve_benchmark(catalog, benchmark=benchmark, dataset=dataset,
                                protocol=protocol)
    return prepare_benchmark(catalog, spec, seed=seed, split_seed=split_seed,
                             device=torch.device(device))


def prepare(plan: RunPlan) -> PreparedBenchmark:
    """The plan's benchmark loaded, cut and on its device (its version known): what
    :func:`execute` runs on; bad data raises here, before anything is recorded."""
    return prepare_benchmark(plan.catalog, plan.benchmark, seed=_init_seed(plan.request),
                             split_seed=_split_seed(plan.request), device=plan.device,
                             dataset_options=plan.request.dataset_options)


def _split_seed(request: RunRequest) -> int:
    return int(request.seed if request.split_seed is None else request.split_seed)


def _init_seed(request: RunRequest) -> int:
    return int(request.seed if request.init_seed is None else request.init_seed)


class RunFailed(M6BenchError):
    """A run started and failed; its record (status failed) is in the ledger."""

    exit_code = 1

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


def execute(
    plan: RunPlan,
    *,
    progress: Any = None,
    on_epoch_end: Callable[[int, Mapping[str, float]], None] | None = None,
    prepared: PreparedBenchmark | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the plan, append its record to the ledger and return the record.

    ``extra`` adds keys to the record (a sweep adds ``sweep``: id, trial, budget).

    A failure after the run started is recorded with status ``failed`` (or ``pruned`` when
    a pruner stopped it) and re-raised as :class:`RunFailed`.
    """
    started = time.perf_counter()
    record = _new_record(plan, extra)
    outcome = TrainOutcome()
    if plan.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(plan.device)
    # bad data is the user's input, not a run failure: it raises before anything is recorded
    bench = prepared if prepared is not None else prepare(plan)
    record["benchmark"]["version"] = bench.version or benchmark_version(
        plan.catalog, plan.benchmark, dataset_options=plan.request.dataset_options)
    try:
        _train_and_evaluate(plan, bench, record, outcome, progress=progress,
                            on_epoch_end=on_epoch_end)
    except BaseException as exc:
        _mark_failed(record, exc)
        _finish(record, plan, bench, outcome, started)
        if isinstance(exc, KeyboardInterrupt) or record["status"] == "pruned":
            raise
        info = plan.catalog.plugins[plan.plugin_name]
        raise RunFailed(
            f"Run {record['run_id']} of {plan.plugin_name}/{plan.model_name} (distribution "
            f"{info.distribution} {info.version}) failed: {record['error']}. The failure is "
            f"recorded in {plan.ledger}.", record) from exc
    _finish(record, plan, bench, outcome, started)
    return record


def _new_record(plan: RunPlan, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The record of a run about to start: what it is, before anything is measured."""
    request = plan.request
    info = plan.catalog.plugins[plan.plugin_name]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "status": "ok",
        "error": None,
        "kind": request.kind,
        "sweep_id": request.sweep_id,
        "benchmark": {"name": plan.benchmark.name, "version": None,  # from the data, later
                      "spec": redact(plan.benchmark.to_dict())},
        "plugin": {"name": info.name, "distribution": info.distribution,
                   "version": info.version},
        "model": plan.model_name,
        "model_info": {"paper": plan.model_spec.paper,
                       "description": plan.model_spec.description},
        "config": plan.config,
        "config_hash": config_hash(plan.config),
        "seed": int(request.seed),
        "split_seed": _split_seed(request),
        "init_seed": _init_seed(request),
        "device": str(plan.device),
        "metrics": {},
        "code": provenance.code_identity(info.code()),
        "command": redact(list(request.command if request.command is not None else sys.argv)),
        "started_at": datetime.now(timezone.utc).isoformat(),
        **dict(extra or {}),
    }


def _train_and_evaluate(
    plan: RunPlan,
    bench: PreparedBenchmark,
    record: dict[str, Any],
    outcome: TrainOutcome,
    *,
    progress: Any,
    on_epoch_end: Callable[[int, Mapping[str, float]], None] | None,
) -> None:
    """Build, train and evaluate the model, filling ``record`` and ``outcome`` as it goes
    (a failure part way leaves what was measured for the failed record)."""
    hook = plan.catalog.hook
    run_id = record["run_id"]
    record["dataset"] = {"name": bench.dataset.name, "fingerprint": bench.dataset.fingerprint,
                         "statistics": bench.dataset.statistics()}
    record["cut"] = {"protocol": bench.split.protocol, "fingerprint": bench.split.fingerprint,
                     "sizes": bench.split.sizes()}
    hook.m6bench_run_start(run_id=run_id, config=plan.config, benchmark=plan.benchmark)
    seed_everything(_init_seed(plan.request))
    model = plan.model_spec.build(bench.train, plan.config).to(plan.device)

    def epoch_end(epoch: int, metrics: Mapping[str, float]) -> None:
        hook.m6bench_epoch_end(run_id=run_id, epoch=epoch, metrics=metrics)
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)

    train_model(model, bench, plan.config, tasks=plan.tasks, on_epoch_end=epoch_end,
                progress=progress, outcome=outcome)
    record["parameters"] = model.parameter_count()
    record["trained_parameters"] = model.trained_parameter_count()
    record["metrics"] = {"valid": _clean(outcome.valid.metrics),
                         "test": _clean(outcome.test.metrics)}
    record["metric_directions"] = metric_directions(bench, record["metrics"])
    record["slices"] = slices(bench, outcome.test)
    record["per_user"] = per_user_values(bench, outcome.test)
    if plan.request.save:
        # imported here: artifacts rebuilds runs through this module
        from m6bench.runs.artifacts import save_artifact

        # a trial's model is only staged (its record names none): its sweep hands the best
        # trial's to the final that reuses it and removes the others
        trial = plan.request.kind == "trial"
        saved = save_artifact(model, record, bench, plan.ledger, staged=trial)
        if not trial:
            record["artifact"] = saved


def _mark_failed(record: dict[str, Any], exc: BaseException) -> None:
    """Status ``pruned`` (a pruner stopped the run) or ``failed``, with the error; an
    unexpected error keeps the tail of its traceback."""
    pruned = type(exc).__name__ == "TrialPruned"
    record["status"] = "pruned" if pruned else "failed"
    record["error"] = f"{type(exc).__name__}: {exc}"
    if not pruned and not isinstance(exc, M6BenchError):
        record["traceback"] = "".join(traceback.format_exception(exc))[-4000:]


def _finish(record: dict[str, Any], plan: RunPlan, bench: PreparedBenchmark | None,
            outcome: TrainOutcome, started: float) -> None:
    timings = dict(bench.timings) if bench is not None else {}
    timings.update(train=outcome.train_seconds, evaluate=outcome.evaluate_seconds,
                   total=time.perf_counter() - started)
    record.update(
        curve=[_clean(row) for row in outcome.curve],
        epochs=outcome.epochs,
        best_epoch=outcome.best_epoch,
        timings={k: round(v, 4) for k, v in timings.items()},
        peak_rss_mb=round(provenance.peak_rss_mb(), 1),
        peak_gpu_mb=provenance.peak_gpu_mb(plan.device),
        hardware=provenance.hardware(),
        software=provenance.software(plan.catalog.plugins[plan.plugin_name].distribution),
        ended_at=datetime.now(timezone.utc).isoformat(),
    )
    plan.catalog.hook.m6bench_run_end(record=record)
    try:
        append_record(plan.ledger, record)
    except RecordError as exc:
        raise LedgerError(f"The record of run {record['run_id']} was not written to "
                          f"{plan.ledger}: {exc}") from exc
    except OSError as exc:
        raise LedgerError(f"Cannot append to the ledger {plan.ledger}: {exc}. Check the path "
                          "is writable, or pass --ledger PATH.") from exc


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, float):
            out[key] = None if value != value or value in (float("inf"), float("-inf")) else value
        else:
            out[key] = value
    return out


def run(
    plugin: str,
    *,
    model: str | None = None,
    dataset: str | None = None,
    benchmark: str | BenchmarkSpec | None = None,
    protocol: str | None = None,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    device: str = "auto",
    ledger: str | os.PathLike[str] | None = None,
    catalog: Catalog | None = None,
    save: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one model; append and return its ledger record (for notebooks).

    ``save`` stores the trained model beside the ledger (see :func:`m6bench.load_run`)."""
    request = RunRequest(plugin=plugin, model=model, dataset=dataset, benchmark=benchmark,
                         protocol=protocol, seed=seed, overrides=dict(overrides or {}),
                         config_file=config_file, dataset_options=dict(dataset_options or {}),
                         device=device, ledger=ledger, command=[], save=save)
    return execute(plan_run(request, catalog))
