"""The training loop: epochs, early stopping on the benchmark's validation metric."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from m6bench.data.prepared import PreparedBenchmark
from m6bench.errors import M6BenchError
from m6bench.evaluation.evaluator import Evaluation, evaluate_part, metric_table
from m6bench.training.recommender import Recommender

# A training loss is taken as diverged when it is NaN or infinite, when its magnitude passes
# LOSS_LIMIT (the built-in models report per-example means, from ~1e-3 to ~1e3; a learning
# rate of 1e9 gives 1e19 from the first epoch on), or when a later epoch's passes
# LOSS_GROWTH times the first epoch's (at least LOSS_FLOOR, so a regulariser starting near
# zero may grow).
LOSS_LIMIT = 1e10


LOSS_GROWTH = 1e3


LOSS_FLOOR = 1.0


class TrainingDiverged(M6BenchError):
    """The training loss became NaN or infinite, or exploded (see :func:`check_losses`)."""


def check_losses(losses: Mapping[str, float], epoch: int, first: dict[str, float]) -> None:
    """Raise :class:`TrainingDiverged` when an epoch's losses show the training diverged.

    ``first`` holds each loss's first reported value (filled here as losses appear), so a
    model that reports a loss only on some epochs, or none (EASE, ItemKNN), is judged on
    what it reports.
    """
    for name, value in losses.items():
        value = float(value)
        if not math.isfinite(value):
            reason = f"became {value} at epoch {epoch}"
        elif abs(value) > LOSS_LIMIT:
            reason = (f"is {value:.3g} at epoch {epoch}, over the {LOSS_LIMIT:.0e} that no "
                      "healthy training loss reaches")
        elif name in first and abs(value) > LOSS_GROWTH * max(abs(first[name]), LOSS_FLOOR):
            reason = (f"is {value:.3g} at epoch {epoch}, over {LOSS_GROWTH:.0f}x the first "
                      f"epoch's {first[name]:.3g}")
        else:
            first.setdefault(name, value)
            continue
        raise TrainingDiverged(
            f"The {name} loss {reason}: the model diverged. Lower the learning rate "
            "(--set lr=...) or raise regularisation"
        )


@dataclass
class TrainOutcome:
    epochs: int = 0
    best_epoch: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    evaluate_seconds: float = 0.0
    valid: Evaluation | None = None
    test: Evaluation | None = None


def train_model(
    model: Recommender,
    bench: PreparedBenchmark,
    config: Mapping[str, Any],
    *,
    tasks: tuple[str, ...],
    on_epoch_end: Callable[[int, Mapping[str, float]], None] = lambda epoch, metrics: None,
    progress: Any = None,
    outcome: TrainOutcome | None = None,
) -> TrainOutcome:
    """Fit ``model`` (with early stopping when it is iterative), then evaluate valid and test.

    The validation metric and its direction come from the benchmark's metric table
    (:meth:`MetricTable.validation_metric`).  The weights of the best validation
    epoch are restored before the final evaluation.  ``outcome`` is filled in place, so a
    caller still sees the epochs and curve when training raises.
    """
    outcome = outcome if outcome is not None else TrainOutcome()
    metric = metric_table(bench).validation_metric(bench.spec, tasks)
    lower_is_better = metric_table(bench).lower_is_better(metric)
    batch_size = int(config["eval_batch_size"])
    max_epochs = int(config["epochs"]) if model.iterative else 1
    patience = int(config["patience"])
    eval_every = max(1, int(config["eval_every"]))

    best_value = math.inf if lower_is_better else -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    first_losses: dict[str, float] = {}
    task = progress.add_task("train", total=max_epochs) if progress is not None else None
    with progress if progress is not None else nullcontext():
        for epoch in range(1, max_epochs + 1):
            started = time.perf_counter()
            model.train()
            losses = dict(model.fit_epoch(bench.train, epoch))
            outcome.train_seconds += time.perf_counter() - started
            outcome.epochs = epoch
            losses = {k: float(v) for k, v in losses.items()}
            row: dict[str, Any] = {"epoch": epoch, **losses}
            try:
                check_losses(losses, epoch, first_losses)
            except TrainingDiverged:
                outcome.curve.append(row)  # the record keeps the losses that diverged
                raise
            evaluate_now = model.iterative and (epoch % eval_every == 0 or epoch == max_epochs)
            if evaluate_now:
                started = time.perf_counter()
                valid = evaluate_part(model, bench, "valid", tasks=tasks, batch_size=batch_size)
                outcome.evaluate_seconds += time.perf_counter() - started
                value = valid.metrics.get(metric, math.nan)
                row[f"valid/{metric}"] = value
                improved = (value < best_value) if lower_is_better else (value > best_value)
                if improved:
                    best_value, outcome.best_epoch, stale = value, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
            outcome.curve.append(row)
            on_epoch_end(epoch, {k: v for k, v in row.items() if k != "epoch"})
            if progress is not None:
                progress.update(task, advance=1, description=_describe(row, metric))
            if evaluate_now and stale >= patience:
                break
        if progress is not None:
            progress.update(task, total=outcome.epochs, completed=outcome.epochs)

        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            outcome.best_epoch = outcome.epochs
        started = time.perf_counter()
        evaluating = progress.add_task("evaluate", total=2) if progress is not None else None
        outcome.valid = evaluate_part(model, bench, "valid", tasks=tasks, batch_size=batch_size)
        if progress is not None:
            progress.update(evaluating, advance=1, description="evaluate test")
        outcome.test = evaluate_part(model, bench, "test", tasks=tasks, batch_size=batch_size)
        if progress is not None:
            progress.update(evaluating, advance=1)
        outcome.evaluate_seconds += time.perf_counter() - started
    return outcome


def _describe(row: Mapping[str, Any], metric: str) -> str:
    parts = [f"epoch {row['epoch']}"]
    parts += [f"{k} {v:.4f}" for k, v in row.items() if k != "epoch" and isinstance(v, float)]
    return " | ".join(parts)
