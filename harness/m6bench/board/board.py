"""Run a board: every benchmark x model of a board file, tuned and finalised, idempotently.

For each row the ledger is checked first: when ok final runs already exist for the same
benchmark version, plugin, budget and fixed config keys, made by the installed code (the
harness's and the plugin's source hashes), with every seed the board asks for, the row is
skipped.  A row whose finals were made by other code is run again (``keep_stale`` keeps
them instead), in a study of its own, so the board follows the code.  Otherwise the row's
sweep runs (an Optuna study named after the row, so a killed board resumes where it
stopped, and finals skip recorded seeds).  A
row that fails is reported and recorded, and the board goes on with the next row.

Every row gets its budget of trials in full; the board's ``guard_s`` only stops a runaway
row, which is then reported (and shown on the site) as under budget.  The finals seed what
the board's ``vary`` says (:meth:`Budget.final_seeds`): with ``init`` every final is cut
with split seed 0, so the paired tests compare models on the same users and test items.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from m6bench.board.deployment import deploy_row
from m6bench.errors import ConfigError, M6BenchError, PluginError
from m6bench.registry.catalog import Catalog, load_catalog
from m6bench.registry.provenance import harness_identity
from m6bench.runs.ledger import ledger_path
from m6bench.runs.prepare import benchmark_version as version_of_benchmark
from m6bench.runs.run import RunRequest, plan_run
from m6bench.sweeps.spec import SweepSpec
from m6bench.sweeps.sweep import SweepResult, finalise, sweep
from m6bench_leaderboard import SCHEMA_VERSION, append_record, code_key, read_records
from m6bench_leaderboard.board import BoardError, BoardModel, BoardSpec, load_board
from m6bench_leaderboard.schema import init_seed, split_seed

STATUSES = ("skipped", "done", "incomplete", "failed", "pending")


@dataclass
class BoardRowResult:
    """What happened to one benchmark x model row of a board."""

    benchmark: str
    plugin: str
    model: str
    status: str  # one of STATUSES
    finals: int  # ok final seeds recorded for the row after this run
    seeds: int  # final seeds the board asks for
    seconds: float
    study: str | None = None
    message: str = ""
    trials_done: int | None = None  # finished trials of the row's study, after this run
    under_budget: bool = False  # the guard stopped the sweep before its trials were done


def _board(board: BoardSpec | str | os.PathLike[str]) -> BoardSpec:
    if isinstance(board, BoardSpec):
        return board
    try:
        return load_board(board)
    except BoardError as exc:
        raise ConfigError(str(exc)) from exc


def board_rows(board: BoardSpec, benchmarks: Iterable[str] = ()) -> list[tuple[str, BoardModel]]:
    """The board's (benchmark, model) rows, only those of ``benchmarks`` when given."""
    try:
        return board.rows(tuple(benchmarks))
    except BoardError as exc:
        raise ConfigError(str(exc)) from exc


def check_names(board: BoardSpec, catalog: Catalog) -> None:
    """Fail before running anything when a benchmark, plugin or model name is unknown.

    A plugin that is installed but failed to load is not an error here: its rows fail
    (reported and recorded) and the others run.
    """
    for name in board.benchmarks:
        if name not in catalog.benchmarks:
            try:
                catalog.benchmarks.get(name)
            except M6BenchError as exc:
                raise ConfigError(f"Board file {board.source}: board.benchmarks: {exc} "
                                  "See `m6bench benchmarks`.") from exc
    for index, entry in enumerate(board.models):
        info = catalog.plugins.get(entry.plugin)
        if info is not None and not info.ok:
            continue
        try:
            catalog.model(entry.plugin, entry.model)
        except PluginError as exc:
            key = "plugin" if info is None else "model"
            raise ConfigError(f"Board file {board.source}: models[{index}].{key}: {exc} "
                              "See `m6bench models`.") from exc


