"""The ``m6bench`` command line: a thin layer over :mod:`m6bench`'s Python API."""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from typing import Any

import click
from tabulate import tabulate

from m6bench.errors import M6BenchError
from m6bench.registry.catalog import Catalog, PluginFailureWarning, load_catalog
from m6bench.runs.config import parse_assignments
from m6bench_leaderboard.redact import redact_text


def _catalog() -> Catalog:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginFailureWarning)
        catalog = load_catalog()
    for info in catalog.failures:
        first = (info.error or "").splitlines()[0]
        click.secho(f"warning: plugin {info.name!r} ({info.distribution} {info.version}) "
                    f"failed and was skipped: {first}", fg="yellow", err=True)
    return catalog


class FriendlyGroup(click.Group):
    """Prints M6BenchError messages as one paragraph, without a traceback.

    Every message that leaves this way, and the traceback of an unexpected error, has its
    credentials redacted (a storage URL's password can be inside a driver's error).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except M6BenchError as exc:
            click.secho(f"error: {redact_text(str(exc))}", fg="red", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            click.echo(redact_text("".join(traceback.format_exception(exc))), err=True)
            sys.exit(1)


@click.group(cls=FriendlyGroup)
@click.version_option(package_name="m6bench")
def main() -> None:
    """m6bench: fair, fast, reproducible benchmarks of recommender models."""
    # the command line is an application: torch's notes that CSR tensors are beta (ours are
    # built valid) say nothing its user can act on
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")


def _results_table(record: dict[str, Any]) -> str:
    valid, test = record["metrics"].get("valid", {}), record["metrics"].get("test", {})
    names = [n for n in test if not n.startswith(("coverage", "novelty", "gini"))]
    names += [n for n in test if n.startswith(("coverage", "novelty", "gini"))]
    rows = [[n, valid.get(n), test.get(n)] for n in names]
    return tabulate(rows, headers=["metric", "valid", "test"], floatfmt=".4f", tablefmt="github")


@main.command()
@click.option("--plugin", required=True, help="Plugin name (see `m6bench plugins`).")
@click.option("--model", default=None, help="Model of the plugin (default: its default model).")
@click.option("--dataset", default=None,
              help="Dataset name or path (default: the embedded synthetic dataset).")
@click.option("--dataset-opt", "dataset_opts", multiple=True, metavar="KEY=VALUE",
              help="Loader option, e.g. --dataset-opt archive=ml-100k.zip.")
@click.option("--benchmark", default=None,
              help="A registered benchmark (see `m6bench benchmarks`).")
@click.option("--protocol", default=None, help="random, loo, temporal, cold-users, cold-items.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set lr=0.01 --set epochs=50.")
@click.option("--config", "config_file", default=None, help="A TOML file of config keys.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--ledger", default=None, help="Ledger file (default m6bench-runs/ledger.jsonl "
              "or $M6BENCH_LEDGER).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON at the end.")
def run(plugin: str, model: str | None, dataset: str | None, dataset_opts: tuple[str, ...],
        benchmark: str | None, protocol: str | None, seed: int, assignments: tuple[str, ...],
        config_file: str | None, device: str, ledger: str | None, quiet: bool,
        as_json: bool) -> None:
    """Train and evaluate one model on one benchmark, and record the run."""
    from m6bench.runs.run import RunRequest, execute, plan_run, prepare

    request = RunRequest(plugin=plugin, model=model, dataset=dataset, benchmark=benchmark,
                         protocol=protocol, seed=seed, overrides=parse_assignments(assignments),
                         config_file=config_file,
                         dataset_options=parse_assignments(dataset_opts), device=device,
                         ledger=ledger, command=sys.argv)
    plan = plan_run(request, _catalog())
    if plan.note:
        click.echo(plan.note)
    bench = prepare(plan)  # the version hashes the loaded data; bad data stops here
    merged = bench.dataset.merged_duplicates
    if merged:
        policy = plan.benchmark.dataset_options.get("duplicates", "last")
        click.echo(f"note: merged {merged} repeated (user, item) interaction rows of "
                   f"{bench.dataset.name} (duplicates={policy}; choose with --dataset-opt "
                   "duplicates=last|first|sum|error)", err=True)
    click.echo(f"plugin {plan.plugin_name} | model {plan.model_name} | benchmark "
               f"{plan.benchmark.name} ({plan.benchmark.protocol}, version "
               f"{bench.version}) | seed {seed} | device {plan.device}")
    click.echo("config: " + json.dumps(plan.config, sort_keys=True))
    progress = None
    if not quiet and sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            transient=True)
    record = execute(plan, progress=progress, prepared=bench)
    stats = record["dataset"]["statistics"]
    click.echo(f"dataset {record['dataset']['name']}: {stats['users']} users, {stats['items']} "
               f"items, {stats['interactions']} interactions; split {record['cut']['sizes']}")
    click.echo(f"epochs {record['epochs']} (best {record['best_epoch']}), train "
               f"{record['timings']['train']:.2f}s, evaluate {record['timings']['evaluate']:.2f}s")
    click.echo(_results_table(record))
    click.echo(f"recorded run {record['run_id']} in {plan.ledger}")
    if as_json:
        click.echo(json.dumps(record, sort_keys=True))


def _sweep_table(result: Any, metric: str) -> str:
    trials = sorted(
        (t for t in result.study.get_trials(deepcopy=False) if t.value is not None),
        key=lambda t: t.value, reverse=result.study.direction.name == "MAXIMIZE",
    )[:5]
    rows = [[t.number, t.value, json.dumps(t.params, sort_keys=True)] for t in trials]
    top = tabulate(rows, headers=["trial", f"valid {metric}", "params"], floatfmt=".4f",
                   tablefmt="github")
    finals = [[r["seed"], r["metrics"]["valid"].get(metric), r["metrics"]["test"].get(metric),
               r["metrics"]["test"].get("recall@10"), r["run_id"]] for r in result.finals]
    final = tabulate(finals, headers=["seed", f"valid {metric}", f"test {metric}",
                                      "test recall@10", "run"], floatfmt=".4f",
                     tablefmt="github")
    return f"top trials\n{top}\n\nfinal runs of the best config\n{final}"


def _reporter(quiet: bool) -> Any:
    from rich.console import Console

    console = Console(stderr=True, quiet=quiet, highlight=False)
    # a line per event, not wrapped; a trial's error can quote a storage URL
    return lambda line: console.print(redact_text(line), soft_wrap=True)


def _failure_reporter() -> Any:
    """Failed trials' lines: printed under --quiet too, their text as it is (no markup)."""
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    return lambda line: console.print(redact_text(line), markup=False, style="yellow",
                                      soft_wrap=True)


