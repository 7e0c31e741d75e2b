"""What is installed: ``plugins``, ``models``, ``datasets``, ``benchmarks``, and
``new-plugin`` to scaffold one more."""

from __future__ import annotations

import click
from tabulate import tabulate

from m6bench.cli import common
from m6bench.registry.registry import COMPONENT_FAMILIES, FAMILIES


@click.command()
def plugins() -> None:
    """List plugins: name, distribution, version, hooks, and what each registers."""
    catalog = common.load_cli_catalog()
    rows = []
    for info in catalog.plugins.values():
        provides = []
        for family in FAMILIES:
            owned = [e.name for e in getattr(catalog, family.name).by_plugin(info.name)]
            if owned:
                provides.append(f"{family.name}: {', '.join(owned)}")
        rows.append([info.name, info.distribution, info.version,
                     "FAILED: " + (info.error or "").splitlines()[0] if info.error
                     else "; ".join(provides)])
    click.echo(tabulate(rows, headers=["plugin", "distribution", "version", "registers"],
                        tablefmt="github"))


@click.command()
def models() -> None:
    """List models with their plugin, tasks and default config."""
    catalog = common.load_cli_catalog()
    rows = [[e.plugin, e.name + (" (default)" if e.value.default else ""),
             ",".join(e.value.tasks), e.value.description] for e in catalog.models]
    click.echo(tabulate(rows, headers=["plugin", "model", "tasks", "description"],
                        tablefmt="github"))


@click.command()
def datasets() -> None:
    """List dataset loaders."""
    catalog = common.load_cli_catalog()
    rows = [[e.name, e.plugin, e.value.description] for e in catalog.datasets]
    click.echo(tabulate(rows, headers=["dataset", "plugin", "description"], tablefmt="github"))
    click.echo("A folder of RecBole atomic files or a CSV/TSV/Parquet file path works too.")


@click.command()
def benchmarks() -> None:
    """List registered benchmarks with their versions and contract hashes.

    A version hashes the loaded data, so it is shown for data already in the cache (any run
    loads it) and '-' otherwise; listing never loads a dataset.
    """
    from m6bench.runs.prepare import cached_benchmark_version

    catalog = common.load_cli_catalog()
    rows = [[e.name, cached_benchmark_version(catalog, e.value) or "-", e.value.contract_hash,
             e.value.dataset, e.value.protocol, ",".join(e.value.tasks), e.value.valid_metric]
            for e in catalog.benchmarks]
    click.echo(tabulate(rows, headers=["benchmark", "version", "contract", "dataset",
                                       "protocol", "tasks", "valid metric"], tablefmt="github"))
    if any(row[1] == "-" for row in rows):
        click.echo("version '-': the data is not loaded yet; a version hashes the loaded "
                   "data and the contract, and shows once a run has loaded it.")


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=None, metavar="PATH",
              help="Folder to create (default: ./m6bench-NAME); must be new or empty.")
def new_plugin(name: str, directory: str | None) -> None:
    """Scaffold a plugin package NAME: one working model, its tests, a README."""
    from m6bench.cli.scaffold import create_plugin

    catalog = common.load_cli_catalog()
    # the scaffold registers a model and a component under NAME: neither may be taken
    taken = set(catalog.plugins) | set(catalog.models.names())
    for family in COMPONENT_FAMILIES:
        taken.update(getattr(catalog, family.name).names())
    scaffold = create_plugin(name, directory, taken=taken)
    click.echo(f"Created plugin {scaffold.name!r} in {scaffold.path} (distribution "
               f"{scaffold.distribution}, package {scaffold.package}, model {scaffold.name!r}).")
    click.echo("Next steps:")
    for command in scaffold.next_steps():
        click.echo(f"  {command}")
    click.echo("Then change the model in src/" + scaffold.package + "/model.py and keep its "
               "tests green; the guide is docs/writing-a-plugin.md.")
