"""The in-memory Dataset: interactions with dense integer ids plus optional side tables."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from m6bench.errors import DatasetError

FEATURE_KINDS: tuple[str, ...] = (
    "categorical", "categorical_seq", "numeric", "numeric_seq", "text"
)
# What a loader does with several interactions of one (user, item) pair (the dataset option
# ``duplicates``): keep the latest by timestamp (ties: the later row), keep the earliest,
# keep the latest with the ratings summed, or refuse the data.
DUPLICATE_POLICIES = ("last", "first", "sum", "error")
DEFAULT_DUPLICATES = "last"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions (user, item, optional rating, timestamp, domain) and side tables.

    Users and items are dense indices ``0..n-1``; ``user_ids[u]`` / ``item_ids[i]`` give the
    original tokens.  ``user_features`` and ``item_features`` have one row per user / item
    in index order (rows of entities missing from the source table are null).  Every column
    of a side table has a kind in ``user_feature_kinds`` / ``item_feature_kinds``.

    Only entities that occur in the interactions are kept: full ranking is over the items
    that have at least one interaction.  ``merged_duplicates`` counts the interaction rows
    that the loader's ``duplicates`` policy merged into another row of the same (user, item).
    """

    name: str
    users: np.ndarray  # int64 (n_interactions,)
    items: np.ndarray  # int64 (n_interactions,)
    user_ids: np.ndarray  # str (n_users,)
    item_ids: np.ndarray  # str (n_items,)
    ratings: np.ndarray | None = None  # float32 (n_interactions,)
    timestamps: np.ndarray | None = None  # int64 seconds (n_interactions,)
    domains: np.ndarray | None = None  # int64 index into domain_names (n_interactions,)
    domain_names: tuple[str, ...] = ()
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    user_feature_kinds: dict[str, str] = field(default_factory=dict)
    item_feature_kinds: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    source: str = ""
    merged_duplicates: int = 0

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.users)

    def statistics(self) -> dict[str, object]:
        n = self.n_interactions
        stats: dict[str, object] = {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "density": n / max(1, self.n_users * self.n_items),
        }
        if self.domain_names:
            stats["domains"] = list(self.domain_names)
        if self.ratings is not None:
            stats["rating_mean"] = float(np.mean(self.ratings)) if n else float("nan")
        if self.merged_duplicates:
            stats["merged_duplicates"] = int(self.merged_duplicates)
        return stats

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(
        cls,
        name: str,
        interactions: pd.DataFrame,
        *,
        user_features: pd.DataFrame | None = None,
        item_features: pd.DataFrame | None = None,
        user_feature_kinds: dict[str, str] | None = None,
        item_feature_kinds: dict[str, str] | None = None,
        source: str = "",
        fingerprint: str = "",
        duplicates: str | None = None,
    ) -> Dataset:
        """Validate raw tables and map original ids to dense indices.

        ``interactions`` needs columns ``user`` and ``item`` and may have ``rating``,
        ``timestamp`` and ``domain``.  ``user_features`` is keyed by a ``user`` column and
        ``item_features`` by an ``item`` column.  ``source`` names the file(s) in errors.
        Ratings and timestamps must be finite numbers.  ``duplicates`` (a loader passes its
        ``duplicates`` option) merges several rows of one (user, item) by that policy (see
        :func:`merge_duplicates`); None keeps every row, and a benchmark then keeps the
        latest of each pair.
        """
        where = source or name
        policy = None if duplicates is None else duplicate_policy(duplicates)
        _check_interaction_ids(interactions, where)
        user_index, user_ids = _factorize_ids(interactions["user"])
        item_index, item_ids = _factorize_ids(interactions["item"])
        ratings = _numeric_column(interactions, "rating", where, np.float32)
        timestamps = _numeric_column(interactions, "timestamp", where, np.float64)
        domains, domain_names = _domain_codes(interactions)
        user_table = _align_side_table(user_features, "user", user_ids, where)
        item_table = _align_side_table(item_features, "item", item_ids, where)
        dataset = cls(
            name=name,
            users=user_index.astype(np.int64),
            items=item_index.astype(np.int64),
            user_ids=np.asarray(user_ids, dtype=str),
            item_ids=np.asarray(item_ids, dtype=str),
            ratings=ratings,
            timestamps=None if timestamps is None else timestamps.astype(np.int64),
            domains=domains,
            domain_names=domain_names,
            user_features=user_table,
            item_features=item_table,
            user_feature_kinds=_check_kinds(user_table, user_feature_kinds, "user", where),
            item_feature_kinds=_check_kinds(item_table, item_feature_kinds, "item", where),
            source=source,
            fingerprint=fingerprint,
        )
        if policy is not None:
            dataset = merge_duplicates(dataset, policy, where=where)
        if not fingerprint:
            object.__setattr__(dataset, "fingerprint", content_fingerprint(dataset))
        return dataset


