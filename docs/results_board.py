"""The README's board tables, for ``docs/results.py``: one benchmark of a board run as
``m6bench leaderboard show --board FILE --format markdown`` prints it, and the anytime plot
the site's benchmark page draws, as an SVG file an image link can show."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import m6bench_leaderboard
from m6bench_leaderboard import build_leaderboard, load_board, render_leaderboard
from m6bench_leaderboard.anytime import benchmark_curves, tuned_metric
from m6bench_leaderboard.plots import anytime_plot


def leaderboard(board: Path, records: Sequence[Mapping[str, Any]], source: str) -> dict[str, Any]:
    """The leaderboard of ``board`` built from ``records`` (what `leaderboard show` builds)."""
    return build_leaderboard([dict(r) for r in records], load_board(board), source=source)


def keep(benchmark: str, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The trials and finals of ``benchmark`` as a committed ledger keeps them: a trial
    without per-user values (only finals are compared user by user), a final with them."""
    return [{k: v for k, v in record.items() if k != "per_user" or record["kind"] == "final"}
            for record in records if record.get("kind") in ("trial", "final")
            and (record.get("benchmark") or {}).get("name") == benchmark]


def _bench(data: Mapping[str, Any], benchmark: str) -> Mapping[str, Any] | None:
    return next((b for b in data["benchmarks"] if b["name"] == benchmark), None)


def tuned_on(data: Mapping[str, Any], benchmark: str) -> str:
    """The validation metric the benchmark's sweeps tuned on (what the site's plot names)."""
    bench = _bench(data, benchmark)
    return tuned_metric(bench, data["sweeps"]) if bench else "the validation metric"


def plot_title(benchmark: str, metric: str) -> str:
    return (f"{benchmark}: each model's best validation {metric} so far, against trials "
            "finished and against seconds of trials")


def markdown(data: Mapping[str, Any], benchmark: str, plot: str) -> str:
    """What `m6bench leaderboard show` prints for ``benchmark``, then an image of ``plot``."""
    text = render_leaderboard(data, "markdown", benchmark=benchmark)
    if not text.startswith("## "):  # no final runs yet: the show command's message
        return text
    title, _, rest = text.partition("\n")
    # the README's headings are its sections: the benchmark's title is a bold line here
    image = f"![{plot_title(benchmark, tuned_on(data, benchmark))}]({plot})"
    return f"**{title.removeprefix('## ')}**\n{rest}\n\n{image}"


def _plot_css() -> str:
    """The site stylesheet's rules for what a plot draws, with its colour variables: an
    SVG shown as an image cannot reach a stylesheet, so the file carries them."""
    css = (Path(m6bench_leaderboard.__file__).parent / "assets" / "style.css").read_text()
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    rules = [rule.strip() + " }" for rule in css.split("}") if "{" in rule]
    kept = [rule for rule in rules if rule.startswith(":root") or all(
        selector.strip().startswith("svg ") for selector in rule.split("{")[0].split(","))]
    # the site sets its font on the page's body, which an image has none of
    return "\n".join(["text { font-family: system-ui, sans-serif; }", *kept])


def anytime_svg(data: Mapping[str, Any], benchmark: str) -> str:
    """The benchmark's anytime plot as a standalone SVG file, styled like the site's."""
    bench = _bench(data, benchmark)
    metric = tuned_on(data, benchmark)
    svg = str(anytime_plot(benchmark_curves(bench, data["sweeps"]) if bench else {},
                           metric=metric, title=plot_title(benchmark, metric)))
    head, _, rest = svg.partition(">")
    size = re.search(r'viewBox="0 0 (\d+) (\d+)"', head)
    assert size, head  # anytime_plot always draws on a viewBox
    # an image needs its size in the file; a page scales it down to fit
    return (f'{head} width="{size[1]}" height="{size[2]}"><style>{_plot_css()}</style>'
            f"{rest}\n")
