"""The results commands: ``board run``, ``leaderboard build|show`` and ``reproduce``.

Registered into :data:`m6bench.cli.main`; the leaderboard itself is built by
:mod:`m6bench_leaderboard` from the ledger alone (it imports nothing of the harness).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from m6bench.errors import ConfigError
from m6bench_leaderboard.redact import redact_text

LEDGER_HELP = "Ledger file (default m6bench-runs/ledger.jsonl or $M6BENCH_LEDGER)."


def _ledger(ledger: str | None) -> Path:
    from m6bench.runs.run import default_ledger

    return Path(ledger) if ledger else default_ledger()


def _load_board(path: str | None) -> Any:
    if path is None:
        return None
    from m6bench_leaderboard import BoardError, load_board

    try:
        return load_board(path)
    except BoardError as exc:
        raise ConfigError(str(exc)) from exc


def _installed_code() -> dict[str, tuple[str | None, str | None]]:
    """Every loaded plugin's installed code as the leaderboard compares it with records."""
    from m6bench.board.board import installed_code
    from m6bench.cli import _catalog

    catalog = _catalog()
    return {name: installed_code(catalog, name) for name in catalog.plugins}


def _reporter(quiet: bool) -> Any:
    if quiet:
        return lambda line: None
    return lambda line: click.echo(redact_text(line), err=True)


# ============================================================================== board
@click.group()
def board() -> None:
    """Board specs: benchmarks x models x budget x seeds, run idempotently."""


@board.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--ledger", default=None, help=LEDGER_HELP)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--storage", default=None,
              help="Optuna RDB URL (default: SQLite beside the ledger).")
@click.option("--dry-run", is_flag=True, help="Show what would run; run nothing.")
@click.option("--allow-failures", is_flag=True,
              help="Exit 0 even when a row failed (it is still reported and recorded).")
@click.option("--benchmark", "benchmarks", multiple=True,
              help="Run only this benchmark's rows (repeatable): split a board across "
                   "processes or machines that share the ledger.")
@click.option("--keep-stale", is_flag=True,
              help="Keep rows whose finals were made by other code than the installed "
                   "harness and plugin (default: run them again).")
@click.option("--quiet", is_flag=True, help="No per-trial lines.")
def board_run(file: str, ledger: str | None, device: str, storage: str | None, dry_run: bool,
              allow_failures: bool, benchmarks: tuple[str, ...], keep_stale: bool,
              quiet: bool) -> None:
    """Run what is missing of the board FILE; rows already recorded are skipped.

    Safe to re-run after a crash: sweeps resume and recorded final seeds are kept.  A row
    recorded with other code than the installed harness or plugin (source hashes) runs
    again.  A row that fails is reported and recorded, and the board goes on; the exit code
    is 1 when a row failed or is incomplete (0 with --allow-failures).
    """
    from m6bench.board.board import board_rows, run_board
    from m6bench.cli import _catalog

    spec = _load_board(file)
    ledger_path = _ledger(ledger)
    click.echo(f"board {spec.name} ({spec.source}): {len(board_rows(spec, benchmarks))} rows, "
               f"ledger {ledger_path}")
    results = run_board(spec, ledger=ledger_path, device=device, storage=storage,
                        dry_run=dry_run, keep_stale=keep_stale, benchmarks=benchmarks,
                        catalog=_catalog(),
                        report=_reporter(quiet))
    rows = [[r.benchmark, f"{r.plugin}/{r.model}", r.status, f"{r.finals}/{r.seeds}",
             f"{r.seconds:.0f}", r.message[:90]] for r in results]
    click.echo(tabulate(rows, headers=["benchmark", "model", "status", "finals", "seconds",
                                       "note"], tablefmt="github"))
    bad = [r for r in results if r.status in ("failed", "incomplete")]
    if bad:
        click.secho(f"{len(bad)} of {len(results)} rows failed or are incomplete: "
                    + ", ".join(f"{r.benchmark} x {r.plugin}/{r.model}" for r in bad)
                    + f". Their failures are recorded in {ledger_path}; re-run the same "
                    "command to retry them.", fg="yellow", err=True)
        if not allow_failures:
            sys.exit(1)


@board.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def board_check(file: str) -> None:
    """Validate the board FILE: format, benchmark, plugin and model names."""
    from m6bench.board.board import check_names
    from m6bench.cli import _catalog

    spec = _load_board(file)
    check_names(spec, _catalog())
    click.echo(f"board {spec.name} ({spec.source}) is valid: {len(spec.benchmarks)} "
               f"benchmarks x {len({m.label for m in spec.models})} models = {len(spec.rows())} "
               "rows.")


# ======================================================================== leaderboard
@click.group()
def leaderboard() -> None:
    """The leaderboard: a pure function of the ledger (and a board spec)."""


