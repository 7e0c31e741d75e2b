"""The static leaderboard site: a pure function of ledger records (and a board spec).

``build_site(ledger, out)`` writes::

    out/index.html                 every benchmark: protocol, dataset statistics, top models
    out/benchmarks/<name>.html     one row per model, sortable, significance, Pareto plot
    out/runs/<run id>.html         provenance, learning curves, sweep history, reproduce
    out/runs/<run id>.jsonl        the run's record, a one-line ledger for ``reproduce``
    out/assets/style.css, sort.js  the only assets: no CDN, no web font, no network
    out/results.json               everything on the pages, for machines

Jinja2 autoescaping is on, and a Content-Security-Policy in every page allows scripts,
styles and images from the site itself only, so a string from a plugin, a config or a
dataset is shown as text and cannot run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from m6bench_leaderboard import present
from m6bench_leaderboard.aggregate import build_leaderboard
from m6bench_leaderboard.anytime import benchmark_curves, tuned_metric
from m6bench_leaderboard.board import BoardSpec
from m6bench_leaderboard.plots import anytime_plot, history_plot, line_plot, pareto_plot
from m6bench_leaderboard.records import read_records

HERE = Path(__file__).resolve().parent
MARKER = ".m6bench-site"
MANAGED = ("index.html", "results.json", "benchmarks", "runs", "assets", MARKER)


class SiteError(ValueError):
    """The output folder cannot be used; the message says why and what to do."""


@dataclass
class SiteReport:
    """What a build wrote."""

    out: Path
    benchmarks: int
    rows: int
    runs: int
    records: int
    skipped: list[tuple[int, str]]
    data: dict[str, Any]


# ============================================================================ filters
def _marker(row: Mapping[str, Any], metric: str) -> Markup:
    entry = (row.get("significance") or {}).get(metric)
    if not entry:
        return Markup("")
    if entry.get("best"):
        return Markup('<span class="mark best-mark" title="best">&#9733;</span>')
    if entry.get("tied_with_best"):
        p = entry.get("p_holm")
        title = f"not significantly different from the best (Holm-adjusted p = {p:.3g})"
        return Markup('<span class="mark tie-mark" title="{}">&asymp;</span>').format(title)
    p = entry.get("p_holm")
    if p is None:
        return Markup("")
    return Markup('<span class="mark worse-mark" title="{}"></span>').format(
        f"significantly worse than the best (Holm-adjusted p = {p:.3g})")


def environment() -> Environment:
    """The Jinja2 environment of the site: autoescape on for every template."""
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(present.filters())
    env.globals.update(marker=_marker, metric_groups=present.metric_groups)
    return env


# ============================================================================= plots
def _curve_plots(run: Mapping[str, Any]) -> tuple[Markup | None, Markup | None]:
    losses: dict[str, list[tuple[float, float]]] = {}
    valid: dict[str, list[tuple[float, float]]] = {}
    for index, row in enumerate(run.get("curve") or []):
        if not isinstance(row, Mapping):
            continue
        epoch = row.get("epoch", index + 1)
        if not isinstance(epoch, (int, float)):
            continue
        for key, value in row.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            target = valid if str(key).startswith("valid/") else losses
            target.setdefault(str(key), []).append((epoch, value))
    if not losses and not valid:
        return None, None
    return (line_plot(losses, x_label="epoch", y_label="loss", title="training losses"),
            line_plot(valid, x_label="epoch", y_label="validation metric",
                      title="validation metric"))


def _pareto_markup(bench: Mapping[str, Any]) -> Markup:
    metric = bench.get("primary")
    if metric is None:
        return pareto_plot([], x_label="training seconds per run", y_label="", title="")
    points = [{"label": f"{row['model']}", "x": row.get("train_seconds"),
               "y": row["metrics"][metric]["mean"], "pareto": row.get("pareto")}
              for row in bench["rows"]]
    return pareto_plot(points, x_label="training seconds per run (mean over seeds)",
                       y_label=f"test {metric}",
                       title=f"{bench['name']}: test {metric} against training time",
                       lower_is_better=bench["lower_is_better"].get(metric, False))


def _deployment_markup(bench: Mapping[str, Any]) -> Markup:
    view = bench["deployment"]
    metric = view["metric"]
    points = [{"label": f"{row['model']} {row['variant']}"
                        + (f" ({row['backend']})" if row["backend"] else ""),
               "x": row["p99_ms"], "y": row["quality"], "pareto": row["pareto"]}
              for row in view["rows"]]
    return pareto_plot(points, x_label="p99 latency (ms)", y_label=f"test {metric}",
                       title=f"{bench['name']}: test {metric} against p99 serving latency",
                       lower_is_better=view["lower_is_better"], unit="ms",
                       empty="no model with both a load test and a test score")


# ============================================================================== build
def built_at() -> str:
    """The build time, to the minute; ``SOURCE_DATE_EPOCH`` (the reproducible-builds
    convention) fixes it, so two builds of the same records are byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = float(epoch) if epoch and epoch.strip().isdigit() else time.time()
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp))


