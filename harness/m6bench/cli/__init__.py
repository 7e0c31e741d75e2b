"""The ``m6bench`` command line: a thin layer over :mod:`m6bench`'s Python API.

This module holds the group :data:`main` (the ``m6bench`` entry point).  Each command lives
in a module of its own (:mod:`.run`, :mod:`.sweep`, :mod:`.board`, :mod:`.reproduce`,
:mod:`.catalog`, ...) and is named in :data:`COMMANDS`; it is imported only when it is
invoked (click's lazy-group pattern), so ``m6bench --help`` and the listings do not pay for
torch, Optuna and datasets.  To add a command, add one line to :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings
from typing import Any

# Before anything imports torch (libgomp reads it once, when torch loads it): OpenMP's
# default spin-waiting made 2-thread training 10-35x slower beside another busy process
# (benchmarks/bench_busy.py); passive waiting costs nothing on an idle machine.  The user's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from m6bench.cli.common import redact
from m6bench.errors import M6BenchError

# command name -> ("module:attribute", the one-line help `m6bench --help` shows)
COMMANDS: dict[str, tuple[str, str]] = {
    "benchmarks": ("m6bench.cli.catalog:benchmarks", "List registered benchmarks with their versions and contract hashes."),  # noqa: E501
    "board": ("m6bench.cli.board:board", "Board specs: benchmarks x models x budget x seeds, run idempotently."),  # noqa: E501
    "compress": ("m6bench.cli.deploy:compress", "Compress a saved run's model, evaluate the variant on its test split, record it."),  # noqa: E501
    "datasets": ("m6bench.cli.catalog:datasets", "List dataset loaders."),
    "export": ("m6bench.cli.serve:export", "Export a saved run's scoring path (user -> top-k items) to ONNX."),  # noqa: E501
    "leaderboard": ("m6bench.cli.board:leaderboard", "The leaderboard: a pure function of the ledger (and a board spec)."),  # noqa: E501
    "load": ("m6bench.cli.deploy:load", "Rebuild the saved model of run RUN_ID and print what was loaded."),  # noqa: E501
    "loadtest": ("m6bench.cli.serve:loadtest", "Load-test a saved run's service with locust; record latency and requests/s."),  # noqa: E501
    "models": ("m6bench.cli.catalog:models", "List models with their plugin, tasks and default config."),  # noqa: E501
    "new-plugin": ("m6bench.cli.catalog:new_plugin", "Scaffold a plugin package NAME: one working model, its tests, a README."),  # noqa: E501
    "plugins": ("m6bench.cli.catalog:plugins", "List plugins: name, distribution, version, and what each registers."),  # noqa: E501
    "reproduce": ("m6bench.cli.reproduce:reproduce", "Re-run the ledger record RUN_ID (benchmark, plugin, config, seed) and compare."),  # noqa: E501
    "run": ("m6bench.cli.run:run", "Train and evaluate one model on one benchmark, and record the run."),  # noqa: E501
    "serve": ("m6bench.cli.serve:serve", "Serve a saved run over HTTP: top-k recommendations, micro-batched."),  # noqa: E501
    "sweep": ("m6bench.cli.sweep:sweep", "Tune a model with Optuna under a budget, then re-run the best config on test."),  # noqa: E501
    "worker": ("m6bench.cli.sweep:worker", "Join a shared study and run trials until its budget is used."),  # noqa: E501
}


class LazyGroup(click.Group):
    """A group whose commands are named in :data:`COMMANDS` and imported on first use.

    Help lists the table's one-line help without importing any command module.
    """

    def __init__(self, *args: Any, lazy_commands: dict[str, tuple[str, str]],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        target = self.lazy_commands[cmd_name][0]
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"COMMANDS[{cmd_name!r}] = {target!r} is not a click command; "
                            "point it at the function decorated with @click.command")
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        # as click's own listing: the help cut to the width the names leave
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = []
        for name in names:
            if name in self.lazy_commands:  # the table's line, imported yet or not
                # a bare Command shortens the line as the real one would, importing nothing
                command = click.Command(name, help=self.lazy_commands[name][1])
            else:  # added with add_command
                command = self.commands[name]
            if not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class FriendlyGroup(LazyGroup):
    """Prints M6BenchError messages as one paragraph, without a traceback.

    Every message that leaves this way, and the traceback of an unexpected error, has its
    credentials redacted (a storage URL's password can be inside a driver's error).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except M6BenchError as exc:
            click.secho(f"error: {redact(str(exc))}", fg="red", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            click.echo(redact("".join(traceback.format_exception(exc))), err=True)
            sys.exit(1)


@click.group(cls=FriendlyGroup, lazy_commands=COMMANDS)
@click.version_option(package_name="m6bench")
def main() -> None:
    """m6bench: fair, fast, reproducible benchmarks of recommender models."""
    # the command line is an application: torch's notes that CSR tensors are beta (ours are
    # built valid) say nothing its user can act on
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
