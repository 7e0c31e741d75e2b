"""Seconds of one training epoch of bpr-mf, gnn-mf and m6-fusion on ML-1M-shaped data.

``benchmarks/test_bench_training.py`` times the same epochs on the real ML-1M, which the
device machine does not have; this times them on the synthetic dataset cut to ML-1M's
shape (``shapes.py``), each model with its recipe's default config, after one warm-up
epoch, the median of ``--rounds`` epochs.  Writes a JSON list of
``{"model", "seconds", "rounds", "interactions", "device"}`` (a model that cannot be built
gets ``"error"`` instead of ``"seconds"``, and the others still run).

    python benchmarks/gpu/epochs.py --device cuda --out epochs.json [--tiny]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import shapes

from m6bench.registry.catalog import load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.prepare import prepare_benchmark

EPOCH_MODELS = (("classic", "bpr-mf"), ("gnn-mf", "gnn-mf"), ("m6-fusion", "m6-fusion"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epochs(catalog, bench, plugin: str, model: str, device: torch.device,
                rounds: int) -> dict[str, object]:
    """One warm-up epoch, then ``rounds`` timed ones; the median in seconds."""
    name, spec = catalog.model(plugin, model)
    torch.manual_seed(0)
    recommender = spec.build(bench.train, resolve_config(spec.defaults, model_name=name))
    recommender = recommender.to(device)
    recommender.train()
    recommender.fit_epoch(bench.train, 1)
    _sync(device)
    seconds = []
    for epoch in range(2, rounds + 2):
        started = time.perf_counter()
        recommender.fit_epoch(bench.train, epoch)
        _sync(device)
        seconds.append(time.perf_counter() - started)
    return {"seconds": statistics.median(seconds), "rounds": rounds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="the tiny ML-1M shape, 1 round")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    shape = shapes(args.tiny)[-1]  # the ML-1M-shaped one
    catalog = load_catalog()
    spec = dataclasses.replace(catalog.benchmarks.get("synthetic"), name=shape.label,
                               dataset_options=shape.dataset_options())
    bench = prepare_benchmark(catalog, spec, seed=0, device=device)
    rounds = 1 if args.tiny else args.rounds
    results = []
    for plugin, model in EPOCH_MODELS:
        row: dict[str, object] = {"model": f"{plugin}/{model}", "shape": shape.label,
                                  "interactions": bench.train.n_interactions,
                                  "device": str(device)}
        try:
            row.update(time_epochs(catalog, bench, plugin, model, device, rounds))
        except Exception as exc:  # one model's failure is reported, the others still run
            row["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(row), flush=True)
        results.append(row)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
