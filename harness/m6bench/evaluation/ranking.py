"""The evaluator: batched full ranking on the run's device, plus rating and binary metrics.

Ranking conventions (the same as RecBole's and ranx's):

* candidates are all items; the user's training items (and, at test time, validation
  items) are masked out; a benchmark may restrict candidates further (cold items);
* ties in score are broken by the lower item index (a stable order, so results do not
  depend on the top-k kernel);
* users with no relevant item in the evaluated part are not evaluated;
* ``recall@k = hits / n_relevant``, ``precision@k = hits / k``, ``hit@k`` is 1 when any
  hit, ``mrr@k`` is 1 / rank of the first hit, ``ndcg@k`` uses binary gains and
  ``log2(rank + 1)`` discounts with the ideal DCG of ``min(n_relevant, k)`` hits,
  ``map@k`` averages precision at each hit rank, divided by ``min(n_relevant, k)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from m6bench.errors import PluginError
from m6bench.evaluation.builtin_metrics import (
    GLOBAL_RANKING_METRICS,
    PER_USER_RANKING_METRICS,
    PREDICTION_METRICS,
    gini,
)
from m6bench.evaluation.metrics import (
    MetricSpec,
    Predictions,
    RankingBatch,
    RecommendedLists,
)
from m6bench.tensor import expand_csr

RANKING_METRICS = tuple(spec.name for spec in PER_USER_RANKING_METRICS)


def ranking_metrics(
    hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-user built-in ranking metrics from the hit matrix of the top-K lists.

    :param hits: bool or float ``(B, K)`` with ``K >= max(ks)``: whether the item at rank
        ``r`` (0-based column) is relevant.
    :param n_relevant: ``(B,)`` number of relevant items of each user.
    :return: ``{"ndcg@10": (B,) float64, ...}`` for every metric and k.
    """
    return per_user_metrics(PER_USER_RANKING_METRICS, RankingBatch(hits, n_relevant), ks)


