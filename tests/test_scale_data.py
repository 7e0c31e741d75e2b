"""Scale: the synthetic generator works a block of users at a time (memory grows with the
interactions, not users x items), and models refuse a dense allocation that cannot fit,
before they make it, naming the estimate and the option that avoids it."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from m6bench import ConfigError, MemoryEstimateError, TrainSet, require_memory
from m6bench.data import memory
from m6bench.data.loaders import synthetic, synthetic_blocks
from m6bench_classic import EASE, ItemKNN
from m6bench_classic.linear import ease_peak_bytes

# Content fingerprints the dense generator (before blocks) produced for these options.
DEFAULT_FINGERPRINT = "41ea0414ce14b4e0"
MEDIUM = {"seed": 11, "n_users": 1500, "n_items": 400, "density": 0.05, "dim": 6}
MEDIUM_FINGERPRINT = "45e8f87ec2384ef1"
GB = 10**9


@pytest.fixture
def memory_limit(monkeypatch):
    def set_limit(nbytes: float | str) -> None:
        monkeypatch.setenv(memory.MEMORY_LIMIT_ENV, str(nbytes))
    return set_limit


def sparse_train(n_users: int, n_items: int, pairs: list[tuple[int, int]]) -> TrainSet:
    """A TrainSet built from a CSR matrix directly: no dense (n_users, n_items) ever exists."""
    users = torch.tensor([u for u, _ in pairs], dtype=torch.int64)
    items = torch.tensor([i for _, i in pairs], dtype=torch.int64)
    crow = torch.zeros(n_users + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(users, minlength=n_users).cumsum(0)
    matrix = torch.sparse_csr_tensor(crow, items, torch.ones(len(pairs)), (n_users, n_items))
    return TrainSet(
        n_users=n_users, n_items=n_items, users=users, items=items,
        ratings=None, timestamps=None, domains=None, matrix=matrix,
        item_popularity=torch.bincount(items, minlength=n_items).to(torch.float32),
        user_features=None, item_features=None, user_feature_kinds={},
        item_feature_kinds={}, item_text=None, device=torch.device("cpu"), seed=0,
        generator=torch.Generator().manual_seed(0), components=None,
    )


# --- the memory check ------------------------------------------------------------------


def test_require_memory_names_estimate_limit_and_fix(memory_limit):
    memory_limit(2 * GB)
    require_memory(2 * GB, what="A thing", avoid="Do less.")  # exactly the limit fits
    with pytest.raises(MemoryEstimateError) as refused:
        require_memory(5.5 * GB, what="A big thing", avoid="Pass --small.")
    message = str(refused.value)
    assert "A big thing needs about 5.5 GB" in message
    assert "only 2.0 GB is available (M6BENCH_MEMORY_LIMIT_BYTES=2000000000)" in message
    assert "Pass --small." in message


def test_unlimited_override_switches_the_check_off(memory_limit):
    memory_limit("unlimited")
    require_memory(10**15, what="A huge thing", avoid="-")


def test_bad_override_names_the_variable(memory_limit):
    memory_limit("lots")
    with pytest.raises(ConfigError, match=r"M6BENCH_MEMORY_LIMIT_BYTES='lots'.*8e9"):
        require_memory(1, what="x", avoid="-")


def test_meminfo_is_read_in_kilobytes(monkeypatch, tmp_path):
    monkeypatch.delenv(memory.MEMORY_LIMIT_ENV, raising=False)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000 kB\nMemFree:  100 kB\nMemAvailable:  3000 kB\n")
    monkeypatch.setattr(memory, "_MEMINFO", meminfo)
    assert memory.available_memory() == (3000 * 1024, f"MemAvailable in {meminfo}")
    with pytest.raises(MemoryEstimateError, match="MemAvailable"):
        require_memory(3000 * 1024 + 1, what="x", avoid="-")


def test_without_meminfo_physical_memory_is_the_limit(monkeypatch, tmp_path):
    monkeypatch.delenv(memory.MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.setattr(memory, "_MEMINFO", tmp_path / "absent")
    available, source = memory.available_memory()
    assert source == "physical memory" and available > 0


# --- models refuse before allocating -------------------------------------------------------


def test_ease_estimate_by_hand():
    # 3 users x 4 items, degrees 2, 1, 0: the Gram has at most 2^2 + 1^2 = 5 non-zeros.
    train = sparse_train(3, 4, [(0, 0), (0, 2), (1, 3)])
    # item_weights 4 * 16 + max(inversion 24 * 16, product 81 * 5 + 4 * 16) = 64 + 469
    assert ease_peak_bytes(train.matrix) == 533
    # A dense history caps the Gram at n_items^2 = 16 entries: 64 + 81 * 16 + 64.
    dense = sparse_train(4, 4, [(u, i) for u in range(4) for i in range(4)])
    assert ease_peak_bytes(dense.matrix) == 64 + 81 * 16 + 64


def test_ease_on_100k_items_is_refused_before_allocating(memory_limit, monkeypatch):
    memory_limit(64 * GB)
    train = sparse_train(5, 100_000, [(0, 1), (0, 99_999), (1, 5), (2, 7), (4, 123)])
    largest = []
    for name in ("zeros", "empty", "ones", "full"):
        real = getattr(torch, name)

        def recording(*size, _real=real, **kwargs):
            shape = size[0] if len(size) == 1 and isinstance(size[0], tuple | list) else size
            largest.append(int(np.prod(shape)))
            return _real(*size, **kwargs)
        monkeypatch.setattr(torch, name, recording)
    with pytest.raises(MemoryEstimateError) as refused:
        EASE(train, {"l2": 250.0})
    # 1e10 item pairs: 4 bytes (weights) + 24 bytes (inversion) each.
    message = str(refused.value)
    assert "EASE (the item-item matrices of 100,000 items) needs about 280.0 GB" in message
    assert "itemknn" in message
    assert max(largest, default=0) < 10**6


def test_itemknn_refusal_points_at_block_size(memory_limit):
    memory_limit(1 * GB)
    train = sparse_train(10, 100_000, [(0, 1), (3, 50_000), (9, 99_999)])
    # 4 * 1024 * (10 + 4 * 100,000) + 24 * 100,000 * 100 bytes = 1.88 GB.
    with pytest.raises(MemoryEstimateError, match=r"needs about 1\.9 GB.*block_size"):
        ItemKNN(train, {"k": 100, "shrink": 0.0, "block_size": 1024})
    model = ItemKNN(train, {"k": 100, "shrink": 0.0, "block_size": 64})  # 0.34 GB fits
    assert model.weights.shape == (100_000, 100)


# --- the generator ----------------------------------------------------------------------


def test_default_content_is_unchanged():
    assert synthetic.load_synthetic(synthetic.SYNTHETIC_DEFAULTS, None).fingerprint == (
        DEFAULT_FINGERPRINT)


@pytest.fixture(scope="module")
def medium_in_blocks():
    """MEDIUM generated 50 users (20,000 cells) at a time: 30 blocks."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthetic_blocks, "_BLOCK_CELLS", 20_000)
        assert synthetic_blocks.rows_per_block(MEDIUM["n_items"]) == 50
        return synthetic.load_synthetic(MEDIUM, None)


