"""Item-based nearest neighbours with shrunk cosine similarity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from m6bench import Recommender, TrainSet, history_rows, require_memory
from m6bench_classic._sparse import dense_rows, float_csr, row_norms, transpose_csr

# Keeps the division finite for items without training interactions (as RecBole does).
_EPSILON = 1e-6


def shrunk_cosine_neighbours(
    item_user: torch.Tensor, k: int, shrink: float, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar items of every item under cosine similarity with shrinkage.

    ``sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink + 1e-6)`` over the item columns ``x`` of
    the user-item matrix, with ``sim(j, j) = 0``.  Computed for a block of target items at a
    time by one sparse-dense matmul, so memory is ``O(nnz + n_items * block_size)``.

    :param item_user: sparse CSR float32 ``(n_items, n_users)``, the transposed training matrix.
    :return: ``neighbours`` int64 ``(n_items, k)`` and ``weights`` float32 ``(n_items, k)``;
        row ``j`` lists the items most similar to item ``j``, best first.
    """
    n_items = item_user.shape[0]
    norms = row_norms(item_user)  # |x_i| of every item column of the user-item matrix
    neighbours = torch.empty(n_items, k, dtype=torch.int64, device=norms.device)
    weights = torch.empty(n_items, k, dtype=torch.float32, device=norms.device)
    for start in range(0, n_items, block_size):
        targets = torch.arange(start, min(start + block_size, n_items), device=norms.device)
        target_columns = dense_rows(item_user, targets).T  # (n_users, b)
        overlap = torch.sparse.mm(item_user, target_columns)  # (n_items, b) = X^T X[:, targets]
        similarity = overlap / (norms.unsqueeze(1) * norms[targets].unsqueeze(0)
                                + shrink + _EPSILON)
        similarity[targets, torch.arange(targets.numel(), device=norms.device)] = 0.0
        top_weights, top_items = torch.topk(similarity, k, dim=0)  # (k, b)
        neighbours[targets] = top_items.T
        weights[targets] = top_weights.T
    return neighbours, weights


class ItemKNN(Recommender):
    """Item-based k-nearest-neighbours collaborative filtering.

    Sarwar, Karypis, Konstan, Riedl, "Item-Based Collaborative Filtering Recommendation
    Algorithms", WWW 2001; top-N form and shrinkage as in Deshpande & Karypis, "Item-Based
    Top-N Recommendation Algorithms", TOIS 2004, and RecBole's ``ItemKNN`` (Aiolli 2013).

    Each item keeps its ``k`` most similar items (cosine with shrinkage); the score of item
    ``j`` for user ``u`` is the summed similarity of ``j`` to the items ``u`` interacted with:
    ``score(u, j) = sum_t x_{u, n_{j,t}} w_{j,t}``.  Shapes: buffers ``neighbours`` int64 and
    ``weights`` float32, both ``(n_items, k)``; :meth:`score` maps users ``(B,)`` to
    ``(B, n_items)`` through one sparse ``(n_items, n_items) @ (n_items, B)`` product.
    """

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        # Self-similarity is forced to 0, so more than n_items - 1 neighbours adds nothing.
        self.k = max(1, min(int(config["k"]), train.n_items - 1))
        self.shrink = float(config["shrink"])
        self.block_size = int(config["block_size"])
        # A block holds a dense (n_users, b) slice of the matrix and about four float32
        # (n_items, b) products; the (n_items, k) results exist twice while they are copied.
        block = min(self.block_size, train.n_items)
        require_memory(
            4 * block * (train.n_users + 4 * train.n_items) + 24 * train.n_items * self.k,
            device=train.device,
            what=f"ItemKNN (similarity blocks of {block:,} of {train.n_items:,} items, "
                 f"k={self.k})",
            avoid="Lower the config key block_size (e.g. --set block_size=256) or k.",
        )
        # The user histories are training data, not fitted state: a buffer so that .to() moves
        # it, but not persistent, so the state dict holds only what fitting learned.
        self.register_buffer("history", float_csr(train.matrix), persistent=False)
        self.register_buffer("neighbours", torch.zeros(train.n_items, self.k, dtype=torch.int64,
                                                       device=train.device))
        self.register_buffer("weights", torch.zeros(train.n_items, self.k, dtype=torch.float32,
                                                    device=train.device))

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        neighbours, weights = shrunk_cosine_neighbours(
            transpose_csr(self.history), self.k, self.shrink, self.block_size
        )
        self.neighbours.copy_(neighbours)
        self.weights.copy_(weights)
        return {}

    def similarity_matrix(self) -> torch.Tensor:
        """Sparse COO ``(n_items, n_items)``: entry ``(j, i)`` is ``sim(j, i)`` for the kept
        neighbours ``i`` of target item ``j``."""
        targets = torch.arange(self.n_items, device=self.neighbours.device)
        indices = torch.stack([targets.repeat_interleave(self.k), self.neighbours.reshape(-1)])
        return torch.sparse_coo_tensor(indices, self.weights.reshape(-1),
                                       (self.n_items, self.n_items)).coalesce()

    def score(self, users: torch.Tensor) -> torch.Tensor:
        similarity = self.similarity_matrix().to_sparse_csr()
        history = dense_rows(self.history, users)  # (B, n_items)
        return torch.sparse.mm(similarity, history.T).T

    def export_scores(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        # score[b, j] = sum_t weights[j, t] * row_b[neighbours[j, t]], dense and traceable
        # (B x n_items x k floats), instead of the sparse product.
        rows = history_rows(history, self.n_items)
        return (rows[:, self.neighbours] * self.weights).sum(dim=-1)
