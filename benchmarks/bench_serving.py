"""Serving latency and throughput of bpr-mf on ML-1M: the in-process floor, then a real
uvicorn server driven by locust at 1, 16 and 64 concurrent users, per backend.

* ``floor``: one user's ``score`` + mask + top-10 in-process (the same scorer the service
  runs), median over repeated calls: what a request costs without HTTP;
* ``served``: ``m6bench.deploy.serve`` on 127.0.0.1 in this process, load from
  ``m6bench.deploy.loadtest`` (locust in a subprocess, user ids sampled by activity).

Targets: served p50 within 3 ms of the floor at 1 user; at least 500 requests/s at 64 users.
The server and the load generator share the machine's cores, as on a developer's laptop.

Usage::

    export M6BENCH_DATA_DIR=/path/to/data
    python benchmarks/bench_serving.py                       # trains bpr-mf in-process
    python benchmarks/bench_serving.py --run-id RUN_ID       # a run saved with --save
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the command line sets it

import torch

from m6bench import LoadedRun, load_run, seed_everything
from m6bench.deploy.export import OnnxScorer, TorchScorer, export_run
from m6bench.deploy.loadtest import activity_sample, drive
from m6bench.deploy.serve import BackgroundServer, create_app, serving_threads
from m6bench.runs.run import RunRequest, plan_run, prepare


def trained_in_process(dataset: str, epochs: int, folder: Path) -> LoadedRun:
    """bpr-mf fitted for a few epochs (serving cost does not depend on quality)."""
    plan = plan_run(RunRequest(plugin="classic", model="bpr-mf", dataset=dataset,
                               device="cpu", command=[]))
    bench = prepare(plan)
    seed_everything(0)
    model = plan.model_spec.build(bench.train, plan.config)
    for epoch in range(1, epochs + 1):
        model.train()
        model.fit_epoch(bench.train, epoch)
    model.eval()
    record = {"run_id": "bench-serving", "model": "bpr-mf", "config": plan.config,
              "plugin": {"name": "classic"}, "seed": 0,
              "benchmark": {"name": plan.benchmark.name, "version": bench.version}}
    return LoadedRun(run_id="bench-serving", record=record, model=model, train=bench.train,
                     user_ids=[str(u) for u in bench.dataset.user_ids],
                     item_ids=[str(i) for i in bench.dataset.item_ids], variant=None,
                     artifact_dir=folder)


def floor_ms(scorer, users: list[int], k: int) -> float:
    """Median milliseconds of one user's in-process top-k."""
    for user in users[:20]:  # warm-up
        scorer.top_k(torch.tensor([user]), k)
    times = []
    for user in users:
        started = time.perf_counter()
        scorer.top_k(torch.tensor([user]), k)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", help="a run saved with --save (default: train here)")
    parser.add_argument("--ledger", default=None)
    parser.add_argument("--variant", default=None, help="a compressed variant (e.g. int8)")
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    args = parser.parse_args(argv)

    torch.set_num_threads(serving_threads())
    folder = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    if args.run_id:
        loaded = load_run(args.run_id, args.ledger, variant=args.variant,
                          allow_code_change=True)
    else:
        loaded = trained_in_process(args.dataset, args.epochs, folder)
    onnx_path = export_run(loaded, folder / "model.onnx")
    scorers = {"torch": TorchScorer(loaded.model, loaded.train.matrix),
               "onnx": OnnxScorer(onnx_path, loaded.train.matrix)}
    users = activity_sample(loaded, n=5000)
    index = {u: i for i, u in enumerate(loaded.user_ids)}
    sample = [index[u] for u in users[:500]]
    print(f"bpr-mf on {args.dataset}: {loaded.train.n_users} users, {loaded.train.n_items} "
          f"items; torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; "
          f"{args.duration:.0f} s per load level")
    print("| backend | floor p50 (ms) | users | served p50 (ms) | p95 (ms) | p99 (ms) "
          "| requests/s | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for backend in args.backends:
        floor = floor_ms(scorers[backend], sample, 10)
        with BackgroundServer(create_app(loaded, backend=backend)) as url:
            for concurrency in args.concurrency:
                measured = drive(url, users, concurrency=concurrency,
                                 duration_s=args.duration)
                latency = measured["latency_ms"]
                print(f"| {backend} | {floor:.3f} | {concurrency} | {latency['p50']} | "
                      f"{latency['p95']} | {latency['p99']} | {measured['rps']} | "
                      f"{measured['errors']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
