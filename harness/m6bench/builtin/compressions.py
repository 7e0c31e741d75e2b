"""The built-in compressions (float16, int8, prune, low-rank), registered through the same
hook as any plugin's."""

from __future__ import annotations

from m6bench.hookspecs import hookimpl
from m6bench.training.compression import BUILTIN_COMPRESSIONS


@hookimpl
def m6bench_register_compressions(register):
    for spec in BUILTIN_COMPRESSIONS:
        register(spec)
