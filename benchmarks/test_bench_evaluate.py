"""Full-ranking evaluation speed at ML-1M scale: 6,040 users x 3,706 items, 64-d embeddings.

Compared with the bare matrix multiply the evaluation needs (the physical floor): run with
``tox -e bench`` or ``python -m pytest benchmarks --benchmark-only``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m6bench._benchmark import csr_matrix
from m6bench._evaluate import evaluate_ranking

N_USERS, N_ITEMS, DIM = 6040, 3706, 64
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


def test_bare_matmul_floor_ml1m_scale(benchmark, ml1m_scale):
    users_emb, items_emb, _, _ = ml1m_scale

    def floor():
        for start in range(0, N_USERS, 2048):
            users_emb[start : start + 2048] @ items_emb.T
        _sync()

    benchmark.pedantic(floor, rounds=5, warmup_rounds=1)