@leaderboard.command("build")
@click.option("--ledger", default=None, help=LEDGER_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the static site (new, empty, or a previous site).")
@click.option("--board", "board_file", default=None, type=click.Path(dir_okay=False),
              help="A board file: show only its benchmarks and models, with its metrics.")
@click.option("--only-current-code", is_flag=True,
              help="Leave out every number made by other code than the installed harness "
                   "and plugins (what CI publishes).")
def leaderboard_build(ledger: str | None, out: str, board_file: str | None,
                      only_current_code: bool) -> None:
    """Build the static leaderboard site (HTML, inline SVG plots, results.json).

    Rows made by older code than the newest recorded for their plugin are marked.
    """
    from m6bench_leaderboard import SiteError, build_site

    ledger_path = _ledger(ledger)
    if not ledger_path.exists():
        raise ConfigError(f"Ledger {ledger_path} does not exist; pass --ledger PATH or run "
                          "`m6bench board run leaderboard/board.toml` first.")
    try:
        report = build_site(ledger_path, out, board=_load_board(board_file),
                            current_code=_installed_code() if only_current_code else None)
    except SiteError as exc:
        raise ConfigError(str(exc)) from exc
    for number, why in report.skipped[:5]:
        click.secho(f"warning: {ledger_path} line {number} skipped: {why}", fg="yellow",
                    err=True)
    click.echo(f"built {report.out}/index.html: {report.benchmarks} benchmarks, {report.rows} "
               f"model rows, {report.runs} run pages from {report.records} records"
               + (f" ({len(report.skipped)} lines skipped)" if report.skipped else ""))


@leaderboard.command("show")
@click.option("--ledger", default=None, help=LEDGER_HELP)
@click.option("--board", "board_file", default=None, type=click.Path(dir_okay=False),
              help="A board file: show only its benchmarks and models.")
@click.option("--benchmark", default=None, help="Only this benchmark.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "markdown", "json"]))
@click.option("--only-current-code", is_flag=True,
              help="Leave out every number made by other code than the installed harness "
                   "and plugins.")
def leaderboard_show(ledger: str | None, board_file: str | None, benchmark: str | None,
                     fmt: str, only_current_code: bool) -> None:
    """Print the leaderboard as a terminal table, Markdown, or JSON."""
    from m6bench_leaderboard import build_leaderboard, read_records, render_leaderboard

    ledger_path = _ledger(ledger)
    loaded = read_records(ledger_path)
    data = build_leaderboard(loaded.records, _load_board(board_file), source=str(ledger_path),
                             skipped=len(loaded.skipped),
                             current_code=_installed_code() if only_current_code else None)
    click.echo(render_leaderboard(data, fmt, benchmark=benchmark))


# ========================================================================== reproduce
def _value(value: float | None) -> str:
    return "-" if value is None else repr(value)


@click.command()
@click.argument("run_id")
@click.option("--ledger", default=None, help=LEDGER_HELP + " A run's .jsonl record file "
              "from the leaderboard site works too.")
@click.option("--tolerance", default=None, type=float,
              help="Largest absolute difference allowed per metric (default: 0, exact, on "
                   "CPU; 1e-3 when either run is on a GPU).")
@click.option("--device", default=None,
              help="Device of the reproduction (default: the record's, else the CPU).")
@click.option("--no-record", is_flag=True, help="Do not append the reproduction to the ledger.")
@click.option("--allow-code-change", is_flag=True,
              help="Compare metrics even when the installed code differs from the record's.")
def reproduce(run_id: str, ledger: str | None, tolerance: float | None, device: str | None,
              no_record: bool, allow_code_change: bool) -> None:
    """Re-run the ledger record RUN_ID (benchmark, plugin, config, seed) and compare.

    Checks the code first, then prints recorded against reproduced metrics.  Exit codes:
    0 every metric matches; 1 a metric differs beyond the tolerance (or the run failed);
    2 bad input (unknown run, ledger or option); 3 the installed harness or plugin code
    differs from the record's, so nothing is run (--allow-code-change runs and compares
    anyway, and then exits 0 or 1 by the metrics, saying the code differed).
    """
    from m6bench.cli import _catalog
    from m6bench.runs.reproduce import reproduce as run_reproduce

    result = run_reproduce(run_id, ledger=_ledger(ledger), tolerance=tolerance, device=device,
                           record=not no_record, catalog=_catalog(),
                           allow_code_change=allow_code_change)
    old, new = result.record, result.reproduction
    click.echo(f"run {old['run_id']}: {old['plugin'].get('name')}/{old['model']} on "
               f"{old['benchmark'].get('name')} (version {old['benchmark'].get('version')}), "
               f"seed {old['seed']}, recorded on {old.get('device')}; reproduced on "
               f"{new.get('device')} as run {new['run_id']}")
    for note in result.notes:
        click.echo(f"note: {note}")
    rows = [[c.split, c.metric, _value(c.recorded), _value(c.reproduced),
             "-" if c.difference is None else f"{c.difference:.3g}", "ok" if c.ok else "DIFFERS"]
            for c in result.comparisons]
    click.echo(tabulate(rows, headers=["split", "metric", "recorded", "reproduced", "|diff|",
                                       ""], tablefmt="github", disable_numparse=True))
    exact = "exact" if result.tolerance == 0 else f"tolerance {result.tolerance:g}"
    if result.ok:
        other = " on other code than the record's (see the notes)" if result.code_changed \
            else ""
        click.echo(f"reproduced: all {len(rows)} metrics match ({exact}){other}.")
        return
    bad = result.mismatches
    click.secho(f"NOT reproduced: {len(bad)} of {len(rows)} metrics differ beyond the "
                f"{exact}: " + ", ".join(f"{c.split}/{c.metric}" for c in bad[:8]), fg="red",
                err=True)
    sys.exit(1)
