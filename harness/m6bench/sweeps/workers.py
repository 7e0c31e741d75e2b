"""Several worker processes sharing one study on one machine (``sweep --workers N``).

Each worker is ``m6bench worker`` in a process of its own, joined to the study through its
storage (a journal file, SQLite or a database server); the budget stays exact because every
worker counts the others' finished and running trials (:mod:`m6bench.sweeps.optimize`).
On a CPU the cores are split between the workers so that they do not oversubscribe them;
on a machine with several GPUs the workers take them in turn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
import torch

from m6bench.errors import ConfigError
from m6bench.sweeps.storage import requeue_trials_of, worker_identity

POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 30
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def worker_devices(device: str, count: int) -> list[str]:
    """The device of each of ``count`` workers: GPUs in turn when ``device`` names no index
    and the machine has several, else ``device`` for every worker."""
    if count < 1:
        raise ConfigError(f"--workers must be at least 1, not {count}.")
    gpus = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if gpus > 1:
        return [f"cuda:{k % gpus}" for k in range(count)]
    return [device] * count


def _worker_environment(count: int, device: str) -> dict[str, str]:
    env = dict(os.environ)
    if not device.startswith("cuda") and not any(v in env for v in THREAD_VARIABLES):
        threads = str(max(1, (os.cpu_count() or 1) // count))
        env.update(dict.fromkeys(THREAD_VARIABLES, threads))
    return env


def start_workers(storage: str, study_name: str, devices: Sequence[str], ledger: Path,
                  ) -> list[subprocess.Popen]:
    """Start one ``m6bench worker`` process per device; their output goes to this one's."""
    processes = []
    for device in devices:
        command = [sys.executable, "-m", "m6bench", "worker", "--storage", storage,
                   "--study", study_name, "--device", device, "--ledger", str(ledger),
                   "--quiet"]
        processes.append(subprocess.Popen(
            command, env=_worker_environment(len(devices), device), start_new_session=True))
    return processes


def stop_workers(processes: Sequence[subprocess.Popen]) -> None:
    """Interrupt every worker (each records its running trial as interrupted), then kill
    the ones still alive after a grace period."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_workers(study: optuna.Study, storage: str, devices: Sequence[str], ledger: Path,
                report: Callable[[str], None]) -> None:
    """Run the study's trials in one worker process per device until all have ended.

    A worker that dies (killed, out of memory) has its running trials failed and queued
    again, as a heartbeat would do on a database storage; the others go on.
    """
    processes = start_workers(storage, study.study_name, devices, ledger)
    report(f"started {len(processes)} workers on {', '.join(devices)}")
    pending = list(processes)
    try:
        while pending:
            time.sleep(POLL_SECONDS)
            for process in [p for p in pending if p.poll() is not None]:
                pending.remove(process)
                if process.returncode != 0:
                    requeued = requeue_trials_of(study, worker_identity(process.pid))
                    report(f"worker {process.pid} exited {process.returncode}; "
                           f"{requeued} running trial(s) queued again")
    except BaseException:
        stop_workers(processes)
        raise
    failed = [p for p in processes if p.returncode != 0]
    if len(failed) == len(processes):
        raise ConfigError(f"All {len(processes)} workers exited with an error (exit codes "
                          f"{', '.join(str(p.returncode) for p in failed)}); their output is "
                          "above.")
