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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from m6bench.tensor import expand_csr

RANKING_METRICS = ("recall", "ndcg", "mrr", "hit", "precision", "map")


def ranking_metrics(
    hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-user ranking metrics from the hit matrix of the top-K lists.

    :param hits: bool or float ``(B, K)`` with ``K >= max(ks)``: whether the item at rank
        ``r`` (0-based column) is relevant.
    :param n_relevant: ``(B,)`` number of relevant items of each user.
    :return: ``{"ndcg@10": (B,) float64, ...}`` for every metric and k.
    """
    hits = hits.to(torch.float64)
    n_relevant = n_relevant.to(torch.float64)
    max_k = hits.shape[1]
    ranks = torch.arange(1, max_k + 1, dtype=torch.float64, device=hits.device)
    discounts = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits.cumsum(dim=1)
    ideal_cum = discounts.cumsum(dim=0)
    safe_rel = n_relevant.clamp(min=1.0)
    first_hit = torch.where(hits > 0, ranks, torch.full_like(hits, math.inf)).min(dim=1).values
    precision_at_rank = cum_hits / ranks
    ap_terms = (precision_at_rank * hits).cumsum(dim=1)

    out: dict[str, torch.Tensor] = {}
    for k in ks:
        if k > max_k:
            raise ValueError(f"k={k} exceeds the {max_k} ranks given")
        n_hits = cum_hits[:, k - 1]
        dcg = (hits[:, :k] * discounts[:k]).sum(dim=1)
        ideal_n = n_relevant.clamp(max=k).long()
        idcg = torch.where(ideal_n > 0, ideal_cum[(ideal_n - 1).clamp(min=0)],
                           torch.ones_like(dcg))
        has_rel = n_relevant > 0
        zero = torch.zeros_like(dcg)
        out[f"recall@{k}"] = torch.where(has_rel, n_hits / safe_rel, zero)
        out[f"ndcg@{k}"] = torch.where(has_rel, dcg / idcg, zero)
        out[f"mrr@{k}"] = torch.where(first_hit <= k, 1.0 / first_hit, zero)
        out[f"hit@{k}"] = (n_hits > 0).to(torch.float64)
        out[f"precision@{k}"] = n_hits / k
        out[f"map@{k}"] = torch.where(
            has_rel, ap_terms[:, k - 1] / n_relevant.clamp(max=k).clamp(min=1.0), zero
        )
    return out


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
    """
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
        keys = batch.unsqueeze(1) * n_items + top
        found = torch.searchsorted(truth_keys, keys).clamp_(max=truth_keys.numel() - 1)
        hits = truth_keys[found] == keys
        if hits.shape[1] < max(ks):  # fewer items than k: the missing ranks are misses
            hits = torch.nn.functional.pad(hits, (0, max(ks) - hits.shape[1]))
        values = ranking_metrics(hits, n_relevant_all[batch], ks)
        for name, value in values.items():
            per_user.setdefault(name, []).append(value)
        top_lists.append(top)
    recommended = (torch.cat(top_lists).cpu() if top_lists
                   else torch.empty(0, max_k, dtype=torch.long))
    result = RankingResult(
        users=users.cpu(),
        per_user={name: torch.cat(parts).cpu() for name, parts in per_user.items()},
        recommended=recommended,
    )
    result.beyond = beyond_accuracy(recommended, ks, n_items, item_popularity.cpu(), n_train_users)
    return result


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
    out: dict[str, float] = {}
    if recommended.numel() == 0:
        return out
    popularity = item_popularity.to(torch.float64).clamp(min=1.0)
    self_information = -torch.log2(popularity / max(1, n_train_users))
    for k in ks:
        top = recommended[:, :k]
        counts = torch.bincount(top.reshape(-1), minlength=n_items).to(torch.float64)
        out[f"coverage@{k}"] = float((counts > 0).sum()) / n_items
        out[f"novelty@{k}"] = float(self_information[top].mean())
        out[f"gini@{k}"] = gini(counts)
    return out


def gini(values: torch.Tensor) -> float:
    """Gini coefficient of non-negative values (0 for all equal)."""
    sorted_values = torch.sort(values.to(torch.float64)).values
    n = sorted_values.numel()
    total = float(sorted_values.sum())
    if n == 0 or total == 0:
        return 0.0
    index = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * index - n - 1) * sorted_values).sum() / (n * total))


def rating_metrics(predicted: torch.Tensor, actual: torch.Tensor) -> dict[str, float]:
    """RMSE and MAE of rating predictions."""
    error = predicted.to(torch.float64) - actual.to(torch.float64)
    return {"rmse": float(error.pow(2).mean().sqrt()), "mae": float(error.abs().mean())}


def binary_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """AUC (Mann-Whitney, ties counted half) and log loss of sigmoid(logits)."""
    logits = logits.to(torch.float64)
    labels = labels.to(torch.float64)
    n_pos = float(labels.sum())
    n_neg = float(labels.numel() - n_pos)
    out: dict[str, float] = {}
    if n_pos > 0 and n_neg > 0:
        ranks = _average_ranks(logits)
        out["auc"] = float((ranks[labels > 0].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    else:
        out["auc"] = float("nan")
    out["logloss"] = float(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    )
    return out


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
