"""Allowed values declared on the recipes: refused before any data is loaded, one error type."""

from __future__ import annotations

import types

import optuna
import pytest
from click.testing import CliRunner

from m6bench import ConfigError, ModelSpec, Recommender, hookimpl, load_catalog
from m6bench.runs.config import resolve_config

BUILT_IN_PLUGINS = ("classic", "gnn-mf", "pct-cf", "m6-fusion", "deep")
# The enumerated config keys of the built-in recipes and their allowed values.
EXPECTED_CHOICES = {
    "bpr-mf": {"negatives": ("uniform", "true"), "kernel": ("auto", "fused", "tensor")},
    "ials": {"kernel": ("auto", "fused", "tensor")},
    "gnn-mf": {"negatives": ("uniform", "true")},
    "gnn-mf-rating": {"negatives": ("uniform", "true"), "finetune": ("head", "all")},
    "pct-cf": {"pair_domain": ("auto", "item", "user"),
               "domain_sampling": ("uniform", "balanced")},
    "m6-fusion": {"fusion": ("attention", "concat", "mean"), "combine": ("sum", "concat"),
                  "ranking_loss": ("softmax", "bpr"),
                  "context_source": ("profile", "interaction")},
}
SMALL = ("--dataset", "synthetic", "--dataset-opt", "n_users=200", "--dataset-opt",
         "n_items=120")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _built_in_specs(catalog):
    specs = [entry.value for entry in catalog.models if entry.plugin in BUILT_IN_PLUGINS]
    assert {spec.name for spec in specs} >= set(EXPECTED_CHOICES)
    return specs


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A data folder that does not exist: loading any real dataset would fail."""
    monkeypatch.setenv("M6BENCH_DATA_DIR", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("M6BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _invoke(*args):
    from m6bench.cli import main

    return CliRunner().invoke(main, list(args))


# ------------------------------------------------------------------- the declarations
def test_built_in_recipes_declare_their_enumerated_keys(catalog):
    for spec in _built_in_specs(catalog):
        assert dict(spec.choices) == EXPECTED_CHOICES.get(spec.name, {}), spec.name


def test_built_in_defaults_lie_inside_their_choices(catalog):
    for spec in _built_in_specs(catalog):
        for key, allowed in spec.choices.items():
            assert key in spec.defaults, (spec.name, key)
            assert allowed and spec.defaults[key] in allowed, (spec.name, key)
        resolve_config(spec.defaults, model_name=spec.name, choices=spec.choices)


def test_built_in_search_spaces_sample_inside_their_choices(catalog):
    for spec in _built_in_specs(catalog):
        if spec.search_space is None:
            continue
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(25):
            sampled = spec.search_space(study.ask())
            for key, allowed in spec.choices.items():
                assert sampled.get(key, spec.defaults[key]) in allowed, (spec.name, key)
            resolve_config(spec.defaults, overrides=sampled, model_name=spec.name,
                           choices=spec.choices)


def test_a_value_outside_the_choices_names_them(catalog):
    spec = catalog.models.get("gnn-mf-rating")
    with pytest.raises(ConfigError, match=r"finetune.*Choices: all, head\."):
        resolve_config(spec.defaults, overrides={"finetune": "bias"}, model_name=spec.name,
                       choices=spec.choices)


# ------------------------------------------------------------------ the command line
def test_a_misspelt_choice_exits_2_before_the_data_is_loaded(isolated):
    result = _invoke("run", "--plugin", "m6-fusion", "--benchmark", "ml-100k", "--set",
                     "fusion=atention", "--ledger", str(isolated / "ledger.jsonl"))
    assert result.exit_code == 2, result.output
    assert "fusion" in result.output and "attention, concat, mean" in result.output
    assert "Did you mean 'attention'" in result.output
    assert "M6BENCH_DATA_DIR" not in result.output  # no data error: nothing was loaded
    assert not (isolated / "ledger.jsonl").exists()


def test_the_same_run_with_a_valid_choice_reaches_the_data(isolated):
    """The control: with an allowed value the run goes on to load ml-100k, which the data
    folder lacks, so the error is then the data error."""
    result = _invoke("run", "--plugin", "m6-fusion", "--benchmark", "ml-100k", "--set",
                     "fusion=attention", "--ledger", str(isolated / "ledger.jsonl"))
    assert result.exit_code == 2, result.output
    assert "M6BENCH_DATA_DIR" in result.output and "fusion" not in result.output


@pytest.mark.parametrize("plugin, model, assignment", [
    ("classic", "bpr-mf", "negatives=hard"),
    ("gnn-mf", "gnn-mf", "negatives=hard"),
    ("gnn-mf", "gnn-mf-rating", "finetune=bias"),
    ("pct-cf", "pct-cf", "pair_domain=both"),
    ("pct-cf", "pct-cf", "domain_sampling=by-size"),
    ("m6-fusion", "m6-fusion", "ranking_loss=hinge"),
    ("m6-fusion", "m6-fusion", "context_source=session"),
])
def test_every_declared_choice_is_checked_before_loading(isolated, plugin, model, assignment):
    key = assignment.split("=")[0]
    result = _invoke("run", "--plugin", plugin, "--model", model, "--benchmark", "ml-100k",
                     "--set", assignment, "--ledger", str(isolated / "ledger.jsonl"))
    assert result.exit_code == 2, result.output
    assert f"value of {key!r}" in result.output and "Choices:" in result.output
    assert "M6BENCH_DATA_DIR" not in result.output


def test_a_sweep_with_a_value_outside_the_choices_is_refused_before_loading(isolated):
    result = _invoke("sweep", "--plugin", "m6-fusion", "--benchmark", "ml-100k", "--set",
                     "fusion=atention", "--trials", "2", "--ledger",
                     str(isolated / "ledger.jsonl"))
    assert result.exit_code == 2, result.output
    assert "attention, concat, mean" in result.output
    assert "M6BENCH_DATA_DIR" not in result.output


@pytest.mark.parametrize("plugin, model, assignment, message", [
    ("gnn-mf", "gnn-mf", "steps_per_epoch=0", "steps_per_epoch must be at least 1"),
    ("gnn-mf", "gnn-mf", "layers=-1", "layers must be 0 or more"),
    ("gnn-mf", "gnn-mf", "layer_weights=[1,2,3,4]", "layer_weights must be 3"),
    ("pct-cf", "pct-cf", "lambda=1.5", "must lie in"),
    ("m6-fusion", "m6-fusion", "id_dropout=1.0", "id_dropout must lie in"),
    ("m6-fusion", "m6-fusion", "text_dropout=1.0", "text_dropout must lie in"),
    ("deep", "neumf", "negatives=0", "negatives=0 must be at least 1"),
])
def test_range_checks_in_models_are_config_errors(isolated, plugin, model, assignment,
                                                  message):
    """Checks only a model can make (ranges, combinations, the data) raise ConfigError too,
    never ValueError: the run fails (recorded, exit 1) with the one configuration error."""
    result = _invoke("run", "--plugin", plugin, "--model", model, *SMALL, "--set",
                     assignment, "--ledger", str(isolated / "ledger.jsonl"), "--quiet")
    assert result.exit_code == 1, result.output
    assert "failed: ConfigError: " in result.output and message in result.output


# ------------------------------------------------------------------ a sampled value
class _Picky(Recommender):
    iterative = False

    def __init__(self, train, config):
        super().__init__(train, config)
        assert config["mode"] in ("a", "b"), "the model never sees an undeclared mode"
        self.register_buffer("popularity", train.item_popularity.clone())

    def fit_epoch(self, train, epoch):
        return {}

    def score(self, users):
        return self.popularity.expand(len(users), -1)


def test_a_sampled_value_outside_the_choices_fails_its_trial(isolated):
    from m6bench.sweeps.spec import ERROR_ATTR
    from m6bench.sweeps.sweep import sweep
    from m6bench_leaderboard import read_ledger

    plugin = types.ModuleType("picky")

    @hookimpl
    def m6bench_register_models(register):
        register(ModelSpec("picky", build=_Picky, defaults={"mode": "a", "k": 1},
                           choices={"mode": ("a", "b")},
                           search_space=lambda t: {
                               "mode": t.suggest_categorical("mode", ["a", "zz", "yy", "xx"]),
                               "k": t.suggest_int("k", 1, 50)}))

    plugin.m6bench_register_models = m6bench_register_models
    catalog = load_catalog([("picky", plugin)])
    ledger = isolated / "ledger.jsonl"
    result = sweep("picky", dataset="synthetic", dataset_options={"n_users": 200,
                                                                  "n_items": 120},
                   trials=8, seeds=0, ledger=ledger, catalog=catalog)
    trials = result.study.get_trials(deepcopy=False)
    refused = [t for t in trials if t.params.get("mode", "a") != "a"]
    assert refused, "the sampler never drew the undeclared value; change sampler_seed"
    for trial in refused:
        assert trial.state == optuna.trial.TrialState.FAIL
        error = trial.user_attrs.get(ERROR_ATTR, "")
        assert error.startswith("ConfigError") and "Choices: a, b" in error
    assert result.counts["complete"] > 0
    records = read_ledger(ledger).records
    assert all(r["config"]["mode"] in ("a", "b") for r in records if "config" in r)
