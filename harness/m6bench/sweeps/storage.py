"""The study's storage and its bookkeeping: heartbeat RDB storage, pruners, sampler seeds,
and the trial counts the budget is measured in."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from m6bench.errors import ConfigError
from m6bench.sweeps.spec import ERROR_ATTR
from m6bench_leaderboard.board import PRUNERS

HEARTBEAT_SECONDS = 5
STALE_AFTER_BEATS = 3  # heartbeats a running trial may miss before it is failed and retried


def stale_after_seconds() -> int:
    """How long after its last heartbeat a dead worker's running trial is failed and retried."""
    return HEARTBEAT_SECONDS * STALE_AFTER_BEATS


def default_storage(ledger: Path) -> str:
    path = ledger.parent / "optuna.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


class _HeartbeatFromTheStart(optuna.storages.RDBStorage):
    """Records a trial's first heartbeat the moment it starts running.

    Optuna starts a trial's heartbeat thread only after ``study.ask`` has created the trial
    and the sampler has run, and it never counts a running trial without a heartbeat as
    stale: a worker killed in between left a running trial that no one retried, and every
    resumption waited on it for good.  The private ``_create_new_trial`` is the one hooked
    because Optuna's storage cache calls it directly (a test pins this on each Optuna).
    """

    def _create_new_trial(self, study_id: int,
                          template_trial: optuna.trial.FrozenTrial | None = None,
                          ) -> optuna.trial.FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self.record_heartbeat(trial._trial_id)
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        # a waiting (enqueued or retried) trial starts running here, not in create_new_trial
        changed = super().set_trial_state_values(trial_id, state, values)
        if changed and state == TrialState.RUNNING:
            self.record_heartbeat(trial_id)
        return changed

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's stale trials, plus every running trial that never beat and started more
        than the grace period ago.

        Creating a trial and recording its first heartbeat are two transactions: a worker
        killed between them (a resumption test's SIGKILL, timed by the trial turning
        RUNNING, hit this under load) left a running trial with no heartbeat, which Optuna
        never counts as stale, and the resumed sweep waited on it for good.
        """
        stale = super()._get_stale_trial_ids(study_id)
        cutoff = datetime.datetime.now() - datetime.timedelta(seconds=float(self.grace_period))
        started_long_ago = [
            trial._trial_id for trial in self.get_all_trials(
                study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if trial._trial_id not in stale and trial.datetime_start is not None
            and trial.datetime_start < cutoff]
        if not started_long_ago:
            return stale
        with self.engine.connect() as connection:
            beating = {row[0] for row in connection.execute(
                sqlalchemy.text("SELECT trial_id FROM trial_heartbeats "
                                "WHERE trial_id IN :ids").bindparams(
                    sqlalchemy.bindparam("ids", expanding=True)),
                {"ids": started_long_ago})}
        return stale + [trial_id for trial_id in started_long_ago if trial_id not in beating]


def resumed_sampler_seed(seed: int, trials_in_study: int) -> int:
    """The TPE seed of a process opening a study that already holds ``trials_in_study`` trials.

    A fresh study samples with ``seed`` itself.  A resumed one must not replay the stream its
    first process sampled (those configs are finished): its seed is derived from ``seed`` and
    the study's size, so it differs from every earlier process's and is still deterministic
    given the study's state.
    """
    if trials_in_study == 0:
        return seed
    digest = hashlib.sha256(f"m6bench-sampler:{seed}:{trials_in_study}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@contextlib.contextmanager
def experimental_features() -> Iterator[None]:
    """Heartbeats and stale-trial retry are what resumption rests on; Optuna labels them
    experimental, and its warning says nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


JOURNAL_SCHEME = "journal://"


def journal_path(url: str) -> Path | None:
    """The file of a ``journal://PATH`` storage URL (``journal:///abs/study.log`` or
    ``journal://relative.log``), or None for a database URL."""
    if not url.startswith(JOURNAL_SCHEME):
        return None
    path = url[len(JOURNAL_SCHEME):]
    if not path:
        raise ConfigError(f"Storage {url!r} names no file; write journal:///path/to/study.log.")
    return Path(path)


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """The study's storage.

    A database URL gives an RDB storage with heartbeats: a dead worker's running trial is
    failed and retried.  ``journal://PATH`` gives Optuna's journal file storage, for workers
    on one machine without a database server (``sweep --workers N``); it has no heartbeat,
    so the process that started the workers fails and re-queues the running trials of a
    worker that died (:func:`requeue_trials_of`).
    """
    path = journal_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several processes may share one SQLite file: wait for its lock instead of failing
        engine_kwargs = {"connect_args": {"timeout": 60}}

    def open_storage() -> optuna.storages.RDBStorage:
        with experimental_features():
            return _HeartbeatFromTheStart(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=stale_after_seconds(),
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=3
                ),
            )

    try:
        return open_storage()
    except sqlalchemy.exc.IntegrityError:
        # Two processes opened a fresh database at once and both wrote its schema version:
        # the other one won, so the schema is complete and opening it again reads it.
        return open_storage()


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    # Models learn at different speeds early on: judging before ~10 epochs prunes slow
    # starters that end best, so both pruners wait that long.
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=10, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"Unknown pruner {name!r}; use one of {', '.join(PRUNERS)}.")


def finished_counts(study: optuna.Study) -> dict[str, int]:
    """Trials that count against the budget, and the failed ones among them.

    A trial failed because its worker died (heartbeat) or was interrupted has no error
    attribute: it does not count, and its parameters are retried.
    """
    return count_trials(study.get_trials(deepcopy=False))


def count_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[str, int]:
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif trial.state == TrialState.PRUNED:
            counts["pruned"] += 1
        elif trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs:
            counts["failed"] += 1
        elif trial.state == TrialState.RUNNING:
            counts["running"] += 1
    counts["finished"] = counts["complete"] + counts["pruned"] + counts["failed"]
    return counts


WORKER_ATTR = "m6bench_worker"  # "<host>:<pid>" of the process that ran a trial


def worker_identity(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def requeue_trials_of(study: optuna.Study, worker: str) -> int:
    """Fail the running trials of a dead ``worker`` and queue their parameters again.

    For storages without heartbeats (the journal file): the failed trial carries no error
    attribute, so it does not count against the budget (as a heartbeat-failed one).
    """
    requeued = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(WORKER_ATTR) != worker:
            continue
        if study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            study.enqueue_trial(trial.params, skip_if_exists=False)
            requeued += 1
    return requeued