@main.command()
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
              help="Optuna RDB URL (default: SQLite beside the ledger); postgresql://... "
                   "lets workers on other machines join.")
@click.option("--study", "study_name", default=None, help="Study name (default: derived "
              "from benchmark, model and budget, so re-running resumes it).")
@click.option("--pruner", default="median", show_default=True,
              type=click.Choice(["median", "hyperband", "none"]))
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Fixed config keys for every trial.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--ledger", default=None, help="Ledger file.")
@click.option("--quiet", is_flag=True,
              help="No per-trial lines (a failed trial's line is still printed).")
def sweep(plugin: str, model: str | None, benchmark: str | None, dataset: str | None,
          dataset_opts: tuple[str, ...], trials: int | None, timeout: float | None,
          seeds: int, storage: str | None, study_name: str | None, pruner: str,
          assignments: tuple[str, ...], device: str, ledger: str | None, quiet: bool) -> None:
    """Tune a model with Optuna under a budget, then re-run the best config on test.

    Each failed trial gets one line (its error); its traceback is in its run's record.  A
    study that ends with no complete trial exits with status 1.
    """
    from m6bench.sweeps.sweep import check_complete
    from m6bench.sweeps.sweep import sweep as run_sweep

    if trials is None and timeout is None:
        trials = 20
    result = run_sweep(plugin, model=model, benchmark=benchmark, dataset=dataset,
                       dataset_options=parse_assignments(dataset_opts), trials=trials,
                       timeout=timeout, seeds=seeds, storage=storage, study_name=study_name,
                       pruner=pruner,
                       overrides=parse_assignments(assignments), device=device, ledger=ledger,
                       catalog=_catalog(), report=_reporter(quiet),
                       report_failure=_failure_reporter())
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
    click.echo(_sweep_table(result, metric))


@main.command()
@click.option("--storage", required=True, help="The shared Optuna RDB URL.")
@click.option("--study", "study_name", required=True, help="The study to join.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--ledger", default=None, help="Ledger file for this worker's runs.")
@click.option("--quiet", is_flag=True,
              help="No per-trial lines (a failed trial's line is still printed).")
