"""The evaluator: every metric of a benchmark's tasks on one part, per-user values, slices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from m6bench.data.prepared import Part, PreparedBenchmark
from m6bench.data.specs import BenchmarkSpec
from m6bench.errors import ProtocolError
from m6bench.evaluation.builtin_metrics import BUILTIN_METRICS
from m6bench.evaluation.metrics import MetricTable, Predictions, record_directions
from m6bench.evaluation.ranking import RankingResult, evaluate_ranking, prediction_metrics


class Scorer(Protocol):
    """What the evaluator needs of a model (a :class:`~m6bench.Recommender` is one)."""

    def eval(self) -> Any: ...

    def score(self, users: torch.Tensor) -> torch.Tensor: ...

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Evaluation:
    metrics: dict[str, float]
    ranking: RankingResult | None = None


def metric_table(bench: PreparedBenchmark) -> MetricTable:
    """The benchmark's metrics: the ones ``runs.prepare`` resolved from the catalog, or the
    built-in ones for a benchmark prepared without a catalog (the conformance kit's)."""
    return MetricTable(bench.metrics or BUILTIN_METRICS)


def metric_directions(bench: PreparedBenchmark,
                      metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{name: "max" | "min"}`` of every metric of a record's ``metrics`` (part -> values)."""
    return record_directions(metric_table(bench), metrics)


def binary_threshold(spec: BenchmarkSpec) -> float:
    """The rating at and above which a binary label is positive: the benchmark's
    ``binary_threshold``; a benchmark with the binary task must declare one."""
    if spec.binary_threshold is None:
        raise ProtocolError(
            f"Benchmark {spec.name!r} pins the binary task but sets no binary_threshold, so "
            "its labels (rating >= threshold) are undefined. Set binary_threshold on the "
            "benchmark (e.g. 4.0), or drop 'binary' from its tasks."
        )
    return float(spec.binary_threshold)


def evaluate_part(
    model: Scorer,
    bench: PreparedBenchmark,
    part: str,
    *,
    tasks: tuple[str, ...],
    batch_size: int,
) -> Evaluation:
    """Every metric of ``tasks`` (see :func:`metric_table`) on ``part`` ("valid" or "test")."""
    model.eval()
    target: Part = bench.valid if part == "valid" else bench.test
    masks = [bench.train.matrix] + ([bench.valid.truth] if part == "test" else [])
    specs = metric_table(bench).for_tasks(tasks).specs
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
                metrics=[s for s in specs if s.task == "ranking"],
            )
            metrics.update(ranking.means())
        if target.ratings is not None and target.size and ({"rating", "binary"} & set(tasks)):
            predicted = model.predict(target.users, target.items)
            if "rating" in tasks:
                metrics.update(prediction_metrics([s for s in specs if s.task == "rating"],
                                                  Predictions(predicted, target.ratings)))
            if "binary" in tasks:
                threshold = binary_threshold(bench.spec)
                metrics.update(prediction_metrics(
                    [s for s in specs if s.task == "binary"],
                    Predictions(predicted - threshold, target.ratings >= threshold)))
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
