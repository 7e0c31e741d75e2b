"""The ledger file: append-only JSON lines, safe against killed writers and many writers.

Each record is one line written with a single ``write`` on a file opened ``O_APPEND``,
under an exclusive ``flock`` (so concurrent writers never interleave), then ``fsync``-ed.
A writer killed mid-write can leave at most one torn line at the end; the next writer
first terminates it with a newline so its own record stays whole, and the reader reports
and skips lines that do not parse.  Nothing already recorded is ever rewritten.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m6bench_leaderboard.schema import RecordError, dumps_record, validate_record


@dataclass
class LedgerReadReport:
    """Records read from a ledger, and the lines that were skipped (1-based, with why)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


def append_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line; validates first so nothing invalid is written."""
    line = (dumps_record(record) + "\n").encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size > 0:
            with open(path, "rb") as reader:
                reader.seek(size - 1)
                if reader.read(1) != b"\n":
                    line = b"\n" + line  # a previous writer died mid-line
        written = 0
        while written < len(line):
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        yield from enumerate(handle, start=1)


def read_ledger(path: str | os.PathLike[str]) -> LedgerReadReport:
    """Every complete, valid record of the ledger, in append order.

    A missing file reads as empty.  Lines that are torn (a killed writer), not JSON, or
    not valid records are skipped and listed in :attr:`LedgerReadReport.skipped`.
    """
    report = LedgerReadReport()
    path = Path(path)
    if not path.exists():
        return report
    for number, raw in iter_lines(path):
        text = raw.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise RecordError("a line is not a JSON object")
            validate_record(record)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            torn = "" if raw.endswith(b"\n") else " (torn: no newline, a writer was killed)"
            report.skipped.append((number, f"not JSON{torn}: {exc}"))
            continue
        except RecordError as exc:
            report.skipped.append((number, str(exc)))
            continue
        report.records.append(record)
    return report
