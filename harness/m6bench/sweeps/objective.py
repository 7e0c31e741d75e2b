"""A trial's objective: one recorded run of a sampled config, refused when it would repeat
a config the study already has or run past the budget other workers already fill."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from types import FrameType
from typing import Any

import optuna
from optuna.trial import TrialState

from m6bench.errors import ConfigError, M6BenchError
from m6bench.runs.config import config_hash, resolve_config
from m6bench.runs.run import RunFailed, RunPlan, execute
from m6bench.sweeps.spec import (
    DEFAULTS_ATTR,
    DUPLICATE_ATTR,
    ERROR_ATTR,
    OVERRIDES_ATTR,
    SKIPPED_ATTR,
    SweepSpec,
)
from m6bench.sweeps.storage import WORKER_ATTR, count_trials, worker_identity

# Samples in a row that repeat an evaluated config before the space is taken as exhausted.
MAX_DUPLICATES = 20


def objective_metric(plan: RunPlan) -> str:
    """The validation metric a study optimises."""
    return plan.catalog.metric_table().validation_metric(plan.benchmark, plan.tasks)


def direction(plan: RunPlan) -> str:
    """Whether the study maximises or minimises :func:`objective_metric`."""
    lower = plan.catalog.metric_table().lower_is_better(objective_metric(plan))
    return "minimize" if lower else "maximize"


class BudgetReached(Exception):
    """Other workers' running trials already fill the budget: this trial is not run."""


class DuplicateConfig(Exception):
    """The trial's config was evaluated already in the study: it is not run again."""


# Code an interrupt must not cut short: the study's storage, down to the database driver.
STORAGE_PACKAGES = frozenset({"sqlalchemy", "sqlite3", "psycopg", "psycopg2"})
STORAGE_MODULES = ("optuna.storages", "m6bench.sweeps.storage")


def _in_storage(frame: FrameType | None) -> bool:
    """Whether the interrupted code is inside the study's storage (any frame of the stack)."""
    while frame is not None:
        module = frame.f_globals.get("__name__") or ""
        if module.split(".")[0] in STORAGE_PACKAGES or module.startswith(STORAGE_MODULES):
            return True
        frame = frame.f_back
    return False


