"""The results side of m6bench: the ledger record schema and file format, board specs, and
the leaderboard built from them (statistics, static site, terminal and Markdown tables).

This package owns the contract between producing results and showing them.  It imports
nothing from the harness, torch or any plugin (an import contract checks it).
"""

from __future__ import annotations

from m6bench_leaderboard.aggregate import (
    build_leaderboard,
    holm,
    mean_ci,
    paired_pvalue,
)
from m6bench_leaderboard.board import BoardError, BoardModel, BoardSpec, Budget, load_board
from m6bench_leaderboard.ledger import LedgerReadReport, append_record, read_ledger
from m6bench_leaderboard.records import read_records
from m6bench_leaderboard.redact import redact, redact_text
from m6bench_leaderboard.schema import (
    SCHEMA_VERSION,
    RecordError,
    RunRecord,
    code_key,
    validate_record,
)
from m6bench_leaderboard.show import render as render_leaderboard
from m6bench_leaderboard.site import SiteError, SiteReport, build_site

__all__ = [
    "SCHEMA_VERSION",
    "BoardError",
    "BoardModel",
    "BoardSpec",
    "Budget",
    "LedgerReadReport",
    "RecordError",
    "RunRecord",
    "SiteError",
    "SiteReport",
    "append_record",
    "build_leaderboard",
    "build_site",
    "code_key",
    "holm",
    "load_board",
    "mean_ci",
    "paired_pvalue",
    "read_ledger",
    "read_records",
    "redact",
    "redact_text",
    "render_leaderboard",
    "validate_record",
]
