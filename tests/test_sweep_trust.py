"""Trustworthy sweep records (issue #15): a resumed study never repeats a config, a sweep
with no complete trial fails loudly (one line per failed trial, tracebacks in the ledger),
and a diverged training is a failed run, not an ``ok`` one."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import types
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from plugins_for_tests import PopularityModel, catalog_with, fake_plugin

from m6bench import ModelSpec, RunFailed
from m6bench.sweeps.spec import ERROR_ATTR
from m6bench.sweeps.storage import finished_counts, make_storage
from m6bench_leaderboard import read_ledger

SMALL = {"n_users": 200, "n_items": 120}
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _isolated(isolated):
    isolated.with_default_ledger()


class _Popular(PopularityModel):
    """Popularity scores; ``seconds`` of sleep per epoch, so a test can kill it mid-trial,
    and a reported ``loss`` of ``loss_scale`` (a huge one is a diverged training)."""

    def fit_epoch(self, train, epoch):
        if self.config.get("boom"):
            raise RuntimeError(f"injected failure (k={self.config['k']})")
        time.sleep(float(self.config.get("seconds", 0.0)))
        return {"loss": 0.5 * float(self.config.get("loss_scale", 1.0))}


FIXED = {"epochs": 2, "patience": 2, "eval_every": 1}


def trust_plugin() -> types.ModuleType:
    """Models with small discrete search spaces (where a repeated config is likely)."""
    return fake_plugin("trust", models=[
        # 3 x 3 configs, plus the defaults (outside the space)
        ModelSpec("grid", build=_Popular, defaults={**FIXED, "k": 0, "w": 0, "seconds": 0.0},
                  search_space=lambda t: {"k": t.suggest_categorical("k", [1, 2, 3]),
                                          "w": t.suggest_categorical("w", [1, 2, 3])}),
        # 2 configs, plus the defaults
        ModelSpec("tiny", build=_Popular, defaults={**FIXED, "k": 0},
                  search_space=lambda t: {"k": t.suggest_categorical("k", [1, 2])}),
        ModelSpec("fails", build=_Popular, defaults={**FIXED, "k": 0, "boom": True},
                  search_space=lambda t: {"k": t.suggest_int("k", 1, 10_000)}),
        ModelSpec("blows-up", build=_Popular, defaults={**FIXED, "k": 0, "loss_scale": 1.0},
                  search_space=lambda t: {
                      "k": t.suggest_int("k", 1, 10_000),
                      "loss_scale": t.suggest_categorical("loss_scale", [1.0, 1e20])}),
    ])


def _catalog():
    return catalog_with(("trust", trust_plugin()))


def _configs(study):
    """The resolved configs of the study's finished (budget-counted) trials, by number."""
    return {t.number: json.dumps(t.user_attrs["config"], sort_keys=True)
            for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and ERROR_ATTR in t.user_attrs)}


def _assert_no_config_twice(study):
    configs = _configs(study)
    repeated = {c for c in configs.values() if list(configs.values()).count(c) > 1}
    assert not repeated, {n: c for n, c in configs.items() if c in repeated}


# ----------------------------------------------------------------------- item A: resumption


def test_continuing_a_study_never_repeats_a_finished_config(tmp_path):
    """A second process (same storage and study) used to re-seed the sampler with the same
    seed and sample the first process's configs again."""
    from m6bench.sweeps.sweep import sweep

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    ledger = tmp_path / "ledger.jsonl"
    kwargs = dict(model="grid", dataset="synthetic", dataset_options=SMALL, seeds=0,
                  storage=storage, study_name="grid", pruner="none", ledger=ledger,
                  catalog=_catalog())
    sweep("trust", trials=4, **kwargs)
    result = sweep("trust", trials=7, **kwargs)
    assert result.counts["finished"] == 7 and result.counts["complete"] == 7, result.counts
    _assert_no_config_twice(result.study)
    # refused samples take no budget and write no record: one ok record per finished trial
    trials = [r for r in read_ledger(ledger).records if r["kind"] == "trial"]
    assert len(trials) == 7 and all(r["status"] == "ok" for r in trials)
    assert len({r["config_hash"] for r in trials}) == 7


