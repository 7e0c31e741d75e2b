"""The speed ledgers of the peer comparisons (``docs/results/speed-*.jsonl``): one JSON
line per compared row, appended under a lock, and the m6bench run record each line names in
a ``-runs`` sibling ledger, so ``m6bench reproduce`` can re-run it."""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def runs_ledger(path: str | os.PathLike[str]) -> Path:
    """The sibling ledger of the m6bench run records: ``speed-recbole.jsonl`` ->
    ``speed-recbole-runs.jsonl``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-runs.jsonl")




def code_identity(plugin: str, catalog: Any = None) -> dict[str, Any]:
    """A record's ``code`` key for ``plugin`` by name (its part None when it is not loaded)."""
    from m6bench import load_catalog
    from m6bench.registry.provenance import code_identity as record_code

    catalog = catalog if catalog is not None else load_catalog()
    info = catalog.plugins.get(plugin)
    return record_code(info.code() if info is not None else None)


def finite_json(value: Any) -> Any:
    """``value`` with NaN and infinities as None and tuples as lists (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def append_line(path: str | os.PathLike[str], entry: Mapping[str, Any]) -> None:
    """Append ``entry`` as one JSON line (locked, flushed and synced: many writers may share
    ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(finite_json(entry), allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def copy_run_record(run_id: str | None, ledger: str | os.PathLike[str] | None,
                    target: Path) -> str | None:
    """Append the m6bench run record ``run_id`` of ``ledger``, without its per-user values,
    to ``target``.

    Returns its run id, or None when there is no record (a failed or unavailable side).
    """
    from m6bench_leaderboard import append_record

    if run_id is None or ledger is None:
        return None
    record = None
    with open(ledger, encoding="utf-8") as handle:
        for line in handle:
            if run_id in line:
                candidate = json.loads(line)
                if candidate.get("run_id") == run_id:
                    record = candidate
    if record is None:
        raise RuntimeError(f"run {run_id} is not in its ledger {ledger}")
    record.pop("per_user", None)
    append_record(target, record)
    return run_id