def installed_code(catalog: Catalog, plugin: str) -> tuple[str | None, str | None]:
    """(harness, plugin) source hashes of the installed code, as :func:`code_key` reads
    them from a record."""
    info = catalog.plugins.get(plugin)
    return (harness_identity()["sha256"], info.code()["sha256"] if info else None)


def study_name(entry: BoardModel, benchmark: str, benchmark_version: str,
               plugin_version: str, code: tuple[str | None, str | None] = (None, None)) -> str:
    """The row's Optuna study: the sweep's name plus the plugin's version and code, and the
    fixed keys (a study's trials all ran on one code)."""
    spec = SweepSpec(plugin=entry.plugin, model=entry.model, benchmark=benchmark,
                     trials=entry.budget.trials, timeout=entry.budget.timeout_s)
    name = f"{spec.study_name(benchmark_version)}:v{plugin_version}"
    if any(code):
        name += "-" + hashlib.sha256(repr(code).encode()).hexdigest()[:8]
    if entry.overrides:
        name += f":set-{entry.overrides_hash()}"
    if entry.budget.vary != "both":  # its finals differ from those of the same trials' "both"
        name += f":vary-{entry.budget.vary}"
    return name


def recorded_seeds(records: Iterable[Mapping[str, Any]], entry: BoardModel, benchmark: str,
                   benchmark_version: str,
                   code: tuple[str | None, str | None] | None = None) -> set[int]:
    """Seeds of ok finals that already satisfy the row: same benchmark version, budget and
    keys, made by ``code`` (harness and plugin source hashes; None accepts any code)."""
    seeds = set()
    for record in records:
        if record.get("kind") != "final" or record.get("status") != "ok":
            continue
        bench, plugin = record.get("benchmark") or {}, record.get("plugin") or {}
        if (bench.get("name") != benchmark or bench.get("version") != benchmark_version
                or plugin.get("name") != entry.plugin or record.get("model") != entry.model
                or (code is not None and code_key(record) != code)):
            continue
        budget = (record.get("sweep") or {}).get("budget") or {}
        if (budget.get("trials") != entry.budget.trials
                or budget.get("timeout_s") != entry.budget.timeout_s
                or budget.get("pruner", entry.budget.pruner) != entry.budget.pruner
                or budget.get("sampler_seed", 0) != entry.budget.sampler_seed):
            continue
        config = record.get("config") or {}
        if any(config.get(key) != value for key, value in entry.overrides.items()):
            continue
        if (init_seed(record), split_seed(record)) != entry.budget.final_seeds(
                int(record["seed"])):
            continue
        seeds.add(int(record["seed"]))
    return seeds


def _trials_text(entry: BoardModel) -> str:
    budget = entry.budget
    trials = f"{budget.trials} trials" if budget.trials else "trials"
    if budget.timeout_s and budget.trials != 1:
        trials += f", guard {budget.timeout_s:g} s"
    return trials


