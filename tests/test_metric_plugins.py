"""Metrics are plugins: a metric registered by a plugin package is computed in runs, carried
in the record with its direction, and ranked the right way on the leaderboard."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import m6bench
from m6bench import (
    BenchmarkSpec,
    Dataset,
    MetricSpec,
    Split,
    hookimpl,
    load_catalog,
    prepare_split,
)
from m6bench.errors import PluginError, ProtocolError
from m6bench.evaluation.evaluator import evaluate_part
from m6bench.runs.run import RunRequest, execute, plan_run
from m6bench_leaderboard import (
    BoardModel,
    BoardSpec,
    Budget,
    RecordError,
    build_leaderboard,
    build_site,
    read_ledger,
    validate_record,
)
from m6bench_leaderboard.testing import make_record

POPULAR = 2  # serendipity ignores hits on the POPULAR most popular training items


def _serendipity(batch, k):
    """Per user: share of the top k that is relevant and not among the POPULAR most
    popular training items."""
    popular = torch.topk(batch.item_popularity, POPULAR).indices
    top = batch.recommended[:, :k]
    surprising_hits = batch.hits[:, :k].bool() & ~torch.isin(top, popular)
    return surprising_hits.sum(dim=1).to(torch.float64) / k


def _popularity_bias(lists, k):
    """Mean training popularity of every recommended item (lower: less popularity bias)."""
    return float(lists.item_popularity[lists.recommended[:, :k]].to(torch.float64).mean())


def _metric_plugin() -> types.ModuleType:
    """A separate plugin package, as a module, that registers two metrics."""
    plugin = types.ModuleType("serendipity_plugin")

    @hookimpl
    def m6bench_register_metrics(register):
        register(MetricSpec("serendipity", "ranking", higher_is_better=True,
                            compute=_serendipity, per_user=True, at_k=True,
                            description="relevant and not among the most popular"))
        register(MetricSpec("popularity-bias", "ranking", higher_is_better=False,
                            compute=_popularity_bias, at_k=True,
                            description="mean training popularity of recommended items"))

    plugin.m6bench_register_metrics = m6bench_register_metrics
    return plugin


@pytest.fixture(scope="module")
def catalog():
    return load_catalog([("serendipity-plugin", _metric_plugin())])


class _FixedScores(torch.nn.Module):
    """Every user scores item i as n_items - i (item 0 first)."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = n_items

    def score(self, users):
        return torch.arange(self.n_items, 0, -1, dtype=torch.float32).expand(len(users), -1)

    def predict(self, users, items):
        return torch.zeros(len(users))


def _tiny_bench(catalog):
    """3 users, 6 items; training popularity item0: 3, item1: 2, item2: 1, others 0."""
    train = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    valid = [(0, 4), (1, 2), (2, 5)]
    test = [(0, 1), (0, 3), (1, 3), (1, 4), (2, 4)]
    parts = ["train"] * len(train) + ["valid"] * len(valid) + ["test"] * len(test)
    frame = pd.DataFrame(train + valid + test, columns=["user", "item"]).assign(part=parts)
    frame = frame.sort_values(["item", "user"], ignore_index=True)  # ids map in first-seen order
    dataset = Dataset.from_frames("tiny", frame[["user", "item"]])
    assert list(dataset.item_ids) == [str(i) for i in range(6)]  # indices are the ids
    assert list(dataset.user_ids) == ["0", "1", "2"]
    split = Split(*(np.flatnonzero(frame["part"] == part) for part in ("train", "valid", "test")))
    spec = BenchmarkSpec("tiny", dataset="tiny", ks=(1, 2, 3))
    bench = prepare_split(spec, dataset, split, catalog=catalog)
    bench.metrics = catalog.metric_table().for_tasks(spec.tasks).specs
    return bench


