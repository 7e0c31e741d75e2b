"""Skip a test whose server or browser is missing, or fail it where it is required.

A developer's machine without Chromium or PostgreSQL skips those tests with a reason.  A
job that exists to test them (the leaderboard workflow's test step) sets
``M6BENCH_REQUIRE=chromium`` (a comma list: ``chromium``, ``postgresql``), and then a
missing tool fails the run instead of turning it green while testing nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REQUIRE_ENV = "M6BENCH_REQUIRE"


def required_tools() -> set[str]:
    return {name.strip() for name in os.environ.get(REQUIRE_ENV, "").split(",") if name.strip()}


def skip_unless_required(tool: str, reason: str, *, allow_module_level: bool = False) -> None:
    """Skip with ``reason``; fail instead when ``M6BENCH_REQUIRE`` names ``tool``."""
    if tool in required_tools():
        pytest.fail(f"{reason} ({REQUIRE_ENV} requires {tool})", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def playwright_and_chromium() -> tuple[Any, str]:
    """Playwright's sync API and the Chromium binary to drive, or skip the calling module
    (fail it where ``M6BENCH_REQUIRE`` names ``chromium``)."""
    chromium = os.environ.get("M6BENCH_CHROMIUM", "/usr/bin/chromium")
    try:
        from playwright import sync_api
    except ImportError:
        skip_unless_required("chromium", "Playwright's Python package is missing: pip "
                             "install -e '.[test]'", allow_module_level=True)
    if not Path(chromium).is_file():
        skip_unless_required("chromium", f"Chromium is not installed at {chromium}: apt-get "
                             "install chromium chromium-driver, or `python -m playwright "
                             "install chromium` and set M6BENCH_CHROMIUM",
                             allow_module_level=True)
    return sync_api, chromium
