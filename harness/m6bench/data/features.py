"""Side tables -> token ids: the one tokeniser of every model that embeds side features.

A side table has one row per user (or item) in entity order and a feature kind per column
(``TrainSet.user_feature_kinds`` / ``item_feature_kinds``, one of
:data:`m6bench.FEATURE_KINDS`).  :func:`tokenise_side_table` turns it into *fields* of
*tokens*:

* ``categorical``: one token ``column=value``;
* ``categorical_seq`` (a space-separated list such as genres): one token ``column=value``
  per listed value;
* ``numeric``: one quantile-band token ``column#<band>`` (age band, release-year band; see
  :func:`quantile_bands`);
* ``text`` (only when asked for in ``token_kinds``): one token ``column:word`` per
  lower-cased word;
* a missing value (``None``, a float NaN; with ``empty_is_missing`` also ``""``) has no
  token, and neither has a non-finite number.  ``numeric_seq`` columns are never tokens.

A token held by fewer than ``min_count`` entities is dropped (a zip code held by one user
identifies it and adds nothing an id embedding does not), as if missing.

The result is a padded ``(n, F, K)`` id tensor with id ``0`` as padding, which each model
reads in its own layout: a field-major tensor (factorisation machines), a flat ``(n, width)``
bag of token ids (:meth:`FeatureTokens.flat`) or a sparse ``(n, vocabulary)`` bag
(:meth:`FeatureTokens.bag`).  The per-value string work is one pass over the column;
counting, filtering, id assignment and the layout are vectorised (numpy, torch).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

__all__ = ["TOKEN_KINDS", "FeatureTokens", "quantile_bands", "tokenise_side_table"]

# The kinds tokenised unless a caller asks otherwise; "text" is the other kind it can read.
TOKEN_KINDS: tuple[str, ...] = ("categorical", "categorical_seq", "numeric")
_READABLE_KINDS = (*TOKEN_KINDS, "text")
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class FeatureTokens:
    """The tokens of ``n`` entities, field by field.

    ``tokens`` is int64 ``(n, F, K)``: entity ``e``'s tokens in field ``f`` are
    ``tokens[e, f, :m]`` (in the order of the values in the table), then ``0`` (padding: no
    token, never a real id); ``K`` is the most tokens any entity has in one field, at least
    1.  ``weights`` is float32 ``(n, F, K)``, ``0`` at padding.  ``fields`` names the ``F``
    fields (the columns that kept at least one token, in ``kinds`` order, after the id field
    when there is one).  ``vocabulary`` holds the token labels: ``vocabulary[i]`` names id
    ``i + 1``, so ids run ``1..len(vocabulary)``.
    """

    tokens: torch.Tensor
    weights: torch.Tensor
    fields: tuple[str, ...]
    vocabulary: tuple[str, ...]

    @property
    def size(self) -> int:
        """Number of token ids including the padding id 0 (an embedding table's rows)."""
        return len(self.vocabulary) + 1

    @property
    def n_fields(self) -> int:
        return len(self.fields)

    def flat(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every entity's tokens of all fields in one row: int64 ids and float32 weights, both
        ``(n, width)``, fields one after another and the padding at the end; ``width`` is
        the most tokens any entity has, at least 1."""
        n = self.tokens.shape[0]
        ids = self.tokens.reshape(n, -1)
        weights = self.weights.reshape(n, -1)
        if not ids.numel():
            return torch.zeros(n, 1, dtype=torch.int64), torch.zeros(n, 1, dtype=torch.float32)
        present = ids > 0
        width = max(1, int(present.sum(dim=1).max()))
        order = torch.argsort((~present).to(torch.int8), dim=1, stable=True)[:, :width]
        return ids.gather(1, order), weights.gather(1, order)

    def bag(self) -> torch.Tensor:
        """A sparse CSR float32 ``(n, max(1, len(vocabulary)))`` bag: entry ``(e, i)`` is the
        summed weight of entity ``e``'s tokens with id ``i + 1`` (no padding column)."""
        n = self.tokens.shape[0]
        entity, field, slot = torch.nonzero(self.tokens > 0, as_tuple=True)
        indices = torch.stack([entity, self.tokens[entity, field, slot] - 1])
        return torch.sparse_coo_tensor(
            indices, self.weights[entity, field, slot],
            size=(n, max(1, len(self.vocabulary))), check_invariants=False,
        ).coalesce().to_sparse_csr()


def quantile_bands(values: pd.Series | np.ndarray, bands: int) -> np.ndarray:
    """The quantile band of each value: int64 ``(len(values),)``, ``-1`` where missing.

    The edges are the ``bands - 1`` inner quantiles ``1/bands, 2/bands, ...`` of the finite
    values (numpy's linear interpolation), duplicates merged; a value's band is the number
    of edges at or below it, so ``0 <= band < bands`` (fewer bands when edges coincide).
    Non-numbers, NaN and infinities are missing; with ``bands <= 1`` or no finite value
    every value is missing.

    Example: ``[1, 2, 3, 4, nan]`` in 2 bands has the edge 2.5: ``[0, 0, 1, 1, -1]``.
    """
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(numbers)
    if bands <= 1 or not finite.any():
        return np.full(numbers.shape, -1, dtype=np.int64)
    edges = np.unique(np.quantile(numbers[finite], np.linspace(0, 1, bands + 1)[1:-1]))
    band = np.searchsorted(edges, numbers, side="right").astype(np.int64)
    return np.where(finite, band, -1)


def _is_missing(value: Any, empty_is_missing: bool) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return empty_is_missing and isinstance(value, str) and value == ""


def _column_tokens(values: pd.Series, kind: str, column: str, n: int, *, bands: int,
                   band_label: str, deduplicate: bool, empty_is_missing: bool
                   ) -> tuple[np.ndarray, list[str]]:
    """One column's tokens in table order: their rows (int64) and labels."""
    if kind == "numeric":
        band = quantile_bands(values, bands)[:n]  # edges over the whole column
        rows = np.flatnonzero(band >= 0)
        return rows, [f"{column}{band_label.format(band=b)}" for b in band[rows].tolist()]
    rows: list[int] = []
    labels: list[str] = []
    for row, value in enumerate(values.tolist()[:n]):
        if _is_missing(value, empty_is_missing):
            continue
        if kind == "categorical":
            parts = [f"{column}={value}"]
        elif kind == "categorical_seq":
            parts = [f"{column}={part}" for part in str(value).split()]
        else:  # text
            parts = [f"{column}:{word}" for word in _WORD.findall(str(value).lower())]
        if deduplicate:
            parts = list(dict.fromkeys(parts))
        rows.extend([row] * len(parts))
        labels.extend(parts)
    return np.asarray(rows, dtype=np.int64), labels


def _entity_counts(codes: np.ndarray, rows: np.ndarray, counted: np.ndarray, n: int,
                   n_codes: int) -> np.ndarray:
    """How many distinct counted entities hold each token code."""
    use = counted[rows]
    pairs = np.unique(codes[use] * max(n, 1) + rows[use])
    return np.bincount(pairs // max(n, 1), minlength=n_codes)


def tokenise_side_table(
    table: pd.DataFrame | None,
    kinds: Mapping[str, str],
    n: int,
    *,
    bands: int = 6,
    band_label: str = "#{band}",
    min_count: int = 2,
    known: torch.Tensor | np.ndarray | None = None,
    id_field: str | None = None,
    order: Literal["sorted", "first-seen"] = "sorted",
    weight_over: Literal["kept", "all"] = "kept",
    deduplicate: bool = True,
    empty_is_missing: bool = False,
    token_kinds: Collection[str] = TOKEN_KINDS,
) -> FeatureTokens:
    """Tokenise a side table into :class:`FeatureTokens` (see the module docstring).

    :param table: the side table, row ``e`` for entity ``e`` (``None``: no feature tokens).
        Rows past ``n`` are ignored (but a numeric column's band edges use every row);
        entities past the table's end have no tokens.
    :param kinds: column -> feature kind; a column absent from the table, or of a kind not in
        ``token_kinds``, is skipped.  Fields follow this order.
    :param n: the number of entities.
    :param bands: quantile bands per numeric column (:func:`quantile_bands`; ``<= 1``: no
        numeric tokens).
    :param band_label: a band token's label after the column name, formatted with ``band``
        (``"#{band}"`` gives ``age#0``).  Labels order the ``"sorted"`` vocabulary.
    :param min_count: a token held by fewer entities is dropped everywhere.
    :param known: bool ``(n,)``, the entities whose tokens are counted for ``min_count``
        (e.g. those with training interactions, so that a value only cold entities hold,
        whose embedding training could never move, is treated as missing); ``None``: all.
    :param id_field: when given, a first field of this name holding each entity's own token
        ``<id_field>=<e>``, never dropped.
    :param order: token ids in label order (``"sorted"``), or per field in order of first
        appearance (row by row), fields one after another (``"first-seen"``; with
        ``id_field`` entity ``e`` then has id ``e + 1``).
    :param weight_over: an entity's token in a field weighs ``1 / count``, counting the
        field's kept tokens (``"kept"``: a field with tokens sums to 1) or all its tokens
        before ``min_count`` dropped some (``"all"``).
    :param deduplicate: a value listed twice in one cell is one token (``False``: two, each
        with its own weight).
    :param empty_is_missing: an empty string is a missing value (else a categorical ``""`` is
        the token ``column=``).
    :param token_kinds: the kinds that give tokens, from ``categorical``,
        ``categorical_seq``, ``numeric`` and ``text``.
    """
    unknown = set(token_kinds) - set(_READABLE_KINDS)
    if unknown:
        raise ValueError(f"token_kinds {sorted(unknown)} cannot be tokenised; use some of "
                         f"{', '.join(_READABLE_KINDS)}.")
    if order not in ("sorted", "first-seen") or weight_over not in ("kept", "all"):
        raise ValueError(f"order={order!r} / weight_over={weight_over!r}: use 'sorted' or "
                         "'first-seen', and 'kept' or 'all'.")
    names: list[str] = []
    field_of: list[np.ndarray] = []
    row_of: list[np.ndarray] = []
    labels: list[str] = []
    if id_field is not None:
        names.append(id_field)
        field_of.append(np.zeros(n, dtype=np.int64))
        row_of.append(np.arange(n, dtype=np.int64))
        labels.extend(f"{id_field}={e}" for e in range(n))
    if table is not None:
        for column, kind in kinds.items():
            if column not in table.columns or kind not in token_kinds:
                continue
            rows, column_labels = _column_tokens(
                table[column], kind, column, n, bands=bands, band_label=band_label,
                deduplicate=deduplicate, empty_is_missing=empty_is_missing)
            field_of.append(np.full(rows.size, len(names), dtype=np.int64))
            row_of.append(rows)
            labels.extend(column_labels)
            names.append(column)
    return _assemble(names, field_of, row_of, labels, n, min_count=min_count, known=known,
                     keep_first=id_field is not None, order=order, weight_over=weight_over)


def _assemble(names: list[str], field_of: list[np.ndarray], row_of: list[np.ndarray],
              labels: list[str], n: int, *, min_count: int,
              known: torch.Tensor | np.ndarray | None, keep_first: bool, order: str,
              weight_over: str) -> FeatureTokens:
    """Long-format tokens (field, row, label; grouped by field, rows ascending) -> layout."""
    field = np.concatenate(field_of) if field_of else np.zeros(0, dtype=np.int64)
    row = np.concatenate(row_of) if row_of else np.zeros(0, dtype=np.int64)
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object), sort=False)
    uniques = np.asarray(uniques, dtype=object)
    if known is None:
        counted = np.ones(n, dtype=bool)
    else:
        known = known.cpu().numpy() if isinstance(known, torch.Tensor) else np.asarray(known)
        counted = np.zeros(n, dtype=bool)
        counted[: min(n, known.size)] = known.astype(bool)[:n]
    held = _entity_counts(codes, row, counted, n, uniques.size)
    keep = held[codes] >= min_count
    if keep_first:
        keep |= field == 0

    group = field * n + row
    n_groups = len(names) * n
    total = np.bincount(group, minlength=n_groups)
    kept_total = np.bincount(group[keep], minlength=n_groups)
    share = (kept_total if weight_over == "kept" else total).astype(np.float64)
    group, kept_codes = group[keep], codes[keep]
    weight = (1.0 / share[group]).astype(np.float32)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else group
    lengths = np.diff(np.r_[starts, group.size])
    slot = np.arange(group.size) - np.repeat(starts, lengths)

    if order == "sorted":
        vocabulary = sorted(set(uniques[np.unique(kept_codes)].tolist()))
        rank = {label: i + 1 for i, label in enumerate(vocabulary)}
        id_of = np.zeros(uniques.size, dtype=np.int64)
        for code in np.unique(kept_codes).tolist():
            id_of[code] = rank[uniques[code]]
        ids = id_of[kept_codes]
    else:
        first, seen = pd.factorize(kept_codes, sort=False)
        ids = first.astype(np.int64) + 1
        vocabulary = uniques[np.asarray(seen, dtype=np.int64)].tolist()

    used = np.unique(group // max(n, 1)) if group.size else np.zeros(0, dtype=np.int64)
    position = np.full(len(names), -1, dtype=np.int64)
    position[used] = np.arange(used.size)
    width = max(1, int(lengths.max()) if lengths.size else 1)
    tokens = np.zeros((n, used.size, width), dtype=np.int64)
    weights = np.zeros((n, used.size, width), dtype=np.float32)
    entity, column = group % max(n, 1), position[group // max(n, 1)]
    tokens[entity, column, slot] = ids
    weights[entity, column, slot] = weight
    return FeatureTokens(torch.from_numpy(tokens), torch.from_numpy(weights),
                         tuple(names[f] for f in used.tolist()), tuple(vocabulary))
