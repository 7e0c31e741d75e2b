"""The built-in benchmarks: pinned dataset + protocol + metrics contracts."""

from __future__ import annotations

from m6bench._specs import BenchmarkSpec
from m6bench.hookspecs import hookimpl

DEFAULT_BENCHMARK = "synthetic"


@hookimpl
def m6bench_register_benchmarks(register):
    register(BenchmarkSpec(
        "synthetic", dataset="synthetic", protocol="random", tasks=("ranking", "rating"),
        description="The embedded default: a synthetic dataset with planted latent structure, "
                    "per-user random 8:1:1 split, full ranking.",
    ))
    for name in ("ml-100k", "ml-1m"):
        register(BenchmarkSpec(
            name, dataset=name, protocol="random", tasks=("ranking", "rating"),
            description=f"MovieLens {name[3:].upper()}, per-user random 8:1:1 split, every "
                        "interaction a positive, full ranking with training items masked "
                        "(RecBole's defaults).",
        ))
    register(BenchmarkSpec(
        "ml-100k-cold-items", dataset="ml-100k", protocol="cold-items",
        tasks=("ranking",), candidates="heldout",
        description="MovieLens 100K, 10%/10% of items held out entirely; ranking among the "
                    "held-out items.",
    ))
    register(BenchmarkSpec(
        "ml-100k-cold-users", dataset="ml-100k", protocol="cold-users", tasks=("ranking",),
        description="MovieLens 100K, 10%/10% of users held out entirely; full ranking.",
    ))
