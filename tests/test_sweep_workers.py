"""`sweep --workers N`: worker processes on one machine share a journal-file study, the
budget stays exact, and a dead worker's running trial is queued again."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from m6bench.errors import ConfigError
from m6bench.sweeps.storage import (
    WORKER_ATTR,
    finished_counts,
    journal_path,
    make_storage,
    requeue_trials_of,
    worker_identity,
)
from m6bench.sweeps.workers import worker_devices
from m6bench_leaderboard import read_ledger

SMALL = {"n_users": 200, "n_items": 120}


@pytest.fixture(autouse=True)
def _isolated(isolated):
    isolated.with_default_ledger()


def test_journal_urls_name_their_file(tmp_path):
    assert journal_path(f"journal://{tmp_path}/study.log") == tmp_path / "study.log"
    assert str(journal_path("journal://study.log")) == "study.log"
    assert journal_path("sqlite:///x.db") is None
    with pytest.raises(ConfigError, match=r"journal:///path/to/study\.log"):
        journal_path("journal://")


def test_three_workers_share_a_journal_study_and_end_with_exactly_its_budget(tmp_path):
    from m6bench.sweeps.sweep import sweep

    ledger = tmp_path / "ledger.jsonl"
    storage = f"journal://{tmp_path}/study.log"
    result = sweep("classic", model="bpr-mf", dataset="synthetic", dataset_options=SMALL,
                   trials=7, seeds=1, storage=storage, ledger=ledger, workers=3,
                   device="cpu", overrides={"epochs": 2, "eval_every": 1})
    trials = result.study.get_trials(deepcopy=False)
    assert finished_counts(result.study)["finished"] == 7
    assert sum(t.state == TrialState.COMPLETE for t in trials) + sum(
        t.state == TrialState.PRUNED for t in trials) == 7
    workers = {t.user_attrs[WORKER_ATTR] for t in trials if WORKER_ATTR in t.user_attrs}
    assert len(workers) >= 2, workers  # the trials really were shared out
    assert worker_identity() not in workers  # none ran in the sweeping process
    records = read_ledger(ledger).records
    assert len([r for r in records if r.get("kind") == "trial"]) == 7
    finals = [r for r in records if r.get("kind") == "final"]
    assert [r["seed"] for r in finals] == [0] and finals[0]["status"] == "ok"


def test_a_dead_workers_running_trial_is_failed_and_its_parameters_queued_again(tmp_path):
    study = optuna.create_study(storage=make_storage(f"journal://{tmp_path}/study.log"))
    dead = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    dead.set_user_attr(WORKER_ATTR, worker_identity(pid=999_999))
    alive = study.ask()
    alive.set_user_attr(WORKER_ATTR, worker_identity())
    assert requeue_trials_of(study, worker_identity(pid=999_999)) == 1
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[dead.number] == TrialState.FAIL
    assert states[alive.number] == TrialState.RUNNING  # another worker's: untouched
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    # an enqueued trial holds its parameters until a worker picks it up
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"lr": dead.params["lr"]}]
    # the dead trial carries no error attribute, so it does not use budget
    assert finished_counts(study)["finished"] == 0


def test_workers_take_the_gpus_in_turn_only_where_there_are_several(monkeypatch):
    monkeypatch.setattr("torch.cuda.device_count", lambda: 3)
    assert worker_devices("auto", 4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert worker_devices("cuda:1", 2) == ["cuda:1", "cuda:1"]
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    assert worker_devices("auto", 2) == ["auto", "auto"]
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        worker_devices("cpu", 0)
