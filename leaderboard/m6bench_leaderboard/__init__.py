"""The results side of m6bench: the ledger record schema and file format.

This package owns the contract between producing results and showing them.  It imports
nothing from the harness, torch or any plugin (an import contract checks it).
"""

from __future__ import annotations

from m6bench_leaderboard.ledger import LedgerReadReport, append_record, read_ledger
from m6bench_leaderboard.schema import SCHEMA_VERSION, RecordError, RunRecord, validate_record

__all__ = [
    "SCHEMA_VERSION",
    "LedgerReadReport",
    "RecordError",
    "RunRecord",
    "append_record",
    "read_ledger",
    "validate_record",
]
