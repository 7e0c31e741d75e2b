"""Protocol cuts: RecBole's ratio arithmetic, determinism, validation, k-core, the cache."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from m6bench import Dataset, ProtocolError
from m6bench.protocols.cuts import (
    cold_items,
    cold_users,
    deduplicate,
    kcore,
    leave_one_out,
    load_or_cut,
    random_split,
    ratio_counts,
    temporal_split,
    validate_split,
)

RATIOS = {"ratios": [0.8, 0.1, 0.1]}


def _dataset(n_users=60, n_items=80, per_user=(2, 40), seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    clock = 0
    for user in range(n_users):
        count = int(rng.integers(*per_user))
        for item in rng.choice(n_items, size=count, replace=False):
            clock += int(rng.integers(1, 100))
            rows.append((f"u{user}", f"i{item}", float(rng.integers(1, 6)), clock))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Dataset.from_frames("toy", frame)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(10, (8, 1, 1)), (20, (16, 2, 2)), (5, (3, 1, 1)), (2, (1, 0, 1)), (1, (1, 0, 0)),
     (19, (17, 1, 1))],
)
def test_ratio_counts_follow_recbole(n, expected):
    train, valid, test = ratio_counts(np.array([n]), (0.8, 0.1, 0.1))
    assert (int(train[0]), int(valid[0]), int(test[0])) == expected


def test_random_split_per_user_counts_and_determinism():
    data = _dataset()
    split = random_split(data, 7, RATIOS)
    validate_split(data, split, "random")
    counts = np.bincount(data.users, minlength=data.n_users)
    expected_train, expected_valid, expected_test = ratio_counts(counts, (0.8, 0.1, 0.1))
    for part, expected in ((split.train, expected_train), (split.valid, expected_valid),
                           (split.test, expected_test)):
        np.testing.assert_array_equal(np.bincount(data.users[part], minlength=data.n_users),
                                      expected)
    again = random_split(data, 7, RATIOS)
    np.testing.assert_array_equal(split.test, again.test)
    other = random_split(data, 8, RATIOS)
    assert not np.array_equal(split.test, other.test)


def test_leave_one_out_takes_the_latest_interactions():
    data = _dataset(per_user=(3, 12))
    split = leave_one_out(data, 0, {})
    validate_split(data, split, "loo")
    for user in range(data.n_users):
        rows = np.flatnonzero(data.users == user)
        latest = rows[np.argsort(data.timestamps[rows])]
        assert split.test[np.isin(split.test, rows)].tolist() == [latest[-1]]
        assert split.valid[np.isin(split.valid, rows)].tolist() == [latest[-2]]


def test_temporal_split_is_a_global_cut():
    data = _dataset()
    split = temporal_split(data, 0, RATIOS)
    assert data.timestamps[split.train].max() <= data.timestamps[split.valid].min()
    assert data.timestamps[split.valid].max() <= data.timestamps[split.test].min()
    assert abs(len(split.test) - 0.1 * data.n_interactions) <= 1


@pytest.mark.parametrize(("cut", "side"), [(cold_users, "users"), (cold_items, "items")])
def test_cold_start_entities_never_train(cut, side):
    data = _dataset()
    split = cut(data, 3, RATIOS)
    validate_split(data, split, cut.__name__)
    entities = data.users if side == "users" else data.items
    cold = split.cold_users if side == "users" else split.cold_items
    assert len(cold) > 0
    assert not np.isin(entities[split.train], cold).any()
    assert np.isin(entities[split.test], cold).all()


def test_validation_catches_injected_faults():
    data = _dataset()
    split = random_split(data, 0, RATIOS)
    overlapping = replace(split, test=np.concatenate([split.test, split.train[:1]]))
    with pytest.raises(ProtocolError, match="two parts"):
        validate_split(data, overlapping, "broken")
    leaky = cold_items(data, 0, RATIOS)
    leaky = replace(leaky, train=np.concatenate([leaky.train, leaky.test[:1]]),
                    test=leaky.test[1:])
    with pytest.raises(ProtocolError, match="cold-start item has training interactions"):
        validate_split(data, leaky, "broken")
    frame = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": ["x", "x", "x", "y"]})
    duplicated = Dataset.from_frames("dup", frame)
    with pytest.raises(ProtocolError, match="is in train and test"):
        validate_split(duplicated, replace(split, train=np.array([0, 2, 3]),
                                           valid=np.array([], int), test=np.array([1])),
                       "broken")


def test_timestamps_required_for_time_protocols():
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]})
    with pytest.raises(ProtocolError, match="no timestamp column"):
        leave_one_out(Dataset.from_frames("untimed", frame), 0, {})


def test_deduplicate_keeps_the_latest():
    frame = pd.DataFrame({"user": ["a", "a", "a", "b"], "item": ["x", "x", "y", "x"],
                          "rating": [1.0, 5.0, 3.0, 2.0], "timestamp": [10, 30, 20, 5]})
    data = deduplicate(Dataset.from_frames("d", frame))
    assert data.n_interactions == 3
    row = np.flatnonzero((data.user_ids[data.users] == "a") & (data.item_ids[data.items] == "x"))
    assert data.ratings[row].tolist() == [5.0]


def test_kcore_leaves_only_dense_entities():
    data = kcore(_dataset(n_users=80, n_items=60, per_user=(1, 20)), 5)
    assert np.bincount(data.users).min() >= 5 and np.bincount(data.items).min() >= 5
    with pytest.raises(ProtocolError, match="removed every interaction"):
        kcore(_dataset(n_users=5, per_user=(1, 3)), 50)


def test_cut_is_cached_and_fingerprinted(tmp_path):
    data = _dataset()
    calls = []

    def counting_cut(dataset, seed, options):
        calls.append(seed)
        return random_split(dataset, seed, options)

    first = load_or_cut(data, "random", counting_cut, 1, RATIOS, tmp_path)
    second = load_or_cut(data, "random", counting_cut, 1, RATIOS, tmp_path)
    assert calls == [1]
    assert first.fingerprint == second.fingerprint
    np.testing.assert_array_equal(first.test, second.test)
    third = load_or_cut(data, "random", counting_cut, 2, RATIOS, tmp_path)
    assert calls == [1, 2] and third.fingerprint != first.fingerprint