def _build_info(runs: Iterable[Mapping[str, Any]], board: BoardSpec | None,
                when: str) -> dict[str, Any]:
    """What a page's numbers came from: the build time, the code, hardware and software of
    its runs, the newest run, the board file and the commands that rebuild it all."""
    runs = list(runs)
    info: dict[str, Any] = {"built_at": when, **present.provenance(runs),
                            "newest_run": max((str(r.get("ended_at") or "") for r in runs),
                                              default="") or None,
                            "board_file": board.source if board else None, "commands": []}
    if board is not None and board.source:
        source = shlex.quote(str(board.source))
        info["commands"] = [f"m6bench board run {source} --ledger ledger.jsonl",
                            f"m6bench leaderboard build --ledger ledger.jsonl --board "
                            f"{source} --out site"]
    return info


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SiteError(f"--out {out} is a file; pass a folder for the site.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise SiteError(f"--out {out} is a folder that holds other files and no previous "
                        "site; pass a new or empty folder (a previous site there is replaced).")
    for name in MANAGED:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for sub in ("benchmarks", "runs", "assets"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("This folder is written by `m6bench leaderboard build`.\n")


def _dump_line(record: Mapping[str, Any]) -> str:
    return json.dumps(dict(record), separators=(",", ":"), sort_keys=True, allow_nan=False)


def _write_run_pages(out: Path, env: Environment, data: Mapping[str, Any],
                     records: list[Mapping[str, Any]], lines: Mapping[str, bytes],
                     page_of_run: Mapping[str, str],
                     seeds_of_run: Mapping[str, list[tuple[Any, str]]],
                     common: Mapping[str, Any]) -> None:
    """One page per run, and its exact ledger line (a one-record ledger to reproduce it)."""
    by_id = {r["run_id"]: r for r in records if r["run_id"] in data["runs"]}
    run_template = env.get_template("run.html")
    histories: dict[str, Markup] = {}  # one plot per sweep, shared by its final runs
    for run_id, run in data["runs"].items():
        sweep = data["sweeps"].get(str(run.get("sweep_id"))) if run.get("sweep_id") else None
        loss, valid = _curve_plots(run)
        history = Markup("")
        if sweep:
            key = str(sweep["id"])
            if key not in histories:
                histories[key] = history_plot(sweep["trials"], metric=sweep["metric"],
                                              maximize=sweep["direction"] == "maximize",
                                              title=f"sweep {sweep['id']}")
            history = histories[key]
        others = [(seed, file) for seed, file in seeds_of_run.get(run_id, [])
                  if file != run["file"]]
        (out / "runs" / f"{run['file']}.html").write_text(
            run_template.render(root="../", run=run, sweep=sweep, loss_plot=loss,
                                valid_plot=valid, history_plot=history,
                                bench_page=page_of_run.get(run_id), other_seeds=others,
                                **common), encoding="utf-8")
        # the run's exact ledger line: a one-record ledger for `m6bench reproduce`
        line = lines.get(run_id) or _dump_line(by_id[run_id]).encode()
        (out / "runs" / f"{run['file']}.jsonl").write_bytes(line + b"\n")


def build_site(ledger: str | os.PathLike[str] | None, out: str | os.PathLike[str], *,
               board: BoardSpec | None = None,
               records: Iterable[Mapping[str, Any]] | None = None,
               current_code: Mapping[str, tuple[str | None, str | None]] | None = None,
               ) -> SiteReport:
    """Build the static site from a ledger file (or from ``records``) into ``out``.

    ``current_code`` (plugin -> harness and plugin source hashes of the installed code)
    leaves out every number made by other code; see :func:`build_leaderboard`.
    """
    skipped: list[tuple[int, str]] = []
    lines: dict[str, bytes] = {}
    if records is None:
        if ledger is None:
            raise SiteError("build_site needs a ledger path or records.")
        loaded = read_records(ledger)
        records, skipped, lines = loaded.records, loaded.skipped, loaded.lines
    records = list(records)
    data = build_leaderboard(records, board, source=str(ledger) if ledger else None,
                             skipped=len(skipped), current_code=current_code)
    out = Path(out)
    _prepare(out)
    for asset in sorted((HERE / "assets").iterdir()):
        if asset.is_file():
            shutil.copyfile(asset, out / "assets" / asset.name)

    env = environment()
    title = board.title if board else "m6bench leaderboard"
    when = built_at()
    common = {"site_title": title, "benchmarks": data["benchmarks"], "source": data["source"],
              "board": data["board"]}
    (out / "index.html").write_text(env.get_template("index.html").render(
        root="", build=_build_info(data["runs"].values(), board, when), **common),
        encoding="utf-8")

    page_of_run: dict[str, str] = {}
    seeds_of_run: dict[str, list[tuple[Any, str]]] = {}
    bench_template = env.get_template("benchmark.html")
    for bench in data["benchmarks"]:
        (out / "benchmarks" / f"{bench['file']}.html").write_text(
            bench_template.render(
                root="../", bench=bench, pareto=_pareto_markup(bench),
                anytime=anytime_plot(benchmark_curves(bench, data["sweeps"]),
                                     metric=tuned_metric(bench, data["sweeps"]),
                                     title=f"{bench['name']}: best validation score so far"),
                deployment=_deployment_markup(bench), run_pages=data["runs"],
                build=_build_info((data["runs"][i] for row in bench["rows"]
                                   for i in row["runs"]), board, when), **common),
            encoding="utf-8")
        for row in bench["rows"]:
            pairs = list(zip(row["seeds"], row["run_files"]))
            for run_id in row["runs"]:
                page_of_run[run_id] = bench["file"]
                seeds_of_run[run_id] = pairs

    _write_run_pages(out, env, data, records, lines, page_of_run, seeds_of_run, common)
    (out / "results.json").write_text(  # compact: the C encoder, fast for big ledgers
        json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                   allow_nan=False, default=str) + "\n", encoding="utf-8")
    return SiteReport(out=out, benchmarks=len(data["benchmarks"]),
                      rows=sum(len(b["rows"]) for b in data["benchmarks"]),
                      runs=len(data["runs"]), records=len(records), skipped=skipped, data=data)
