"""The conformance kit: every installed plugin passes it, and each broken rule is named.

The broken plugins here are in-memory modules registered through ``load_catalog``, each
breaking one rule on purpose, so every test shows that the kit catches that fault and says
which plugin, which model or component, which rule, and how to fix it.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from plugins_for_tests import catalog_with, fake_plugin

from m6bench import (
    ComponentSpec,
    ModelSpec,
    PreparedBenchmark,
    Recommender,
    TrainSet,
    hookimpl,
)
from m6bench.reference import BLOCKS, REGENERATE, render_guide, stale_blocks
from m6bench.testing import (
    KIT_BENCHMARK,
    RULES,
    ConformanceError,
    ConformanceReport,
    assert_plugin_conforms,
    check_plugin,
)

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-a-plugin.md"
MESSAGE = re.compile(r"plugin '(?P<plugin>[^']+)', (?P<subject>[^:]+): rule '(?P<rule>[a-z-]+)' "
                     r"broken: (?P<what>.+?) Fix: (?P<fix>.+)")


def _catalog(*plugins: tuple[str, object], entry_points: bool = False):
    return catalog_with(*plugins, entry_points=entry_points, failures_expected=True)


def _installed_plugins() -> list[str]:
    return sorted(_catalog(entry_points=True).plugins)


@pytest.fixture(scope="module")
def installed_catalog():
    return _catalog(entry_points=True)


# =============================================================================== a good model
class TinyMF(Recommender):
    """A conforming model: dot product of user/item embeddings, one Adam step per epoch."""

    iterative = True

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        dim = int(config["dim"])
        self.users = torch.nn.Parameter(0.1 * torch.randn(train.n_users, dim))
        self.items = torch.nn.Parameter(0.1 * torch.randn(train.n_items, dim))
        self.to(train.device)

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        optimizer = torch.optim.Adam(self.parameters(), lr=float(self.config["lr"]))
        negatives = train.sample_negatives(train.n_interactions)
        users = self.users[train.users]
        positive = (users * self.items[train.items]).sum(-1)
        negative = (users * self.items[negatives]).sum(-1)
        loss = -torch.nn.functional.logsigmoid(positive - negative).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"bpr": float(loss.detach())}

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.users[users] @ self.items.T


def _space(trial: Any) -> dict[str, Any]:
    return {"dim": trial.suggest_categorical("dim", [4, 8]),
            "lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True)}


def _model_plugin(name: str, model: type[Recommender] = TinyMF, *, search_space: Any = _space,
                  defaults: Mapping[str, Any] | None = None, tasks: tuple[str, ...] = ("ranking",),
                  choices: Mapping[str, tuple[Any, ...]] | None = None) -> types.ModuleType:
    return fake_plugin(f"plugin_{name.replace('-', '_')}", models=[ModelSpec(
        name, build=model, defaults=defaults or {"dim": 8, "lr": 0.05},
        search_space=search_space, tasks=tasks, choices=choices or {})])


def _failures(plugin: str, module: types.ModuleType) -> list[re.Match[str]]:
    """Check a broken in-memory plugin; return its failure lines, parsed."""
    with pytest.raises(ConformanceError) as info:
        check_plugin(plugin, catalog=_catalog((plugin, module)))
    lines = [line.removeprefix("  - ") for line in str(info.value).splitlines()[1:]]
    parsed = [MESSAGE.match(line) for line in lines]
    assert all(parsed), f"a failure line does not name plugin, subject, rule and fix:\n{lines}"
    assert all(m["plugin"] == plugin for m in parsed)
    return parsed


def _broken_rules(parsed: list[re.Match[str]]) -> set[str]:
    return {m["rule"] for m in parsed}


# =============================================================================== installed
@pytest.mark.parametrize("plugin", _installed_plugins())
def test_installed_plugin_passes_the_kit(plugin, installed_catalog):
    report = check_plugin(plugin, catalog=installed_catalog, raise_on_failure=False)
    assert report.ok, report.failure_text()


def test_a_conforming_plugin_passes_every_rule():
    catalog = _catalog(("good", _model_plugin("good-mf")))
    report = check_plugin("good", catalog=catalog)
    assert isinstance(report, ConformanceReport) and report.ok
    checked = {rule for subject, rule in report.rules() if subject == "model 'good-mf'"}
    assert checked == {"spec-fields", "model-builds", "fit-epoch", "score-shape", "evaluates",
                       "determinism", "no-leak", "device-moves", "save-load", "search-space"}
    assert ("model 'good-mf'", "predict-shape") in report.rules("skip")
    assert "0 failed" in report.summary()


# =============================================================================== acceptance
class WrongShape(TinyMF):
    def score(self, users: torch.Tensor) -> torch.Tensor:
        return (self.users[users] @ self.items.T)[:, :-1]  # drops the last item


def test_wrong_output_shape_is_named():
    parsed = _failures("broken-shape", _model_plugin("wrong-shape", WrongShape))
    (failure,) = parsed
    assert failure["rule"] == "score-shape" and failure["subject"] == "model 'wrong-shape'"
    assert "expected (5, 40)" in failure["what"] and "(5, 39)" in failure["what"]
    assert "train.n_items" in failure["fix"]


def _benchmark_in_callers() -> PreparedBenchmark:
    """What a leaking model does in spirit: find the held-out part somewhere it was not
    handed (here, the caller's frames; in the wild, the dataset files or a module global)."""
    frame = sys._getframe(1)
    while frame is not None:
        for value in frame.f_locals.values():
            # the benchmark itself, or an object holding it (one attribute deep)
            for candidate in (value, *getattr(value, "__dict__", {}).values()):
                if isinstance(candidate, PreparedBenchmark):
                    return candidate
        frame = frame.f_back
    raise LookupError("no benchmark in the call stack")


class Leaky(TinyMF):
    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        self.register_buffer("peek", torch.zeros(train.n_items, device=train.device))

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        held_out = _benchmark_in_callers().test.truth.to_dense().sum(0)
        self.peek.copy_(held_out)
        return super().fit_epoch(train, epoch)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return super().score(users) + self.peek  # boosts the test items: a leak


def test_score_that_leaks_held_out_items_is_named():
    parsed = _failures("broken-leak", _model_plugin("leaky", Leaky))
    assert _broken_rules(parsed) == {"no-leak"}
    assert "held-out interactions" in parsed[0]["what"]
    assert "TrainSet" in parsed[0]["fix"]


@pytest.mark.parametrize("space, says", [
    # a key no component takes
    (lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-1)},
     "'learning_rate', which no component of 'bad-space' accepts"),
    # a value the model cannot be built with
    (lambda trial: {"dim": trial.suggest_int("dim", -8, -1)}, "build(train, config)"),
], ids=["unknown-key", "unbuildable-value"])
def test_search_space_yielding_an_invalid_config_is_named(space, says):
    parsed = _failures("broken-space", _model_plugin("bad-space", search_space=space))
    assert _broken_rules(parsed) == {"search-space"}
    assert says in parsed[0]["what"]


