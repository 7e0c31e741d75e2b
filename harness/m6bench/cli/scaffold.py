"""``m6bench new-plugin NAME``: scaffold a separate, pip-installable plugin distribution.

The scaffold is the shortest path from nothing to a leaderboard row: a ``pyproject.toml``
with the ``m6bench`` entry point, a package whose hooks register one small working model
(composed from catalog components, with defaults and a search space) and one component of
its own, a README, and tests that run the conformance kit.  It installs with
``pip install -e`` and runs with ``m6bench run --plugin NAME`` with no edits, so a plugin
author starts from something green and changes one thing at a time.

The files are templates under ``m6bench/templates/plugin`` (shipped in the wheel) with
``{{key}}`` placeholders, rendered by plain string replacement: no template engine to
install, and nothing in a template is ever evaluated.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from m6bench.errors import PluginError

TEMPLATES = "templates/plugin"
# template file -> path in the new project ({package} is filled in)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "package_init.py.tmpl": "src/{package}/__init__.py",
    "package_model.py.tmpl": "src/{package}/model.py",
    "test_plugin.py.tmpl": "tests/test_plugin.py",
}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
# Names the generated modules import or define themselves.
RESERVED_CLASSES = frozenset({"BiasedDot", "Recommender", "TrainSet", "ModelSpec",
                              "ComponentSpec"})


@dataclass(frozen=True)
class Scaffold:
    """What :func:`create_plugin` wrote, and the commands that take it to a recorded run."""

    name: str
    distribution: str
    package: str
    class_name: str
    path: Path
    files: list[Path] = field(default_factory=list)

    def next_steps(self) -> list[str]:
        """The exact commands to type, from installing the package to its own tests."""
        where = _shell_path(self.path)
        return [
            f"pip install -e {where}",
            "m6bench plugins",
            f"m6bench run --plugin {self.name}",
            f"python -m pytest {_shell_path(self.path / 'tests')}",
        ]


def names_for(name: str) -> dict[str, str]:
    """The plugin, distribution, package and class names derived from ``name``.

    ``my-model`` -> entry point and model ``my-model``, distribution ``m6bench-my-model``,
    package ``m6bench_my_model``, class ``MyModel``.  A leading ``m6bench-`` is not doubled.
    """
    if not NAME_PATTERN.match(name):
        raise PluginError(
            f"{name!r} is not a usable plugin name: use lowercase letters and digits, words "
            "joined by single hyphens, starting with a letter (for example 'my-model'). It "
            "becomes the entry-point name you pass to --plugin."
        )
    stem = name.removeprefix("m6bench-") or name
    class_name = "".join(part.capitalize() for part in stem.split("-"))
    if class_name in RESERVED_CLASSES or keyword.iskeyword(class_name):
        class_name += "Model"
    return {
        "name": name,
        "distribution": f"m6bench-{stem}",
        "package": "m6bench_" + stem.replace("-", "_"),
        "class_name": class_name,
    }


def create_plugin(
    name: str,
    directory: str | Path | None = None,
    *,
    taken: Collection[str] = (),
) -> Scaffold:
    """Write a new plugin project for ``name`` into ``directory``.

    :param name: the plugin's name: its entry point, its model's name, ``--plugin NAME``.
    :param directory: the folder to create (default ``./m6bench-NAME``); it must not exist
        or be empty, so nothing of the user's is overwritten.
    :param taken: plugin, model and component names already installed; reusing one would
        make the catalog reject the new plugin (or skip it), so it is refused here.
    :return: what was written and the next steps.
    """
    from m6bench import __version__

    names = names_for(name)
    clashes = sorted({name, f"{name}-biased-dot"} & set(taken))
    if clashes:
        raise PluginError(
            f"The name {name!r} is taken: an installed plugin already registers "
            f"{', '.join(map(repr, clashes))} (see `m6bench plugins`). Plugin, model and "
            "component names are global; choose another name, e.g. "
            f"'{name}-2' or 'my-{name}'."
        )
    path = Path(directory) if directory is not None else Path.cwd() / names["distribution"]
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise PluginError(
            f"{str(path)!r} already exists and is not an empty folder; the scaffold never "
            "overwrites files. Pass --dir with a new folder, or remove that one."
        )
    values = {**names, "m6bench_version": __version__}
    written: list[Path] = []
    root = resources.files("m6bench").joinpath(TEMPLATES)
    for template, target in FILES.items():
        text = root.joinpath(template).read_text(encoding="utf-8")
        out = path / target.format(package=names["package"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(text, values), encoding="utf-8")
        written.append(out)
    return Scaffold(path=path, files=written, **names)


def render(text: str, values: dict[str, str]) -> str:
    """Replace every ``{{key}}``; a placeholder left over is a bug in a template."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    leftover = re.search(r"\{\{\s*\w+\s*\}\}", text)
    if leftover:
        raise PluginError(f"The plugin template has an unknown placeholder "
                          f"{leftover.group(0)}; this is a bug in m6bench, please report it.")
    return text


def _shell_path(path: Path) -> str:
    """The path as the user would type it: relative to the current folder when inside it."""
    try:
        shown = str(path.resolve().relative_to(Path.cwd().resolve()))
        shown = shown if shown.startswith(".") else f"./{shown}"
    except ValueError:
        shown = str(path)
    return f'"{shown}"' if any(c.isspace() for c in shown) else shown
