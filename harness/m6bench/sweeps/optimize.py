"""The optimisation loop: trials until the study's budget is used, shared with any other
workers, with a line per trial and a clean stop on Ctrl-C."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterator

import optuna
from optuna.trial import TrialState

from m6bench.errors import ConfigError, M6BenchError
from m6bench.runs.run import RunPlan
from m6bench.sweeps.objective import BudgetReached, DuplicateConfig, Interruption, Objective
from m6bench.sweeps.spec import DUPLICATE_ATTR, ERROR_ATTR, SKIPPED_ATTR, SweepSpec
from m6bench.sweeps.storage import experimental_features, finished_counts, stale_after_seconds

WAIT_SECONDS = 1.0
MAX_ROUNDS = 100_000  # bounds the wait for other workers' trials (each round <= 1 wait)


def optimize(study: optuna.Study, spec: SweepSpec, plan: RunPlan,
             report: Callable[[str], None],
             report_failure: Callable[[str], None] | None = None) -> None:
    """Run trials until the study's budget is used (shared with any other workers).

    Trials other workers are running count towards the budget, so the study ends with
    exactly the requested number of finished trials; while they run this worker waits, and
    a dead worker's trial turns stale after the heartbeat grace period and is retried.  No
    config is evaluated twice in a study: a repeated sample is refused and the sampler asked
    again, and the sweep stops early when the search space looks exhausted.
    """
    with experimental_features():
        _optimize(study, spec, plan, report, report_failure)


def _optimize(study: optuna.Study, spec: SweepSpec, plan: RunPlan,
              report: Callable[[str], None],
              report_failure: Callable[[str], None] | None) -> None:
    interruption = Interruption()
    objective = Objective(spec, plan, study.study_name, report, interruption)
    waiting_reported = False
    with interruption.installed(), _quiet_trial_failures():
        for _ in range(MAX_ROUNDS):
            interruption.check()
            optuna.storages.fail_stale_trials(study)
            trials_left, time_left = _budget_left(study, spec)
            if time_left == 0 and trials_left:
                # a board's budget is its trials; the time limit only guards against a
                # runaway study, and a row it stops is reported under budget
                report(f"the guard of {spec.timeout:g} s of trials stopped the sweep at "
                       f"{spec.trials - trials_left} of its {spec.trials} trials: under budget")
            if trials_left == 0 or time_left == 0:
                return
            running = finished_counts(study)["running"]
            if trials_left is not None and running >= trials_left:
                if not waiting_reported:
                    report(f"waiting for {running} trial(s) running elsewhere; a dead "
                           f"worker's trial is retried {stale_after_seconds()}s after its "
                           "last heartbeat")
                    waiting_reported = True
                time.sleep(WAIT_SECONDS)
                continue
            study.optimize(
                objective,
                n_trials=None if trials_left is None else trials_left - running,
                timeout=time_left,
                catch=(M6BenchError, ConfigError, BudgetReached, DuplicateConfig),
                callbacks=[_StopAtBudget(spec),
                           _progress_callback(report, spec.trials, report_failure),
                           lambda study, trial: interruption.check()],
                gc_after_trial=True,
            )
            interruption.check()
            if objective.exhausted:
                counts = finished_counts(study)
                report(f"the search space looks exhausted: {objective.exhausted}; the study "
                       f"stops at {counts['finished']} finished trials"
                       + (f" of its budget of {spec.trials}" if spec.trials else ""))
                return
            if trials_left is None:
                return  # a time budget: optimize ran until it was spent



def _progress_callback(report: Callable[[str], None], total: int | None,
                       report_failure: Callable[[str], None] | None = None):
    """One line per trial; a failed trial's names its error (its traceback is in its record)."""
    report_failure = report_failure or report

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        for attr in (DUPLICATE_ATTR, SKIPPED_ATTR):
            if attr in trial.user_attrs:
                report(f"trial {trial.number}: not run, {trial.user_attrs[attr]}")
                return
        counts = finished_counts(study)
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "-"
        tally = (f"best {best} | finished {counts['finished']}/{total or '-'} | pruned "
                 f"{counts['pruned']} | failed {counts['failed']}")
        if trial.state == TrialState.FAIL and ERROR_ATTR in trial.user_attrs:
            error = str(trial.user_attrs[ERROR_ATTR]).strip().splitlines() or ["?"]
            report_failure(f"trial {trial.number} failed: {error[0]} | {tally}")
            return
        value = f"{trial.value:.4f}" if trial.value is not None else trial.state.name.lower()
        report(f"trial {trial.number}: {value} | {tally}")
    return callback


# Optuna logs every failed trial as a warning with its traceback; the sweep reports each in one
# line (the progress callback) and its run's record keeps the traceback.
_OPTUNA_TRIAL_FAILED = re.compile(r"Trial \d+ failed with ")


class _NoTrialFailureLogs(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _OPTUNA_TRIAL_FAILED.match(record.getMessage())


@contextlib.contextmanager
def _quiet_trial_failures() -> Iterator[None]:
    logger = logging.getLogger("optuna.study._optimize")
    quiet = _NoTrialFailureLogs()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _budget_left(study: optuna.Study, spec: SweepSpec) -> tuple[int | None, float | None]:
    counts = finished_counts(study)
    trials_left = None if spec.trials is None else max(0, spec.trials - counts["finished"])
    time_left = None
    if spec.timeout is not None:
        spent = sum((t.duration.total_seconds() for t in study.get_trials(deepcopy=False)
                     if t.duration is not None), 0.0)
        time_left = max(0.0, spec.timeout - spent)
    return trials_left, time_left


class _StopAtBudget:
    """Stops a worker once the shared study has its budget of finished trials."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trials_left, time_left = _budget_left(study, self.spec)
        if trials_left == 0 or time_left == 0:
            study.stop()
