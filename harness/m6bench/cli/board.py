"""``m6bench board`` (run and check a board spec) and ``m6bench leaderboard`` (build and
show it).  The leaderboard itself is built by :mod:`m6bench_leaderboard` from the ledger
alone (it imports nothing of the harness)."""

from __future__ import annotations

import sys
from typing import Any

import click
from tabulate import tabulate

from m6bench.cli import common
from m6bench.errors import ConfigError


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

    catalog = common.load_cli_catalog()
    return {name: installed_code(catalog, name) for name in catalog.plugins}


@click.group()
def board() -> None:
    """Board specs: benchmarks x models x budget x seeds, run idempotently."""


@board.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@common.ledger_option()
@common.device_option()
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

    spec = _load_board(file)
    ledger_path = common.ledger_file(ledger)
    click.echo(f"board {spec.name} ({spec.source}): {len(board_rows(spec, benchmarks))} rows, "
               f"ledger {ledger_path}")
    results = run_board(spec, ledger=ledger_path, device=device, storage=storage,
                        dry_run=dry_run, keep_stale=keep_stale, benchmarks=benchmarks,
                        catalog=common.load_cli_catalog(),
                        report=common.reporter(quiet))
    rows = [[r.benchmark, f"{r.plugin}/{r.model}", r.status, f"{r.finals}/{r.seeds}",
             "-" if r.trials_done is None else r.trials_done, f"{r.seconds:.0f}",
             r.message[:90]] for r in results]
    click.echo(tabulate(rows, headers=["benchmark", "model", "status", "finals", "trials",
                                       "seconds", "note"], tablefmt="github"))
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

    spec = _load_board(file)
    check_names(spec, common.load_cli_catalog())
    click.echo(f"board {spec.name} ({spec.source}) is valid: {len(spec.benchmarks)} "
               f"benchmarks x {len({m.label for m in spec.models})} models = {len(spec.rows())} "
               "rows.")


@click.group()
def leaderboard() -> None:
    """The leaderboard: a pure function of the ledger (and a board spec)."""


@leaderboard.command("build")
@common.ledger_option()
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

    ledger_path = common.ledger_file(ledger)
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
@common.ledger_option()
@click.option("--board", "board_file", default=None, type=click.Path(dir_okay=False),
              help="A board file: show only its benchmarks and models.")
@click.option("--benchmark", default=None, help="Only this benchmark.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "markdown", "json"]))
@click.option("--only-current-code", is_flag=True,
              help="Leave out every number made by other code than the installed harness "
                   "and plugins.")
@click.option("--runs", is_flag=True,
              help="Also list single runs (`m6bench run`), marked untuned, under each table.")
@click.option("--deployment", is_flag=True, help="Show each benchmark's compressed variants "
              "and load tests instead of its accuracy table.")
def leaderboard_show(ledger: str | None, board_file: str | None, benchmark: str | None,
                     fmt: str, only_current_code: bool, runs: bool, deployment: bool) -> None:
    """Print the leaderboard as a terminal table, Markdown, or JSON."""
    from m6bench_leaderboard import build_leaderboard, read_records, render_leaderboard

    ledger_path = common.ledger_file(ledger)
    loaded = read_records(ledger_path)
    data = build_leaderboard(loaded.records, _load_board(board_file), source=str(ledger_path),
                             skipped=len(loaded.skipped),
                             current_code=_installed_code() if only_current_code else None)
    click.echo(render_leaderboard(data, fmt, benchmark=benchmark, deployment=deployment,
                                  runs=runs))
