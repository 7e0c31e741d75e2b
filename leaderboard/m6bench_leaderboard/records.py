"""Reading a ledger fast for the leaderboard: final runs keep their per-user values, the
other records are parsed without them, and bad lines are skipped and listed."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m6bench_leaderboard.redact import needs_redaction, redact
from m6bench_leaderboard.schema import REQUIRED, SCHEMA_VERSION, STATUSES

_FINAL = re.compile(rb'"kind"\s*:\s*"final"')
# The per-user values of a record written by the ledger (compact JSON) hold only lists of
# numbers: a flat object, cut out before parsing records that need none.
_PER_USER = b',"per_user":{'


# ============================================================================ reading
@dataclass
class LoadedRecords:
    """Records read from a ledger (per-user values kept on finals only), and skipped lines.

    ``lines`` holds the exact ledger line of each final run, by run id.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    lines: dict[str, bytes] = field(default_factory=dict)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _check_top_level(record: Mapping[str, Any]) -> str | None:
    for key, kind in REQUIRED.items():
        value = record.get(key)
        if key not in record:
            return f"record has no {key!r} key"
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"record key {key!r} is a {type(value).__name__}, expected {kind}"
    if record["status"] not in STATUSES:
        return f"record status {record['status']!r} is not one of {STATUSES}"
    if record["schema_version"] > SCHEMA_VERSION:
        return f"record schema_version {record['schema_version']} is newer than this reader"
    return None


def _is_final(text: bytes) -> bool:
    if b'"kind":"final"' in text:
        return True
    return b'"final"' in text and _FINAL.search(text) is not None


def _without_per_user(text: bytes) -> bytes:
    """``text`` without its ``"per_user"`` object, when it is the flat one the ledger writes."""
    start = text.find(_PER_USER)
    if start < 0:
        return text
    body = start + len(_PER_USER)
    end = text.find(b"}", body)
    if end < 0 or text.find(b"{", body, end) >= 0 or text.find(b'"', body, end) < 0:
        return text  # not the flat object of lists: parse it all
    return text[:start] + text[end + 1:]


try:  # an optional, faster parser (a dependency of the test extras); same results
    import orjson

    def _loads(text: bytes) -> Any:
        return orjson.loads(text)  # refuses NaN and infinities, like the ledger
except ImportError:  # pragma: no cover - depends on the environment
    def _loads(text: bytes) -> Any:
        return json.loads(text, parse_constant=_reject_constant)


def read_records(path: str | os.PathLike[str]) -> LoadedRecords:
    """Every record of a ledger that the leaderboard can use, in append order.

    Like :func:`m6bench_leaderboard.read_ledger` (torn, non-JSON and invalid lines are
    skipped and listed), but built for big ledgers: only final runs keep their per-user
    values, and records are checked at the top level (JSON itself cannot hold anything
    else once NaN and infinities are refused).
    """
    loaded = LoadedRecords()
    path = Path(path)
    if not path.exists():
        return loaded
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.strip()
            if not text:
                continue
            short = _without_per_user(text)
            final = _is_final(short)  # "kind" is never inside the per-user values
            try:
                record = _loads(text if final else short)
            except (ValueError, UnicodeDecodeError) as exc:  # orjson's error is a ValueError
                torn = "" if raw.endswith(b"\n") else " (torn: no newline, a writer was killed)"
                loaded.skipped.append((number, f"not JSON{torn}: {exc}"))
                continue
            problem = (_check_top_level(record) if isinstance(record, dict)
                       else "a line is not a JSON object")
            if problem:
                loaded.skipped.append((number, problem))
                continue
            if needs_redaction(short.decode("utf-8", "replace")):  # written before redaction
                record = redact(record)
                text = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
            loaded.records.append(record)
            if final:
                loaded.lines[str(record["run_id"])] = text
    return loaded
