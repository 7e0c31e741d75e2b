"""What the command groups share: the catalog (with its plugin warnings), the installed
plugins' names without importing them, the progress display, the ``--ledger`` option, and
how values print.

Command modules call :func:`load_cli_catalog` through this module (``common.load_cli_catalog()``),
so a test or a wrapper script replaces the catalog of every command in one place.

Nothing here imports torch at import time: ``m6bench --help`` and the listings import this
module, and the catalog (the plugins, hence torch) is loaded only by a command that needs it.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from m6bench.environment import plugin_entry_points
from m6bench.errors import PluginError, did_you_mean
from m6bench.runs.ledger import DEFAULT_LEDGER_TEXT, ledger_path

if TYPE_CHECKING:
    from m6bench.registry.catalog import Catalog

LEDGER_HELP = f"Ledger file (default {DEFAULT_LEDGER_TEXT})."
DEVICE_HELP = "auto, cpu, cuda, cuda:N."

Reporter = Callable[[str], None]


def load_cli_catalog() -> Catalog:
    """The catalog of every installed plugin; each plugin that failed gets one warning line."""
    from m6bench.registry.catalog import PluginFailureWarning, load_catalog

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginFailureWarning)
        catalog = load_catalog()
    for info in catalog.failures:
        first = (info.error or "").splitlines()[0]
        click.secho(f"warning: plugin {info.name!r} ({info.distribution} {info.version}) "
                    f"failed and was skipped: {first}", fg="yellow", err=True)
    return catalog


_INSTALLED_LOADER = load_cli_catalog


def uses_installed_catalog() -> bool:
    """Whether commands load the installed plugins' catalog, so that what entry points and
    package files say holds for it: false once a test or a wrapper script replaced
    :func:`load_cli_catalog` (its catalog can hold plugins nothing installed)."""
    return load_cli_catalog is _INSTALLED_LOADER


def reporter(quiet: bool = False, *, color: str | None = None) -> Reporter:
    """A line per event on stderr, as it is (no markup) and with credentials redacted (a
    trial's error can quote a storage URL); nothing under ``quiet``."""
    if quiet:
        return lambda line: None
    return lambda line: click.secho(redact(line), fg=color, err=True)


def redact(text: str) -> str:
    """``text`` with credentials (a storage URL's password) masked."""
    # imported when a line prints: the leaderboard package's import pulls in scipy (seconds)
    from m6bench_leaderboard.redact import redact_text

    return redact_text(text)


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
        from m6bench.registry.catalog import PluginFailureWarning, load_catalog

        with warnings.catch_warnings():  # `load_cli_catalog` reports failures when a command runs
            warnings.simplefilter("ignore", PluginFailureWarning)
            catalog = load_catalog()
        self.help = self.help_template.format(names=", ".join(self.names(catalog)))
        return super().get_help_record(ctx)


# ---------------------------------------------------------------- plugins, without importing
BUILTIN_PREFIX = "m6bench."  # the core's own plugins are named by their modules


def installed_plugins() -> list[tuple[str, str, str, str]]:
    """``(name, distribution, version, module)`` of every entry-point plugin the catalog
    would load, by name, read from package metadata: nothing is imported.  The core's
    built-in plugins (``m6bench.builtin.*``) are not listed."""
    found = []
    for ep in plugin_entry_points():
        if ep.name.startswith(BUILTIN_PREFIX):
            continue
        found.append((ep.name, ep.dist.name if ep.dist else "unknown",
                      ep.dist.version if ep.dist else "unknown", ep.value))
    return found


def require_installed_plugin(name: str) -> None:
    """Raise the catalog's unknown-plugin error for ``name`` from entry-point names alone,
    before a command pays for importing the plugins (and torch).  A built-in plugin's name,
    and any name when the catalog was replaced, is left to the catalog."""
    if not uses_installed_catalog():
        return
    names = [plugin[0] for plugin in installed_plugins()]
    if name not in names and not name.startswith(BUILTIN_PREFIX):
        raise PluginError(
            did_you_mean(name, names, what="plugin")
            + " Run `m6bench plugins` to list installed plugins; a plugin package is "
            "found once it is pip-installed with an entry point in the 'm6bench' group.")


# ------------------------------------------------------------------------- progress display
def progress_display(quiet: bool) -> Any:
    """What shows a run's progress: a transient bar on a terminal, one plain line per epoch
    when stderr is piped (CI logs), nothing under ``quiet``.  Either is handed to
    ``execute(progress=...)``."""
    if quiet:
        return None
    if not sys.stderr.isatty():
        return EpochLines(reporter())
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    transient=True)


class EpochLines:
    """The progress interface the training loop drives (rich's ``Progress``: ``add_task``,
    ``update``, a context manager), writing one line per training epoch instead of a bar:
    ``epoch 3 | bpr 0.1532 | valid/ndcg@10 0.0871 | 0.42s``.

    The loop describes each epoch (its losses, and the validation metric on epochs that
    evaluate) in the ``description`` of the ``train`` task's update; the seconds are the
    epoch's wall time, evaluation included.
    """

    TRAIN_TASK = "train"

    def __init__(self, report: Reporter) -> None:
        self.report = report
        self.names: list[str] = []
        self.last_tick = time.perf_counter()

    def __enter__(self) -> EpochLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        self.names.append(description)
        self.last_tick = time.perf_counter()
        return len(self.names) - 1

    def update(self, task: int, *, advance: float | None = None,
               description: str | None = None, **_: Any) -> None:
        if self.names[task] != self.TRAIN_TASK or not advance:
            return
        now = time.perf_counter()
        self.report(f"{description or self.TRAIN_TASK} | {now - self.last_tick:.2f}s")
        self.last_tick = now