def test_a_tiny_space_ends_the_sweep_once_exhausted(tmp_path):
    """Defaults plus two configs: a budget of 6 stops at 3 finished trials, not 6 with
    repeats; a model with nothing to sample runs once."""
    from m6bench.sweeps.sweep import sweep

    lines = []
    ledger = tmp_path / "ledger.jsonl"
    result = sweep("trust", model="tiny", dataset="synthetic", dataset_options=SMALL,
                   trials=6, seeds=0, pruner="none", ledger=ledger, catalog=_catalog(),
                   report=lines.append)
    assert result.counts["finished"] == 3 and result.counts["complete"] == 3, result.counts
    _assert_no_config_twice(result.study)
    from m6bench.sweeps.spec import DUPLICATE_ATTR

    refused = [t for t in result.study.get_trials(deepcopy=False)
               if DUPLICATE_ATTR in t.user_attrs]
    assert refused and all(t.state == TrialState.FAIL for t in refused)
    assert any("search space looks exhausted" in line for line in lines), lines
    assert len([r for r in read_ledger(ledger).records if r["kind"] == "trial"]) == 3

    pop = sweep("classic", model="pop", dataset="synthetic", dataset_options=SMALL, trials=3,
                seeds=0, ledger=tmp_path / "pop.jsonl")
    assert pop.counts["finished"] == 1, pop.counts


def test_a_sampled_config_equal_to_the_defaults_is_refused(tmp_path):
    """Configs are compared as the objective would run them, not as Optuna's params: the
    defaults trial has no params, yet a sample resolving to its config repeats it."""
    from m6bench.sweeps.sweep import sweep

    plugin = fake_plugin("same", models=[ModelSpec(
        "same", build=_Popular, defaults={**FIXED, "k": 1},
        search_space=lambda t: {"k": t.suggest_categorical("k", [1, 2])})])
    result = sweep("same", dataset="synthetic", dataset_options=SMALL, trials=3, seeds=0,
                   pruner="none", ledger=tmp_path / "ledger.jsonl",
                   catalog=catalog_with(("same", plugin)))
    assert result.counts["finished"] == 2, result.counts  # defaults (k=1) and k=2
    _assert_no_config_twice(result.study)


RUNNER = """
import sys
sys.path.insert(0, {tests!r})
import m6bench.sweeps.storage
import m6bench.cli
import m6bench.cli.common
from m6bench import load_catalog
from test_sweep_trust import trust_plugin
m6bench.sweeps.storage.HEARTBEAT_SECONDS = 1  # a killed worker's trial is retried after 3 s
m6bench.cli.common.load_cli_catalog = lambda: load_catalog([("trust", trust_plugin())])
m6bench.cli.main()
"""


def _cli(tmp_path, *args):
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER.format(tests=str(TESTS)))
    return [sys.executable, str(runner), *args]


def _sweep_command(tmp_path, model, trials, *extra):
    return _cli(tmp_path, "sweep", "--plugin", "trust", "--model", model, "--dataset",
                "synthetic", "--dataset-opt", "n_users=200", "--dataset-opt", "n_items=120",
                "--trials", str(trials), "--seeds", "0", "--pruner", "none", "--ledger",
                str(tmp_path / "ledger.jsonl"), *extra)


