"""The plugin conformance kit: ``check_plugin("NAME")`` checks everything a plugin registers.

Like scikit-learn's ``check_estimator`` or Optuna's sampler test suite, the kit turns the
harness's unwritten assumptions about plugins into named rules and checks each one on a
tiny synthetic benchmark (60 users x 40 items, seconds on a CPU), so a plugin author learns
about a broken contract from a test, not from a leaderboard row that is silently wrong.

For every model the plugin registers, the kit builds it from its defaults, trains one
epoch, and checks output shapes, determinism under a seed, that every search-space sample
builds and trains, that ``.to(device)`` reaches every tensor, that a trained model survives a
``state_dict`` save/load round trip, and that its scores do not depend on held-out
(validation/test) interactions.  For every encoder, fusion and head it checks that the
component builds from its defaults, is deterministic, moves with ``.to()`` and, where the
family has a conventional input, produces the conventional shape.

Use it from a plugin's own tests::

    from m6bench.testing import assert_plugin_conforms

    def test_plugin_conforms():
        assert_plugin_conforms("my-plugin")

``check_plugin`` raises :class:`ConformanceError` listing every broken rule, each as
``plugin X, model Y: rule Z broken: what happened. Fix: what to change``.  The rules are
listed in :data:`RULES` (and in ``docs/writing-a-plugin.md``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import math
import os
import random
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m6bench.data.dataset import Dataset, content_fingerprint
from m6bench.data.prepared import PreparedBenchmark, to_device
from m6bench.data.specs import TASKS, BenchmarkSpec, LoadContext
from m6bench.errors import M6BenchError, PluginError, did_you_mean
from m6bench.evaluation.evaluator import evaluate_part
from m6bench.protocols.cuts import deduplicate
from m6bench.registry.catalog import REGISTRATION_HOOKS, Catalog, PluginFailureWarning, load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.run import seed_everything
from m6bench.training.recommender import Recommender
from m6bench.training.specs import ComponentSpec, ModelSpec

__all__ = [
    "KIT_BENCHMARK",
    "RULES",
    "ConformanceError",
    "ConformanceReport",
    "Finding",
    "assert_plugin_conforms",
    "check_plugin",
    "real_data_folder",
]

# The tiny benchmark every model is checked on: the embedded synthetic generator, shrunk so a
# whole plugin is checked in seconds.  Its ratings make the rating task checkable too.
KIT_BENCHMARK = BenchmarkSpec(
    name="conformance-kit",
    dataset="synthetic",
    protocol="random",
    dataset_options={"n_users": 60, "n_items": 40, "density": 0.2, "seed": 7},
    tasks=("ranking", "rating"),
    ks=(5, 10),
    description="The conformance kit's tiny benchmark.",
)

# Every rule the kit checks: id -> what a conforming plugin does.  The ids appear in every
# failure message; the guide's rule table is generated from this dict.
RULES: dict[str, str] = {
    "installed": "The plugin is installed: an entry point in the `m6bench` group (or a module "
                 "passed to `load_catalog`) names it.",
    "imports": "The plugin's module imports without error.",
    "hook-signatures": "Every `m6bench_*` function is a hook the specs define, and its "
                       "arguments are a subset of the spec's (pluggy validates them).",
    "registers": "The registration hooks run without raising and register specs of the "
                 "right type (`ModelSpec`, `ComponentSpec`, ...).",
    "hook-returns": "Registration hooks call `register(...)` and return nothing: the host "
                    "ignores return values.",
    "spec-fields": "Registered specs are well formed: known tasks, JSON-serialisable "
                   "defaults that resolve as a config, callables where callables belong, "
                   "`build` accepting every default.",
    "component-builds": "An encoder, fusion or head builds from its `defaults` and returns "
                        "a `torch.nn.Module`.",
    "component-shapes": "Probed with its family's conventional input, a component returns "
                        "the conventional shape: an id encoder `(B,) -> (B, dim)`, a fusion "
                        "`(B, d), (B, d) -> (B, ...)`, finite values throughout.",
    "model-builds": "`ModelSpec.build(train, config)` returns an `m6bench.Recommender` "
                    "when given the resolved defaults.",
    "fit-epoch": "`fit_epoch(train, epoch)` returns a mapping of loss names to finite "
                 "numbers.",
    "score-shape": "`score(users)` returns finite floating scores of shape "
                   "`(len(users), n_items)` on the users' device, for any batch size.",
    "predict-shape": "For rating or binary models, `predict(users, items)` returns finite "
                     "floats of shape `(N,)`.",
    "evaluates": "The harness's evaluator runs on the trained model, and scoring has no "
                 "side effects: scores are the same before and after an evaluation.",
    "determinism": "Built and trained twice under the same seed, a model gives identical "
                   "scores; a component identical parameters.",
    "search-space": "Every sampled search-space config resolves against the defaults, builds "
                    "and trains one epoch with finite losses.",
    "device-moves": "`.to(device)` reaches every tensor: state is in parameters or buffers, "
                    "never a plain tensor attribute; a moved model scores on the new device.",
    "save-load": "A trained model's `state_dict`, saved and loaded into a freshly built model "
                 "(another seed), reproduces its scores.",
    "no-leak": "Scores depend only on the training part: two benchmarks with equal training "
               "interactions but different held-out ones give identical scores.",
}

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class Finding:
    """The outcome of one rule for one subject (a model, a component, a hook or the package)."""

    plugin: str
    subject: str
    rule: str
    status: str
    detail: str = ""
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def message(self) -> str:
        """``plugin X, model Y: rule Z broken: what happened. Fix: ...`` (or a pass/skip line)."""
        head = f"plugin {self.plugin!r}, {self.subject}: rule {self.rule!r}"
        if self.status == FAIL:
            return f"{head} broken: {_sentence(self.detail)} Fix: {_sentence(self.fix)}"
        if self.status == SKIP:
            return f"{head} not checked: {_sentence(self.detail)}"
        return f"{head} holds" + (f" ({self.detail})" if self.detail else "")


@dataclass
class ConformanceReport:
    """Every rule checked for one plugin, passed, failed or skipped (with the reason)."""

    plugin: str
    distribution: str
    version: str
    device: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.failed]

    @property
    def ok(self) -> bool:
        return not self.failures

    def rules(self, status: str = PASS) -> set[tuple[str, str]]:
        """``(subject, rule)`` pairs with ``status``, for tests that ask what was checked."""
        return {(f.subject, f.rule) for f in self.findings if f.status == status}

    def failure_text(self) -> str:
        n = len(self.failures)
        lines = [f"{n} conformance rule{'s' if n != 1 else ''} broken by plugin "
                 f"{self.plugin!r} (distribution {self.distribution} {self.version}, device "
                 f"{self.device}):"]
        lines += [f"  - {f.message()}" for f in self.failures]
        return "\n".join(lines)

    def summary(self) -> str:
        counts = {s: sum(f.status == s for f in self.findings) for s in (PASS, FAIL, SKIP)}
        lines = [f"plugin {self.plugin!r} ({self.distribution} {self.version}) on "
                 f"{self.device}: {counts[PASS]} passed, {counts[FAIL]} failed, "
                 f"{counts[SKIP]} not checked"]
        lines += [f"  [{f.status}] {f.message()}" for f in self.findings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


class ConformanceError(M6BenchError):
    """A plugin broke one or more conformance rules; :attr:`report` has every finding."""

    def __init__(self, report: ConformanceReport) -> None:
        super().__init__(report.failure_text())
        self.report = report


# =============================================================================== entry points
def check_plugin(
    name: str,
    *,
    catalog: Catalog | None = None,
    device: str | torch.device = "cpu",
    models: Sequence[str] | None = None,
    seed: int = 0,
    samples: int = 3,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Check every model and component plugin ``name`` registers against :data:`RULES`.

    :param name: the plugin's name (its entry-point name, as ``m6bench plugins`` shows it).
    :param catalog: the catalog to look it up in; by default every installed plugin is
        loaded, exactly as ``m6bench run`` would.
    :param device: where models are built and trained; the ``device-moves`` rule also moves
        them to a second device when one is available (CUDA next to the CPU).
    :param models: check only these models of the plugin (default: all of them).
    :param seed: the seed of every build; ``save-load`` also builds under ``seed + 1``.
    :param samples: how many search-space configs to sample and train per model.
    :param raise_on_failure: raise :class:`ConformanceError` when any rule is broken.
    :return: the report of every rule checked.
    """
    if catalog is None:
        with warnings.catch_warnings():
            # failures are findings here, not warnings
            warnings.simplefilter("ignore", PluginFailureWarning)
            catalog = load_catalog()
    with _preserved_random_state():
        report = _Checker(catalog, name, torch.device(device), seed=seed, samples=samples,
                          only_models=models).run()
    if raise_on_failure and report.failures:
        raise ConformanceError(report)
    return report