def per_user_metrics(specs: Sequence[MetricSpec], batch: RankingBatch,
                     ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """``{"name@k": (B,) float64}`` of the per-user ranking ``specs`` on one batch."""
    for k in ks:
        if k > batch.max_k:
            raise ValueError(f"k={k} exceeds the {batch.max_k} ranks given")
    out: dict[str, torch.Tensor] = {}
    at_k = [spec for spec in specs if spec.at_k]
    for k in ks:
        for spec in at_k:
            out[f"{spec.name}@{k}"] = _per_user_value(spec, batch, k)
    for spec in specs:
        if not spec.at_k:
            out[spec.name] = _per_user_value(spec, batch, None)
    return out


def _per_user_value(spec: MetricSpec, batch: RankingBatch, k: int | None) -> torch.Tensor:
    value = spec.compute(batch, k)
    rows = batch.hits.shape[0]
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (rows,):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise PluginError(f"Per-user metric {spec.name!r} returned {shape} for a batch of "
                          f"{rows} users; return one value per user, a ({rows},) tensor.")
    return value.to(torch.float64)


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(B, k)`` of the highest scores, ties broken by the lower index.

    ``torch.topk`` does not promise an order among equal scores.  Taking one extra rank
    shows every tie that matters (two equal neighbours inside the list, or the k-th equal to
    the (k+1)-th across its boundary); only those rows are re-ranked with a stable sort (rare
    for learned scores, common for counts such as popularity).
    """
    k = min(k, scores.shape[1])
    extra = min(k + 1, scores.shape[1])
    values, indices = torch.topk(scores, extra, dim=1)
    tied = (values[:, 1:] == values[:, :-1]).any(dim=1) if extra > 1 else None
    indices = indices[:, :k]
    if tied is not None and bool(tied.any()):
        rows = tied.nonzero(as_tuple=True)[0]
        order = torch.sort(scores[rows], dim=1, descending=True, stable=True).indices
        indices[rows] = order[:, :k]
    return indices


@dataclass
class RankingResult:
    """Per-user metric values of one evaluated part, and the users they belong to."""

    users: torch.Tensor  # (U,) int64, on CPU
    per_user: dict[str, torch.Tensor]  # metric -> (U,) float64, on CPU
    recommended: torch.Tensor  # (U, max_k) int64 top lists, on CPU
    beyond: dict[str, float] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        out = {name: float(v.mean()) if v.numel() else float("nan")
               for name, v in self.per_user.items()}
        out.update(self.beyond)
        return out


class _RowLookup:
    """The non-zeros of a sparse CSR matrix, fetched for sorted batches of rows as positions
    in the batch's flattened ``(B, n_columns)`` score matrix.

    A batch of ascending rows owns one contiguous slice of the matrix's flat keys.  When
    the batch is every row from its first to its last (all users have relevant items, the
    usual case) the slice shifted by the first row is the answer; otherwise the rows outside
    the batch are dropped through a row -> batch-position table (-1 outside the batch).
    """

    def __init__(self, matrix: torch.Tensor, position: torch.Tensor) -> None:
        self.n_columns = matrix.shape[1]
        self.expanded = expand_csr(matrix)
        self.position = position

    def batch(self, first: int, last: int, size: int) -> torch.Tensor:
        """Flat positions of the non-zeros of the batch's ``size`` rows, ``first``..``last``."""
        expanded = self.expanded
        low, high = expanded.crow[first], expanded.crow[last + 1]
        if size == last - first + 1:
            return expanded.keys[low:high] - first * self.n_columns
        batch_rows = self.position[expanded.rows[low:high]]
        keep = batch_rows >= 0
        return batch_rows[keep] * self.n_columns + expanded.cols[low:high][keep]


@torch.no_grad()
def evaluate_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    truth: torch.Tensor,
    masks: Sequence[torch.Tensor],
    ks: Sequence[int],
    n_items: int,
    item_popularity: torch.Tensor,
    n_train_users: int,
    candidates: torch.Tensor | None = None,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    owner: torch.nn.Module | None = None,
    metrics: Sequence[MetricSpec] | None = None,
) -> RankingResult:
    """Full-ranking evaluation of every user that has a relevant item in ``truth``.

    :param score_fn: int64 ``(B,)`` users -> ``(B, n_items)`` scores.
    :param truth: sparse CSR ``(n_users, n_items)`` of relevant items (the evaluated part).
    :param masks: sparse CSR matrices of items to exclude (training, and validation at test).
    :param candidates: optional bool ``(n_items,)``; items outside it are excluded.
    :param item_popularity: ``(n_items,)`` training counts, for novelty.
    :param owner: the module behind ``score_fn``.  Masking writes into the scores, so a
        batch of scores is copied first unless it is provably fresh: not a view, and not the
        storage of one of ``owner``'s parameters or buffers (without ``owner``, always copied).
    :param metrics: the ranking metrics to compute (default: the built-in ones).
    """
    metrics = [m for m in (PER_USER_RANKING_METRICS + GLOBAL_RANKING_METRICS
                           if metrics is None else metrics) if m.task == "ranking"]
    device = torch.device(device)
    truth = truth.to(device)
    if truth.shape[1] != n_items:
        raise ValueError(f"truth has {truth.shape[1]} item columns but n_items={n_items}")
    crow = truth.crow_indices()
    n_relevant_all = crow[1:] - crow[:-1]
    users = (n_relevant_all > 0).nonzero(as_tuple=True)[0]
    max_k = min(max(ks), n_items)
    excluded_items = None
    if candidates is not None:
        excluded_items = (~candidates.to(device)).nonzero(as_tuple=True)[0]
    # sorted (user * n_items + item) keys of the truth: hits are a binary search away
    truth_keys = expand_csr(truth).keys
    position = torch.full((truth.shape[0],), -1, dtype=torch.long, device=device)
    mask_lookups = [_RowLookup(m.to(device), position) for m in masks]
    owned = (None if owner is None else
             {t.untyped_storage().data_ptr() for t in (*owner.parameters(), *owner.buffers())
              if t.layout == torch.strided})
    per_user: dict[str, list[torch.Tensor]] = {}
    top_lists: list[torch.Tensor] = []
    users_host = users.cpu().tolist()
    for start in range(0, len(users_host), batch_size):
        batch = users[start : start + batch_size]
        first, last = users_host[start], users_host[min(start + batch_size, len(users_host)) - 1]
        scores = _writable(score_fn(batch).to(device=device, dtype=torch.float32), owned)
        position[batch] = torch.arange(batch.numel(), device=device)
        flat_scores = scores.view(-1)
        for lookup in mask_lookups:
            flat_scores.index_fill_(0, lookup.batch(first, last, batch.numel()), -torch.inf)
        position[batch] = -1
        if excluded_items is not None:
            scores[:, excluded_items] = -torch.inf
        top = top_k(scores, max_k)
        hits = _hits(truth_keys, batch, top, n_items, width=max(ks))
        inputs = RankingBatch(hits, n_relevant_all[batch], recommended=top, users=batch,
                              item_popularity=item_popularity, n_items=n_items,
                              n_train_users=n_train_users)
        for name, value in per_user_metrics([m for m in metrics if m.per_user], inputs,
                                            ks).items():
            per_user.setdefault(name, []).append(value)
        top_lists.append(top)
    recommended = (torch.cat(top_lists).cpu() if top_lists
                   else torch.empty(0, max_k, dtype=torch.long))
    lists = RecommendedLists(recommended, users=users.cpu(), n_items=n_items,
                             item_popularity=item_popularity.cpu(), n_train_users=n_train_users)
    return RankingResult(
        users=lists.users,
        per_user={name: torch.cat(parts).cpu() for name, parts in per_user.items()},
        recommended=recommended,
        beyond=global_metrics([m for m in metrics if not m.per_user], lists, ks),
    )


