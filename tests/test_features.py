"""The shared side-table tokeniser, checked by hand, and the three plugins that read it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from m6bench import FeatureTokens, quantile_bands, tokenise_side_table
from m6bench_deep.fields import field_table
from m6bench_m6_fusion.components import CategoricalFeatureEncoder
from m6bench_pct_cf.features import feature_tensors

KINDS = {"gender": "categorical", "genres": "categorical_seq", "age": "numeric",
         "vector": "numeric_seq", "title": "text"}


def _table() -> pd.DataFrame:
    """Six entities: a categorical, a list, a number and text, each with missing values."""
    return pd.DataFrame({
        "gender": ["F", "M", None, "F", "M", float("nan")],
        "genres": ["Comedy Drama", "Drama", "Drama Drama", "", None, "Horror"],
        "age": [10.0, 20.0, 30.0, 40.0, np.nan, 60.0],
        "vector": [np.ones(2)] * 6,
        "title": ["Big Sleep", "big", "", None, "Sleep", "x"],
    })


# Default settings, 2 bands, min_count 2.  Age's one inner quantile (the median of 10, 20,
# 30, 40, 60) is 30: bands 0, 0, 1, 1, -, 1.  Entities holding each token: gender=F rows
# 0, 3; gender=M rows 1, 4; genres=Drama rows 0, 1, 2 (listed twice on row 2: one token);
# genres=Comedy and genres=Horror one row each (dropped); age#0 rows 0, 1; age#1 rows 2, 3,
# 5.  Sorted labels give the ids:
VOCABULARY = ("age#0", "age#1", "gender=F", "gender=M", "genres=Drama")
F, M, DRAMA, AGE0, AGE1 = 3, 4, 5, 1, 2
TOKENS = [  # fields gender, genres, age; one slot each (no field keeps two tokens)
    [[F], [DRAMA], [AGE0]],
    [[M], [DRAMA], [AGE0]],
    [[0], [DRAMA], [AGE1]],
    [[F], [0], [AGE1]],
    [[M], [0], [0]],
    [[0], [0], [AGE1]],
]


def test_quantile_bands_by_hand():
    ages = _table()["age"]
    assert quantile_bands(ages, 2).tolist() == [0, 0, 1, 1, -1, 1]
    # thirds: edges at 23.33 (20 + 10/3) and 36.67 (30 + 20/3)
    assert quantile_bands(ages, 3).tolist() == [0, 0, 1, 2, -1, 2]
    assert quantile_bands(ages, 1).tolist() == [-1] * 6
    # non-numbers and infinities are missing; tied edges merge into fewer bands
    assert quantile_bands(pd.Series(["1", "x", np.inf, 2]), 2).tolist() == [0, -1, -1, 1]
    assert quantile_bands(np.array([5.0, 5.0, 5.0, 7.0]), 4).tolist() == [1, 1, 1, 2]
    assert quantile_bands(np.array([np.nan, np.nan]), 4).tolist() == [-1, -1]


def test_categorical_lists_numbers_and_missing_values_by_hand():
    tokens = tokenise_side_table(_table(), KINDS, 6, bands=2)
    assert isinstance(tokens, FeatureTokens)
    assert tokens.vocabulary == VOCABULARY and tokens.size == 6
    assert tokens.fields == ("gender", "genres", "age")  # numeric_seq and text: no tokens
    assert tokens.tokens.dtype == torch.int64 and tokens.weights.dtype == torch.float32
    assert tokens.tokens.tolist() == TOKENS
    assert torch.equal(tokens.weights, (tokens.tokens > 0).float())


def test_rare_tokens_keep_their_share_or_not():
    kept = tokenise_side_table(_table(), KINDS, 6, bands=2, min_count=1)
    # seven tokens now: Comedy and Horror join, so genres ids are 5, 6, 7
    assert kept.vocabulary == ("age#0", "age#1", "gender=F", "gender=M", "genres=Comedy",
                               "genres=Drama", "genres=Horror")
    assert kept.tokens[0, 1].tolist() == [5, 6] and kept.weights[0, 1].tolist() == [0.5, 0.5]
    assert kept.tokens[1, 1].tolist() == [6, 0] and kept.weights[1, 1].tolist() == [1.0, 0.0]
    # min_count 2 drops Comedy from row 0: "kept" gives Drama the whole field, "all" half
    assert tokenise_side_table(_table(), KINDS, 6, bands=2).weights[0, 1].tolist() == [1.0]
    share = tokenise_side_table(_table(), KINDS, 6, bands=2, weight_over="all")
    assert share.weights[0, 1].tolist() == [0.5]
    assert share.weights[1, 1].tolist() == [1.0]


def test_known_entities_decide_which_tokens_exist():
    known = torch.tensor([True, True, True, False, False, False])
    tokens = tokenise_side_table(_table(), KINDS, 6, bands=2, known=known)
    # over rows 0-2: gender=F and gender=M once each, age#1 once: dropped everywhere
    assert tokens.vocabulary == ("age#0", "genres=Drama")
    assert tokens.fields == ("genres", "age")
    assert tokens.tokens[:, :, 0].tolist() == [[2, 1], [2, 1], [2, 0], [0, 0], [0, 0], [0, 0]]


def test_first_seen_ids_with_an_id_field():
    tokens = tokenise_side_table(_table(), KINDS, 6, bands=2, id_field="item",
                                 order="first-seen")
    assert tokens.fields == ("item", "gender", "genres", "age")
    assert tokens.tokens[:, 0, 0].tolist() == [1, 2, 3, 4, 5, 6]  # entity e -> e + 1
    # then F = 7, M = 8 (first seen rows 0, 1), Drama = 9, age#0 = 10, age#1 = 11
    assert tokens.tokens[:, 1:, 0].tolist() == [[7, 9, 10], [8, 9, 10], [0, 9, 11],
                                                 [7, 0, 11], [8, 0, 0], [0, 0, 11]]
    assert tokens.size == 12
    assert tokens.vocabulary[:7] == ("item=0", "item=1", "item=2", "item=3", "item=4",
                                     "item=5", "gender=F")


def test_empty_strings_duplicates_text_and_band_labels():
    table = pd.DataFrame({"c": ["", "", "x", "x"], "s": ["a a", "a", "b", "b b"],
                          "t": ["The big", "big THE", "", "the"], "n": [1.0, 2.0, 3.0, 4.0]})
    kinds = {"c": "categorical", "s": "categorical_seq", "t": "text", "n": "numeric"}
    plain = tokenise_side_table(table, kinds, 4, bands=2)
    assert plain.vocabulary == ("c=", "c=x", "n#0", "n#1", "s=a", "s=b")  # no text tokens
    missing = tokenise_side_table(table, kinds, 4, bands=2, empty_is_missing=True,
                                  band_label="#q{band}", token_kinds=(*kinds.values(),))
    assert missing.vocabulary == ("c=x", "n#q0", "n#q1", "s=a", "s=b", "t:big", "t:the")
    repeated = tokenise_side_table(table, {"s": "categorical_seq"}, 4, deduplicate=False)
    assert repeated.tokens[:, 0].tolist() == [[1, 1], [1, 0], [2, 0], [2, 2]]
    assert repeated.weights[0, 0].tolist() == [0.5, 0.5]
    bag = repeated.bag().to_dense()
    assert bag.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]


def test_flat_and_bag_layouts():
    tokens = tokenise_side_table(_table(), KINDS, 6, bands=2)
    ids, weights = tokens.flat()
    assert ids.tolist() == [[F, DRAMA, AGE0], [M, DRAMA, AGE0], [DRAMA, AGE1, 0],
                            [F, AGE1, 0], [M, 0, 0], [AGE1, 0, 0]]
    assert torch.equal(weights, (ids > 0).float())
    bag = tokens.bag()
    assert bag.layout == torch.sparse_csr and bag.shape == (6, 5)
    expected = torch.zeros(6, 5)
    for row, row_ids in enumerate(ids.tolist()):
        for token in row_ids:
            if token:
                expected[row, token - 1] = 1.0
    assert torch.equal(bag.to_dense(), expected)


def test_no_table_and_no_tokens():
    empty = tokenise_side_table(None, {}, 3)
    assert empty.tokens.shape == (3, 0, 1) and empty.vocabulary == () and empty.size == 1
    ids, weights = empty.flat()
    assert ids.shape == (3, 1) and not ids.any() and not weights.any()
    assert empty.bag().shape == (3, 1) and empty.bag().values().numel() == 0
    nothing = tokenise_side_table(pd.DataFrame({"c": [None, None]}), {"c": "categorical"}, 2)
    assert nothing.fields == () and nothing.tokens.shape == (2, 0, 1)
    ids_only = tokenise_side_table(None, {}, 2, id_field="user", order="first-seen")
    assert ids_only.tokens.tolist() == [[[1]], [[2]]] and ids_only.fields == ("user",)


def test_rows_beyond_n_are_ignored_but_count_for_band_edges():
    table = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0], "c": ["a", "a", "a", "b"]})
    short = tokenise_side_table(table, {"n": "numeric", "c": "categorical"}, 2, bands=2,
                                min_count=1)
    assert short.vocabulary == ("c=a", "n#0")  # the median is 2.5 over all four rows
    longer = tokenise_side_table(table, {"c": "categorical"}, 6, min_count=1)
    assert longer.tokens[4:].tolist() == [[[0]], [[0]]]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="cannot be tokenised"):
        tokenise_side_table(None, {}, 1, token_kinds=("numeric_seq",))
    with pytest.raises(ValueError, match="first-seen"):
        tokenise_side_table(None, {}, 1, order="alphabetical")


# ------------------------------------------------------------------- a reference version
def _reference(table, kinds, n, bands, min_count, known):
    """The plain-Python reading of the defaults (sorted ids, kept weights, deduplicated)."""
    per_entity = [[] for _ in range(n)]
    for column, kind in kinds.items():
        if kind == "numeric":
            band = quantile_bands(table[column], bands)
            cells = [[f"{column}#{b}"] if b >= 0 else [] for b in band.tolist()]
        elif kind in ("categorical", "categorical_seq"):
            cells = []
            for value in table[column].tolist():
                if value is None or (isinstance(value, float) and np.isnan(value)):
                    cells.append([])
                else:
                    parts = str(value).split() if kind == "categorical_seq" else [str(value)]
                    cells.append(list(dict.fromkeys(f"{column}={p}" for p in parts)))
        else:
            continue
        for row in range(n):
            per_entity[row].append((column, cells[row] if row < len(cells) else []))
    counts = {}
    for row in range(n):
        if known is None or known[row]:
            for _, labels in per_entity[row]:
                for label in labels:
                    counts[label] = counts.get(label, 0) + 1
    vocabulary = sorted(label for label, count in counts.items() if count >= min_count)
    index = {label: i + 1 for i, label in enumerate(vocabulary)}
    flat = []
    for row in range(n):
        tokens = []
        for _, labels in per_entity[row]:
            kept = [index[label] for label in labels if label in index]
            tokens += [(token, 1.0 / len(kept)) for token in kept]
        flat.append(tokens)
    return tuple(vocabulary), flat


@pytest.mark.parametrize("seed", range(6))
def test_random_tables_match_a_plain_python_reading(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    values = np.array(["a", "b", "c", "d", "e", ""], dtype=object)
    table = pd.DataFrame({
        "cat": [None if rng.random() < 0.2 else values[rng.integers(0, 6)] for _ in range(n)],
        "seq": [" ".join(rng.choice(values[:5], rng.integers(0, 4))) if rng.random() > 0.1
                else float("nan") for _ in range(n)],
        "num": np.where(rng.random(n) < 0.2, np.nan, rng.integers(0, 8, n).astype(float)),
    })
    kinds = {"cat": "categorical", "seq": "categorical_seq", "num": "numeric"}
    known = rng.random(n) < 0.7 if seed % 2 else None
    bands, min_count = int(rng.integers(2, 7)), int(rng.integers(1, 3))
    vocabulary, expected = _reference(table, kinds, n, bands, min_count, known)
    tokens = tokenise_side_table(table, kinds, n, bands=bands, min_count=min_count,
                                 known=None if known is None else torch.from_numpy(known))
    ids, weights = tokens.flat()
    assert tokens.vocabulary == vocabulary
    width = max(1, max(len(row) for row in expected))
    assert ids.shape == (n, width)
    for row, pairs in enumerate(expected):
        assert ids[row, : len(pairs)].tolist() == [token for token, _ in pairs]
        assert weights[row, : len(pairs)].tolist() == [
            np.float32(weight) for _, weight in pairs]
        assert not ids[row, len(pairs):].any()


# ------------------------------------------------------------------ the three plugins
def test_m6_fusion_encoder_reads_the_flat_tokens():
    encoder = CategoricalFeatureEncoder(6, 4, _table(), KINDS, bands=2, min_count=2)
    assert encoder.vocabulary == VOCABULARY and encoder.fields == ("gender", "genres", "age")
    assert encoder.tokens.tolist() == [[F, DRAMA, AGE0], [M, DRAMA, AGE0], [DRAMA, AGE1, 0],
                                       [F, AGE1, 0], [M, 0, 0], [AGE1, 0, 0]]
    # each field weighs 1 / (fields the entity has)
    third, half = np.float32(1 / 3), 0.5
    assert encoder.weights.tolist() == [[third] * 3, [third] * 3, [half, half, 0.0],
                                        [half, half, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    assert encoder.embedding.num_embeddings == 6


def test_pct_cf_bag_keeps_its_own_settings():
    tensors = feature_tensors(_table(), KINDS, 6, torch.device("cpu"))
    # 5 age bands of 5 distinct ages: one entity each, all dropped; title words big and
    # sleep are held by 2 entities each (case folded; "" and None are missing)
    assert tensors.vocabulary == ("gender=F", "gender=M", "genres=Drama", "title:big",
                                  "title:sleep")
    # genres weighs over all of an entity's genre tokens (Comedy dropped but counted) and a
    # repeated genre counts twice (row 2: 1/2 + 1/2)
    assert tensors.bags.to_dense().tolist() == [
        [1.0, 0.0, 0.5, 0.5, 0.5],
        [0.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 0.0, 1.0, 0.0, 0.0],
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
    ]
    assert tensors.numeric.shape == (6, 3)  # age and the two-wide vector column


def test_deep_fields_number_ids_by_first_appearance():
    fields = field_table(6, _table(), KINDS, bands=2, id_name="item")
    assert fields.names == ("item", "gender", "genres", "age")
    assert fields.vocabulary == 12
    assert fields.tokens[:, :, 0].tolist() == [[1, 7, 9, 10], [2, 8, 9, 10], [3, 0, 9, 11],
                                               [4, 7, 0, 11], [5, 8, 0, 0], [6, 0, 0, 11]]
    assert torch.equal(fields.weights, (fields.tokens > 0).float())
    no_id = field_table(6, _table(), KINDS, bands=2, with_id=False)
    assert no_id.names == ("gender", "genres", "age")
    assert no_id.tokens[:, 0, 0].tolist() == [1, 2, 0, 1, 2, 0]
