"""The classic baselines plugin: exact algebra on tiny matrices, sanity ordering on the
synthetic default, determinism, and quality targets on MovieLens 100K (``real_data``)."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest
import scipy.linalg
import torch

import m6bench
import m6bench_classic
from m6bench import TrainSet, load_catalog
from m6bench.testing import assert_plugin_conforms, real_data_folder
from m6bench_classic import EASE, ItemKNN, Popularity, RandomScores
from m6bench_classic._ials_kernel import solve_side_rows
from m6bench_classic._sparse import rows_times_dense
from m6bench_classic.factorisation import ials_loss, solve_side_cg, solve_side_exact

# Users x items; no two items share a column, so similarities have no ties that would make
# the choice of neighbours ambiguous.
TINY = np.array(
    [
        [1, 1, 0, 0, 1],
        [1, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1],
        [1, 0, 0, 0, 0],
    ],
    dtype=np.float32,
)


@pytest.fixture(autouse=True)
def _isolated(isolated, module_cache):
    # One temporary cache for the module: each dataset is generated and cut once, not per test.
    isolated.share_cache(module_cache)


@pytest.fixture(scope="module")
def catalog():
    """The catalog with the classic plugin: through its entry point when the distribution is
    installed, else registered directly (a plain checkout on ``PYTHONPATH``)."""
    found = load_catalog()
    if "classic" in found.plugins:
        return found
    return load_catalog(plugins=[("classic", m6bench_classic)])


def tiny_train(matrix: np.ndarray, catalog, seed: int = 0) -> TrainSet:
    users, items = np.nonzero(matrix)
    dense = torch.from_numpy(matrix)
    return TrainSet(
        n_users=matrix.shape[0], n_items=matrix.shape[1],
        users=torch.from_numpy(users.astype(np.int64)),
        items=torch.from_numpy(items.astype(np.int64)),
        ratings=None, timestamps=None, domains=None,
        matrix=dense.to_sparse_csr(),
        item_popularity=dense.sum(dim=0),
        user_features=None, item_features=None,
        user_feature_kinds={}, item_feature_kinds={}, item_text=None,
        device=torch.device("cpu"), seed=seed,
        generator=torch.Generator().manual_seed(seed),
        components=catalog,
    )


def fitted(model_class, train: TrainSet, **config):
    model = model_class(train, config)
    model.fit_epoch(train, 1)
    return model


def all_users(train: TrainSet) -> torch.Tensor:
    return torch.arange(train.n_users)


# ------------------------------------------------------------------ exact algebra


def test_ease_matches_closed_form_in_numpy(catalog):
    l2 = 3.0
    train = tiny_train(TINY, catalog)
    model = fitted(EASE, train, l2=l2)

    gram = TINY.T.astype(np.float64) @ TINY + l2 * np.eye(TINY.shape[1])
    precision = scipy.linalg.inv(gram)
    expected = -precision / np.diag(precision)[np.newaxis, :]
    np.fill_diagonal(expected, 0.0)

    np.testing.assert_allclose(model.item_weights.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.score(all_users(train)).numpy(), TINY @ expected,
                               rtol=1e-5, atol=1e-6)
    assert "item_weights" in model.state_dict()


def test_ease_weights_survive_a_state_dict_round_trip(catalog):
    train = tiny_train(TINY, catalog)
    model = fitted(EASE, train, l2=3.0)
    restored = EASE(train, {"l2": 3.0})
    restored.load_state_dict(model.state_dict())
    assert torch.equal(restored.score(all_users(train)), model.score(all_users(train)))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "weighted"])
def test_rows_times_dense_equals_the_dense_product_across_column_blocks(binary):
    generator = np.random.default_rng(3)
    matrix = (generator.random((7, 50)) < 0.2).astype(np.float32)
    matrix[4] = 0.0  # a row without entries gives a zero row
    if not binary:
        matrix *= generator.integers(1, 6, size=matrix.shape)
    # 900 columns span three of the CPU's column blocks, the last one partial.
    dense = generator.standard_normal((50, 900)).astype(np.float32)
    rows = np.array([6, 0, 4, 0, 3])  # any order, repeats allowed

    product_rows = rows_times_dense(torch.from_numpy(matrix).to_sparse_csr(),
                                    torch.from_numpy(rows), torch.from_numpy(dense))

    expected = matrix[rows].astype(np.float64) @ dense
    np.testing.assert_allclose(product_rows.numpy(), expected, rtol=1e-5, atol=1e-5)


def hand_cosine(matrix: np.ndarray, shrink: float) -> np.ndarray:
    """sim[j, i] = <x_i, x_j> / (|x_i| |x_j| + shrink + 1e-6), zero on the diagonal, one pair
    at a time."""
    n_items = matrix.shape[1]
    similarity = np.zeros((n_items, n_items))
    for j, i in product(range(n_items), repeat=2):
        if i != j:
            column_i, column_j = matrix[:, i], matrix[:, j]
            norms = math.sqrt(column_i @ column_i) * math.sqrt(column_j @ column_j)
            similarity[j, i] = (column_i @ column_j) / (norms + shrink + 1e-6)
    return similarity


@pytest.mark.parametrize("shrink", [0.0, 2.0])
def test_itemknn_keeping_every_neighbour_is_shrunk_cosine(catalog, shrink):
    train = tiny_train(TINY, catalog)
    model = fitted(ItemKNN, train, k=TINY.shape[1] - 1, shrink=shrink, block_size=2)
    expected = hand_cosine(TINY, shrink)
    np.testing.assert_allclose(model.similarity_matrix().to_dense().numpy(), expected,
                               rtol=1e-5, atol=1e-7)
    # score(u, j) = sum of sim(j, i) over the items i that u interacted with.
    np.testing.assert_allclose(model.score(all_users(train)).numpy(), TINY @ expected.T,
                               rtol=1e-5, atol=1e-6)


def test_itemknn_keeps_only_the_k_most_similar_items(catalog):
    k = 2
    train = tiny_train(TINY, catalog)
    model = fitted(ItemKNN, train, k=k, shrink=1.0, block_size=3)
    full = hand_cosine(TINY, 1.0)
    expected = np.zeros_like(full)
    for j in range(full.shape[0]):
        top = np.argsort(-full[j], kind="stable")[:k]
        expected[j, top] = full[j, top]
    np.testing.assert_allclose(model.similarity_matrix().to_dense().numpy(), expected,
                               rtol=1e-5, atol=1e-7)
    assert model.neighbours.shape == model.weights.shape == (TINY.shape[1], k)


BPR_CONFIG = {"dim": 5, "init_std": 0.3, "lr": 0.05, "l2": 0.05, "batch_size": 6,
              "negatives": "true", "report_loss": True, "kernel": "tensor"}
# Repeated users and items: their rows' gradients must add up.
BPR_USERS = torch.tensor([0, 3, 3, 8, 0, 5])
BPR_POSITIVES = torch.tensor([1, 1, 4, 6, 2, 1])
BPR_NEGATIVES = torch.tensor([6, 0, 1, 1, 6, 3])


def bpr_model(catalog):
    from m6bench_classic.factorisation import BPRMF

    rng = np.random.default_rng(0)
    return BPRMF(tiny_train(rng.random((9, 7)) < 0.4, catalog), BPR_CONFIG)


def autograd_bpr_loss(model, users, positives, negatives):
    """The batch's summed BPR loss through the model's components, with autograd on."""
    user_vectors = model.user_encoder(users)
    positive_vectors = model.item_encoder(positives)
    negative_vectors = model.item_encoder(negatives)
    ranking = model.head(model.fusion(user_vectors, positive_vectors),
                         model.fusion(user_vectors, negative_vectors)) * users.numel()
    l2 = BPR_CONFIG["l2"] * sum(v.pow(2).sum() for v in (user_vectors, positive_vectors,
                                                          negative_vectors))
    return ranking, l2


def test_bpr_mf_hand_gradients_equal_autograd_through_its_components(catalog):
    model = bpr_model(catalog)
    items = torch.cat([BPR_POSITIVES, BPR_NEGATIVES])
    user_rows, item_rows, bpr, l2 = model.row_gradients(BPR_USERS, items)
    hand_users = torch.zeros(9, 5).index_add_(0, BPR_USERS, user_rows)
    hand_items = torch.zeros(7, 5).index_add_(0, items, item_rows)

    expected_bpr, expected_l2 = autograd_bpr_loss(model, BPR_USERS, BPR_POSITIVES,
                                                  BPR_NEGATIVES)
    (expected_bpr + expected_l2).backward()
    assert float(bpr) == pytest.approx(expected_bpr.item(), rel=1e-6)
    assert float(l2) == pytest.approx(expected_l2.item(), rel=1e-6)
    torch.testing.assert_close(hand_users, model.user_encoder.weight.grad)
    torch.testing.assert_close(hand_items, model.item_encoder.weight.grad)
    assert hand_users[[1, 2, 4, 6, 7]].abs().sum() == 0  # users outside the batch


def test_bpr_mf_steps_are_torch_adagrad_on_the_autograd_gradient(catalog):
    model = bpr_model(catalog)
    reference = bpr_model(catalog)
    reference.load_state_dict(model.state_dict())
    initial_users = model.user_encoder.weight.clone()
    tables = [reference.user_encoder.weight, reference.item_encoder.weight]
    optimizer = torch.optim.Adagrad(tables, lr=BPR_CONFIG["lr"])
    # Three steps: the second and third divide by sums of squares the first ones built.
    for shift in range(3):
        users, positives = BPR_USERS.roll(shift), BPR_POSITIVES.roll(shift)
        bpr, l2 = model.step(users, positives, BPR_NEGATIVES)
        optimizer.zero_grad()
        expected_bpr, expected_l2 = autograd_bpr_loss(reference, users, positives,
                                                      BPR_NEGATIVES)
        (expected_bpr + expected_l2).backward()
        optimizer.step()
        assert float(bpr + l2) == pytest.approx((expected_bpr + expected_l2).item(), rel=1e-5)
        torch.testing.assert_close(model.user_encoder.weight, tables[0])
        torch.testing.assert_close(model.item_encoder.weight, tables[1])
    moved = (model.user_encoder.weight != initial_users).any(dim=1)
    assert moved.tolist() == [True, False, False, True, False, True, False, False, True]


@pytest.mark.parametrize("kernel", ["tensor", "fused"])
def test_bpr_mf_logs_its_loss_only_when_asked_and_trains_the_same(catalog, kernel):
    from m6bench_classic.factorisation import BPRMF

    matrix = np.random.default_rng(0).random((9, 7)) < 0.4
    quiet_train, logged_train = tiny_train(matrix, catalog), tiny_train(matrix, catalog)
    quiet = BPRMF(quiet_train, {**BPR_CONFIG, "report_loss": False, "kernel": kernel})
    logged = BPRMF(logged_train, {**BPR_CONFIG, "report_loss": True, "kernel": kernel})
    logged.load_state_dict(quiet.state_dict())
    for epoch in (1, 2):
        assert quiet.fit_epoch(quiet_train, epoch) == {}
        losses = logged.fit_epoch(logged_train, epoch)
        assert set(losses) == {"bpr", "l2"} and all(v > 0 for v in losses.values())
        # The same batches and the same steps, bit for bit: the loss only reads the rows.
        assert torch.equal(quiet.user_encoder.weight, logged.user_encoder.weight)
        assert torch.equal(quiet.item_encoder.weight, logged.item_encoder.weight)
    assert quiet.step(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]),
                      with_loss=False) is None


def fused_kernel(model, train, max_batch: int, max_bitmap_pairs: int = 2**20):
    from m6bench_classic._bpr_kernel import FusedBPR

    return FusedBPR(tuple(bpr_tables(model)), train.users, train.items,
                    train.matrix.crow_indices().numpy(), train.matrix.col_indices().numpy(),
                    train.n_items, max_batch=max_batch, max_bitmap_pairs=max_bitmap_pairs)


def bpr_tables(model) -> list[torch.Tensor]:
    return [model.user_encoder.weight, model.user_squares, model.item_encoder.weight,
            model.item_squares]


def test_bpr_mf_fused_step_is_the_tensor_step(catalog):
    from m6bench_classic.factorisation import ADAGRAD_EPS

    tensor_model, fused_model = bpr_model(catalog), bpr_model(catalog)
    fused_model.load_state_dict(tensor_model.state_dict())
    kernel = fused_kernel(fused_model, tiny_train(np.eye(9, 7, dtype=bool), catalog), 8)
    lr, decay = BPR_CONFIG["lr"], 2 * BPR_CONFIG["l2"]
    for shift in range(3):  # later steps divide by the sums of squares the first ones built
        users, positives = BPR_USERS.roll(shift), BPR_POSITIVES.roll(shift)
        bpr, l2 = tensor_model.step(users, positives, BPR_NEGATIVES)
        fused_bpr, norms = kernel.step(users, positives, BPR_NEGATIVES, lr, decay,
                                       ADAGRAD_EPS, with_loss=True)
        assert fused_bpr == pytest.approx(float(bpr), rel=1e-5)
        assert BPR_CONFIG["l2"] * norms == pytest.approx(float(l2), rel=1e-5)
        for fused, tensor in zip(bpr_tables(fused_model), bpr_tables(tensor_model)):
            torch.testing.assert_close(fused, tensor, rtol=1e-5, atol=1e-6)
    assert kernel.step(BPR_USERS, BPR_POSITIVES, BPR_NEGATIVES, lr, decay, ADAGRAD_EPS,
                       with_loss=False) == (0.0, 0.0)


@pytest.mark.parametrize("max_bitmap_pairs", [0, 1000], ids=["binary-search", "bitmap"])
def test_bpr_mf_fused_true_negatives_are_uniform_over_unseen_items(catalog, max_bitmap_pairs):
    import scipy.stats

    # User 0 has seen items 0-4 and 9 of 10; user 1 every item; user 2 none.
    matrix = np.zeros((3, 10), dtype=bool)
    matrix[0, [0, 1, 2, 3, 4, 9]] = matrix[1] = True
    train = tiny_train(matrix, catalog)
    kernel = fused_kernel(bpr_model(catalog), train, 4, max_bitmap_pairs)
    assert kernel.history[2].size == (0 if max_bitmap_pairs == 0 else 4)  # 30 bits
    users = torch.zeros(20_000, dtype=torch.int64)
    negatives = kernel.negatives(users, seed=7).numpy()
    counts = np.bincount(negatives, minlength=10)
    assert counts[[0, 1, 2, 3, 4, 9]].sum() == 0
    assert scipy.stats.chisquare(counts[5:9]).pvalue > 1e-3, counts
    assert np.array_equal(negatives, kernel.negatives(users, seed=7).numpy())
    assert not np.array_equal(negatives, kernel.negatives(users, seed=8).numpy())
    uniform = np.bincount(kernel.negatives(users, 7, true_negatives=False).numpy(),
                          minlength=10)
    assert scipy.stats.chisquare(uniform).pvalue > 1e-3, uniform  # training items too
    # No unseen item: the last of the bounded draws stands, still a valid item.
    full = kernel.negatives(torch.ones(50, dtype=torch.int64), seed=7)
    assert bool(((full >= 0) & (full < 10)).all())
    unseen = kernel.negatives(torch.full((5_000,), 2), seed=7).numpy()
    assert set(np.unique(unseen)) == set(range(10))


def test_bpr_mf_fused_epoch_is_a_shuffle_of_the_training_pairs_in_batches(catalog):
    """The epoch's steps, replayed one batch at a time through the tensor step from the same
    order and negatives, give the same tables: every pair once, in batches of batch_size."""
    from m6bench_classic._bpr_kernel import _GOLDEN, NEGATIVE_TRIES, _mix
    from m6bench_classic.factorisation import ADAGRAD_EPS

    matrix = np.random.default_rng(3).random((9, 7)) < 0.4
    train = tiny_train(matrix, catalog)
    fused_model, tensor_model = bpr_model(catalog), bpr_model(catalog)
    tensor_model.load_state_dict(fused_model.state_dict())
    kernel = fused_kernel(fused_model, train, max_batch=6)
    lr, decay = BPR_CONFIG["lr"], 2 * BPR_CONFIG["l2"]
    kernel.epoch(11, True, lr, decay, ADAGRAD_EPS, with_loss=False)
    # Fisher-Yates by hand from the counters after the negatives' (n pairs x their tries).
    n, seed = train.n_interactions, 11
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        counter = (seed + (n * NEGATIVE_TRIES + i) * int(_GOLDEN)) % 2**64
        j = int(_mix(np.uint64(counter)) % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]
    users, positives = train.users[order], train.items[order]
    negatives = kernel.negatives(users, seed)
    assert not bool(torch.from_numpy(matrix)[users, negatives].any())
    for start in range(0, n, 6):
        batch = slice(start, start + 6)
        tensor_model.step(users[batch], positives[batch], negatives[batch])
    for fused, tensor in zip(bpr_tables(fused_model), bpr_tables(tensor_model)):
        torch.testing.assert_close(fused, tensor, rtol=1e-5, atol=1e-6)


def test_fused_kernels_are_refused_off_the_cpu():
    from m6bench import ConfigError
    from m6bench_classic.factorisation import _wants_fused_kernel

    assert _wants_fused_kernel("auto", torch.device("cpu"), "ials")
    assert not _wants_fused_kernel("auto", torch.device("meta"), "ials")
    assert not _wants_fused_kernel("tensor", torch.device("cpu"), "ials")
    with pytest.raises(ConfigError, match="bpr-mf: kernel='fused' runs on a CPU only"):
        _wants_fused_kernel("fused", torch.device("meta"), "bpr-mf")
    with pytest.raises(ConfigError, match="kernel='gpu' is not one of"):
        _wants_fused_kernel("gpu", torch.device("cpu"), "ials")


def test_distinct_rows_equal_torch_unique():
    from m6bench_classic.factorisation import distinct_rows

    index = torch.tensor([7, 2, 7, 0, 9, 2, 2])
    rows, position = distinct_rows(index, 12)
    expected_rows, expected_position = torch.unique(index, return_inverse=True)
    assert rows.tolist() == expected_rows.tolist() == [0, 2, 7, 9]
    assert position.tolist() == expected_position.tolist()


@pytest.mark.parametrize("extra_rows", [0, 2], ids=["dense-pass", "distinct-rows"])
def test_adagrad_rows_adds_up_repeated_rows_before_squaring(extra_rows):
    # Three gathered indices: a 3-row table takes the dense pass, a 5-row one the
    # distinct-rows path; both must give the same hand-computed step.
    from m6bench_classic.factorisation import ADAGRAD_EPS, adagrad_rows

    untouched = [[7.0 + row, -1.0] for row in range(extra_rows)]
    table = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], *untouched])
    squares = torch.tensor([[0.0, 0.0], [0.0, 0.0], [9.0, 16.0]] + [[1.0, 1.0]] * extra_rows)
    # Row 2 receives (1, 1) twice: its gradient is (2, 2), its sums become 9 + 4, 16 + 4.
    adagrad_rows(table, squares, torch.tensor([2, 0, 2]),
                 torch.tensor([[1.0, 1.0], [0.5, -2.0], [1.0, 1.0]]), lr=0.1)
    torch.testing.assert_close(squares, torch.tensor(
        [[0.25, 4.0], [0.0, 0.0], [13.0, 20.0]] + [[1.0, 1.0]] * extra_rows))
    expected = torch.tensor([
        [1.0 - 0.1 * 0.5 / (0.5 + ADAGRAD_EPS), 2.0 + 0.1 * 2.0 / (2.0 + ADAGRAD_EPS)],
        [3.0, 4.0],  # never touched
        [5.0 - 0.1 * 2.0 / math.sqrt(13.0), 6.0 - 0.1 * 2.0 / math.sqrt(20.0)],
        *untouched,
    ])
    torch.testing.assert_close(table, expected)


def test_ials_half_step_is_the_confidence_weighted_least_squares_solution():
    alpha, l2, dim = 2.0, 0.5, 3
    item_factors = np.random.default_rng(0).normal(size=(TINY.shape[1], dim))
    expected = np.empty((TINY.shape[0], dim))
    for user, preferences in enumerate(TINY.astype(np.float64)):
        confidence = np.diag(1.0 + alpha * preferences)  # Hu et al. 2008, eq. 4
        system = item_factors.T @ confidence @ item_factors + l2 * np.eye(dim)
        expected[user] = np.linalg.solve(system, item_factors.T @ confidence @ preferences)

    fixed = torch.from_numpy(item_factors).float()
    interactions = torch.from_numpy(TINY).to_sparse_csr()
    exact = solve_side_exact(fixed, interactions, alpha, l2, block_size=4)
    # Conjugate gradient is exact after `dim` steps in exact arithmetic; allow a few more.
    by_cg = solve_side_cg(fixed, interactions, torch.zeros(TINY.shape[0], dim), alpha, l2,
                          steps=3 * dim)
    np.testing.assert_allclose(exact.numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(by_cg.numpy(), expected, rtol=1e-4, atol=1e-5)
    by_rows = solve_side_rows(fixed, interactions.crow_indices().numpy(),
                              interactions.col_indices().numpy(), torch.zeros(TINY.shape[0], dim),
                              alpha, l2, steps=3 * dim, threads=2)
    np.testing.assert_allclose(by_rows.numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_ials_row_wise_cg_is_the_tensor_cg_step_for_step(steps):
    """A few warm-started steps (far from converged): every row's iterate must match the
    tensor CG's, rows with no positives and a row that starts at its solution included."""
    rng = np.random.default_rng(4)
    matrix = rng.random((30, 12)) < 0.3
    matrix[5] = False
    fixed = torch.from_numpy(rng.normal(size=(12, 8))).float()
    current = torch.from_numpy(rng.normal(size=(30, 8))).float()
    interactions = torch.from_numpy(matrix).float().to_sparse_csr()
    current[7] = solve_side_exact(fixed, interactions, 2.0, 0.5, block_size=30)[7]
    expected = solve_side_cg(fixed, interactions, current, 2.0, 0.5, steps)
    results = [solve_side_rows(fixed, interactions.crow_indices().numpy(),
                               interactions.col_indices().numpy(), current, 2.0, 0.5, steps,
                               threads) for threads in (1, 2)]
    torch.testing.assert_close(results[0], expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(results[0], results[1])  # no sum crosses rows


def test_pop_ranks_items_by_training_count(catalog):
    train = tiny_train(TINY, catalog)
    scores = fitted(Popularity, train).score(torch.tensor([0, 3, 5]))
    counts = TINY.sum(axis=0)
    assert scores.shape == (3, TINY.shape[1])
    for row in scores.numpy():
        np.testing.assert_array_equal(np.floor(row), counts)
        np.testing.assert_array_equal(row, scores[0].numpy())  # one list for every user
    ranked_counts = counts[torch.argsort(scores[0], descending=True).numpy()]
    assert ranked_counts.tolist() == sorted(counts.tolist(), reverse=True)


def test_pop_breaks_ties_by_a_seeded_permutation_not_by_item_index(catalog):
    # Every item unseen, as on a cold-item benchmark: the ranking is all tie-break.
    n_items = 200
    empty = np.zeros((3, n_items), dtype=np.float32)
    empty[0, 0] = 1  # one interaction so the matrix has a row; item 0 then leads
    def ranking(seed: int) -> list[int]:
        scores = fitted(Popularity, tiny_train(empty, catalog, seed=seed)).score(
            torch.tensor([1]))[0]
        assert len(set(scores.tolist())) == n_items, "a tie survived"
        return torch.argsort(scores, descending=True).tolist()

    first, again, other = ranking(3), ranking(3), ranking(4)
    assert first == again
    assert first != other
    assert first[0] == 0 and other[0] == 0
    # Index order would put items 1..10 next; a random order shares about 10 * 10/199 of them.
    assert len(set(first[1:11]) & set(range(1, 11))) <= 4
    # Equal counts in TINY (items 0 and 2, items 3 and 4) come out in both orders over seeds.
    orders = {tuple(torch.argsort(fitted(Popularity, tiny_train(TINY, catalog, seed=seed))
                                  .score(torch.tensor([0]))[0], descending=True).tolist())
              for seed in range(12)}
    assert {order.index(0) < order.index(2) for order in orders} == {True, False}
    assert {order.index(3) < order.index(4) for order in orders} == {True, False}


def test_random_scores_are_deterministic_per_seed_and_batch_independent(catalog):
    train = tiny_train(TINY, catalog, seed=7)
    model = fitted(RandomScores, train)
    scores = model.score(all_users(train))
    again = fitted(RandomScores, tiny_train(TINY, catalog, seed=7)).score(all_users(train))
    other = fitted(RandomScores, tiny_train(TINY, catalog, seed=8)).score(all_users(train))
    assert torch.equal(scores, again)
    assert not torch.equal(scores, other)
    assert float(scores.min()) >= 0.0 and float(scores.max()) < 1.0
    # A user's scores do not depend on which other users share the batch.
    assert torch.equal(model.score(torch.tensor([4, 1])), scores[[4, 1]])


# ------------------------------------------------------------------ the synthetic default


def run_synthetic(catalog, tmp_path, model: str, seed: int = 0, device: str = "auto",
                  **overrides) -> dict:
    record = m6bench.run(plugin="classic", model=model, seed=seed, overrides=overrides,
                         device=device, catalog=catalog,
                         ledger=tmp_path / f"{model}-{seed}.jsonl")
    assert record["status"] == "ok", record.get("error")
    return record


def test_bpr_mf_beats_popularity_beats_random_on_synthetic(catalog, tmp_path):
    # BPR-MF's valid NDCG@10 is within 2% of its best by epoch 12 here; capping the epochs
    # keeps the test fast on a shared 2-core CI runner.
    epochs = {"bpr-mf": {"epochs": 12}}
    ndcg = {
        model: run_synthetic(catalog, tmp_path, model, **epochs.get(model, {}))
        ["metrics"]["test"]["ndcg@10"]
        for model in ("random", "pop", "bpr-mf")
    }
    assert ndcg["bpr-mf"] >= 1.5 * ndcg["pop"], ndcg
    assert ndcg["pop"] > 1.5 * ndcg["random"], ndcg


@pytest.mark.parametrize("model", ["bpr-mf", "ials"])
def test_same_seed_gives_identical_metrics_on_cpu(catalog, tmp_path, model):
    # A few epochs exercise every source of randomness (initialisation, shuffling, negative
    # sampling); convergence is not the point here.
    first = run_synthetic(catalog, tmp_path / "first", model, seed=3, device="cpu", epochs=4)
    second = run_synthetic(catalog, tmp_path / "second", model, seed=3, device="cpu", epochs=4)
    assert first["metrics"] == second["metrics"]
    assert first["curve"] == second["curve"]


def test_plugin_passes_the_conformance_kit(catalog):
    # Shapes, determinism, search spaces, .to(device), state_dict round trips, no leaks.
    assert_plugin_conforms("classic", catalog=catalog)


def test_default_model_of_the_plugin_is_bpr_mf(catalog):
    name, spec = catalog.model("classic")
    assert name == "bpr-mf"
    assert set(spec.components) == {"encoder:id-embedding", "fusion:dot", "head:bpr"}


# ------------------------------------------------------------------ MovieLens 100K

# Test NDCG@10 floors with each model's defaults, seed 0, per-user random 8:1:1 split.
# RecBole 1.2.1 on the same protocol: ItemKNN 0.2834, BPR 0.2928, EASE 0.3295.
ML100K_FLOORS = {"itemknn": 0.27, "bpr-mf": 0.28, "ease": 0.31, "ials": 0.29}
# Correct popularity (training counts) scores 0.142 here.  RecBole reports 0.1005 because its
# Pop counts an item at most once per training batch (RUCAIBox/RecBole issues #1844, #2198),
# so its number is not a target; the band is our own value +-15%.
ML100K_POP_BAND = (0.12, 0.165)


@pytest.mark.real_data
def test_ml100k_quality_targets_with_defaults(catalog, tmp_path):
    real_data_folder("recbole-ml-100k", purpose="the MovieLens quality targets")
    rows = {}
    for model in ("pop", "itemknn", "ease", "ials", "bpr-mf"):
        record = m6bench.run(plugin="classic", model=model, dataset="ml-100k", seed=0,
                             catalog=catalog, ledger=tmp_path / "ledger.jsonl")
        assert record["status"] == "ok", record.get("error")
        rows[model] = (record["metrics"]["test"], record["timings"]["train"], record["epochs"])

    print("\nml-100k, test split, defaults, seed 0")
    print(f"{'model':<8} {'NDCG@10':>8} {'Recall@10':>10} {'MRR@10':>8} {'train s':>8} epochs")
    for model, (test, seconds, epochs) in rows.items():
        print(f"{model:<8} {test['ndcg@10']:8.4f} {test['recall@10']:10.4f} "
              f"{test['mrr@10']:8.4f} {seconds:8.1f} {epochs:6d}")

    ndcg = {model: test["ndcg@10"] for model, (test, _, _) in rows.items()}
    low, high = ML100K_POP_BAND
    assert low <= ndcg["pop"] <= high, ndcg
    for model, floor in ML100K_FLOORS.items():
        assert ndcg[model] >= floor, (model, ndcg)


def test_the_ials_loss_is_the_dense_weighted_objective_summed_by_hand():
    generator = torch.Generator().manual_seed(3)
    users, items, dim, alpha, l2 = 5, 7, 3, 2.5, 0.4
    dense = (torch.rand(users, items, generator=generator) < 0.4).float()
    x = torch.randn(users, dim, generator=generator)
    y = torch.randn(items, dim, generator=generator)
    expected = sum(
        (1 + alpha * dense[u, i]) * (dense[u, i] - x[u] @ y[i]) ** 2
        for u in range(users) for i in range(items)
    ) + l2 * (x.pow(2).sum() + y.pow(2).sum())
    got = ials_loss(x, y, dense.to_sparse_csr(), alpha, l2)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("kernel", ["tensor", "fused"])
def test_ials_logs_its_loss_only_when_asked(catalog, kernel):
    from m6bench_classic import IALS

    config = {"dim": 3, "alpha": 2.0, "l2": 0.5, "init_std": 0.1, "cg_steps": 2,
              "block_size": 4, "kernel": kernel}
    quiet = IALS(tiny_train(TINY, catalog), {**config, "report_loss": False})
    train = tiny_train(TINY, catalog)
    logged = IALS(train, {**config, "report_loss": True})
    assert quiet.fit_epoch(train, 1) == {}
    losses = logged.fit_epoch(train, 1)
    # The same start and the same solve: the loss does not change the training.
    assert torch.equal(quiet.user_factors, logged.user_factors)
    assert torch.equal(quiet.item_factors, logged.item_factors)
    expected = ials_loss(logged.user_factors, logged.item_factors,
                         torch.from_numpy(TINY).to_sparse_csr(), 2.0, 0.5) / TINY.shape[0]
    assert losses == {"weighted_squared_error": pytest.approx(float(expected), rel=1e-6)}