# =============================================================================== choices
def test_choices_that_hold_the_defaults_and_the_samples_pass():
    catalog = _catalog(("good-choices", _model_plugin("chosen-mf", choices={"dim": (4, 8)})))
    report = check_plugin("good-choices", catalog=catalog)
    assert {("model 'chosen-mf'", "spec-fields"),
            ("model 'chosen-mf'", "search-space")} <= report.rules()


@pytest.mark.parametrize("choices, says", [
    ({"dim": (4, 16)}, "its default dim=8 is not one of its choices [4, 16]"),
    ({"dims": (4, 8)}, "ModelSpec.choices names ['dims'], which are not config keys"),
    ({"dim": ()}, "ModelSpec.choices['dim'] is ()"),
], ids=["default-outside", "unknown-key", "empty"])
def test_choices_the_defaults_break_are_named(choices, says):
    parsed = _failures("broken-choices", _model_plugin("bad-choices", choices=choices))
    assert _broken_rules(parsed) == {"spec-fields"}
    assert says in parsed[0]["what"]


def test_search_space_sampling_outside_the_choices_is_named():
    def space(trial: Any) -> dict[str, Any]:
        return {"dim": trial.suggest_categorical("dim", [4])}

    parsed = _failures("broken-choice-space", _model_plugin(
        "bad-choice-space", search_space=space, choices={"dim": (8, 16)}))
    assert _broken_rules(parsed) == {"search-space"}
    assert "sample 1 {'dim': 4} is not a valid config" in parsed[0]["what"]
    assert "'dim'" in parsed[0]["what"] and "choices" in parsed[0]["fix"]


