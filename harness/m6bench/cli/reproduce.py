"""``m6bench reproduce``: re-run a ledger record and compare its metrics."""

from __future__ import annotations

import sys

import click
from tabulate import tabulate

from m6bench.cli import common


@click.command()
@click.argument("run_id")
@common.ledger_option(common.LEDGER_HELP + " A run's .jsonl record file from the "
                      "leaderboard site works too.")
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
    from m6bench.runs.reproduce import reproduce as run_reproduce

    result = run_reproduce(run_id, ledger=common.ledger_file(ledger), tolerance=tolerance,
                           device=device, record=not no_record,
                           catalog=common.load_cli_catalog(),
                           allow_code_change=allow_code_change)
    old, new = result.record, result.reproduction
    click.echo(f"run {old['run_id']}: {old['plugin'].get('name')}/{old['model']} on "
               f"{old['benchmark'].get('name')} (version {old['benchmark'].get('version')}), "
               f"seed {old['seed']}, recorded on {old.get('device')}; reproduced on "
               f"{new.get('device')} as run {new['run_id']}")
    for note in result.notes:
        click.echo(f"note: {note}")
    value = common.format_value
    rows = [[c.split, c.metric, value(c.recorded), value(c.reproduced),
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
