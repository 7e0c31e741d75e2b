"""Building the leaderboard site from a 10,000-record ledger (target: under 10 seconds).

The ledger looks like a real one at MovieLens 100K scale: 2 benchmarks x 20 models, each a
sweep of 245 trials and 5 final seeds, every record with the per-user test values of 943
users (as the harness writes them, compact JSON with sorted keys): about 190 MB.  Run with
``tox -e bench`` or ``python -m pytest benchmarks/test_bench_site.py --benchmark-only``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from m6bench_leaderboard import build_site
from m6bench_leaderboard.testing import PER_USER_METRICS, make_record

BENCHMARKS, MODELS, TRIALS, SEEDS, USERS = 2, 20, 245, 5, 943
RECORDS = BENCHMARKS * MODELS * (TRIALS + SEEDS)
BUDGET_SECONDS = 10.0


def _line(record: dict, per_user: str) -> str:
    """The ledger line of ``record`` with ``per_user`` (JSON) spliced in at its sorted key."""
    before = {k: v for k, v in record.items() if k < "per_user"}
    after = {k: v for k, v in record.items() if k > "per_user"}
    head = json.dumps(before, separators=(",", ":"), sort_keys=True)[:-1]
    tail = json.dumps(after, separators=(",", ":"), sort_keys=True)[1:]
    return f'{head},"per_user":{per_user},{tail}\n'


@pytest.fixture(scope="module")
def big_ledger(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("ledger") / "ledger.jsonl"
    users = list(range(USERS))
    minute = 0
    with path.open("w") as handle:
        for b in range(BENCHMARKS):
            for m in range(MODELS):
                sweep = f"p.model-{m}@bench-{b}-v1:t{TRIALS}"
                budget = {"trials": TRIALS, "timeout_s": None, "sampler": "tpe",
                          "sampler_seed": 0, "pruner": "median"}
                base = rng.beta(2, 5, USERS) + 0.002 * m
                values = {k: np.round(np.clip(base + rng.normal(0, .02, USERS), 0, 1), 6)
                          for k in PER_USER_METRICS}
                per_user = json.dumps({"users": users, **{k: v.tolist()
                                                          for k, v in values.items()}},
                                      separators=(",", ":"), sort_keys=True)
                test = {k: float(v.mean()) for k, v in values.items()}
                for t in range(TRIALS + SEEDS):
                    minute += 1
                    final = t >= TRIALS
                    record = make_record(
                        benchmark=f"bench-{b}", plugin="p", model=f"model-{m}",
                        kind="final" if final else "trial", seed=t - TRIALS if final else 0,
                        sweep_id=sweep, trial=t if not final else 0, minute=minute,
                        config={"dim": 64, "lr": 0.001 * (1 + t % 17), "l2": 1e-4},
                        test=test, valid={"ndcg@10": test["ndcg@10"] + 0.001 * (t % 5)},
                        budget=budget, train_seconds=1.0 + m,
                        status="pruned" if (not final and t % 9 == 8) else "ok")
                    handle.write(_line(record, per_user))
    return path


def test_build_site_from_10000_records(benchmark, big_ledger, tmp_path):
    out = tmp_path / "site"
    report = benchmark.pedantic(build_site, args=(big_ledger, out), rounds=3, iterations=1,
                                warmup_rounds=0)
    assert report.records == RECORDS == 10_000
    assert report.benchmarks == BENCHMARKS and report.rows == BENCHMARKS * MODELS
    assert report.runs == BENCHMARKS * MODELS * SEEDS
    if benchmark.stats is not None:  # None under --benchmark-disable
        mean = benchmark.stats.stats.mean
        assert mean < BUDGET_SECONDS, (
            f"building the site from {RECORDS} records took {mean:.1f}s on average; the "
            f"budget is {BUDGET_SECONDS:.0f}s")
