"""What is installed: ``plugins``, ``models``, ``datasets``, ``benchmarks``, and
``new-plugin`` to scaffold one more.

Listing plugins, models and datasets needs every plugin imported (what a plugin registers
is only known by running it), and plugins import torch: seconds.  The rows are therefore
kept in a cache keyed by what decides them (the entry points with their distributions and
versions, the size and modification time of every source file of m6bench and of each
plugin's package, the ``M6BENCH_*`` environment, the interpreter), so a listing imports
nothing while the installation is unchanged.  A listing in which a plugin failed is never
cached (its warning and ``FAILED`` row come from a fresh load every time), and neither is
one of a catalog a test or wrapper put in place of :func:`common.load_cli_catalog`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from tabulate import tabulate

from m6bench.cli import common
from m6bench.environment import cache_dir

if TYPE_CHECKING:
    from m6bench.registry.catalog import Catalog

LISTING_FORMAT = 1  # bump when the cached rows change shape


def listing_cache_dir() -> Path:
    """``<cache>/listings`` in m6bench's cache folder."""
    return cache_dir() / "listings"


def installation_fingerprint() -> str:
    """A hash of everything a listing depends on; it changes when any of it does."""
    plugins = common.installed_plugins()
    packages = sorted({"m6bench"} | {module.split(":")[0].split(".")[0]
                                     for *_, module in plugins})
    sources = [_file_state(path) for package in packages for path in _source_files(package)]
    environment = sorted((k, v) for k, v in os.environ.items() if k.startswith("M6BENCH_"))
    state = [LISTING_FORMAT, sys.executable, sys.version, plugins, sources, environment]
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()


def _source_files(package: str) -> list[str]:
    """Every file of the top-level ``package`` (a plugin can be a single module)."""
    spec = importlib.util.find_spec(package)  # a top-level name: nothing is imported
    if spec is None:
        return []
    if spec.submodule_search_locations is None:
        return [spec.origin] if spec.origin and os.path.isfile(spec.origin) else []
    found = []
    for folder in spec.submodule_search_locations:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found += [os.path.join(root, name) for name in sorted(files)]
    return found


def _file_state(path: str) -> tuple[str, int, int]:
    try:
        stat = os.stat(path)
    except OSError:  # removed while we looked: that changes the fingerprint as well
        return (path, -1, -1)
    return (path, stat.st_mtime_ns, stat.st_size)


def listing_rows(kind: str) -> list[list[Any]]:
    """The rows of the ``plugins``, ``models`` or ``datasets`` listing."""
    if not common.uses_installed_catalog():
        return LISTINGS[kind](common.load_cli_catalog())
    path = listing_cache_dir() / f"listing-{installation_fingerprint()[:24]}.json"
    try:
        return json.loads(path.read_text())[kind]
    except (OSError, ValueError, KeyError):
        pass
    catalog = common.load_cli_catalog()
    listings = {name: rows(catalog) for name, rows in LISTINGS.items()}
    if not catalog.failures:
        try:  # a cache that cannot be written only costs the next listing its speed
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(listings))
            os.replace(partial, path)
        except OSError:
            pass
    return listings[kind]


def _plugin_rows(catalog: Catalog) -> list[list[Any]]:
    from m6bench.registry.registry import FAMILIES

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
    return rows


def _model_rows(catalog: Catalog) -> list[list[Any]]:
    return [[e.plugin, e.name + (" (default)" if e.value.default else ""),
             ",".join(e.value.tasks), e.value.description] for e in catalog.models]


def _dataset_rows(catalog: Catalog) -> list[list[Any]]:
    return [[e.name, e.plugin, e.value.description] for e in catalog.datasets]


LISTINGS = {"plugins": _plugin_rows, "models": _model_rows, "datasets": _dataset_rows}


@click.command()
def plugins() -> None:
    """List plugins: name, distribution, version, and what each registers."""
    click.echo(tabulate(listing_rows("plugins"),
                        headers=["plugin", "distribution", "version", "registers"],
                        tablefmt="github"))


@click.command()
def models() -> None:
    """List models with their plugin, tasks and default config."""
    click.echo(tabulate(listing_rows("models"),
                        headers=["plugin", "model", "tasks", "description"], tablefmt="github"))


@click.command()
def datasets() -> None:
    """List dataset loaders."""
    click.echo(tabulate(listing_rows("datasets"), headers=["dataset", "plugin", "description"],
                        tablefmt="github"))
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
    from m6bench.registry.registry import COMPONENT_FAMILIES

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
