"""The popularity prior of m6-rec-tuned, read from item text where no count exists.

A counted item's prior is ``log(1 + n_i)``, ``n_i`` its positives in the tuning corpus.  An
item the corpus never counts (every candidate of ``ml-100k-cold-items``; an ML-100K film
missing from ML-1M) used to get 0, so the prior was flat over cold candidates, while what
makes a held-out film likely to be watched next is mostly how popular films like it are
(m6-fusion learns exactly that map, from genres, year and text to its scores, on the warm
items).  Here the map is a ridge regression from the frozen encoder's unit vector of the
item text to ``log(1 + n_i)``, fitted in closed form on the counted items: ``H + 1``
coefficients, deterministic, no gradient steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from m6bench import ConfigError


def fit_text_popularity(vectors: Tensor, counts: Tensor, ridge: float) -> Tensor:
    """Coefficients ``(H + 1,)`` (the last one the intercept) of the ridge regression of
    ``log(1 + counts)`` on ``vectors`` ``(N, H)``, over the rows with a count above 0.

    The intercept is not penalised, so with a huge ``ridge`` every prediction tends to the
    mean log count.  Fitted in float64: the normal equations of 384 near-collinear text
    dimensions lose digits in float32.
    """
    if ridge <= 0:
        raise ConfigError(f"m6-rec-tuned: text_prior_ridge={ridge} must be positive (e.g. "
                          "--set text_prior_ridge=10), or set text_prior=false.")
    counted = counts > 0
    if not bool(counted.any()):
        return torch.zeros(vectors.shape[1] + 1, dtype=torch.float32)
    design = _with_intercept(vectors[counted].double())
    target = torch.log1p(counts[counted].double())
    penalty = torch.eye(design.shape[1], dtype=torch.float64) * float(ridge)
    penalty[-1, -1] = 0.0
    coefficients = torch.linalg.solve(design.T @ design + penalty, design.T @ target)
    return coefficients.float()


def text_popularity(vectors: Tensor, coefficients: Tensor) -> Tensor:
    """The fitted ``log(1 + n)`` estimate of each row of ``vectors`` ``(N, H) -> (N,)``."""
    return _with_intercept(vectors.double()) @ coefficients.double()


def prior_with_text(counts: Tensor, vectors: Tensor, coefficients: Tensor) -> Tensor:
    """``log(1 + n_i)`` for counted items, the text estimate for the others, float32."""
    estimate = text_popularity(vectors, coefficients).float()
    return torch.where(counts > 0, torch.log1p(counts.float()), estimate)


def _with_intercept(vectors: Tensor) -> Tensor:
    ones = torch.ones(vectors.shape[0], 1, dtype=vectors.dtype)
    return torch.cat([vectors, ones], dim=1)
