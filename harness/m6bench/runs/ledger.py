"""Where runs are recorded: the ledger a command writes when it is given none."""

from __future__ import annotations

import os
from pathlib import Path

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
