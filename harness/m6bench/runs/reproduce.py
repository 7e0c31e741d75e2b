"""Reproduce a ledger record: re-run its exact benchmark, plugin, config and seed, compare.

On the CPU the harness promises identical metrics for the same seed, so the default
tolerance there is exact (0).  On a GPU (the record's or this run's device), kernels may
reduce in a different order, which can flip ties in a ranking: the default tolerance is
then :data:`GPU_TOLERANCE` (absolute, per metric).  ``--tolerance`` overrides both.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from m6bench.data.specs import BenchmarkSpec
from m6bench.errors import CodeChanged, ConfigError
from m6bench.registry.catalog import Catalog, PluginInfo, load_catalog
from m6bench.registry.provenance import harness_identity
from m6bench.runs.ledger import ledger_path
from m6bench.runs.prepare import benchmark_version
from m6bench.runs.run import RunRequest, execute, plan_run, resolve_device
from m6bench_leaderboard import read_records

GPU_TOLERANCE = 1e-3  # absolute, per metric, when either run is on a GPU
SPLITS = ("valid", "test")


@dataclass
class MetricComparison:
    split: str
    metric: str
    recorded: float | None
    reproduced: float | None
    difference: float | None
    ok: bool


@dataclass
class ReproduceResult:
    """The recorded run, its reproduction, and the metric-by-metric comparison."""

    record: dict[str, Any]
    reproduction: dict[str, Any]
    tolerance: float
    comparisons: list[MetricComparison]
    notes: list[str] = field(default_factory=list)
    ledger: Path | None = None
    code_changed: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    @property
    def mismatches(self) -> list[MetricComparison]:
        return [c for c in self.comparisons if not c.ok]


def find_record(run_id: str, ledger: str | os.PathLike[str]) -> dict[str, Any]:
    """The record ``run_id`` (or a unique prefix of at least 6 characters) of the ledger."""
    path = Path(ledger)
    if not path.exists():
        raise ConfigError(f"Ledger {path} does not exist; pass --ledger PATH (a ledger file, "
                          "or the run's .jsonl record file downloaded from the leaderboard).")
    records = read_records(path).records
    exact = [r for r in records if r["run_id"] == run_id]
    if not exact and len(run_id) >= 6:
        exact = [r for r in records if r["run_id"].startswith(run_id)]
    ids = {r["run_id"] for r in exact}
    if len(ids) > 1:
        raise ConfigError(f"Run id prefix {run_id!r} matches {len(ids)} runs in {path} "
                          f"({', '.join(sorted(ids)[:5])}); give more characters.")
    if not exact:
        raise ConfigError(f"No run {run_id!r} in the ledger {path} ({len(records)} records). "
                          "Check the id (the leaderboard's run pages show it) and --ledger.")
    return exact[-1]


def benchmark_of(record: Mapping[str, Any], catalog: Catalog) -> BenchmarkSpec:
    """The record's benchmark contract, rebuilt from the record and checked by version."""
    bench = record.get("benchmark") or {}
    spec = bench.get("spec")
    if isinstance(spec, Mapping):
        known = {f.name for f in fields(BenchmarkSpec)}
        values = {k: v for k, v in spec.items() if k in known}
        for key in ("tasks", "ks"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        try:
            benchmark = BenchmarkSpec(**values)
        except TypeError as exc:
            raise ConfigError(f"The record's benchmark contract cannot be rebuilt ({exc}); "
                              "it was written by an incompatible m6bench.") from exc
    else:
        benchmark = catalog.benchmarks.get(str(bench.get("name")))
    recorded = bench.get("version")
    if recorded and recorded != _contract_only_version(benchmark):
        here = benchmark_version(catalog, benchmark)  # loads the data (through the cache)
        if here != recorded:
            raise ConfigError(
                f"Benchmark {benchmark.name!r} has version {here} here, but the record was "
                f"made on version {recorded}: the data loaded here (its content) or the "
                "contract (protocol and its defaults, tasks, metrics, filters, candidates) "
                "differs, so the run cannot be reproduced exactly. Load the same data (the "
                "record's dataset fingerprint is "
                f"{(record.get('dataset') or {}).get('fingerprint')}), or use the m6bench "
                "release that wrote the record.")
    return benchmark


def _contract_only_version(spec: BenchmarkSpec) -> str:
    """The version m6bench wrote before versions hashed the data: every field of the spec
    but the description.  A record carrying it is checked by its contract alone."""
    contract = spec.to_dict()
    contract.pop("description")
    blob = json.dumps(contract, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _short(identity: Mapping[str, Any]) -> str:
    return (f"{identity.get('distribution')} {identity.get('version')} (package "
            f"{identity.get('package')}, source {identity.get('sha256')})")


def code_differences(record: Mapping[str, Any], info: PluginInfo) -> list[str]:
    """How the installed harness and plugin differ from the code the record names.

    Code is compared by source hash: a changed version string with the same source is no
    difference, and a one-line change with the same version is one.
    """
    code = record.get("code")
    if not isinstance(code, Mapping):
        return ["the record names no code identity (it was written before m6bench recorded "
                "one), so the code that made it cannot be checked"]
    out = []
    for part, installed in (("harness", harness_identity()), ("plugin", info.code())):
        recorded = code.get(part) or {}
        if recorded.get("sha256") != installed.get("sha256"):
            out.append(f"{part} {_short(installed)} here, but the record was made with "
                       f"{_short(recorded)}")
    return out


def _device(record: Mapping[str, Any], device: str | None) -> tuple[str, list[str]]:
    if device is not None:
        return device, []
    recorded = str(record.get("device") or "cpu")
    if recorded.startswith("cuda") and not torch.cuda.is_available():
        return "cpu", [f"the record ran on {recorded}; CUDA is not available here, so this "
                       "reproduction runs on the CPU"]
    return recorded, []


def compare(old: Mapping[str, Any], new: Mapping[str, Any],
            tolerance: float) -> list[MetricComparison]:
    """Every metric of the recorded run against the reproduction's, split by split."""
    out = []
    for split in SPLITS:
        before = (old.get("metrics") or {}).get(split) or {}
        after = (new.get("metrics") or {}).get(split) or {}
        for metric in sorted(before):
            a, b = before.get(metric), after.get(metric)
            if a is None or b is None:
                out.append(MetricComparison(split, metric, a, b, None, a is None and b is None))
                continue
            difference = abs(float(a) - float(b))
            ok = difference <= tolerance if tolerance > 0 else float(a) == float(b)
            out.append(MetricComparison(split, metric, float(a), float(b), difference,
                                        ok and math.isfinite(difference)))
    return out


def reproduce(
    run_id: str,
    *,
    ledger: str | os.PathLike[str] | None = None,
    tolerance: float | None = None,
    device: str | None = None,
    record: bool = True,
    catalog: Catalog | None = None,
    allow_code_change: bool = False,
) -> ReproduceResult:
    """Re-run the record ``run_id`` of ``ledger`` and compare every metric.

    The code is checked first: when the installed harness or plugin is not the code the
    record was made with, :class:`~m6bench.errors.CodeChanged` names each difference and
    nothing runs, unless ``allow_code_change`` (then the differences are notes).  The
    reproduction is recorded in the same ledger (kind ``run``, with ``reproduces`` naming
    the original) unless ``record`` is false.
    """
    ledger_file = ledger_path(ledger)
    original = find_record(run_id, ledger_file)
    if original["status"] != "ok":
        raise ConfigError(f"Run {original['run_id']} has status {original['status']} "
                          f"({original.get('error')}); only ok runs have metrics to compare.")
    catalog = catalog or load_catalog()
    notes: list[str] = []
    plugin = original["plugin"]
    info = catalog.plugin(str(plugin.get("name")))
    changed = code_differences(original, info)
    if changed and not allow_code_change:
        raise CodeChanged(
            f"Run {original['run_id']} was made with other code: " + "; ".join(changed)
            + ". Its metrics would not say whether the record reproduces. Install the code "
            "the record names (its git commit: "
            f"{((original.get('code') or {}).get('harness') or {}).get('git')}), or pass "
            "--allow-code-change to compare the metrics anyway.")
    notes += [f"code differs: {difference}" for difference in changed]
    if plugin.get("version") and info.version != plugin.get("version"):
        notes.append(f"plugin {info.name} is version {info.version} here; the record was made "
                     f"with {plugin.get('version')}")
    benchmark = benchmark_of(original, catalog)
    device_name, device_notes = _device(original, device)
    notes += device_notes
    resolved = resolve_device(device_name)
    recorded_device = str(original.get("device") or "cpu")
    if tolerance is None:
        on_cpu = resolved.type == "cpu" and not recorded_device.startswith("cuda")
        tolerance = 0.0 if on_cpu else GPU_TOLERANCE
    if tolerance < 0:
        raise ConfigError(f"--tolerance {tolerance} is negative; pass 0 for exact or a "
                          "positive absolute difference.")
    target = ledger_file
    scratch = None
    if not record:
        scratch = tempfile.TemporaryDirectory(prefix="m6bench-reproduce-")
        target = Path(scratch.name) / "ledger.jsonl"
    threads = (original.get("hardware") or {}).get("torch_threads")
    saved_threads = torch.get_num_threads()
    try:
        if isinstance(threads, int) and threads > 0 and threads != saved_threads:
            torch.set_num_threads(threads)  # the same reduction order as the recorded run
            notes.append(f"torch threads set to {threads}, as recorded")
        request = RunRequest(
            plugin=info.name, model=str(original["model"]), benchmark=benchmark,
            seed=int(original["seed"]), split_seed=original.get("split_seed"),
            init_seed=original.get("init_seed"), overrides=dict(original["config"]),
            device=device_name, ledger=target, kind="run", command=list(sys.argv))
        plan = plan_run(request, catalog)
        if plan.config != original["config"]:
            changed = sorted(k for k in set(plan.config) | set(original["config"])
                             if plan.config.get(k) != original["config"].get(k))
            notes.append(f"the resolved config differs from the record in {changed} (the "
                         "model's defaults changed)")
        new = execute(plan, extra={"reproduces": original["run_id"]})
    finally:
        torch.set_num_threads(saved_threads)
        if scratch is not None:
            scratch.cleanup()
    return ReproduceResult(record=original, reproduction=new, tolerance=tolerance,
                           comparisons=compare(original, new, tolerance), notes=notes,
                           ledger=ledger_file if record else None, code_changed=bool(changed))
