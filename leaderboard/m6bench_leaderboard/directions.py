"""Which way each metric is better, as the records say (``metric_directions``).

The harness writes the direction of every metric a record holds, taken from the metric's
registered spec, so a plugin's metric ranks the right way without this package knowing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from m6bench_leaderboard.schema import METRIC_DIRECTIONS

# LEGACY FALLBACK, for records written before records carried ``metric_directions``
# (nothing newer reads it): the metrics the harness then reported as lower-is-better.
LEGACY_LOWER_IS_BETTER = ("rmse", "mae", "logloss", "gini")


def legacy_direction(metric: str) -> str:
    """The direction of a metric of a record without ``metric_directions`` (legacy only)."""
    return "min" if metric.split("@", 1)[0].lower() in LEGACY_LOWER_IS_BETTER else "max"


def record_directions(record: Mapping[str, Any]) -> dict[str, str]:
    """``{metric: "max" | "min"}`` of one record: its own ``metric_directions``, or for a
    record written before that key existed, the legacy list applied to its metrics."""
    directions = record.get("metric_directions")
    if isinstance(directions, Mapping):
        return {str(k): v for k, v in directions.items() if v in METRIC_DIRECTIONS}
    metrics = record.get("metrics") or {}
    names = {name for part in metrics.values() if isinstance(part, Mapping) for name in part}
    return {name: legacy_direction(name) for name in sorted(names)}


def merged_directions(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The directions of every metric the records hold; a later record's word wins."""
    merged: dict[str, str] = {}
    for record in records:
        merged.update(record_directions(record))
    return merged


def lower_is_better(metric: str, directions: Mapping[str, str]) -> bool:
    """Whether lower values of ``metric`` are better, by the records' ``directions``
    (a metric no record names a direction for is taken as higher-is-better)."""
    return directions.get(metric) == "min"
