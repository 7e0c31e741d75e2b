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


def trials_text(budget: Mapping[str, Any]) -> str:
    """Trials done / trials asked, flagged when the row got fewer than its budget."""
    text = f"{budget['trials_run']}"
    if budget.get("trials"):
        text += f"/{budget['trials']}"
    return text + (" UNDER BUDGET" if budget.get("under_budget") else "")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(bench: Mapping[str, Any], tablefmt: str) -> str:
    metrics = bench["metrics"]
    headers = ["rank", "model", "plugin", *metrics, "train s", "eval s", "params", "trials",
               "trial s", "seeds"]
    rows = []
    for row in bench["rows"]:
        budget = row["budget"]
        rows.append([row["rank"] if row["rank"] is not None else "-", row["model"],
                     f"{row['plugin']} {row['plugin_version']}".strip(),
                     *[_cell(row, m) for m in metrics], _seconds(row["train_seconds"]),
                     _seconds(row["evaluate_seconds"]),
                     f"{row['parameters']:,}" if isinstance(row["parameters"], int) else "-",
                     trials_text(budget), f"{budget.get('tuning_seconds') or 0:.0f}",
                     len(row["seeds"])])
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
           deployment: bool = False, runs: bool = False) -> str:
    """The leaderboard ``data`` (from :func:`build_leaderboard`) as text.

    ``table`` is for terminals, ``markdown`` for READMEs and pull requests (GitHub tables),
    ``json`` the same structure as ``results.json`` without the per-run details.
    ``deployment`` shows each benchmark's deployment view (variants and load tests)
    instead of its accuracy table; ``runs`` lists each benchmark's single runs (``m6bench
    run``, kind "run") under its table, marked untuned.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    data = _printable(data)  # ledger strings reach a terminal in every format
    benches = [b for b in data["benchmarks"] if benchmark is None or b["name"] == benchmark]
    singles = {name: view for name, view in (data.get("single_runs") or {}).items()
               if runs and (benchmark is None or name == benchmark)}
    if fmt == "json":
        extra = {"single_runs": singles} if runs else {}
        return json.dumps({"source": data["source"], "board": data["board"],
                           "benchmarks": benches, **extra}, sort_keys=True, indent=1,
                          ensure_ascii=False)
    tablefmt = "github" if fmt == "markdown" else "simple"
    if singles and not deployment:
        return _render_with_runs(benches, singles, tablefmt)
    if deployment:
        alone = [view for name, view in (data.get("deployment_only") or {}).items()
                 if benchmark is None or name == benchmark]
        if benches or alone:
            return _render_deployment([*benches, *alone], tablefmt)
    if not benches:
        return ("No final runs in the ledger" + (f" for benchmark {benchmark!r}" if benchmark
                                                 else "") +
                ". Run `m6bench board run leaderboard/board.toml` or `m6bench sweep` first.")
    return "\n\n".join(_render_bench(bench, tablefmt) for bench in benches)


def _render_bench(bench: Mapping[str, Any], tablefmt: str) -> str:
    sig = bench["significance"]
    vary = bench.get("vary") or "both"
    note = (f"mean ± 95% CI over final seeds (they vary: {vary}); {BEST} best, {TIED} not "
            f"significantly different from the best ({sig['test']}, Holm, alpha "
            f"{sig['alpha']}); ranked by {bench['primary']}")
    if any(row["budget"].get("under_budget") for row in bench["rows"]):
        note += ("; UNDER BUDGET: the row ran fewer trials than every other model is owed "
                 "(its guard stopped it)")
    if tablefmt == "github":
        return f"## {_markdown(_title(bench))}\n\n{_table(bench, tablefmt)}\n\n_{note}_"
    return f"{_plain(_title(bench))}\n{_table(bench, tablefmt)}\n{note}"


def _runs_table(view: Mapping[str, Any], tablefmt: str) -> str:
    metrics = view["metrics"]
    headers = ["model", "plugin", *metrics, "train s", "seed", "run", "tuned"]
    rows = [[row["model"], row["plugin"], *[_number(row["metrics"].get(m), 4) for m in metrics],
             _seconds(row["train_seconds"]), row["seed"], str(row["run_id"])[:12], "untuned"]
            for row in view["rows"]]
    clean = _markdown if tablefmt == "github" else _plain
    rows = [[clean(str(value)) for value in row] for row in rows]
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _render_with_runs(benches: list[Mapping[str, Any]], singles: Mapping[str, Any],
                      tablefmt: str) -> str:
    """Each benchmark's table followed by its single runs; a benchmark with only single
    runs gets those alone."""
    parts = []
    names = [b["name"] for b in benches] + [n for n in singles
                                            if n not in {b["name"] for b in benches}]
    by_name = {b["name"]: b for b in benches}
    for name in names:
        if name in by_name:
            parts.append(_render_bench(by_name[name], tablefmt))
        if name in singles:
            title = f"{name}: single runs (m6bench run), untuned, one seed each, not ranked"
            heading = f"### {_markdown(title)}\n\n" if tablefmt == "github" \
                else f"{_plain(title)}\n"
            parts.append(heading + _runs_table(singles[name], tablefmt))
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
