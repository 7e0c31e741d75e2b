"""EASE: a closed-form linear item-item autoencoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from m6bench import Recommender, TrainSet, history_rows, require_memory
from m6bench_classic._sparse import float_csr, rows_times_dense, transpose_csr


def ease_weights(user_item: torch.Tensor, l2: float) -> torch.Tensor:
    """EASE's item-item matrix ``B`` for a sparse CSR ``(n_users, n_items)`` training matrix.

    ``P = (X^T X + l2 I)^-1``, ``B = I - P diag(1 / diag(P))``, i.e. ``B_ij = -P_ij / P_jj``
    off the diagonal and ``B_jj = 0`` (Steck 2019, eq. 8).  The inverse is taken in float64
    (the Gram matrix of a large, lightly regularised catalogue is badly conditioned in
    float32); the result is float32 ``(n_items, n_items)``.
    """
    if user_item.device.type == "cpu":
        # On a CPU the sparse-sparse product is several times faster than a dense GEMM.
        gram = torch.sparse.mm(transpose_csr(user_item), user_item).to_dense()
    else:
        # On a GPU cuSPARSE's SpGEMM needs GBs of scratch for this nearly dense result; a dense
        # GEMM is faster and needs only the (n_users, n_items) dense matrix.
        dense = user_item.to_dense()
        gram = dense.T @ dense
        del dense
    gram = gram.to(torch.float64)
    gram.diagonal().add_(l2)
    weights = torch.linalg.inv(gram)
    del gram
    # In place, as the float64 copies of an (n_items, n_items) matrix dominate peak memory.
    weights.div_(-weights.diagonal().clone().unsqueeze(0))
    weights.diagonal().zero_()
    return weights.to(torch.float32)


def ease_peak_bytes(user_item: torch.Tensor) -> int:
    """Estimated peak bytes of an EASE model on ``user_item`` (CSR ``(n_users, n_items)``):
    the float32 ``item_weights`` plus the worst stage of :func:`ease_weights`.

    Inverting takes 24 bytes per item pair (the float64 Gram matrix, its inverse, LAPACK's LU
    copy).  Before that, on a CPU, torch's sparse Gram product and its ``to_dense`` peaked at
    81 bytes per non-zero (measured, torch 2.x), and a Gram matrix has at most
    ``sum_u deg(u)^2`` non-zeros; on a GPU the dense user-item matrix and a float32 Gram.
    """
    n_users, n_items = user_item.shape
    pairs = n_items * n_items
    if user_item.device.type == "cpu":
        degrees = user_item.crow_indices().diff().to(torch.float64)
        gram_entries = min(float(pairs), float((degrees * degrees).sum()))
        product = 81 * gram_entries + 4 * pairs
    else:
        product = 4 * n_users * n_items + 4 * pairs
    return int(4 * pairs + max(24 * pairs, product))


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder.

    Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019.  Learns an item-item
    matrix ``B`` with zero diagonal minimising ``|X - X B|^2 + l2 |B|^2`` in closed form.
    Shapes: buffer ``item_weights`` float32 ``(n_items, n_items)`` (saved and restored with the
    state dict); :meth:`score` maps users ``(B,)`` to ``history (B, n_items) @ item_weights``.
    """

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        self.l2 = float(config["l2"])
        require_memory(
            ease_peak_bytes(train.matrix), device=train.device,
            what=f"EASE (the item-item matrices of {train.n_items:,} items)",
            avoid="Use a model without a dense item-item matrix (itemknn, ials), or a "
                  "dataset with fewer items.",
        )
        # The user histories are training data, not fitted state: a buffer so that .to() moves
        # it, but not persistent, so the state dict holds only what fitting learned.
        self.register_buffer("history", float_csr(train.matrix), persistent=False)
        self.register_buffer("item_weights", torch.zeros(train.n_items, train.n_items,
                                                         dtype=torch.float32,
                                                         device=train.device))

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        self.item_weights.copy_(ease_weights(self.history, self.l2))
        return {}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        # Histories are sparse (ML-1M: ~3% of the items), so summing the picked rows of B does
        # ~1/30 of a dense GEMM's arithmetic.
        return rows_times_dense(self.history, users, self.item_weights)

    def export_scores(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        # The served users' rows come in as their padded histories: no (n_users, n_items)
        # table goes into the exported graph.
        return history_rows(history, self.n_items) @ self.item_weights
