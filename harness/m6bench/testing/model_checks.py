"""The checks of a registered model, one function per rule (``spec-fields`` is in specs.py).

The first ones (``model-builds`` to ``evaluates``) each need the one before and share one
training, kept in the case; the later ones train again as their rule requires.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from m6bench import M6BenchError, evaluate_part, resolve_config, seed_everything
from m6bench.testing.bench import fresh_train, sample_users
from m6bench.testing.cases import ModelCase, Trained
from m6bench.testing.report import NotChecked, RuleBroken, describe, short
from m6bench.testing.tensors import (
    close,
    equal,
    max_diff,
    other_device,
    require_no_plain_tensors,
    round_trip,
)
from m6bench.testing.training import (
    build_model,
    fit_one_epoch,
    score,
    score_batches,
    train_and_score,
)


def _first(case: ModelCase) -> Trained:
    assert case.first is not None, "the model-builds check runs first"
    return case.first


def check_builds(case: ModelCase) -> str:
    kit = case.kit
    case.bench, case.variant = kit.benchmarks(case.spec)
    case.first = build_model(case.spec, case.config, case.bench, kit.seed, kit.device,
                             rule="model-builds")
    return type(case.first.model).__name__


def check_fit_epoch(case: ModelCase) -> None:
    fit_one_epoch(_first(case), case.config, rule="fit-epoch")


def check_score_shape(case: ModelCase) -> str:
    return f"scores {tuple(score_batches(_first(case), rule='score-shape').shape)}"


def check_predict_shape(case: ModelCase) -> None:
    if not {"rating", "binary"} & set(case.spec.tasks):
        raise NotChecked("a ranking-only model; the evaluator calls only score()")
    assert case.bench is not None
    users, items = case.bench.test.users[:7], case.bench.test.items[:7]
    try:
        with torch.no_grad():
            out = _first(case).model.eval().predict(users, items)
    except Exception as exc:
        raise RuleBroken("predict-shape", f"predict(users, items) raised {describe(exc)}",
                         "accept two int64 (N,) tensors and return (N,) floats.") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (users.numel(),):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else short(out)
        raise RuleBroken("predict-shape", f"predict() on {users.numel()} pairs returned "
                         f"{shape}, expected ({users.numel()},)",
                         "return one prediction per (user, item) pair: shape (N,).")
    if not out.is_floating_point() or not bool(torch.isfinite(out).all()):
        raise RuleBroken("predict-shape", "predict() returned non-finite or non-float "
                         "values", "return finite float predictions.")


def check_evaluates(case: ModelCase) -> None:
    bench, first = case.bench, _first(case)
    assert bench is not None
    tasks = tuple(t for t in bench.spec.tasks if t in case.spec.tasks) or ("ranking",)
    try:
        metrics = evaluate_part(first.model, bench, "test", tasks=tasks, batch_size=16)
    except Exception as exc:
        raise RuleBroken("evaluates", f"the evaluator raised {describe(exc)}",
                         "score(users) must accept any batch of user indices and return "
                         "a fresh (B, n_items) float tensor.") from exc
    bad = [k for k, v in metrics.metrics.items()
           if isinstance(v, float) and not math.isfinite(v) and not k.startswith("auc")]
    if bad:
        raise RuleBroken("evaluates", f"the evaluator produced non-finite {bad}",
                         "keep scores and predictions finite.")
    with torch.no_grad():
        again = first.model.eval().score(sample_users(bench.train.n_users, case.kit.device))
    if not equal(again, first.scores):
        raise RuleBroken(
            "evaluates", "scores changed after the evaluator ran: score() changes the "
            "model (a counter, a cache, an in-place update), so metrics would depend on "
            "the order and batching of evaluation",
            "make score() a pure function of the parameters and buffers; update state "
            "only in fit_epoch.")


def check_determinism(case: ModelCase) -> str:
    kit, first = case.kit, _first(case)
    assert case.bench is not None and first.scores is not None
    second = train_and_score(case.spec, case.config, case.bench, kit.seed, kit.device,
                             rule="determinism")
    if not close(first.scores, second.scores, kit.device):
        raise RuleBroken(
            "determinism", f"two builds under seed {kit.seed} scored differently (max "
            f"difference {max_diff(first.scores, second.scores):.3g})",
            "draw every random number from train.generator or torch's global generator "
            "(both seeded by the run), never from time, os.urandom, Python's hash() or an "
            "unseeded numpy generator.")
    return f"seed {kit.seed}"


def check_no_leak(case: ModelCase) -> str:
    kit, first = case.kit, _first(case)
    assert case.variant is not None and first.scores is not None
    other = train_and_score(case.spec, case.config, case.variant, kit.seed, kit.device,
                            rule="no-leak")
    if not close(first.scores, other.scores, kit.device):
        raise RuleBroken(
            "no-leak", "two benchmarks with identical training interactions but different "
            "validation/test interactions gave different scores (max difference "
            f"{max_diff(first.scores, other.scores):.3g}), so the model sees held-out "
            "interactions",
            "build and train only from the TrainSet passed to build() and fit_epoch(); "
            "never reload the dataset, read its files or keep data in module globals.")
    return "held-out interactions changed, scores did not"


def check_device_moves(case: ModelCase) -> str:
    kit, first = case.kit, _first(case)
    assert case.bench is not None and first.scores is not None
    require_no_plain_tensors(first.model)
    other = other_device(kit.device)
    if other is None:
        return "every tensor is a parameter or buffer; no second device to move to here"
    # The trained model itself is moved there and back: a deep copy could fail on
    # whatever a model holds (generators, the catalog) for reasons unrelated to devices.
    users = sample_users(case.bench.train.n_users, other)
    try:
        with torch.no_grad():
            scores = first.model.to(other).eval().score(users)
    except Exception as exc:
        raise RuleBroken("device-moves", f"after model.to({str(other)!r}), score() raised "
                         f"{describe(exc)}",
                         "keep every tensor score() reads in a parameter or buffer, and "
                         "create new tensors on users.device.") from exc
    finally:
        first.model.to(kit.device)
    if not isinstance(scores, torch.Tensor) or scores.device.type != other.type:
        raise RuleBroken("device-moves", f"after model.to({str(other)!r}), score() "
                         f"returned scores on {getattr(scores, 'device', '?')}",
                         "create new tensors on users.device (or a buffer's device).")
    back = scores.to(kit.device)
    if not close(back, first.scores, other, tolerance=1e-3):
        raise RuleBroken("device-moves", f"scores on {other} differ from scores on "
                         f"{kit.device} by {max_diff(back, first.scores):.3g}",
                         "compute the same function on every device.")
    return f"moved to {other} and scored"


def check_save_load(case: ModelCase) -> str:
    kit, first, bench = case.kit, _first(case), case.bench
    assert bench is not None and first.scores is not None
    state = round_trip(first.model.state_dict())
    train = fresh_train(bench, kit.seed + 1)
    seed_everything(kit.seed + 1)
    try:
        fresh = case.spec.build(train, case.config).to(kit.device)
        fresh.load_state_dict(state)
    except Exception as exc:
        raise RuleBroken("save-load", "loading the trained state_dict into a freshly built "
                         f"model raised {describe(exc)}",
                         "give every parameter and buffer its final shape in __init__ "
                         "(fill it in fit_epoch with .copy_()), so a saved model loads "
                         "into a new one.") from exc
    scores = score(fresh, sample_users(bench.train.n_users, kit.device), bench.train.n_items,
                   rule="save-load")
    if not close(scores, first.scores, kit.device):
        raise RuleBroken(
            "save-load", "after loading the trained state_dict into a model built under "
            f"another seed, scores differ by {max_diff(scores, first.scores):.3g}",
            "keep everything score() reads in parameters or buffers: anything else is "
            "lost when the harness restores the best epoch or a model is saved.")
    return f"{len(state)} tensor{'s' if len(state) != 1 else ''} round-tripped"


def check_search_space(case: ModelCase) -> str:
    if case.spec.search_space is None:
        raise NotChecked("the model has no search_space (sweeps will tune nothing)")
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "trial finished" lines
    try:
        study = optuna.create_study(
            sampler=optuna.samplers.RandomSampler(seed=case.kit.seed))
        for number in range(case.kit.samples):
            trial = study.ask()
            _train_sample(case, number, trial)
            study.tell(trial, 0.0)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return f"{case.kit.samples} samples built and trained"


def _train_sample(case: ModelCase, number: int, trial: Any) -> None:
    spec, kit = case.spec, case.kit
    assert spec.search_space is not None and case.bench is not None
    try:
        sampled = spec.search_space(trial)
    except Exception as exc:
        raise RuleBroken("search-space", f"search_space(trial) raised {describe(exc)}",
                         "suggest values with trial.suggest_* and return a dict.") from exc
    if not isinstance(sampled, Mapping):
        raise RuleBroken("search-space", f"search_space(trial) returned {short(sampled)}, "
                         "not a dict", "return a dict of config keys to sampled values.")
    try:
        config = resolve_config(spec.defaults, overrides={**sampled, **spec.kit_overrides},
                                model_name=case.name, choices=spec.choices)
    except M6BenchError as exc:
        raise RuleBroken(
            "search-space", f"sample {number + 1} {short(dict(sampled))} is not a "
            f"valid config: {exc}",
            "sample only keys listed in the model's defaults, with values of the defaults' "
            "types; for a key with choices, suggest among them "
            "(trial.suggest_categorical(key, choices[key])).") from exc
    train_and_score(spec, config, case.bench, kit.seed, kit.device, rule="search-space",
                    what="sample")
