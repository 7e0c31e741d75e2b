"""The core's metrics, as :class:`MetricSpec` values (``m6bench.builtin.metrics`` registers
them through the same hook as any plugin's).

The per-user ranking metrics share the cached float64 tensors of a :class:`RankingBatch`,
so a batch costs what the one vectorised pass did before metrics were plugins.  Their
conventions are in :mod:`m6bench.evaluation.ranking`.
"""

from __future__ import annotations

import torch

from m6bench.evaluation.metrics import MetricSpec, Predictions, RankingBatch, RecommendedLists


# ------------------------------------------------------------- per-user ranking metrics
def _n_hits(batch: RankingBatch, k: int) -> torch.Tensor:
    return batch.cum_hits[:, k - 1]


def _has_relevant(batch: RankingBatch) -> torch.Tensor:
    return batch.relevant > 0


def _recall(batch: RankingBatch, k: int) -> torch.Tensor:
    n_hits = _n_hits(batch, k)
    return torch.where(_has_relevant(batch), n_hits / batch.relevant.clamp(min=1.0),
                       torch.zeros_like(n_hits))


def _ndcg(batch: RankingBatch, k: int) -> torch.Tensor:
    dcg = (batch.hit_values[:, :k] * batch.discounts[:k]).sum(dim=1)
    ideal_n = batch.relevant.clamp(max=k).long()
    idcg = torch.where(ideal_n > 0, batch.ideal_dcg[(ideal_n - 1).clamp(min=0)],
                       torch.ones_like(dcg))
    return torch.where(_has_relevant(batch), dcg / idcg, torch.zeros_like(dcg))


def _mrr(batch: RankingBatch, k: int) -> torch.Tensor:
    first_hit = batch.first_hit
    return torch.where(first_hit <= k, 1.0 / first_hit, torch.zeros_like(batch.relevant))


def _hit(batch: RankingBatch, k: int) -> torch.Tensor:
    return (_n_hits(batch, k) > 0).to(torch.float64)


def _precision(batch: RankingBatch, k: int) -> torch.Tensor:
    return _n_hits(batch, k) / k


def _map(batch: RankingBatch, k: int) -> torch.Tensor:
    relevant = batch.relevant
    return torch.where(_has_relevant(batch),
                       batch.average_precision_terms[:, k - 1] / relevant.clamp(max=k).clamp(
                           min=1.0), torch.zeros_like(relevant))


# --------------------------------------------------------- beyond accuracy (global)
def _coverage(lists: RecommendedLists, k: int) -> float:
    return float((lists.counts(k) > 0).sum()) / lists.n_items


def _novelty(lists: RecommendedLists, k: int) -> float:
    popularity = lists.item_popularity.to(torch.float64).clamp(min=1.0)
    self_information = -torch.log2(popularity / max(1, lists.n_train_users))
    return float(self_information[lists.recommended[:, :k]].mean())


def _gini(lists: RecommendedLists, k: int) -> float:
    return gini(lists.counts(k))


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values (0 for all equal)."""
    sorted_values = torch.sort(values.to(torch.float64)).values
    n = sorted_values.numel()
    total = float(sorted_values.sum())
    if n == 0 or total == 0:
        return 0.0
    index = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * index - n - 1) * sorted_values).sum() / (n * total))


# ------------------------------------------------------------------- rating, binary
def _error(predictions: Predictions) -> torch.Tensor:
    return predictions.predicted.to(torch.float64) - predictions.targets.to(torch.float64)


def _rmse(predictions: Predictions, k: None) -> float:
    return float(_error(predictions).pow(2).mean().sqrt())


def _mae(predictions: Predictions, k: None) -> float:
    return float(_error(predictions).abs().mean())


def _auc(predictions: Predictions, k: None) -> float:
    """Mann-Whitney AUC, ties counted half; NaN with a single class."""
    logits = predictions.predicted.to(torch.float64)
    labels = predictions.targets.to(torch.float64)
    n_pos = float(labels.sum())
    n_neg = float(labels.numel() - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(logits)
    return float((ranks[labels > 0].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _logloss(predictions: Predictions, k: None) -> float:
    return float(torch.nn.functional.binary_cross_entropy_with_logits(
        predictions.predicted.to(torch.float64), predictions.targets.to(torch.float64)))


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks with ties given their average rank (scipy's rankdata 'average')."""
    sorted_values, order = torch.sort(values, stable=True)
    n = values.numel()
    new_group = torch.ones(n, dtype=torch.bool)
    new_group[1:] = sorted_values[1:] != sorted_values[:-1]
    group = new_group.cumsum(0) - 1
    positions = torch.arange(1, n + 1, dtype=torch.float64)
    sums = torch.zeros(int(group[-1]) + 1, dtype=torch.float64).index_add_(0, group, positions)
    counts = torch.bincount(group).to(torch.float64)
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = (sums / counts)[group]
    return ranks


def _per_user(name: str, compute, description: str) -> MetricSpec:
    return MetricSpec(name, "ranking", higher_is_better=True, compute=compute, per_user=True,
                      at_k=True, description=description)


PER_USER_RANKING_METRICS = (
    _per_user("recall", _recall, "hits in the top k / relevant items"),
    _per_user("ndcg", _ndcg, "binary-gain DCG over the ideal DCG of min(relevant, k) hits"),
    _per_user("mrr", _mrr, "1 / rank of the first hit in the top k (0 without one)"),
    _per_user("hit", _hit, "1 when the top k holds a relevant item"),
    _per_user("precision", _precision, "hits in the top k / k"),
    _per_user("map", _map, "mean precision at each hit rank / min(relevant, k)"),
)
GLOBAL_RANKING_METRICS = (
    MetricSpec("coverage", "ranking", higher_is_better=True, compute=_coverage, at_k=True,
               description="share of all items recommended to at least one user"),
    MetricSpec("novelty", "ranking", higher_is_better=True, compute=_novelty, at_k=True,
               description="mean self-information -log2(popularity / users) of the "
                           "recommended items (unseen items count as popularity 1)"),
    MetricSpec("gini", "ranking", higher_is_better=False, compute=_gini, at_k=True,
               description="Gini coefficient of recommendation counts (0 = equal exposure)"),
)
PREDICTION_METRICS = (
    MetricSpec("rmse", "rating", higher_is_better=False, compute=_rmse,
               description="root mean squared error of predicted ratings"),
    MetricSpec("mae", "rating", higher_is_better=False, compute=_mae,
               description="mean absolute error of predicted ratings"),
    MetricSpec("auc", "binary", higher_is_better=True, compute=_auc,
               description="ROC AUC (Mann-Whitney, ties counted half) of rating >= threshold"),
    MetricSpec("logloss", "binary", higher_is_better=False, compute=_logloss,
               description="log loss of sigmoid(prediction - threshold) against the labels"),
)
BUILTIN_METRICS = PER_USER_RANKING_METRICS + GLOBAL_RANKING_METRICS + PREDICTION_METRICS
