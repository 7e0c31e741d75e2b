"""Full-ranking evaluation speed, compared with the bare matrix multiply it needs.

Two scales, 64-d embeddings, training items masked, metrics at 5/10/20:

* ML-1M scale: 6,040 users x 3,706 items, in batches of 2,048 users (the harness default);
  the evaluation test stores its ratio to the bare matmul in ``extra_info``
  (``ratio_to_bare_matmul``; the target is at most 3x);
* a synthetic 100,000 users x 50,000 items, scored in batches of 1,024 users (~200 MB of
  scores per batch, so memory stays bounded whatever the user count).

Run with ``tox -e bench`` or ``python -m pytest benchmarks --benchmark-only``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch

from m6bench.data.prepared import csr_matrix
from m6bench.evaluation.ranking import evaluate_ranking

N_USERS, N_ITEMS, DIM = 6040, 3706, 64
LARGE_USERS, LARGE_ITEMS, LARGE_BATCH = 100_000, 50_000, 1024
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="module")
def ml1m_scale():
    rng = np.random.default_rng(0)
    users_emb = torch.from_numpy(rng.standard_normal((N_USERS, DIM), dtype=np.float32)).to(DEVICE)
    items_emb = torch.from_numpy(rng.standard_normal((N_ITEMS, DIM), dtype=np.float32)).to(DEVICE)
    # ~165 interactions per user like ML-1M: 80% masked as training, 10% as truth
    n = 1_000_000
    users = rng.integers(0, N_USERS, n)
    items = np.minimum(rng.zipf(1.3, n) - 1, N_ITEMS - 1)
    part = rng.random(n)
    train = csr_matrix(users[part < 0.8], items[part < 0.8], N_USERS, N_ITEMS, DEVICE)
    truth = csr_matrix(users[part > 0.9], items[part > 0.9], N_USERS, N_ITEMS, DEVICE)
    return users_emb, items_emb, train, truth


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def bare_matmul(users_emb: torch.Tensor, items_emb: torch.Tensor, batch_size: int) -> None:
    """The scores the evaluation needs and nothing else: one matmul per batch of users."""
    for start in range(0, users_emb.shape[0], batch_size):
        users_emb[start : start + batch_size] @ items_emb.T
    _sync()


def median_seconds(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_full_ranking_evaluation_ml1m_scale(benchmark, ml1m_scale):
    users_emb, items_emb, train, truth = ml1m_scale
    popularity = torch.ones(N_ITEMS, device=DEVICE)

    def evaluate():
        result = evaluate_ranking(lambda u: users_emb[u] @ items_emb.T, truth=truth,
                                  masks=[train], ks=(5, 10, 20), n_items=N_ITEMS,
                                  item_popularity=popularity, n_train_users=N_USERS,
                                  batch_size=2048, device=DEVICE)
        _sync()
        return result

    result = benchmark.pedantic(evaluate, rounds=5, warmup_rounds=1)
    assert result.per_user["ndcg@10"].numel() > 0
    floor = median_seconds(lambda: bare_matmul(users_emb, items_emb, 2048))
    benchmark.extra_info["bare_matmul_seconds"] = floor
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ratio_to_bare_matmul"] = benchmark.stats.stats.median / floor


def test_bare_matmul_floor_ml1m_scale(benchmark, ml1m_scale):
    users_emb, items_emb, _, _ = ml1m_scale
    benchmark.pedantic(bare_matmul, args=(users_emb, items_emb, 2048), rounds=5,
                       warmup_rounds=1)


@pytest.fixture(scope="module")
def large_scale():
    """100,000 users x 50,000 items: 20 training items and 2 relevant items per user."""
    rng = np.random.default_rng(1)
    users_emb = torch.from_numpy(
        rng.standard_normal((LARGE_USERS, DIM), dtype=np.float32)).to(DEVICE)
    items_emb = torch.from_numpy(
        rng.standard_normal((LARGE_ITEMS, DIM), dtype=np.float32)).to(DEVICE)
    users = np.repeat(np.arange(LARGE_USERS), 22)
    items = np.minimum(rng.zipf(1.2, users.size) - 1, LARGE_ITEMS - 1)
    is_truth = np.tile(np.arange(22) >= 20, LARGE_USERS)
    train = csr_matrix(users[~is_truth], items[~is_truth], LARGE_USERS, LARGE_ITEMS, DEVICE)
    truth = csr_matrix(users[is_truth], items[is_truth], LARGE_USERS, LARGE_ITEMS, DEVICE)
    return users_emb, items_emb, train, truth


def test_full_ranking_evaluation_100k_x_50k(benchmark, large_scale):
    users_emb, items_emb, train, truth = large_scale
    popularity = torch.ones(LARGE_ITEMS, device=DEVICE)

    def evaluate():
        result = evaluate_ranking(lambda u: users_emb[u] @ items_emb.T, truth=truth,
                                  masks=[train], ks=(5, 10, 20), n_items=LARGE_ITEMS,
                                  item_popularity=popularity, n_train_users=LARGE_USERS,
                                  batch_size=LARGE_BATCH, device=DEVICE)
        _sync()
        return result

    result = benchmark.pedantic(evaluate, rounds=3, warmup_rounds=0)
    assert result.per_user["ndcg@10"].numel() == LARGE_USERS
    benchmark.extra_info["scores_per_batch_mb"] = LARGE_BATCH * LARGE_ITEMS * 4 / 2**20


def test_bare_matmul_floor_100k_x_50k(benchmark, large_scale):
    users_emb, items_emb, _, _ = large_scale
    benchmark.pedantic(bare_matmul, args=(users_emb, items_emb, LARGE_BATCH), rounds=3,
                       warmup_rounds=0)


def test_ease_scoring_ml1m_scale(benchmark, ml1m_scale):
    """EASE's scoring of every user, ``history (sparse) @ B (3,706 x 3,706 dense)``, through
    ``rows_times_dense``; ``extra_info`` holds ``torch.sparse.mm`` on the same CSR rows."""
    from m6bench_classic._sparse import float_csr, rows_times_dense

    _, _, train, _ = ml1m_scale
    history = float_csr(train)
    weights = torch.randn(N_ITEMS, N_ITEMS, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    batches = [torch.arange(start, min(start + 2048, N_USERS), device=DEVICE)
               for start in range(0, N_USERS, 2048)]

    def score_every_user(product) -> None:
        for users in batches:
            product(users)
        _sync()

    embedding_bag = lambda users: rows_times_dense(history, users, weights)  # noqa: E731
    benchmark.pedantic(score_every_user, args=(embedding_bag,), rounds=5, warmup_rounds=1)
    crow = history.crow_indices()

    def sparse_mm(users: torch.Tensor) -> torch.Tensor:
        first, last = int(users[0]), int(users[-1]) + 1
        block = torch.sparse_csr_tensor(crow[first : last + 1] - crow[first],
                                        history.col_indices()[crow[first] : crow[last]],
                                        history.values()[crow[first] : crow[last]],
                                        size=(last - first, N_ITEMS))
        return torch.sparse.mm(block, weights)

    reference = torch.cat([sparse_mm(users) for users in batches])
    torch.testing.assert_close(torch.cat([embedding_bag(users) for users in batches]),
                               reference, rtol=1e-4, atol=1e-3)
    benchmark.extra_info["torch_sparse_mm_seconds"] = median_seconds(
        lambda: score_every_user(sparse_mm), repeats=3)
