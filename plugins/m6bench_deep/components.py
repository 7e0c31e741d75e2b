"""The deep baselines' components, registered by name for any plugin to reuse.

Shapes: ``B`` a batch of users (or pairs), ``n`` items, ``F`` fields, ``d`` embedding width.

``field-embedding`` (encoder)
    Field tokens ``(B, F, K)`` with weights ``(B, F, K)`` -> field vectors ``(B, F, d)`` and
    first-order weights ``(B,)`` (the embedding layer of factorisation machines).
``pair-mlp`` (fusion)
    A user vector ``(B, du)`` and an item vector ``(B, di)`` -> MLP of their concatenation
    ``(B, out)``; :meth:`PairMLP.all_items` scores every (user, item) pair of a user batch
    and an item table ``(B, n, out)`` without materialising the ``(B, n, du + di)``
    concatenation (the first layer splits into a user part and an item part).
``gmf`` (fusion)
    Generalised matrix factorisation: ``(B, d), (B, d) -> (B, d)`` element-wise product.
``fm-interaction`` (fusion)
    The factorisation-machine second-order term of field vectors ``(B, F, d) -> (B,)``.
``bce`` (head)
    Pointwise logistic loss of positive ``(B,)`` and negative ``(B,)`` / ``(B, k)`` logits.
``multinomial-elbo`` (head)
    Mult-VAE's loss: multinomial log-likelihood plus a weighted KL term.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class FieldEmbedding(nn.Module):
    """Embedding layer of FM-style models (Rendle, "Factorization Machines", ICDM 2010).

    ``vocabulary`` token ids (0 = padding) share one ``(vocabulary, dim)`` table and one
    ``(vocabulary,)`` first-order weight.  A field's vector is the weighted sum of its tokens'
    embeddings (weights ``(B, F, K)``; a multi-valued field averages its tokens).
    """

    def __init__(self, vocabulary: int, dim: int, init_std: float = 0.01) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, dim, padding_idx=0)
        self.first_order = nn.Embedding(vocabulary, 1, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=init_std)
        nn.init.zeros_(self.first_order.weight)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``(B, F, K), (B, F, K) -> (B, F, d)``."""
        return (self.embedding(tokens) * weights.unsqueeze(-1)).sum(dim=2)

    def linear(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """First-order term ``(B, F, K), (B, F, K) -> (B,)``."""
        return (self.first_order(tokens).squeeze(-1) * weights).sum(dim=(1, 2))


class PairMLP(nn.Module):
    """MLP over ``[user ; item]``: ``(B, du), (B, di) -> (B, out)`` with ReLU hidden layers.

    The first layer is ``W_u user + W_i item + b``, so :meth:`all_items` computes the user
    part ``(B, h)`` and item part ``(n, h)`` once and broadcasts their sum to ``(B, n, h)``.
    """

    def __init__(self, user_dim: int, item_dim: int, hidden: Sequence[int] = (64, 32),
                 out_dim: int = 1, dropout: float = 0.0, final_activation: bool = False) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("pair-mlp needs at least one hidden layer")
        self.user_in = nn.Linear(user_dim, hidden[0])
        self.item_in = nn.Linear(item_dim, hidden[0], bias=False)
        layers: list[nn.Module] = [nn.ReLU(), nn.Dropout(dropout)]
        width = hidden[0]
        for size in hidden[1:]:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, out_dim))
        if final_activation:
            layers.append(nn.ReLU())
        self.rest = nn.Sequential(*layers)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return self.rest(self.user_in(user) + self.item_in(item))

    def all_items(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, du), (n, di) -> (B, n, out)``."""
        return self.rest(self.user_in(user)[:, None, :] + self.item_in(items)[None, :, :])


class GMF(nn.Module):
    """Generalised matrix factorisation (He et al., "Neural Collaborative Filtering", WWW
    2017): ``(B, d), (B, d) -> (B, d)``, the element-wise product."""

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return user * item


class FMInteraction(nn.Module):
    """FM second-order term ``sum_{f < g} <e_f, e_g> = 0.5 (|sum_f e_f|^2 - sum_f |e_f|^2)``:
    field vectors ``(B, F, d) -> (B,)`` in ``O(F d)`` (Rendle, ICDM 2010).  Given two field
    groups, ``(B, F1, d), (B, F2, d) -> (B,)`` treats them as one set of ``F1 + F2`` fields."""

    def forward(self, fields: torch.Tensor, more: torch.Tensor | None = None) -> torch.Tensor:
        if fields.dim() == 2:
            fields = fields.unsqueeze(1)
        if more is not None:
            fields = torch.cat([fields, more.unsqueeze(1) if more.dim() == 2 else more], dim=1)
        total = fields.sum(dim=1)
        return 0.5 * (total.pow(2).sum(dim=-1) - fields.pow(2).sum(dim=(1, 2)))


class BCEHead(nn.Module):
    """Pointwise logistic loss for implicit feedback: positives labelled 1, sampled negatives
    0; ``positive (B,)``, ``negative (B,)`` or ``(B, k)`` logits -> the mean over all logits."""

    def forward(self, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        logits = torch.cat([positive.reshape(-1), negative.reshape(-1)])
        labels = torch.cat([torch.ones_like(positive.reshape(-1)),
                            torch.zeros_like(negative.reshape(-1))])
        return nn.functional.binary_cross_entropy_with_logits(logits, labels)


class MultinomialELBOHead(nn.Module):
    """Mult-VAE's negative ELBO (Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders
    for Collaborative Filtering", WWW 2018): ``-sum_i x_ui log softmax(logits)_i`` averaged
    over users, plus ``beta`` times ``KL(N(mu, sigma^2) || N(0, I))``.

    ``logits``, ``rows`` are ``(B, n)``; ``mu``, ``log_var`` ``(B, k)``.
    """

    def forward(self, logits: torch.Tensor, rows: torch.Tensor, mu: torch.Tensor | None = None,
                log_var: torch.Tensor | None = None, beta: float = 0.0) -> torch.Tensor:
        likelihood = -(torch.log_softmax(logits, dim=-1) * rows).sum(dim=-1).mean()
        if mu is None or log_var is None:
            return likelihood
        kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=-1).mean()
        return likelihood + beta * kl


COMPONENTS: tuple[tuple[str, str, Any, dict[str, Any], str], ...] = (
    ("encoder", "field-embedding", FieldEmbedding,
     {"vocabulary": 2, "dim": 16, "init_std": 0.01},
     "field tokens (B, F, K) + weights -> field vectors (B, F, d); .linear() the first-order "
     "term (B,)"),
    ("fusion", "pair-mlp", PairMLP,
     {"user_dim": 8, "item_dim": 8, "hidden": [64, 32], "out_dim": 1, "dropout": 0.0,
      "final_activation": False},
     "MLP over [user ; item] (B, out); all_items() scores a user batch against every item "
     "(B, n, out)"),
    ("fusion", "gmf", GMF, {}, "generalised matrix factorisation: element-wise product"),
    ("fusion", "fm-interaction", FMInteraction, {},
     "factorisation-machine second-order term of field vectors (B, F, d) -> (B,)"),
    ("head", "bce", BCEHead, {}, "pointwise logistic loss: positives 1, sampled negatives 0"),
    ("head", "multinomial-elbo", MultinomialELBOHead, {},
     "Mult-VAE loss: multinomial log-likelihood + beta * KL"),
)
