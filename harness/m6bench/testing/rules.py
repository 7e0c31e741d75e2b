"""Every rule the kit checks, as a :class:`Rule`: its id, what a conforming plugin does, and
the check of each kind of subject it applies to.

The ids appear in every failure message; the guide's rule table is generated from
:data:`RULES` (``python -m m6bench.reference --write``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from m6bench.testing import component_checks, model_checks, package_checks
from m6bench.testing.specs import check_component_spec, check_model_spec

# A check takes the subject's case and returns a detail for the finding (or None); it
# raises RuleBroken to fail and NotChecked where the rule does not apply.
Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class Rule:
    """One conformance rule and its checks, by the kind of subject they apply to."""

    id: str
    text: str
    package: Check | None = None
    hook: Check | None = None
    component: Check | None = None
    model: Check | None = None
    # Another rule of the same subject that must hold first, and why.
    needs: str = ""
    needs_why: str = ""

    def check_of(self, kind: str) -> Check:
        check = getattr(self, kind)
        if check is None:
            raise LookupError(f"rule {self.id!r} has no check of a {kind}")
        return check


INSTALLED = Rule(
    "installed",
    "The plugin is installed: an entry point in the `m6bench` group (or a module passed to "
    "`load_catalog`) names it.",
    package=package_checks.check_installed)
IMPORTS = Rule(
    "imports", "The plugin's module imports without error.",
    package=package_checks.check_imports)
HOOK_SIGNATURES = Rule(
    "hook-signatures",
    "Every `m6bench_*` function is a hook the specs define, and its arguments are a subset "
    "of the spec's (pluggy validates them).",
    package=package_checks.check_hook_signatures)
REGISTERS = Rule(
    "registers",
    "The registration hooks run without raising and register specs of the right type "
    "(`ModelSpec`, `ComponentSpec`, ...).",
    package=package_checks.check_registers)
HOOK_RETURNS = Rule(
    "hook-returns",
    "Registration hooks call `register(...)` and return nothing: the host ignores return "
    "values.",
    hook=package_checks.check_hook_returns)
SPEC_FIELDS = Rule(
    "spec-fields",
    "Registered specs are well formed: known tasks, JSON-serialisable defaults that resolve "
    "as a config (each within the model's `choices` where it has them), callables where "
    "callables belong, `build` accepting every default.",
    component=check_component_spec, model=check_model_spec)
COMPONENT_BUILDS = Rule(
    "component-builds",
    "An encoder, fusion or head builds from its `defaults` and returns a `torch.nn.Module`.",
    component=component_checks.check_builds)
COMPONENT_SHAPES = Rule(
    "component-shapes",
    "Probed with its family's conventional input, a component returns the conventional "
    "shape: an id encoder `(B,) -> (B, dim)`, a fusion `(B, d), (B, d) -> (B, ...)`, finite "
    "values throughout.",
    component=component_checks.check_shapes)
MODEL_BUILDS = Rule(
    "model-builds",
    "`ModelSpec.build(train, config)` returns an `m6bench.Recommender` when given the "
    "resolved defaults.",
    model=model_checks.check_builds)
FIT_EPOCH = Rule(
    "fit-epoch",
    "`fit_epoch(train, epoch)` returns a mapping of loss names to finite numbers.",
    model=model_checks.check_fit_epoch)
SCORE_SHAPE = Rule(
    "score-shape",
    "`score(users)` returns finite floating scores of shape `(len(users), n_items)` on the "
    "users' device, for any batch size.",
    model=model_checks.check_score_shape)
PREDICT_SHAPE = Rule(
    "predict-shape",
    "For rating or binary models, `predict(users, items)` returns finite floats of shape "
    "`(N,)`.",
    model=model_checks.check_predict_shape)
EVALUATES = Rule(
    "evaluates",
    "The harness's evaluator runs on the trained model, and scoring has no side effects: "
    "scores are the same before and after an evaluation.",
    model=model_checks.check_evaluates)
DETERMINISM = Rule(
    "determinism",
    "Built and trained twice under the same seed, a model gives identical scores; a "
    "component identical parameters.",
    component=component_checks.check_determinism, model=model_checks.check_determinism)
SEARCH_SPACE = Rule(
    "search-space",
    "Every sampled search-space config resolves against the defaults (within the model's "
    "`choices`), builds and trains one epoch with finite losses.",
    model=model_checks.check_search_space)
DEVICE_MOVES = Rule(
    "device-moves",
    "`.to(device)` reaches every tensor: state is in parameters or buffers, never a plain "
    "tensor attribute; a moved model scores on the new device.",
    component=component_checks.check_device_moves, model=model_checks.check_device_moves)
SAVE_LOAD = Rule(
    "save-load",
    "A trained model's `state_dict`, saved and loaded into a freshly built model (another "
    "seed), reproduces its scores.",
    component=component_checks.check_save_load, model=model_checks.check_save_load)
NO_LEAK = Rule(
    "no-leak",
    "Scores depend only on the training part: two benchmarks with equal training "
    "interactions but different held-out ones give identical scores.",
    model=model_checks.check_no_leak,
    needs="determinism", needs_why="it compares two trainings")

# In the guide's order.
ALL_RULES: tuple[Rule, ...] = (
    INSTALLED, IMPORTS, HOOK_SIGNATURES, REGISTERS, HOOK_RETURNS, SPEC_FIELDS,
    COMPONENT_BUILDS, COMPONENT_SHAPES, MODEL_BUILDS, FIT_EPOCH, SCORE_SHAPE, PREDICT_SHAPE,
    EVALUATES, DETERMINISM, SEARCH_SPACE, DEVICE_MOVES, SAVE_LOAD, NO_LEAK,
)

# Every rule the kit checks: id -> what a conforming plugin does.
RULES: dict[str, str] = {rule.id: rule.text for rule in ALL_RULES}

# The order each kind of subject is checked in.  A chain's rules each need the one before
# (the package loads, then registers; a model builds, then trains, then scores ...); the
# model rules after its chain reuse its training but not one another's results.
PACKAGE_CHAIN = (INSTALLED, IMPORTS, HOOK_SIGNATURES, REGISTERS)
HOOK_CHAIN = (HOOK_RETURNS,)
COMPONENT_CHAIN = (SPEC_FIELDS, COMPONENT_BUILDS, COMPONENT_SHAPES, DETERMINISM,
                   DEVICE_MOVES, SAVE_LOAD)
MODEL_CHAIN = (SPEC_FIELDS, MODEL_BUILDS, FIT_EPOCH, SCORE_SHAPE, PREDICT_SHAPE, EVALUATES)
MODEL_AFTER_CHAIN = (DETERMINISM, NO_LEAK, DEVICE_MOVES, SAVE_LOAD, SEARCH_SPACE)
