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

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

_WORD = re.compile(r"[a-z0-9']+")
QUANTILE_BINS = 5


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


def _column_tokens(values: pd.Series, kind: str, name: str) -> list[list[str]]:
    """Per row, the tokens of one column (empty for missing values)."""
    rows: list[list[str]] = []
    for value in values.tolist():
        if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
            rows.append([])
        elif kind == "categorical":
            rows.append([f"{name}={value}"])
        elif kind == "categorical_seq":
            rows.append([f"{name}={token}" for token in str(value).split()])
        else:  # text
            rows.append([f"{name}:{word}" for word in _WORD.findall(str(value).lower())])
    return rows


def _quantile_tokens(values: pd.Series, name: str) -> list[list[str]]:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    finite = numbers[np.isfinite(numbers)]
    if finite.size == 0:
        return [[] for _ in numbers]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]))
    bins = np.searchsorted(edges, numbers, side="right")
    return [[f"{name}#q{b}"] if np.isfinite(x) else [] for x, b in zip(numbers, bins)]


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

    :param table: the side table, or ``None`` (then the bag is empty and no numbers).
    :param kinds: the feature kind of every column.
    :param n: the number of entities (rows) expected.
    :param min_count: a token is kept when at least this many entities carry it.
    """
    per_row: list[list[str]] = [[] for _ in range(n)]
    weights: list[list[float]] = [[] for _ in range(n)]
    numeric_columns: list[np.ndarray] = []
    if table is not None:
        for name, kind in kinds.items():
            column = table[name]
            if kind in ("categorical", "categorical_seq", "text"):
                token_rows = _column_tokens(column, kind, name)
            elif kind == "numeric":
                numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
                numeric_columns.append(numbers[:, None])
                token_rows = _quantile_tokens(column, name)
            elif kind == "numeric_seq":
                lengths = {len(v) for v in column if isinstance(v, np.ndarray)}
                if len(lengths) == 1:
                    width = lengths.pop()
                    numeric_columns.append(np.stack([
                        v if isinstance(v, np.ndarray) else np.full(width, np.nan)
                        for v in column]))
                continue
            else:
                continue
            for row, tokens in enumerate(token_rows):
                if not tokens:
                    continue
                per_row[row].extend(tokens)
                weights[row].extend([1.0 / len(tokens)] * len(tokens))
    counts: dict[str, int] = {}
    for tokens in per_row:
        for token in set(tokens):
            counts[token] = counts.get(token, 0) + 1
    vocabulary = tuple(sorted(t for t, c in counts.items() if c >= min_count))
    index = {token: i for i, token in enumerate(vocabulary)}
    rows, cols, values = [], [], []
    for row, (tokens, row_weights) in enumerate(zip(per_row, weights)):
        for token, weight in zip(tokens, row_weights):
            column = index.get(token)
            if column is not None:
                rows.append(row)
                cols.append(column)
                values.append(weight)
    bags = torch.sparse_coo_tensor(
        torch.tensor([rows, cols], dtype=torch.int64).reshape(2, -1),
        torch.tensor(values, dtype=torch.float32),
        size=(n, max(1, len(vocabulary))), check_invariants=False,
    ).coalesce().to_sparse_csr()
    numeric = (_standardise(np.concatenate(numeric_columns, axis=1)) if numeric_columns
               else np.zeros((n, 0), dtype=np.float32))
    return FeatureTensors(bags.to(device), torch.from_numpy(numeric).to(device), vocabulary)


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
