"""Side tables -> the field layout of factorisation machines and wide models.

A *field* is one input slot of DeepFM or Wide&Deep: the user id, the gender, the
occupation, the age band, the item id, the genres, the release-year band, ...  Every entity
has every field; a field holds up to ``K`` tokens with weights summing to 1 (a multi-valued
field such as genres averages its tokens; a missing value holds none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

CATEGORICAL_KINDS = ("categorical", "categorical_seq")


@dataclass(frozen=True)
class FieldTable:
    """One side's fields: ``tokens`` int64 ``(n, F, K)`` into a shared vocabulary, ``0`` as
    padding; ``weights`` float32 ``(n, F, K)``; ``names`` the F field names; ``vocabulary``
    the number of token ids (with padding); ``id_field`` the position of the entity-id field
    (always 0)."""

    tokens: torch.Tensor
    weights: torch.Tensor
    names: tuple[str, ...]
    vocabulary: int

    @property
    def n_fields(self) -> int:
        return len(self.names)


def _values(series: pd.Series, kind: str, name: str, bands: int) -> list[list[str]]:
    if kind in CATEGORICAL_KINDS:
        out: list[list[str]] = []
        for value in series.tolist():
            if value is None or (isinstance(value, float) and np.isnan(value)):
                out.append([])
            elif kind == "categorical_seq":
                out.append(list(dict.fromkeys(str(value).split())))
            else:
                out.append([str(value)])
        return out
    numbers = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    finite = numbers[np.isfinite(numbers)]
    if finite.size == 0:
        return [[] for _ in numbers]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bands + 1)[1:-1]))
    band = np.searchsorted(edges, numbers, side="right")
    return [[f"#{b}"] if np.isfinite(x) else [] for x, b in zip(numbers, band)]


def field_table(
    n: int,
    table: pd.DataFrame | None,
    kinds: Mapping[str, str],
    *,
    with_id: bool = True,
    bands: int = 6,
    min_count: int = 2,
    id_name: str = "id",
) -> FieldTable:
    """The fields of ``n`` entities: their id (``with_id``), every categorical and token-list
    column, and every numeric column as quantile bands.  Tokens held by fewer than
    ``min_count`` entities are dropped (the field is then empty for those entities)."""
    columns: list[tuple[str, list[list[str]]]] = []
    if with_id:
        columns.append((id_name, [[str(i)] for i in range(n)]))
    if table is not None:
        for column, kind in kinds.items():
            if column in table.columns and kind in (*CATEGORICAL_KINDS, "numeric"):
                values = _values(table[column], kind, column, bands)[:n]
                values += [[] for _ in range(n - len(values))]
                counts: dict[str, int] = {}
                for tokens in values:
                    for token in tokens:
                        counts[token] = counts.get(token, 0) + 1
                kept = [[t for t in tokens if counts[t] >= min_count] for tokens in values]
                if any(kept):
                    columns.append((column, kept))
    width = max(1, max((len(t) for _, values in columns for t in values), default=1))
    ids = np.zeros((n, len(columns), width), dtype=np.int64)
    weights = np.zeros((n, len(columns), width), dtype=np.float32)
    next_id = 1
    for f, (_, values) in enumerate(columns):
        index: dict[str, int] = {}
        for row, tokens in enumerate(values):
            for k, token in enumerate(tokens):
                if token not in index:
                    index[token] = next_id
                    next_id += 1
                ids[row, f, k] = index[token]
                weights[row, f, k] = 1.0 / len(tokens)
    return FieldTable(torch.from_numpy(ids), torch.from_numpy(weights),
                      tuple(name for name, _ in columns), next_id)