def assert_plugin_conforms(name: str, **options: Any) -> ConformanceReport:
    """:func:`check_plugin` for pytest: a broken rule fails the test with the kit's message
    alone (no traceback into the kit), so the output says what to fix and nothing else."""
    report = check_plugin(name, raise_on_failure=False, **options)
    if report.failures:
        import pytest

        pytest.fail(report.failure_text(), pytrace=False)
    return report


# =============================================================================== the checker
class _RuleBroken(Exception):
    """Raised inside a check to record a failure and stop checking that subject."""

    def __init__(self, rule: str, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.rule, self.detail, self.fix = rule, detail, fix


@dataclass
class _Trained:
    model: Recommender
    scores: torch.Tensor


class _Checker:
    def __init__(self, catalog: Catalog, plugin: str, device: torch.device, *, seed: int,
                 samples: int, only_models: Sequence[str] | None) -> None:
        self.catalog = catalog
        self.plugin = plugin
        self.device = device
        self.seed = seed
        self.samples = samples
        self.only_models = only_models
        self.report = ConformanceReport(plugin, "unknown", "unknown", str(device))
        self._benches: dict[str, tuple[PreparedBenchmark, PreparedBenchmark]] = {}

    # ------------------------------------------------------------------ recording
    def record(self, subject: str, rule: str, status: str, detail: str = "",
               fix: str = "") -> None:
        self.report.findings.append(Finding(self.plugin, subject, rule, status, detail, fix))

    def passed(self, subject: str, rule: str, detail: str = "") -> None:
        self.record(subject, rule, PASS, detail)

    def broken(self, subject: str, error: _RuleBroken) -> None:
        self.record(subject, error.rule, FAIL, error.detail, error.fix)

    def skipped(self, subject: str, rules: Sequence[str], reason: str) -> None:
        for rule in rules:
            self.record(subject, rule, SKIP, reason)

    # ------------------------------------------------------------------ the run
    def run(self) -> ConformanceReport:
        info = self.catalog.plugins.get(self.plugin)
        if info is None:
            self.record(
                "package", "installed", FAIL,
                did_you_mean(self.plugin, self.catalog.plugins, what="plugin"),
                "pip-install the plugin's distribution (`pip install -e PATH` while developing) "
                "with an entry point `NAME = \"package\"` under "
                "`[project.entry-points.m6bench]` in its pyproject.toml, then check "
                "`m6bench plugins` lists it.",
            )
            return self.report
        self.report.distribution, self.report.version = info.distribution, info.version
        self.passed("package", "installed", f"distribution {info.distribution} {info.version}")
        if info.error:
            self._load_failure(info.error)
            return self.report
        self.passed("package", "imports")
        self.passed("package", "hook-signatures", ", ".join(info.hooks) or "no hooks")
        self.passed("package", "registers")
        self._hook_returns()

        families = (("encoder", self.catalog.encoders), ("fusion", self.catalog.fusions),
                    ("head", self.catalog.heads))
        for family, registry in families:
            for entry in registry.by_plugin(self.plugin):
                self._component(family, entry.name, entry.value)

        owned = self.catalog.models.by_plugin(self.plugin)
        if self.only_models is not None:
            names = [e.name for e in owned]
            for wanted in self.only_models:
                if wanted not in names:
                    raise PluginError(did_you_mean(wanted, names,
                                                   what=f"model of plugin {self.plugin!r}"))
            owned = [e for e in owned if e.name in self.only_models]
        for entry in owned:
            self._model(entry.name, entry.value)
        return self.report

    def _load_failure(self, error: str) -> None:
        if error.startswith("importing"):
            self.record(
                "package", "imports", FAIL, error,
                "make the module importable on its own: run `python -c \"import MODULE\"` "
                "with the module the entry point names, install any missing dependency (and "
                "declare it in the plugin's pyproject.toml), and fix the line the traceback "
                "points at.",
            )
        elif "hook specs" in error or "no hook spec defines" in error:
            self.passed("package", "imports")
            self.record(
                "package", "hook-signatures", FAIL, error,
                "name each hook function exactly as in m6bench.hookspecs and take only the "
                "spec's arguments (e.g. `def m6bench_register_models(register):`); see the "
                "hook reference in docs/writing-a-plugin.md.",
            )
        else:
            self.passed("package", "imports")
            self.passed("package", "hook-signatures")
            self.record(
                "package", "registers", FAIL, error,
                "call `register(...)` once per thing with a spec of the hook's type "
                "(m6bench.ModelSpec for models, m6bench.ComponentSpec for components) and a "
                "name no other plugin uses; the registration hook must not raise.",
            )

    def _hook_returns(self) -> None:
        """Registration hooks' return values are ignored, so a hook that *returns* its specs
        (a common slip when coming from other plugin systems) registers nothing."""
        for hook_name in REGISTRATION_HOOKS:
            for impl in getattr(self.catalog.hook, hook_name).get_hookimpls():
                if impl.plugin_name != self.plugin:
                    continue
                subject = f"hook {hook_name}"
                try:
                    returned = impl.function(register=lambda value: None)
                except Exception as exc:  # it ran once already; report, do not crash
                    self.record(subject, "registers", FAIL,
                                f"calling it again raised {_describe(exc)}",
                                "make registration hooks free of side effects that can fail "
                                "on a second call: only build specs and call register().")
                    continue
                if returned is not None:
                    self.record(subject, "hook-returns", FAIL,
                                f"it returned {_short(returned)}; the host ignores return "
                                "values, so nothing returned is registered",
                                "call `register(spec)` for each spec inside the hook and "
                                "return nothing.")
                else:
                    self.passed(subject, "hook-returns")

    # ------------------------------------------------------------------ components
    def _component(self, family: str, name: str, spec: ComponentSpec) -> None:
        subject = f"{family} {name!r}"
        rules = ("spec-fields", "component-builds", "component-shapes", "determinism",
                 "device-moves", "save-load")
        try:
            self._component_spec(family, spec)
            self.passed(subject, "spec-fields")
            module = self._build_component(spec, self.seed)
            self.passed(subject, "component-builds", type(module).__name__)
            probe = self._probe(family, spec, module, subject)
            twin = self._build_component(spec, self.seed)
            self._same_state(module, twin, "determinism",
                             f"built twice after torch.manual_seed({self.seed})",
                             "draw all randomness of build() from torch's global generator "
                             "(which the harness seeds) and nothing else: no time, os.urandom "
                             "or unseeded numpy generators.")
            self.passed(subject, "determinism")
            self._plain_tensors(module)
            self.passed(subject, "device-moves")
            self._component_round_trip(spec, module, probe)
            self.passed(subject, "save-load")
        except _RuleBroken as error:
            self.broken(subject, error)
            done = {f.rule for f in self.report.findings if f.subject == subject}
            self.skipped(subject, [r for r in rules if r not in done],
                         f"the {error.rule!r} rule is broken")

    def _component_spec(self, family: str, spec: ComponentSpec) -> None:
        if spec.family != family:
            raise _RuleBroken(
                "spec-fields",
                f"it was registered through m6bench_register_{family}s but says "
                f"family={spec.family!r}",
                f"set ComponentSpec(family={family!r}, ...) or register it through the hook "
                f"of its family.")
        _json_defaults(spec.defaults, "ComponentSpec.defaults")
        if not callable(spec.build):
            raise _RuleBroken("spec-fields", f"its build is {_short(spec.build)}, not callable",
                              "pass the module class or a factory function as build.")
        _accepts(spec.build, spec.defaults, "ComponentSpec.build")

    def _build_component(self, spec: ComponentSpec, seed: int,
                         **params: Any) -> torch.nn.Module:
        torch.manual_seed(seed)
        try:
            module = spec.build(**{**spec.defaults, **params})
        except Exception as exc:
            raise _RuleBroken(
                "component-builds",
                f"build(**{_short(dict(spec.defaults))}) raised {_describe(exc)}",
                "make build() work with the defaults alone: list every parameter build takes "
                "in ComponentSpec.defaults with a value that works.") from exc
        if not isinstance(module, torch.nn.Module):
            raise _RuleBroken(
                "component-builds", f"build() returned {_short(module)}, not a torch.nn.Module",
                "return an nn.Module so the model owning it registers its parameters and "
                "moves them with .to().")
        return module

    def _probe(self, family: str, spec: ComponentSpec, module: torch.nn.Module,
               subject: str) -> Callable[[torch.nn.Module], torch.Tensor] | None:
        """Run the family's conventional input through the module, where the family has one.

        Encoders of ids (``num`` and ``dim`` parameters), fusions of two vectors and heads
        of two score vectors have a convention; anything else is exercised through the
        models that compose it, so the probe is skipped with the reason rather than failed.
        """
        batch = 5
        generator = torch.Generator().manual_seed(self.seed)
        defaults = spec.defaults
        if family == "encoder":
            if not {"num", "dim"} <= set(defaults):
                self.skipped(subject, ["component-shapes"],
                             "only id encoders (parameters num and dim) have a conventional "
                             "input; this one is exercised through the models that use it")
                return None
            index = torch.arange(batch) % max(1, int(defaults["num"]))

            def run(m: torch.nn.Module) -> torch.Tensor:
                return m(index)

            expected: tuple[int, ...] | None = (batch, int(defaults["dim"]))
        elif family == "fusion":
            width = int(defaults["in_dim"]) // 2 if "in_dim" in defaults else 8
            left = torch.randn(batch, width, generator=generator)
            right = torch.randn(batch, width, generator=generator)

            def run(m: torch.nn.Module) -> torch.Tensor:
                return m(left, right)

            expected = None
        else:
            scores = torch.randn(2, batch, generator=generator)

            def run(m: torch.nn.Module) -> torch.Tensor:
                return m(scores[0], scores[1])

            expected = None
        try:
            with torch.no_grad():
                out = run(module.eval())
        except Exception as exc:
            self.skipped(subject, ["component-shapes"],
                         f"its conventional {family} input raised {_describe(exc)}; it is "
                         "exercised through the models that use it")
            return None
        tensor = out if isinstance(out, torch.Tensor) else None
        if tensor is None:
            raise _RuleBroken("component-shapes", f"it returned {_short(out)}, not a tensor",
                              f"return a tensor from the {family}'s forward().")
        if expected is not None and tuple(tensor.shape) != expected:
            raise _RuleBroken(
                "component-shapes",
                f"ids of shape ({batch},) gave shape {tuple(tensor.shape)}, expected "
                f"{expected} (batch, dim)",
                "return one dim-sized vector per id: shape (len(ids), dim).")
        if family == "fusion" and (tensor.dim() == 0 or tensor.shape[0] != batch):
            raise _RuleBroken(
                "component-shapes",
                f"two ({batch}, {left.shape[1]}) inputs gave shape {tuple(tensor.shape)}; the "
                f"batch dimension {batch} was lost",
                "keep the batch as the first dimension of a fusion's output.")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _RuleBroken("component-shapes", "its output has NaN or infinite values",
                              "keep the forward pass finite for finite inputs (guard "
                              "divisions and logs).")
        self.passed(subject, "component-shapes", f"output {tuple(tensor.shape)}")
        return run

    def _same_state(self, first: torch.nn.Module, second: torch.nn.Module, rule: str,
                    how: str, fix: str) -> None:
        a, b = first.state_dict(), second.state_dict()
        if set(a) != set(b):
            raise _RuleBroken(rule, f"{how}, the state_dict keys differ: "
                              f"{sorted(set(a) ^ set(b))}", fix)
        differing = [k for k in a if not _equal(a[k], b[k])]
        if differing:
            raise _RuleBroken(rule, f"{how}, the tensors {differing[:5]} differ", fix)

    def _component_round_trip(self, spec: ComponentSpec, module: torch.nn.Module,
                              probe: Callable[[torch.nn.Module], torch.Tensor] | None) -> None:
        fresh = self._build_component(spec, self.seed + 1)
        try:
            fresh.load_state_dict(_round_trip(module.state_dict()))
        except Exception as exc:
            raise _RuleBroken("save-load", f"loading its saved state_dict into a freshly "
                              f"built one raised {_describe(exc)}",
                              "give every parameter and buffer its final shape in build(), "
                              "so a saved state loads into a fresh module.") from exc
        if probe is not None:
            with torch.no_grad():
                same = _equal(probe(module.eval()), probe(fresh.eval()))
            if not same:
                raise _RuleBroken(
                    "save-load", "after loading the saved state_dict into a module built "
                    "under another seed, the outputs differ",
                    "keep all state the forward pass reads in parameters or buffers "
                    "(register_buffer), not in plain attributes.")

    # ------------------------------------------------------------------ models
    def _model(self, name: str, spec: ModelSpec) -> None:
        subject = f"model {name!r}"
        order = ("spec-fields", "model-builds", "fit-epoch", "score-shape", "predict-shape",
                 "evaluates", "determinism", "no-leak", "device-moves", "save-load",
                 "search-space")
        try:
            config = self._model_spec(name, spec)
            self.passed(subject, "spec-fields")
            bench, variant = self._benchmarks(spec)
            first = self._train(spec, config, bench, self.seed, fit_rule="fit-epoch")
            self.passed(subject, "model-builds", type(first.model).__name__)
            self.passed(subject, "fit-epoch")
            self.passed(subject, "score-shape", f"scores {tuple(first.scores.shape)}")
            self._predict(spec, first.model, bench)
            self._evaluates(spec, first, bench)
            self.passed(subject, "evaluates")
        except _RuleBroken as error:
            self.broken(subject, error)
            done = {f.rule for f in self.report.findings if f.subject == subject}
            self.skipped(subject, [r for r in order if r not in done],
                         f"the {error.rule!r} rule is broken")
            return
        # The remaining rules are independent of one another: check them all.
        deterministic = self._check(subject, "determinism",
                                    lambda: self._determinism(spec, config, bench, first))
        if deterministic:
            self._check(subject, "no-leak", lambda: self._no_leak(spec, config, variant, first))
        else:
            self.skipped(subject, ["no-leak"], "it compares two trainings, which needs the "
                         "'determinism' rule to hold")
        self._check(subject, "device-moves", lambda: self._device_moves(first, bench))
        # After the move check, which moves the trained model away and back.
        self._check(subject, "save-load", lambda: self._save_load(spec, config, bench, first))
        space = spec.search_space
        if space is None:
            self.skipped(subject, ["search-space"], "the model has no search_space "
                         "(sweeps will tune nothing)")
        else:
            self._check(subject, "search-space",
                        lambda: self._search_space(name, spec, space, bench))

    def _check(self, subject: str, rule: str, check: Callable[[], str | None]) -> bool:
        try:
            detail = check()
        except _RuleBroken as error:
            self.broken(subject, error)
            return False
        self.passed(subject, rule, detail or "")
        return True

    def _model_spec(self, name: str, spec: ModelSpec) -> dict[str, Any]:
        unknown = [t for t in spec.tasks if t not in TASKS]
        if not spec.tasks or unknown:
            raise _RuleBroken("spec-fields", f"tasks={spec.tasks!r} has no known task or "
                              f"unknown ones {unknown}",
                              f"list tasks from {', '.join(TASKS)}, e.g. tasks=('ranking',).")
        if not callable(spec.build):
            raise _RuleBroken("spec-fields", f"build is {_short(spec.build)}, not callable",
                              "pass the Recommender subclass (or a factory) as build.")
        if spec.search_space is not None and not callable(spec.search_space):
            raise _RuleBroken("spec-fields", f"search_space is {_short(spec.search_space)}",
                              "pass a function trial -> dict of config values, or None.")
        _json_defaults(spec.defaults, "ModelSpec.defaults")
        try:
            return resolve_config(spec.defaults, model_name=name, choices=spec.choices)
        except M6BenchError as exc:
            raise _RuleBroken("spec-fields", f"its defaults do not resolve as a config: {exc}",
                              "give every default a finite, JSON-typed value.") from exc

    def _benchmarks(self, spec: ModelSpec) -> tuple[PreparedBenchmark, PreparedBenchmark]:
        protocol = KIT_BENCHMARK.protocol
        if spec.protocols is not None and protocol not in spec.protocols:
            protocol = spec.protocols[0]
        if protocol not in self._benches:
            self._benches[protocol] = _kit_benchmarks(self.catalog, protocol, self.seed,
                                                      self.device)
        return self._benches[protocol]

    def _train(self, spec: ModelSpec, config: Mapping[str, Any], bench: PreparedBenchmark,
               seed: int, *, fit_rule: str, build_rule: str = "model-builds",
               what: str = "") -> _Trained:
        """Build and train one epoch exactly as the harness does, then score a batch."""
        train = _fresh_train(bench, seed)
        seed_everything(seed)
        context = f" (config {_short(dict(config))})" if what else ""
        try:
            model = spec.build(train, config)
        except Exception as exc:
            raise _RuleBroken(build_rule, f"build(train, config){context} raised "
                              f"{_describe(exc)}",
                              "make build() succeed for every config the defaults and the "
                              "search space can produce; validate values with a clear "
                              "error.") from exc
        if not isinstance(model, Recommender):
            raise _RuleBroken(build_rule, f"build(train, config) returned {_short(model)}",
                              "return an instance of a subclass of m6bench.Recommender.")
        try:
            model = model.to(self.device)
        except Exception as exc:
            raise _RuleBroken("device-moves", f"model.to({str(self.device)!r}) raised "
                              f"{_describe(exc)}",
                              "keep state in parameters and buffers of ordinary tensors.") from exc
        model.train()
        try:
            losses = model.fit_epoch(train, 1)
        except Exception as exc:
            raise _RuleBroken(fit_rule, f"fit_epoch(train, 1){context} raised "
                              f"{_describe(exc)}",
                              "make one epoch work on a tiny benchmark (60 users, 40 items): "
                              "check batch sizes and dimensions against train.n_users and "
                              "train.n_items.") from exc
        _check_losses(losses, fit_rule, context)
        # The first training is where shapes are checked; later ones report their own rule.
        rule = "score-shape" if fit_rule == "fit-epoch" else fit_rule
        users = _users(bench.train.n_users, self.device)
        scores = _score(model, users, bench.train.n_items, rule=rule)
        # A batch of one catches squeezes that drop the batch dimension.
        _score(model, users[:1], bench.train.n_items, rule=rule)
        return _Trained(model, scores)

    def _predict(self, spec: ModelSpec, model: Recommender, bench: PreparedBenchmark) -> None:
        if not {"rating", "binary"} & set(spec.tasks):
            self.skipped(f"model {spec.name!r}", ["predict-shape"],
                         "a ranking-only model; the evaluator calls only score()")
            return
        users, items = bench.test.users[:7], bench.test.items[:7]
        try:
            with torch.no_grad():
                out = model.eval().predict(users, items)
        except Exception as exc:
            raise _RuleBroken("predict-shape", f"predict(users, items) raised {_describe(exc)}",
                              "accept two int64 (N,) tensors and return (N,) floats.") from exc
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (users.numel(),):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else _short(out)
            raise _RuleBroken("predict-shape", f"predict() on {users.numel()} pairs returned "
                              f"{shape}, expected ({users.numel()},)",
                              "return one prediction per (user, item) pair: shape (N,).")
        if not out.is_floating_point() or not bool(torch.isfinite(out).all()):
            raise _RuleBroken("predict-shape", "predict() returned non-finite or non-float "
                              "values", "return finite float predictions.")
        self.passed(f"model {spec.name!r}", "predict-shape")

    def _evaluates(self, spec: ModelSpec, trained: _Trained, bench: PreparedBenchmark) -> None:
        tasks = tuple(t for t in bench.spec.tasks if t in spec.tasks) or ("ranking",)
        try:
            metrics = evaluate_part(trained.model, bench, "test", tasks=tasks, batch_size=16)
        except Exception as exc:
            raise _RuleBroken("evaluates", f"the evaluator raised {_describe(exc)}",
                              "score(users) must accept any batch of user indices and return "
                              "a fresh (B, n_items) float tensor.") from exc
        bad = [k for k, v in metrics.metrics.items()
               if isinstance(v, float) and not math.isfinite(v) and not k.startswith("auc")]
        if bad:
            raise _RuleBroken("evaluates", f"the evaluator produced non-finite {bad}",
                              "keep scores and predictions finite.")
        with torch.no_grad():
            again = trained.model.eval().score(_users(bench.train.n_users, self.device))
        if not _equal(again, trained.scores):
            raise _RuleBroken(
                "evaluates", "scores changed after the evaluator ran: score() changes the "
                "model (a counter, a cache, an in-place update), so metrics would depend on "
                "the order and batching of evaluation",
                "make score() a pure function of the parameters and buffers; update state "
                "only in fit_epoch.")

    def _determinism(self, spec: ModelSpec, config: Mapping[str, Any],
                     bench: PreparedBenchmark, first: _Trained) -> str:
        second = self._train(spec, config, bench, self.seed, fit_rule="determinism",
                             build_rule="determinism")
        if not _close(first.scores, second.scores, self.device):
            raise _RuleBroken(
                "determinism", f"two builds under seed {self.seed} scored differently (max "
                f"difference {_max_diff(first.scores, second.scores):.3g})",
                "draw every random number from train.generator or torch's global generator "
                "(both seeded by the run), never from time, os.urandom, Python's hash() or an "
                "unseeded numpy generator.")
        return f"seed {self.seed}"

    def _no_leak(self, spec: ModelSpec, config: Mapping[str, Any],
                 variant: PreparedBenchmark, first: _Trained) -> str:
        other = self._train(spec, config, variant, self.seed, fit_rule="no-leak",
                            build_rule="no-leak")
        if not _close(first.scores, other.scores, self.device):
            raise _RuleBroken(
                "no-leak", "two benchmarks with identical training interactions but different "
                "validation/test interactions gave different scores (max difference "
                f"{_max_diff(first.scores, other.scores):.3g}), so the model sees held-out "
                "interactions",
                "build and train only from the TrainSet passed to build() and fit_epoch(); "
                "never reload the dataset, read its files or keep data in module globals.")
        return "held-out interactions changed, scores did not"

    def _device_moves(self, trained: _Trained, bench: PreparedBenchmark) -> str:
        self._plain_tensors(trained.model)
        other = _other_device(self.device)
        if other is None:
            return "every tensor is a parameter or buffer; no second device to move to here"
        # The trained model itself is moved there and back: a deep copy could fail on
        # whatever a model holds (generators, the catalog) for reasons unrelated to devices.
        users = _users(bench.train.n_users, other)
        try:
            with torch.no_grad():
                scores = trained.model.to(other).eval().score(users)
        except Exception as exc:
            raise _RuleBroken("device-moves", f"after model.to({str(other)!r}), score() raised "
                              f"{_describe(exc)}",
                              "keep every tensor score() reads in a parameter or buffer, and "
                              "create new tensors on users.device.") from exc
        finally:
            trained.model.to(self.device)
        if not isinstance(scores, torch.Tensor) or scores.device.type != other.type:
            raise _RuleBroken("device-moves", f"after model.to({str(other)!r}), score() "
                              f"returned scores on {getattr(scores, 'device', '?')}",
                              "create new tensors on users.device (or a buffer's device).")
        back = scores.to(self.device)
        if not _close(back, trained.scores, other, tolerance=1e-3):
            raise _RuleBroken("device-moves", f"scores on {other} differ from scores on "
                              f"{self.device} by {_max_diff(back, trained.scores):.3g}",
                              "compute the same function on every device.")
        return f"moved to {other} and scored"

    def _plain_tensors(self, module: torch.nn.Module) -> None:
        stray = sorted(_stray_tensors(module))
        if stray:
            raise _RuleBroken(
                "device-moves",
                f"{', '.join(stray)} {'is a tensor' if len(stray) == 1 else 'are tensors'} "
                "held in plain attributes, which .to(device) does not move (and state_dict "
                "does not save)",
                "register state with self.register_buffer(name, tensor) (add persistent=False "
                "for caches rebuilt from the TrainSet), or recompute it from `train` inside "
                "fit_epoch.")

    def _save_load(self, spec: ModelSpec, config: Mapping[str, Any], bench: PreparedBenchmark,
                   trained: _Trained) -> str:
        state = _round_trip(trained.model.state_dict())
        train = _fresh_train(bench, self.seed + 1)
        seed_everything(self.seed + 1)
        try:
            fresh = spec.build(train, config).to(self.device)
            fresh.load_state_dict(state)
        except Exception as exc:
            raise _RuleBroken("save-load", "loading the trained state_dict into a freshly built "
                              f"model raised {_describe(exc)}",
                              "give every parameter and buffer its final shape in __init__ "
                              "(fill it in fit_epoch with .copy_()), so a saved model loads "
                              "into a new one.") from exc
        scores = _score(fresh, _users(bench.train.n_users, self.device), bench.train.n_items,
                        rule="save-load")
        if not _close(scores, trained.scores, self.device):
            raise _RuleBroken(
                "save-load", "after loading the trained state_dict into a model built under "
                f"another seed, scores differ by {_max_diff(scores, trained.scores):.3g}",
                "keep everything score() reads in parameters or buffers: anything else is "
                "lost when the harness restores the best epoch or a model is saved.")
        return f"{len(state)} tensor{'s' if len(state) != 1 else ''} round-tripped"

    def _search_space(self, name: str, spec: ModelSpec, space: Callable[[Any], Any],
                      bench: PreparedBenchmark) -> str:
        import optuna

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "trial finished" lines
        try:
            return self._sample(name, spec, space, bench, optuna)
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _sample(self, name: str, spec: ModelSpec, space: Callable[[Any], Any],
                bench: PreparedBenchmark, optuna: Any) -> str:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=self.seed))
        for number in range(self.samples):
            trial = study.ask()
            try:
                sampled = space(trial)
            except Exception as exc:
                raise _RuleBroken("search-space", f"search_space(trial) raised {_describe(exc)}",
                                  "suggest values with trial.suggest_* and return a dict."
                                  ) from exc
            if not isinstance(sampled, Mapping):
                raise _RuleBroken("search-space", f"search_space(trial) returned "
                                  f"{_short(sampled)}, not a dict",
                                  "return a dict of config keys to sampled values.")
            try:
                config = resolve_config(spec.defaults, overrides=sampled, model_name=name,
                                        choices=spec.choices)
            except M6BenchError as exc:
                raise _RuleBroken(
                    "search-space", f"sample {number + 1} {_short(dict(sampled))} is not a "
                    f"valid config: {exc}",
                    "sample only keys listed in the model's defaults, with values of the "
                    "defaults' types.") from exc
            self._train(spec, config, bench, self.seed, fit_rule="search-space",
                        build_rule="search-space", what="sample")
            study.tell(trial, 0.0)
        return f"{self.samples} samples built and trained"