def _check_interaction_ids(interactions: pd.DataFrame, where: str) -> None:
    """Refuse interactions without user/item columns, without rows, or with an empty id."""
    missing = [c for c in ("user", "item") if c not in interactions.columns]
    if missing:
        raise DatasetError(
            f"{where}: the interactions have no {' or '.join(missing)} column "
            f"(columns found: {', '.join(map(str, interactions.columns)) or 'none'}). "
            "Map your columns to 'user' and 'item' (for RecBole atomic files: a header "
            "like 'user_id:token\\titem_id:token'; for CSV: the column mapping option)."
        )
    if len(interactions) == 0:
        raise DatasetError(
            f"{where}: the interaction table is empty (a header and no rows). "
            "A dataset needs at least one interaction; check the file is complete."
        )
    for column in ("user", "item"):
        nulls = interactions[column].isna().to_numpy()
        if nulls.any():
            row = int(np.flatnonzero(nulls)[0])
            raise DatasetError(
                f"{where}: interaction row {row + 1} has an empty {column} id. "
                "Every interaction needs both a user and an item; remove or fix that row."
            )


def _domain_codes(interactions: pd.DataFrame) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """The ``domain`` column as codes into its sorted names (None, () without the column)."""
    if "domain" not in interactions.columns:
        return None, ()
    codes, names = pd.factorize(interactions["domain"].astype(str).to_numpy(), sort=True)
    return codes.astype(np.int64), tuple(str(d) for d in names)


def _numeric_column(
    frame: pd.DataFrame, column: str, where: str, dtype: type
) -> np.ndarray | None:
    """An interaction column as finite numbers of ``dtype`` (None when the column is absent)."""
    if column not in frame.columns:
        return None
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    _refuse_rows(frame, column, where, np.isnan(values), "not a number",
                 f"Fix or drop those rows, or leave the {column} column out if the data has "
                 "none.")
    _refuse_rows(frame, column, where, np.isinf(values), "not a finite number",
                 f"Fix or drop those rows: an infinite {column} makes every mean, loss or "
                 "ordering computed from it meaningless.")
    return values.astype(dtype)


def _refuse_rows(
    frame: pd.DataFrame, column: str, where: str, bad: np.ndarray, problem: str, advice: str
) -> None:
    """Raise naming the first ``bad`` row's value as the user wrote it, and how many there are."""
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    raise DatasetError(
        f"{where}: interaction row {row + 1} has {column} {_shown(frame[column].iloc[row])}, "
        f"which is {problem} ({int(bad.sum())} such rows in all). {advice}"
    )


def _shown(raw: Any) -> str:
    """A cell as the user wrote it: 'great', 'inf' (not np.float64(inf))."""
    if isinstance(raw, np.generic):
        raw = raw.item()
    return repr(str(raw)) if isinstance(raw, float) else repr(raw)


