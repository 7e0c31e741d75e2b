"""Load tests of a served run with locust, headless, and the serving record they append.

Locust is driven as a library (``Environment`` + ``LocalRunner`` + a ``FastHttpUser``) in a
subprocess (``python -m m6bench.deploy.loadtest``): importing locust monkey-patches the
standard library for gevent, which must not reach the process that runs the service, the
model and the ledger.  Each simulated user sends requests back to back (a closed loop, no
think time), for user ids sampled by training activity (active users ask more often, as in
production traffic); ``concurrency`` such users run for ``duration_s`` seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m6bench.errors import M6BenchError

if TYPE_CHECKING:
    from m6bench.runs.artifacts import LoadedRun

# Base-run keys a serving record repeats (the contract); hardware is the serving machine's.
COPIED_KEYS = ("benchmark", "dataset", "cut", "plugin", "model", "config", "config_hash",
               "seed", "code", "software")
SAMPLED_USERS = 10_000


class LoadTestError(M6BenchError):
    """The load generator failed or could not reach the service."""


def activity_sample(loaded: LoadedRun, n: int = SAMPLED_USERS, seed: int = 0) -> list[str]:
    """``n`` original user ids drawn with probability proportional to training interactions."""
    counts = np.bincount(loaded.train.users.cpu().numpy(), minlength=loaded.train.n_users)
    probabilities = counts / counts.sum()
    picked = np.random.default_rng(seed).choice(len(counts), size=n, p=probabilities)
    return [str(loaded.user_ids[u]) for u in picked]


def latency_percentiles(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 in milliseconds (numpy's linear interpolation); None without samples."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (50, 95, 99)}


def drive(url: str, user_ids: Sequence[str], *, concurrency: int, duration_s: float,
          k: int = 10, timeout_s: float | None = None) -> dict[str, Any]:
    """Run locust against ``url`` in a subprocess; return its measurements: requests,
    errors, rps, latency_ms {p50, p95, p99}, duration_s."""
    with tempfile.TemporaryDirectory(prefix="m6bench-loadtest-") as folder:
        plan = Path(folder) / "plan.json"
        plan.write_text(json.dumps({"url": url, "user_ids": list(user_ids), "k": k,
                                    "concurrency": concurrency, "duration_s": duration_s}))
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", "m6bench.deploy.loadtest", str(plan), str(out)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  timeout=timeout_s or duration_s + 120)
        except subprocess.TimeoutExpired as exc:
            raise LoadTestError(f"The load generator did not finish within {exc.timeout:.0f} "
                                f"s of a {duration_s} s test against {url}.") from exc
        if done.returncode != 0 or not out.exists():
            raise LoadTestError(f"The load generator failed (exit {done.returncode}) against "
                                f"{url}: {done.stderr.strip()[-800:]}")
        return json.loads(out.read_text())


def serving_record(loaded: LoadedRun, measured: Mapping[str, Any], *, backend: str,
                   concurrency: int, max_batch: int, batch_wait_ms: float,
                   started_at: str, url: str | None = None) -> dict[str, Any]:
    """The contract's ``kind: "serving"`` record of one load test of ``loaded``."""
    from m6bench.registry import provenance
    from m6bench_leaderboard import SCHEMA_VERSION, redact

    base = loaded.record
    serving: dict[str, Any] = {
        "base_run_id": loaded.run_id, "variant": loaded.variant, "backend": backend,
        "concurrency": concurrency, "duration_s": measured["duration_s"],
        "requests": measured["requests"], "errors": measured["errors"],
        "rps": measured["rps"], "latency_ms": measured["latency_ms"],
        "max_batch": max_batch, "batch_wait_ms": batch_wait_ms,
    }
    if url is not None:
        serving["url"] = url  # a service started elsewhere: its hardware is not known here
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "run_id": uuid.uuid4().hex, "status": "ok",
        "error": None, "kind": "serving", "sweep_id": None,
        **{key: base[key] for key in COPIED_KEYS if key in base},
        "serving": serving, "metrics": {},
        "hardware": provenance.hardware(),
        "command": redact(list(sys.argv)),
        "started_at": started_at, "ended_at": datetime.now(timezone.utc).isoformat(),
    }
    if getattr(loaded, "code_changes", ()):
        record["allow_code_change"] = list(loaded.code_changes)
    return record


def load_test(loaded: LoadedRun, *, ledger: str | os.PathLike[str] | None = None,
              url: str | None = None, backend: str = "torch", concurrency: int = 16,
              duration_s: float = 10.0, max_batch: int = 64, batch_wait_ms: float = 2.0,
              k: int = 10, record: bool = True) -> dict[str, Any]:
    """Load-test ``loaded`` (served here on a free port unless ``url`` is given) and append
    its serving record to ``ledger`` (unless ``record`` is false); return the record."""
    from m6bench.deploy.serve import BackgroundServer, create_app
    from m6bench.runs.ledger import append_derived_record, ledger_path

    started_at = datetime.now(timezone.utc).isoformat()
    users = activity_sample(loaded)
    if url is None:
        app = create_app(loaded, backend=backend, max_batch=max_batch,
                         batch_wait_ms=batch_wait_ms)
        with BackgroundServer(app) as local_url:
            measured = drive(local_url, users, concurrency=concurrency,
                             duration_s=duration_s, k=k)
    else:
        measured = drive(url, users, concurrency=concurrency, duration_s=duration_s, k=k)
    result = serving_record(loaded, measured, backend=backend, concurrency=concurrency,
                            max_batch=max_batch, batch_wait_ms=batch_wait_ms,
                            started_at=started_at, url=url)
    if record:
        append_derived_record(ledger_path(ledger), result,
                              f"the serving record of run {loaded.run_id}")
    return result


# ----------------------------------------------------------------------------- the subprocess
def _run_locust(plan: Mapping[str, Any]) -> dict[str, Any]:
    """Runs inside the subprocess only: locust patches the standard library on import."""
    import gevent
    from locust import FastHttpUser, constant, events, task
    from locust.env import Environment

    user_ids, k = plan["user_ids"], int(plan["k"])
    latencies: list[float] = []
    errors = [0]

    class ServiceUser(FastHttpUser):
        host = plan["url"]
        wait_time = constant(0)

        @task
        def recommend(self) -> None:
            user = user_ids[np.random.randint(len(user_ids))]
            self.client.get(f"/recommend/{user}?k={k}", name="/recommend/{user}")

    def on_request(response_time: float, exception: BaseException | None, **_: Any) -> None:
        if exception is not None:
            errors[0] += 1
        else:
            latencies.append(response_time)

    environment = Environment(user_classes=[ServiceUser], events=events)
    environment.events.request.add_listener(on_request)
    runner = environment.create_local_runner()
    concurrency = int(plan["concurrency"])
    runner.start(concurrency, spawn_rate=concurrency)
    started = gevent.get_hub().loop.now()
    gevent.sleep(float(plan["duration_s"]))
    elapsed = gevent.get_hub().loop.now() - started
    runner.quit()
    requests = len(latencies) + errors[0]
    return {"duration_s": round(elapsed, 3), "requests": requests, "errors": errors[0],
            "rps": round(len(latencies) / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms": latency_percentiles(latencies)}


if __name__ == "__main__":
    plan_file, out_file = sys.argv[1], sys.argv[2]
    result = _run_locust(json.loads(Path(plan_file).read_text()))
    Path(out_file).write_text(json.dumps(result))
