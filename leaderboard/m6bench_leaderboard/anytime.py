"""Anytime curves: each model's best validation score so far against the tuning budget.

A board gives every model the same number of trials, but a trial of a linear model costs
a fraction of a second and one of a deep model minutes.  The curves let a reader see who
wins at which budget: per model, the best validation value among the trials finished so
far, against the number of trials and against the seconds those trials took (their
``timings.total``, failed and pruned trials included: they spent the time too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def anytime_curve(trials: Sequence[Mapping[str, Any]], *,
                  maximize: bool) -> dict[str, list[tuple[float, float]]]:
    """One sweep's curve from its trial history (``_sweep_history`` entries: trial,
    status, value, seconds), in trial order.

    ``by_trials`` holds (trials finished, best so far) and ``by_seconds`` (seconds spent,
    best so far), one point per trial from the first ok one on; a pruned trial's value is
    an intermediate score, so only ok trials can be the best.
    """
    ordered = sorted(enumerate(trials), key=lambda pair: (
        pair[1].get("trial") if pair[1].get("trial") is not None else pair[0], pair[0]))
    best: float | None = None
    spent = 0.0
    by_trials: list[tuple[float, float]] = []
    by_seconds: list[tuple[float, float]] = []
    for count, (_, trial) in enumerate(ordered, start=1):
        spent += float(trial.get("seconds") or 0.0)
        value = trial.get("value")
        if trial.get("status") == "ok" and value is not None:
            value = float(value)
            if best is None or (value > best if maximize else value < best):
                best = value
        if best is not None:
            by_trials.append((float(count), best))
            by_seconds.append((spent, best))
    return {"by_trials": by_trials, "by_seconds": by_seconds}


def benchmark_curves(bench: Mapping[str, Any],
                     sweeps: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every ranked row's curve on one benchmark page, by model label (plugin/model when
    two plugins share a model name)."""
    names = [row["model"] for row in bench["rows"]]
    curves: dict[str, dict[str, Any]] = {}
    for row in bench["rows"]:
        sweep = sweeps.get(str(row.get("sweep_id")))
        if not sweep or not sweep.get("trials"):
            continue
        label = row["model"] if names.count(row["model"]) == 1 \
            else f"{row['plugin']}/{row['model']}"
        curves[label] = anytime_curve(sweep["trials"],
                                      maximize=sweep.get("direction") != "minimize")
    return curves


def tuned_metric(bench: Mapping[str, Any], sweeps: Mapping[str, Mapping[str, Any]]) -> str:
    """The validation metric a leaderboard benchmark's sweeps tuned on: what its curves
    show (``bench`` and ``sweeps`` as :func:`build_leaderboard` returns them)."""
    for row in bench["rows"]:
        sweep = sweeps.get(str(row.get("sweep_id")))
        if sweep:
            return str(sweep["metric"])
    return str((bench.get("spec") or {}).get("valid_metric") or "metric")