# ----------------------------------------------------------------------------- row selection
def select_rows(dataset: Dataset, rows: np.ndarray, *, suffix: str) -> Dataset:
    """A dataset with only ``rows`` of the interactions; entities are re-indexed densely."""
    rows = np.asarray(rows, dtype=np.int64)
    users_kept, users = np.unique(dataset.users[rows], return_inverse=True)
    items_kept, items = np.unique(dataset.items[rows], return_inverse=True)

    def take(array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else array[rows]

    def table(frame: Any, kept: np.ndarray) -> Any:
        return None if frame is None else frame.iloc[kept].reset_index(drop=True)

    subset = replace(
        dataset,
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        user_ids=dataset.user_ids[users_kept],
        item_ids=dataset.item_ids[items_kept],
        ratings=take(dataset.ratings),
        timestamps=take(dataset.timestamps),
        domains=take(dataset.domains),
        user_features=table(dataset.user_features, users_kept),
        item_features=table(dataset.item_features, items_kept),
        name=f"{dataset.name}{suffix}",
    )
    return replace(subset, fingerprint=content_fingerprint(subset))


# ----------------------------------------------------------------------------- duplicates
def duplicate_policy(value: Any) -> str:
    """The ``duplicates`` option checked: one of :data:`DUPLICATE_POLICIES`."""
    policy = DEFAULT_DUPLICATES if value is None else str(value).strip().lower()
    if policy not in DUPLICATE_POLICIES:
        raise DatasetError(
            f"Dataset option duplicates={value!r} is not a duplicates policy; use one of "
            f"{', '.join(DUPLICATE_POLICIES)} (e.g. --dataset-opt duplicates=last, the default)."
        )
    return policy


def _factorize_ids(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Index of every row's id (in order of first appearance) and the ids as strings.

    Integer ids are factorised as integers and only the distinct ones become strings: the
    same result as factorising their strings, without one Python string per row (18 s of a
    10 M-row load).
    """
    if pd.api.types.is_integer_dtype(column.dtype):
        index, distinct = pd.factorize(column.to_numpy(), sort=False)
        return index, np.asarray(distinct).astype(str).astype(object)
    return pd.factorize(column.astype(str).to_numpy(), sort=False)


def merge_duplicates(dataset: Dataset, policy: str = DEFAULT_DUPLICATES, *,
                     where: str = "") -> Dataset:
    """One interaction per (user, item), by ``policy``.

    ``last`` keeps the latest interaction by timestamp (the later row on a tie, or without
    timestamps); ``first`` keeps the earliest; ``sum`` keeps the latest with its rating
    replaced by the sum of the pair's ratings (so its timestamp is the latest one);
    ``error`` raises :class:`DatasetError` naming the count and an example pair.  Kept rows
    stay in their original order; ``merged_duplicates`` grows by the rows merged away.
    """
    policy = duplicate_policy(policy)
    where = where or dataset.source or dataset.name
    n = dataset.n_interactions
    keys = dataset.users * max(1, dataset.n_items) + dataset.items
    sorted_keys = np.sort(keys)
    if not (sorted_keys[1:] == sorted_keys[:-1]).any():
        return dataset  # the common case, found by one sort instead of two stable ones
    order = np.arange(n)
    if dataset.timestamps is not None:
        order = np.lexsort((order, dataset.timestamps))  # time order, ties by row
    ordered_keys = keys[order]
    distinct, first_in_time = np.unique(ordered_keys, return_index=True)
    merged = n - len(distinct)
    if merged == 0:
        return dataset
    if policy == "error":
        group = np.searchsorted(distinct, keys)
        row = int(np.flatnonzero(np.bincount(group)[group] > 1)[0])  # first repeated pair
        pair_rows = np.flatnonzero(keys == keys[row])
        raise DatasetError(
            f"{where}: {merged} interaction rows repeat a (user, item) pair of another row, "
            f"e.g. (user {str(dataset.user_ids[dataset.users[row]])!r}, item "
            f"{str(dataset.item_ids[dataset.items[row]])!r}) at rows "
            f"{', '.join(str(int(r) + 1) for r in pair_rows[:5])}. Remove the repeated rows, "
            "or choose how to merge them with --dataset-opt duplicates=last (keep the latest), "
            "first (keep the earliest) or sum (add the ratings up)."
        )
    if policy == "sum" and dataset.ratings is None:
        raise DatasetError(
            f"{where}: duplicates=sum adds up the ratings of a repeated (user, item) pair, but "
            "the interactions have no rating column. Use --dataset-opt duplicates=last or "
            "duplicates=first."
        )
    if policy == "first":
        keep = order[first_in_time]
    else:
        _, last_from_end = np.unique(ordered_keys[::-1], return_index=True)
        keep = order[::-1][last_from_end]
    keep = np.sort(keep)
    merged_dataset = select_rows(dataset, keep, suffix="")
    if policy == "sum":
        group = np.searchsorted(distinct, keys)  # each row's pair, in the order of `distinct`
        sums = np.bincount(group, weights=dataset.ratings.astype(np.float64),
                           minlength=len(distinct))
        ratings = sums[group[keep]].astype(dataset.ratings.dtype)
        merged_dataset = replace(merged_dataset, ratings=ratings)
        merged_dataset = replace(merged_dataset,
                                 fingerprint=content_fingerprint(merged_dataset))
    return replace(merged_dataset, merged_duplicates=dataset.merged_duplicates + merged)


def _align_side_table(
    table: pd.DataFrame | None, key: str, ids: np.ndarray, where: str
) -> pd.DataFrame | None:
    if table is None:
        return None
    if key not in table.columns:
        raise DatasetError(
            f"{where}: the {key} feature table has no {key!r} column to join on "
            f"(columns found: {', '.join(map(str, table.columns))}). Name the id column {key!r}."
        )
    table = table.copy()
    table[key] = table[key].astype(str)
    table = table.drop_duplicates(subset=key, keep="first").set_index(key)
    aligned = table.reindex(pd.Index(np.asarray(ids, dtype=str), name=key))
    return aligned.reset_index(drop=True)


def _check_kinds(
    table: pd.DataFrame | None, kinds: dict[str, str] | None, side: str, where: str
) -> dict[str, str]:
    if table is None:
        return {}
    kinds = dict(kinds or {})
    for column in table.columns:
        if column not in kinds:
            kinds[column] = (
                "numeric" if pd.api.types.is_numeric_dtype(table[column]) else "categorical"
            )
        if kinds[column] not in FEATURE_KINDS:
            raise DatasetError(
                f"{where}: {side} feature {column!r} has kind {kinds[column]!r}; "
                f"use one of {', '.join(FEATURE_KINDS)}."
            )
    return {c: kinds[c] for c in table.columns}


def content_fingerprint(dataset: Dataset) -> str:
    """sha256 over the interaction arrays, ids and side tables: equal content, equal id."""
    digest = hashlib.sha256()
    for array in (dataset.users, dataset.items, dataset.ratings, dataset.timestamps,
                  dataset.domains):
        digest.update(b"-" if array is None else np.ascontiguousarray(array).tobytes())
    digest.update("\x1f".join(dataset.user_ids.tolist()).encode())
    digest.update("\x1f".join(dataset.item_ids.tolist()).encode())
    digest.update(json.dumps(list(dataset.domain_names)).encode())
    for table in (dataset.user_features, dataset.item_features):
        if table is not None:
            digest.update(pd.util.hash_pandas_object(table.astype(str), index=True)
                          .to_numpy().tobytes())
    return digest.hexdigest()[:16]