def worker(storage: str, study_name: str, device: str, ledger: str | None, quiet: bool) -> None:
    """Join a shared study and run trials until its budget is used.

    Exits with status 1 when the study ends with no complete trial (see `sweep`).
    """
    from m6bench.sweeps.sweep import check_complete, join_study

    result = join_study(storage, study_name, device=device, ledger=ledger,
                        report=_reporter(quiet), report_failure=_failure_reporter())
    counts = result.counts
    click.echo(f"study {study_name}: finished {counts['finished']} trials "
               f"({counts['complete']} complete, {counts['pruned']} pruned, "
               f"{counts['failed']} failed); best {result.best_value}")
    check_complete(result, ledger)


@main.command()
def plugins() -> None:
    """List plugins: name, distribution, version, hooks, and what each registers."""
    catalog = _catalog()
    rows = []
    for info in catalog.plugins.values():
        provides = []
        for family in ("datasets", "protocols", "benchmarks", "encoders", "fusions", "heads",
                       "models"):
            owned = [e.name for e in getattr(catalog, family).by_plugin(info.name)]
            if owned:
                provides.append(f"{family}: {', '.join(owned)}")
        rows.append([info.name, info.distribution, info.version,
                     "FAILED: " + (info.error or "").splitlines()[0] if info.error
                     else "; ".join(provides)])
    click.echo(tabulate(rows, headers=["plugin", "distribution", "version", "registers"],
                        tablefmt="github"))


@main.command()
def models() -> None:
    """List models with their plugin, tasks and default config."""
    catalog = _catalog()
    rows = [[e.plugin, e.name + (" (default)" if e.value.default else ""),
             ",".join(e.value.tasks), e.value.description] for e in catalog.models]
    click.echo(tabulate(rows, headers=["plugin", "model", "tasks", "description"],
                        tablefmt="github"))


@main.command()
def datasets() -> None:
    """List dataset loaders."""
    catalog = _catalog()
    rows = [[e.name, e.plugin, e.value.description] for e in catalog.datasets]
    click.echo(tabulate(rows, headers=["dataset", "plugin", "description"], tablefmt="github"))
    click.echo("A folder of RecBole atomic files or a CSV/TSV/Parquet file path works too.")


@main.command()
def benchmarks() -> None:
    """List registered benchmarks with their versions and contract hashes.

    A version hashes the loaded data, so it is shown for data already in the cache (any run
    loads it) and '-' otherwise; listing never loads a dataset.
    """
    from m6bench.runs.prepare import cached_benchmark_version

    catalog = _catalog()
    rows = [[e.name, cached_benchmark_version(catalog, e.value) or "-", e.value.contract_hash,
             e.value.dataset, e.value.protocol, ",".join(e.value.tasks), e.value.valid_metric]
            for e in catalog.benchmarks]
    click.echo(tabulate(rows, headers=["benchmark", "version", "contract", "dataset",
                                       "protocol", "tasks", "valid metric"], tablefmt="github"))
    if any(row[1] == "-" for row in rows):
        click.echo("version '-': the data is not loaded yet; a version hashes the loaded "
                   "data and the contract, and shows once a run has loaded it.")


@main.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=None, metavar="PATH",
              help="Folder to create (default: ./m6bench-NAME); must be new or empty.")
def new_plugin(name: str, directory: str | None) -> None:
    """Scaffold a plugin package NAME: one working model, its tests, a README."""
    from m6bench.cli.scaffold import create_plugin

    catalog = _catalog()
    taken = set(catalog.plugins)
    for family in ("models", "encoders", "fusions", "heads"):
        taken.update(getattr(catalog, family).names())
    scaffold = create_plugin(name, directory, taken=taken)
    click.echo(f"Created plugin {scaffold.name!r} in {scaffold.path} (distribution "
               f"{scaffold.distribution}, package {scaffold.package}, model {scaffold.name!r}).")
    click.echo("Next steps:")
    for command in scaffold.next_steps():
        click.echo(f"  {command}")
    click.echo("Then change the model in src/" + scaffold.package + "/model.py and keep its "
               "tests green; the guide is docs/writing-a-plugin.md.")


from m6bench.cli.results import board, leaderboard, reproduce  # noqa: E402

main.add_command(board)
main.add_command(leaderboard)
main.add_command(reproduce)

