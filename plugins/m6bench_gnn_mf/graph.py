"""The user-item bipartite graph: its normalised adjacency and LightGCN-style propagation.

Everything here is a batched sparse-tensor computation on the run's device: the adjacency is
built once per model from the training matrix, and one propagation layer is one sparse-dense
matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def normalised_adjacency(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric-normalised adjacency of the user-item bipartite graph.

    With ``R`` the binary ``(n_users, n_items)`` training matrix and
    ``A = [[0, R], [R^T, 0]]`` the ``(N, N)`` adjacency over the ``N = n_users + n_items``
    nodes (users first, then items), returns ``D^-1/2 A D^-1/2`` where ``D`` is the diagonal
    degree matrix (He et al., SIGIR 2020, eq. 7).  A node without edges (an entity with no
    training interaction) has degree 0 and an empty row: its propagated vector is zero.

    :param matrix: sparse CSR ``(n_users, n_items)``, non-zeros at training pairs (values are
        ignored; duplicates must already be merged, as in ``TrainSet.matrix``).
    :return: float32 sparse CSR ``(N, N)`` on the matrix's device, symmetric.
    """
    n_users, n_items = matrix.shape
    crow, col = matrix.crow_indices(), matrix.col_indices()
    device = col.device
    user_degree = (crow[1:] - crow[:-1]).to(torch.float32)
    item_degree = torch.bincount(col, minlength=n_items).to(torch.float32)
    inv_sqrt = torch.cat([user_degree, item_degree]).pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    users = torch.repeat_interleave(torch.arange(n_users, device=device), crow[1:] - crow[:-1])
    items = col.to(torch.int64) + n_users
    rows = torch.cat([users, items])
    cols = torch.cat([items, users])
    values = inv_sqrt[rows] * inv_sqrt[cols]
    size = n_users + n_items
    # Sort (row, col) keys once; each key is unique because R has no duplicate pairs.
    order = torch.argsort(rows * size + cols)
    rows, cols, values = rows[order], cols[order], values[order]
    crow_out = torch.zeros(size + 1, dtype=torch.int64, device=device)
    crow_out[1:] = torch.bincount(rows, minlength=size).cumsum(0)
    return torch.sparse_csr_tensor(crow_out, cols, values, size=(size, size),
                                   check_invariants=False)


class _SymmetricPropagation(torch.autograd.Function):
    """``y = A x`` for a constant symmetric sparse ``A``; the gradient is ``A^T g = A g``.

    Autograd's generic rule for a sparse product transposes ``A`` on every backward pass;
    symmetry makes the backward one more product with the same CSR tensor.
    """

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, ctx.adjacency @ grad


def propagate_once(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One propagation layer ``A x``: ``(N, N)`` symmetric sparse, ``(N, d)`` -> ``(N, d)``."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _SymmetricPropagation.apply(adjacency, x)
    return adjacency @ x


def combination_weights(layers: int, weights: Sequence[float] | None) -> list[float]:
    """The layer-combination weights ``alpha_0..alpha_K``: ``1 / (K + 1)`` each by default
    (LightGCN's mean), else the given ``K + 1`` non-negative numbers, normalised to sum 1."""
    if weights is None:
        return [1.0 / (layers + 1)] * (layers + 1)
    values = [float(w) for w in weights]
    if len(values) != layers + 1 or min(values) < 0 or sum(values) <= 0:
        raise ValueError(
            f"layer_weights must be {layers + 1} non-negative numbers (one for the ego "
            f"embeddings and one per propagation layer, layers={layers}) with a positive sum, "
            f"got {values}; use null for the mean."
        )
    total = sum(values)
    return [v / total for v in values]


class GraphPropagation(nn.Module):
    """LightGCN propagation: ``E = sum_k alpha_k A^k E_0`` over ``layers`` layers.

    He, Deng, Wang, Li, Zhang, Wang, "LightGCN: Simplifying and Powering Graph Convolution
    Network for Recommendation", SIGIR 2020 (eqs. 3-4): no feature transformation and no
    non-linearity, neighbours aggregated through the symmetric-normalised adjacency, layer
    outputs combined with weights ``alpha_k`` (the mean by default).

    Shapes: ``forward(ego, adjacency)`` takes the stacked ego embeddings ``(N, d)`` (users
    first, then items) and the sparse ``(N, N)`` adjacency, and returns ``(N, d)``.  With
    ``layers=0`` it returns the ego embeddings: plain matrix factorisation.
    """

    def __init__(self, layers: int, layer_weights: list[float] | None) -> None:
        super().__init__()
        if int(layers) < 0:
            raise ValueError(f"layers must be 0 or more, got {layers}.")
        self.layers = int(layers)
        self.weights = combination_weights(self.layers, layer_weights)

    def forward(self, ego: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        combined = ego * self.weights[0]
        x = ego
        for k in range(1, self.layers + 1):
            x = propagate_once(adjacency, x)
            combined = combined + x * self.weights[k]
        return combined
