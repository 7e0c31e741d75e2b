"""Seconds per training epoch on a quiet CPU and beside a competing CPU load, before and
after the command line's ``OMP_WAIT_POLICY=PASSIVE`` default.

torch's OpenMP runtime (libgomp) lets idle worker threads spin by default.  When another
process wants the same cores, a spinning worker burns the time slice its sibling needs, and
2-thread training got 10-35x slower.  This benchmark measures that, per model:

* ``before``: a fresh process with ``OMP_WAIT_POLICY=ACTIVE``: workers spin while they
  wait, as the command line ran before it set the policy (with the variable unset, libgomp
  spins for a while before it sleeps, so an unset policy measures something in between);
* ``after``: a fresh process that imports ``m6bench.cli`` first, exactly as ``m6bench``
  does, so the policy the command line chooses is the one measured.

Each is timed quiet and beside one busy process per core (started and stopped here, and
bounded by ``--load-seconds`` even if this script is killed).  Repetitions are interleaved,
because a shared machine is never fully quiet; the table shows min and median seconds per
epoch and the busy/quiet slowdown of the medians (the target is at most 2x).

Usage::

    export M6BENCH_DATA_DIR=/path/to/data
    python benchmarks/bench_busy.py                          # bpr-mf and m6-fusion, 3 reps
    python benchmarks/bench_busy.py --models bpr-mf --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from typing import Any

MODELS = {"bpr-mf": "classic", "m6-fusion": "m6-fusion"}
MODES = ("before", "after")
LOADS = ("quiet", "busy")

# One worker: load ml-100k, build the model, time ``--epochs`` training epochs (fit only,
# no evaluation), print the seconds of each as JSON.
WORKER = r"""
import json, sys, time
mode, plugin, model_name, threads, epochs = sys.argv[1:6]
if mode == "after":
    import m6bench.cli  # the command line's entry point sets the wait policy
import torch
if int(threads):
    torch.set_num_threads(int(threads))
from m6bench.runs.run import RunRequest, plan_run, prepare, seed_everything
plan = plan_run(RunRequest(plugin=plugin, model=model_name, benchmark="ml-100k",
                           device="cpu"))
bench = prepare(plan)
seed_everything(0)
model = plan.model_spec.build(bench.train, plan.config)
model.train()
seconds = []
for epoch in range(1, int(epochs) + 1):
    started = time.perf_counter()
    model.fit_epoch(bench.train, epoch)
    seconds.append(time.perf_counter() - started)
print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))
"""

# A busy process: spins until its deadline, so a killed benchmark leaves no load behind.
SPINNER = ("import sys, time\nend = time.time() + float(sys.argv[1])\n"
           "while time.time() < end: pass\n")


def start_load(cores: int, seconds: float) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", SPINNER, str(seconds)]) for _ in range(cores)]


def stop_load(spinners: list[subprocess.Popen[bytes]]) -> None:
    for spinner in spinners:
        spinner.terminate()
    for spinner in spinners:
        spinner.wait(timeout=30)


def time_epochs(mode: str, model: str, load: str, args: argparse.Namespace) -> list[float]:
    """Seconds of each epoch after the warm-up ones in one fresh process; ``inf`` when
    the process ran past ``--load-seconds`` (shown as ``> N``)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if mode == "before":
        env["OMP_WAIT_POLICY"] = "ACTIVE"
    command = [sys.executable, "-c", WORKER, mode, MODELS[model], model, str(args.threads),
               str(args.warmup + args.epochs)]
    spinners = start_load(args.cores, args.load_seconds) if load == "busy" else []
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True,
                             timeout=args.load_seconds, check=False)
    except subprocess.TimeoutExpired:
        return [math.inf]
    finally:
        stop_load(spinners)
    if out.returncode != 0:
        raise RuntimeError(f"{mode}/{model}/{load} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"][args.warmup:]


def shown(seconds: float, limit: float) -> str:
    return f"> {limit:.0f}" if math.isinf(seconds) else f"{seconds:.3f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3, help="Fresh processes per cell.")
    parser.add_argument("--epochs", type=int, default=2, help="Timed epochs per process.")
    parser.add_argument("--warmup", type=int, default=1,
                        help="Untimed epochs before them (first-touch allocations).")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default, one per core).")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="Busy processes of the competing load.")
    parser.add_argument("--load-seconds", type=float, default=900,
                        help="Upper bound of one worker (its cell reads '> N') and of its "
                        "competing load.")
    parser.add_argument("--out", default=None, help="Also write the raw seconds as JSON.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from tabulate import tabulate

    args = parse_args(argv)
    load_start = os.getloadavg()
    cells = [(model, mode, load) for model in args.models for mode in MODES for load in LOADS]
    seconds: dict[tuple[str, str, str], list[float]] = {cell: [] for cell in cells}
    for repeat in range(args.repeats):  # interleaved: drift in the machine's load hits all
        for cell in cells:
            seconds[cell] += time_epochs(cell[1], cell[0], cell[2], args)
            print(f"repeat {repeat + 1}/{args.repeats} {'/'.join(cell)}: "
                  f"{shown(seconds[cell][-1], args.load_seconds)}s", file=sys.stderr,
                  flush=True)
    rows = []
    for model in args.models:
        for mode in MODES:
            quiet, busy = seconds[(model, mode, "quiet")], seconds[(model, mode, "busy")]
            cells = (min(quiet), statistics.median(quiet), min(busy), statistics.median(busy))
            ratio = statistics.median(busy) / statistics.median(quiet)
            rows.append([model, mode, *(shown(c, args.load_seconds) for c in cells),
                         f"{ratio:.1f}x" if math.isfinite(ratio) else "-"])
    print(tabulate(rows, headers=["model", "wait policy", "quiet min s", "quiet median s",
                                  "busy min s", "busy median s", "slowdown (median)"],
                   tablefmt="github"))
    print(f"{os.cpu_count()} cores, {args.cores} busy processes, torch threads "
          f"{args.threads or 'default'}, {args.epochs} timed epochs x {args.repeats} "
          f"processes per cell; load average (1/5/15 min) at start "
          f"{'/'.join(f'{v:.2f}' for v in load_start)}, at end "
          f"{'/'.join(f'{v:.2f}' for v in os.getloadavg())} (the busy processes included)")
    if args.out:
        raw: dict[str, Any] = {"/".join(cell): values for cell, values in seconds.items()}
        with open(args.out, "w") as handle:
            json.dump(raw, handle, indent=2)


if __name__ == "__main__":
    main()
