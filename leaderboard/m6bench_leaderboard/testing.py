"""Synthetic ledger records for tests and benchmarks of the leaderboard (no harness needed).

:func:`synthetic_records` makes a ledger of sweeps (trials and finals) over several
benchmarks and models whose per-user test values differ by a known shift, so the site, the
statistics and their speed can be checked without training anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from m6bench_leaderboard.schema import SCHEMA_VERSION

PER_USER_METRICS = ("ndcg@10", "recall@10", "mrr@10")


def make_record(*, benchmark: str = "bench", version: str = "v1", plugin: str = "fake",
                model: str = "model", kind: str = "final", seed: int = 0,
                sweep_id: str | None = None, trial: int | None = None,
                config: Mapping[str, Any] | None = None,
                test: Mapping[str, float] | None = None,
                valid: Mapping[str, float] | None = None,
                per_user: Mapping[str, Sequence[Any]] | None = None, status: str = "ok",
                run_id: str | None = None, minute: int = 0, train_seconds: float = 1.0,
                budget: Mapping[str, Any] | None = None,
                dataset_statistics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One schema-valid record with every key the site shows."""
    stamp = f"2026-01-01T{minute // 60 % 24:02d}:{minute % 60:02d}:00+00:00"
    config = dict(config if config is not None else {"dim": 32, "lr": 0.01})
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id or uuid.uuid4().hex,
        "status": status,
        "error": None if status == "ok" else "RuntimeError: synthetic failure",
        "kind": kind,
        "sweep_id": sweep_id,
        "benchmark": {"name": benchmark, "version": version, "spec": {
            "name": benchmark, "dataset": benchmark, "protocol": "random",
            "dataset_options": {}, "protocol_options": {}, "tasks": ["ranking"],
            "ks": [10], "valid_metric": "ndcg@10", "rating_threshold": None, "kcore": 0,
            "candidates": "all", "description": f"synthetic benchmark {benchmark}"}},
        "dataset": {"name": benchmark, "fingerprint": "f" * 16, "statistics": dict(
            dataset_statistics or {"users": 943, "items": 1682, "interactions": 100000,
                                   "density": 0.063})},
        "cut": {"protocol": "random", "fingerprint": "c" * 16,
                "sizes": {"train": 80000, "valid": 10000, "test": 10000}},
        "plugin": {"name": plugin, "distribution": f"{plugin}-dist", "version": "1.0"},
        "model": model,
        "config": config,
        "config_hash": "0" * 16,
        "seed": seed,
        "device": "cpu",
        "metrics": {"valid": dict(valid or {}), "test": dict(test or {})} if status == "ok"
        else {},
        "curve": [{"epoch": e, "bpr": 0.7 / e, "valid/ndcg@10": 0.1 + 0.01 * e}
                  for e in range(1, 6)],
        "epochs": 5,
        "best_epoch": 5,
        "timings": {"load": 0.1, "cut": 0.01, "train": train_seconds, "evaluate": 0.2,
                    "total": train_seconds + 0.31},
        "peak_rss_mb": 500.0,
        "peak_gpu_mb": None,
        "parameters": 12345,
        "hardware": {"cpu": "synthetic", "cores": 2, "gpu": None, "driver": None},
        "software": {"python": "3.11", "torch": "none", "m6bench": "0.1.0"},
        "code": {"harness": {"distribution": "m6bench", "version": "0.1.0", "package": "m6bench",
                             "sha256": "0" * 16, "git": {"commit": "0" * 40, "dirty": False}},
                 "plugin": {"name": plugin, "distribution": "m6bench", "version": "0.1.0",
                            "package": plugin, "sha256": "1" * 16}},
        "command": ["m6bench", "sweep", "--plugin", plugin, "--model", model],
        "started_at": stamp,
        "ended_at": stamp,
    }
    if per_user is not None:
        record["per_user"] = {k: list(v) for k, v in per_user.items()}
    if sweep_id is not None:
        record["sweep"] = {"id": sweep_id, "trial": trial if trial is not None else 0,
                           "budget": dict(budget or {"trials": 5, "timeout_s": None,
                                                     "sampler": "tpe", "sampler_seed": 0,
                                                     "pruner": "median"})}
    return record


