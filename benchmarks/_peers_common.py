"""What the peer comparisons (compare_recbole.py, compare_peers.py) share: the peer's virtual
environment, child processes with their own peak memory, thread pinning, the machine's
description, a peer's saved parameters scored by m6bench's evaluator (with m6bench's
early-stopping rule), number formatting and the PASS/FAIL lines.

A sibling module, not a package: the scripts put their own folder on ``sys.path`` to import it.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


# ---------------------------------------------------------------------------- venv, children
def venv_python(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def build_venv(venv: Path, recipe: Sequence[Sequence[str]], python: str = sys.executable
               ) -> None:
    """Create ``venv`` with ``python -m venv`` and run one ``pip install`` per recipe line."""
    venv = Path(venv)
    steps = [[python, "-m", "venv", str(venv)]]
    steps += [[str(venv_python(venv)), "-m", "pip", "install", *packages] for packages in recipe]
    for step in steps:
        print("$", " ".join(step), flush=True)
        subprocess.run(step, check=True)


def pinned_env(threads: int, *, wait_policy: str | None = None) -> dict[str, str]:
    """This process's environment with every thread pool a side may use pinned to
    ``threads``; ``wait_policy`` sets ``OMP_WAIT_POLICY`` (PASSIVE: idle OpenMP threads sleep
    instead of spinning on cores other processes need)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    if wait_policy is not None:
        env["OMP_WAIT_POLICY"] = wait_policy
    return env


# Linux starts a forked child's peak RSS at its parent's resident size, and the figure
# survives exec: a big parent (this script once it imported torch; pytest after a language
# model) would show in every child's peak.  A small launcher process starts the command and
# reports the command's own peak (``os.wait4``).
_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss], out)
"""


def run_child(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path,
              timeout: float | None, echo: str | None = None
              ) -> tuple[int, float | None, float]:
    """Run ``cmd`` with its output in ``log_path``; (exit code, peak RSS MB, wall seconds).

    The peak RSS is the command's own, neither this process's nor a sum over children; a
    command killed at ``timeout`` returns -9 and no peak (None).
    """
    started = time.perf_counter()
    report = log_path.with_name(log_path.name + ".rusage.json")
    report.unlink(missing_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(report), *cmd],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(env), cwd=cwd, text=True, bufsize=1,
                                start_new_session=True)  # a timeout kills the whole group
        timer = (threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
                 if timeout else None)
        if timer is not None:
            timer.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if echo is not None:
                sys.stdout.write(f"{echo} {line}")
        proc.stdout.close()
        proc.wait()
        if timer is not None:
            timer.cancel()
    if not report.is_file():  # killed before the command ended
        return proc.returncode, None, time.perf_counter() - started
    code, max_rss = json.loads(report.read_text())
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024
    return code, max_rss * scale, time.perf_counter() - started


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---------------------------------------------------------------------------- the machine
def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "loadavg": os.getloadavg()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def m6bench_versions() -> dict[str, str | None]:
    import importlib.metadata
    import platform

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "m6bench": version("m6bench"),
            "torch": version("torch")}


# ---------------------------------------------------------------------------- peer scores
class SavedScores:
    """A peer's saved parameters as an m6bench scorer: ``user (U, d) @ item (I, d)^T +
    item_bias``; item-item weights ``W`` score as ``train rows @ W``."""

    def __init__(self, folder: Path, train_matrix: Any) -> None:
        import numpy as np
        import torch

        def load(name: str) -> torch.Tensor | None:
            path = Path(folder) / f"{name}.npy"
            return torch.from_numpy(np.load(path)) if path.exists() else None

        weights = load("item_item")
        if weights is not None:
            self.user, self.item = train_matrix.to_dense(), weights.T.contiguous()
        else:
            self.user, self.item = load("user"), load("item")
        self.item_bias = load("item_bias")

    def eval(self) -> SavedScores:
        return self

    # the evaluator copies scores that share storage with its owner's tensors before masking
    def parameters(self) -> tuple[Any, ...]:
        return ()

    def buffers(self) -> tuple[Any, ...]:
        return tuple(t for t in (self.user, self.item, self.item_bias) if t is not None)

    def score(self, users: Any) -> Any:
        scores = self.user[users] @ self.item.T
        return scores if self.item_bias is None else scores + self.item_bias

    def predict(self, users: Any, items: Any) -> Any:
        raise NotImplementedError("peer parameters are compared on ranking only")


def early_stopping_pick(values: Sequence[float], patience: int) -> tuple[int, int]:
    """(index of the best, evaluations made) of a validation curve under m6bench's rule: stop
    after ``patience`` evaluations in a row without a strict gain; keep the best."""
    best_index, best, stale = 0, float("-inf"), 0
    for index, value in enumerate(values):
        if value > best:
            best_index, best, stale = index, value, 0
        else:
            stale += 1
        if stale >= patience:
            return best_index, index + 1
    return best_index, len(values)


SCORED = ("valid_curve", "best_epoch", "stopped_epoch", "ndcg10", "m6bench_eval_s")


def score_snapshots(bench: Any, snapshots: Sequence[Mapping[str, Any]],
                    patience: int) -> dict[str, Any]:
    """m6bench's evaluator on a peer's snapshots: validation NDCG@10 of each, the early-
    stopping pick, then the test metrics of the pick (timed)."""
    import time

    from m6bench import evaluate_part

    def evaluate(snapshot: Mapping[str, Any], part: str) -> Any:
        return evaluate_part(SavedScores(Path(snapshot["path"]), bench.train.matrix), bench,
                             part, tasks=("ranking",), batch_size=2048)

    curve = [evaluate(s, "valid").metrics["ndcg@10"] for s in snapshots]
    pick, evaluated = early_stopping_pick(curve, patience)
    scorer = SavedScores(Path(snapshots[pick]["path"]), bench.train.matrix)
    started = time.perf_counter()
    test = evaluate_part(scorer, bench, "test", tasks=("ranking",), batch_size=2048)
    return {"valid_curve": curve, "best_epoch": snapshots[pick]["epoch"],
            "stopped_epoch": snapshots[evaluated - 1]["epoch"],
            "ndcg10": test.metrics["ndcg@10"], "m6bench_eval_s": time.perf_counter() - started}


# ---------------------------------------------------------------------------- figures
def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def fmt(value: float | None, kind: str = "s") -> str:
    """A figure for a table: ``s`` seconds (3 significant digits), ``x`` a ratio, ``m`` a
    metric (4 decimals), ``mb`` megabytes, ``r`` a metric ratio (3 decimals)."""
    if value is None:
        return "—"
    if kind == "x":
        return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"
    if kind == "m":
        return f"{value:.4f}"
    if kind == "mb":
        return f"{value:,.0f}"
    if kind == "r":
        return f"{value:.3f}"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def render_checks(checks: Sequence[Mapping[str, Any]]) -> str:
    """One ``PASS`` / ``FAIL`` / ``n/a`` line per check (n/a: a figure is missing)."""
    lines = []
    for check in checks:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[check["passed"]]
        value = "—" if check["value"] is None else f"{check['value']:.3f}"
        lines.append(f"  {mark}  {check['check']}: {value} (target {check['target']})")
    return "\n".join(lines)
