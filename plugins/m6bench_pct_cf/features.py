"""Side features -> tensors: a weighted bag of feature tokens plus standardised numbers.

Every side-table column becomes tokens of one shared vocabulary, whatever its kind:

* ``categorical``: the token ``column=value``;
* ``categorical_seq``: one token ``column=value`` per space-separated value, weights
  ``1 / count`` (a mean);
* ``text``: one token ``column:word`` per lower-cased word, weights ``1 / count``;
* ``numeric``: the standardised value as a dense input, plus a quantile-bin token
  ``column#q<k>`` (a cheap non-linearity, e.g. for release years);
* ``numeric_seq`` (e.g. precomputed text vectors): the vectors, standardised per dimension,
  as dense inputs when every row has the same length.

Tokens carried by fewer than ``min_count`` entities are dropped (an item's unique title word
cannot generalise to another item).  The bag is a sparse CSR ``(n_entities, vocabulary)``
matrix, so encoding every entity is one sparse-dense product.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from m6bench import tokenise_side_table

QUANTILE_BINS = 5
TOKEN_KINDS = ("categorical", "categorical_seq", "numeric", "text")


@dataclass(frozen=True)
class FeatureTensors:
    """One side table as tensors: ``bags`` sparse CSR float32 ``(n, vocabulary)`` (row
    weights sum to the number of bag columns the entity has), ``numeric`` float32
    ``(n, n_numeric)``, and the token names (for inspection)."""

    bags: torch.Tensor
    numeric: torch.Tensor
    vocabulary: tuple[str, ...]

    @property
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    @property
    def n_numeric(self) -> int:
        return int(self.numeric.shape[1])


def _standardise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.where(np.isfinite(matrix), matrix, np.nan)
    mean = np.nanmean(matrix, axis=0) if matrix.size else np.zeros(matrix.shape[1])
    std = np.nanstd(matrix, axis=0) if matrix.size else np.ones(matrix.shape[1])
    mean = np.nan_to_num(mean)
    std = np.where(np.nan_to_num(std) > 0, np.nan_to_num(std), 1.0)
    return np.nan_to_num((matrix - mean) / std).astype(np.float32)


def feature_tensors(
    table: pd.DataFrame | None,
    kinds: Mapping[str, str],
    n: int,
    device: torch.device,
    *,
    min_count: int = 2,
) -> FeatureTensors:
    """Tokenise a side table (one row per entity, in index order) into :class:`FeatureTensors`.

    The bag comes from m6bench's side-table tokeniser with this model's settings: text words
    are tokens too, an empty string is missing, a value listed twice counts twice, and a
    column's tokens weigh ``1 / count`` over all its tokens (a dropped rare token keeps its
    share).

    :param table: the side table, or ``None`` (then the bag is empty and no numbers).
    :param kinds: the feature kind of every column.
    :param n: the number of entities (rows) expected.
    :param min_count: a token is kept when at least this many entities carry it.
    """
    tokens = tokenise_side_table(
        table, kinds, n, bands=QUANTILE_BINS, band_label="#q{band}", min_count=min_count,
        weight_over="all", deduplicate=False, empty_is_missing=True, token_kinds=TOKEN_KINDS)
    columns = _numeric_columns(table, kinds) if table is not None else []
    numeric = (_standardise(np.concatenate(columns, axis=1)) if columns
               else np.zeros((n, 0), dtype=np.float32))
    return FeatureTensors(tokens.bag().to(device), torch.from_numpy(numeric).to(device),
                          tokens.vocabulary)


def _numeric_columns(table: pd.DataFrame, kinds: Mapping[str, str]) -> list[np.ndarray]:
    """The dense inputs: each ``numeric`` column ``(n, 1)``, and each ``numeric_seq`` column
    ``(n, width)`` whose rows all have one length (missing rows NaN)."""
    columns: list[np.ndarray] = []
    for name, kind in kinds.items():
        column = table[name]
        if kind == "numeric":
            numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            columns.append(numbers[:, None])
        elif kind == "numeric_seq":
            lengths = {len(v) for v in column if isinstance(v, np.ndarray)}
            if len(lengths) == 1:
                width = lengths.pop()
                columns.append(np.stack([
                    v if isinstance(v, np.ndarray) else np.full(width, np.nan)
                    for v in column]))
    return columns


class FeatureBagEncoder(nn.Module):
    """Side features -> vectors: ``bags @ E + numeric @ W``.

    Each feature token has a learned ``dim``-vector (``E``: ``(vocabulary, dim)``), as in
    factorisation machines over side features (Rendle, ICDM 2010) and SVDFeature (Chen et al.,
    JMLR 2012); dense numeric inputs (``W``: ``(n_numeric, dim)``) are a linear map.

    Shapes: ``forward(bags, numeric)`` takes a sparse CSR ``(N, vocabulary)`` bag and
    ``(N, n_numeric)`` numbers and returns ``(N, dim)``.
    """

    def __init__(self, vocabulary: int, numeric: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.token_vectors = nn.Parameter(torch.randn(max(1, vocabulary), dim) * init_std)
        self.numeric = nn.Linear(numeric, dim, bias=False) if numeric > 0 else None
        if self.numeric is not None:
            nn.init.normal_(self.numeric.weight, std=init_std)

    def forward(self, bags: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        out = bags @ self.token_vectors
        if self.numeric is not None:
            out = out + self.numeric(numeric)
        return out