# =============================================================================== kit overrides
class KitSized(TinyMF):
    """Fails to build at its full size: only the kit's overrides make it checkable."""

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        if int(config["steps"]) > 2:
            raise RuntimeError(f"{config['steps']} steps: too slow for the kit")
        super().__init__(train, config)


def _kit_sized_plugin(kit_overrides: Mapping[str, Any]) -> types.ModuleType:
    def space(trial: Any) -> dict[str, Any]:  # samples the slow key too
        return {**_space(trial), "steps": trial.suggest_int("steps", 50, 100)}

    return fake_plugin("plugin_kit_sized", models=[ModelSpec(
        "kit-sized", build=KitSized, defaults={"dim": 8, "lr": 0.05, "steps": 400},
        search_space=space, kit_overrides=kit_overrides)])


def test_kit_overrides_size_every_fit_the_kit_makes():
    report = check_plugin("kit-sized", catalog=_catalog(("kit-sized", _kit_sized_plugin(
        {"steps": 1}))))
    assert report.ok and ("model 'kit-sized'", "search-space") in report.rules()
    # without them the same model breaks the kit at its first build
    parsed = _failures("kit-sized", _kit_sized_plugin({}))
    assert "model-builds" in _broken_rules(parsed)


def test_kit_overrides_naming_no_default_are_named():
    parsed = _failures("kit-sized", _kit_sized_plugin({"step": 1}))
    assert _broken_rules(parsed) == {"spec-fields"}
    assert "kit_overrides {'step': 1} do not resolve over its defaults" in parsed[0]["what"]


# =============================================================================== the benchmark
def test_kit_benchmark_is_prepared_through_the_public_api(tmp_path):
    from m6bench import LoadContext, prepare_split

    catalog = _catalog()
    loader = catalog.datasets.get(KIT_BENCHMARK.dataset)
    context = LoadContext(data_dir=None, cache_dir=str(tmp_path), offline=True)
    dataset = loader.load({**loader.defaults, **KIT_BENCHMARK.dataset_options}, context)
    cut = catalog.protocols.get(KIT_BENCHMARK.protocol)
    split = cut.cut(dataset, 0, dict(cut.defaults))
    bench = prepare_split(KIT_BENCHMARK, dataset, split, catalog=catalog, seed=3)
    assert (bench.train.n_users, bench.train.n_items) == (60, 40)
    assert bench.train.n_interactions == len(split.train)
    assert bench.test.size == len(split.test) and bench.device.type == "cpu"
    # the generator is seeded: the same seed draws the same negatives
    again = prepare_split(KIT_BENCHMARK, dataset, split, catalog=catalog, seed=3)
    assert torch.equal(bench.train.sample_negatives(20), again.train.sample_negatives(20))


def test_a_prepared_split_ranks_the_benchmark_candidates(tmp_path):
    """A held-out-candidates benchmark prepared from a split ranks only the items of each
    evaluated part, as a run of it does (not every item)."""
    import dataclasses

    from m6bench import LoadContext, prepare_split

    catalog = _catalog()
    loader = catalog.datasets.get(KIT_BENCHMARK.dataset)
    context = LoadContext(data_dir=None, cache_dir=str(tmp_path), offline=True)
    dataset = loader.load({**loader.defaults, **KIT_BENCHMARK.dataset_options}, context)
    cut = catalog.protocols.get(KIT_BENCHMARK.protocol)
    split = cut.cut(dataset, 0, dict(cut.defaults))
    full = prepare_split(KIT_BENCHMARK, dataset, split, catalog=catalog)
    assert full.candidates_valid is None and full.candidates_test is None
    heldout = dataclasses.replace(KIT_BENCHMARK, candidates="heldout")
    bench = prepare_split(heldout, dataset, split, catalog=catalog)
    for part, rows in (("valid", split.valid), ("test", split.test)):
        mask = getattr(bench, f"candidates_{part}")
        assert set(mask.nonzero().flatten().tolist()) == set(dataset.items[rows].tolist())


