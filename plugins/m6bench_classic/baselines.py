"""The sanity baselines: most-popular items, and uniformly random scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from m6bench import Recommender, TrainSet

# Odd 32-bit constants of a well-mixing integer hash (Wellons' "lowbias32").
_MIX_1 = 0x7FEB352D
_MIX_2 = 0x846CA68B
_LOW_32_BITS = 0xFFFFFFFF


class Popularity(Recommender):
    """Rank items by their number of training interactions, the same list for every user.

    The classic non-personalised floor of top-N evaluation (e.g. Cremonesi, Koren, Turrin,
    "Performance of Recommender Algorithms on Top-N Recommendation Tasks", RecSys 2010).
    Items with equal counts are ordered by a permutation drawn from the run's generator, not
    by the evaluator's lower-index-first rule: MovieLens numbers items in catalogue order,
    which tracks popularity (Spearman -0.81 between item id and rating count on ML-100K), so
    an index tie-break would rank never-seen items by a signal no model is given (the tie
    problem of Sun et al., "Are We Evaluating Rigorously?", RecSys 2020).  On a cold-item
    benchmark every candidate has count 0, and this floor is a random ranking.
    Shapes: buffer ``item_scores`` float32 ``(n_items,)``, the count plus a tie-breaking
    fraction in ``[0, 0.5)``; :meth:`score` maps users ``(B,)`` to ``(B, n_items)``.
    """

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        self.register_buffer("item_scores",
                             torch.zeros(train.n_items, dtype=torch.float32, device=train.device))

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        order = torch.randperm(train.n_items, generator=train.generator,
                               device=train.generator.device).to(self.item_scores.device)
        counts = train.item_popularity.to(torch.float64)
        # Below one half, so even after rounding to float32 it orders equal counts without
        # reaching the next count.
        tie_break = order.to(torch.float64) / (2 * train.n_items)
        self.item_scores.copy_((counts + tie_break).to(torch.float32))
        return {}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        # A real copy per row rather than an expanded view: callers may write into the scores.
        return self.item_scores.unsqueeze(0).repeat(users.numel(), 1)


def _hash32(values: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash, vectorised on int64 tensors holding values < 2**32.

    Every product stays below 2**63, so the arithmetic is exact (no signed overflow) and the
    result is the same on every device.
    """
    values = values & _LOW_32_BITS
    values = values ^ (values >> 16)
    values = (values * _MIX_1) & _LOW_32_BITS
    values = values ^ (values >> 15)
    values = (values * _MIX_2) & _LOW_32_BITS
    return values ^ (values >> 16)


class RandomScores(Recommender):
    """Uniformly random scores: the floor any model must clear (and a check of the evaluator).

    Score of (user, item) is a hash of (user, item, salt) mapped to ``[0, 1)``; the salt is
    drawn from the run's generator at fit time.  So the ranking is a random permutation per
    user that is deterministic for a seed, independent of evaluation batch size and device,
    and costs no ``(n_users, n_items)`` storage.  Shapes: buffer ``salt`` int64 ``()``;
    :meth:`score` maps users ``(B,)`` to float32 ``(B, n_items)``.
    """

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        self.register_buffer("salt", torch.zeros((), dtype=torch.int64, device=train.device))

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        salt = torch.randint(0, 2**31, (), generator=train.generator,
                             device=train.generator.device)
        self.salt.copy_(salt.to(self.salt.device))
        return {}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_keys = _hash32(users.to(torch.int64) + self.salt)
        item_keys = torch.arange(self.n_items, dtype=torch.int64, device=users.device)
        hashed = _hash32(user_keys.unsqueeze(1) ^ item_keys.unsqueeze(0))
        # The top 24 bits are exactly representable in float32.
        return (hashed >> 8).to(torch.float32) / float(1 << 24)
