"""The leaderboard: statistics, significance, board specs, site, show, board runs, reproduce."""

from __future__ import annotations

import json
import math
import os
import re
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from plugins_for_tests import catalog_with, fake_plugin
from scipy import stats

from m6bench import BenchmarkSpec, ModelSpec, Recommender, hookimpl, load_catalog
from m6bench.cli import main
from m6bench.errors import ConfigError
from m6bench_leaderboard import (
    BoardError,
    append_record,
    build_leaderboard,
    build_site,
    holm,
    load_board,
    mean_ci,
    read_ledger,
    read_records,
    render_leaderboard,
)
from m6bench_leaderboard.board import parse_board
from m6bench_leaderboard.site import SiteError
from m6bench_leaderboard.testing import make_record, synthetic_records

ROOT = Path(__file__).resolve().parents[1]
XSS = "<script>alert(1)</script>"
SMALL = {"n_users": 200, "n_items": 120}


@pytest.fixture(autouse=True)
def _isolated(isolated):
    isolated.with_default_ledger()


def _write(path, records):
    for record in records:
        append_record(path, record)
    return path


# ========================================================================= statistics
def test_holm_matches_a_hand_computation():
    # sorted: .005 (x4 = .02), .01 (x3 = .03), .03 (x2 = .06), .04 (x1 = .04 -> max .06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, monotone
    assert holm([0.2]) == [0.2]
    assert holm([]) == []


