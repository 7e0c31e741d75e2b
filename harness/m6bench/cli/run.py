"""``m6bench run``: train and evaluate one model on one benchmark, and record the run."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from tabulate import tabulate

from m6bench.cli import common
from m6bench.runs.config import parse_assignments

# Beyond-accuracy metrics print after the accuracy ones.
BEYOND_ACCURACY = ("coverage", "novelty", "gini")


def results_table(record: dict[str, Any]) -> str:
    valid, test = record["metrics"].get("valid", {}), record["metrics"].get("test", {})
    names = [n for n in test if not n.startswith(BEYOND_ACCURACY)]
    names += [n for n in test if n.startswith(BEYOND_ACCURACY)]
    rows = [[n, valid.get(n), test.get(n)] for n in names]
    return tabulate(rows, headers=["metric", "valid", "test"], floatfmt=".4f", tablefmt="github")


@click.command()
@click.option("--plugin", required=True, help="Plugin name (see `m6bench plugins`).")
@click.option("--model", default=None, help="Model of the plugin (default: its default model).")
@click.option("--dataset", default=None,
              help="Dataset name or path (default: the embedded synthetic dataset).")
@click.option("--dataset-opt", "dataset_opts", multiple=True, metavar="KEY=VALUE",
              help="Loader option, e.g. --dataset-opt archive=ml-100k.zip.")
@click.option("--benchmark", default=None,
              help="A registered benchmark (see `m6bench benchmarks`).")
@click.option("--protocol", default=None, cls=common.CatalogHelpOption,
              names=lambda catalog: catalog.protocols.names(), help="{names}.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--split-seed", type=int, default=None,
              help="Seed of the protocol's cut (default: --seed).")
@click.option("--init-seed", type=int, default=None,
              help="Seed of the model's initialisation and sampling (default: --seed).")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set lr=0.01 --set epochs=50.")
@click.option("--config", "config_file", default=None, help="A TOML file of config keys.")
@common.device_option()
@common.ledger_option()
@click.option("--quiet", is_flag=True, help="No progress (bar or per-epoch lines).")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON at the end.")
@click.option("--save", is_flag=True,
              help="Store the trained model beside the ledger (load it with `m6bench load`).")
def run(plugin: str, model: str | None, dataset: str | None, dataset_opts: tuple[str, ...],
        benchmark: str | None, protocol: str | None, seed: int, split_seed: int | None,
        init_seed: int | None, assignments: tuple[str, ...], config_file: str | None,
        device: str, ledger: str | None, quiet: bool, as_json: bool, save: bool) -> None:
    """Train and evaluate one model on one benchmark, and record the run."""
    common.require_installed_plugin(plugin)  # a typo answers before torch is imported
    from m6bench.runs.run import RunRequest, execute, plan_run, prepare

    request = RunRequest(plugin=plugin, model=model, dataset=dataset, benchmark=benchmark,
                         protocol=protocol, seed=seed, split_seed=split_seed,
                         init_seed=init_seed, overrides=parse_assignments(assignments),
                         config_file=config_file,
                         dataset_options=parse_assignments(dataset_opts), device=device,
                         ledger=ledger, command=sys.argv, save=save)
    plan = plan_run(request, common.load_cli_catalog())
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
    record = execute(plan, progress=common.progress_display(quiet), prepared=bench)
    _print_summary(record)
    click.echo(f"recorded run {record['run_id']} in {plan.ledger}")
    if "artifact" in record:
        click.echo(f"saved the model in {plan.ledger.parent / record['artifact']['path']} "
                   f"({record['artifact']['bytes']} bytes)")
    if as_json:
        click.echo(json.dumps(record, sort_keys=True))


def _print_summary(record: dict[str, Any]) -> None:
    stats = record["dataset"]["statistics"]
    click.echo(f"dataset {record['dataset']['name']}: {stats['users']} users, {stats['items']} "
               f"items, {stats['interactions']} interactions; split {record['cut']['sizes']}")
    click.echo(f"epochs {record['epochs']} (best {record['best_epoch']}), train "
               f"{record['timings']['train']:.2f}s, evaluate {record['timings']['evaluate']:.2f}s")
    click.echo(results_table(record))
