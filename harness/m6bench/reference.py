"""The plugin guide's reference sections, generated from the code so they cannot drift.

``docs/writing-a-plugin.md`` holds two generated blocks between marker comments:

* ``hook-reference``: every hook in :mod:`m6bench.hookspecs` (signature, docstring, parameters,
  return) in lifecycle order under the spec module's banner sections, then the specs a
  plugin registers and the :class:`~m6bench.Recommender` / :class:`~m6bench.TrainSet`
  interface a model implements and receives;
* ``conformance-rules``: the rules of :data:`m6bench.testing.RULES`.

Regenerate after changing a hook spec, a spec dataclass or a rule::

    python -m m6bench.reference --write      # rewrite the blocks in the guide
    python -m m6bench.reference --check      # exit 1 when the guide is out of date
    python -m m6bench.reference              # print the hook reference

A test compares the guide's blocks with a fresh rendering and fails with the command above.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REGENERATE = "python -m m6bench.reference --write"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"
_BANNER = re.compile(r"^# -{3,}\s*(?P<title>\S.*)$")
_ROLE = re.compile(r":[a-z]+:`~?(?P<target>[^`]+)`")


# =============================================================================== docstrings
def markdown(text: str) -> str:
    """reST inline markup of the docstrings -> Markdown: roles and double backticks."""
    text = _ROLE.sub(lambda m: f"`{m.group('target')}`", text)
    return text.replace("``", "`")


def parse_docstring(obj: Any) -> tuple[str, list[tuple[str, str]], str | None]:
    """``(description, [(param, text)], return text)`` from a ``:param:`` style docstring."""
    doc = inspect.getdoc(obj) or ""
    description: list[str] = []
    params: list[tuple[str, str]] = []
    returns: str | None = None
    current: list[str] | None = None
    for line in doc.splitlines():
        field = re.match(r"^:param (\w+):\s*(.*)$", line)
        ret = re.match(r"^:returns?:\s*(.*)$", line)
        if field:
            params.append((field.group(1), field.group(2)))
            current = None
        elif ret:
            returns = ret.group(1)
            current = None
        elif line.startswith((" ", "\t")) and (params or returns is not None):
            if returns is not None and (not params or current is None):
                returns = f"{returns} {line.strip()}"
            else:
                name, text = params[-1]
                params[-1] = (name, f"{text} {line.strip()}")
        elif params or returns is not None:
            continue  # prose after the fields is not part of the convention
        else:
            description.append(line)
            current = description
    return "\n".join(description).strip(), params, returns


def _annotation(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return ""
    if isinstance(value, str):
        return value
    return getattr(value, "__name__", repr(value))


def signature(function: Callable[..., Any], *, name: str | None = None,
              skip_self: bool = False) -> str:
    """``name(a: T, b: U = 1) -> R`` with the source's annotations (they are strings here)."""
    sig = inspect.signature(function)
    parts = []
    star_written = False
    for parameter in sig.parameters.values():
        if skip_self and parameter.name == "self":
            continue
        kind = parameter.kind
        if kind is inspect.Parameter.KEYWORD_ONLY and not star_written:
            parts.append("*")
        star_written = star_written or kind in (inspect.Parameter.KEYWORD_ONLY,
                                                inspect.Parameter.VAR_POSITIONAL)
        prefix = {inspect.Parameter.VAR_POSITIONAL: "*",
                  inspect.Parameter.VAR_KEYWORD: "**"}.get(kind, "")
        text = prefix + parameter.name
        annotation = _annotation(parameter.annotation)
        if annotation:
            text += f": {annotation}"
        if parameter.default is not inspect.Parameter.empty:
            text += f" = {parameter.default!r}" if annotation else f"={parameter.default!r}"
        parts.append(text)
    result = _annotation(sig.return_annotation)
    return f"{name or function.__name__}({', '.join(parts)})" + (
        f" -> {result}" if result else "")


def _cell(text: str) -> str:
    return markdown(text).replace("|", "\\|").replace("\n", " ")


