"""The leaderboard's deployment view (issue #18): variant and serving records of the shared
deployment contract, made by hand here, become a table and a Pareto front per benchmark,
and never change the accuracy tables."""

from __future__ import annotations

import copy
import json

import pytest

from m6bench_leaderboard import build_leaderboard, build_site, render_leaderboard
from m6bench_leaderboard.deployment import deployment_view
from m6bench_leaderboard.stats import pareto_front
from m6bench_leaderboard.testing import (
    deployment_scenario,
    make_serving_record,
    make_variant_record,
    synthetic_records,
)

# (model, variant) -> size MB, ndcg@10, change, p50 ms, p99 ms, req/s, backend: the table of
# deployment_scenario's docstring, the change being variant - full model by hand.
EXPECTED = {
    ("classic/bpr", "full"): (4.0, 0.20, 0.0, 2.0, 5.0, 1500.0, "torch"),
    ("classic/bpr", "int8"): (1.0, 0.19, -0.01, 2.5, 6.0, 1400.0, "torch"),
    ("classic/bpr", "prune50"): (2.0, 0.15, -0.05, None, None, None, None),
    ("classic/ease", "full"): (10.0, 0.30, 0.0, 9.0, 20.0, 400.0, "torch"),
    ("classic/ease", "fp16"): (5.0, 0.30, 0.0, 5.0, 12.0, 700.0, "onnx"),
    ("classic/ease", "int8"): (2.5, 0.29, -0.01, 3.0, 8.0, 900.0, "torch"),
}
# p99 (lower is better) against ndcg@10 (higher is better): ease full (20 ms, 0.30) loses to
# ease fp16 (12 ms, 0.30), bpr int8 (6 ms, 0.19) to bpr full (5 ms, 0.20); prune50 has no
# latency; the other three are beaten by nobody.
FRONT = {("classic/bpr", "full"), ("classic/ease", "fp16"), ("classic/ease", "int8")}


def _view(records):
    (bench,) = build_leaderboard(records)["benchmarks"]
    return bench["deployment"]


def _by_key(view):
    return {(row["label"], row["variant"]): row for row in view["rows"]}


def test_deployment_table_holds_the_hand_computed_numbers():
    runs, deployed = deployment_scenario()
    view = _view(runs + deployed)
    assert view["metric"] == "ndcg@10" and view["lower_is_better"] is False
    assert view["variants"] == 4 and view["load_tests"] == 5
    rows = _by_key(view)
    assert set(rows) == set(EXPECTED)
    for key, (size, quality, delta, p50, p99, rps, backend) in EXPECTED.items():
        row = rows[key]
        assert row["size_mb"] == pytest.approx(size), key
        assert row["quality"] == pytest.approx(quality), key
        assert row["delta"] == pytest.approx(delta), key
        assert (row["p50_ms"], row["p99_ms"], row["rps"], row["backend"]) == (
            p50, p99, rps, backend), key
    # rows by model, the full model first, then its variants by name
    assert [(r["label"], r["variant"]) for r in view["rows"]] == sorted(
        EXPECTED, key=lambda k: (k[0], k[1] != "full", k[1]))


def test_pareto_front_of_hand_made_points():
    # (cost, quality): (1, 1) and (2, 3) and (4, 4) are beaten by nobody; (3, 2) loses to
    # (2, 3), (4, 1) to (1, 1); a tie on both axes beats neither twin.
    points = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 4.0), (4.0, 1.0)]
    assert pareto_front(points) == [True, True, False, True, False]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [True, True]
    runs, deployed = deployment_scenario()
    view = _view(runs + deployed)
    assert {key for key, row in _by_key(view).items() if row["pareto"]} == FRONT


def test_pareto_front_follows_the_quality_direction():
    # were lower quality better, bpr full (5 ms, 0.20) beats every ease row (slower and
    # higher), and bpr int8 (6 ms, 0.19) is slower but better than it: both on the front
    runs, deployed = deployment_scenario()
    view = deployment_view(deployed, {r["run_id"]: r for r in runs}, metric="ndcg@10",
                           lower_is_better=True)
    front = {(r["label"], r["variant"]) for r in view["rows"] if r["pareto"]}
    assert front == {("classic/bpr", "full"), ("classic/bpr", "int8")}