def _trial_states(database):
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True,
                                                timeout=5)) as connection:
            return [state for (state,) in connection.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:
        return []


def _only_study(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    (summary,) = optuna.study.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def test_a_sweep_killed_mid_trial_and_resumed_never_repeats_a_config(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = _sweep_command(tmp_path, "grid", 5, "--set", "seconds=0.5", "--quiet")
    first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if first.poll() is not None:
            pytest.fail(f"the sweep exited ({first.returncode}) before it could be killed: "
                        f"{first.stdout.read().decode()[-2000:]}")
        states = _trial_states(tmp_path / "optuna.db")
        if states.count("COMPLETE") >= 2 and "RUNNING" in states:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the sweep did not finish 2 trials in time")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)

    second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    study = _only_study(tmp_path)
    assert finished_counts(study)["complete"] == 5
    _assert_no_config_twice(study)


# --------------------------------------------------------------- item B: failure is signalled


def test_a_sweep_whose_every_trial_fails_exits_1_with_one_line_per_trial(tmp_path):
    done = subprocess.run(_sweep_command(tmp_path, "fails", 3), cwd=tmp_path, text=True,
                          capture_output=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    failed_lines = [line for line in output.splitlines() if " failed: " in line
                    and line.startswith("trial ")]
    assert len(failed_lines) == 3, output
    # each one whole line: number, error type and message, and the tally after them
    assert all(re.fullmatch(r"trial \d failed: RuntimeError: injected failure \(k=\d+\) \| "
                            r"best - \| finished \d/3 \| pruned 0 \| failed \d", line)
               for line in failed_lines), output
    assert "no complete trial" in output, output
    records = [r for r in read_ledger(tmp_path / "ledger.jsonl").records
               if r["kind"] == "trial"]
    assert len(records) == 3 and all(r["status"] == "failed" for r in records)
    assert all("RuntimeError: injected failure" in r["traceback"] for r in records)


def _run(**overrides):
    from m6bench import run

    return run("classic", model="bpr-mf", dataset="synthetic", dataset_options=SMALL,
               device="cpu", ledger="ledger.jsonl",
               overrides={"epochs": 3, "patience": 3, "eval_every": 1, **overrides})


def test_a_diverged_training_is_a_failed_run_with_its_reason(tmp_path):
    with pytest.raises(RunFailed, match="TrainingDiverged"):
        _run(lr=1e9)
    (record,) = read_ledger(tmp_path / "ledger.jsonl").records
    assert record["status"] == "failed"
    assert record["error"].startswith("TrainingDiverged: The bpr loss is ")
    assert "diverged" in record["error"] and "learning rate" in record["error"]
    assert record["curve"][-1]["bpr"] > 1e10  # the losses that diverged are kept
    assert _run()["status"] == "ok"  # the defaults train as before


def test_the_divergence_rule():
    from m6bench.training.loop import TrainingDiverged, check_losses

    first: dict[str, float] = {}
    check_losses({"bpr": 0.69, "l2": 0.002}, 1, first)
    check_losses({"bpr": 0.3, "l2": 0.5}, 2, first)  # a regulariser may grow from ~0
    check_losses({}, 3, first)  # an epoch without losses (iALS, closed-form models)
    check_losses({"late": 5.0}, 4, first)  # a loss reported only from some epoch on
    with pytest.raises(TrainingDiverged, match=r"over 1000x the first epoch's 0\.69"):
        check_losses({"bpr": 2000.0}, 5, dict(first))
    with pytest.raises(TrainingDiverged, match="became nan at epoch 5"):
        check_losses({"l2": float("nan")}, 5, dict(first))
    with pytest.raises(TrainingDiverged, match="at epoch 1, over the 1e\\+10"):
        check_losses({"bpr": 1.5e19}, 1, {})


def test_a_diverged_trial_is_a_failed_trial_and_the_sweep_goes_on(tmp_path):
    from m6bench.sweeps.sweep import sweep

    lines = []
    result = sweep("trust", model="blows-up", dataset="synthetic", dataset_options=SMALL,
                   trials=8, seeds=0, pruner="none", ledger=tmp_path / "ledger.jsonl",
                   catalog=_catalog(), report=lines.append)
    counts = result.counts
    assert counts["finished"] == 8 and counts["failed"] > 0 and counts["complete"] > 0
    failed = [r for r in read_ledger(tmp_path / "ledger.jsonl").records
              if r["status"] == "failed"]
    assert len(failed) == counts["failed"]
    assert all(r["error"].startswith("TrainingDiverged: ") and r["config"]["loss_scale"] > 1
               for r in failed)
    assert sum(" failed: TrainingDiverged: " in line for line in lines) == counts["failed"]


def test_ctrl_c_as_a_trials_heartbeat_starts_stops_the_sweep_and_leaves_no_thread(
        tmp_path, monkeypatch):
    """SIGINT landing while Optuna starts a trial's heartbeat thread (between trials) used to
    raise there, leaving the thread beating for good: the process hung at exit with its trial
    running.  Seen as a hung SIGINT in test_sweep's resume test on a loaded machine."""
    from optuna.storages._heartbeat import HeartbeatThread

    from m6bench.sweeps.sweep import sweep

    real_start = HeartbeatThread.start
    started = []

    def start_then_interrupted(self):
        real_start(self)
        started.append(self)
        if len(started) == 2:  # the second trial: Ctrl-C as its thread starts
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(HeartbeatThread, "start", start_then_interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            sweep("trust", model="grid", dataset="synthetic", dataset_options=SMALL, trials=4,
                  seeds=0, pruner="none", ledger=tmp_path / "ledger.jsonl",
                  catalog=_catalog(), storage=f"sqlite:///{tmp_path / 'optuna.db'}")
        for heartbeat in started:
            heartbeat._thread.join(timeout=10)
        assert not [h for h in started if h._thread.is_alive()]
        study = _only_study(tmp_path)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        assert states == [TrialState.COMPLETE, TrialState.FAIL], states  # none left running
    finally:
        for heartbeat in started:  # the old code's leaked thread would keep pytest alive
            heartbeat._stop_event.set()
