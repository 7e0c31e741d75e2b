"""The README's layout table, generated from the code so it cannot drift.

``README.md`` holds a block between ``<!-- layout:start -->`` and ``<!-- layout:end -->``:
one row per folder of ``harness/m6bench`` (recursively), per plugin package under
``plugins/`` and per package under ``leaderboard/``, plus ``benchmarks/``, ``docs/`` and
``tests/``.  A package's row is the first sentence of its ``__init__.py`` docstring; a folder
that is not a package (or has no docstring yet) takes its row from :data:`NOT_A_PACKAGE`.
The harness's layer order comes from the import-linter contract in ``pyproject.toml``.

    python docs/layout.py --write      # rewrite the block in README.md
    python docs/layout.py --check      # exit 1 when the block is out of date
    python docs/layout.py              # print the block

``tests/test_readme_layout.py`` fails with the command above when a folder is missing from
the block, a listed folder is gone, or a docstring changed.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HARNESS = "harness/m6bench"
REGENERATE = "python docs/layout.py --write"
START, END = "<!-- layout:start -->", "<!-- layout:end -->"
SKIPPED = {"__pycache__"}

# Rows of folders that have no package docstring to take one from.
NOT_A_PACKAGE = {
    "harness/m6bench/builtin/": "The core's own datasets, protocols, benchmarks and components, "
                                "registered through the same hooks as any plugin's.",
    "harness/m6bench/templates/": "Files `m6bench new-plugin` renders.",
    "harness/m6bench/templates/plugin/": "The plugin scaffold: package, model, test, "
                                         "pyproject and README templates.",
    "leaderboard/": "The results side, installed as its own package; `board.toml` and "
                    "`board-ci.toml` are the official and CI boards.",
    "benchmarks/": "pytest-benchmark suites, the RecBole comparison and the m6-fusion "
                   "ablation.",
    "docs/": "The plugin guide, the result ledgers (`docs/results/`) and the generators of "
             "the README's tables and of this one.",
    "tests/": "Unit and integration tests; shared isolation fixtures in `conftest.py`, fake "
              "plugins in `plugins_for_tests.py`.",
}


def first_sentence(docstring: str) -> str:
    """The docstring's first sentence on one line, reST markup turned into Markdown."""
    paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?\.)(\s|$)", paragraph)
    sentence = match.group(1) if match else paragraph
    sentence = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", sentence)
    return sentence.replace("``", "`").replace("|", "\\|")


def _docstring(path: Path) -> str | None:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))


def harness_layers(root: Path = ROOT) -> list[str]:
    """The harness's subpackages top to bottom, as the import-linter contract orders them."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract.get("type") == "layers" and contract.get("containers") == ["m6bench"]:
            return list(contract["layers"])
    raise LookupError("pyproject.toml has no import-linter layers contract with containers "
                      "= [\"m6bench\"]; the layout table orders the harness by it.")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and p.name not in SKIPPED and not p.name.endswith(".egg-info"))


def _harness_folders(root: Path) -> list[Path]:
    """Every folder of the harness, depth first, top level in layer order."""
    order = {name: index for index, name in enumerate(harness_layers(root))}
    top = sorted(_subfolders(root / HARNESS), key=lambda p: (order.get(p.name, len(order)),
                                                              p.name))
    found: list[Path] = [root / HARNESS]

    def walk(folder: Path) -> None:
        found.append(folder)
        for child in _subfolders(folder):
            walk(child)

    for folder in top:
        walk(folder)
    return found


def folders(root: Path = ROOT) -> list[Path]:
    """The folders the table must list, in its order."""
    listed = _harness_folders(root)
    listed += [p for p in _subfolders(root / "plugins") if (p / "__init__.py").is_file()]
    listed.append(root / "leaderboard")
    listed += [p for p in _subfolders(root / "leaderboard") if (p / "__init__.py").is_file()]
    listed += [root / "benchmarks", root / "docs", root / "tests"]
    return listed


def describe(folder: Path, root: Path = ROOT) -> str:
    """A folder's row: its package docstring's first sentence, else its NOT_A_PACKAGE entry."""
    name = folder.relative_to(root).as_posix() + "/"
    init = folder / "__init__.py"
    docstring = _docstring(init) if init.is_file() else None
    if docstring:
        return first_sentence(docstring)
    if name in NOT_A_PACKAGE:
        return NOT_A_PACKAGE[name]
    where = f"{init.relative_to(root)}" if init.is_file() else f"{name}__init__.py"
    raise LookupError(f"{name} has no description for the README's layout table: give "
                      f"{where} a docstring whose first sentence says what the folder holds "
                      f"(or add {name!r} to NOT_A_PACKAGE in docs/layout.py), then run "
                      f"`{REGENERATE}`.")


def _module_rows(root: Path) -> list[str]:
    rows = []
    for module in sorted((root / HARNESS).glob("*.py")):
        if module.name.startswith("__"):
            continue
        docstring = _docstring(module)
        text = first_sentence(docstring) if docstring else "(no module docstring)"
        rows.append(f"| `{HARNESS}/{module.name}` | {text} |")
    return rows


def render(root: Path = ROOT) -> str:
    """The block's content (between the markers, ending in a newline)."""
    rows = []
    for folder in folders(root):
        rows.append(f"| `{folder.relative_to(root).as_posix()}/` | {describe(folder, root)} |")
        if folder == root / HARNESS:
            rows += _module_rows(root)
    layers = " > ".join(harness_layers(root))
    return "\n".join([
        f"<!-- generated from the code by `{REGENERATE}`; edit the docstrings, not this -->",
        "",
        "| folder | what it holds |",
        "|---|---|",
        *rows,
        "",
        f"Harness layers, top to bottom (a layer imports only those below it; `lint-imports` "
        f"checks it): {layers}.",
        "",
    ])


def _block(text: str) -> re.Match[str]:
    match = re.search(rf"({re.escape(START)}\n)(.*?)({re.escape(END)})", text, re.S)
    if match is None:
        raise ValueError(f"README.md has no `{START}` ... `{END}` markers; add them where the "
                         "layout table goes.")
    return match


def listed_folders(text: str) -> list[str]:
    """The folders the README's block lists (first column, ending in '/')."""
    return re.findall(r"^\| `([^`]+/)` \|", _block(text).group(2), re.M)


def problems(text: str, root: Path = ROOT) -> list[str]:
    """What is wrong with the README's block: missing folders, gone folders, stale rows."""
    listed = set(listed_folders(text))
    expected = {f.relative_to(root).as_posix() + "/" for f in folders(root)}
    found = [f"{name} is missing from the layout table" for name in sorted(expected - listed)]
    found += [f"{name} is listed but does not exist" for name in sorted(listed - expected)
              if not (root / name).is_dir()]
    found += [f"{name} is listed but is no longer a folder the table covers"
              for name in sorted(listed - expected) if (root / name).is_dir()]
    if not found and _block(text).group(2) != render(root):
        found.append("a row or the layer order differs from the docstrings and pyproject.toml")
    return found


def rewrite(text: str, root: Path = ROOT) -> str:
    match = _block(text)
    return text[:match.start(2)] + render(root) + text[match.end(2):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite the block in README.md")
    action.add_argument("--check", action="store_true", help="exit 1 when it is out of date")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if args.write:
        README.write_text(rewrite(text), encoding="utf-8")
        return 0
    if args.check:
        found = problems(text)
        for problem in found:
            print(f"README.md layout: {problem}; run `{REGENERATE}`", file=sys.stderr)
        return 1 if found else 0
    print(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
