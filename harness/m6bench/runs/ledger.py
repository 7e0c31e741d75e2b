"""Where runs are recorded: the ledger a command writes when it is given none."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from m6bench.errors import LedgerError
from m6bench_leaderboard import RecordError, append_record

LEDGER_ENV = "M6BENCH_LEDGER"
DEFAULT_LEDGER = Path("m6bench-runs") / "ledger.jsonl"
# The default as the command line's help states it.
DEFAULT_LEDGER_TEXT = f"{DEFAULT_LEDGER.as_posix()} or ${LEDGER_ENV}"


def default_ledger() -> Path:
    """``$M6BENCH_LEDGER`` when set, else ``m6bench-runs/ledger.jsonl`` (read at each call,
    so a test or a shell can change it between runs)."""
    return Path(os.environ.get(LEDGER_ENV) or DEFAULT_LEDGER)


def ledger_path(ledger: str | os.PathLike[str] | None) -> Path:
    """The ledger a caller named, else :func:`default_ledger`."""
    return Path(ledger) if ledger else default_ledger()



def append_derived_record(ledger: Path, record: dict[str, Any], what: str) -> None:
    """Append a record derived from a run (``what``: e.g. "the variant record of run X"),
    or raise LedgerError naming it and the ledger."""
    try:
        append_record(ledger, record)
    except (RecordError, OSError) as exc:
        raise LedgerError(f"{what[:1].upper()}{what[1:]} was not written to {ledger}: "
                          f"{exc}") from exc