def _record_failure(ledger: Path, board: BoardSpec, entry: BoardModel, benchmark: str,
                    benchmark_version: str, study: str | None, catalog: Catalog,
                    exc: BaseException) -> None:
    info = catalog.plugins.get(entry.plugin)
    now = datetime.now(timezone.utc).isoformat()
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "status": "failed",
        "error": f"{type(exc).__name__}: {exc}",
        "kind": "final",
        "sweep_id": study,
        "benchmark": {"name": benchmark, "version": benchmark_version},
        "plugin": {"name": entry.plugin,
                   "distribution": info.distribution if info else None,
                   "version": info.version if info else None},
        "code": {"harness": harness_identity(), "plugin": info.code() if info else None},
        "model": entry.model,
        "config": dict(entry.overrides),
        "seed": 0,
        "metrics": {},
        "board": {"name": board.name, "source": board.source},
        "command": list(sys.argv),
        "started_at": now,
        "ended_at": now,
    }
    if not isinstance(exc, M6BenchError):
        record["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
    append_record(ledger, record)


def run_board(
    board: BoardSpec | str | os.PathLike[str],
    *,
    ledger: str | os.PathLike[str] | None = None,
    device: str = "auto",
    storage: str | None = None,
    dry_run: bool = False,
    keep_stale: bool = False,
    benchmarks: Iterable[str] = (),
    catalog: Catalog | None = None,
    report: Callable[[str], None] = lambda line: None,
) -> list[BoardRowResult]:
    """Run what is missing of a board; return one result per benchmark x model row.

    ``benchmarks`` restricts the run to those benchmarks' rows, so that several processes
    (or machines sharing the ledger and ``storage``) can each take a part of the board.
    A row whose recorded finals were made by other code than the installed harness and
    plugin runs again, unless ``keep_stale``.
    """
    board = _board(board)
    catalog = catalog or load_catalog()
    check_names(board, catalog)
    rows = board_rows(board, benchmarks)
    # a version hashes the loaded data: load each benchmark's data once, before any row runs,
    # so data that cannot be loaded stops the board before anything is recorded
    versions = {name: version_of_benchmark(catalog, catalog.benchmarks.get(name))
                for name in dict.fromkeys(name for name, _ in rows)}
    run = _BoardRun(board, catalog, ledger_path(ledger), device, storage, report)
    return [run.row(f"[{position}/{len(rows)}] {benchmark} x {entry.label}", benchmark,
                    versions[benchmark], entry, dry_run=dry_run, keep_stale=keep_stale)
            for position, (benchmark, entry) in enumerate(rows, start=1)]


@dataclass
class _BoardRun:
    """What every row of one board run shares: where it records, runs and reports."""

    board: BoardSpec
    catalog: Catalog
    ledger: Path
    device: str
    storage: str | None
    report: Callable[[str], None]

    def row(self, label: str, benchmark: str, benchmark_version: str, entry: BoardModel, *,
            dry_run: bool, keep_stale: bool) -> BoardRowResult:
        """Skip, plan (``dry_run``) or run one row, and report it under ``label``."""
        started = time.perf_counter()
        seeds = entry.budget.seeds
        info = self.catalog.plugins.get(entry.plugin)
        code = installed_code(self.catalog, entry.plugin)
        study = study_name(entry, benchmark, benchmark_version, info.version if info else "?",
                           code)
        records = read_records(self.ledger).records
        done = recorded_seeds(records, entry, benchmark, benchmark_version,
                              None if keep_stale else code)
        result = BoardRowResult(benchmark, entry.plugin, entry.model, "skipped",
                                len(done & set(range(seeds))), seeds, 0.0, study)
        if set(range(seeds)) <= done:
            result.message = f"already recorded: {seeds} final seeds"
            self.report(f"{label}: skipped, {result.message}")
            if not dry_run:
                self._deploy(label, benchmark, benchmark_version, entry)
            return result
        stale = recorded_seeds(records, entry, benchmark, benchmark_version) - done
        if stale:
            self.report(f"{label}: {len(stale)} recorded final seeds were made by other code "
                        "than the installed harness and plugin; running the row again "
                        "(--keep-stale keeps them)")
        if dry_run:
            result.status = "pending"
            result.message = (f"would run: {_trials_text(entry)}, "
                              f"{seeds - result.finals} final seeds missing")
            self.report(f"{label}: {result.message}")
            return result
        self.report(f"{label}: running sweep {study} ({_trials_text(entry)}, {seeds} final "
                    "seeds)")
        try:
            outcome = self._sweep(label, benchmark, entry, study)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing model must not stop the board
            _record_failure(self.ledger, self.board, entry, benchmark, benchmark_version,
                            study, self.catalog, exc)
            result.status, result.message = "failed", f"{type(exc).__name__}: {exc}"
            result.seconds = time.perf_counter() - started
            self.report(f"{label}: FAILED ({info.distribution if info else '?'} "
                        f"{info.version if info else '?'}): {result.message}; recorded in "
                        f"{self.ledger}")
            return result
        self._tally(result, outcome, entry.budget.trials)
        result.seconds = time.perf_counter() - started
        self.report(f"{label}: {result.status}, {result.message} ({result.seconds:.0f}s)")
        if result.status == "done":
            self._deploy(label, benchmark, benchmark_version, entry)
        return result

    def _deploy(self, label: str, benchmark: str, version: str, entry: BoardModel) -> None:
        """The row's variants and load tests; a failure is reported, and the row stays done
        (its accuracy numbers do not depend on them)."""
        def report(line: str) -> None:
            self.report(f"{label}: {line}")

        try:
            deploy_row(entry, benchmark, version, ledger=self.ledger, catalog=self.catalog,
                       report=report)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            report(f"deployment FAILED: {type(exc).__name__}: {exc}")

    def _sweep(self, label: str, benchmark: str, entry: BoardModel, study: str) -> SweepResult:
        budget = entry.budget

        def report(line: str) -> None:
            self.report(f"{label}: {line}")

        # sweep() seeds a final's cut and model with its seed ("both"); final 0 is (0, 0) in
        # every mode, so sweep() makes it (reusing the best trial's run when it can), and
        # the other seeds of the other modes run here, from a request fixing one seed
        outcome = sweep(
            entry.plugin, model=entry.model, benchmark=benchmark,
            trials=budget.trials, timeout=budget.timeout_s,
            seeds=budget.seeds if budget.vary == "both" else 1, storage=self.storage,
            study_name=study, pruner=budget.pruner, sampler_seed=budget.sampler_seed,
            overrides=dict(entry.overrides), device=self.device, ledger=self.ledger,
            catalog=self.catalog, report=report,
        )
        if budget.vary == "both" or budget.seeds == 1 or outcome.best_value is None:
            return outcome
        fixed = {"split_seed": 0} if budget.vary == "init" else {"init_seed": 0}
        request = RunRequest(plugin=entry.plugin, model=entry.model, benchmark=benchmark,
                             overrides=dict(entry.overrides), device=self.device,
                             ledger=self.ledger, save=True, **fixed)
        plan = plan_run(request, self.catalog)
        spec = SweepSpec(plugin=entry.plugin, model=plan.model_name, benchmark=benchmark,
                         trials=budget.trials, timeout=budget.timeout_s, pruner=budget.pruner,
                         sampler_seed=budget.sampler_seed, overrides=dict(entry.overrides))
        return finalise(outcome.study, spec, plan, seeds=budget.seeds, report=report)

    def _tally(self, result: BoardRowResult, outcome: SweepResult, asked: int | None) -> None:
        """The row's status from its sweep: done, failed (no trial completed) or incomplete,
        and whether the guard left it under its budget of ``asked`` trials."""
        seeds = result.seeds
        finals = {int(r["seed"]) for r in outcome.finals} & set(range(seeds))
        result.finals = len(finals)
        result.trials_done = outcome.counts.get("finished")
        result.under_budget = (asked is not None and result.trials_done is not None
                               and result.trials_done < asked)
        if len(finals) == seeds:
            result.status = "done"
            result.message = f"{seeds} final seeds, best valid {outcome.best_value}"
        elif outcome.best_value is None:
            result.status = "failed"
            result.message = (f"no trial completed ({outcome.counts}); the failed trials are "
                              f"recorded in {self.ledger}")
        else:
            result.status = "incomplete"
            result.message = (f"{len(finals)} of {seeds} final seeds ok; the failed ones are "
                              f"recorded in {self.ledger}")
        if result.under_budget:  # first: the CLI's table cuts long notes
            result.message = (f"UNDER BUDGET: {result.trials_done}/{asked} trials before the "
                              f"guard stopped the sweep; {result.message}")
