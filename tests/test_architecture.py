"""The architecture stays visible: import contracts and lint run with the tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; install the test extras: pip install -e '.[test]'")
    return path


def test_import_contracts_are_kept():
    out = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_ruff_is_clean():
    out = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = 'pip install "torch==2.13.0" -e ".[test]"'
    test = "python -m pytest"
    assert install in readme and test in readme and "m6bench run --plugin classic" in readme
    assert ci.index(install) < ci.index(test)