def test_plugin_metrics_by_hand(catalog):
    bench = _tiny_bench(catalog)
    metrics = evaluate_part(_FixedScores(6), bench, "test", tasks=("ranking",),
                            batch_size=2).metrics
    # test lists (training and valid items masked, ties by lower index):
    # user 0: [1, 2, 3] (relevant 1 popular, 3), user 1: [3, 4, 5] (relevant 3, 4),
    # user 2: [3, 4, 0] (relevant 4; item 0 is masked but fills the list at -inf)
    assert metrics["serendipity@1"] == pytest.approx((0 + 1 + 0) / 3)
    assert metrics["serendipity@2"] == pytest.approx((0 + 1 + 0.5) / 3)
    assert metrics["serendipity@3"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 3) / 3)
    # popularity of [1, 2] [3, 4] [3, 4] at k=2: (2 + 1 + 0 + 0 + 0 + 0) / 6
    assert metrics["popularity-bias@2"] == pytest.approx(0.5)
    assert metrics["popularity-bias@1"] == pytest.approx((2 + 0 + 0) / 3)
    # the built-in ones are still there, as before
    assert metrics["recall@2"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert metrics["gini@2"] >= 0.0


def test_builtin_metric_directions(catalog):
    table = catalog.metric_table()
    higher = {"recall", "ndcg", "mrr", "hit", "precision", "map", "coverage", "novelty", "auc"}
    lower = {"gini", "rmse", "mae", "logloss"}
    builtin = {e.name for e in catalog.metrics if e.plugin == "m6bench.builtin.metrics"}
    assert builtin == higher | lower
    for name in higher:
        assert table.direction(f"{name}@10" if name not in ("auc",) else name) == "max"
    for name in lower:
        assert table.direction(f"{name}@10" if name == "gini" else name) == "min"
    assert table.direction("serendipity@5") == "max"
    assert table.direction("popularity-bias@5") == "min"
    with pytest.raises(m6bench.ConfigError, match="ndgc"):
        table.direction("ndgc@10")


def test_two_plugins_registering_one_metric_name_is_refused_naming_both():
    def plugin(name):
        module = types.ModuleType(name)
        module.m6bench_register_metrics = hookimpl(lambda register: register(
            MetricSpec("twin", "ranking", higher_is_better=True,
                       compute=lambda lists, k: 0.0)))
        return module

    with pytest.raises(PluginError) as info:
        load_catalog([("first-pkg", plugin("first")), ("second-pkg", plugin("second"))],
                     entry_points=False)
    message = str(info.value)
    assert "'twin'" in message and "first-pkg" in message and "second-pkg" in message


def test_a_plugin_cannot_reuse_a_builtin_metric_name():
    module = types.ModuleType("shadow")
    module.m6bench_register_metrics = hookimpl(lambda register: register(
        MetricSpec("ndcg", "ranking", higher_is_better=False, compute=lambda b, k: b.hits)))
    with pytest.raises(PluginError, match=r"m6bench\.builtin\.metrics.*shadow"):
        load_catalog([("shadow", module)], entry_points=False)


def test_binary_task_without_a_threshold_says_so(catalog, tmp_path):
    spec = BenchmarkSpec("binary-no-threshold", dataset="synthetic",
                         tasks=("ranking", "binary"),
                         dataset_options={"n_users": 60, "n_items": 40})
    with pytest.raises(ProtocolError, match=r"binary-no-threshold.*binary_threshold"):
        m6bench.run("classic", model="pop", benchmark=spec, catalog=catalog,
                    ledger=tmp_path / "ledger.jsonl", device="cpu")
    assert not (tmp_path / "ledger.jsonl").exists()  # refused before anything is recorded


def _final_runs(catalog, spec, ledger, models=("pop", "itemknn")):
    records = []
    for model in models:
        request = RunRequest(plugin="classic", model=model, benchmark=spec, device="cpu",
                             ledger=ledger, kind="final", sweep_id=f"{model}-sweep",
                             command=[])
        records.append(execute(plan_run(request, catalog)))
    return records


def _bench(name, valid_metric):
    return BenchmarkSpec(name, dataset="synthetic", tasks=("ranking",), ks=(5, 10),
                         valid_metric=valid_metric,
                         dataset_options={"n_users": 150, "n_items": 100, "density": 0.1})


def test_plugin_metrics_are_recorded_with_directions_and_ranked_on_the_site(catalog, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    for spec in (_bench("surprise", "serendipity@5"), _bench("bias", "popularity-bias@5")):
        records = _final_runs(catalog, spec, ledger)
        for record in records:
            assert record["status"] == "ok"
            for part in ("valid", "test"):
                assert {"serendipity@5", "serendipity@10", "popularity-bias@10",
                        "ndcg@10", "gini@5"} <= set(record["metrics"][part])
            directions = record["metric_directions"]
            assert directions["serendipity@5"] == "max"
            assert directions["popularity-bias@10"] == "min"
            assert directions["ndcg@10"] == "max" and directions["gini@5"] == "min"
            names = set(record["metrics"]["valid"]) | set(record["metrics"]["test"])
            assert set(directions) == names
    # the ledger holds the directions (schema-valid, read back)
    stored = read_ledger(ledger).records
    assert all(r["metric_directions"]["popularity-bias@5"] == "min" for r in stored)

    report = build_site(ledger, tmp_path / "site")
    results = json.loads(Path(report.out, "results.json").read_text())
    by_name = {b["name"]: b for b in results["benchmarks"]}
    for name, metric, lower in (("surprise", "serendipity@5", False),
                                ("bias", "popularity-bias@5", True)):
        bench = by_name[name]
        assert bench["primary"] == metric
        assert bench["lower_is_better"][metric] is lower
        rows = bench["rows"]
        values = [row["metrics"][metric]["mean"] for row in rows]
        assert len(set(values)) == 2, f"{metric}: both models scored {values}"
        assert [row["rank"] for row in rows] == [1, 2]
        assert values == sorted(values, reverse=not lower)
    # popularity ranks the most popular items: the most popularity bias, so ranked last
    assert by_name["bias"]["rows"][-1]["model"] == "pop"


def test_records_without_metric_directions_still_aggregate():
    """Records written before metric_directions existed fall back to the legacy list."""
    legacy = [make_record(model=m, test={"ndcg@10": v, "gini@10": g}, seed=0,
                          sweep_id=f"{m}-s", minute=i)
              for i, (m, v, g) in enumerate((("a", 0.2, 0.9), ("b", 0.1, 0.3)))]
    assert all("metric_directions" not in r for r in legacy)
    board = BoardSpec("b", "b", benchmarks=("bench",), metrics=("gini@10", "ndcg@10"),
                      models=tuple(BoardModel("fake", m, Budget()) for m in ("a", "b")))
    bench = build_leaderboard(legacy, board)["benchmarks"][0]
    assert bench["lower_is_better"] == {"gini@10": True, "ndcg@10": False}
    assert [r["model"] for r in bench["rows"]] == ["b", "a"]  # ranked by gini@10, min

    # a new record's own word wins over the legacy list: here gini is declared "max"
    declared = [dict(r, metric_directions={"ndcg@10": "max", "gini@10": "max"})
                for r in legacy]
    bench = build_leaderboard(declared, board)["benchmarks"][0]
    assert bench["lower_is_better"] == {"gini@10": False, "ndcg@10": False}
    assert [r["model"] for r in bench["rows"]] == ["a", "b"]  # ranked by gini@10, max


def test_record_schema_checks_metric_directions():
    record = make_record(test={"ndcg@10": 0.1})
    validate_record(dict(record, metric_directions={"ndcg@10": "max"}))
    with pytest.raises(RecordError, match=r"metric_directions\.ndcg@10.*'up'"):
        validate_record(dict(record, metric_directions={"ndcg@10": "up"}))


def test_a_per_user_metric_of_the_wrong_shape_is_named(catalog):
    bench = _tiny_bench(catalog)
    broken = MetricSpec("broken", "ranking", higher_is_better=True, per_user=True, at_k=True,
                        compute=lambda batch, k: batch.hits[:, :k].sum())
    bench.metrics = (*bench.metrics, broken)
    with pytest.raises(PluginError, match=r"'broken' returned \(\) for a batch of 2 users"):
        evaluate_part(_FixedScores(6), bench, "test", tasks=("ranking",), batch_size=2)


def test_metric_specs_are_checked_when_made():
    with pytest.raises(m6bench.ConfigError, match="hold no '@'"):
        MetricSpec("ndcg@10", "ranking", higher_is_better=True, compute=lambda b, k: 0.0)
    with pytest.raises(m6bench.ConfigError, match="'clicks'"):
        MetricSpec("ctr", "clicks", higher_is_better=True, compute=lambda b, k: 0.0)
    with pytest.raises(m6bench.ConfigError, match="at_k=False"):
        MetricSpec("rmse2", "rating", higher_is_better=False, at_k=True,
                   compute=lambda p, k: 0.0)
