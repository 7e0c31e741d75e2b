"""m6-fusion's ablation and cold-start tables on MovieLens 100K, several seeds each.

Two tables, printed with tabulate (and written as JSON with ``--out``):

* **Ablation** on ``ml-100k`` (per-user random 8:1:1, full ranking, ratings for RMSE):
  the default (context-dependent attention, weighted sum; all modalities; ranking and
  rating heads) against one change at a time: plain concatenation + MLP, mean + MLP,
  the text without text dropout, no text modality, ranking head only, rating head only.
  Test NDCG@10, Recall@10 and
  RMSE, mean +- standard deviation over the seeds.
* **Cold-start items** on ``ml-100k-cold-items`` (10% / 10% of the items held out of
  training entirely; each held-out item ranked among the held-out items of its part):
  m6-fusion with the text modality, the same without text dropout, the same model
  without text, and popularity restricted
  to the cold items (every cold item has no training interaction, so popularity cannot
  tell them apart: its seeded tie-break makes it a random ranking, the floor).
  Test NDCG@10 / Recall@10 per seed and their mean.

Every run is an ordinary ``m6bench.run`` (recorded in ``--ledger``), so each row can be
reproduced with ``m6bench run --plugin m6-fusion --benchmark ... --seed ... --set ...``.
Runs are independent and go to ``--jobs`` worker processes (on a GPU several runs share the
card; on a CPU keep ``--jobs`` at cores / threads).

Usage::

    export M6BENCH_DATA_DIR=/path/to/data
    python benchmarks/ablate_m6_fusion.py                       # both tables, seeds 0 1 2
    python benchmarks/ablate_m6_fusion.py --only cold --seeds 0 --device cpu
    python benchmarks/ablate_m6_fusion.py --device cuda --jobs 8 --out results/m6
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

ABLATIONS: dict[str, dict[str, Any]] = {
    "attention (default)": {},
    "concat + MLP": {"fusion": "concat"},
    "mean + MLP": {"fusion": "mean"},
    "text without text dropout": {"text_dropout": 0.0},
    "no text": {"text": False},
    "ranking head only": {"rating_weight": 0.0},
    "rating head only": {"ranking_weight": 0.0},
}
COLD_START: dict[str, tuple[str, str, dict[str, Any]]] = {
    "m6-fusion, text on": ("m6-fusion", "m6-fusion", {}),
    "m6-fusion, text on, no text dropout": ("m6-fusion", "m6-fusion", {"text_dropout": 0.0}),
    "m6-fusion, text off": ("m6-fusion", "m6-fusion", {"text": False}),
    "popularity (cold items)": ("classic", "pop", {}),
}


def _one_run(job: Mapping[str, Any]) -> dict[str, Any]:
    """One ``m6bench.run`` in a worker process; returns the row's figures."""
    import torch

    import m6bench

    torch.set_num_threads(job["threads"])
    started = time.perf_counter()
    record = m6bench.run(plugin=job["plugin"], model=job["model"], benchmark=job["benchmark"],
                         seed=job["seed"], overrides=job["overrides"], device=job["device"],
                         ledger=job["ledger"])
    if record["status"] != "ok":
        return {**job, "error": str(record.get("error"))}
    test = record["metrics"]["test"]
    return {**job, "ndcg@10": test.get("ndcg@10"), "recall@10": test.get("recall@10"),
            "rmse": test.get("rmse"), "epochs": record.get("epochs"),
            "train_s": record["timings"].get("train"),
            "wall_s": time.perf_counter() - started}


def _warm_up(device: str, ledger: str) -> None:
    """Load both benchmarks once and fill the text-vector cache, before workers start, so
    parallel workers only read caches."""
    import m6bench

    for benchmark in ("ml-100k", "ml-100k-cold-items"):
        m6bench.run(plugin="m6-fusion", benchmark=benchmark, seed=0, device=device,
                    overrides={"epochs": 1}, ledger=ledger)


