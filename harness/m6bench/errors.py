"""User-facing errors.

Every error m6bench raises for bad input is an :class:`M6BenchError` whose message is one
paragraph: what was wrong (naming the file, row, key, plugin or component) and how to fix it.
The CLI prints the message without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class M6BenchError(Exception):
    """Base class for errors caused by input the user can fix."""


class DatasetError(M6BenchError):
    """A dataset could not be found, parsed or validated."""


class ProtocolError(M6BenchError):
    """A protocol cut could not be made or failed validation."""


class ConfigError(M6BenchError):
    """A configuration key or value is not accepted."""


class PluginError(M6BenchError):
    """A plugin, model or component name is unknown, duplicated or broken."""


class CodeChanged(M6BenchError):
    """The installed code is not the code a record was made with (``reproduce`` exits 3)."""

    exit_code = 3


class LedgerError(M6BenchError):
    """A ledger file cannot be written or a record is not valid."""


class ArtifactError(M6BenchError):
    """A saved model is missing, tampered with, or does not match its record's benchmark
    version or code identity."""


def did_you_mean(name: str, choices: Iterable[str], *, what: str) -> str:
    """``"Unknown <what> 'x'. Did you mean 'y'? Choices: a, b, c."`` for a failed lookup."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    message = f"Unknown {what} {name!r}."
    if close:
        message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    if choices:
        message += " Choices: " + ", ".join(choices) + "."
    else:
        message += f" No {what} is registered."
    return message


class MemoryEstimateError(M6BenchError):
    """Work was refused before it started because its estimated memory exceeds what is free."""


class ExportError(M6BenchError):
    """A model that cannot be exported to ONNX, or an export that failed; names the model."""
