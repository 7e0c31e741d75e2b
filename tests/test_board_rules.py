"""The board's rules: equal trials (a time limit only guards), anytime curves, what final
seeds vary (and paired tests that refuse different splits), single runs on ``show``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from plugins_for_tests import catalog_with, fake_plugin

from m6bench import BenchmarkSpec
from m6bench.cli import main
from m6bench_leaderboard import (
    BoardError,
    append_record,
    build_leaderboard,
    build_site,
    load_board,
    read_records,
    render_leaderboard,
)
from m6bench_leaderboard.aggregate import vary_of
from m6bench_leaderboard.anytime import anytime_curve
from m6bench_leaderboard.board import Budget, parse_board
from m6bench_leaderboard.stats import split_mismatch
from m6bench_leaderboard.testing import make_record

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_users": 200, "n_items": 120}


@pytest.fixture(autouse=True)
def _isolated(isolated):
    isolated.with_default_ledger()


def _write(path: Path, records) -> Path:
    for record in records:
        append_record(path, record)
    return path


def _board(budget: str, models: str = '[[models]]\nplugin = "classic"\nmodel = "pop"\n'):
    import tomllib

    text = f'[board]\nname = "b"\nbenchmarks = ["tiny"]\n[budget]\n{budget}\n{models}'
    return parse_board(tomllib.loads(text), "b.toml")


# ========================================================================= board format
def test_a_budget_is_trials_and_a_time_limit_only_guards():
    board = _board("trials = 7\nguard_s = 90")
    assert (board.budget.trials, board.budget.timeout_s) == (7, 90.0)
    # timeout_s is the guard's older name: old boards mean the same
    assert _board("trials = 7\ntimeout_s = 90").budget == board.budget
    with pytest.raises(BoardError, match=r"b.toml: budget.trials is missing; .*trials = 20"):
        _board("guard_s = 90")
    with pytest.raises(BoardError, match=r"budget.timeout_s is given with guard_s.*keep guard_s"):
        _board("trials = 7\nguard_s = 90\ntimeout_s = 90")
    with pytest.raises(BoardError, match=r"models\[0\].guard_s is -1"):
        _board("trials = 7", '[[models]]\nplugin = "classic"\nmodel = "pop"\nguard_s = -1\n')


def test_vary_says_which_seed_a_final_changes():
    assert _board("trials = 2").budget.vary == "both"  # what records before it meant
    board = _board('trials = 2\nvary = "init"')
    assert board.budget.vary == "init" and board.to_dict()["budget"]["vary"] == "init"
    with pytest.raises(BoardError, match=r"budget.vary is 'seeds'; use one of init, split, "):
        _board('trials = 2\nvary = "seeds"')
    # (init seed, split seed) of final 3
    assert Budget(vary="init").final_seeds(3) == (3, 0)
    assert Budget(vary="split").final_seeds(3) == (0, 3)
    assert Budget(vary="both").final_seeds(3) == (3, 3)


@pytest.mark.parametrize("name", ["board.toml", "board-ci.toml"])
def test_the_shipped_boards_give_every_tunable_model_equal_trials_on_one_split(name):
    board = load_board(ROOT / "leaderboard" / name)
    assert board.budget.vary == "init"
    tuned = {entry.budget.trials for bench, entry in board.rows()
             if bench == "ml-100k" and entry.model not in ("pop", "random")}
    assert len(tuned) == 1, f"{name}: ml-100k models get different trials: {tuned}"
    assert all(entry.budget.trials == 1 for _, entry in board.rows()
               if entry.model in ("pop", "random"))  # no hyperparameters


# ========================================================================= anytime curves
def _trial(number: int, status: str, value: float | None, seconds: float,
           model: str = "model", sweep: str = "s") -> dict:
    return make_record(kind="trial", model=model, sweep_id=sweep, trial=number, status=status,
                       valid={"ndcg@10": value} if value is not None else None,
                       train_seconds=seconds - 0.31)  # make_record adds 0.31 s of overhead


def test_anytime_curve_is_the_best_ok_value_so_far_against_trials_and_seconds():
    history = build_leaderboard([
        make_record(model="model", sweep_id="s", test={"ndcg@10": 0.3}),
        _trial(0, "ok", 0.20, 1.31),
        _trial(1, "pruned", None, 1.0),  # spent its second, has no final value
        _trial(2, "ok", 0.25, 3.0),
        _trial(3, "failed", None, 1.0),
        _trial(4, "ok", 0.40, 1.0),
        _trial(5, "ok", 0.10, 2.0),  # worse: the best stays
    ])["sweeps"]["s"]["trials"]
    curve = anytime_curve(history, maximize=True)
    assert curve["by_trials"] == [(1, 0.2), (2, 0.2), (3, 0.25), (4, 0.25), (5, 0.4), (6, 0.4)]
    assert [round(s, 6) for s, _ in curve["by_seconds"]] == [1.31, 2.31, 5.31, 6.31, 7.31,
                                                              9.31]
    assert [b for _, b in curve["by_seconds"]] == [b for _, b in curve["by_trials"]]


def test_anytime_curve_minimises_and_starts_at_the_first_ok_trial():
    trials = [{"trial": 1, "status": "ok", "value": 0.9, "seconds": 2.0},
              {"trial": 0, "status": "failed", "value": None, "seconds": 5.0},
              {"trial": 2, "status": "ok", "value": 0.7, "seconds": None}]
    curve = anytime_curve(trials, maximize=False)  # an rmse: lower is better
    assert curve == {"by_trials": [(2.0, 0.9), (3.0, 0.7)],
                     "by_seconds": [(7.0, 0.9), (7.0, 0.7)]}


def test_the_benchmark_page_draws_every_models_anytime_curve(tmp_path):
    records = [make_record(model=m, sweep_id=f"s-{m}", test={"ndcg@10": v})
               for m, v in (("fast", 0.3), ("slow", 0.35))]
    records += [_trial(i, "ok", 0.1 + 0.01 * i, 0.5, model="fast", sweep="s-fast")
                for i in range(5)]
    records += [_trial(i, "ok", 0.2 + 0.05 * i, 60.0, model="slow", sweep="s-slow")
                for i in range(2)]
    build_site(None, tmp_path / "site", records=records)
    page = (tmp_path / "site" / "benchmarks" / "bench.html").read_text()
    plot = page[page.index('class="plot plot-anytime"'):]
    plot = plot[:plot.index("</svg>")]
    # one staircase per model in each panel: against trials, and against seconds
    assert plot.count("<polyline") == 4 and plot.count(">fast<") == 2
    assert "slow: best 0.25" in plot and "fast: best 0.14" in plot
    assert "seconds of trials (log)" in plot and "trials finished" in plot


# ========================================================================= under budget
def test_a_row_its_guard_stopped_is_flagged_under_budget():
    records = [make_record(model=m, sweep_id=f"s-{m}", test={"ndcg@10": 0.3},
                           budget={"trials": 3, "timeout_s": 10.0})
               for m in ("full", "short")]
    records += [_trial(i, "ok", 0.2, 4.0, model="full", sweep="s-full") for i in range(3)]
    records += [_trial(0, "ok", 0.2, 12.0, model="short", sweep="s-short")]
    rows = {r["model"]: r["budget"] for r in build_leaderboard(records)["benchmarks"][0]["rows"]}
    assert (rows["full"]["under_budget"], rows["short"]["under_budget"]) == (False, True)
    assert rows["short"]["tuning_seconds"] == pytest.approx(12.0)
    text = render_leaderboard(build_leaderboard(records))
    assert "1/3 UNDER BUDGET" in text and "3/3 UNDER" not in text
    assert "UNDER BUDGET: the row ran fewer trials" in text


def _tiny_catalog():
    tiny = fake_plugin("tiny", benchmarks=[BenchmarkSpec(
        "tiny", dataset="synthetic", dataset_options=SMALL, tasks=("ranking",))])
    return catalog_with(("tiny", tiny))


def test_board_run_flags_the_guard_and_varies_only_the_seed_it_is_told(tmp_path):
    from m6bench.board.board import run_board

    catalog = _tiny_catalog()
    ledger = tmp_path / "ledger.jsonl"
    path = tmp_path / "b.toml"
    path.write_text('[board]\nname = "b"\nbenchmarks = ["tiny"]\n[budget]\ntrials = 1\n'
                    'seeds = 2\nvary = "init"\n[[models]]\nplugin = "classic"\nmodel = "pop"\n'
                    '[[models]]\nplugin = "classic"\nmodel = "ease"\ntrials = 3\n'
                    'guard_s = 0.001\n')
    lines: list[str] = []
    results = {r.model: r for r in run_board(path, ledger=ledger, device="cpu",
                                             catalog=catalog, report=lines.append)}
    assert any("the guard of 0.001 s of trials stopped the sweep at 1 of its 3 trials: "
               "under budget" in line for line in lines)
    assert results["pop"].status == "done" and not results["pop"].under_budget
    assert results["ease"].under_budget and results["ease"].trials_done == 1
    assert "UNDER BUDGET: 1/3 trials" in results["ease"].message
    finals = [r for r in read_records(ledger).records if r["kind"] == "final"]
    assert sorted((r["model"], r["seed"], r["init_seed"], r["split_seed"]) for r in finals) == [
        ("ease", 0, 0, 0), ("ease", 1, 1, 0), ("pop", 0, 0, 0), ("pop", 1, 1, 0)]
    assert len({r["cut"]["fingerprint"] for r in finals}) == 1  # one split for every final
    again = run_board(path, ledger=ledger, device="cpu", catalog=catalog)
    assert {r.status for r in again} == {"skipped"}

    data = build_leaderboard(read_records(ledger).records, load_board(path))
    (bench,) = data["benchmarks"]
    assert bench["vary"] == "init"
    assert {r["model"]: r["budget"]["under_budget"] for r in bench["rows"]} == {
        "pop": False, "ease": True}
    # a board that varies both seeds wants other finals: the row runs again
    path.write_text(path.read_text().replace('vary = "init"', 'vary = "both"'))
    both = {r.model: r for r in run_board(path, ledger=ledger, device="cpu", catalog=catalog)}
    assert both["pop"].status == "done"
    finals = [r for r in read_records(ledger).records
              if r["kind"] == "final" and r["model"] == "pop" and r["seed"] == 1]
    assert sorted((r["init_seed"], r["split_seed"]) for r in finals) == [(1, 0), (1, 1)]


def test_a_run_request_seeds_its_cut_and_its_model_apart(tmp_path):
    from m6bench.runs.run import RunRequest, execute, plan_run

    catalog = _tiny_catalog()

    def record(**seeds):
        request = RunRequest(plugin="classic", model="pop", benchmark="tiny", device="cpu",
                             ledger=tmp_path / "runs.jsonl", **seeds)
        return execute(plan_run(request, catalog))

    old = record(seed=1)
    assert (old["seed"], old["init_seed"], old["split_seed"]) == (1, 1, 1)
    fixed = record(seed=1, split_seed=0)
    zero = record(seed=0)
    assert fixed["cut"]["fingerprint"] == zero["cut"]["fingerprint"] \
        != old["cut"]["fingerprint"]
    # only the two seeds it derives matter: (init 1, split 0) either way, bit for bit
    same = record(seed=0, init_seed=1)
    assert (same["init_seed"], same["split_seed"]) == (1, 0)
    assert same["metrics"]["test"] == fixed["metrics"]["test"]


# ========================================================================= paired tests
def _final(model: str, seed: int, cut: str, shift: float) -> dict:
    record = make_record(model=model, seed=seed, sweep_id=f"s-{model}",
                         test={"ndcg@10": 0.3 + shift},
                         per_user={"users": list(range(40)),
                                   "ndcg@10": [0.3 + shift + 0.01 * (u % 7) for u in range(40)]})
    record["cut"]["fingerprint"] = cut
    return record


def test_paired_tests_refuse_models_tested_on_different_splits():
    same = [_final("a", s, f"cut{s}", 0.1) for s in (0, 1)] + \
        [_final("b", s, f"cut{s}", 0.0) for s in (0, 1)]
    (bench,) = build_leaderboard(same)["benchmarks"]
    b = next(r for r in bench["rows"] if r["model"] == "b")["significance"]["ndcg@10"]
    assert b["refused"] is None and b["pairs"] == 80 and b["tied_with_best"] is False

    # model c's seed-1 final was cut by another split: its user ids name other test items
    mixed = [*same[:2], _final("c", 0, "cut0", 0.0), _final("c", 1, "other", 0.0)]
    assert split_mismatch(mixed[:2], mixed[2:]) == [1]
    (bench,) = build_leaderboard(mixed)["benchmarks"]
    c = next(r for r in bench["rows"] if r["model"] == "c")["significance"]["ndcg@10"]
    assert c["p"] is None and c["tied_with_best"] is None
    assert "seeds [1] were cut by another split" in c["refused"]


def test_vary_is_read_from_the_finals_seeds():
    def final(seed, init, split):
        return {**make_record(seed=seed), "init_seed": init, "split_seed": split}

    assert vary_of([final(0, 0, 0), final(1, 1, 0)]) == "init"
    assert vary_of([final(0, 0, 0), final(1, 0, 1)]) == "split"
    assert vary_of([final(0, 0, 0), final(1, 1, 1)]) == "both"
    assert vary_of([make_record(seed=0), make_record(seed=1)]) == "both"  # older records


# ========================================================================= single runs
def test_show_runs_lists_single_runs_marked_untuned(tmp_path):
    ledger = _write(tmp_path / "l.jsonl", [
        make_record(model="tuned", sweep_id="s", test={"ndcg@10": 0.3}),
        make_record(model="mine", kind="run", seed=0, test={"ndcg@10": 0.2512}, minute=5),
        make_record(model="other", kind="run", benchmark="solo", test={"ndcg@10": 0.1}),
    ])
    data = build_leaderboard(read_records(ledger).records)
    assert [r["model"] for r in data["benchmarks"][0]["rows"]] == ["tuned"]  # never ranked
    assert data["single_runs"]["bench"]["rows"][0]["untuned"] is True
    plain = render_leaderboard(data)
    assert "mine" not in plain
    text = render_leaderboard(data, runs=True)
    assert "bench: single runs (m6bench run), untuned" in text
    assert "mine" in text and "0.2512" in text and "untuned" in text
    assert "solo: single runs" in text and "other" in text  # a benchmark with runs only

    runner = CliRunner()
    out = runner.invoke(main, ["leaderboard", "show", "--ledger", str(ledger), "--runs"])
    assert out.exit_code == 0, out.output
    assert "mine" in out.output and "untuned" in out.output
    out = runner.invoke(main, ["leaderboard", "show", "--ledger", str(ledger), "--runs",
                               "--format", "json"])
    assert json.loads(out.output)["single_runs"]["bench"]["rows"][0]["model"] == "mine"
    out = runner.invoke(main, ["leaderboard", "show", "--ledger", str(ledger), "--deployment"])
    assert out.exit_code == 0 and "no variant or serving records yet" in out.output


# ========================================================================= deployment rows
def test_a_row_asks_for_variants_and_load_tests_of_its_seed_zero_final(tmp_path):
    from m6bench.board.board import run_board

    catalog = _tiny_catalog()
    ledger = tmp_path / "ledger.jsonl"
    path = tmp_path / "b.toml"
    path.write_text('[board]\nname = "b"\nbenchmarks = ["tiny"]\n[budget]\ntrials = 1\n'
                    'seeds = 1\n[[models]]\nplugin = "classic"\nmodel = "ease"\n'
                    'variants = ["int8"]\n'
                    'loadtest = { users = 2, duration_s = 1, backend = "torch" }\n')
    lines: list[str] = []
    run_board(path, ledger=ledger, device="cpu", catalog=catalog, report=lines.append)
    records = read_records(ledger).records
    final = next(r for r in records if r.get("kind") == "final")
    variants = [r for r in records if r.get("kind") == "variant"]
    servings = [r for r in records if r.get("kind") == "serving"]
    assert [v["variant"]["name"] for v in variants] == ["int8"]
    assert variants[0]["variant"]["base_run_id"] == final["run_id"]
    assert sorted((s["serving"]["variant"] or "full") for s in servings) == ["full", "int8"]
    assert all(s["serving"]["concurrency"] == 2 and s["serving"]["requests"] > 0
               for s in servings), lines
    # a second run finds all of it recorded and adds nothing
    run_board(path, ledger=ledger, device="cpu", catalog=catalog, report=lines.append)
    assert len(read_records(ledger).records) == len(records)
    with pytest.raises(BoardError, match=r"models\[0\]\.loadtest\.backend"):
        _board("trials = 1", '[[models]]\nplugin = "classic"\nmodel = "ease"\n'
                             'loadtest = { backend = "tensorrt" }\n')


def test_curve_names_that_would_overlap_are_spread_apart_within_the_panel():
    from m6bench_leaderboard.plots import LABEL_GAP, _spread_labels

    assert _spread_labels([50.0, 120.0, 200.0], 10.0, 300.0) == [50.0, 120.0, 200.0]
    crowded = [100.0, 101.0, 99.0, 100.5]  # four curves ending at nearly one value
    placed = _spread_labels(crowded, 10.0, 300.0)
    assert sorted(placed) == [99.0, 99.0 + LABEL_GAP, 99.0 + 2 * LABEL_GAP, 99.0 + 3 * LABEL_GAP]
    # the names keep the curves' order: the highest curve's name stays on top
    assert [placed.index(v) for v in sorted(placed)] == [2, 0, 3, 1]
    at_the_floor = _spread_labels([295.0, 296.0, 297.0], 10.0, 300.0)
    assert max(at_the_floor) == 300.0 and sorted(at_the_floor) == [
        300.0 - 2 * LABEL_GAP, 300.0 - LABEL_GAP, 300.0]