def test_held_out_variant_changes_only_the_held_out_rows():
    from m6bench.testing.bench import kit_benchmarks

    bench, variant = kit_benchmarks(_catalog(), "random", 0, torch.device("cpu"))
    for name in ("users", "items", "ratings"):
        assert torch.equal(getattr(bench.train, name), getattr(variant.train, name))
    assert torch.equal(bench.test.users, variant.test.users)
    assert bool((bench.test.items != variant.test.items).all())
    assert bool((bench.valid.items != variant.valid.items).all())


def _install_fake_distribution(root: Path, dist: str, entry_name: str, module: str,
                               source: str) -> None:
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"  # PEP 427 normalised name
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[m6bench]\n{entry_name} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


def test_import_error_is_named(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, "m6bench-broken-import", "broken-import",
                               "m6bench_kit_broken_import",
                               "import m6bench\nimport a_module_nobody_has_written\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConformanceError) as info:
        check_plugin("broken-import", catalog=_catalog(entry_points=True))
    message = str(info.value)
    assert "plugin 'broken-import' (distribution m6bench-broken-import 1.2.3" in message
    assert "plugin 'broken-import', package: rule 'imports' broken" in message
    assert "ModuleNotFoundError" in message and "a_module_nobody_has_written" in message
    assert "Fix: make the module importable" in message


# =============================================================================== more rules
class StrayTensor(TinyMF):
    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        self.popularity = train.item_popularity.clone()  # a plain attribute: .to() misses it

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return super().score(users) + 0.0 * self.popularity


class Unseeded(TinyMF):
    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        seed = int.from_bytes(os.urandom(4), "little")  # not the run's seed
        with torch.no_grad():
            self.items.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(seed))


class ForgetsState(TinyMF):
    """Keeps fitted item bonuses in a plain Python list, which state_dict does not save."""

    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        self.fitted = (torch.rand(self.n_items) > 0.5).tolist()
        return super().fit_epoch(train, epoch)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        bonus = torch.tensor(getattr(self, "fitted", [False] * self.n_items), dtype=torch.float32)
        return super().score(users) + bonus.to(users.device)


class CountsExposure(TinyMF):
    """Demotes items each time it recommends them: scoring changes the model."""

    def __init__(self, train: TrainSet, config: Mapping[str, Any]) -> None:
        super().__init__(train, config)
        self.register_buffer("exposure", torch.zeros(train.n_items, device=train.device))

    def score(self, users: torch.Tensor) -> torch.Tensor:
        scores = super().score(users) - 0.01 * self.exposure
        self.exposure += torch.zeros_like(self.exposure).index_add_(
            0, scores.topk(5, dim=1).indices.flatten(),
            torch.ones(users.numel() * 5, device=users.device))
        return scores


class NanLoss(TinyMF):
    def fit_epoch(self, train: TrainSet, epoch: int) -> Mapping[str, float]:
        return {"bpr": float("nan")}


@pytest.mark.parametrize("model, rule, says", [
    (StrayTensor, "device-moves", "self.popularity is a tensor held in plain attributes"),
    (Unseeded, "determinism", "two builds under seed 0 scored differently"),
    (ForgetsState, "save-load", "scores differ"),
    (CountsExposure, "evaluates", "scores changed after the evaluator ran"),
    (NanLoss, "fit-epoch", "loss 'bpr' is nan"),
], ids=["stray-tensor", "unseeded", "forgets-state", "counts-exposure", "nan-loss"])
def test_each_model_rule_names_its_fault(model, rule, says):
    parsed = _failures("broken-model", _model_plugin("broken-model", model))
    by_rule = {m["rule"]: m for m in parsed}
    assert rule in by_rule, [m.group(0) for m in parsed]
    assert says in by_rule[rule]["what"]
    assert by_rule[rule]["fix"]


