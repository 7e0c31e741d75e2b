"""The scoring interface every model exposes to the evaluator."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from m6bench.data.trainset import TrainSet

if TYPE_CHECKING:
    pass


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
