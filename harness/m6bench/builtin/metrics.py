"""The built-in metrics, registered through the same hook as any plugin's."""

from __future__ import annotations

from m6bench.evaluation.builtin_metrics import BUILTIN_METRICS
from m6bench.hookspecs import hookimpl


@hookimpl
def m6bench_register_metrics(register):
    for spec in BUILTIN_METRICS:
        register(spec)