# =============================================================================== hooks
def hooks_in_order() -> list[tuple[str, list[Callable[..., Any]]]]:
    """The hook specs grouped under the spec module's banner comments, in source order."""
    from m6bench import hookspecs

    sections: list[tuple[str, list[Callable[..., Any]]]] = [("hooks", [])]
    for line in inspect.getsource(hookspecs).splitlines():
        banner = _BANNER.match(line)
        if banner:
            sections.append((banner.group("title").strip(), []))
            continue
        found = re.match(r"^def (m6bench_\w+)\(", line)
        if found:
            sections[-1][1].append(getattr(hookspecs, found.group(1)))
    return [(title, hooks) for title, hooks in sections if hooks]


def _hook_section(function: Callable[..., Any]) -> list[str]:
    description, params, returns = parse_docstring(function)
    options = getattr(function, "m6bench_spec", None) or {}
    lines = [f"#### `{function.__name__}`", "", "```python",
             signature(function), "```", "", markdown(description), ""]
    if options.get("firstresult"):
        lines += ["The first implementation that returns a value other than `None` wins.", ""]
    if params:
        lines += ["| parameter | meaning |", "|---|---|"]
        lines += [f"| `{name}` | {_cell(text)} |" for name, text in params]
        lines.append("")
    if returns:
        lines += [f"**Returns:** {markdown(returns)}", ""]
    return lines


# =============================================================================== interfaces
def _dataclass_section(cls: type) -> list[str]:
    lines = [f"#### `m6bench.{cls.__name__}`", "", markdown(inspect.getdoc(cls) or ""), "",
             "| field | type | default |", "|---|---|---|"]
    for spec_field in dataclasses.fields(cls):
        if spec_field.default is not dataclasses.MISSING:
            default = f"`{spec_field.default!r}`"
        elif spec_field.default_factory is not dataclasses.MISSING:
            default = f"`{spec_field.default_factory()!r}`"
        else:
            default = "required"
        lines.append(f"| `{spec_field.name}` | `{_cell(_annotation(spec_field.type))}` | "
                     f"{_cell(default)} |")
    lines.append("")
    return lines


def _methods_section(cls: type, names: list[str],
                     notes: dict[str, str] | None = None) -> list[str]:
    """One bullet per member: signature and docstring.  Only the member's own docstring is
    used (``notes`` fills a missing one): an inherited ``nn.Module`` docstring would mislead."""
    lines: list[str] = []
    for name in names:
        member = inspect.getattr_static(cls, name)
        own = (notes or {}).get(name) or inspect.cleandoc(getattr(member, "__doc__", None) or "")
        text = " ".join(markdown(own.split("\n:param")[0]).split())
        if isinstance(member, property):
            lines.append(f"- `{name}` (property)" + (f": {text}" if text else ""))
            continue
        function = member.__func__ if isinstance(member, (classmethod, staticmethod)) \
            else member
        lines.append(f"- `{signature(function, skip_self=True)}`" + (f": {text}" if text else ""))
    lines.append("")
    return lines


