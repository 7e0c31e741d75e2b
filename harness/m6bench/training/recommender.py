"""The scoring interface every model exposes to the evaluator."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from m6bench.data.trainset import TrainSet


class Recommender(torch.nn.Module, abc.ABC):
    """Base class of every model the harness trains and evaluates.

    A model is built by its recipe's ``build(train, config)``.  The harness then calls
    :meth:`fit_epoch` once (``iterative = False``: closed-form or one-pass models such as
    EASE or ItemKNN) or once per epoch with early stopping on the benchmark's validation
    metric (``iterative = True``), keeping the best ``state_dict``.  All state that scoring
    needs must live in parameters or buffers so the best epoch can be restored and the model
    saved.  Scores are higher-is-better; the evaluator masks training items itself.
    """

    iterative: ClassVar[bool] = False

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.n_users = train.n_users
        self.n_items = train.n_items
        self.config = dict(config)

    @abc.abstractmethod
    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        """Train for one epoch (or fit completely); return named losses for the log.

        Report per-example means: a loss that is not finite, passes 1e10 in magnitude, or
        passes 1000 times its first epoch's (or 1, when that is smaller) fails the run as
        diverged (``m6bench.training.loop.check_losses``).
        """

    @abc.abstractmethod
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for a batch of users: int64 ``(B,)`` -> float ``(B, n_items)``."""

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Prediction for (user, item) pairs, ``(N,)`` each -> ``(N,)``.

        For the rating task this is the predicted rating; for the binary task a logit.  The
        default gathers from :meth:`score`; models with a rating head override it.
        """
        out = torch.empty(users.shape, dtype=torch.float32, device=users.device)
        unique_users, inverse = torch.unique(users, return_inverse=True)
        for start in range(0, unique_users.numel(), 1024):
            batch = unique_users[start : start + 1024]
            scores = self.score(batch)
            take = (inverse >= start) & (inverse < start + batch.numel())
            out[take] = scores[inverse[take] - start, items[take]].float()
        return out

    def parameter_count(self) -> int:
        """Parameters plus fitted persistent buffers (EASE's item matrix counts).

        Non-persistent buffers (caches of the training data kept for scoring) do not count;
        a sparse tensor counts its stored values.
        """
        return int(sum(
            t._nnz() if t.layout != torch.strided else t.numel()
            for t in self.state_dict().values()
        ))

    def trained_parameter_count(self) -> int:
        """How many of :meth:`parameter_count`'s numbers were fitted on the benchmark's data.

        All of them by default; a model built around frozen pretrained weights (a language
        model with trained soft prompts or adapters) overrides this with the tensors its
        optimiser updates, so the record shows both.
        """
        return self.parameter_count()

    # ------------------------------------------------------------------ export (ONNX)
    def exportable(self) -> str | None:
        """``None`` when :meth:`export_module` can be exported to ONNX, else the reason why not
        (shown to the user in the export error).  Override it to opt out."""
        return None

    def export_scores(self, users: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """Traceable scores of every item, ``(B,)`` users and ``(B, L)`` histories ->
        ``(B, n_items)``, for :meth:`export_module`.

        ``history`` holds each user's training items padded with ``n_items`` (see
        :func:`history_rows`): models that score from the history (EASE, ItemKNN, Mult-VAE)
        read it there, so no ``(n_users, n_items)`` table goes into the exported graph.  The
        default is :meth:`score`; override it when ``score`` uses sparse tensors, Python loops
        over the batch, or caches that an exporter cannot trace.
        """
        return self.score(users)

    def export_module(self) -> torch.nn.Module:
        """The scoring path as a module for ``torch.onnx.export``: ``forward(users, history, k)``
        -> top-``k`` ``(values, items)`` with the training items in ``history`` masked.

        The default wraps :meth:`export_scores`; a model whose scores come from state that must
        be refreshed first (a propagation cache) refreshes it, then calls ``super()``.
        """
        return TopKScorer(self)


class TopKScorer(torch.nn.Module):
    """``(users (B,), history (B, L) padded with n_items, k ())`` -> top-``k`` ``(values,
    items)`` of a model's scores, the history's items set to ``-inf`` first, as the evaluator
    masks them."""

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, users: torch.Tensor, history: torch.Tensor,
                k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return masked_top_k(self.model.export_scores(users, history), history, k)


def masked_top_k(scores: torch.Tensor, history: torch.Tensor,
                 k: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` ``(values, items)`` of ``(B, n_items)`` scores with each user's ``history``
    items (``(B, L)``, padded with ``n_items``) set to ``-inf`` first, as the evaluator masks
    training items.  Traceable: the in-process service and the ONNX graph share it."""
    scores = scores.to(torch.float32)
    # One spare column takes the padding, so padded slots need no special case.
    padded = torch.cat([scores, torch.zeros_like(scores[:, :1])], dim=1)
    masked = padded.scatter(1, history, torch.full(history.shape, float("-inf"),
                                                   device=scores.device))
    return torch.topk(masked[:, :-1], k)


def history_rows(history: torch.Tensor, n_items: int) -> torch.Tensor:
    """Padded item lists ``(B, L)`` (pad value ``n_items``) -> binary rows ``(B, n_items)``
    float32: the dense training rows of just these users, built inside the exported graph."""
    rows = torch.zeros(history.shape[0], n_items + 1, dtype=torch.float32,
                       device=history.device)
    rows = rows.scatter(1, history, torch.ones_like(history, dtype=torch.float32))
    return rows[:, :-1]


def padded_histories(matrix: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
    """The training items of ``users`` from a CSR ``(n_users, n_items)`` matrix, as a
    ``(B, L)`` int64 matrix padded with ``n_items`` (``L`` >= 1: the longest history)."""
    crow, col = matrix.crow_indices(), matrix.col_indices()
    starts, ends = crow[users], crow[users + 1]
    lengths = ends - starts
    width = max(1, int(lengths.max())) if users.numel() else 1
    offsets = torch.arange(width, device=col.device)
    valid = offsets[None, :] < lengths[:, None]
    positions = (starts[:, None] + offsets[None, :]).clamp_max(max(0, col.numel() - 1))
    picked = col[positions] if col.numel() else torch.zeros_like(positions)
    return torch.where(valid, picked, torch.full_like(picked, matrix.shape[1]))