# =============================================================================== helpers
@contextlib.contextmanager
def _preserved_random_state() -> Iterator[None]:
    """The kit seeds the global generators for every build (as a run does); restore them
    afterwards, so calling it from a test suite does not change the tests that follow."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def _kit_benchmarks(catalog: Catalog, protocol: str, seed: int,
                    device: torch.device) -> tuple[PreparedBenchmark, PreparedBenchmark]:
    """The kit's tiny benchmark, and a variant with equal training but other held-out rows.

    The loader and protocol are called directly (no on-disk cache): the data is tiny, and
    the kit must not touch the user's cache.  In the variant every held-out interaction
    points at another item (and held-out ratings are permuted), while the training rows,
    entity ids and side tables stay identical, so a model that reads only its TrainSet
    cannot tell the two apart.
    """
    spec = KIT_BENCHMARK if protocol == KIT_BENCHMARK.protocol else dataclasses.replace(
        KIT_BENCHMARK, protocol=protocol)
    loader = catalog.datasets.get(spec.dataset)
    context = LoadContext(data_dir=None, cache_dir=tempfile.gettempdir(), offline=True)
    dataset = deduplicate(loader.load({**loader.defaults, **spec.dataset_options}, context))
    cut = catalog.protocols.get(protocol)
    split = cut.cut(dataset, seed, {**cut.defaults, **spec.protocol_options})
    bench = to_device(spec, dataset, split, seed=seed, device=device, components=catalog)
    variant = to_device(spec, _heldout_variant(dataset, split.valid, split.test), split,
                        seed=seed, device=device, components=catalog)
    return bench, variant


def _heldout_variant(dataset: Dataset, valid: np.ndarray, test: np.ndarray) -> Dataset:
    rows = np.concatenate([valid, test]).astype(np.int64)
    items = dataset.items.copy()
    items[rows] = (items[rows] + 1 + dataset.n_items // 2) % dataset.n_items
    ratings = dataset.ratings
    if ratings is not None:
        ratings = ratings.copy()
        ratings[rows] = ratings[rows][::-1]
    changed = dataclasses.replace(dataset, items=items, ratings=ratings)
    return dataclasses.replace(changed, fingerprint=content_fingerprint(changed))


def _fresh_train(bench: PreparedBenchmark, seed: int) -> Any:
    """The benchmark's TrainSet with a newly seeded generator, as a new run would get it."""
    device = bench.train.device
    generator = torch.Generator(device=device if device.type == "cuda" else "cpu")
    generator.manual_seed(seed)
    return dataclasses.replace(bench.train, seed=seed, generator=generator)


