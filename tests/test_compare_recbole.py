"""benchmarks/compare_recbole.py without RecBole: the m6bench side, the table, the errors."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_recbole.py"


# the m6bench side runs real (tiny) trainings: their cache and ledger stay in tmp_path
pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(scope="module")
def compare(script_module):
    with script_module(SCRIPT, "compare_recbole") as module:
        yield module


def test_m6bench_side_makes_table_rows_on_a_tiny_synthetic_run(compare, tmp_path):
    sides = {
        name: compare.run_m6bench_side(compare.PAIRS[name], "synthetic", epochs=1, patience=1,
                                       seed=0, threads=1, eval_repeats=2,
                                       ledger=tmp_path / "ledger.jsonl")
        for name in ("bpr-mf", "ease")
    }
    bpr = sides["bpr-mf"]
    assert bpr.ok and bpr.epochs == 1 and bpr.config["eval_every"] == 1
    assert bpr.epoch_s > 0 and bpr.eval_s > 0 and bpr.floor_s > 0
    assert 0 <= bpr.ndcg10 <= 1 and 0 <= bpr.recall10 <= 1 and bpr.peak_rss_mb > 0
    assert sides["ease"].floor_s is None  # no embedding: no matmul floor

    recbole = compare.Side("recbole", "BPR", "synthetic", epochs=3, best_epoch=2,
                           epoch_s=bpr.epoch_s * 4, eval_s=bpr.eval_s * 10,
                           peak_rss_mb=1000.0, recall10=bpr.recall10, ndcg10=bpr.ndcg10)
    skipped = compare.Side("recbole", "EASE", "synthetic", status="skipped")
    rows = [compare.Row(compare.PAIRS["bpr-mf"], "synthetic", bpr, recbole),
            compare.Row(compare.PAIRS["ease"], "synthetic", sides["ease"], skipped)]
    ratios = rows[0].ratios()
    assert ratios["epoch_speedup"] == pytest.approx(4.0)
    assert ratios["eval_speedup"] == pytest.approx(10.0)
    assert ratios["ndcg_ratio"] == pytest.approx(1.0)
    cells = compare.table_rows(rows)
    assert len(cells) == 2 and all(len(r) == len(compare.HEADERS) for r in cells)
    assert cells[0][:3] == ["bpr-mf / BPR", "synthetic", "1 / 3 (best 2)"]
    assert cells[0][5] == "4.00x" and cells[0][8] == "10.0x"
    assert cells[1][0] == "ease / EASE (fit)" and cells[1][2] == "1 / skipped"
    table = compare.render_table(rows)
    assert "s/epoch m6" in table and "N@10 m6/rb" in table
    checks = compare.acceptance_checks(rows)
    assert [c["passed"] for c in checks] == [True, None]  # the EASE row has no RecBole side

    report = {"started_at": "now", "machine": {"cores": 2, "loadavg_start": (0, 0, 0),
                                               "loadavg_end": (0, 0, 0)},
              "settings": {"threads": 1, "epochs": {}, "patience": 1, "seed": 0},
              "rows": [r.to_dict() for r in rows], "checks": checks}
    compare.write_outputs(tmp_path / "out", report, table, compare.render_checks(checks))
    assert "bpr-mf / BPR" in (tmp_path / "out.md").read_text()
    assert (tmp_path / "out.json").read_text().count('"ratios"') == 2


def test_missing_recbole_venv_fails_with_a_clear_message(compare, tmp_path, capsys):
    venv = tmp_path / "no-venv"
    with pytest.raises(compare.RecBoleUnavailable, match="--setup-recbole") as excinfo:
        compare.check_recbole(venv)
    assert str(venv) in str(excinfo.value)
    # the command line stops before running anything, exit status 2
    assert compare.main(["--recbole-venv", str(venv), "--datasets", "ml-100k"]) == 2
    assert "No RecBole virtual environment" in capsys.readouterr().err


def test_broken_recbole_venv_says_recbole_does_not_import(compare, tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)  # a Python without RecBole
    with pytest.raises(compare.RecBoleUnavailable, match="does not import"):
        compare.check_recbole(venv)


def test_recbole_config_matches_the_m6bench_run(compare, tmp_path):
    gnn = compare.recbole_config(compare.PAIRS["gnn-mf"], {"dim": 32, "layers": 2},
                                 data_root=tmp_path, checkpoint_dir=tmp_path, seed=7,
                                 epochs=15, patience=10, extra={"eval_batch_size": 8192})
    assert gnn["embedding_size"] == 32 and gnn["n_layers"] == 2 and gnn["epochs"] == 15
    assert gnn["valid_metric"] == "NDCG@10" and gnn["stopping_step"] == 10
    assert gnn["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]}
    assert gnn["eval_args"]["mode"] == "full" and gnn["eval_batch_size"] == 8192
    ease = compare.recbole_config(compare.PAIRS["ease"], {"l2": 250.0}, data_root=tmp_path,
                                  checkpoint_dir=tmp_path, seed=7, epochs=15, patience=10)
    assert ease["reg_weight"] == 250.0 and ease["epochs"] == 1
    assert compare.m6bench_overrides(compare.PAIRS["ease"], 15, 10, {}) == {}
    assert compare.m6bench_overrides(compare.PAIRS["bpr-mf"], 15, 4, {"lr": 0.01}) == {
        "lr": 0.01, "epochs": 15, "patience": 4, "eval_every": 1}
    caps = compare._epoch_caps(["gnn-mf@ml-1m=3", "bpr-mf=7"])
    assert compare.epochs_cap(caps, "gnn-mf", "ml-1m") == 3
    assert compare.epochs_cap(caps, "gnn-mf", "ml-100k") == compare.DEFAULT_EPOCHS["gnn-mf"]
    assert compare.epochs_cap(caps, "bpr-mf", "ml-1m") == 7
    assert compare._scoped(["LightGCN:learning_rate=0.002", "eval_batch_size=8192"], "x") == {
        "LightGCN": {"learning_rate": 0.002}, "*": {"eval_batch_size": 8192}}


def test_recbole_data_is_linked_under_the_names_it_expects(compare, tmp_path):
    root = tmp_path / "data"
    (root / "recbole-ml-100k").mkdir(parents=True)
    (root / "recbole-ml-100k" / "ml-100k.inter").write_text("user_id:token\titem_id:token\n")
    dest = compare.link_recbole_data(root, ["ml-100k"], tmp_path / "linked")
    assert (dest / "ml-100k" / "ml-100k.inter").is_file()
    with pytest.raises(compare.DataUnavailable, match="has no ml-1m"):
        compare.link_recbole_data(root, ["ml-1m"], tmp_path / "linked")


def test_the_recbole_driver_is_valid_python(compare):
    compile(compare.DRIVER, "driver.py", "exec")


def test_a_child_past_its_timeout_is_killed_with_its_launcher(compare, tmp_path):
    pid_file = tmp_path / "pid"
    code, peak_mb, wall = compare.run_child(
        [sys.executable, "-c", f"import os, time; open({str(pid_file)!r}, 'w').write("
         "str(os.getpid())); time.sleep(60)"],
        env={"PATH": ""}, cwd=tmp_path, log_path=tmp_path / "log", timeout=2)
    assert code == -9 and peak_mb is None and wall < 30
    # the command itself was killed too, not orphaned: gone, or a zombie not yet reaped
    status, state = Path(f"/proc/{int(pid_file.read_text())}/status"), "?"
    deadline = time.monotonic() + 10  # a SIGKILL lands when the process next runs
    while state not in ("gone", "Z", "X") and time.monotonic() < deadline:
        try:
            state = status.read_text().split("State:")[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        time.sleep(0.05)
    assert state in ("gone", "Z", "X"), state


def test_child_peak_memory_is_the_child_own(compare, tmp_path):
    # this process holds 400 MB more than the child will: Linux would count it in a plain
    # fork's peak
    held = bytearray(400 * 2**20)
    held[::4096] = b"1" * len(held[::4096])
    code, peak_mb, wall = compare.run_child(
        [sys.executable, "-c", "x = bytearray(150 * 2**20); x[::4096] = b'1' * len(x[::4096])"],
        env={"PATH": ""}, cwd=tmp_path, log_path=tmp_path / "log", timeout=120)
    assert code == 0 and wall > 0
    assert 150 <= peak_mb < 350, peak_mb
    del held


def test_ledger_gets_one_line_per_row_with_spread_code_and_the_run_record(
        compare, tmp_path, monkeypatch, capsys):
    """main(--ledger) with RecBole faked and the m6bench side in-process on synthetic data."""
    from m6bench.runs.reproduce import find_record, reproduce

    data = tmp_path / "data" / "recbole-ml-100k"
    data.mkdir(parents=True)
    (data / "ml-100k.inter").write_text("user_id:token\titem_id:token\n")
    monkeypatch.setattr(compare, "check_recbole", lambda venv: {"recbole": "1.2.1"})

    def m6bench_child(pair, dataset, *, epochs, patience, seed, threads, overrides,
                      eval_repeats, workdir, **_):
        return compare.run_m6bench_side(
            pair, "synthetic", epochs=epochs, patience=patience, seed=seed, threads=threads,
            overrides=overrides, eval_repeats=eval_repeats,
            ledger=workdir / f"m6bench-{pair.model}" / "ledger.jsonl")

    def recbole_side(pair, dataset, config, *, eval_repeats, **_):
        side = compare.Side("recbole", pair.recbole, dataset, epochs=2, best_epoch=2,
                            epoch_s=0.5, eval_s=0.2, peak_rss_mb=900.0, recall10=0.1,
                            ndcg10=0.1, config=dict(config))
        side.set_spread([0.6, 0.4], [0.3, 0.2, 0.1][:eval_repeats])
        return side

    monkeypatch.setattr(compare, "run_m6bench_child", m6bench_child)
    monkeypatch.setattr(compare, "run_recbole_side", recbole_side)
    ledger = tmp_path / "results" / "speed-recbole.jsonl"
    common = ["--datasets", "ml-100k", "--data-dir", str(tmp_path / "data"), "--threads", "1",
              "--patience", "1", "--epochs", "bpr-mf=2", "--ledger", str(ledger)]
    assert compare.main([*common, "--models", "bpr-mf", "ease", "--eval-repeats", "3",
                         "--workdir", str(tmp_path / "w1"), "--out", str(tmp_path / "o1")]) == 0
    assert compare.main([*common, "--models", "ease", "--workdir", str(tmp_path / "w2"),
                         "--out", str(tmp_path / "o2")]) == 0  # a second invocation appends
    assert (tmp_path / "o1.json").is_file() and (tmp_path / "o1.md").is_file()
    assert "Appended 2 line(s)" in capsys.readouterr().out

    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [(e["model"], e["peer_model"]) for e in lines] == [
        ("bpr-mf", "BPR"), ("ease", "EASE"), ("ease", "EASE")]
    assert lines[0]["invocation"] == lines[1]["invocation"] != lines[2]["invocation"]
    runs = compare.runs_ledger(ledger)
    assert runs == tmp_path / "results" / "speed-recbole-runs.jsonl"
    for entry in lines:
        assert entry["kind"] == "speed" and entry["table"] == "recbole"
        assert entry["peer"] == "RecBole 1.2.1" and entry["dataset"] == "ml-100k"
        assert entry["status"] == "ok"
        for side in (entry["m6bench"], entry["recbole"]):
            assert side["epoch_s_min"] <= side["epoch_s_median"] <= max(side["epoch_s_all"])
            assert side["eval_s_min"] <= side["eval_s_median"] <= max(side["eval_s_all"])
            assert side["eval_s"] == side["eval_s_median"]  # eval_s stays the median
        m6 = entry["m6bench"]
        assert len(m6["epoch_s_all"]) == m6["epochs"]
        assert m6["epoch_s"] == pytest.approx(m6["train_s"] / m6["epochs"])  # still the mean
        assert sum(m6["epoch_s_all"]) <= m6["train_s"] * 1.05 + 1e-3
        assert entry["ratios"]["eval_speedup"] == pytest.approx(
            entry["recbole"]["eval_s"] / m6["eval_s"])
        assert [c["check"] for c in entry["checks"]] == [
            f"{entry['model']} ml-100k: test NDCG@10 m6bench / RecBole {entry['peer_model']}"]
        settings = entry["settings"]
        assert settings["threads"] == 1 and settings["patience"] == 1
        assert settings["seed"] == 2020 and settings["eval_repeats"] == 3
        assert settings["epochs_cap"] == (2 if entry["model"] == "bpr-mf" else None)
        assert {"cores", "loadavg_start", "loadavg_end"} <= set(entry["machine"])
        assert entry["started_at"] <= entry["ended_at"]
        assert entry["command"][:2] == ["python", "benchmarks/compare_recbole.py"]
        assert entry["command"][entry["command"].index("--ledger") + 1] == str(ledger)
        code = entry["code"]
        assert code["harness"]["sha256"] and code["harness"]["distribution"]
        assert code["plugin"]["name"] == "classic" and code["plugin"]["sha256"]
        record = find_record(entry["m6bench_run_id"], runs)
        assert record["model"] == entry["model"] and "per_user" not in record
        assert record["code"] == entry["code"]  # the identity the run record names
        assert record["metrics"]["test"]["ndcg@10"] == m6["ndcg10"]
    bpr = lines[0]
    assert len(bpr["m6bench"]["eval_s_all"]) == 3 and len(lines[2]["m6bench"]["eval_s_all"]) == 3
    assert len(runs.read_text().splitlines()) == 3

    # the copied record reproduces exactly (m6bench reproduce RUN_ID --ledger ... --no-record)
    result = reproduce(lines[2]["m6bench_run_id"], ledger=runs, record=False)
    assert result.ok and len(runs.read_text().splitlines()) == 3
