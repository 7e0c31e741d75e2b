"""Sweeps: pruning, failures, resumption after SIGINT and SIGKILL, finals in the ledger."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types
import weakref

import optuna
import pytest
import sqlalchemy
import torch
from optuna.trial import TrialState
from plugins_for_tests import PopularityModel, catalog_with, fake_plugin

import m6bench.sweeps.objective
import m6bench.sweeps.storage
import m6bench.sweeps.sweep
from m6bench import ModelSpec
from m6bench.sweeps.storage import finished_counts, make_storage
from m6bench_leaderboard import read_ledger

SMALL = {"n_users": 200, "n_items": 120}


@pytest.fixture(autouse=True)
def _isolated(isolated):
    isolated.with_default_ledger()


def test_pruner_prunes_bpr_trials_early(tmp_path):
    from m6bench.sweeps.sweep import sweep

    ledger = tmp_path / "ledger.jsonl"
    result = sweep("classic", model="bpr-mf", dataset="synthetic", dataset_options=SMALL,
                   trials=12, seeds=0, pruner="median", ledger=ledger,
                   overrides={"epochs": 24, "patience": 24, "eval_every": 1})
    counts = result.counts
    assert counts["finished"] == 12
    assert counts["pruned"] > 0, counts
    records = read_ledger(ledger).records
    pruned = [r for r in records if r["status"] == "pruned"]
    complete = [r for r in records if r["status"] == "ok"]
    assert len(pruned) == counts["pruned"]
    assert complete and min(r["epochs"] for r in pruned) < 24  # stopped before the budget
    for record in pruned:  # each stopped at the epoch the pruner named
        assert f"pruned at epoch {record['epochs']} " in record["error"]
        assert record["curve"][-1]["epoch"] == record["epochs"]
    assert all(r["sweep"]["budget"]["trials"] == 12 for r in records)


class _Fragile(PopularityModel):
    """Fails when the sampled ``boom`` is true: a trial failure the sweep must survive."""

    iterative = False

    def fit_epoch(self, train, epoch):
        if self.config["boom"]:
            raise RuntimeError("CUDA out of memory (injected)")
        return {}


def _fragile_plugin():
    return fake_plugin("fragile", models=[ModelSpec(
        "fragile", build=_Fragile, defaults={"boom": False, "k": 1},
        search_space=lambda t: {"boom": t.suggest_categorical("boom", [True, False]),
                                "k": t.suggest_int("k", 1, 50)})])


def test_failed_trials_are_counted_and_the_sweep_goes_on(tmp_path):
    from m6bench.sweeps.sweep import sweep

    plugin = _fragile_plugin()
    catalog = catalog_with(("fragile", plugin))
    ledger = tmp_path / "ledger.jsonl"
    result = sweep("fragile", dataset="synthetic", dataset_options=SMALL, trials=8, seeds=2,
                   ledger=ledger, catalog=catalog)
    counts = result.counts
    assert counts["finished"] == 8 and counts["failed"] > 0 and counts["complete"] > 0
    records = read_ledger(ledger).records
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == counts["failed"]
    assert all("out of memory" in r["error"] for r in failed)
    finals = [r for r in records if r["kind"] == "final"]
    assert sorted(r["seed"] for r in finals) == [0, 1]
    assert all(r["sweep_id"] == result.study_name and r["config"]["boom"] is False
               for r in finals)


def test_a_key_fixed_with_set_wins_over_the_search_space(tmp_path, monkeypatch):
    """``--set boom=false`` fixes a key the search space also samples: every trial (and the
    final) runs with false, so none hits the injected failure, and ``k`` is still sampled."""
    from click.testing import CliRunner

    import m6bench.cli.common
    from m6bench.cli import main

    plugin = _fragile_plugin()
    monkeypatch.setattr(m6bench.cli.common, "load_cli_catalog",
                        lambda: catalog_with(("fragile", plugin)))
    ledger = tmp_path / "ledger.jsonl"
    result = CliRunner().invoke(main, [
        "sweep", "--plugin", "fragile", "--dataset", "synthetic", "--dataset-opt",
        "n_users=200", "--dataset-opt", "n_items=120", "--trials", "6", "--seeds", "1",
        "--set", "boom=false", "--ledger", str(ledger), "--quiet"])
    assert result.exit_code == 0, result.output
    records = read_ledger(ledger).records
    trials = [r for r in records if r["kind"] == "trial"]
    assert len(trials) == 6
    assert [r["config"]["boom"] for r in records] == [False] * len(records)
    assert [r["status"] for r in records] == ["ok"] * len(records)
    assert len({r["config"]["k"] for r in trials}) > 1  # the other key is still sampled


class _Shaped(_Fragile):
    """Its config holds a list built from a choice and a decay outside the space's range;
    its defaults (decay 0) rank worst, so the best trial is a sampled one."""

    def __init__(self, train, config):
        super().__init__(train, config)
        if config["weight_decay"] == 0.0:
            self.popularity.neg_()

    def fit_epoch(self, train, epoch):
        return {}


def test_trial_zero_runs_defaults_that_are_not_points_of_the_search_space(tmp_path):
    from m6bench.sweeps.sweep import sweep

    defaults = {"boom": False, "hidden": [600], "weight_decay": 0.0}
    plugin = fake_plugin("shaped", models=[ModelSpec(
        "shaped", build=_Shaped, defaults=defaults, search_space=lambda t: {
            "hidden": [t.suggest_categorical("hidden", [200, 400, 600])],
            "weight_decay": t.suggest_float("weight_decay", 1e-8, 1e-4, log=True)})])
    catalog = catalog_with(("shaped", plugin))
    ledger = tmp_path / "ledger.jsonl"
    result = sweep("shaped", dataset="synthetic", dataset_options=SMALL, trials=3, seeds=0,
                   ledger=ledger, catalog=catalog)
    assert result.counts["complete"] == 3, result.counts
    trials = sorted((r for r in read_ledger(ledger).records if r["kind"] == "trial"),
                    key=lambda r: r["sweep"]["trial"])
    assert [r["status"] for r in trials] == ["ok"] * 3
    assert {k: trials[0]["config"][k] for k in defaults} == defaults
    assert all(0 < r["config"]["weight_decay"] <= 1e-4 for r in trials[1:])
    # the finals run the best trial's config, whose keys are not Optuna's param names
    finals = sweep("shaped", dataset="synthetic", dataset_options=SMALL, trials=3, seeds=2,
                   ledger=ledger, catalog=catalog).finals
    best = next(r for r in trials if r["sweep"]["trial"] == result.study.best_trial.number)
    assert best["sweep"]["trial"] != 0
    assert sorted(r["seed"] for r in finals) == [0, 1]
    assert all(r["config"] == best["config"] for r in finals)


def test_the_final_with_the_trial_seed_is_the_best_trials_own_run(tmp_path, monkeypatch):
    """Seed 0's final is the best trial's run copied (no second training); other seeds train,
    and a fresh run of the same config and seed gives the copied metrics exactly."""
    from m6bench import run
    from m6bench.sweeps.sweep import sweep

    executed = []
    real_execute = m6bench.sweeps.sweep.execute

    def counting_execute(plan, **kwargs):
        executed.append((plan.request.kind, plan.request.seed))
        return real_execute(plan, **kwargs)

    # trials run in the objective's module, finals in the sweep's
    monkeypatch.setattr(m6bench.sweeps.objective, "execute", counting_execute)
    monkeypatch.setattr(m6bench.sweeps.sweep, "execute", counting_execute)
    ledger = tmp_path / "ledger.jsonl"
    fixed = {"epochs": 4, "patience": 4, "eval_every": 1}
    result = sweep("classic", model="bpr-mf", dataset="synthetic", dataset_options=SMALL,
                   trials=2, seeds=2, pruner="none", ledger=ledger, overrides=fixed)
    assert executed == [("trial", 0), ("trial", 0), ("final", 1)]
    records = read_ledger(ledger).records
    trials = {r["run_id"]: r for r in records if r["kind"] == "trial"}
    finals = {r["seed"]: r for r in records if r["kind"] == "final"}
    best_run = result.study.best_trial.user_attrs["run_id"]
    assert finals[0]["reuses"] == best_run and finals[0]["run_id"] not in trials
    assert finals[0]["metrics"] == trials[best_run]["metrics"]
    assert finals[0]["sweep"]["best_valid"] == result.best_value
    assert "reuses" not in finals[1]
    assert sorted(r["seed"] for r in result.finals) == [0, 1]

    fresh = run("classic", model="bpr-mf", dataset="synthetic", dataset_options=SMALL,
                overrides=finals[0]["config"], seed=0, ledger=tmp_path / "fresh.jsonl")
    assert fresh["metrics"] == finals[0]["metrics"]


def _sweep_command(tmp_path, trials, epochs=6):
    return [sys.executable, "-m", "m6bench.cli", "sweep", "--plugin", "classic", "--model",
            "bpr-mf", "--dataset", "synthetic", "--dataset-opt", "n_users=200",
            "--dataset-opt", "n_items=120", "--trials", str(trials), "--seeds", "0",
            "--pruner", "none", "--set", f"epochs={epochs}", "--set", f"patience={epochs}",
            # The tensor step: the fused CPU kernel's epochs on this data are so short that a
            # sweep can end between two polls of the interruption tests.
            "--set", "eval_every=1", "--set", "kernel=tensor",
            "--ledger", str(tmp_path / "ledger.jsonl"), "--quiet"]


def _only_study(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    (summary,) = optuna.study.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _trial_states(database):
    """The trials' states, read without writing: the test must not race the sweep to create
    the schema, so it opens the file read-only and treats a missing table as no trials."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True,
                                                timeout=5)) as connection:
            return [state for (state,) in connection.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # no file or no table yet, or locked by a writer
        return []


def _wait_for_trials(tmp_path, count, process, deadline_s=900):
    """Until ``count`` trials are complete and the next one is running in ``process``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the sweep exited ({process.returncode}) before it could be "
                        f"interrupted mid-trial: {process.stdout.read().decode()[-2000:]}")
        states = _trial_states(tmp_path / "optuna.db")
        if states.count(TrialState.COMPLETE.name) >= count and TrialState.RUNNING.name in states:
            return
        time.sleep(0.2)
    pytest.fail(f"the sweep did not finish {count} trials in {deadline_s}s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_resume_after_interruption_ends_with_exactly_the_budget(tmp_path, sig):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    trials = 6
    # Trials of 30 epochs spend long enough running for the poll to catch one mid-way.
    first = subprocess.Popen(_sweep_command(tmp_path, trials, epochs=30), env=env,
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_for_trials(tmp_path, 2, first)
    first.send_signal(sig)
    first.wait(timeout=60)
    assert first.returncode != 0
    interrupted = finished_counts(_only_study(tmp_path))["finished"]
    assert 2 <= interrupted < trials

    second = subprocess.run(_sweep_command(tmp_path, trials, epochs=30), env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    study = _only_study(tmp_path)
    counts = finished_counts(study)
    assert counts["finished"] == trials and counts["complete"] == trials
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    run_ids = [t.user_attrs["run_id"] for t in complete]
    assert len(set(run_ids)) == trials  # none duplicated
    ok_trials = {r["run_id"] for r in read_ledger(tmp_path / "ledger.jsonl").records
                 if r["kind"] == "trial" and r["status"] == "ok"}
    assert set(run_ids) <= ok_trials  # none lost: every finished trial's run is recorded
    # a third run has nothing left to do
    third = subprocess.run(_sweep_command(tmp_path, trials, epochs=30), env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 0
    assert finished_counts(_only_study(tmp_path))["finished"] == trials
    assert len(_only_study(tmp_path).get_trials(deepcopy=False)) == len(
        study.get_trials(deepcopy=False))


@pytest.mark.parametrize("enqueued", [False, True], ids=["sampled", "enqueued"])
def test_a_worker_killed_before_its_trial_beat_once_leaves_a_trial_that_is_retried(
        tmp_path, monkeypatch, enqueued):
    # Optuna beats only once the objective starts; a SIGKILL between study.ask and then
    # used to leave a running trial that was never stale, and every resumption waited on it.
    monkeypatch.setattr(m6bench.sweeps.storage, "HEARTBEAT_SECONDS", 1)
    storage = make_storage(f"sqlite:///{tmp_path / 'orphan.db'}")
    study = optuna.create_study(storage=storage, study_name="orphan")
    if enqueued:
        study.enqueue_trial({"x": 0.25})
    orphan = study.ask()  # what the killed worker got to do, with no heartbeat thread after
    orphan.suggest_float("x", 0, 1)
    time.sleep(3 * 1 + 1.5)  # past the grace period of three heartbeats
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan.number] == TrialState.FAIL
    (retry,) = [t for t in study.get_trials(deepcopy=False) if t.number != orphan.number]
    assert retry.state == TrialState.WAITING and retry.params == {"x": orphan.params["x"]}


def test_a_worker_killed_between_creating_its_trial_and_its_first_beat_is_retried(
        tmp_path, monkeypatch):
    """Creating a running trial and recording its first heartbeat are two transactions; a
    worker killed between them left a running trial without a heartbeat, which Optuna
    never counts as stale (a resumed sweep waited on it until its test timed out).  A
    live trial that keeps beating past the grace period stays running."""
    monkeypatch.setattr(m6bench.sweeps.storage, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(m6bench.sweeps.storage, "STALE_AFTER_BEATS", 1)
    storage = make_storage(f"sqlite:///{tmp_path / 'window.db'}")
    study = optuna.create_study(storage=storage, study_name="window")
    live = study.ask()
    # the killed worker's half: the trial row, committed, and nothing after it
    orphan_id = optuna.storages.RDBStorage._create_new_trial(storage, study._study_id)._trial_id
    assert storage._get_stale_trial_ids(study._study_id) == []  # inside the grace period
    time.sleep(1.5)  # past the grace period of one heartbeat
    storage.record_heartbeat(live._trial_id)
    optuna.storages.fail_stale_trials(study)
    states = {t._trial_id: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan_id] == TrialState.FAIL
    assert states[live._trial_id] == TrialState.RUNNING
    assert sorted(states.values(), key=str) == sorted(
        [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING], key=str)  # the retry


class _InterruptedInAFinaliser(_Fragile):
    """Sends itself SIGINT from inside a finaliser in its second trial: Python raises the
    KeyboardInterrupt there, and a finaliser's exceptions are printed and dropped."""

    iterative = True
    fits = 0

    def fit_epoch(self, train, epoch):
        type(self).fits += 1
        if type(self).fits == 3:  # trial 2 (each trial fits 2 epochs), epoch 1

            class Doomed:
                pass

            doomed = Doomed()
            weakref.finalize(doomed, lambda: os.kill(os.getpid(), signal.SIGINT) or time.sleep(0.1))
            del doomed  # the finaliser runs here, and swallows the interrupt
        return {}


# the finaliser's swallowed KeyboardInterrupt is the point of the test, not a leak
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_interrupt_lost_in_a_finaliser_still_stops_the_sweep(tmp_path):
    from m6bench.sweeps.sweep import sweep

    plugin = fake_plugin("interrupted", models=[ModelSpec(
        "interrupted", build=_InterruptedInAFinaliser,
        defaults={"boom": False, "k": 1, "epochs": 2, "eval_every": 1},
        search_space=lambda t: {"k": t.suggest_int("k", 1, 50)})])
    catalog = catalog_with(("interrupted", plugin))
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        sweep("interrupted", dataset="synthetic", dataset_options=SMALL, trials=6, seeds=1,
              ledger=tmp_path / "ledger.jsonl", catalog=catalog,
              storage=f"sqlite:///{tmp_path / 'interrupted.db'}")
    assert _InterruptedInAFinaliser.fits == 3  # stopped at the end of that epoch
    assert signal.getsignal(signal.SIGINT) is previous  # the sweep's handler is removed
    storage = make_storage(f"sqlite:///{tmp_path / 'interrupted.db'}")
    (summary,) = optuna.study.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert finished_counts(study)["complete"] == 1  # the rest is left for a resumed sweep


class _InterruptedInTheStorage(_Fragile):
    """Arms a SIGINT for its second trial's first epoch's ``trial.report``: it lands right
    after the storage wrote the validation value, before it committed it."""

    iterative = True
    fits = 0
    armed = False

    def fit_epoch(self, train, epoch):
        type(self).fits += 1
        if type(self).fits == 3:  # trial 2 (each trial fits 2 epochs), epoch 1
            type(self).armed = True
        return {}


def test_an_interrupt_inside_the_storage_waits_until_the_storage_call_is_done(tmp_path):
    """A KeyboardInterrupt raised in the middle of SQLAlchemy's work lost the write, and at
    some points left a SQLite write transaction open on a connection no one closed: Optuna's
    record of the failed trial then waited on that lock for the storage's timeout (a
    minute), crashed and left the trial running.  The interrupt now lands after the storage
    call, which completes."""
    from m6bench.sweeps.sweep import sweep

    def interrupt_the_report(connection, cursor, statement, parameters, context, many):
        if _InterruptedInTheStorage.armed and "trial_intermediate_values" in statement \
                and statement.lstrip().upper().startswith("INSERT"):
            _InterruptedInTheStorage.armed = False
            assert m6bench.sweeps.objective._in_storage(sys._getframe())
            signal.raise_signal(signal.SIGINT)  # its handler runs here, inside SQLAlchemy

    def short_lock_wait(dbapi_connection, connection_record):
        # without the fix the test fails in 2 s, not after the storage's 60 s
        dbapi_connection.execute("PRAGMA busy_timeout = 2000")

    plugin = fake_plugin("interrupted", models=[ModelSpec(
        "interrupted", build=_InterruptedInTheStorage,
        defaults={"boom": False, "k": 1, "epochs": 2, "eval_every": 1},
        search_space=lambda t: {"k": t.suggest_int("k", 1, 50)})])
    database = tmp_path / "interrupted.db"
    listeners = [(sqlalchemy.engine.Engine, "after_cursor_execute", interrupt_the_report),
                 (sqlalchemy.pool.Pool, "connect", short_lock_wait)]
    for target, name, listener in listeners:
        sqlalchemy.event.listen(target, name, listener)
    try:
        with pytest.raises(KeyboardInterrupt):
            sweep("interrupted", dataset="synthetic", dataset_options=SMALL, trials=6,
                  seeds=1, ledger=tmp_path / "ledger.jsonl",
                  catalog=catalog_with(("interrupted", plugin)),
                  storage=f"sqlite:///{database}")
    finally:
        for target, name, listener in listeners:
            sqlalchemy.event.remove(target, name, listener)
    assert _InterruptedInTheStorage.fits == 3  # stopped at the end of that epoch
    storage = make_storage(f"sqlite:///{database}")
    (summary,) = optuna.study.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert list(trials[1].intermediate_values) == [1]  # the interrupted report was committed
    with contextlib.closing(sqlite3.connect(database, timeout=0)) as connection:
        connection.execute("BEGIN IMMEDIATE")  # no write lock was left behind
        connection.rollback()


def test_a_sigint_outside_the_storage_raises_at_once():
    interruption = m6bench.sweeps.objective.Interruption()
    with interruption.installed(), interruption.raising(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        pytest.fail("the interrupt waited")  # pragma: no cover
    assert not m6bench.sweeps.objective._in_storage(sys._getframe())


def test_worker_joins_a_shared_study(tmp_path):
    from m6bench.sweeps.sweep import join_study, sweep

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    result = sweep("classic", model="ease", dataset="synthetic", dataset_options=SMALL,
                   trials=3, seeds=0, storage=storage, ledger=tmp_path / "a.jsonl")
    study = optuna.load_study(study_name=result.study_name, storage=make_storage(storage))
    study.set_user_attr("trials", 5)  # raise the budget: a worker does the rest
    joined = join_study(storage, result.study_name, ledger=tmp_path / "b.jsonl", device="cpu")
    assert joined.counts["finished"] == 5
    assert len(read_ledger(tmp_path / "b.jsonl").records) == 2
    with pytest.raises(Exception, match="Did you mean"):
        join_study(storage, result.study_name + "x")


def test_a_worker_waits_for_a_study_whose_sweep_has_not_written_its_spec_yet(tmp_path):
    import threading

    from m6bench.errors import ConfigError
    from m6bench.sweeps.sweep import STUDY_SPEC_ATTRS, join_study, sweep

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    result = sweep("classic", model="ease", dataset="synthetic", dataset_options=SMALL,
                   trials=1, seeds=0, storage=storage, ledger=tmp_path / "a.jsonl")
    spec = optuna.load_study(study_name=result.study_name,
                             storage=make_storage(storage)).user_attrs
    assert set(STUDY_SPEC_ATTRS) == set(spec)  # the worker waits for exactly what sweep writes

    with pytest.raises(ConfigError, match="--wait SECONDS"):
        join_study(storage, "not-yet", wait=0)
    late = optuna.create_study(study_name="late", storage=make_storage(storage),
                               direction="maximize")
    late.set_user_attr("plugin", spec["plugin"])  # created, the rest of its spec still to come
    with pytest.raises(ConfigError, match="has not finished writing its spec"):
        join_study(storage, "late", wait=0)

    def finish_the_spec() -> None:
        time.sleep(1.0)
        for key, value in spec.items():
            late.set_user_attr(key, value)

    writer = threading.Thread(target=finish_the_spec)
    writer.start()
    lines: list[str] = []
    joined = join_study(storage, "late", wait=60, device="cpu", report=lines.append,
                        ledger=tmp_path / "b.jsonl")
    writer.join()
    assert lines[0] == "waiting up to 60 s for study late to be created"
    assert joined.counts["complete"] == 1
    assert [r["sweep_id"] for r in read_ledger(tmp_path / "b.jsonl").records] == ["late"]


def test_opening_a_fresh_database_survives_another_process_writing_its_schema(tmp_path,
                                                                              monkeypatch):
    url = f"sqlite:///{tmp_path / 'race.db'}"
    real_storage = m6bench.sweeps.storage._HeartbeatFromTheStart
    calls = []

    class LosesTheRaceOnce(real_storage):
        def __init__(self, *args, **kwargs):
            calls.append(args)
            if len(calls) == 1:
                real_storage(url)  # the other process creates the schema first
                raise sqlalchemy.exc.IntegrityError(
                    "INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(m6bench.sweeps.storage, "_HeartbeatFromTheStart", LosesTheRaceOnce)
    storage = make_storage(url)
    assert len(calls) == 2
    study = optuna.create_study(storage=storage, study_name="after-the-race")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert len(optuna.load_study(study_name="after-the-race", storage=url).trials) == 1


def test_no_budget_is_an_error():
    from m6bench import ConfigError
    from m6bench.sweeps.sweep import sweep

    with pytest.raises(ConfigError, match="needs a budget"):
        sweep("classic", trials=None, timeout=None)


assert torch  # the models above are torch modules


def test_a_trial_finishing_during_the_budget_check_still_fills_the_budget():
    """Another worker's last trial completes between two reads of the study (the race that
    once ended a shared 10-trial study with 11): the starting trial must still give way."""
    from m6bench.sweeps.objective import BudgetReached, Objective

    def trials(last_state):
        done = [types.SimpleNamespace(number=n, state=TrialState.COMPLETE, user_attrs={})
                for n in range(9)]
        return [*done, types.SimpleNamespace(number=9, state=last_state, user_attrs={})]

    class StudyWhoseTrialNineFinishesAfterTheFirstRead:
        reads = 0
        stopped = False

        def get_trials(self, deepcopy=True, states=None):
            self.reads += 1
            snapshot = trials(TrialState.RUNNING if self.reads == 1 else TrialState.COMPLETE)
            return [t for t in snapshot if states is None or t.state in states]

        def stop(self):
            self.stopped = True

    def starting_trial(study, number=10):
        return types.SimpleNamespace(number=number, study=study, user_attrs={},
                                     set_user_attr=lambda key, value: None)

    budget_of = types.SimpleNamespace(spec=types.SimpleNamespace(trials=10))
    study = StudyWhoseTrialNineFinishesAfterTheFirstRead()
    with pytest.raises(BudgetReached, match="budget of 10 filled"):
        Objective._check_budget(budget_of, starting_trial(study))
    assert study.stopped

    # With a slot free (budget 11) the same trial runs.
    roomy = types.SimpleNamespace(spec=types.SimpleNamespace(trials=11))
    Objective._check_budget(roomy, starting_trial(StudyWhoseTrialNineFinishesAfterTheFirstRead()))