class Interruption:
    """Ctrl-C (SIGINT) during a sweep, remembered as well as raised.

    Python raises ``KeyboardInterrupt`` in whatever code runs when the signal lands; inside
    a finaliser (the garbage collection Optuna runs after each trial) it is printed as
    "Exception ignored" and lost, and the sweep would run on to its budget.  So the handler
    also sets a flag, which the objective checks at its start and every epoch end and the
    optimiser after every trial.

    The handler raises only while the objective runs (:meth:`raising`).  Between trials
    Optuna starts each trial's heartbeat thread; a ``KeyboardInterrupt`` raised inside that
    start left the thread beating for good, and the process hung at exit with its trial
    running.  There the flag alone stops the sweep, at the next trial's start.

    Nor does it raise inside the study's storage (:func:`_in_storage`).  Raised in the middle
    of SQLAlchemy's work it lost the write, and at some points left a SQLite write
    transaction open on a connection no one closed: Optuna's record of the failed trial then
    waited on that lock for the storage's 60 s timeout, crashed, and left the trial running
    (a CI run's resumption test timed out on it).  The objective checks the flag right after
    its storage calls, so such an interrupt is raised a moment later, outside them."""

    def __init__(self) -> None:
        self.requested = False
        self.armed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.armed and not _in_storage(frame):
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Inside: SIGINT raises at once (and a flag set before raises on entry)."""
        self.armed = True
        try:
            self.check()
            yield
        finally:
            self.armed = False

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt("the sweep was interrupted (SIGINT)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interruption]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers belong to the main thread
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class Objective:
    """One trial = one recorded run with the trial's sampled config."""

    def __init__(self, spec: SweepSpec, plan: RunPlan, study_name: str,
                 report: Callable[[str], None], interruption: Interruption) -> None:
        self.interruption = interruption
        self.spec = spec
        self.plan = plan
        self.study_name = study_name
        self.report = report
        self.metric = objective_metric(plan)
        self.duplicates_in_a_row = 0
        self.exhausted: str | None = None  # why the search space is taken as exhausted

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            with self.interruption.raising():
                return self._trial(trial)
        except M6BenchError as exc:
            # an error of the trial's own (bad data, an unwritable ledger) counts as its
            # failure; only a dead worker's or interrupted trial goes without this attribute
            if ERROR_ATTR not in trial.user_attrs:
                trial.set_user_attr(ERROR_ATTR, f"{type(exc).__name__}: {exc}")
            raise

    def _trial(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker_identity())
        self._check_budget(trial)
        if self.plan.model_spec.search_space is None or trial.user_attrs.get(DEFAULTS_ATTR):
            sampled: dict[str, Any] = {}
        else:
            sampled = dict(self.plan.model_spec.search_space(trial))
        # the user's fixed keys (--set) win over sampled values of the same keys
        overrides = {**sampled, **self.spec.overrides}
        try:
            config = resolve_config(self.plan.model_spec.defaults, overrides=overrides,
                                    model_name=self.plan.model_name,
                                    choices=self.plan.model_spec.choices)
        except ConfigError as exc:
            trial.set_user_attr(ERROR_ATTR, f"ConfigError: {exc}")
            raise
        trial.set_user_attr("config", config)
        self._check_duplicate(trial, config, sampled=bool(sampled))
        request = replace(self.plan.request, overrides=overrides, kind="trial",
                          sweep_id=self.study_name, seed=self.spec.trial_seed)
        plan = replace(self.plan, request=request, config=config)
        trial.set_user_attr(OVERRIDES_ATTR, overrides)

        def on_epoch_end(epoch: int, metrics: Mapping[str, float]) -> None:
            self.interruption.check()
            value = metrics.get(f"valid/{self.metric}")
            if value is None or not math.isfinite(value):
                return
            trial.report(value, epoch)
            prune = trial.should_prune()
            self.interruption.check()  # one that landed in the storage calls above
            if prune:
                raise optuna.TrialPruned(f"pruned at epoch {epoch} ({self.metric}={value:.4f})")

        self.interruption.check()  # one that landed in the storage calls above
        try:
            record = execute(plan, on_epoch_end=on_epoch_end,
                             extra={"sweep": self._sweep_info(trial)})
        except RunFailed as exc:
            trial.set_user_attr(ERROR_ATTR, exc.record.get("error") or str(exc))
            trial.set_user_attr("run_id", exc.record["run_id"])
            raise
        trial.set_user_attr("run_id", record["run_id"])
        value = record["metrics"]["valid"].get(self.metric)
        if value is None:
            trial.set_user_attr(ERROR_ATTR, f"the run reported no valid {self.metric}")
            raise M6BenchError(f"trial {trial.number} reported no validation {self.metric}")
        return float(value)

    def _check_duplicate(self, trial: optuna.Trial, config: Mapping[str, Any], *,
                         sampled: bool) -> None:
        """Refuse a config the study already evaluated, or another trial is running.

        Configs are compared resolved (what the run would train), against every trial that
        counts as finished and every other running one.  A trial sets its config before it
        reads the others', so of two workers sampling the same config at once at least one
        gives way (both may; they then sample again).  The refused trial fails without an
        error attribute: it takes no budget and writes no record.
        """
        digest = config_hash(dict(config))
        for other in trial.study.get_trials(deepcopy=False):
            if other.number == trial.number or "config" not in other.user_attrs:
                continue
            counted = (other.state in (TrialState.COMPLETE, TrialState.PRUNED,
                                       TrialState.RUNNING)
                       or (other.state == TrialState.FAIL and ERROR_ATTR in other.user_attrs))
            if counted and config_hash(dict(other.user_attrs["config"])) == digest:
                break
        else:
            self.duplicates_in_a_row = 0
            return
        reason = f"same config as trial {other.number} ({other.state.name.lower()})"
        trial.set_user_attr(DUPLICATE_ATTR, reason)
        self.duplicates_in_a_row += 1
        if not sampled and not trial.user_attrs.get(DEFAULTS_ATTR):
            self.exhausted = ("the model's search space sampled no parameter, so every trial "
                              "would run the same config")
        elif self.duplicates_in_a_row >= MAX_DUPLICATES:
            self.exhausted = (f"{MAX_DUPLICATES} samples in a row repeated configs the study "
                              "already evaluated")
        if self.exhausted:
            trial.study.stop()
        raise DuplicateConfig(f"trial {trial.number}: {reason}")

    def _check_budget(self, trial: optuna.Trial) -> None:
        """Give way when finished trials plus older running ones already fill the budget.

        Trial numbers are assigned atomically by the storage, so of two workers racing for
        the last slot exactly one (the lower number) runs.  Both counts come from one read of
        the study: from two, a trial finishing in between would be in neither, and this trial
        would run one past the budget.
        """
        if self.spec.trials is None:
            return
        study = trial.study
        trials = study.get_trials(deepcopy=False)
        older_running = sum(1 for t in trials
                            if t.state == TrialState.RUNNING and t.number < trial.number)
        if count_trials(trials)["finished"] + older_running >= self.spec.trials:
            trial.set_user_attr(SKIPPED_ATTR, "budget filled by other workers' trials")
            study.stop()
            raise BudgetReached(f"trial {trial.number}: budget of {self.spec.trials} filled")

    def _sweep_info(self, trial: optuna.Trial) -> dict[str, Any]:
        return {"id": self.study_name, "trial": trial.number, "budget": self.spec.budget}
