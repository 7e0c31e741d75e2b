"""The measured child process of benchmarks/scale.py: it prepares what one stage needs (its
baseline), then runs the stage alone and prints its seconds and peak memory as one line.

Peak memory is the stage's own: freed heap is returned to the system and the kernel's
peak-RSS mark is reset (``/proc/self/clear_refs``) just before the stage, so ``delta_mb`` is
what the stage needed above the RSS before it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

STAGES = ("generate", "load", "cut", "tensors", "bpr-mf-epoch", "gnn-mf-propagation",
          "m6-fusion-epoch", "evaluate")
RESULT_PREFIX = "SCALE-RESULT "


def _status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in MB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0): the peak read after
    a stage is then the stage's own, not an earlier step's."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _release_free_heap() -> None:
    """Return the heap that earlier steps freed to the system (glibc): otherwise a stage
    that reuses it shows no growth, and its memory is counted in the baseline."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process: on a shared machine wall time stretches
    with the load, CPU time much less, so its slope is the steadier one."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(stage: Callable[[], Any]) -> dict[str, Any]:
    """Run ``stage`` once: seconds, RSS before, peak RSS during, and how the peak was read."""
    gc.collect()
    _release_free_heap()
    baseline = _status_mb("VmRSS") or _ru_maxrss_mb()
    attributed = _reset_peak() and _status_mb("VmHWM") is not None
    cpu_started = _cpu_seconds()
    started = time.perf_counter()
    stage()
    seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_started
    peak = (_status_mb("VmHWM") if attributed else None) or _ru_maxrss_mb()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "baseline_mb": baseline,
            "peak_mb": peak,
            "delta_mb": max(0.0, peak - baseline),
            "peak_attribution": "stage" if attributed else "process (ru_maxrss)"}


def _child_setup(threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    from m6bench.registry.catalog import load_catalog

    return load_catalog()


def _context(cache_dir: str) -> Any:
    from m6bench.data.specs import LoadContext

    return LoadContext(os.environ.get("M6BENCH_DATA_DIR"), cache_dir, offline=True)


def _model(catalog: Any, bench: Any, plugin: str, model: str) -> tuple[Any, dict[str, Any]]:
    from m6bench.runs.config import resolve_config
    from m6bench.runs.run import seed_everything

    name, spec = catalog.model(plugin, model)
    config = resolve_config(spec.defaults, model_name=name, choices=spec.choices)
    seed_everything(0)
    built = spec.build(bench.train, config)
    built.train()
    return built, config


def _loaded(catalog: Any, options: Mapping[str, Any], cache_dir: str) -> Any:
    """The dataset through the cache, deduplicated and filtered as a run's "load" does."""
    from m6bench.protocols.cuts import deduplicate, kcore
    from m6bench.runs.loading import load_dataset

    spec = catalog.benchmarks.get("synthetic")
    dataset = load_dataset(catalog, spec.dataset, {**spec.dataset_options, **options},
                           _context(cache_dir))
    return kcore(deduplicate(dataset), spec.kcore)


def _prepared(catalog: Any, options: Mapping[str, Any], cache_dir: str) -> Any:
    import torch

    from m6bench.runs.prepare import prepare_benchmark

    return prepare_benchmark(catalog, catalog.benchmarks.get("synthetic"), seed=0,
                             device=torch.device("cpu"), context=_context(cache_dir),
                             dataset_options=options)


def stage_action(stage: str, catalog: Any, options: Mapping[str, Any],
                 cache_dir: str) -> tuple[Callable[[], Any], dict[str, Any]]:
    """Prepare everything ``stage`` needs (the baseline); return the stage to measure and
    the data's sizes."""
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    spec = catalog.benchmarks.get("synthetic")
    if stage in ("generate", "load"):
        # generate: into a fresh cache, so the generator runs and the Arrow files are written
        fresh = tempfile.mkdtemp(prefix="scale-", dir=cache_dir) if stage == "generate" else None
        box: dict[str, Any] = {}

        def load() -> None:
            box["dataset"] = _loaded(catalog, options, fresh or cache_dir)
        return load, {"_box": box, "_fresh": fresh}
    if stage in ("cut", "tensors"):
        from m6bench.protocols.cuts import load_or_cut
        from m6bench.runs.prepare import prepare_split

        dataset = _loaded(catalog, options, cache_dir)
        protocol = catalog.protocols.get(spec.protocol)
        protocol_options = {**protocol.defaults, **spec.protocol_options}

        def cut(cache: str | None) -> Any:
            return load_or_cut(dataset, spec.protocol, protocol.cut, 0, protocol_options, cache)
        sizes = _dataset_sizes(dataset)
        if stage == "cut":
            return (lambda: cut(None)), sizes
        split = cut(cache_dir)
        return (lambda: prepare_split(spec, dataset, split, catalog=catalog)), sizes
    bench = _prepared(catalog, options, cache_dir)
    sizes = {**_dataset_sizes(bench.dataset), "n_train": bench.train.n_interactions}
    if stage == "gnn-mf-propagation":
        model, _ = _model(catalog, bench, "gnn-mf", "gnn-mf")
        return (lambda: _no_grad(model.propagate)), sizes
    if stage == "m6-fusion-epoch":
        model, _ = _model(catalog, bench, "m6-fusion", "m6-fusion")
        return (lambda: model.fit_epoch(bench.train, 1)), sizes
    model, config = _model(catalog, bench, "classic", "bpr-mf")
    if stage == "bpr-mf-epoch":
        return (lambda: model.fit_epoch(bench.train, 1)), sizes
    from m6bench.evaluation.evaluator import evaluate_part

    tasks = tuple(t for t in spec.tasks if t in catalog.model("classic", "bpr-mf")[1].tasks)
    return (lambda: evaluate_part(model, bench, "test", tasks=tasks,
                                  batch_size=int(config["eval_batch_size"]))), sizes


def _no_grad(function: Callable[[], Any]) -> Any:
    import torch

    with torch.no_grad():
        return function()


def _dataset_sizes(dataset: Any) -> dict[str, int]:
    return {"n_users": int(dataset.n_users), "n_items": int(dataset.n_items),
            "n_interactions": int(dataset.n_interactions)}


def run_child(stage: str, options: Mapping[str, Any], cache_dir: str, threads: int) -> None:
    """The child process: set up, measure one stage, print one result line."""
    if stage not in STAGES:  # before the slow imports
        raise SystemExit(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    started = time.perf_counter()
    catalog = _child_setup(threads)
    action, sizes = stage_action(stage, catalog, options, cache_dir)
    setup_seconds = time.perf_counter() - started
    result = measure(action)
    box, fresh = sizes.pop("_box", None), sizes.pop("_fresh", None)
    if box is not None:
        sizes = _dataset_sizes(box["dataset"])
    if fresh:  # the generated entry joins the shared cache, for the later stages
        shutil.copytree(fresh, cache_dir, dirs_exist_ok=True)
        shutil.rmtree(fresh, ignore_errors=True)
    print(RESULT_PREFIX + json.dumps({**result, **sizes, "setup_seconds": setup_seconds}),
          flush=True)
