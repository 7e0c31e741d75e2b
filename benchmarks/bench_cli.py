"""Wall time of the command line's instant commands, each in fresh processes.

``m6bench --help``, ``m6bench plugins``, ``m6bench models`` and a mistyped plugin
(``m6bench run --plugin nope``) should answer in under a second on 2 cores: none of them
may import torch, Optuna or datasets.  Each command runs ``--repeats`` times in a fresh
process; the table shows the minimum wall seconds and the CPU seconds (user + system) of
that fastest run, which a busy machine inflates much less than wall time.  ``python -c
pass`` is the floor: the interpreter's own start-up.

The listings read a cache that a first listing fills (keyed by the installed plugins'
files); ``plugins (cold)`` and ``models (cold)`` time that first listing once, in a fresh
cache folder, which imports every plugin.

Usage::

    python benchmarks/bench_cli.py
    python benchmarks/bench_cli.py --repeats 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

M6BENCH = [sys.executable, "-m", "m6bench"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "m6bench --help": [*M6BENCH, "--help"],
    "m6bench plugins": [*M6BENCH, "plugins"],
    "m6bench models": [*M6BENCH, "models"],
    "m6bench run --plugin nope": [*M6BENCH, "run", "--plugin", "nope"],
}
COLD = ("m6bench plugins", "m6bench models")


def time_command(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh process running ``command``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    from tabulate import tabulate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    cache = tempfile.mkdtemp(prefix="m6bench-bench-cli-")
    env = {**os.environ, "M6BENCH_CACHE_DIR": cache}
    rows = []
    try:
        for name in COLD:  # the first listing of a fresh cache imports every plugin
            wall, cpu = time_command(COMMANDS[name], env)
            rows.append([f"{name} (cold)", wall, cpu, 1])
            shutil.rmtree(cache)
        subprocess.run(COMMANDS["m6bench models"], env=env, capture_output=True, check=True)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
        for _ in range(args.repeats):  # interleaved: the machine's load drifts
            for name, command in COMMANDS.items():
                samples[name].append(time_command(command, env))
        for name, runs in samples.items():
            wall, cpu = min(runs)
            rows.append([name, wall, cpu, len(runs)])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(tabulate(rows, headers=["command", "min wall s", "its CPU s", "runs"],
                   floatfmt=".3f", tablefmt="github"))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
