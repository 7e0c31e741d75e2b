"""The core's basic components: id embeddings, dot-product and MLP fusion, BPR and MSE heads.

Any plugin builds them by name through ``train.components`` (the catalog), e.g.
``train.components.encoder("id-embedding", num=n_items, dim=64)``.
"""

from __future__ import annotations

import torch
from torch import nn

from m6bench.hookspecs import hookimpl
from m6bench.tensor import row_gradient
from m6bench.training.specs import ComponentSpec


class _GatherRows(torch.autograd.Function):
    """``weight[index]`` whose backward is :func:`m6bench.row_gradient` (faster on a CPU than
    the embedding's own backward, and deterministic on every device)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.n_rows = weight.shape[0]
        return weight.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        return row_gradient(grad, index, ctx.n_rows), None


class IdEmbedding(nn.Module):
    """Entity index ``(B,)`` -> vector ``(B, dim)``; ``weight`` is ``(num, dim)``."""

    def __init__(self, num: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num, dim)
        nn.init.normal_(self.embedding.weight, std=init_std)

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        rows = _GatherRows.apply(self.embedding.weight, index.reshape(-1))
        return rows.view(*index.shape, -1)


class DotFusion(nn.Module):
    """Score = <user, item>: pairs ``(B, d), (B, d) -> (B,)``; :meth:`all_items` gives
    ``(B, d), (n_items, d) -> (B, n_items)`` by one matmul."""

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return (user * item).sum(dim=-1)

    def all_items(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return user @ items.T


class ConcatMLPFusion(nn.Module):
    """Concatenate vectors ``[(B, d_i)]`` and map through an MLP to ``(B, out_dim)``."""

    def __init__(self, in_dim: int, hidden: list[int], out_dim: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, *vectors: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat(vectors, dim=-1))


class BPRHead(nn.Module):
    """Bayesian personalised ranking loss: ``-log sigmoid(pos - neg)`` averaged.

    Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009.
    """

    def forward(self, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        return -nn.functional.logsigmoid(positive - negative).mean()

    @staticmethod
    def margin_gradient(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """The loss's derivative with respect to each pair's ``positive`` score ``(B,)``; its
        derivative with respect to ``negative`` is the opposite.  For models that apply the
        chain rule themselves: ``d/dx -mean(log sigmoid(x)) = -sigmoid(-x) / B``."""
        return torch.sigmoid(negative - positive).mul_(-1.0 / positive.numel())


class MSEHead(nn.Module):
    """Rating regression loss: mean squared error of ``(B,)`` predictions."""

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(predicted, target)


@hookimpl
def m6bench_register_encoders(register):
    register(ComponentSpec("encoder", "id-embedding", IdEmbedding,
                           {"num": 1, "dim": 64, "init_std": 0.1},
                           "entity id -> learned vector"))


@hookimpl
def m6bench_register_fusions(register):
    register(ComponentSpec("fusion", "dot", DotFusion, {}, "dot product of two vectors"))
    register(ComponentSpec("fusion", "concat-mlp", ConcatMLPFusion,
                           {"in_dim": 128, "hidden": [64], "out_dim": 1, "dropout": 0.0},
                           "concatenation followed by an MLP"))


@hookimpl
def m6bench_register_heads(register):
    register(ComponentSpec("head", "bpr", BPRHead, {}, "pairwise BPR ranking loss"))
    register(ComponentSpec("head", "mse", MSEHead, {}, "rating regression (MSE)"))