def _jobs(args: argparse.Namespace, ledger: str) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    common = {"device": args.device, "threads": args.threads, "ledger": ledger}
    if args.only in (None, "ablation"):
        for label, overrides in ABLATIONS.items():
            for seed in args.seeds:
                jobs.append({"table": "ablation", "label": label, "plugin": "m6-fusion",
                             "model": "m6-fusion", "benchmark": "ml-100k", "seed": seed,
                             "overrides": overrides, **common})
    if args.only in (None, "cold"):
        for label, (plugin, model, overrides) in COLD_START.items():
            for seed in args.seeds:
                jobs.append({"table": "cold", "label": label, "plugin": plugin,
                             "model": model, "benchmark": "ml-100k-cold-items", "seed": seed,
                             "overrides": overrides, **common})
    return jobs


def _mean_sd(values: Sequence[float | None]) -> str:
    numbers = [v for v in values if v is not None]
    if not numbers:
        return "-"
    if len(numbers) == 1:
        return f"{numbers[0]:.4f}"
    return f"{statistics.mean(numbers):.4f} ± {statistics.stdev(numbers):.4f}"


def ablation_table(rows: Sequence[Mapping[str, Any]]) -> str:
    body = []
    for label in ABLATIONS:
        mine = [r for r in rows if r["table"] == "ablation" and r["label"] == label
                and "error" not in r]
        if not mine:
            continue
        ranking = label != "rating head only"
        rating = label != "ranking head only"
        body.append([
            label,
            _mean_sd([r["ndcg@10"] for r in mine]) if ranking else "- (no ranking head)",
            _mean_sd([r["recall@10"] for r in mine]) if ranking else "-",
            _mean_sd([r["rmse"] for r in mine]) if rating else "- (no rating head)",
            f"{statistics.mean(r['epochs'] for r in mine):.1f}",
            len(mine),
        ])
    return tabulate(body, headers=["ml-100k variant", "NDCG@10", "Recall@10", "RMSE",
                                   "epochs", "seeds"])


def cold_table(rows: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> str:
    body = []
    for label in COLD_START:
        mine = {r["seed"]: r for r in rows if r["table"] == "cold" and r["label"] == label
                and "error" not in r}
        if not mine:
            continue
        per_seed = [f"{mine[s]['ndcg@10']:.4f}" if s in mine else "-" for s in seeds]
        body.append([label, *per_seed, _mean_sd([r["ndcg@10"] for r in mine.values()]),
                     _mean_sd([r["recall@10"] for r in mine.values()])])
    headers = ["ml-100k-cold-items", *[f"NDCG@10 seed {s}" for s in seeds], "NDCG@10 mean",
               "Recall@10 mean"]
    return tabulate(body, headers=headers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=["ablation", "cold"], default=None)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--ledger", default=None, help="ledger of the runs (default: a "
                        "file beside --out, or m6bench-runs/ablate_m6_fusion.jsonl)")
    parser.add_argument("--out", default=None, help="write PREFIX.json and PREFIX.md")
    args = parser.parse_args(argv)
    if not os.environ.get("M6BENCH_DATA_DIR"):
        print("M6BENCH_DATA_DIR is not set: point it at the folder holding recbole-ml-100k/.",
              file=sys.stderr)
        return 2
    ledger = args.ledger or (f"{args.out}.ledger.jsonl" if args.out
                             else "m6bench-runs/ablate_m6_fusion.jsonl")
    Path(ledger).parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    _warm_up(args.device, ledger)
    jobs = _jobs(args, ledger)
    rows: list[dict[str, Any]] = []
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {pool.submit(_one_run, job): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            rows.append(row)
            status = row.get("error") or (
                f"NDCG@10 {row['ndcg@10']:.4f} Recall@10 {row['recall@10']:.4f}"
                + (f" RMSE {row['rmse']:.4f}" if row.get("rmse") else "")
                + f" epochs {row['epochs']} train {row['train_s']:.1f} s")
            print(f"[{len(rows)}/{len(jobs)}] {row['table']} | {row['label']} | seed "
                  f"{row['seed']}: {status}", flush=True)
    text = []
    if args.only in (None, "ablation"):
        text.append(ablation_table(rows))
    if args.only in (None, "cold"):
        text.append(cold_table(rows, args.seeds))
    report = "\n\n".join(text)
    print(f"\n{report}\n\n{len(jobs)} runs in {time.perf_counter() - started:.0f} s on "
          f"{args.device}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f"{args.out}.json").write_text(json.dumps(rows, indent=2, default=str))
        Path(f"{args.out}.md").write_text(report + "\n")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