def test_accuracy_tables_are_unchanged_by_deployment_records():
    runs, deployed = deployment_scenario()
    records = synthetic_records(models=3, seeds=2, trials=3, users=30) + runs
    before = build_leaderboard(copy.deepcopy(records))
    after = build_leaderboard(copy.deepcopy(records + deployed))
    for old, new in zip(before["benchmarks"], after["benchmarks"], strict=True):
        assert old["rows"] == new["rows"]
        assert old["metrics"] == new["metrics"] and old["significance"] == new["significance"]
    assert before["runs"] == after["runs"] and before["sweeps"] == after["sweeps"]
    assert after["source"]["runs"] == before["source"]["runs"]
    assert (after["source"]["variants"], after["source"]["load_tests"]) == (4, 5)
    assert before["benchmarks"][0]["deployment"]["rows"] == []


def test_the_latest_record_wins_and_failed_ones_are_left_out():
    runs, deployed = deployment_scenario()
    ease = runs[0]
    later = make_serving_record(ease, p50=7.0, p99=15.0, rps=450.0, minute=30)
    failed = make_variant_record(ease, name="int4", test={"ndcg@10": 0.1}, size_bytes=1,
                                 base_size_bytes=10_000_000, minute=31)
    failed["status"] = "failed"
    later["allow_code_change"] = ["harness source 0000 -> 1111"]
    rows = _by_key(_view(runs + deployed + [later, failed]))
    assert rows[("classic/ease", "full")]["p99_ms"] == 15.0
    assert rows[("classic/ease", "full")]["serving_code_changed"] is True
    assert ("classic/ease", "int4") not in rows
    # ease full (15 ms, 0.30) still loses to ease fp16 (12 ms, 0.30)
    assert rows[("classic/ease", "full")]["pareto"] is False


def test_a_base_run_missing_from_the_ledger_is_told_by_its_variants():
    runs, deployed = deployment_scenario()
    rows = _by_key(_view([runs[0], *deployed]))  # bpr-0 itself is not in the ledger
    full = rows[("classic/bpr", "full")]
    assert full["quality"] == pytest.approx(0.20)  # 0.19 (int8) - (-0.01) (its delta)
    assert full["size_mb"] == pytest.approx(4.0)  # the variants' base_size_bytes


def test_records_of_another_benchmark_version_stay_out():
    runs, deployed = deployment_scenario()
    for record in deployed:
        record["benchmark"] = {**record["benchmark"], "version": "v0"}
    assert _view(runs + deployed)["rows"] == []


def test_site_and_show_render_the_deployment_view(tmp_path):
    runs, deployed = deployment_scenario()
    report = build_site(None, tmp_path / "site", records=runs + deployed)
    page = (tmp_path / "site" / "benchmarks" / "bench-0.html").read_text()
    assert 'id="deployment"' in page and page.count('class="deployment-row') == 6
    assert "plot-pareto" in page.split('id="deployment"')[1]
    assert page.count('class="deployment-row pareto"') == len(FRONT)
    assert '<td class="num" data-value="-0.01' in page and ">-0.0100<" in page
    assert 'href="../runs/ease-0.html"' in page  # the full model links to its run page
    index = (tmp_path / "site" / "index.html").read_text()
    assert "benchmarks/bench-0.html#deployment" in index
    data = json.loads((tmp_path / "site" / "results.json").read_text())
    assert len(data["benchmarks"][0]["deployment"]["rows"]) == 6 and report.rows == 2

    text = render_leaderboard(report.data, deployment=True)
    lines = {line.split()[0] + " " + line.split()[2]: line for line in text.splitlines()
             if line.startswith("classic/")}
    assert lines["classic/ease int8"].split()[3:10] == [
        "2.50", "0.2900", "-0.0100", "3.0", "8.0", "900.0", "torch"]
    assert lines["classic/ease int8"].endswith("yes")
    assert not lines["classic/ease full"].endswith("yes")
    empty = build_leaderboard(runs)
    assert "no variant or serving records" in render_leaderboard(empty, deployment=True)


def test_runs_saved_without_a_sweep_still_show_their_deployment_view():
    runs, deployed = deployment_scenario()
    for record in [*runs, *deployed]:
        if record.get("kind") == "final":
            record["kind"] = "run"  # m6bench run --save, no sweep: no final anywhere
    data = build_leaderboard(copy.deepcopy(runs + deployed))
    assert data["benchmarks"] == []
    alone = data["deployment_only"]["bench-0"]
    assert alone["name"] == "bench-0" and len(alone["deployment"]["rows"]) == 6
    text = render_leaderboard(data, deployment=True)
    rows = [line.split() for line in text.splitlines() if line.startswith("classic/ease")]
    assert sorted((row[2], row[4]) for row in rows) == [
        ("fp16", "0.3000"), ("full", "0.3000"), ("int8", "0.2900")]
    assert "No final runs" in render_leaderboard(data)  # the accuracy view still has none
