"""Protocols: deterministic train/valid/test cuts, validated, fingerprinted and cached."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from m6bench.data.dataset import Dataset, merge_duplicates, select_rows
from m6bench.data.split import Split
from m6bench.data.trainset import contained_in, sorted_distinct
from m6bench.errors import ProtocolError


# ----------------------------------------------------------------------------- helpers
def deduplicate(dataset: Dataset) -> Dataset:
    """Keep one interaction per (user, item): the latest by timestamp, else the last row.

    Loaders built on :meth:`Dataset.from_frames` already merged duplicates by their
    ``duplicates`` option; this is for datasets built otherwise (a no-op without duplicates).
    """
    return merge_duplicates(dataset, "last")


def kcore(dataset: Dataset, k: int, max_rounds: int = 100) -> Dataset:
    """Drop users and items with fewer than ``k`` interactions until none is left."""
    if k <= 1:
        return dataset
    keep = np.ones(dataset.n_interactions, dtype=bool)
    for _ in range(max_rounds):
        user_counts = np.bincount(dataset.users[keep], minlength=dataset.n_users)
        item_counts = np.bincount(dataset.items[keep], minlength=dataset.n_items)
        ok = keep & (user_counts[dataset.users] >= k) & (item_counts[dataset.items] >= k)
        if ok.sum() == keep.sum():
            break
        keep = ok
    if not keep.any():
        raise ProtocolError(
            f"{dataset.name}: the {k}-core filter removed every interaction. Use a smaller "
            "k-core (benchmark option kcore) or a denser dataset."
        )
    return select_rows(dataset, np.flatnonzero(keep), suffix=f"-{k}core")


def _rank_within_groups(groups: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows visited in ``order``: each row's rank inside its group and the group size."""
    sorted_groups = groups[order]
    boundaries = np.flatnonzero(np.diff(sorted_groups)) + 1
    starts = np.concatenate([[0], boundaries])
    sizes = np.diff(np.concatenate([starts, [len(order)]]))
    start_of_row = np.repeat(starts, sizes)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - start_of_row
    size = np.empty(len(order), dtype=np.int64)
    size[order] = np.repeat(sizes, sizes)
    return rank, size


