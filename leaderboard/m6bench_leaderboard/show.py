"""The leaderboard in a terminal or a Markdown file (``m6bench leaderboard show``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tabulate import tabulate

FORMATS = ("table", "markdown", "json")
BEST, TIED = "*", "~"


def _cell(row: Mapping[str, Any], metric: str) -> str:
    cell = row["metrics"][metric]
    if cell["mean"] is None:
        return "-"
    text = f"{cell['mean']:.4f}"
    if cell["ci95"] is not None:
        text += f" ± {cell['ci95']:.4f}"
    entry = row["significance"].get(metric) or {}
    if entry.get("best"):
        text += f" {BEST}"
    elif entry.get("tied_with_best"):
        text += f" {TIED}"
    return text


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(bench: Mapping[str, Any], tablefmt: str) -> str:
    metrics = bench["metrics"]
    headers = ["rank", "model", "plugin", *metrics, "train s", "eval s", "params", "trials",
               "seeds"]
    rows = []
    for row in bench["rows"]:
        budget = row["budget"]
        trials = f"{budget['trials_run']}"
        if budget.get("trials"):
            trials += f"/{budget['trials']}"
        rows.append([row["rank"] if row["rank"] is not None else "-", row["model"],
                     f"{row['plugin']} {row['plugin_version']}".strip(),
                     *[_cell(row, m) for m in metrics], _seconds(row["train_seconds"]),
                     _seconds(row["evaluate_seconds"]),
                     f"{row['parameters']:,}" if isinstance(row["parameters"], int) else "-",
                     trials, len(row["seeds"])])
    for row in bench["failed"]:
        rows.append(["-", row["model"], f"{row['plugin']} {row['plugin_version']}".strip(),
                     "failed: " + row["error"][:60], *[""] * (len(headers) - 4)])
    clean = _markdown if tablefmt == "github" else _plain
    rows = [[clean(str(value)) for value in row] for row in rows]
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _number(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _deployment_table(bench: Mapping[str, Any], tablefmt: str) -> str:
    view = bench["deployment"]
    metric = view["metric"]
    headers = ["model", "seed", "variant", "size MB", metric, f"change {metric}", "p50 ms",
               "p99 ms", "req/s", "backend", "pareto"]
    rows = [[row["label"], row["seed"], row["variant"], _number(row["size_mb"], 2),
             _number(row["quality"], 4),
             "-" if row["delta"] is None else f"{row['delta']:+.4f}",
             _number(row["p50_ms"], 1), _number(row["p99_ms"], 1), _number(row["rps"], 1),
             row["backend"] or "-", "yes" if row["pareto"] else ""]
            for row in view["rows"]]
    clean = _markdown if tablefmt == "github" else _plain
    rows = [[clean(str(value)) for value in row] for row in rows]
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _plain(text: str) -> str:
    """A cell for a terminal: control characters (escape sequences, newlines) removed."""
    return "".join(c if c.isprintable() else " " for c in text)


def _printable(value: Any) -> Any:
    """A copy of JSON-like ``value`` whose strings hold no control characters: escape
    sequences (a ledger string can carry an OSC-8 link or a cursor move), bidi overrides."""
    if isinstance(value, str):
        return value if value.isprintable() else _plain(value)
    if isinstance(value, Mapping):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(item) for item in value]
    return value


def _markdown(text: str) -> str:
    """A table cell as Markdown text: HTML characters as entities, pipes escaped."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("\n", " ").replace("\r", " "))


def _title(bench: Mapping[str, Any]) -> str:
    stats = (bench.get("dataset") or {}).get("statistics") or {}
    size = ", ".join(f"{stats[k]:,} {k}" for k in ("users", "items", "interactions")
                     if isinstance(stats.get(k), int))
    return (f"{bench['name']} (protocol {bench['protocol']}, version {bench['version']}"
            + (f"; {size}" if size else "") + ")")


def render(data: Mapping[str, Any], fmt: str = "table", *, benchmark: str | None = None,
           deployment: bool = False) -> str:
    """The leaderboard ``data`` (from :func:`build_leaderboard`) as text.

    ``table`` is for terminals, ``markdown`` for READMEs and pull requests (GitHub tables),
    ``json`` the same structure as ``results.json`` without the per-run details.
    ``deployment`` shows each benchmark's deployment view (variants and load tests)
    instead of its accuracy table.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    data = _printable(data)  # ledger strings reach a terminal in every format
    benches = [b for b in data["benchmarks"] if benchmark is None or b["name"] == benchmark]
    if fmt == "json":
        return json.dumps({"source": data["source"], "board": data["board"],
                           "benchmarks": benches}, sort_keys=True, indent=1,
                          ensure_ascii=False)
    if not benches:
        return ("No final runs in the ledger" + (f" for benchmark {benchmark!r}" if benchmark
                                                 else "") +
                ". Run `m6bench board run leaderboard/board.toml` or `m6bench sweep` first.")
    tablefmt = "github" if fmt == "markdown" else "simple"
    if deployment:
        return _render_deployment(benches, tablefmt)
    parts = []
    for bench in benches:
        sig = bench["significance"]
        note = (f"mean ± 95% CI over final seeds; {BEST} best, {TIED} not significantly "
                f"different from the best ({sig['test']}, Holm, alpha {sig['alpha']}); "
                f"ranked by {bench['primary']}")
        if fmt == "markdown":
            parts.append(f"## {_markdown(_title(bench))}\n\n{_table(bench, tablefmt)}\n\n"
                         f"_{note}_")
        else:
            parts.append(f"{_plain(_title(bench))}\n{_table(bench, tablefmt)}\n{note}")
    return "\n\n".join(parts)


def _render_deployment(benches: list[Mapping[str, Any]], tablefmt: str) -> str:
    parts = []
    for bench in benches:
        title = _title(bench)
        if not bench["deployment"]["rows"]:
            parts.append(f"{title}: no variant or serving records yet (`m6bench compress`, "
                         "`m6bench loadtest`).")
            continue
        table = _deployment_table(bench, tablefmt)
        note = ("pareto: no other row has both a lower p99 latency and a better "
                f"{bench['deployment']['metric']}")
        parts.append(f"## {_markdown(title)}\n\n{table}\n\n_{note}_" if tablefmt == "github"
                     else f"{_plain(title)}\n{table}\n{note}")
    return "\n\n".join(parts)
