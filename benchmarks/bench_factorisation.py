"""Seconds per training epoch and NDCG@10 of the classic plugin's iALS and BPR-MF.

Issue 17 compares them with implicit 0.7.3 and Cornac 3.0.1 (figures and matched settings in
shared/peers/implicit-cornac.md; ``benchmarks/compare_peers.py`` runs the peers side by
side).  This script measures our side only, on the real MovieLens benchmarks, seed 0:

* ``fit_epoch`` seconds of each model with its recipe's defaults, ``--epochs`` timed epochs
  after one untimed warm-up (min and median; no evaluation inside the timing);
* then, unless ``--no-quality``, a full default run (early stopping on valid NDCG@10) and
  its valid/test NDCG@10, training seconds and epoch count;
* or, with ``--components``, bpr-mf's epoch split into its parts (the epoch's batches, the
  gradients, the Adagrad steps of each table), each part's median seconds per epoch.

Run with the peers' thread settings::

    OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE \\
    M6BENCH_DATA_DIR=/path/to/data python benchmarks/bench_factorisation.py

Timings on a shared machine move with its load: the script prints ``os.getloadavg()``
beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import m6bench
from m6bench.registry.catalog import load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.prepare import prepare_benchmark

MODELS = ("ials", "bpr-mf")
DATASETS = ("ml-100k", "ml-1m")


def epoch_seconds(catalog, dataset: str, model: str, epochs: int,
                  overrides: dict) -> list[float]:
    """Wall seconds of ``epochs`` calls of ``fit_epoch`` after one warm-up call."""
    bench = prepare_benchmark(catalog, catalog.benchmarks.get(dataset), seed=0,
                              device=torch.device("cpu"))
    name, spec = catalog.model("classic", model)
    config = resolve_config({**spec.defaults, **overrides}, model_name=name)
    recommender = spec.build(bench.train, config)
    recommender.fit_epoch(bench.train, 1)
    seconds = []
    for epoch in range(2, epochs + 2):
        start = time.perf_counter()
        recommender.fit_epoch(bench.train, epoch)
        seconds.append(time.perf_counter() - start)
    return seconds


def bpr_component_seconds(catalog, dataset: str, epochs: int, overrides: dict
                          ) -> dict[str, list[float]]:
    """Per timed epoch of bpr-mf's tensor step (``kernel=tensor``), the seconds of each part
    of ``fit_epoch``: the epoch's batches (``TrainSet.bpr_batches``: shuffle and negative
    sampling), the hand-applied gradients, and the Adagrad steps of the user and the item
    table."""
    from m6bench_classic.factorisation import adagrad_rows

    bench = prepare_benchmark(catalog, catalog.benchmarks.get(dataset), seed=0,
                              device=torch.device("cpu"))
    name, spec = catalog.model("classic", "bpr-mf")
    # The parts of the tensor step (the fused CPU kernel is one call with no parts to time).
    model = spec.build(bench.train, resolve_config({**spec.defaults, "kernel": "tensor",
                                                    **overrides}, model_name=name))
    model.fit_epoch(bench.train, 1)
    parts: dict[str, list[float]] = {"batches": [], "gradients": [], "adagrad users": [],
                                     "adagrad items": []}
    with torch.no_grad():
        for _ in range(epochs):
            spent = dict.fromkeys(parts, 0.0)
            start = time.perf_counter()
            batches = list(bench.train.bpr_batches(model.batch_size, model.true_negatives))
            spent["batches"] = time.perf_counter() - start
            for users, positives, negatives in batches:
                marks = [time.perf_counter()]
                items = torch.cat([positives, negatives])
                user_grads, item_grads, _, _ = model.row_gradients(users, items,
                                                                   model.report_loss)
                marks.append(time.perf_counter())
                adagrad_rows(model.user_encoder.weight, model.user_squares, users,
                             user_grads, model.lr)
                marks.append(time.perf_counter())
                adagrad_rows(model.item_encoder.weight, model.item_squares, items,
                             item_grads, model.lr)
                marks.append(time.perf_counter())
                for part, begin, end in zip(list(parts)[1:], marks, marks[1:]):
                    spent[part] += end - begin
            for part, seconds in spent.items():
                parts[part].append(seconds)
    return parts


def quality(catalog, dataset: str, model: str, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        record = m6bench.run(plugin="classic", model=model, dataset=dataset, seed=0,
                             overrides=overrides, device="cpu", catalog=catalog,
                             ledger=Path(folder) / "ledger.jsonl")
    if record["status"] != "ok":
        raise SystemExit(f"{model} on {dataset} failed: {record.get('error')}")
    return record


def parse_overrides(pairs: Sequence[str]) -> dict:
    """``key=value`` strings as a dict, values read as int, float or left as strings."""
    parsed = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        for kind in (int, float):
            try:
                parsed[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            parsed[key] = value
    return parsed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-quality", action="store_true",
                        help="time epochs only; skip the full default runs")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides applied to every model")
    parser.add_argument("--components", action="store_true",
                        help="bpr-mf only: seconds per epoch of each part of its fit_epoch")
    args = parser.parse_args(argv)
    if not os.environ.get("M6BENCH_DATA_DIR"):
        raise SystemExit("set M6BENCH_DATA_DIR to the folder holding the MovieLens copies")
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    catalog = load_catalog()
    print(f"threads {args.threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"overrides {overrides}")
    for dataset in args.datasets:
        if args.components:
            load = os.getloadavg()[0]
            parts = bpr_component_seconds(catalog, dataset, args.epochs, overrides)
            print(f"{dataset:<8} bpr-mf parts, s/epoch median (load {load:.2f}): " + ", ".join(
                f"{part} {statistics.median(seconds):.3f}" for part, seconds in parts.items()),
                flush=True)
            continue
        for model in args.models:
            load = os.getloadavg()[0]
            seconds = epoch_seconds(catalog, dataset, model, args.epochs, overrides)
            line = (f"{dataset:<8} {model:<7} s/epoch min {min(seconds):.3f} "
                    f"median {statistics.median(seconds):.3f} (load {load:.2f})")
            if not args.no_quality:
                record = quality(catalog, dataset, model, overrides)
                metrics = record["metrics"]
                valid = metrics.get("valid", {}).get("ndcg@10", float("nan"))
                line += (f" | valid NDCG@10 {valid:.4f} test {metrics['test']['ndcg@10']:.4f}"
                         f" train {record['timings']['train']:.1f} s, {record['epochs']} epochs")
            print(line, flush=True)


if __name__ == "__main__":
    main()
