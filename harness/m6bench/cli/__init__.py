"""The ``m6bench`` command line: a thin layer over :mod:`m6bench`'s Python API.

This module holds the group :data:`main` (the ``m6bench`` entry point); each command group
lives in a module of its own (:mod:`.run`, :mod:`.sweep`, :mod:`.board`, :mod:`.reproduce`,
:mod:`.catalog`) that imports only :mod:`.common`, and is attached here.
"""

from __future__ import annotations

import sys
import traceback
import warnings
from typing import Any

import click

from m6bench.cli import board, catalog, reproduce, run, sweep
from m6bench.errors import M6BenchError
from m6bench_leaderboard.redact import redact_text


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


for command in (run.run, sweep.sweep, sweep.worker, catalog.plugins, catalog.models,
                catalog.datasets, catalog.benchmarks, catalog.new_plugin, board.board,
                board.leaderboard, reproduce.reproduce):
    main.add_command(command)
