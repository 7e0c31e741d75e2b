"""The evaluator: every pinned metric of a benchmark on one part, per-user values, slices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from m6bench.data.prepared import Part, PreparedBenchmark
from m6bench.evaluation.ranking import (
    RankingResult,
    binary_metrics,
    evaluate_ranking,
    rating_metrics,
)


class Scorer(Protocol):
    """What the evaluator needs of a model (a :class:`~m6bench.Recommender` is one)."""

    def eval(self) -> Any: ...

    def score(self, users: torch.Tensor) -> torch.Tensor: ...

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Evaluation:
    metrics: dict[str, float]
    ranking: RankingResult | None = None


def evaluate_part(
    model: Scorer,
    bench: PreparedBenchmark,
    part: str,
    *,
    tasks: tuple[str, ...],
    batch_size: int,
) -> Evaluation:
    """All pinned metrics of the benchmark on ``part`` ("valid" or "test")."""
    model.eval()
    target: Part = bench.valid if part == "valid" else bench.test
    masks = [bench.train.matrix] + ([bench.valid.truth] if part == "test" else [])
    metrics: dict[str, float] = {}
    ranking = None
    with torch.no_grad():
        if "ranking" in tasks and target.size:
            ranking = evaluate_ranking(
                model.score,
                truth=target.truth,
                masks=masks,
                ks=bench.spec.ks,
                n_items=bench.train.n_items,
                item_popularity=bench.train.item_popularity,
                n_train_users=bench.train.n_users,
                candidates=bench.candidates_valid if part == "valid" else bench.candidates_test,
                batch_size=batch_size,
                device=bench.device,
                owner=model,
            )
            metrics.update(ranking.means())
        if target.ratings is not None and target.size and ({"rating", "binary"} & set(tasks)):
            predicted = model.predict(target.users, target.items)
            if "rating" in tasks:
                metrics.update(rating_metrics(predicted, target.ratings))
            if "binary" in tasks:
                threshold = bench.spec.rating_threshold or 4.0
                metrics.update(binary_metrics(predicted - threshold, target.ratings >= threshold))
    return Evaluation(metrics, ranking)


PER_USER_METRICS = ("ndcg@10", "recall@10", "mrr@10")


def per_user_values(bench: PreparedBenchmark, test: Evaluation | None) -> dict[str, Any]:
    """The test part's per-user values of a few ranking metrics (for paired tests)."""
    ranking = test.ranking if test else None
    if ranking is None:
        return {}
    out: dict[str, Any] = {"users": ranking.users.tolist()}
    for name in dict.fromkeys((*PER_USER_METRICS, bench.spec.valid_metric)):
        if name in ranking.per_user:
            out[name] = [round(v, 6) for v in ranking.per_user[name].tolist()]
    return out


def slices(bench: PreparedBenchmark, test: Evaluation | None) -> dict[str, dict[str, Any]]:
    """Test ranking metrics for slices of users: warm and cold-start (no training rows)."""
    ranking = test.ranking if test else None
    if ranking is None or ranking.users.numel() == 0:
        return {}
    slices: dict[str, dict[str, Any]] = {}
    train_counts = torch.bincount(bench.train.users.cpu(), minlength=bench.train.n_users)
    cold = train_counts[ranking.users] == 0
    for name, chosen in (("warm-users", ~cold), ("cold-users", cold)):
        if bool(chosen.any()):
            slices[name] = {k: float(v[chosen].mean()) for k, v in ranking.per_user.items()
                            if k.endswith("@10")}
            slices[name]["users"] = int(chosen.sum())
    return slices