def test_mean_ci_is_the_t_interval():
    values = [0.31, 0.33, 0.30, 0.35, 0.32]
    mean, half = mean_ci(values)
    low, high = stats.t.interval(0.95, df=4, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert half == pytest.approx((high - low) / 2)
    assert mean_ci([0.3]) == (0.3, None)
    assert mean_ci([]) == (None, None)


def _two_model_records(shift, *, seeds=2, users=300, noise=0.05, shuffle=True, rng_seed=1):
    """Model "better" = model "base" + shift per user (+ noise); user order shuffled."""
    rng = np.random.default_rng(rng_seed)
    records, values = [], {"base": {}, "better": {}}
    for seed in range(seeds):
        base = rng.uniform(0.1, 0.6, size=users)
        better = np.clip(base + shift + rng.normal(0, noise, size=users), 0, 1)
        for model, data in (("base", base), ("better", better)):
            ids = np.arange(users)
            if shuffle and model == "better":
                ids = rng.permutation(users)  # pairing must follow user ids, not positions
            per_user = {"users": ids.tolist(), "ndcg@10": [float(data[u]) for u in ids]}
            values[model][seed] = data
            records.append(make_record(model=model, seed=seed, sweep_id=f"s-{model}",
                                       test={"ndcg@10": float(data.mean())},
                                       per_user=per_user))
    return records, values


@pytest.mark.parametrize("test", ["wilcoxon", "ttest"])
def test_significance_marker_and_pvalue_match_scipy(test):
    records, values = _two_model_records(0.05)
    board = parse_board({"board": {"name": "t", "benchmarks": ["bench"],
                                   "metrics": ["ndcg@10"]},
                         "budget": {"trials": 5}, "significance": {"test": test},
                         "models": [{"plugin": "fake", "model": "base"},
                                    {"plugin": "fake", "model": "better"}]})
    data = build_leaderboard(records, board)
    rows = {r["model"]: r for r in data["benchmarks"][0]["rows"]}
    better, base = rows["better"]["significance"]["ndcg@10"], rows["base"]["significance"][
        "ndcg@10"]
    x = np.concatenate([values["better"][s] for s in (0, 1)])
    y = np.concatenate([values["base"][s] for s in (0, 1)])
    expected = (stats.wilcoxon(x, y) if test == "wilcoxon" else stats.ttest_rel(x, y)).pvalue
    assert better["best"] and rows["better"]["rank"] == 1
    assert base["p"] == pytest.approx(expected, rel=1e-9)
    assert base["p_holm"] == pytest.approx(expected, rel=1e-9)  # one comparison
    assert base["pairs"] == 600 and base["tied_with_best"] is False


def test_a_model_within_noise_of_the_best_is_marked_tied():
    records, _values = _two_model_records(0.0, noise=0.05, rng_seed=3)
    data = build_leaderboard(records)
    rows = data["benchmarks"][0]["rows"]
    worse = next(r for r in rows if not r["significance"]["ndcg@10"]["best"])
    entry = worse["significance"]["ndcg@10"]
    assert entry["p_holm"] > 0.05 and entry["tied_with_best"] is True


def test_holm_is_applied_across_models():
    records = synthetic_records(models=4, seeds=2, users=60, shift=0.004, rng_seed=7)
    data = build_leaderboard(records)
    rows = data["benchmarks"][0]["rows"]
    tested = [r["significance"]["ndcg@10"] for r in rows
              if not r["significance"]["ndcg@10"]["best"]]
    assert len(tested) == 3
    assert [t["p_holm"] for t in tested] == pytest.approx(holm([t["p"] for t in tested]))
    for entry in tested:
        assert entry["tied_with_best"] is (entry["p_holm"] > 0.05)


def test_rows_ranks_ci_budget_and_pareto():
    records = synthetic_records(models=3, seeds=3, trials=4, users=50)
    data = build_leaderboard(records)
    (bench,) = data["benchmarks"]
    assert [r["model"] for r in bench["rows"]] == ["model-2", "model-1", "model-0"]
    assert [r["rank"] for r in bench["rows"]] == [1, 2, 3]
    top = bench["rows"][0]
    finals = [r for r in records if r["kind"] == "final" and r["model"] == "model-2"]
    mean, half = mean_ci([r["metrics"]["test"]["ndcg@10"] for r in finals])
    assert top["metrics"]["ndcg@10"]["mean"] == pytest.approx(mean)
    assert top["metrics"]["ndcg@10"]["ci95"] == pytest.approx(half)
    assert top["seeds"] == [0, 1, 2] and top["budget"]["trials_run"] == 4
    assert top["budget"]["trials"] == 4
    # slower and better models: every one is on the quality / time front
    assert all(r["pareto"] for r in bench["rows"])
    assert set(data["runs"]) == {r["run_id"] for r in records if r["kind"] == "final"}


def test_only_the_latest_benchmark_version_is_shown():
    old = make_record(model="a", version="v0", test={"ndcg@10": 0.9}, minute=1)
    new = make_record(model="a", version="v1", test={"ndcg@10": 0.2}, minute=5)
    (bench,) = build_leaderboard([old, new])["benchmarks"]
    assert bench["version"] == "v1" and bench["other_versions"] == ["v0"]
    assert bench["rows"][0]["metrics"]["ndcg@10"]["mean"] == 0.2


def test_reader_skips_torn_and_invalid_lines_and_keeps_final_per_user(tmp_path):
    path = tmp_path / "ledger.jsonl"
    records = synthetic_records(models=1, seeds=1, trials=1, users=5)
    _write(path, records)
    with path.open("a") as handle:
        handle.write('{"schema_version": 1}\n{"run_id": NaN}\n{"torn": ')
    loaded = read_records(path)
    assert len(loaded.records) == 2 and len(loaded.skipped) == 3
    trial, final = loaded.records
    assert "per_user" not in trial and final["per_user"]["users"] == list(range(5))
    assert {k: v for k, v in trial.items()} == {
        k: v for k, v in read_ledger(path).records[0].items() if k != "per_user"}


# ========================================================================= board spec
def test_board_files_shipped_are_valid():
    official = load_board(ROOT / "leaderboard" / "board.toml")
    ci = load_board(ROOT / "leaderboard" / "board-ci.toml")
    assert official.benchmarks == ("ml-100k", "ml-1m")
    classic = {"pop", "random", "itemknn", "bpr-mf", "ease", "ials"}
    assert classic <= {m.model for m in official.models}
    assert ci.benchmarks == ("ml-100k",) and len(ci.models) >= 6
    assert classic <= {m.model for m in ci.models}
    assert all((m.budget.trials or 0) <= 4 and m.budget.seeds <= 3 for m in ci.models)
    # the official board ranks every ranking model the project ships
    catalog = load_catalog()
    built_in = {"classic", "deep", "gnn-mf", "pct-cf", "m6-fusion"}
    shipped = {(entry.plugin, entry.name) for entry in catalog.models
               if "ranking" in entry.value.tasks and entry.plugin in built_in}
    assert {(m.plugin, m.model) for m in official.models} == shipped
    for board in (official, ci):  # every name exists
        for entry in board.models:
            catalog.model(entry.plugin, entry.model)


@pytest.mark.parametrize(("text", "expected"), [
    ('[board]\nname="x"\nbenchmarks=["b"]\n[budget]\ntrails=3\n', r"budget\.trails .*"
     r"did you mean 'trials'"),
    ('[board]\nname="x"\n[budget]\ntrials=3\n[[models]]\nplugin="p"\nmodel="m"\n',
     r"board\.benchmarks is missing"),
    ('[board]\nname="x"\nbenchmarks=["b"]\n[budget]\ntrials=0\n[[models]]\nplugin="p"\n'
     'model="m"\n', r"budget\.trials is 0; write a whole number >= 1"),
    ('[board]\nname="x"\nbenchmarks=["b"]\n[budget]\ntrials=2\n', r"\[\[models\]\] is missing"),
    ('[board]\nname="x"\nbenchmarks=["b"]\n[budget]\ntrials=2\n[[models]]\nplugin="p"\n'
     'model="m"\nset=3\n', r"models\[0\]\.set is 3; write fixed config keys as a table"),
    ('[board]\nname="x"\nbenchmarks=["b"]\n[budget]\ntrials=2\n[[models]]\nplugin="p"\n'
     'model="m"\nbenchmarks=["c"]\n', r"models\[0\]\.benchmarks names 'c'"),
    ('[board]\nname="x"\nbenchmarks=["b","c"]\n[budget]\ntrials=2\n[[models]]\nplugin="p"\n'
     'model="m"\n[[models]]\nplugin="p"\nmodel="m"\nbenchmarks=["c"]\n',
     r"models\[1\]\.model repeats p/m on c \(models\[0\] has it\); list a model once per "
     r"benchmark"),
    ('[board]\nname = \n', r"is not valid TOML"),
])
def test_board_errors_name_the_file_the_key_and_the_fix(tmp_path, text, expected):
    path = tmp_path / "bad-board.toml"
    path.write_text(text)
    with pytest.raises(BoardError, match=expected) as info:
        load_board(path)
    assert str(path) in str(info.value)


def test_board_command_reports_unknown_names_with_choices(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text('[board]\nname="x"\nbenchmarks=["ml-100k"]\n[budget]\ntrials=1\n'
                    '[[models]]\nplugin="classic"\nmodel="ease-typo"\n')
    result = CliRunner().invoke(main, ["board", "check", str(path)])
    assert result.exit_code == 2
    assert "models[0].model" in result.output and "'ease'" in result.output


# ============================================================================== site
def _site_records():
    records = synthetic_records(benchmarks=2, models=3, seeds=2, trials=3, users=40)
    evil = make_record(benchmark="bench-0", plugin=XSS, model=f"m{XSS}",
                       config={"note": XSS, "<b>key</b>": 1}, sweep_id=f"s{XSS}",
                       test={"ndcg@10": 0.5}, run_id="evil-run")
    evil["dataset"]["name"] = XSS
    evil["reuses"] = f"trial-run{XSS}"
    return [*records, evil]


def test_site_pages_results_json_and_escaping(tmp_path):
    ledger = _write(tmp_path / "ledger.jsonl", _site_records())
    report = build_site(ledger, tmp_path / "site")
    site = tmp_path / "site"
    assert (site / "index.html").is_file() and (site / "assets" / "sort.js").is_file()
    data = json.loads((site / "results.json").read_text())
    assert [b["name"] for b in data["benchmarks"]] == ["bench-0", "bench-1"]
    assert len(data["benchmarks"][0]["rows"]) == 4 and report.rows == 7
    for bench in data["benchmarks"]:
        page = (site / "benchmarks" / f"{bench['file']}.html").read_text()
        assert page.count('class="model-row') == len(bench["rows"])
        assert "<svg" in page and "plot-pareto" in page
        for row in bench["rows"]:
            for run_id, run_file in zip(row["runs"], row["run_files"]):
                assert (site / "runs" / f"{run_file}.html").is_file()
                (record,) = read_ledger(site / "runs" / f"{run_file}.jsonl").records
                assert record["run_id"] == run_id
    for html in site.rglob("*.html"):
        text = html.read_text()
        assert XSS not in text and "<b>key</b>" not in text, html
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), html
        assert "Content-Security-Policy" in text
    evil_page = (site / "runs" / "evil-run.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in evil_page
    assert "m6bench reproduce evil-run --ledger evil-run.jsonl" in evil_page
    assert "the sweep's best trial, run <code>trial-run&lt;script&gt;" in evil_page
    # the run page shows the full provenance and the sweep history
    run_id = data["benchmarks"][1]["rows"][0]["runs"][0]
    page = (site / "runs" / f"{run_id}.html").read_text()
    for needle in ("plot-history", "plot-lines", "config hash", "hardware", "git", "command",
                   f"m6bench reproduce {run_id}"):
        assert needle in page


def test_site_refuses_a_folder_that_is_not_a_site_and_rebuilds_a_site(tmp_path):
    ledger = _write(tmp_path / "ledger.jsonl", synthetic_records(models=2, seeds=2, users=10))
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    with pytest.raises(SiteError, match="holds other files"):
        build_site(ledger, other)
    build_site(ledger, tmp_path / "site")
    (tmp_path / "site" / "runs" / "stale.html").write_text("old")
    build_site(ledger, tmp_path / "site")
    assert not (tmp_path / "site" / "runs" / "stale.html").exists()


def test_build_is_a_pure_function_of_the_records(tmp_path, monkeypatch):
    # the pages show their build time: SOURCE_DATE_EPOCH fixes it (reproducible builds)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    ledger = _write(tmp_path / "ledger.jsonl", synthetic_records(models=2, seeds=2, users=10))
    build_site(ledger, tmp_path / "a")
    build_site(ledger, tmp_path / "b")
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
            if path.name != "results.json":
                assert path.read_bytes() == twin.read_bytes(), path


def test_failed_models_are_listed(tmp_path):
    records = synthetic_records(models=2, seeds=2, users=10)
    records.append(make_record(benchmark="bench-0", model="broken", kind="final",
                               status="failed"))
    data = build_leaderboard(records)
    (bench,) = data["benchmarks"]
    assert [f["model"] for f in bench["failed"]] == ["broken"]
    assert "synthetic failure" in bench["failed"][0]["error"]


# ============================================================================== show
def test_show_formats(tmp_path):
    ledger = _write(tmp_path / "ledger.jsonl", _site_records())
    runner = CliRunner()
    table = runner.invoke(main, ["leaderboard", "show", "--ledger", str(ledger)])
    assert table.exit_code == 0, table.output
    assert "bench-0" in table.output and "model-2" in table.output and " ± " in table.output
    markdown = runner.invoke(main, ["leaderboard", "show", "--ledger", str(ledger),
                                    "--format", "markdown", "--benchmark", "bench-0"])
    assert markdown.exit_code == 0
    lines = [line for line in markdown.output.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 4  # header, rule, one line per model
    assert "bench-1" not in markdown.output and XSS not in markdown.output
    assert "&lt;script&gt;" in markdown.output
    as_json = runner.invoke(main, ["leaderboard", "show", "--ledger", str(ledger),
                                   "--format", "json"])
    data = json.loads(as_json.output)
    assert len(data["benchmarks"][1]["rows"]) == 3
    assert render_leaderboard(build_leaderboard([]), "table").startswith("No final runs")


def test_build_command(tmp_path):
    ledger = _write(tmp_path / "ledger.jsonl", synthetic_records(models=2, seeds=2, users=10))
    result = CliRunner().invoke(main, ["leaderboard", "build", "--ledger", str(ledger),
                                       "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert "1 benchmarks, 2 model rows, 4 run pages" in result.output
    missing = CliRunner().invoke(main, ["leaderboard", "build", "--ledger",
                                        str(tmp_path / "none.jsonl"), "--out", "x"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


# ======================================================================== board runs
class _Boom(Recommender):
    """Always fails: a model whose row must fail without stopping the board."""

    iterative = False

    def fit_epoch(self, train, epoch):
        raise RuntimeError("injected failure")

    def score(self, users):
        raise RuntimeError("unreachable")


def _tiny_catalog():
    tiny = fake_plugin(
        "tiny",
        benchmarks=[BenchmarkSpec("tiny", dataset="synthetic", dataset_options=SMALL,
                                  tasks=("ranking",)),
                    BenchmarkSpec("tiny-big", dataset="synthetic",
                                  dataset_options={**SMALL, "n_users": 300},
                                  tasks=("ranking",))],
        models=[ModelSpec("boom", build=_Boom, search_space=lambda t: {})])
    broken = types.ModuleType("broken")

    @hookimpl
    def m6bench_register_models(register):
        raise ImportError("No module named 'missing_dependency'")

    broken.m6bench_register_models = m6bench_register_models
    return catalog_with(("tiny", tiny), ("broken", broken), failures_expected=True)


TINY_BOARD = """
[board]
name = "tiny"
benchmarks = ["tiny"]
[budget]
trials = 2
seeds = {seeds}
[[models]]
plugin = "classic"
model = "pop"
trials = 1
[[models]]
plugin = "classic"
model = "ease"
[[models]]
plugin = "tiny"
model = "boom"
trials = 1
[[models]]
plugin = "broken"
model = "anything"
"""


def test_board_run_is_idempotent_resumes_and_survives_failures(tmp_path):
    from m6bench.board.board import run_board

    catalog = _tiny_catalog()
    ledger = tmp_path / "ledger.jsonl"
    board = tmp_path / "tiny.toml"
    board.write_text(TINY_BOARD.format(seeds=2))
    lines: list[str] = []
    results = run_board(board, ledger=ledger, device="cpu", catalog=catalog,
                        report=lines.append)
    status = {r.model: r.status for r in results}
    assert status == {"pop": "done", "ease": "done", "boom": "failed", "anything": "failed"}
    assert any("FAILED" in line and "broken" in line for line in lines)
    first = read_ledger(ledger).records
    finals = [r for r in first if r["kind"] == "final" and r["status"] == "ok"]
    assert sorted((r["model"], r["seed"]) for r in finals) == [
        ("ease", 0), ("ease", 1), ("pop", 0), ("pop", 1)]
    assert any(r["model"] == "anything" and r["status"] == "failed" for r in first)

    # the same board again: recorded rows are skipped, nothing is re-run for them
    again = run_board(board, ledger=ledger, device="cpu", catalog=catalog)
    assert {r.model: r.status for r in again}["pop"] == "skipped"
    assert {r.model: r.status for r in again}["ease"] == "skipped"
    second = read_ledger(ledger).records
    assert [r for r in second if r["model"] in ("pop", "ease")] == [
        r for r in first if r["model"] in ("pop", "ease")]

    # one more seed (as after a crash with seeds missing): only that final runs
    board.write_text(TINY_BOARD.format(seeds=3))
    run_board(board, ledger=ledger, device="cpu", catalog=catalog)
    third = read_ledger(ledger).records
    added = [r for r in third[len(second):] if r["model"] in ("pop", "ease")]
    assert sorted((r["kind"], r["model"], r["seed"]) for r in added) == [
        ("final", "ease", 2), ("final", "pop", 2)]

    # and the site shows the ok rows and the failed ones
    data = build_leaderboard(read_records(ledger).records, load_board(board))
    (bench,) = data["benchmarks"]
    assert {r["model"] for r in bench["rows"]} == {"pop", "ease"}
    assert {f["model"] for f in bench["failed"]} == {"boom", "anything"}
    assert all(r["seeds"] == [0, 1, 2] for r in bench["rows"])


SPLIT_BOARD = """
[board]
name = "split"
benchmarks = ["tiny", "tiny-big"]
[budget]
trials = 2
seeds = 2
[[models]]
plugin = "classic"
model = "ease"
benchmarks = ["tiny"]
[[models]]
plugin = "classic"
model = "ease"
benchmarks = ["tiny-big"]
trials = 1
seeds = 1
set = { l2 = 50.0 }
[[models]]
plugin = "classic"
model = "pop"
trials = 1
"""


def test_a_model_listed_per_benchmark_gets_each_entrys_budget_and_a_run_can_take_a_part(
        tmp_path):
    from m6bench.board.board import run_board

    catalog = _tiny_catalog()
    ledger = tmp_path / "ledger.jsonl"
    board = tmp_path / "split.toml"
    board.write_text(SPLIT_BOARD)
    spec = load_board(board)
    budgets = {(b, m.model): (m.budget.trials, m.budget.seeds, dict(m.overrides))
               for b, m in spec.rows()}
    assert budgets == {("tiny", "ease"): (2, 2, {}), ("tiny", "pop"): (1, 2, {}),
                       ("tiny-big", "ease"): (1, 1, {"l2": 50.0}),
                       ("tiny-big", "pop"): (1, 2, {})}

    # one process takes tiny-big, another tiny: together they fill the board once
    big = run_board(board, ledger=ledger, device="cpu", catalog=catalog,
                    benchmarks=["tiny-big"])
    assert {(r.benchmark, r.model, r.status) for r in big} == {
        ("tiny-big", "ease", "done"), ("tiny-big", "pop", "done")}
    finals = [r for r in read_ledger(ledger).records if r["kind"] == "final"]
    assert {r["benchmark"]["name"] for r in finals} == {"tiny-big"}
    assert [r["config"]["l2"] for r in finals if r["model"] == "ease"] == [50.0]
    rest = run_board(board, ledger=ledger, device="cpu", catalog=catalog)
    assert {(r.benchmark, r.model): r.status for r in rest} == {
        ("tiny", "ease"): "done", ("tiny", "pop"): "done",
        ("tiny-big", "ease"): "skipped", ("tiny-big", "pop"): "skipped"}
    with pytest.raises(ConfigError, match=r"split\.toml: it has no benchmark 'ml-1m'; "
                                          r"choose from tiny, tiny-big"):
        run_board(board, ledger=ledger, catalog=catalog, benchmarks=["ml-1m"])
    command = CliRunner().invoke(main, ["board", "run", str(board), "--benchmark", "ml-1m",
                                        "--dry-run", "--ledger", str(ledger)])
    assert command.exit_code == 2 and "it has no benchmark 'ml-1m'" in command.output


def test_board_unknown_benchmark_fails_before_running(tmp_path):
    from m6bench.board.board import run_board

    board = tmp_path / "b.toml"
    board.write_text('[board]\nname="x"\nbenchmarks=["ml-100kk"]\n[budget]\ntrials=1\n'
                     '[[models]]\nplugin="classic"\nmodel="pop"\n')
    with pytest.raises(ConfigError, match=r"b\.toml: board\.benchmarks: .*'ml-100k'"):
        run_board(board, ledger=tmp_path / "l.jsonl")
    assert not (tmp_path / "l.jsonl").exists()


# ========================================================================= reproduce
def _reproduce(run_id, ledger, *extra):
    return CliRunner().invoke(main, ["reproduce", run_id, "--ledger", str(ledger), *extra])


def test_reproduce_matches_exactly_and_detects_edited_metrics(tmp_path):
    import m6bench

    ledger = tmp_path / "ledger.jsonl"
    record = m6bench.run("classic", model="bpr-mf", dataset="synthetic", dataset_options=SMALL,
                         seed=3, overrides={"epochs": 2, "eval_every": 1}, ledger=ledger,
                         device="cpu")
    result = _reproduce(record["run_id"], ledger)
    assert result.exit_code == 0, result.output
    assert "reproduced: all" in result.output and "(exact)" in result.output
    assert "DIFFERS" not in result.output
    again = read_ledger(ledger).records[-1]
    assert again["reproduces"] == record["run_id"] and again["kind"] == "run"

    edited = dict(record, metrics={split: dict(values) for split, values in
                                   record["metrics"].items()})
    edited["metrics"]["test"]["ndcg@10"] += 1e-9
    edited_ledger = _write(tmp_path / "edited.jsonl", [edited])
    result = _reproduce(record["run_id"][:8], edited_ledger, "--no-record")
    assert result.exit_code == 1
    assert "DIFFERS" in result.output and "test/ndcg@10" in result.output
    assert len(read_ledger(edited_ledger).records) == 1  # --no-record
    loose = _reproduce(record["run_id"], edited_ledger, "--no-record", "--tolerance", "1e-6")
    assert loose.exit_code == 0, loose.output

    missing = _reproduce("nope", ledger)
    assert missing.exit_code == 2 and "No run 'nope'" in missing.output


@pytest.mark.real_data
def test_reproduce_a_cpu_record_of_the_ci_board():
    """With the CI board's ledger (M6BENCH_BOARD_LEDGER), its cheapest final reproduces."""
    path = os.environ.get("M6BENCH_BOARD_LEDGER")
    if not path or not Path(path).is_file():
        pytest.skip("M6BENCH_BOARD_LEDGER does not name the CI board's ledger (.ci/run sets "
                    "it after `m6bench board run leaderboard/board-ci.toml`)")
    finals = [r for r in read_records(path).records
              if r.get("kind") == "final" and r["status"] == "ok" and r.get("device") == "cpu"]
    if not finals:
        pytest.skip(f"{path} holds no CPU final run")
    cheapest = min(finals, key=lambda r: (r.get("timings") or {}).get("total", math.inf))
    result = _reproduce(cheapest["run_id"], path, "--no-record")
    assert result.exit_code == 0, result.output
    assert "reproduced: all" in result.output


# ============================================================================== CI
def test_the_workflow_publishes_what_ci_runs():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "leaderboard.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))
    assert "workflow_dispatch" in triggers
    assert workflow["permissions"]["pages"] == "write"
    assert workflow["permissions"]["id-token"] == "write"
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    script = "\n".join([*(s.get("run", "") for s in steps),
                         *(str(v) for job in workflow["jobs"].values()
                           for v in (job.get("env") or {}).values())])
    for command in ('pip install "torch==2.13.0" -e ".[test]"', "m6bench board run",
                    "leaderboard/board-ci.toml", "m6bench leaderboard build", "--out site"):
        assert command in script, command
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("m6bench board run leaderboard/board-ci.toml",
                    "m6bench leaderboard build"):
        assert command in ci, f".ci/run does not run {command!r}, the workflow does"


def test_human_formatting_of_numbers_statistics_and_metrics():
    from m6bench_leaderboard import present
    assert [present.fmt(v) for v in (0.14183789, 1.4425710, 442.9, 12345.6, None)] == [
        "0.1418", "1.443", "442.9", "12,346", "-"]
    assert [present.megabytes(v) for v in (705.9, 2048.0, 0.31)] == ["706 MB", "2.00 GB", "0.31 MB"]
    stats = {"rating_mean": 3.5298, "users": 943, "density": 0.0630467, "items": 1682,
             "interactions": 100000}
    assert present.statistics(stats) == [("users", "943"), ("items", "1,682"), (
        "interactions", "100,000"), ("density", "6.30%"), ("rating mean", "3.53")]
    groups = present.metric_groups({"recall@5": 1, "ndcg@10": 2, "ndcg@5": 3, "gini@10": 4,
                                    "rmse": 5}, {}, {"gini@10": "min"})
    assert [(g["family"], g["ks"], [r["name"] for r in g["rows"]]) for g in groups] == [
        ("ranking@k", [5, 10], ["ndcg", "recall"]), ("rating", [None], ["rmse"]),
        ("coverage / diversity", [10], ["gini"])] and groups[2]["rows"][0]["lower"]


def test_frozen_pretrained_weights_show_beside_the_trained_parameters(tmp_path):
    records = synthetic_records(models=2, seeds=2, trials=2)
    for record in records:
        if record["model"] == "model-0":
            record["parameters"], record["trained_parameters"] = 22_713_216, 3_072
        else:  # a model that fits every parameter, and an older record without the field
            record["parameters"] = 4_096
            record.pop("trained_parameters", None)
    build_site(_write(tmp_path / "ledger.jsonl", records), tmp_path / "site")
    data = json.loads((tmp_path / "site" / "results.json").read_text())
    rows = {row["model"]: row for row in data["benchmarks"][0]["rows"]}
    assert rows["model-0"]["trained_parameters"] == 3_072
    assert rows["model-1"]["trained_parameters"] is None
    page = (tmp_path / "site" / "benchmarks" / f"{data['benchmarks'][0]['file']}.html"
            ).read_text()
    assert page.count(" trained</small>") == 1
    frozen_run = (tmp_path / "site" / "runs" / f"{rows['model-0']['run_files'][0]}.html"
                  ).read_text()
    assert "(3,072 trained, the rest frozen pretrained weights)" in frozen_run
    other_run = (tmp_path / "site" / "runs" / f"{rows['model-1']['run_files'][0]}.html"
                 ).read_text()
    assert "trained, the rest frozen" not in other_run