def per_user_values(rng: np.random.Generator, users: int, shift: float,
                    base: np.ndarray | None = None) -> dict[str, list[float]]:
    """Per-user metric values around ``base`` (one per user) moved by ``shift``."""
    if base is None:
        base = rng.beta(2.0, 5.0, size=users)
    out: dict[str, list[float]] = {"users": list(range(users))}
    for index, name in enumerate(PER_USER_METRICS):
        noise = rng.normal(0.0, 0.02, size=users)
        values = np.clip(base * (1.0 + 0.1 * index) + shift + noise, 0.0, 1.0)
        out[name] = [round(float(v), 6) for v in values]
    return out


def synthetic_records(*, benchmarks: int = 1, models: int = 4, seeds: int = 3,
                      trials: int = 5, users: int = 200, shift: float = 0.01,
                      per_user_on_trials: bool = True, rng_seed: int = 0,
                      plugin: str = "fake") -> list[dict[str, Any]]:
    """Sweeps of ``models`` models on ``benchmarks`` benchmarks: trials, then finals.

    Model ``m`` scores ``m * shift`` above model 0 for every user (plus noise), so model
    ``models - 1`` is the best and the gaps are known.
    """
    rng = np.random.default_rng(rng_seed)
    records: list[dict[str, Any]] = []
    minute = 0
    for b in range(benchmarks):
        bench = f"bench-{b}"
        base = {seed: rng.beta(2.0, 5.0, size=users) for seed in range(seeds)}
        for m in range(models):
            model = f"model-{m}"
            sweep_id = f"{plugin}.{model}@{bench}-v1:t{trials}"
            budget = {"trials": trials, "timeout_s": None, "sampler": "tpe",
                      "sampler_seed": 0, "pruner": "median"}
            for t in range(trials):
                minute += 1
                per_user = per_user_values(rng, users, m * shift, base[0]) \
                    if per_user_on_trials else None
                value = 0.2 + m * shift + float(rng.normal(0, 0.01))
                status = "pruned" if t % 7 == 6 else "ok"
                records.append(make_record(
                    benchmark=bench, plugin=plugin, model=model, kind="trial", seed=0,
                    sweep_id=sweep_id, trial=t, status=status, minute=minute,
                    config={"dim": 32 * (1 + t % 3), "lr": 0.001 * (t + 1)},
                    valid={"ndcg@10": value}, test={"ndcg@10": value}, per_user=per_user,
                    budget=budget, train_seconds=1.0 + m))
            for seed in range(seeds):
                minute += 1
                per_user = per_user_values(rng, users, m * shift, base[seed])
                test = {name: float(np.mean(per_user[name])) for name in PER_USER_METRICS}
                test["coverage@10"] = 0.1 + 0.01 * m
                records.append(make_record(
                    benchmark=bench, plugin=plugin, model=model, kind="final", seed=seed,
                    sweep_id=sweep_id, trial=0, minute=minute, test=test,
                    valid={"ndcg@10": test["ndcg@10"]}, per_user=per_user, budget=budget,
                    train_seconds=(1.0 + m) * (1.0 + 0.05 * seed)))
    return records


