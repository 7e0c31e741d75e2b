"""The ``movielens-genres`` loader: a MovieLens variant split into genre domains."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from m6bench.data.dataset import Dataset, content_fingerprint
from m6bench.data.loaders.hashing import hash_parts
from m6bench.data.loaders.movielens import (
    MOVIELENS_DEFAULTS,
    RECBOLE_FALLBACK,
    movielens_fingerprint,
    movielens_loader,
)
from m6bench.data.specs import LoadContext
from m6bench.errors import DatasetError

# (ML-100K interactions: action 31%, comedy 29%, drama 28%, thriller 12%).  Items without
# a genre (ML-100K's "unknown") form the domain "other".
GENRE_DOMAINS_VERSION = "genre-domains-1"
GENRE_GROUPS: dict[str, tuple[str, ...]] = {
    "action": ("Action", "Adventure", "Sci-Fi", "Fantasy", "War", "Western"),
    "comedy": ("Comedy", "Animation", "Children's", "Musical"),
    "drama": ("Drama", "Romance", "Documentary"),
    "thriller": ("Crime", "Horror", "Mystery", "Thriller", "Film-Noir"),
}
GENRE_OF_GROUP = {genre: group for group, genres in GENRE_GROUPS.items() for genre in genres}
GENRE_DOMAIN_OTHER = "other"
GENRE_DOMAINS_DEFAULTS = {**MOVIELENS_DEFAULTS, "variant": "ml-100k"}


def genre_domain(genres: pd.Series) -> pd.Series:
    """Space-separated genre tokens -> the domain of the first token (see GENRE_GROUPS)."""
    first = genres.fillna("").astype("str").str.split().str[0]
    return first.map(GENRE_OF_GROUP).fillna(GENRE_DOMAIN_OTHER).astype("str")


def _genre_variant(options: Mapping[str, Any]) -> str:
    variant = str(options.get("variant") or "ml-100k")
    if variant not in RECBOLE_FALLBACK:
        raise DatasetError(
            f"Dataset option variant={variant!r} is not a MovieLens variant; use one of "
            f"{', '.join(RECBOLE_FALLBACK)}."
        )
    return variant


def genre_domains_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    variant = _genre_variant(options)
    inner = movielens_fingerprint(variant)(options, context)
    return hash_parts(GENRE_DOMAINS_VERSION, inner, GENRE_GROUPS)


def load_genre_domains(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    """A MovieLens variant whose interactions are split into genre domains (shared users)."""
    variant = _genre_variant(options)
    dataset = movielens_loader(variant)(options, context)
    genres = (dataset.item_features["genres"] if dataset.item_features is not None
              and "genres" in dataset.item_features.columns
              else pd.Series([None] * dataset.n_items))
    item_domain = genre_domain(genres.reset_index(drop=True)).to_numpy()
    names, item_code = np.unique(item_domain, return_inverse=True)
    split = replace(
        dataset,
        name=f"{variant}-genres",
        domains=item_code.astype(np.int64)[dataset.items],
        domain_names=tuple(str(n) for n in names),
        source=f"{dataset.source} (genre domains)",
    )
    return replace(split, fingerprint=content_fingerprint(split))

