"""Metrics as plugins: what a metric is (:class:`MetricSpec`), what it is computed from, and
the table of a run's metrics that answers which way each is better.

A metric is computed from what the evaluator already has, through one signature,
``compute(inputs, k)`` (``k`` is the cut-off of an ``at_k`` metric, else ``None``):

* a per-user ranking metric gets a :class:`RankingBatch` (one batch of users: the top-K
  hit matrix, the recommended lists, the number of relevant items) and returns a ``(B,)``
  tensor; the evaluator keeps the values per user and reports their mean;
* a global ranking metric (beyond accuracy: coverage, novelty, ...) gets the
  :class:`RecommendedLists` of every evaluated user and returns a float;
* a rating or binary metric gets the :class:`Predictions` of the evaluated part and
  returns a float.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from m6bench.data.specs import TASKS, BenchmarkSpec
from m6bench.errors import ConfigError, did_you_mean

# what a sweep or the training loop falls back to when the benchmark has no ranking task
RATING_VALIDATION_METRIC = "rmse"


@dataclass(frozen=True)
class MetricSpec:
    """A metric a plugin registers through ``m6bench_register_metrics``.

    :param name: the metric's name without a cut-off (``"ndcg"``; the evaluator reports an
        ``at_k`` metric once per benchmark k, as ``"ndcg@10"``).
    :param task: ``"ranking"``, ``"rating"`` or ``"binary"``: the benchmark task it scores.
    :param higher_is_better: its direction; records carry it, leaderboards rank by it.
    :param per_user: a ranking metric's value is a mean over users of a per-user value
        (``compute`` returns a ``(B,)`` tensor per batch) rather than one global value.
    :param at_k: it takes a cut-off K (ranking metrics only).
    :param compute: ``compute(inputs, k)``; see this module's docstring for ``inputs``.
    """

    name: str
    task: str
    higher_is_better: bool
    compute: Callable[[Any, int | None], Any]
    per_user: bool = False
    at_k: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or "@" in self.name:
            raise ConfigError(f"Metric name {self.name!r} must be non-empty and hold no '@': "
                              "the cut-off is added as @k for at_k metrics.")
        if self.task not in TASKS:
            raise ConfigError(f"Metric {self.name!r} has task {self.task!r}; use one of "
                              f"{', '.join(TASKS)}.")
        if self.task != "ranking" and (self.per_user or self.at_k):
            raise ConfigError(f"Metric {self.name!r} scores the {self.task} task, so it takes "
                              "no cut-off and no per-user values: set per_user=False, "
                              "at_k=False.")

    @property
    def direction(self) -> str:
        """``"max"`` or ``"min"``: the word records store."""
        return "max" if self.higher_is_better else "min"

    def names(self, ks: Sequence[int]) -> list[str]:
        """The names it is reported under for the cut-offs ``ks``."""
        return [f"{self.name}@{k}" for k in ks] if self.at_k else [self.name]


@dataclass(eq=False)
class RankingBatch:
    """What a per-user ranking metric sees of one batch of ``B`` evaluated users.

    ``hits`` is bool or float ``(B, K)`` with ``K >= max(ks)`` (column ``r``: whether the
    item at 0-based rank ``r`` is relevant; ranks past the catalogue are misses);
    ``recommended`` the ``(B, <= K)`` item indices of the top lists; ``n_relevant`` the
    ``(B,)`` number of relevant items; ``item_popularity`` the ``(n_items,)`` training
    counts.  The cached properties are shared by the built-in metrics, so each is computed
    once per batch.
    """

    hits: torch.Tensor
    n_relevant: torch.Tensor
    recommended: torch.Tensor | None = None
    users: torch.Tensor | None = None
    item_popularity: torch.Tensor | None = None
    n_items: int = 0
    n_train_users: int = 0

    @property
    def max_k(self) -> int:
        return int(self.hits.shape[1])

    @cached_property
    def hit_values(self) -> torch.Tensor:
        """``hits`` as float64 ``(B, K)``."""
        return self.hits.to(torch.float64)

    @cached_property
    def relevant(self) -> torch.Tensor:
        """``n_relevant`` as float64 ``(B,)``."""
        return self.n_relevant.to(torch.float64)

    @cached_property
    def ranks(self) -> torch.Tensor:
        """1-based ranks ``(K,)`` as float64."""
        return torch.arange(1, self.max_k + 1, dtype=torch.float64, device=self.hits.device)

    @cached_property
    def discounts(self) -> torch.Tensor:
        return 1.0 / torch.log2(self.ranks + 1.0)

    @cached_property
    def ideal_dcg(self) -> torch.Tensor:
        """DCG of r hits in the first r ranks, ``(K,)``."""
        return self.discounts.cumsum(dim=0)

    @cached_property
    def average_precision_terms(self) -> torch.Tensor:
        """Sum of precision at each hit rank within the first r ranks, ``(B, K)``."""
        return (self.cum_hits / self.ranks * self.hit_values).cumsum(dim=1)

    @cached_property
    def cum_hits(self) -> torch.Tensor:
        """Hits within the first r ranks, ``(B, K)``."""
        return self.hit_values.cumsum(dim=1)

    @cached_property
    def first_hit(self) -> torch.Tensor:
        """Rank of the first hit (inf without one), ``(B,)``."""
        hits = self.hit_values
        return torch.where(hits > 0, self.ranks, torch.full_like(hits, torch.inf)
                           ).min(dim=1).values


@dataclass(eq=False)
class RecommendedLists:
    """What a global ranking metric sees: every evaluated user's top list, on the CPU.

    ``recommended`` is int64 ``(U, K)``; ``item_popularity`` the ``(n_items,)`` training
    counts; ``n_train_users`` the number of users of the training set.
    """

    recommended: torch.Tensor
    users: torch.Tensor
    n_items: int
    item_popularity: torch.Tensor
    n_train_users: int
    _counts: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def counts(self, k: int) -> torch.Tensor:
        """How often each item is in a top-k list, float64 ``(n_items,)`` (cached per k)."""
        if k not in self._counts:
            top = self.recommended[:, :k]
            self._counts[k] = torch.bincount(top.reshape(-1), minlength=self.n_items).to(
                torch.float64)
        return self._counts[k]


@dataclass(eq=False)
class Predictions:
    """What a rating or binary metric sees of the evaluated part's ``(N,)`` rows.

    For the rating task ``predicted`` are predicted ratings and ``targets`` the true
    ratings; for the binary task ``predicted`` are logits (the prediction minus the
    benchmark's ``rating_threshold``) and ``targets`` 0/1 labels (rating >= threshold).
    """

    predicted: torch.Tensor
    targets: torch.Tensor


class MetricTable:
    """The metrics of a run, by name: which are computed, and which way each is better.

    The one place that answers "is lower better?" and "what is validated on?".
    """

    def __init__(self, specs: Iterable[MetricSpec]) -> None:
        self.specs: tuple[MetricSpec, ...] = tuple(specs)
        self._by_name = {spec.name: spec for spec in self.specs}

    def for_tasks(self, tasks: Iterable[str]) -> MetricTable:
        wanted = set(tasks)
        return MetricTable(s for s in self.specs if s.task in wanted)

    def spec(self, metric: str) -> MetricSpec:
        """The spec of a reported name (``"ndcg@10"`` -> ``ndcg``)."""
        base = metric.split("@", 1)[0]
        spec = self._by_name.get(base)
        if spec is None:
            raise ConfigError(
                did_you_mean(base, list(self._by_name), what="metric")
                + " Metrics are registered by plugins through m6bench_register_metrics.")
        return spec

    def direction(self, metric: str) -> str:
        """``"max"`` or ``"min"`` for a reported metric name."""
        return self.spec(metric).direction

    def lower_is_better(self, metric: str) -> bool:
        return not self.spec(metric).higher_is_better

    def directions(self, metrics: Iterable[str]) -> dict[str, str]:
        """``{name: "max" | "min"}`` for every reported name of ``metrics`` (for records)."""
        return {name: self.direction(name) for name in dict.fromkeys(metrics)}

    def validation_metric(self, benchmark: BenchmarkSpec, tasks: Sequence[str]) -> str:
        """What training and sweeps select on: the benchmark's ``valid_metric`` when the
        run has the ranking task, else ``rmse``."""
        return benchmark.valid_metric if "ranking" in tasks else RATING_VALIDATION_METRIC

    def names(self, ks: Sequence[int]) -> list[str]:
        return [name for spec in self.specs for name in spec.names(ks)]


def record_directions(table: MetricTable, metrics: Mapping[str, Mapping[str, Any]]
                      ) -> dict[str, str]:
    """The direction of every metric a record holds (``metrics``: part -> name -> value)."""
    return table.directions(name for part in metrics.values() for name in part)