def _hits(truth_keys: torch.Tensor, users: torch.Tensor, top: torch.Tensor, n_items: int,
          width: int) -> torch.Tensor:
    """Bool ``(B, width)``: whether each recommended item is in the sorted truth keys."""
    keys = users.unsqueeze(1) * n_items + top
    found = torch.searchsorted(truth_keys, keys).clamp_(max=truth_keys.numel() - 1)
    hits = truth_keys[found] == keys
    if hits.shape[1] < width:  # fewer items than k: the missing ranks are misses
        hits = torch.nn.functional.pad(hits, (0, width - hits.shape[1]))
    return hits


def _writable(scores: torch.Tensor, owned: set[int] | None) -> torch.Tensor:
    """``scores``, or a copy of it where writing into it could touch model state (a view,
    e.g. one popularity row expanded to the batch, or a cached buffer returned as is).  The
    copy of a (B, n_items) batch costs as much as a third of the matmul that made it."""
    if (owned is None or scores._base is not None or not scores.is_contiguous()
            or scores.untyped_storage().data_ptr() in owned):
        return scores.clone(memory_format=torch.contiguous_format)  # masked through a flat view
    return scores


def beyond_accuracy(
    recommended: torch.Tensor,
    ks: Sequence[int],
    n_items: int,
    item_popularity: torch.Tensor,
    n_train_users: int,
) -> dict[str, float]:
    """Item coverage, novelty and the Gini index of recommendation counts, at each k.

    * ``coverage@k``: share of all items recommended to at least one user;
    * ``novelty@k``: mean self-information ``-log2(popularity / n_users)`` of the recommended
      items (items never seen in training count as popularity 1);
    * ``gini@k``: Gini coefficient of how often each item is recommended (0 = equal
      exposure, 1 = one item takes all).
    """
    lists = RecommendedLists(recommended, users=torch.arange(recommended.shape[0]),
                             n_items=n_items, item_popularity=item_popularity,
                             n_train_users=n_train_users)
    return global_metrics(GLOBAL_RANKING_METRICS, lists, ks)


def global_metrics(specs: Sequence[MetricSpec], lists: RecommendedLists,
                   ks: Sequence[int]) -> dict[str, float]:
    """``{"name@k": value}`` of the global ranking ``specs`` (nothing without lists)."""
    out: dict[str, float] = {}
    if lists.recommended.numel() == 0:
        return out
    at_k = [spec for spec in specs if spec.at_k]
    for k in ks:
        for spec in at_k:
            out[f"{spec.name}@{k}"] = float(spec.compute(lists, k))
    for spec in specs:
        if not spec.at_k:
            out[spec.name] = float(spec.compute(lists, None))
    return out


def prediction_metrics(specs: Sequence[MetricSpec], predictions: Predictions
                       ) -> dict[str, float]:
    """``{name: value}`` of rating or binary ``specs`` on the part's predictions."""
    return {spec.name: float(spec.compute(predictions, None)) for spec in specs}


def rating_metrics(predicted: torch.Tensor, actual: torch.Tensor) -> dict[str, float]:
    """RMSE and MAE of rating predictions."""
    return prediction_metrics([m for m in PREDICTION_METRICS if m.task == "rating"],
                              Predictions(predicted, actual))


def binary_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """AUC (Mann-Whitney, ties counted half) and log loss of sigmoid(logits)."""
    return prediction_metrics([m for m in PREDICTION_METRICS if m.task == "binary"],
                              Predictions(logits, labels))


__all__ = ["RANKING_METRICS", "RankingResult", "beyond_accuracy", "binary_metrics",
           "evaluate_ranking", "gini", "global_metrics", "per_user_metrics",
           "prediction_metrics", "ranking_metrics", "rating_metrics", "top_k"]
