"""The evaluator against an independent implementation (ranx) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from m6bench import bag_sums, csr_row_entries
from m6bench.data.prepared import csr_matrix
from m6bench.evaluation.ranking import (
    beyond_accuracy,
    binary_metrics,
    evaluate_ranking,
    gini,
    ranking_metrics,
    rating_metrics,
    top_k,
)

KS = (1, 5, 10, 20)


def _random_problem(seed: int, n_users: int = 200, n_items: int = 500):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.standard_normal((n_users, n_items)).astype(np.float32))
    relevant = rng.random((n_users, n_items)) < rng.uniform(0.002, 0.05, size=(n_users, 1))
    masked = (rng.random((n_users, n_items)) < 0.05) & ~relevant
    return scores, relevant, masked


def _csr(dense: np.ndarray) -> torch.Tensor:
    users, items = np.nonzero(dense)
    return csr_matrix(users, items, dense.shape[0], dense.shape[1], torch.device("cpu"))


def _ranx_scores(scores, relevant, masked, metrics):
    ranx = pytest.importorskip("ranx")
    qrels, run = {}, {}
    for u in range(scores.shape[0]):
        rel = np.flatnonzero(relevant[u])
        if len(rel) == 0:
            continue
        qrels[f"u{u:05d}"] = {f"i{i}": 1 for i in rel}
        keep = np.flatnonzero(~masked[u])
        run[f"u{u:05d}"] = {f"i{i}": float(scores[u, i]) for i in keep}
    return ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), metrics, return_mean=False,
                         make_comparable=True), sorted(qrels)


# How a model may hand its scores over: the evaluator masks in place, so it must copy
# (always without an owner; views) or may write into a fresh batch; a column-major view
# must still be masked at the right (row, item) positions.
SCORE_LAYOUTS = {
    "copied": (lambda scores, users: scores[users], None),
    "fresh": (lambda scores, users: scores[users], torch.nn.Module()),
    "column-major view": (lambda scores, users: scores[users].T.contiguous().T,
                          torch.nn.Module()),
}


@pytest.mark.parametrize("layout", SCORE_LAYOUTS)
@pytest.mark.parametrize("every_user_has_truth", [True, False], ids=["all-users", "gaps"])
@pytest.mark.parametrize("seed", [0, 1])
def test_ranking_metrics_match_ranx(seed, every_user_has_truth, layout):
    scores, relevant, masked = _random_problem(seed)
    score_fn, owner = SCORE_LAYOUTS[layout]
    users = np.arange(scores.shape[0])
    if every_user_has_truth:  # each batch is a run of consecutive users
        relevant[users, users % scores.shape[1]] = True
        masked[users, users % scores.shape[1]] = False
    else:  # 40% of users have none: batches skip rows, which masking must respect
        relevant[np.random.default_rng(seed).random(scores.shape[0]) < 0.4] = False
    result = evaluate_ranking(
        lambda users: score_fn(scores, users), truth=_csr(relevant), masks=[_csr(masked)],
        ks=KS, n_items=scores.shape[1], item_popularity=torch.ones(scores.shape[1]),
        n_train_users=scores.shape[0], batch_size=64, owner=owner,
    )
    names = {"recall": "recall", "ndcg": "ndcg", "mrr": "mrr", "hit": "hit_rate",
             "precision": "precision", "map": "map"}
    metrics = [f"{ranx_name}@{k}" for ranx_name in names.values() for k in KS]
    expected, users = _ranx_scores(scores.numpy(), relevant, masked, metrics)
    assert [f"u{u:05d}" for u in result.users.tolist()] == users
    n_relevant = relevant[result.users.numpy()].sum(axis=1)
    for ours, theirs in names.items():
        for k in KS:
            reference = np.asarray(expected[f"{theirs}@{k}"], dtype=np.float64)
            if ours == "map":
                # ranx divides AP@k by all relevant items; m6bench (like RecBole) by min(n_rel, k)
                reference = reference * n_relevant / np.minimum(n_relevant, k)
            np.testing.assert_allclose(result.per_user[f"{ours}@{k}"].numpy(), reference,
                                       atol=1e-6, err_msg=f"{ours}@{k}")


def test_hand_computed_single_user():
    # ranking: items 3, 1, 0, 2 ; relevant {1, 2}
    hits = torch.tensor([[False, True, False, True]])
    out = ranking_metrics(hits, torch.tensor([2]), ks=(1, 2, 4))
    assert out["hit@1"].item() == 0 and out["hit@2"].item() == 1
    assert out["mrr@4"].item() == pytest.approx(0.5)
    assert out["recall@2"].item() == pytest.approx(0.5)
    assert out["precision@4"].item() == pytest.approx(0.5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert out["ndcg@4"].item() == pytest.approx(dcg / idcg)
    assert out["ndcg@2"].item() == pytest.approx((1 / math.log2(3)) / idcg)
    # AP@4 = (1/2 + 2/4) / min(2, 4)
    assert out["map@4"].item() == pytest.approx((0.5 + 0.5) / 2)
    # AP@2 = (1/2) / min(2, 2)
    assert out["map@2"].item() == pytest.approx(0.25)


def test_no_relevant_items_gives_zero_and_users_without_truth_are_skipped():
    out = ranking_metrics(torch.tensor([[False, False]]), torch.tensor([0]), ks=(2,))
    assert all(v.item() == 0 for v in out.values())
    truth = np.zeros((3, 4), dtype=bool)
    truth[1, 2] = True
    result = evaluate_ranking(lambda u: torch.zeros(len(u), 4), truth=_csr(truth), masks=[],
                              ks=(2,), n_items=4, item_popularity=torch.ones(4),
                              n_train_users=3)
    assert result.users.tolist() == [1]


def test_ties_are_broken_by_lower_item_index():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_k(scores, 4).tolist() == [[1, 2, 4, 0], [0, 1, 2, 3]]
    # a tie at the boundary only: 5.0 first, then the lowest index among the 1.0s
    boundary = torch.tensor([[1.0, 5.0, 1.0, 1.0]])
    assert top_k(boundary, 2).tolist() == [[1, 0]]


def test_k_larger_than_candidates():
    # 3 items, one masked: two candidates, K = 10 -> the masked item never counts as a hit
    truth = _csr(np.array([[False, False, True]]))
    mask = _csr(np.array([[True, False, False]]))
    result = evaluate_ranking(lambda u: torch.tensor([[9.0, 1.0, 0.5]]), truth=truth,
                              masks=[mask], ks=(10,), n_items=3, item_popularity=torch.ones(3),
                              n_train_users=1)
    # ranking after masking: item 1, item 2 (relevant at rank 2), item 0 (masked, -inf)
    assert result.per_user["recall@10"].item() == 1.0
    assert result.per_user["mrr@10"].item() == pytest.approx(0.5)
    assert result.per_user["precision@10"].item() == pytest.approx(1 / 10)  # ranks 4-10 miss
    assert result.recommended.tolist() == [[1, 2, 0]]


def test_candidate_restriction():
    truth = _csr(np.array([[False, True, False, False]]))
    candidates = torch.tensor([False, True, False, True])
    result = evaluate_ranking(lambda u: torch.tensor([[4.0, 1.0, 3.0, 2.0]]), truth=truth,
                              masks=[], ks=(1, 2), n_items=4, item_popularity=torch.ones(4),
                              n_train_users=1, candidates=candidates)
    # among candidates {1, 3}: item 3 (2.0) ranks above item 1 (1.0)
    assert result.per_user["hit@1"].item() == 0
    assert result.per_user["mrr@2"].item() == pytest.approx(0.5)


def test_beyond_accuracy_by_hand():
    recommended = torch.tensor([[0, 1], [0, 2]])
    popularity = torch.tensor([4.0, 2.0, 1.0, 1.0])
    out = beyond_accuracy(recommended, (2,), n_items=4, item_popularity=popularity,
                          n_train_users=4)
    assert out["coverage@2"] == pytest.approx(3 / 4)
    expected_novelty = np.mean([-math.log2(4 / 4), -math.log2(2 / 4), -math.log2(4 / 4),
                                -math.log2(1 / 4)])
    assert out["novelty@2"] == pytest.approx(expected_novelty)
    # counts per item: [2, 1, 1, 0]
    counts = np.array([2.0, 1.0, 1.0, 0.0])
    sorted_counts = np.sort(counts)
    n = len(counts)
    reference = (2 * np.arange(1, n + 1) - n - 1) @ sorted_counts / (n * counts.sum())
    assert out["gini@2"] == pytest.approx(reference)
    assert gini(torch.ones(5)) == 0.0


def test_rating_and_binary_metrics_against_scipy():
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(3)
    predicted = rng.normal(3, 1, 300)
    actual = rng.integers(1, 6, 300).astype(float)
    out = rating_metrics(torch.from_numpy(predicted), torch.from_numpy(actual))
    assert out["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - actual) ** 2)))
    assert out["mae"] == pytest.approx(np.mean(np.abs(predicted - actual)))

    logits = np.round(rng.normal(0, 1, 400), 1)  # rounded: ties on purpose
    labels = rng.random(400) < 1 / (1 + np.exp(-logits))
    out = binary_metrics(torch.from_numpy(logits), torch.from_numpy(labels))
    u_stat = mannwhitneyu(logits[labels], logits[~labels]).statistic
    assert out["auc"] == pytest.approx(u_stat / (labels.sum() * (~labels).sum()))
    probabilities = 1 / (1 + np.exp(-logits))
    reference = -np.mean(labels * np.log(probabilities) + (~labels) * np.log(1 - probabilities))
    assert out["logloss"] == pytest.approx(reference)


def test_bag_sums_gradient_adds_each_rows_occurrences_in_index_order():
    generator = torch.Generator().manual_seed(5)
    # bags of 0 to 300 rows, a table row repeated within and across bags, rows never used
    sizes = torch.randint(0, 300, (64,), generator=generator)
    sizes[[3, 40]] = 0
    indices = torch.randint(0, 90, (int(sizes.sum()),), generator=generator)
    offsets = sizes.cumsum(0) - sizes
    upstream = torch.randn(64, 16, generator=generator)
    results = []
    for sums in (bag_sums,
                 lambda t, i, o: torch.nn.functional.embedding_bag(i, t, o, mode="sum")):
        table = torch.randn(100, 16, generator=torch.Generator().manual_seed(6),
                            requires_grad=True)
        out = sums(table, indices, offsets)
        out.backward(upstream)
        results.append((out.detach(), table.grad))
    (out, grad), (bag_out, bag_grad) = results
    assert torch.equal(out, bag_out)  # the same forward
    assert torch.count_nonzero(grad[90:]) == 0 and torch.count_nonzero(out[[3, 40]]) == 0
    # an independent gradient, to the bit: every occurrence added to its row in index order
    bag_of = torch.repeat_interleave(torch.arange(64), sizes)
    in_order = torch.zeros(100, 16)
    for position, row in enumerate(indices.tolist()):
        in_order[row] += upstream[bag_of[position]]
    assert torch.equal(grad, in_order)
    # embedding_bag's own backward adds in another order at this size (equal to the bit for
    # pct-cf's batches of ~300k occurrences, which its stable radix sort keeps in order)
    torch.testing.assert_close(grad, bag_grad, rtol=1e-5, atol=1e-4)


def test_csr_row_entries_lists_each_rows_non_zeros_in_order():
    generator = torch.Generator().manual_seed(4)
    dense = (torch.rand(9, 7, generator=generator) < 0.35).float()
    dense[[2, 5]] = 0.0  # rows without a non-zero
    matrix = dense.to_sparse_csr()
    rows = torch.tensor([5, 3, 0, 3, 8, 2])  # any order, repeats, empty rows
    entries, counts = csr_row_entries(matrix.crow_indices(), rows)
    # an independent listing: each row's non-zero columns, read off the dense matrix
    expected = [dense[r].nonzero().flatten().tolist() for r in rows.tolist()]
    assert counts.tolist() == [len(columns) for columns in expected]
    assert matrix.col_indices()[entries].tolist() == [c for cols in expected for c in cols]
    empty, none = csr_row_entries(matrix.crow_indices(), torch.tensor([2, 5]))
    assert empty.numel() == 0 and none.tolist() == [0, 0]