def _users(n_users: int, device: torch.device) -> torch.Tensor:
    """A batch with the first and the last user and a few between, out of order."""
    picks = sorted({0, 1, 2, n_users // 2, n_users - 1}, reverse=True)
    return torch.tensor(picks, dtype=torch.int64, device=device)


def _score(model: Recommender, users: torch.Tensor, n_items: int,
           rule: str = "score-shape") -> torch.Tensor:
    try:
        with torch.no_grad():
            scores = model.eval().score(users)
    except Exception as exc:
        raise _RuleBroken(rule, f"score(users) for {users.numel()} users raised "
                          f"{_describe(exc)}",
                          "accept an int64 (B,) tensor of user indices on the model's device "
                          "and return (B, n_items) scores.") from exc
    expected = (users.numel(), n_items)
    if not isinstance(scores, torch.Tensor):
        raise _RuleBroken(rule, f"score(users) returned {_short(scores)}, not a tensor",
                          "return a torch.Tensor of shape (len(users), n_items).")
    if tuple(scores.shape) != expected:
        raise _RuleBroken(rule, f"score(users) for {users.numel()} users returned shape "
                          f"{tuple(scores.shape)}, expected {expected} (one column per item "
                          f"of the TrainSet)",
                          "return one score per item for every user in the batch: shape "
                          "(len(users), train.n_items), without squeezing a batch of one.")
    if not scores.is_floating_point():
        raise _RuleBroken(rule, f"score(users) returned dtype {scores.dtype}",
                          "return floating scores (float32), e.g. scores.float().")
    if scores.device.type != users.device.type:
        raise _RuleBroken(rule, f"score(users) returned scores on {scores.device} for users "
                          f"on {users.device}",
                          "keep state in parameters/buffers so .to(device) moves it, and "
                          "create new tensors on users.device.")
    if not bool(torch.isfinite(scores).all()):
        raise _RuleBroken(rule, "score(users) returned NaN or infinite scores",
                          "return finite scores for every item; the evaluator masks training "
                          "items itself, so do not mask them with -inf.")
    return scores.detach().clone()


def _check_losses(losses: Any, rule: str, context: str) -> None:
    if not isinstance(losses, Mapping):
        raise _RuleBroken(rule, f"fit_epoch returned {_short(losses)}{context}, not a mapping",
                          "return a dict of loss names to floats (an empty dict for "
                          "closed-form models).")
    for key, value in losses.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _RuleBroken(rule, f"fit_epoch's loss {key!r} is {_short(value)}{context}",
                              "return plain numbers, e.g. float(loss).") from None
        if not math.isfinite(number):
            raise _RuleBroken(rule, f"fit_epoch's loss {key!r} is {number}{context}",
                              "keep training finite on the tiny benchmark: lower the "
                              "learning rate or the search space's upper bounds, clamp "
                              "logs and divisions.")


def _stray_tensors(module: torch.nn.Module) -> Iterator[str]:
    """Attribute paths of tensors a module holds outside its parameters and buffers."""
    internal = set(vars(torch.nn.Module()))
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if attr in internal:
                continue
            path = f"{prefix}.{attr}" if prefix else attr
            yield from _tensors_in(value, f"self.{path}", depth=0)


def _tensors_in(value: Any, path: str, depth: int) -> Iterator[str]:
    # A Parameter held twice (RNNs' _flat_weights) is an alias that .to() updates in place.
    if isinstance(value, torch.nn.Parameter):
        return
    if isinstance(value, torch.Tensor):
        yield path
    elif depth < 3 and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors_in(item, f"{path}[{i}]", depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors_in(item, f"{path}[{key!r}]", depth + 1)


def _other_device(device: torch.device) -> torch.device | None:
    if device.type == "cpu":
        return torch.device("cuda") if torch.cuda.is_available() else None
    return torch.device("cpu")


def _round_trip(state: Mapping[str, torch.Tensor]) -> Any:
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.layout != torch.strided or b.layout != torch.strided:
            a, b = a.to_dense(), b.to_dense()
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b.to(a.device)))
    return bool(a == b)


def _close(a: torch.Tensor, b: torch.Tensor, device: torch.device,
           tolerance: float = 1e-5) -> bool:
    """Bitwise equal on the CPU (the harness's promise); within a tolerance on GPUs."""
    if a.shape != b.shape:
        return False
    if device.type == "cpu" and tolerance <= 1e-5:
        return bool(torch.equal(a, b))
    return bool(torch.allclose(a.float(), b.float().to(a.device), rtol=tolerance,
                               atol=tolerance))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    return float((a.float() - b.float().to(a.device)).abs().max())


def _json_defaults(defaults: Any, what: str) -> None:
    if not isinstance(defaults, Mapping):
        raise _RuleBroken("spec-fields", f"{what} is {_short(defaults)}, not a mapping",
                          "pass a dict of parameter names to default values.")
    try:
        json.dumps(dict(defaults), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _RuleBroken("spec-fields", f"{what} is not JSON-serialisable ({exc})",
                          "use numbers, strings, booleans, lists or None: every resolved "
                          "config is hashed and written to the ledger.") from exc


def _accepts(build: Callable[..., Any], defaults: Mapping[str, Any], what: str) -> None:
    try:
        signature = inspect.signature(build)
    except (TypeError, ValueError):
        return  # builtins without a signature: the build itself will tell
    try:
        signature.bind(**defaults)
    except TypeError as exc:
        raise _RuleBroken("spec-fields", f"{what} cannot take its defaults "
                          f"{sorted(defaults)}: {exc}",
                          "list exactly the parameters build() takes in defaults, each with "
                          "a default value.") from exc


def _describe(exc: BaseException) -> str:
    """``Type: message (at file.py:12 in fn)``, pointing at the innermost frame outside
    torch and the kit, which is where a plugin author should look."""
    text = f"{type(exc).__name__}: {exc}".strip()
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f"{os.sep}torch{os.sep}" not in f.filename and f.filename != __file__]
    if frames:
        last = frames[-1]
        text += f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return text


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sentence(text: str) -> str:
    """One line ending in a full stop: every finding prints as a single line, so a
    multi-line error (an import traceback) is joined with `` / ``."""
    text = " / ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text if text.endswith((".", "?", "!")) and not text.endswith("...") else text + "."


def real_data_folder(*parts: str, purpose: str = "the real-data tests") -> Path:
    """For tests on real data: the folder ``parts`` under ``$M6BENCH_DATA_DIR`` (the data
    folder itself without ``parts``), or a pytest skip saying which is missing and how to
    provide it, e.g. ``real_data_folder("recbole-ml-100k", purpose="the quality targets")``.
    """
    import pytest

    root = os.environ.get("M6BENCH_DATA_DIR")
    if not root:
        pytest.skip(f"M6BENCH_DATA_DIR is not set; point it at the folder of MovieLens "
                    f"RecBole copies to run {purpose}")
    folder = Path(root, *parts)
    if not folder.is_dir():
        pytest.skip(f"M6BENCH_DATA_DIR={root} has no {Path(*parts)}/ folder, needed by "
                    f"{purpose}")
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m m6bench.testing NAME [--device D]``: print every finding; 1 if any failed."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m m6bench.testing",
                                     description="Run the conformance kit on a plugin.")
    parser.add_argument("plugin", help="the plugin's name, as `m6bench plugins` lists it")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--model", action="append", dest="models", default=None,
                        help="check only this model (repeatable)")
    args = parser.parse_args(argv)
    report = check_plugin(args.plugin, device=args.device, models=args.models,
                          raise_on_failure=False)
    sys.stdout.write(report.summary() + "\n")
    if report.failures:
        sys.stdout.write("\n" + report.failure_text() + "\n")
    return 1 if report.failures else 0

