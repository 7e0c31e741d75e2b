"""What the command groups share: the catalog (with its plugin warnings), the progress
reporter, the ``--ledger`` option, and how values print.

Command modules call :func:`load_cli_catalog` through this module (``common.load_cli_catalog()``),
so a test or a wrapper script replaces the catalog of every command in one place.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from m6bench.registry.catalog import Catalog, PluginFailureWarning, load_catalog
from m6bench.runs.ledger import DEFAULT_LEDGER_TEXT, ledger_path
from m6bench_leaderboard.redact import redact_text

LEDGER_HELP = f"Ledger file (default {DEFAULT_LEDGER_TEXT})."
DEVICE_HELP = "auto, cpu, cuda, cuda:N."

Reporter = Callable[[str], None]


def load_cli_catalog() -> Catalog:
    """The catalog of every installed plugin; each plugin that failed gets one warning line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginFailureWarning)
        catalog = load_catalog()
    for info in catalog.failures:
        first = (info.error or "").splitlines()[0]
        click.secho(f"warning: plugin {info.name!r} ({info.distribution} {info.version}) "
                    f"failed and was skipped: {first}", fg="yellow", err=True)
    return catalog


def reporter(quiet: bool = False, *, color: str | None = None) -> Reporter:
    """A line per event on stderr, as it is (no markup) and with credentials redacted (a
    trial's error can quote a storage URL); nothing under ``quiet``."""
    if quiet:
        return lambda line: None
    return lambda line: click.secho(redact_text(line), fg=color, err=True)


def failure_reporter() -> Reporter:
    """Failed trials' lines: printed under --quiet too, in yellow."""
    return reporter(color="yellow")


def ledger_option(help: str = LEDGER_HELP) -> Callable[[Any], Any]:
    """The ``--ledger PATH`` option; its value goes through :func:`ledger_file`."""
    return click.option("--ledger", default=None, help=help)


def device_option() -> Callable[[Any], Any]:
    return click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)


def ledger_file(ledger: str | None) -> Path:
    """The ledger ``--ledger`` named, else the default one."""
    return ledger_path(ledger)


def format_value(value: float | None) -> str:
    """A metric as recorded (``repr``, every digit), ``-`` when there is none."""
    return "-" if value is None else repr(value)


class CatalogHelpOption(click.Option):
    """An option whose help lists names the catalog holds, looked up when help is shown.

    Listing them by hand went stale as plugins added names; loading the catalog for every
    command would slow each one down for a help text it never prints.
    """

    def __init__(self, *args: Any, names: Callable[[Catalog], Iterable[str]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help_template = self.help or "{names}"
        self.names = names

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        with warnings.catch_warnings():  # `load_cli_catalog` reports failures when a command runs
            warnings.simplefilter("ignore", PluginFailureWarning)
            catalog = load_catalog()
        self.help = self.help_template.format(names=", ".join(self.names(catalog)))
        return super().get_help_record(ctx)