# ========================================================================= deployment
def make_variant_record(base: Mapping[str, Any], *, name: str, test: Mapping[str, float],
                        size_bytes: int, base_size_bytes: int, method: str | None = None,
                        run_id: str | None = None, minute: int = 0,
                        options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``kind: "variant"`` record of the shared deployment contract: a compressed copy of
    the run ``base``, with its own test metrics and ``delta`` (variant - base) per metric."""
    base_test = (base.get("metrics") or {}).get("test") or {}
    record = {key: base[key] for key in ("benchmark", "dataset", "cut", "plugin", "model",
                                         "config", "seed", "code", "hardware", "software",
                                         "metric_directions") if key in base}
    stamp = f"2026-01-02T{minute // 60 % 24:02d}:{minute % 60:02d}:00+00:00"
    record.update({
        "schema_version": SCHEMA_VERSION, "run_id": run_id or uuid.uuid4().hex,
        "status": "ok", "kind": "variant", "metrics": {"test": dict(test)},
        "variant": {"name": name, "method": method or name, "options": dict(options or {}),
                    "base_run_id": base["run_id"], "size_bytes": size_bytes,
                    "base_size_bytes": base_size_bytes,
                    "largest_tensor_bytes": size_bytes // 2,
                    "base_largest_tensor_bytes": base_size_bytes // 2,
                    "delta": {k: v - base_test[k] for k, v in test.items() if k in base_test}},
        "started_at": stamp, "ended_at": stamp})
    return record


def make_serving_record(base: Mapping[str, Any], *, p99: float, rps: float,
                        variant: str | None = None, backend: str = "torch", p50: float = 1.0,
                        p95: float | None = None, concurrency: int = 8,
                        run_id: str | None = None, minute: int = 0) -> dict[str, Any]:
    """A ``kind: "serving"`` record of the shared deployment contract: a load test of the run
    ``base`` (or of its variant ``variant``) served by ``backend``."""
    record = {key: base[key] for key in ("benchmark", "plugin", "model", "config", "seed",
                                         "code", "hardware", "software") if key in base}
    stamp = f"2026-01-03T{minute // 60 % 24:02d}:{minute % 60:02d}:00+00:00"
    requests = int(rps * 30)
    record.update({
        "schema_version": SCHEMA_VERSION, "run_id": run_id or uuid.uuid4().hex,
        "status": "ok", "kind": "serving", "metrics": {},
        "serving": {"base_run_id": base["run_id"], "variant": variant, "backend": backend,
                    "concurrency": concurrency, "duration_s": 30.0, "requests": requests,
                    "errors": 0, "rps": rps,
                    "latency_ms": {"p50": p50, "p95": p95 if p95 is not None else p99,
                                   "p99": p99},
                    "max_batch": 64, "batch_wait_ms": 2.0},
        "started_at": stamp, "ended_at": stamp})
    return record


def deployment_scenario(benchmark: str = "bench-0") -> tuple[list[dict[str, Any]],
                                                             list[dict[str, Any]]]:
    """Two final runs (``ease-0``: test ndcg@10 0.30, a 10 MB artifact; ``bpr-0``: 0.20) and
    their variant and serving records, with round numbers a test can check by hand:

    ======  =======  =====  =======  =======  =======  =====
    model   variant  MB     ndcg@10  p99 ms   req/s    backend
    ======  =======  =====  =======  =======  =======  =====
    ease    full     10     0.30     20       400      torch
    ease    fp16     5      0.30     12       700      onnx
    ease    int8     2.5    0.29     8        900      torch
    bpr     full     4      0.20     5        1500     torch
    bpr     int8     1      0.19     6        1400     torch
    bpr     prune50  2      0.15     (no load test)
    ======  =======  =====  =======  =======  =======  =====

    Returns (the two runs, the deployment records).
    """
    directions = {"ndcg@10": "max", "recall@10": "max"}
    ease = make_record(benchmark=benchmark, plugin="classic", model="ease", run_id="ease-0",
                       test={"ndcg@10": 0.30, "recall@10": 0.4}, minute=1)
    ease["artifact"] = {"path": "artifacts/ease-0", "sha256": "a" * 64, "bytes": 10_000_000}
    bpr = make_record(benchmark=benchmark, plugin="classic", model="bpr", run_id="bpr-0",
                      test={"ndcg@10": 0.20, "recall@10": 0.3}, minute=2)
    for run in (ease, bpr):
        run["metric_directions"] = dict(directions)
    deployed = [
        make_variant_record(ease, name="int8", test={"ndcg@10": 0.29}, size_bytes=2_500_000,
                            base_size_bytes=10_000_000, run_id="ease-int8", minute=3),
        make_variant_record(ease, name="fp16", test={"ndcg@10": 0.30}, size_bytes=5_000_000,
                            base_size_bytes=10_000_000, run_id="ease-fp16", minute=4),
        make_variant_record(bpr, name="int8", test={"ndcg@10": 0.19}, size_bytes=1_000_000,
                            base_size_bytes=4_000_000, run_id="bpr-int8", minute=5),
        make_variant_record(bpr, name="prune50", method="magnitude", test={"ndcg@10": 0.15},
                            size_bytes=2_000_000, base_size_bytes=4_000_000,
                            run_id="bpr-prune50", minute=6),
        make_serving_record(ease, p50=9.0, p99=20.0, rps=400.0, run_id="serve-ease", minute=7),
        make_serving_record(ease, variant="int8", p50=3.0, p99=8.0, rps=900.0,
                            run_id="serve-ease-int8", minute=8),
        make_serving_record(ease, variant="fp16", backend="onnx", p50=5.0, p99=12.0,
                            rps=700.0, run_id="serve-ease-fp16", minute=9),
        make_serving_record(bpr, p50=2.0, p99=5.0, rps=1500.0, run_id="serve-bpr", minute=10),
        make_serving_record(bpr, variant="int8", p50=2.5, p99=6.0, rps=1400.0,
                            run_id="serve-bpr-int8", minute=11),
    ]
    return [ease, bpr], deployed
