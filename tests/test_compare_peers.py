"""benchmarks/compare_peers.py without the peers: the split it exports, m6bench's scoring of a
peer's saved factors, the early-stopping pick and the PASS/FAIL checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(scope="module")
def peers(script_module):
    with script_module(BENCHMARKS / "compare_peers.py", "compare_peers") as module:
        yield module


@pytest.fixture(scope="module")
def common(script_module):
    with script_module(BENCHMARKS / "_peers_common.py", "peers_common") as module:
        yield module


@pytest.fixture(scope="module")
def driver(script_module):
    with script_module(BENCHMARKS / "_peers_driver.py", "peers_driver") as module:
        yield module


@pytest.fixture
def bench(peers):
    return peers.prepared_benchmark("synthetic")


def test_the_exported_split_reads_back_as_the_peers_read_it(peers, driver, bench, tmp_path):
    folder = bench.export_split(tmp_path / "split")
    train, pairs, shape = driver.load_split(folder)
    assert shape == (bench.train.n_users, bench.train.n_items)
    np.testing.assert_array_equal(train.toarray(), bench.train.matrix.to_dense().numpy())
    for part in ("valid", "test"):
        expected = getattr(bench, part)
        np.testing.assert_array_equal(pairs[part][:, 0], expected.users.numpy())
        np.testing.assert_array_equal(pairs[part][:, 1], expected.items.numpy())
        truth = driver.pairs_matrix(pairs[part], shape).toarray() > 0
        np.testing.assert_array_equal(truth, expected.truth.to_dense().numpy() > 0)


def _ndcg10_by_hand(scores: np.ndarray, train: np.ndarray, valid: np.ndarray,
                    test: np.ndarray) -> float:
    """Mean NDCG@10 over the users with test items; training and validation items masked."""
    values = []
    for user in np.flatnonzero(test.any(axis=1)):
        row = np.where(train[user] | valid[user], -np.inf, scores[user])
        top = np.argsort(-row, kind="stable")[:10]
        dcg = sum(1 / np.log2(rank + 2) for rank, item in enumerate(top) if test[user, item])
        ideal = sum(1 / np.log2(rank + 2) for rank in range(min(10, int(test[user].sum()))))
        values.append(dcg / ideal)
    return float(np.mean(values))


def test_saved_factors_are_scored_by_m6bench_as_by_hand(common, driver, bench, tmp_path):
    rng = np.random.default_rng(7)
    n_users, n_items = bench.train.n_users, bench.train.n_items
    train = bench.train.matrix.to_dense().numpy() > 0
    valid, test = (getattr(bench, part).truth.to_dense().numpy() > 0 for part in ("valid",
                                                                                   "test"))
    snapshots, by_hand = [], []
    for epoch in (1, 2):
        user, item = rng.normal(size=(n_users, 8)), rng.normal(size=(n_items, 8))
        bias = rng.normal(size=n_items)
        path = driver.save_snapshot(tmp_path / f"epoch-{epoch}", user=user, item=item,
                                    item_bias=bias)
        snapshots.append({"epoch": epoch, "path": path})
        scores = user.astype(np.float32) @ item.astype(np.float32).T + bias.astype(np.float32)
        by_hand.append({"valid": _ndcg10_by_hand(scores, train, np.zeros_like(train), valid),
                        "test": _ndcg10_by_hand(scores, train, valid, test)})

    result = common.score_snapshots(bench, snapshots, patience=1)
    assert result["valid_curve"] == pytest.approx([h["valid"] for h in by_hand], abs=1e-5)
    best = int(np.argmax([h["valid"] for h in by_hand]))
    assert result["best_epoch"] == best + 1 and result["stopped_epoch"] == 2
    assert result["ndcg10"] == pytest.approx(by_hand[best]["test"], abs=1e-5)
    assert result["m6bench_eval_s"] > 0


def test_item_item_weights_score_the_users_training_rows(common, driver, bench, tmp_path):
    weights = np.random.default_rng(3).normal(size=(bench.train.n_items,) * 2)
    folder = Path(driver.save_snapshot(tmp_path / "ease", item_item=weights))
    scorer = common.SavedScores(folder, bench.train.matrix)
    users = np.array([0, 3, 5])
    rows = bench.train.matrix.to_dense().numpy()[users]
    import torch

    got = scorer.score(torch.from_numpy(users)).numpy()
    np.testing.assert_allclose(got, rows @ weights.astype(np.float32), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("curve", "patience", "expected"), [
    ([0.1, 0.3, 0.2, 0.25, 0.4], 2, (1, 4)),  # two evaluations without a gain: stop at 4
    ([0.1, 0.3, 0.2, 0.25, 0.4], 3, (4, 5)),  # one more: the late gain is found
    ([0.2, 0.2, 0.2], 5, (0, 3)),  # equal is no gain: the first of the ties
])
def test_early_stopping_pick_follows_the_training_loop_rule(common, curve, patience, expected):
    assert common.early_stopping_pick(curve, patience) == expected


def _run(epoch_s, ndcg10, **more):
    return {"epoch_s": epoch_s, "ndcg10": ndcg10, "best_epoch": 1, "epochs": len(epoch_s),
            **more}


def _injected_results():
    return {
        ("ml-100k", "ials"): {  # m6bench 0.5 s vs 0.4 s: slower; NDCG 0.001 apart
            "m6bench": [_run([0.5, 0.5], 0.3290, eval_s=0.1, fit_wall_s=1.0)] * 2,
            "implicit-als": [_run([0.4], 0.3280, own_eval_s=0.2, fit_s=0.4)]},
        ("ml-1m", "bpr-mf"): {  # the second repetition's Cornac fit is faster than m6bench
            "m6bench": [_run([1.0], 0.27, eval_s=0.2, fit_wall_s=30.0),
                        _run([1.0], 0.27, eval_s=0.2, fit_wall_s=30.0)],
            "cornac-bpr": [_run([0.2], 0.26, own_eval_s=2.0, fit_s=40.0),
                           _run([0.2], 0.26, own_eval_s=2.0, fit_s=29.0)],
            "implicit-bpr": [_run([0.45], 0.2, own_eval_s=1.0, fit_s=45.0)] * 2},
        ("ml-1m", "ease"): {  # NDCG 0.003 apart; Cornac's evaluation 10x slower
            "m6bench": [_run([4.0], 0.3040, eval_s=0.5, fit_wall_s=4.0)],
            "cornac-ease": [_run([5.0], 0.3010, own_eval_s=5.0, fit_s=5.0)]},
    }


def test_checks_pass_and_fail_on_injected_figures(peers):
    results = _injected_results()
    checks = peers.acceptance_checks(results)
    assert [(c["value"], c["passed"]) for c in checks] == [
        (pytest.approx(1.25), False),  # iALS s/iteration
        (pytest.approx(0.001), True),  # iALS NDCG
        (0.5, False),  # BPR: one of two repetitions beats Cornac
        (pytest.approx(1.0 / 0.45), False),  # BPR s/epoch 2.22x implicit's
        (pytest.approx(0.003), False),  # EASE NDCG
        (pytest.approx(10.0), True),  # EASE evaluation
    ]
    text = peers.render_checks(checks)
    assert text.count("FAIL") == 4 and text.count("PASS") == 2
    table = peers.render_table(results)
    assert "| iALS s/iteration" not in table and "iALS s/epoch" in table
    assert "1.25x" in table and "0.3290 (epoch 1 of 2)" in table


def test_missing_venv_names_the_setup_command(peers, tmp_path):
    with pytest.raises(peers.PeersUnavailable, match="--setup --peers-venv"):
        peers.check_peers(tmp_path / "no-venv")


def test_ledger_lines_carry_every_sides_figures_and_render_in_the_readme(peers, script_module):
    results = _injected_results()
    context = {"command": ["python", "benchmarks/compare_peers.py"], "started_at": "t0"}
    lines = peers.ledger_lines(results, context)
    assert [(line["dataset"], line["model"]) for line in lines] == list(results)
    bpr = lines[1]
    # m6bench's walls 30 and 30 s; Cornac's fits 40 and 29 s; implicit's s/epoch 0.45
    assert (bpr["m6bench"]["wall_s_min"], bpr["m6bench"]["wall_s_median"]) == (30.0, 30.0)
    assert bpr["peers"]["Cornac BPR"]["wall_s_min"] == 29.0
    assert bpr["peers"]["Cornac BPR"]["wall_s_median"] == pytest.approx(34.5)
    assert bpr["peers"]["implicit BPR"]["epoch_s_median"] == pytest.approx(0.45)
    assert bpr["metrics"]["test"] == {"m6bench ndcg@10": 0.27, "Cornac BPR ndcg@10": 0.26,
                                      "implicit BPR ndcg@10": 0.2}
    assert [c["passed"] for c in bpr["checks"]] == [False, False]
    assert bpr["command"] == context["command"] and bpr["started_at"] == "t0"
    assert json.loads(json.dumps(lines)) == lines  # plain JSON, as the ledger stores it

    with script_module(Path(__file__).resolve().parents[1] / "docs" / "results.py",
                       "docs_results_peers") as results_module:
        text = results_module.results_speed.render_speed_peers(None, lines)
    rows = [line for line in text.splitlines() if line.startswith("| bpr-mf / Cornac BPR")]
    assert len(rows) == 1 and "1,000 / 1,000 · 200 / 200" in rows[0]  # ms per epoch
    assert "5.0x" in rows[0] and "30 / 30 · 29 / 34.5" in rows[0]
    assert "0.2700 / 0.2600" in rows[0]
    assert "2 of 6 acceptance checks pass" in text
    assert "- FAIL BPR ml-1m: m6bench s/epoch / implicit's: 2.222 (target <= 2)" in text