def test_registration_hook_that_returns_specs_is_named():
    module = types.ModuleType("returns_specs")

    @hookimpl
    def m6bench_register_models(register):
        register(ModelSpec("returned-mf", build=TinyMF, defaults={"dim": 8, "lr": 0.05}))
        return [ModelSpec("lost-mf", build=TinyMF)]

    module.m6bench_register_models = m6bench_register_models
    parsed = _failures("broken-returns", module)
    assert _broken_rules(parsed) == {"hook-returns"}
    assert parsed[0]["subject"] == "hook m6bench_register_models"


def test_wrong_hook_signature_is_named():
    module = types.ModuleType("bad_signature")

    @hookimpl
    def m6bench_register_models(register, options):
        pass

    module.m6bench_register_models = m6bench_register_models
    parsed = _failures("broken-signature", module)
    assert _broken_rules(parsed) == {"hook-signatures"}
    assert "options" in parsed[0]["what"]


class WideEncoder(torch.nn.Module):
    def __init__(self, num: int, dim: int) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(num, dim + 1)  # one too wide

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.embedding(index)


def test_component_with_the_wrong_shape_is_named():
    module = fake_plugin("wide_encoder", encoders=[
        ComponentSpec("encoder", "too-wide", WideEncoder, {"num": 10, "dim": 4})])
    parsed = _failures("broken-encoder", module)
    assert _broken_rules(parsed) == {"component-shapes"}
    assert parsed[0]["subject"] == "encoder 'too-wide'"
    assert "expected (5, 4)" in parsed[0]["what"]


def test_component_defaults_that_build_cannot_take_are_named():
    module = fake_plugin("bad_defaults", heads=[
        ComponentSpec("head", "typo-head", torch.nn.MSELoss, {"reductio": "mean"})])
    parsed = _failures("broken-head", module)
    assert _broken_rules(parsed) == {"spec-fields"}
    assert "reductio" in parsed[0]["what"]


def test_unknown_plugin_suggests_installed_names(installed_catalog):
    with pytest.raises(ConformanceError, match=r"rule 'installed' broken: Unknown plugin "
                                               r"'clasic'. Did you mean 'classic'"):
        check_plugin("clasic", catalog=installed_catalog)


def test_pytest_helper_fails_with_the_kit_message_only():
    catalog = _catalog(("broken-shape", _model_plugin("wrong-shape", WrongShape)))
    with pytest.raises(pytest.fail.Exception) as info:
        assert_plugin_conforms("broken-shape", catalog=catalog)
    assert "rule 'score-shape' broken" in str(info.value)
    assert not info.value.pytrace


def test_every_rule_is_documented_with_a_message():
    assert all(text.endswith(".") and len(text) > 30 for text in RULES.values())


# =============================================================================== the guide
def test_guide_reference_is_generated_and_current():
    text = GUIDE.read_text(encoding="utf-8")
    stale = stale_blocks(text)
    assert not stale, (f"{GUIDE} is out of date in its generated blocks {stale}: run "
                       f"{REGENERATE}")
    assert render_guide(text) == text


def test_hook_reference_covers_every_hook_and_rule():
    from m6bench import hookspecs

    reference = BLOCKS["hook-reference"]()
    missing = [n for n in dir(hookspecs) if n.startswith("m6bench_") and f"`{n}`" not in reference]
    assert not missing, f"hooks missing from the generated reference: {missing}"
    rules = BLOCKS["conformance-rules"]()
    assert all(f"`{rule}`" in rules for rule in RULES)


def test_stale_guide_is_detected():
    text = GUIDE.read_text(encoding="utf-8")
    edited = text.replace("#### `m6bench_register_models`", "#### `m6bench_register_model`")
    assert stale_blocks(edited) == ["hook-reference"]
    assert render_guide(edited) == text


def test_command_line_prints_every_finding(capsys):
    from m6bench.testing import main

    assert main(["m6bench.builtin.components"]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "encoder 'id-embedding': rule 'component-shapes' holds" in out
    assert main(["no-such-plugin"]) == 1
    assert "rule 'installed' broken" in capsys.readouterr().out


def test_command_line_takes_a_model_name_and_checks_only_that_model(capsys):
    from m6bench.testing import main

    assert main(["pop"]) == 0
    out = capsys.readouterr().out
    assert "plugin 'classic'" in out and "model 'pop': rule 'no-leak' holds" in out
    assert "model 'bpr-mf'" not in out