def ratio_counts(n: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Per-group (train, valid, test) counts, the way RecBole's ratio split computes them.

    valid and test get floor(ratio * n); a part whose share is below one row gets one row
    while train keeps more than one.
    """
    valid = np.floor(ratios[1] * n).astype(np.int64)
    test = np.floor(ratios[2] * n).astype(np.int64)
    train = n - valid - test
    for part, ratio in ((test, ratios[2]), (valid, ratios[1])):
        bump = (ratio * n > 0) & (ratio * n < 1) & (train > 1)
        part += bump
        train -= bump
    return train, valid, test


def _parts_from_rank(rank: np.ndarray, train_n: np.ndarray, valid_n: np.ndarray) -> np.ndarray:
    part = np.zeros(len(rank), dtype=np.int8)
    part[rank >= train_n] = 1
    part[rank >= train_n + valid_n] = 2
    return part


def _split_from_parts(part: np.ndarray, **extra: Any) -> Split:
    return Split(
        train=np.flatnonzero(part == 0),
        valid=np.flatnonzero(part == 1),
        test=np.flatnonzero(part == 2),
        **extra,
    )


def _ratios(options: Mapping[str, Any]) -> tuple[float, float, float]:
    ratios = tuple(float(r) for r in options.get("ratios", (0.8, 0.1, 0.1)))
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ProtocolError(
            f"ratios must be three non-negative numbers (train, valid, test), got {ratios}; "
            "for example ratios=[0.8, 0.1, 0.1]."
        )
    total = sum(ratios)
    return (ratios[0] / total, ratios[1] / total, ratios[2] / total)


def _need_timestamps(dataset: Dataset, protocol: str) -> np.ndarray:
    """The timestamps a time-based cut orders by: present, finite and not negative."""
    if dataset.timestamps is None:
        raise ProtocolError(
            f"The {protocol} protocol orders interactions by time, but dataset "
            f"{dataset.name!r} has no timestamp column. Use the 'random' protocol, or add "
            "timestamps to the data."
        )
    timestamps = dataset.timestamps
    bad = timestamps < 0
    if np.issubdtype(timestamps.dtype, np.floating):
        bad |= ~np.isfinite(timestamps)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ProtocolError(
            f"{dataset.source or dataset.name}: {int(bad.sum())} of "
            f"{dataset.n_interactions} interactions have a negative or non-finite timestamp "
            f"(e.g. user {str(dataset.user_ids[dataset.users[row]])!r}, item "
            f"{str(dataset.item_ids[dataset.items[row]])!r}: {timestamps[row]}), and the "
            f"{protocol} protocol orders interactions by time. Fix the timestamps (Unix "
            "seconds, or dates in a CSV) or drop those rows, or use the 'random' protocol."
        )
    return timestamps


# ----------------------------------------------------------------------------- protocols
def random_split(dataset: Dataset, seed: int, options: Mapping[str, Any]) -> Split:
    """Per-user random ratio split (default 8:1:1), as RecBole's ``RS`` grouped by user."""
    rng = np.random.default_rng(seed)
    ratios = _ratios(options)
    shuffled = rng.permutation(dataset.n_interactions)
    order = shuffled[np.argsort(dataset.users[shuffled], kind="stable")]
    rank, size = _rank_within_groups(dataset.users, order)
    train_n, valid_n, _ = ratio_counts(size, ratios)
    return _split_from_parts(_parts_from_rank(rank, train_n, valid_n))


def leave_one_out(dataset: Dataset, seed: int, options: Mapping[str, Any]) -> Split:
    """Each user's last interaction by time is test, the one before valid (>= 3 needed)."""
    timestamps = _need_timestamps(dataset, "leave-one-out")
    rows = np.arange(dataset.n_interactions)
    order = np.lexsort((rows, timestamps, dataset.users))
    rank, size = _rank_within_groups(dataset.users, order)
    eligible = size >= 3
    part = np.zeros(len(rank), dtype=np.int8)
    part[eligible & (rank == size - 2)] = 1
    part[eligible & (rank == size - 1)] = 2
    return _split_from_parts(part)


def temporal_split(dataset: Dataset, seed: int, options: Mapping[str, Any]) -> Split:
    """A global cut by time: the earliest share of interactions trains, later ones test."""
    timestamps = _need_timestamps(dataset, "temporal")
    ratios = _ratios(options)
    order = np.lexsort((np.arange(dataset.n_interactions), timestamps))
    n = dataset.n_interactions
    n_train = round(ratios[0] * n)
    n_valid = round(ratios[1] * n)
    part = np.zeros(n, dtype=np.int8)
    part[order[n_train : n_train + n_valid]] = 1
    part[order[n_train + n_valid :]] = 2
    return _split_from_parts(part)


def _cold_split(dataset: Dataset, seed: int, options: Mapping[str, Any], side: str) -> Split:
    rng = np.random.default_rng(seed)
    ratios = _ratios(options)
    entities = dataset.users if side == "user" else dataset.items
    n_entities = dataset.n_users if side == "user" else dataset.n_items
    perm = rng.permutation(n_entities)
    n_valid = round(ratios[1] * n_entities)
    n_test = round(ratios[2] * n_entities)
    if n_entities - n_valid - n_test < 1 or min(n_valid, n_test) < 1:
        raise ProtocolError(
            f"{dataset.name}: {n_entities} {side}s are too few to hold out cold-start "
            f"{side}s with ratios {ratios}; use a larger dataset or larger ratios."
        )
    entity_part = np.zeros(n_entities, dtype=np.int8)
    entity_part[perm[:n_valid]] = 1
    entity_part[perm[n_valid : n_valid + n_test]] = 2
    part = entity_part[entities]
    cold = np.sort(perm[: n_valid + n_test]).astype(np.int64)
    key = "cold_users" if side == "user" else "cold_items"
    return _split_from_parts(part, **{key: cold})


def cold_users(dataset: Dataset, seed: int, options: Mapping[str, Any]) -> Split:
    """Hold out a random share of users entirely: valid and test users have no training rows."""
    return _cold_split(dataset, seed, options, "user")


def cold_items(dataset: Dataset, seed: int, options: Mapping[str, Any]) -> Split:
    """Hold out a random share of items entirely: valid and test items have no training rows."""
    return _cold_split(dataset, seed, options, "item")


def domain_index(dataset: Dataset, name: str, what: str) -> int:
    """The index of domain ``name`` in ``dataset.domain_names``; a clear error otherwise."""
    if dataset.domains is None or not dataset.domain_names:
        raise ProtocolError(
            f"{what} needs interactions labelled with a domain, but dataset {dataset.name!r} "
            "has no domain column. Use a multi-domain dataset (e.g. ml-xdomain, "
            "movielens-genres, synthetic) or add a 'domain' column to the data."
        )
    if name not in dataset.domain_names:
        raise ProtocolError(
            f"{what}: dataset {dataset.name!r} has no domain {name!r}; its domains are "
            f"{', '.join(map(repr, dataset.domain_names))}."
        )
    return dataset.domain_names.index(name)


def cross_domain_target(dataset: Dataset, seed: int, options: Mapping[str, Any]) -> Split:
    """Cross-domain target cut: every interaction of the other domains trains; the target
    domain's interactions are cut per user at random (default 8:1:1) into train/valid/test.

    Only the target domain's rows are drawn, in dataset order, from a generator seeded by
    ``seed``, so the target's parts do not depend on what the other domains hold: the same
    target data loaded alone gives the same valid and test interactions.
    """
    target = str(options.get("target", "target"))
    code = domain_index(dataset, target, "The cross-domain target protocol")
    rows = np.flatnonzero(dataset.domains == code)
    if len(rows) == 0:
        raise ProtocolError(f"{dataset.name}: the target domain {target!r} has no interactions.")
    rng = np.random.default_rng(seed)
    users = dataset.users[rows]
    shuffled = rng.permutation(len(rows))
    order = shuffled[np.argsort(users[shuffled], kind="stable")]
    rank, size = _rank_within_groups(users, order)
    train_n, valid_n, _ = ratio_counts(size, _ratios(options))
    part = np.zeros(dataset.n_interactions, dtype=np.int8)
    part[rows] = _parts_from_rank(rank, train_n, valid_n)
    return _split_from_parts(part)


# ----------------------------------------------------------------------------- checks, cache
def validate_split(dataset: Dataset, split: Split, protocol: str) -> None:
    """No (user, item) pair in two parts; held-out cold entities absent from training."""
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    n = dataset.n_interactions
    seen = np.zeros(n, dtype=np.int64)
    for name, rows in parts.items():
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ProtocolError(f"Protocol {protocol!r} returned {name} rows outside 0..{n - 1}.")
        np.add.at(seen, rows, 1)
    if (seen > 1).any():
        raise ProtocolError(
            f"Protocol {protocol!r} put interaction row {int(np.flatnonzero(seen > 1)[0])} in "
            "two parts; a cut must assign each row to one part."
        )
    if len(split.train) == 0:
        raise ProtocolError(
            f"Protocol {protocol!r} left no training interactions for {dataset.name!r}; "
            "use a larger dataset or other ratios."
        )
    keys = dataset.users * dataset.n_items + dataset.items
    train_keys = sorted_distinct(keys[split.train])
    for name in ("valid", "test"):
        clash = contained_in(keys[parts[name]], train_keys)
        if clash.any():
            row = int(parts[name][np.flatnonzero(clash)[0]])
            raise ProtocolError(
                f"Protocol {protocol!r}: the pair (user {dataset.user_ids[dataset.users[row]]}, "
                f"item {dataset.item_ids[dataset.items[row]]}) is in train and {name}. "
                "Deduplicate interactions before cutting."
            )
    if contained_in(keys[split.test], sorted_distinct(keys[split.valid])).any():
        raise ProtocolError(f"Protocol {protocol!r}: a (user, item) pair is in valid and test.")
    for side, cold, entities in (("user", split.cold_users, dataset.users),
                                 ("item", split.cold_items, dataset.items)):
        if len(cold) and contained_in(entities[split.train], sorted_distinct(cold)).any():
            raise ProtocolError(
                f"Protocol {protocol!r}: a cold-start {side} has training interactions; "
                f"cold {side}s must be absent from train."
            )
    check_parts_not_empty(dataset, split, protocol)


def check_parts_not_empty(dataset: Dataset, split: Split, protocol: str) -> None:
    """Refuse a cut whose validation or test part is empty: nothing could be evaluated."""
    empty = [name for name, rows in (("validation", split.valid), ("test", split.test))
             if len(rows) == 0]
    if not empty:
        return
    per_user = np.bincount(dataset.users, minlength=dataset.n_users)
    raise ProtocolError(
        f"{dataset.source or dataset.name}: protocol {protocol!r} left the "
        f"{' and the '.join(empty)} part empty ({dataset.n_interactions} interactions, "
        f"{dataset.n_users} users, at most {int(per_user.max(initial=0))} interactions per "
        "user), so the run would have nothing to evaluate. Use data where users have "
        "at least 3 interactions (the per-user random and loo cuts need 3 to fill train, "
        "valid and test), give valid and test a share in the protocol's ratios, or choose "
        "another protocol (--protocol)."
    )


def cut_fingerprint(dataset_fp: str, protocol: str, options: Mapping[str, Any], seed: int) -> str:
    blob = json.dumps([dataset_fp, protocol, dict(options), seed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_or_cut(
    dataset: Dataset,
    protocol: str,
    cut: Any,
    seed: int,
    options: Mapping[str, Any],
    cache_dir: str | os.PathLike[str] | None,
) -> Split:
    """Cut ``dataset`` with ``cut`` (or read the cached cut), validate, fingerprint."""
    fingerprint = cut_fingerprint(dataset.fingerprint, protocol, options, seed)
    path = Path(cache_dir) / "cuts" / f"{fingerprint}.npz" if cache_dir else None
    if path is not None and path.exists():
        with np.load(path) as saved:
            split = Split(**{k: saved[k] for k in
                             ("train", "valid", "test", "cold_users", "cold_items")},
                          protocol=protocol, fingerprint=fingerprint)
        check_parts_not_empty(dataset, split, protocol)  # cuts cached by older releases
    else:
        split = cut(dataset, seed, options)
        split = replace(split, protocol=protocol, fingerprint=fingerprint)
        validate_split(dataset, split, protocol)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
                np.savez(tmp, train=split.train, valid=split.valid, test=split.test,
                         cold_users=split.cold_users, cold_items=split.cold_items)
            os.replace(tmp.name, path)
    return split
