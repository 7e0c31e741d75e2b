"""The architecture stays visible: import contracts and lint run with the tests."""

from __future__ import annotations

import ast
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


# A newcomer reads a module in one sitting and a function on one screen.
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
SIZED_TREES = ("harness", "plugins", "leaderboard")


def oversized(paths: list[Path]) -> list[str]:
    """Modules over MAX_MODULE_LINES and functions (nested ones too) over MAX_FUNCTION_LINES,
    one line each naming the place and its size."""
    found = []
    for path in paths:
        text = path.read_text()
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{path}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    found.append(f"{path}:{node.lineno} {node.name}: {size} lines "
                                 f"(at most {MAX_FUNCTION_LINES})")
    return found


def test_no_module_or_function_is_too_long():
    paths = sorted(p for tree in SIZED_TREES for p in (ROOT / tree).rglob("*.py"))
    assert len(paths) > 100
    assert oversized(paths) == [], "split these into well-named pieces"


def test_the_size_check_finds_a_long_function_and_module(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    long_function = tmp_path / "long_function.py"
    long_function.write_text(f"def outer():\n{body}\n")
    short = tmp_path / "short.py"
    short.write_text("def fine():\n    return 1\n" + "\n" * (MAX_MODULE_LINES - 3))
    long_module = tmp_path / "long_module.py"
    long_module.write_text("\n" * (MAX_MODULE_LINES + 1))
    assert oversized([long_function, short, long_module]) == [
        f"{long_function}:1 outer: {MAX_FUNCTION_LINES + 1} lines (at most {MAX_FUNCTION_LINES})",
        f"{long_module}: {MAX_MODULE_LINES + 1} lines (at most {MAX_MODULE_LINES})",
    ]