def test_block_size_does_not_change_the_content(medium_in_blocks, monkeypatch):
    assert medium_in_blocks.fingerprint == MEDIUM_FINGERPRINT  # the dense generator's bytes
    monkeypatch.setattr(synthetic_blocks, "_BLOCK_CELLS", 7 * MEDIUM["n_items"] + 3)
    other = synthetic.load_synthetic(MEDIUM, None)
    for column in ("users", "items", "ratings", "timestamps", "domains"):
        assert np.array_equal(getattr(other, column), getattr(medium_in_blocks, column))
    assert other.item_features.equals(medium_in_blocks.item_features)


def test_planted_structure_holds_across_blocks(medium_in_blocks):
    data = medium_in_blocks
    assert len(data.item_ids) == MEDIUM["n_items"]  # every item has an interaction
    # Popularity skew: the top 10% of items hold far more than 10% of the interactions.
    popularity = np.sort(np.bincount(data.items))[::-1]
    assert popularity[: len(popularity) // 10].sum() > 0.35 * popularity.sum()
    # Cluster affinity: a user's favourite of the 6 clusters holds over half their items
    # (1/6 without the planted structure).
    first_genre = data.item_features["genres"].astype(str).str.split(" ").str[0].to_numpy()
    _, item_cluster = np.unique(first_genre, return_inverse=True)
    per_user = np.zeros((len(data.user_ids), 6))
    np.add.at(per_user, (data.users, item_cluster[data.items]), 1)
    assert (per_user.max(axis=1) / per_user.sum(axis=1)).mean() > 0.5
    # New items (released in the last year) are seen only in the last 8% of the timeline.
    new_item = data.item_features["year"].to_numpy() == 2021
    assert new_item.sum() == round(0.05 * MEDIUM["n_items"])
    moment = (data.timestamps - 1577836800) / (2 * 365 * 86400)
    assert moment[new_item[data.items]].min() >= 0.92
    assert moment[~new_item[data.items]].min() < 0.01
    # Both domains, each a sizeable share.
    assert data.domain_names == ("books", "movies")
    assert np.bincount(data.domains).min() > 0.3 * len(data.domains)


def test_peak_memory_grows_with_interactions_not_cells(monkeypatch):
    monkeypatch.setattr(synthetic_blocks, "_BLOCK_CELLS", 2**18)
    options = {"seed": 2, "n_users": 2000, "n_items": 10_000, "density": 0.001, "dim": 8}
    tracemalloc.start()
    try:
        data = synthetic.load_synthetic(options, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    dense_logits = options["n_users"] * options["n_items"] * 8  # one float64 matrix: 160 MB
    assert len(data.items) < 0.003 * options["n_users"] * options["n_items"]
    assert peak < dense_logits / 8


def test_counts_read_ahead_match_the_stream():
    rng = np.random.default_rng(5)
    rng.integers(0, 6, 7)  # leaves a buffered 32-bit half-word, which advance() would drop
    def draw(generator):
        return generator.lognormal(0.0, 1.0, 5)
    ahead = synthetic_blocks._counts_ahead(rng, 1000 * 37, draw)
    rng.gumbel(size=(1000, 37))
    assert np.array_equal(ahead, draw(rng))
    replay = np.random.default_rng(5)
    replay.integers(0, 6, 7)
    replay.gumbel(size=37_000)
    draw(replay)
    assert np.array_equal(rng.integers(0, 6, 3), replay.integers(0, 6, 3))


def test_a_wrong_read_ahead_is_redone(monkeypatch):
    # As if a Gumbel draw had rejected a uniform: the read-ahead counts are off, and the
    # pass is redone with the counts the stream holds, giving the same bytes.
    real = synthetic_blocks._counts_ahead
    monkeypatch.setattr(synthetic_blocks, "_counts_ahead",
                        lambda *args: real(*args) + 1)
    data = synthetic.load_synthetic(synthetic.SYNTHETIC_DEFAULTS, None)
    assert data.fingerprint == DEFAULT_FINGERPRINT


def test_generator_refuses_what_cannot_fit(memory_limit, monkeypatch):
    memory_limit(10 * GB)
    monkeypatch.setattr(np.random, "default_rng", None)  # refused before any drawing starts
    huge = {"seed": 0, "n_users": 10_000_000, "n_items": 1_000_000, "density": 0.5, "dim": 8}
    with pytest.raises(MemoryEstimateError, match=r"about 5,000,001,000,000 interactions.*density"):
        synthetic.load_synthetic(huge, None)
    memory_limit(4_000_000)
    # 1,000 users x 10 items + 1,000 items = 11,000 interactions at 200 bytes, factors
    # 8 * 4 * 2,000 * 8 bytes, one block of 1,000 x 1,000 cells at 64 bytes: 66.7 MB.
    small = {"seed": 0, "n_users": 1000, "n_items": 1000, "density": 0.01, "dim": 8}
    with pytest.raises(MemoryEstimateError, match=r"about 66\.7 MB of memory, but only 4\.0 MB"):
        synthetic.load_synthetic(small, None)


def test_a_dense_training_matrix_is_refused_before_allocating(memory_limit):
    memory_limit(1 * GB)
    train = sparse_train(138_000, 27_000, [(0, 1), (137_999, 26_999)])
    # 4 bytes * 138,000 * 27,000 = 14.9 GB (ML-20M's shape, as Mult-VAE would need)
    with pytest.raises(MemoryEstimateError,
                       match=r"138,000 x 27,000 training matrix needs about 14\.9 GB"):
        train.dense_matrix()
    small = sparse_train(3, 4, [(0, 1), (2, 3)])
    assert small.dense_matrix().tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
