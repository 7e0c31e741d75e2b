"""Fixtures shared by several test modules.

``isolated``: a test's private cache, ledger and working directory.  A module whose every
test needs it says ``pytestmark = pytest.mark.usefixtures("isolated")``; a module that needs
one more step wraps it in its own autouse fixture (e.g. ``isolated.without_real_data()``).
It is not autouse for the whole suite: some modules share one cache across their tests on
purpose (cutting a dataset once), and some read the repository through relative paths.

Fake plugins (in-memory modules registering specs) are in ``plugins_for_tests.py``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

# The suite trains models outside the command line, which sets this for its own processes:
# OpenMP threads that spin while waiting starve their siblings on a busy machine (a shared
# CI runner), making training 10-35x slower.  Before torch is imported by any test module.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CACHE_ENV = "M6BENCH_CACHE_DIR"
LEDGER_ENV = "M6BENCH_LEDGER"
DATA_DIR_ENV = "M6BENCH_DATA_DIR"
# set in a developer's shell, they would change which plugins or traces a test sees
LEAKING_ENV = ("M6BENCH_DISABLE_PLUGINS", "M6BENCH_TRACE_HOOKS")


@dataclass(frozen=True)
class Isolation:
    """Where an isolated test's files go: ``root`` (the working directory), ``cache``
    (``$M6BENCH_CACHE_DIR``) and ``ledger`` (``$M6BENCH_LEDGER``), all under ``tmp_path``."""

    root: Path
    cache: Path
    ledger: Path
    monkeypatch: pytest.MonkeyPatch

    def without_real_data(self) -> None:
        """Unset ``M6BENCH_DATA_DIR``: datasets come from the cache or fail offline."""
        self.monkeypatch.delenv(DATA_DIR_ENV, raising=False)

    def with_default_ledger(self) -> None:
        """Unset ``M6BENCH_LEDGER``: runs write the default ledger under ``root``."""
        self.monkeypatch.delenv(LEDGER_ENV, raising=False)

    def share_cache(self, cache: Path) -> None:
        """Use ``cache`` (e.g. a module-scoped folder) so datasets are cut once per module."""
        self.monkeypatch.setenv(CACHE_ENV, str(cache))


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Isolation:
    """A private cache, ledger and working directory under ``tmp_path``, so a test neither
    reads the developer's cache nor writes a ledger into the checkout."""
    isolation = Isolation(tmp_path, tmp_path / "cache", tmp_path / "ledger.jsonl", monkeypatch)
    monkeypatch.setenv(CACHE_ENV, str(isolation.cache))
    monkeypatch.setenv(LEDGER_ENV, str(isolation.ledger))
    for name in LEAKING_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return isolation


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    """One cache folder for a module's tests (pass it to ``isolated.share_cache``)."""
    return tmp_path_factory.mktemp("module-cache")


@contextlib.contextmanager
def _script_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def script_module():
    """``with script_module(path, name) as module``: a repository script that is not a
    package (docs/results.py, benchmarks/compare_recbole.py) imported as ``name``."""
    return _script_module


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep test output clean
        pass


@pytest.fixture
def archive_server(tmp_path):
    """Serve ``tmp_path/served`` on 127.0.0.1 at a free port; yields (folder, base url)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
