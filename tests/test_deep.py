"""deep: NeuMF, DeepFM, Wide&Deep, Mult-VAE: exact block-wise scoring, components, fields,
quality against popularity on synthetic data, and MovieLens 100K numbers (``real_data``)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import m6bench
from m6bench import BenchmarkSpec, LoadContext, load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.prepare import prepare_benchmark
from m6bench.testing import real_data_folder
from m6bench.training.loop import train_model
from m6bench_deep import FMInteraction
from m6bench_deep.fields import field_table

pytestmark = [pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
              pytest.mark.usefixtures("isolated")]

MODELS = ("neumf", "deepfm", "wide-deep", "mult-vae")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def bench(catalog, tmp_path_factory):
    spec = BenchmarkSpec("deep-small", dataset="synthetic",
                         dataset_options={"n_users": 300, "n_items": 150, "density": 0.1,
                                          "seed": 3}, ks=(10,))
    context = LoadContext(data_dir=None, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return prepare_benchmark(catalog, spec, seed=0, device=torch.device("cpu"),
                             context=context)


def _build(catalog, bench, name, **overrides):
    spec = catalog.models.get(name)
    config = resolve_config(spec.defaults, overrides=overrides, model_name=name)
    torch.manual_seed(0)
    return spec.build(bench.train, config), config


# ----------------------------------------------------------------------------- components
def test_fm_interaction_equals_the_sum_over_field_pairs():
    fields = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0))
    brute = sum((fields[:, f] * fields[:, g]).sum(-1) for f in range(5) for g in range(f + 1, 5))
    torch.testing.assert_close(FMInteraction()(fields), brute)
    # two groups of fields are one set of fields
    torch.testing.assert_close(FMInteraction()(fields[:, :2], fields[:, 2:]), brute)


def test_field_table_tokenises_ids_categories_lists_and_bands():
    table = pd.DataFrame({"gender": ["F", "M", "F", None], "genres": ["A B", "B", "A", "C"],
                          "year": [1990.0, 2000.0, 2010.0, float("nan")]})
    kinds = {"gender": "categorical", "genres": "categorical_seq", "year": "numeric"}
    fields = field_table(4, table, kinds, bands=2, id_name="item")
    assert fields.names == ("item", "gender", "genres", "year")
    assert fields.tokens.shape == (4, 4, 2)
    # every entity has its own id token; "C" (held once) and the missing gender are empty
    assert len(set(fields.tokens[:, 0, 0].tolist())) == 4
    assert fields.weights[3, 1].sum() == 0 and fields.weights[3, 2].sum() == 0
    # a two-genre item averages its genres: weights 1/2 each
    assert fields.weights[0, 2].tolist() == [0.5, 0.5]
    assert fields.tokens.max() < fields.vocabulary


# ----------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("name", ["neumf", "deepfm", "wide-deep"])
def test_blockwise_score_equals_the_pairwise_logits(catalog, bench, name, monkeypatch):
    import m6bench_deep.models as models

    model, _ = _build(catalog, bench, name)
    model.fit_epoch(bench.train, 1)
    model.eval()
    # tiny blocks, so the block loop really runs several times
    monkeypatch.setattr(models, "SCORE_BLOCK_ELEMENTS", 2 * bench.train.n_items * 64)
    users = torch.tensor([0, 5, 17, 42, 299])
    with torch.no_grad():
        scores = model.score(users)
        items = torch.arange(bench.train.n_items)
        pairwise = torch.stack([model.pair_logits(u.repeat(items.numel()), items)
                                for u in users])
    assert scores.shape == (5, bench.train.n_items)
    torch.testing.assert_close(scores, pairwise, rtol=1e-4, atol=1e-4)


def test_deepfm_and_wide_deep_use_the_side_features(catalog, bench):
    model, _ = _build(catalog, bench, "deepfm")
    assert model.user_fields == ("user", "age", "gender")
    assert model.item_fields == ("item", "genres", "year")
    plain, _ = _build(catalog, bench, "wide-deep", side_features=False)
    assert plain.user_fields == ("user",) and plain.item_fields == ("item",)


def test_mult_vae_anneals_beta_and_scores_from_the_user_row(catalog, bench):
    model, _ = _build(catalog, bench, "mult-vae", anneal_steps=4)
    model.fit_epoch(bench.train, 1)
    assert int(model.updates) == -(-bench.train.n_users // model.batch_size)
    model.eval()
    with torch.no_grad():
        first = model.score(torch.tensor([0, 1]))
        model.rows[0] = 0.0  # forget user 0's history: only its scores change
        second = model.score(torch.tensor([0, 1]))
    assert not torch.equal(first[0], second[0])
    torch.testing.assert_close(first[1], second[1])


def test_bad_configs_fail_with_the_fix(catalog, bench):
    with pytest.raises(m6bench.ConfigError, match="negatives"):
        _build(catalog, bench, "neumf", negatives=0)
    with pytest.raises(m6bench.ConfigError, match="mlp_hidden"):
        _build(catalog, bench, "deepfm", mlp_hidden=[])


# ----------------------------------------------------------------------------- quality
def _train(catalog, bench, name, **overrides):
    model, config = _build(catalog, bench, name, **overrides)
    outcome = train_model(model, bench, config, tasks=("ranking",))
    return outcome.test.metrics["ndcg@10"]


def test_every_deep_baseline_beats_popularity_on_synthetic(catalog, bench):
    pop = catalog.models.get("pop").build(bench.train, {})
    pop_ndcg = train_model(pop, bench, resolve_config({}), tasks=("ranking",)).test.metrics[
        "ndcg@10"]
    # The small training set (about 3,700 interactions) needs small batches to get enough
    # optimiser steps in 12 epochs.
    pointwise = {"epochs": 12, "lr": 5e-3, "batch_size": 256}
    budgets = {"neumf": pointwise, "deepfm": pointwise, "wide-deep": pointwise,
               "mult-vae": {"epochs": 60}}
    scores = {name: _train(catalog, bench, name, **budgets[name]) for name in MODELS}
    print(f"\nsynthetic NDCG@10: pop {pop_ndcg:.4f}, "
          + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    for name, ndcg in scores.items():
        assert ndcg > pop_ndcg * 1.3, (name, ndcg, pop_ndcg)


# ----------------------------------------------------------------------------- MovieLens



# Test NDCG@10 floors with defaults, seed 0 (measured values in the plugin's report: each
# floor sits well below its model's number and above popularity's 0.14).
ML100K_FLOORS = {"mult-vae": 0.26}


@pytest.mark.real_data
def test_mult_vae_on_ml100k_beats_popularity_by_far(catalog, tmp_path):
    real_data_folder("recbole-ml-100k", purpose="the MovieLens 100K numbers")
    record = m6bench.run(plugin="deep", model="mult-vae", dataset="ml-100k", seed=0,
                         catalog=catalog, ledger=tmp_path / "ledger.jsonl", device="cpu")
    assert record["status"] == "ok", record.get("error")
    ndcg = record["metrics"]["test"]["ndcg@10"]
    print(f"\nml-100k mult-vae test NDCG@10 {ndcg:.4f}")
    assert ndcg >= ML100K_FLOORS["mult-vae"]
