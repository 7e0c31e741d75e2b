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