def hook_reference() -> str:
    """The Markdown hook reference: hooks, the specs they register, the model interface."""
    from m6bench import (
        BenchmarkSpec,
        Catalog,
        ComponentSpec,
        DatasetSpec,
        ModelSpec,
        ProtocolSpec,
        Recommender,
        TrainSet,
        hookspecs,
    )

    lines = ["### Hooks", "", markdown(inspect.getdoc(hookspecs) or ""), ""]
    for title, hooks in hooks_in_order():
        lines += [f"**{title.capitalize()}:** "
                  + ", ".join(f"`{h.__name__}`" for h in hooks), ""]
        for hook in hooks:
            lines += _hook_section(hook)
    lines += ["### What the hooks register", ""]
    for cls in (ModelSpec, ComponentSpec, DatasetSpec, ProtocolSpec, BenchmarkSpec):
        lines += _dataclass_section(cls)
    lines += ["### What a model implements: `m6bench.Recommender`", "",
              markdown(inspect.getdoc(Recommender) or ""), "",
              f"- `iterative` (class attribute, default `{Recommender.iterative}`): whether "
              "`fit_epoch` runs once per epoch with early stopping (`True`) or once.",
              *_methods_section(
                  Recommender, ["__init__", "fit_epoch", "score", "predict", "parameter_count",
                              "exportable", "export_scores", "export_module"],
                  {"__init__": "Subclasses call `super().__init__(train, config)` first; it "
                               "sets `n_users`, `n_items` and `config` (a dict copy)."})]
    lines += ["### What a model trains on: `m6bench.TrainSet`", "",
              markdown(inspect.getdoc(TrainSet) or ""), "",
              "| field | type |", "|---|---|"]
    lines += [f"| `{f.name}` | `{_cell(_annotation(f.type))}` |"
              for f in dataclasses.fields(TrainSet)]
    lines.append("")
    lines += _methods_section(
        TrainSet, ["n_interactions", "dense_matrix", "sample_negatives",
                   "sample_true_negatives", "has_interaction", "bpr_batches"],
        {"n_interactions": "Number of training interactions."})
    lines += ["### Components from the catalog: `train.components`", "",
              "A model composes registered encoders, fusions and heads by name; parameters "
              "not given take the component's `defaults`, and an unknown parameter is an error "
              "that lists the accepted ones.", ""]
    lines += _methods_section(
        Catalog, ["component", "encoder", "fusion", "head"],
        {"encoder": "`component(\"encoder\", name, **params)`.",
         "fusion": "`component(\"fusion\", name, **params)`.",
         "head": "`component(\"head\", name, **params)`."})
    return "\n".join(lines).rstrip() + "\n"


def rules_reference() -> str:
    """The conformance kit's rules as a Markdown table."""
    from m6bench.testing import RULES

    lines = ["| rule | what a conforming plugin does |", "|---|---|"]
    lines += [f"| `{rule}` | {_cell(text)} |" for rule, text in RULES.items()]
    return "\n".join(lines) + "\n"


BLOCKS: dict[str, Callable[[], str]] = {
    "hook-reference": hook_reference,
    "conformance-rules": rules_reference,
}


# =============================================================================== the guide
def _pattern(block: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {block}:start[^>]*-->\n)(.*?)(<!-- {block}:end -->)", re.S)


def _generated(block: str) -> str:
    return (f"<!-- generated from the code by `{REGENERATE}`; edit the code, not this -->\n\n"
            + BLOCKS[block]() + "\n")


def render_guide(text: str) -> str:
    """The guide with every generated block replaced by a fresh rendering."""
    for block in BLOCKS:
        pattern = _pattern(block)
        if not pattern.search(text):
            raise ValueError(f"The guide has no `<!-- {block}:start -->` ... "
                             f"`<!-- {block}:end -->` markers; add them where the block goes.")
        generated = _generated(block)
        text = pattern.sub(lambda m, g=generated: m.group(1) + g + m.group(3), text, count=1)
    return text


def stale_blocks(text: str) -> list[str]:
    """Names of the generated blocks whose content differs from a fresh rendering."""
    stale = []
    for block in BLOCKS:
        found = _pattern(block).search(text)
        if found is None or found.group(2) != _generated(block):
            stale.append(block)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m6bench.reference",
                                     description="Generate the plugin guide's reference.")
    parser.add_argument("--write", action="store_true", help="rewrite the guide's blocks")
    parser.add_argument("--check", action="store_true", help="exit 1 if the guide is stale")
    parser.add_argument("--guide", type=Path, default=GUIDE, help=f"default {GUIDE}")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        sys.stdout.write(hook_reference())
        return 0
    if not args.guide.exists():
        sys.stderr.write(f"{args.guide} does not exist; pass --guide PATH.\n")
        return 2
    text = args.guide.read_text(encoding="utf-8")
    if args.check:
        stale = stale_blocks(text)
        if stale:
            sys.stderr.write(f"{args.guide}: the generated blocks {', '.join(stale)} are out "
                             f"of date; run {REGENERATE}\n")
            return 1
        return 0
    updated = render_guide(text)
    if updated != text:
        args.guide.write_text(updated, encoding="utf-8")
        sys.stdout.write(f"updated {args.guide}\n")
    else:
        sys.stdout.write(f"{args.guide} is up to date\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
