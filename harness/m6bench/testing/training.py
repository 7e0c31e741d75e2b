"""Building, training and scoring a model exactly as the harness does, one step at a time.

Every step names the rule it checks, so the same step reports ``model-builds`` on the first
training and ``determinism`` or ``search-space`` when a later rule trains again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from m6bench import ModelSpec, PreparedBenchmark, Recommender, seed_everything
from m6bench.testing.bench import fresh_train, sample_users
from m6bench.testing.cases import Trained
from m6bench.testing.report import RuleBroken, describe, short


def build_model(spec: ModelSpec, config: Mapping[str, Any], bench: PreparedBenchmark,
                seed: int, device: torch.device, *, rule: str, what: str = "") -> Trained:
    """A model built under ``seed`` on a freshly seeded TrainSet and moved to ``device``."""
    train = fresh_train(bench, seed)
    seed_everything(seed)
    context = _context(config, what)
    try:
        model = spec.build(train, config)
    except Exception as exc:
        raise RuleBroken(rule, f"build(train, config){context} raised {describe(exc)}",
                         "make build() succeed for every config the defaults and the "
                         "search space can produce; validate values with a clear "
                         "error.") from exc
    if not isinstance(model, Recommender):
        raise RuleBroken(rule, f"build(train, config) returned {short(model)}",
                         "return an instance of a subclass of m6bench.Recommender.")
    try:
        model = model.to(device)
    except Exception as exc:
        raise RuleBroken("device-moves", f"model.to({str(device)!r}) raised {describe(exc)}",
                         "keep state in parameters and buffers of ordinary tensors.") from exc
    return Trained(model, train)


def fit_one_epoch(trained: Trained, config: Mapping[str, Any], *, rule: str,
                  what: str = "") -> None:
    context = _context(config, what)
    trained.model.train()
    try:
        losses = trained.model.fit_epoch(trained.train, 1)
    except Exception as exc:
        raise RuleBroken(rule, f"fit_epoch(train, 1){context} raised {describe(exc)}",
                         "make one epoch work on a tiny benchmark (60 users, 40 items): "
                         "check batch sizes and dimensions against train.n_users and "
                         "train.n_items.") from exc
    _check_losses(losses, rule, context)


def score_batches(trained: Trained, *, rule: str) -> torch.Tensor:
    """Scores of the kit's user batch, which are kept; a batch of one is checked too."""
    train = trained.train
    users = sample_users(train.n_users, train.device)
    trained.scores = score(trained.model, users, train.n_items, rule=rule)
    # A batch of one catches squeezes that drop the batch dimension.
    score(trained.model, users[:1], train.n_items, rule=rule)
    return trained.scores


def train_and_score(spec: ModelSpec, config: Mapping[str, Any], bench: PreparedBenchmark,
                    seed: int, device: torch.device, *, rule: str,
                    what: str = "") -> Trained:
    """Build, train one epoch and score, every failure reported as ``rule``."""
    trained = build_model(spec, config, bench, seed, device, rule=rule, what=what)
    fit_one_epoch(trained, config, rule=rule, what=what)
    score_batches(trained, rule=rule)
    return trained


def score(model: Recommender, users: torch.Tensor, n_items: int, *, rule: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            scores = model.eval().score(users)
    except Exception as exc:
        raise RuleBroken(rule, f"score(users) for {users.numel()} users raised "
                         f"{describe(exc)}",
                         "accept an int64 (B,) tensor of user indices on the model's device "
                         "and return (B, n_items) scores.") from exc
    expected = (users.numel(), n_items)
    if not isinstance(scores, torch.Tensor):
        raise RuleBroken(rule, f"score(users) returned {short(scores)}, not a tensor",
                         "return a torch.Tensor of shape (len(users), n_items).")
    if tuple(scores.shape) != expected:
        raise RuleBroken(rule, f"score(users) for {users.numel()} users returned shape "
                         f"{tuple(scores.shape)}, expected {expected} (one column per item "
                         f"of the TrainSet)",
                         "return one score per item for every user in the batch: shape "
                         "(len(users), train.n_items), without squeezing a batch of one.")
    if not scores.is_floating_point():
        raise RuleBroken(rule, f"score(users) returned dtype {scores.dtype}",
                         "return floating scores (float32), e.g. scores.float().")
    if scores.device.type != users.device.type:
        raise RuleBroken(rule, f"score(users) returned scores on {scores.device} for users "
                         f"on {users.device}",
                         "keep state in parameters/buffers so .to(device) moves it, and "
                         "create new tensors on users.device.")
    if not bool(torch.isfinite(scores).all()):
        raise RuleBroken(rule, "score(users) returned NaN or infinite scores",
                         "return finite scores for every item; the evaluator masks training "
                         "items itself, so do not mask them with -inf.")
    return scores.detach().clone()


def _context(config: Mapping[str, Any], what: str) -> str:
    return f" (config {short(dict(config))})" if what else ""


def _check_losses(losses: Any, rule: str, context: str) -> None:
    if not isinstance(losses, Mapping):
        raise RuleBroken(rule, f"fit_epoch returned {short(losses)}{context}, not a mapping",
                         "return a dict of loss names to floats (an empty dict for "
                         "closed-form models).")
    for key, value in losses.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RuleBroken(rule, f"fit_epoch's loss {key!r} is {short(value)}{context}",
                             "return plain numbers, e.g. float(loss).") from None
        if not math.isfinite(number):
            raise RuleBroken(rule, f"fit_epoch's loss {key!r} is {number}{context}",
                             "keep training finite on the tiny benchmark: lower the "
                             "learning rate or the search space's upper bounds, clamp "
                             "logs and divisions.")

