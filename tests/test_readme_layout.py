"""The README's layout table is generated from the folders and their docstrings (docs/layout.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def layout(script_module):
    with script_module(ROOT / "docs" / "layout.py", "docs_layout") as module:
        yield module


def test_the_readme_layout_is_current(layout):
    problems = layout.problems(layout.README.read_text(encoding="utf-8"))
    assert not problems, (f"README.md's layout table is out of date ({'; '.join(problems)}); "
                          f"regenerate it: {layout.REGENERATE}")


def _tree(root: Path) -> Path:
    """A miniature checkout: a harness with one documented package, a plugin, the rest."""
    (root / "pyproject.toml").write_text(
        '[[tool.importlinter.contracts]]\nname = "h"\ntype = "layers"\n'
        'containers = ["m6bench"]\nlayers = ["runs", "data"]\n')
    for folder, doc in [("harness/m6bench", "The core."), ("harness/m6bench/data", "Data: rows."),
                        ("harness/m6bench/runs", "Runs: ``run()`` and more.\n\nDetails."),
                        ("plugins/m6bench_x", "x: a model. It ranks."),
                        ("leaderboard/m6bench_leaderboard", "Results.")]:
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text(f'"""{doc}"""\n')
    for folder in ("benchmarks", "docs", "tests"):
        (root / folder).mkdir()
    return root


def _readme(layout, root: Path) -> str:
    return f"# x\n\n{layout.START}\n{layout.render(root)}{layout.END}\n\nmore\n"


def test_rows_are_first_sentences_in_layer_order(layout, tmp_path):
    root = _tree(tmp_path)
    rows = [line for line in layout.render(root).splitlines() if line.startswith("| `")]
    assert rows[:3] == ["| `harness/m6bench/` | The core. |",
                        "| `harness/m6bench/runs/` | Runs: `run()` and more. |",
                        "| `harness/m6bench/data/` | Data: rows. |"]
    assert "| `plugins/m6bench_x/` | x: a model. |" in rows
    assert "runs > data." in layout.render(root)
    assert layout.problems(_readme(layout, root), root) == []


def test_a_new_folder_missing_from_the_table_is_named(layout, tmp_path):
    root = _tree(tmp_path)
    readme = _readme(layout, root)
    (root / "harness/m6bench/sweeps").mkdir()
    (root / "harness/m6bench/sweeps/__init__.py").write_text('"""Sweeps."""\n')
    assert layout.problems(readme, root) == [
        "harness/m6bench/sweeps/ is missing from the layout table"]
    assert layout.problems(layout.rewrite(readme, root), root) == []
    assert layout.rewrite(readme, root).endswith(f"{layout.END}\n\nmore\n")


def test_a_listed_folder_that_is_gone_is_named(layout, tmp_path):
    root = _tree(tmp_path)
    readme = _readme(layout, root)
    (root / "plugins/m6bench_x/__init__.py").unlink()
    (root / "plugins/m6bench_x").rmdir()
    assert layout.problems(readme, root) == [
        "plugins/m6bench_x/ is listed but does not exist"]


def test_an_edited_docstring_makes_the_table_stale(layout, tmp_path):
    root = _tree(tmp_path)
    readme = _readme(layout, root)
    (root / "harness/m6bench/data/__init__.py").write_text('"""Data: other rows."""\n')
    assert layout.problems(readme, root) == [
        "a row or the layer order differs from the docstrings and pyproject.toml"]


def test_a_package_without_a_docstring_names_the_file_and_the_fix(layout, tmp_path):
    root = _tree(tmp_path)
    (root / "harness/m6bench/runs/__init__.py").write_text("")
    with pytest.raises(LookupError, match=r"give harness/m6bench/runs/__init__.py a docstring"
                                          r".*python docs/layout.py --write"):
        layout.render(root)
