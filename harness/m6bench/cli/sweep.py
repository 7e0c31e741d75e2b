"""``m6bench sweep`` and ``m6bench worker``: tune a model under a budget, alone or sharing
a study with other workers."""

from __future__ import annotations

import json
from typing import Any

import click
from tabulate import tabulate

from m6bench.cli import common
from m6bench.runs.config import parse_assignments
from m6bench_leaderboard.board import PRUNERS
from m6bench_leaderboard.redact import redact_text

QUIET_HELP = "No per-trial lines (a failed trial's line is still printed)."
TOP_TRIALS = 5


def sweep_table(result: Any, metric: str) -> str:
    """The best trials and the final runs of the best config, as two tables."""
    trials = sorted(
        (t for t in result.study.get_trials(deepcopy=False) if t.value is not None),
        key=lambda t: t.value, reverse=result.study.direction.name == "MAXIMIZE",
    )[:TOP_TRIALS]
    rows = [[t.number, t.value, json.dumps(t.params, sort_keys=True)] for t in trials]
    top = tabulate(rows, headers=["trial", f"valid {metric}", "params"], floatfmt=".4f",
                   tablefmt="github")
    finals = [[r["seed"], r["metrics"]["valid"].get(metric), r["metrics"]["test"].get(metric),
               r["metrics"]["test"].get("recall@10"), r["run_id"]] for r in result.finals]
    final = tabulate(finals, headers=["seed", f"valid {metric}", f"test {metric}",
                                      "test recall@10", "run"], floatfmt=".4f",
                     tablefmt="github")
    return f"top trials\n{top}\n\nfinal runs of the best config\n{final}"


@click.command()
@click.option("--plugin", required=True, help="Plugin name (see `m6bench plugins`).")
@click.option("--model", default=None, help="Model of the plugin (default: its default model).")
@click.option("--benchmark", default=None, help="Benchmark (default: the one `run` uses).")
@click.option("--dataset", default=None, help="Dataset name or path, instead of --benchmark.")
@click.option("--dataset-opt", "dataset_opts", multiple=True, metavar="KEY=VALUE",
              help="Loader option, e.g. --dataset-opt n_users=300.")
@click.option("--trials", default=None, type=int, help="Finished trials to end with.")
@click.option("--timeout", default=None, type=float, help="Wall seconds of trials, in all.")
@click.option("--seeds", default=5, show_default=True, type=int,
              help="Seeds of the final test runs of the best config (0: none).")
@click.option("--storage", default=None,
              help="Optuna storage (default: SQLite beside the ledger); postgresql://... "
                   "lets workers on other machines join; journal:///PATH is a file that "
                   "workers on this machine share.")
@click.option("--study", "study_name", default=None, help="Study name (default: derived "
              "from benchmark, model and budget, so re-running resumes it).")
@click.option("--pruner", default="median", show_default=True, type=click.Choice(PRUNERS))
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Fixed config keys for every trial.")
@common.device_option()
@common.ledger_option("Ledger file.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes sharing the study on this machine (GPUs in turn where "
                   "there are several); with journal:///PATH storage no database is needed.")
@click.option("--no-save-finals", is_flag=True,
              help="Do not store the final runs' trained models beside the ledger.")
@click.option("--quiet", is_flag=True, help=QUIET_HELP)
def sweep(plugin: str, model: str | None, benchmark: str | None, dataset: str | None,
          dataset_opts: tuple[str, ...], trials: int | None, timeout: float | None,
          seeds: int, storage: str | None, study_name: str | None, pruner: str,
          assignments: tuple[str, ...], device: str, ledger: str | None, workers: int,
          no_save_finals: bool, quiet: bool) -> None:
    """Tune a model with Optuna under a budget, then re-run the best config on test.

    Each failed trial gets one line (its error); its traceback is in its run's record.  A
    study that ends with no complete trial exits with status 1.
    """
    common.require_installed_plugin(plugin)  # a typo fails before Optuna and torch load
    from m6bench.sweeps.sweep import check_complete
    from m6bench.sweeps.sweep import sweep as run_sweep

    if trials is None and timeout is None:
        trials = 20
    result = run_sweep(plugin, model=model, benchmark=benchmark, dataset=dataset,
                       dataset_options=parse_assignments(dataset_opts), trials=trials,
                       timeout=timeout, seeds=seeds, storage=storage, study_name=study_name,
                       pruner=pruner,
                       overrides=parse_assignments(assignments), device=device, ledger=ledger,
                       catalog=common.load_cli_catalog(), report=common.reporter(quiet),
                       report_failure=common.failure_reporter(), workers=workers,
                       save_finals=not no_save_finals)
    metric = result.study.user_attrs.get("metric") or "ndcg@10"
    counts = result.counts
    click.echo(f"study {result.study_name} in {redact_text(result.storage)}")
    click.echo(f"finished {counts['finished']} trials: {counts['complete']} complete, "
               f"{counts['pruned']} pruned, {counts['failed']} failed")
    check_complete(result, ledger)
    if result.default_value is not None:
        click.echo(f"defaults (trial 0): valid {result.default_value:.4f}; best: valid "
                   f"{result.best_value:.4f}")
    click.echo("best config: " + json.dumps(result.best_config, sort_keys=True))
    click.echo(sweep_table(result, metric))


@click.command()
@click.option("--storage", required=True,
              help="The shared Optuna storage: a database URL, or journal:///PATH.")
@click.option("--study", "study_name", required=True, help="The study to join.")
@common.device_option()
@common.ledger_option("Ledger file for this worker's runs.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for the study to be created, for a worker started before "
                   "the sweep that creates it (a job scheduler's array, say).")
@click.option("--quiet", is_flag=True, help=QUIET_HELP)
def worker(storage: str, study_name: str, device: str, ledger: str | None, wait_seconds: float,
           quiet: bool) -> None:
    """Join a shared study and run trials until its budget is used.

    Exits with status 1 when the study ends with no complete trial (see `sweep`).
    """
    from m6bench.sweeps.sweep import check_complete, join_study

    result = join_study(storage, study_name, device=device, ledger=ledger,
                        report=common.reporter(quiet), report_failure=common.failure_reporter(),
                        wait=wait_seconds)
    counts = result.counts
    click.echo(f"study {study_name}: finished {counts['finished']} trials "
               f"({counts['complete']} complete, {counts['pruned']} pruned, "
               f"{counts['failed']} failed); best {result.best_value}")
    check_complete(result, ledger)
