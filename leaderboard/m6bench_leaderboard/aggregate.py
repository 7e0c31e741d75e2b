"""From ledger records to leaderboard rows: finals per (benchmark, model), statistics.

Everything here is a pure function of the records (and an optional board spec):
:func:`build_leaderboard` assembles the JSON-ready structure the site, ``results.json``
and ``m6bench leaderboard show`` all render; the statistics it uses live in
:mod:`m6bench_leaderboard.stats`, the deployment view in
:mod:`m6bench_leaderboard.deployment`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from m6bench_leaderboard.board import DEFAULT_METRICS, BoardSpec
from m6bench_leaderboard.deployment import KINDS as DEPLOYMENT_KINDS
from m6bench_leaderboard.deployment import deployment_view, quality_metric
from m6bench_leaderboard.directions import lower_is_better, merged_directions
from m6bench_leaderboard.fields import mean as _mean
from m6bench_leaderboard.fields import number as _number
from m6bench_leaderboard.fields import text as _text
from m6bench_leaderboard.fields import when as _when
from m6bench_leaderboard.schema import code_key, init_seed, split_seed
from m6bench_leaderboard.stats import (  # noqa: F401 - re-exported: the package's public API
    holm,
    mean_ci,
    paired_pvalue,
    paired_values,
    pareto_front,
    per_user_table,
    significance,
)

RESULTS_VERSION = 1
# a run id or other name safe to use as a file name as it is
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


# ======================================================================== leaderboard
def safe_name(text: str) -> str:
    """``text`` itself when it is a safe file name, else a slug plus a short hash."""
    if SAFE_NAME.match(text):
        return text
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:40] or "x"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _assignment(key: str, value: Any) -> str:
    if isinstance(value, str):
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        text = json.dumps(value) if (parsed is not None or value.lower() in ("true", "false")
                                     or value != value.strip()) else value
    else:
        text = json.dumps(value, sort_keys=True)
    return shlex.quote(f"{key}={text}")


def reproduce_commands(record: Mapping[str, Any]) -> dict[str, str]:
    """Copy-paste commands: reproduce from the record file, and the equivalent plain run."""
    run_id = _text(record.get("run_id"))
    name = safe_name(run_id)
    plugin = _text(record.get("plugin", {}).get("name"))
    benchmark = record.get("benchmark", {})
    parts = ["m6bench", "run", "--plugin", shlex.quote(plugin), "--model",
             shlex.quote(_text(record.get("model"))), "--benchmark",
             shlex.quote(_text(benchmark.get("name"))), "--seed", str(record.get("seed", 0))]
    # a board's final may hold its cut or its model seed fixed (its board's vary)
    if split_seed(record) != int(record.get("seed", 0)):
        parts += ["--split-seed", str(split_seed(record))]
    if init_seed(record) != int(record.get("seed", 0)):
        parts += ["--init-seed", str(init_seed(record))]
    spec = benchmark.get("spec") if isinstance(benchmark.get("spec"), Mapping) else {}
    for key, value in sorted((spec.get("dataset_options") or {}).items()):
        parts += ["--dataset-opt", _assignment(key, value)]
    for key, value in sorted((record.get("config") or {}).items()):
        parts += ["--set", _assignment(key, value)]
    device = _text(record.get("device"), "cpu")
    parts += ["--device", shlex.quote(device)]
    return {
        "reproduce": f"m6bench reproduce {shlex.quote(run_id)} --ledger {name}.jsonl",
        "run": " ".join(parts),
    }


@dataclass
class _Group:
    """Finals of one (benchmark, version, plugin, model, sweep)."""

    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latest(self) -> str:
        return max(_when(r) for r in self.records)


def _budget_matches(record: Mapping[str, Any], board: BoardSpec | None, benchmark: str,
                    plugin: str, model: str) -> bool:
    if board is None:
        return True
    for name, entry in board.rows():
        if name != benchmark or entry.plugin != plugin or entry.model != model:
            continue
        budget = (record.get("sweep") or {}).get("budget") or {}
        wanted = entry.budget
        config = record.get("config") or {}
        return (budget.get("trials") == wanted.trials
                and budget.get("timeout_s") == wanted.timeout_s
                and all(config.get(k) == v for k, v in entry.overrides.items())
                and (init_seed(record), split_seed(record)) == wanted.final_seeds(
                    int(record.get("seed", 0))))
    return False


def vary_of(finals: Sequence[Mapping[str, Any]]) -> str:
    """What a row's final seeds varied: "init", "split" or "both" (one final: "both" unless
    its seeds say otherwise)."""
    pairs = [(int(r.get("seed", 0)), init_seed(r), split_seed(r)) for r in finals]
    if all(split == 0 for _, _, split in pairs) and any(init for _, init, _ in pairs):
        return "init"
    if all(init == 0 for _, init, _ in pairs) and any(split for _, _, split in pairs):
        return "split"
    return "both"


def _trial_seconds(record: Mapping[str, Any]) -> float | None:
    """A trial's device seconds: its ``timings.total``, else its wall time by the clock."""
    total = _number((record.get("timings") or {}).get("total"))
    if total is not None:
        return total
    try:
        began, ended = (datetime.fromisoformat(str(record[k]))
                        for k in ("started_at", "ended_at"))
    except (KeyError, ValueError, TypeError):
        return None
    return max(0.0, (ended - began).total_seconds())


def _default_metrics(spec: Mapping[str, Any], available: set[str]) -> list[str]:
    primary = _text(spec.get("valid_metric"), "ndcg@10")
    wanted = [primary, *DEFAULT_METRICS]
    if "ranking" not in (spec.get("tasks") or ["ranking"]):
        wanted = ["rmse", "mae"]
    chosen = [m for m in dict.fromkeys(wanted) if m in available]
    return chosen or sorted(available)[:4]


def _sweep_history(trials: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    history = []
    for record in sorted(trials, key=lambda r: ((r.get("sweep") or {}).get("trial", 0) or 0,
                                                _when(r))):
        sweep = record.get("sweep") or {}
        history.append({
            "trial": sweep.get("trial"),
            "status": record.get("status"),
            "value": _number(((record.get("metrics") or {}).get("valid") or {}).get(metric)),
            "run_id": record.get("run_id"),
            "config": record.get("config"),
            "seconds": _trial_seconds(record),
            "error": record.get("error"),
        })
    return history


def _sweep(sweep_id: Any, metric: str, trials: Sequence[Mapping[str, Any]],
           directions: Mapping[str, str]) -> dict[str, Any]:
    """A sweep's history of ``metric`` (its validation metric) and its direction, by the
    trials' own records where they say it, else by the finals' (``directions``)."""
    lower = lower_is_better(metric, {**directions, **merged_directions(trials)})
    return {"id": sweep_id, "metric": metric, "direction": "minimize" if lower else "maximize",
            "trials": _sweep_history(trials, metric)}


def _run_view(record: Mapping[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in record.items() if k not in ("per_user", "traceback")}
    view["file"] = safe_name(_text(record.get("run_id")))
    view["commands"] = reproduce_commands(record)
    return view


def _row(group: Sequence[dict[str, Any]], metrics: Sequence[str],
         trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    by_seed: dict[int, dict[str, Any]] = {}
    for record in sorted(group, key=_when):
        by_seed[record["seed"]] = record  # the latest final of a seed wins
    finals = [by_seed[s] for s in sorted(by_seed)]
    first = finals[-1]
    plugin = first.get("plugin") or {}
    columns: dict[str, Any] = {}
    for metric in metrics:
        values = [_number(((r.get("metrics") or {}).get("test") or {}).get(metric))
                  for r in finals]
        present = [v for v in values if v is not None]
        mean, half = mean_ci(present)
        columns[metric] = {"mean": mean, "ci95": half, "n": len(present), "values": values}
    sweep = first.get("sweep") or {}
    statuses = [r.get("status") for r in trials]
    tuning = sum(_trial_seconds(r) or 0.0 for r in trials)
    asked = (sweep.get("budget") or {}).get("trials")
    return {
        "plugin": _text(plugin.get("name")),
        "distribution": _text(plugin.get("distribution")),
        "plugin_version": _text(plugin.get("version")),
        "model": _text(first.get("model")),
        # the model's paper, when the harness records it (``model_info.paper``)
        "paper": _text((first.get("model_info") or {}).get("paper")) or None,
        "code": list(code_key(first)),
        "stale": False,
        "status": "ok",
        "error": None,
        "sweep_id": first.get("sweep_id"),
        "config": first.get("config") or {},
        "config_hash": first.get("config_hash"),
        "seeds": [r["seed"] for r in finals],
        "vary": vary_of(finals),
        "runs": [r["run_id"] for r in finals],
        "run_files": [safe_name(r["run_id"]) for r in finals],
        "metrics": columns,
        "train_seconds": _mean((r.get("timings") or {}).get("train") for r in finals),
        "evaluate_seconds": _mean((r.get("timings") or {}).get("evaluate") for r in finals),
        "parameters": first.get("parameters"),
        "trained_parameters": first.get("trained_parameters"),
        "device": first.get("device"),
        "budget": {
            **(sweep.get("budget") or {}),
            "trials_run": len(trials),
            "trials_ok": statuses.count("ok"),
            "trials_pruned": statuses.count("pruned"),
            "trials_failed": statuses.count("failed"),
            "tuning_seconds": round(tuning, 3),
            "best_valid": _number(sweep.get("best_valid")),
            # every model is owed its trials in full: fewer means the guard (guard_s)
            # stopped the sweep, or its search space ran out of configs
            "under_budget": isinstance(asked, int) and len(trials) < asked,
        },
        "rank": None,
        "pareto": False,
        "significance": {},
    }


def single_runs(records: Sequence[Mapping[str, Any]],
                metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Single runs of one benchmark, newest first: never ranked, marked untuned (their
    config was not tuned on validation, and one seed has no interval)."""
    available = {m for r in records for m in ((r.get("metrics") or {}).get("test") or {})}
    spec = (records[0].get("benchmark") or {}).get("spec") if records else None
    chosen = list(metrics) if metrics else _default_metrics(spec or {}, available)
    rows = [{
        "run_id": r.get("run_id"), "plugin": _text((r.get("plugin") or {}).get("name")),
        "model": _text(r.get("model")), "seed": r.get("seed"),
        "version": _text((r.get("benchmark") or {}).get("version")),
        "config_hash": r.get("config_hash"), "untuned": True,
        "metrics": {m: _number(((r.get("metrics") or {}).get("test") or {}).get(m))
                    for m in chosen},
        "train_seconds": _number((r.get("timings") or {}).get("train")),
        "ended_at": r.get("ended_at"),
    } for r in sorted(records, key=_when, reverse=True)]
    return {"metrics": chosen, "rows": rows}


def _failed_row(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    last = max(records, key=_when)
    plugin = last.get("plugin") or {}
    return {
        "plugin": _text(plugin.get("name")), "distribution": _text(plugin.get("distribution")),
        "plugin_version": _text(plugin.get("version")), "model": _text(last.get("model")),
        "status": "failed", "error": _text(last.get("error"), "failed"),
        "sweep_id": last.get("sweep_id"), "runs": [r.get("run_id") for r in records],
        "failures": len(records),
    }


@dataclass
class _Collected:
    """The records of a ledger sorted for the board: ok finals by benchmark and version,
    failures by row, trials by sweep, counts, and each plugin's newest code."""

    finals_by_bench: dict[str, dict[str, list[dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    failures: dict[tuple[str, str, str], list[Mapping[str, Any]]] = field(
        default_factory=lambda: defaultdict(list))
    trials_by_sweep: dict[str, list[Mapping[str, Any]]] = field(
        default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: {
        "records": 0, "finals": 0, "trials": 0, "runs": 0, "failed": 0, "other_code": 0,
        "variants": 0, "load_tests": 0})
    # variant and serving records by benchmark name (the deployment view, never ranked)
    deployed: dict[str, list[Mapping[str, Any]]] = field(
        default_factory=lambda: defaultdict(list))
    # ok single runs (kind "run") by benchmark name: listed apart, marked untuned
    singles: dict[str, list[Mapping[str, Any]]] = field(
        default_factory=lambda: defaultdict(list))
    # ok runs and finals by run id: the base runs variant and serving records name
    by_run_id: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    newest: dict[str, tuple[str, tuple[str | None, str | None]]] = field(default_factory=dict)


def _collect(records: Iterable[Mapping[str, Any]], board: BoardSpec | None,
             current_code: Mapping[str, tuple[str | None, str | None]] | None) -> _Collected:
    found = _Collected()
    counts = found.counts
    for record in records:
        counts["records"] += 1
        kind = record.get("kind") or "run"
        benchmark = record.get("benchmark") or {}
        name = _text(benchmark.get("name"))
        plugin = _text((record.get("plugin") or {}).get("name"))
        code = code_key(record)
        if any(code) and (plugin not in found.newest or _when(record) >= found.newest[plugin][0]):
            found.newest[plugin] = (_when(record), code)
        if board is not None and not board.includes(name, plugin, _text(record.get("model"))):
            continue
        if current_code is not None and plugin in current_code \
                and code != tuple(current_code[plugin]):
            counts["other_code"] += 1
            continue
        if kind == "trial":
            counts["trials"] += 1
            if record.get("sweep_id"):
                found.trials_by_sweep[str(record["sweep_id"])].append(record)
        elif kind == "final":
            counts["finals"] += 1
            if record["status"] == "ok":
                found.finals_by_bench[name][_text(benchmark.get("version"))].append(record)
        elif kind in DEPLOYMENT_KINDS:
            counts["variants" if kind == "variant" else "load_tests"] += 1
            found.deployed[name].append(record)
        else:
            counts["runs"] += 1
            if kind == "run" and record["status"] == "ok":
                found.singles[name].append(record)
        if kind in ("run", "final") and record["status"] == "ok":
            found.by_run_id[str(record["run_id"])] = record
        if record["status"] == "failed" and kind in ("trial", "final"):
            counts["failed"] += 1
            found.failures[(name, plugin, _text(record.get("model")))].append(record)
    return found


def build_leaderboard(records: Iterable[Mapping[str, Any]], board: BoardSpec | None = None,
                      *, source: str | None = None, skipped: int = 0,
                      current_code: Mapping[str, tuple[str | None, str | None]] | None = None,
                      ) -> dict[str, Any]:
    """The leaderboard as JSON-ready data: benchmarks, rows, statistics, runs, sweeps.

    Rows come from final runs (``kind == "final"``, status ok), one per (benchmark,
    plugin, model): the latest sweep's finals, or with a ``board`` the ones whose budget
    and fixed config match the board (falling back to the latest).  A model with failed
    records and no ok final is listed as failed.

    A row is marked ``stale`` when its finals were made by other code (:func:`code_key`)
    than the newest code recorded for its plugin, or than ``current_code[plugin]`` (the
    installed code, from the caller); with ``current_code``, finals of other code are left
    out, so a published board holds only numbers of the code it names.
    """
    found = _collect(records, board, current_code)
    names = list(dict.fromkeys([*found.finals_by_bench, *(key[0] for key in found.failures)]))
    if board is not None:
        names = list(board.benchmarks) + sorted({n for n, _, _ in found.failures} - set(
            board.benchmarks))
        names = [n for n in names
                 if n in found.finals_by_bench or any(k[0] == n for k in found.failures)]
    runs: dict[str, Any] = {}
    sweeps: dict[str, Any] = {}
    benchmarks = [_benchmark_view(name, found, board, current_code, runs, sweeps)
                  for name in names]
    by_name = {bench["name"]: bench["metrics"] for bench in benchmarks}
    return {
        "results_version": RESULTS_VERSION,
        "source": {"ledger": source, "skipped_lines": skipped, **found.counts},
        "board": board.to_dict() if board else None,
        "benchmarks": benchmarks,
        "runs": runs,
        "sweeps": sweeps,
        "single_runs": {name: single_runs(found.singles[name], by_name.get(name))
                        for name in sorted(found.singles)},
        # variants and load tests of benchmarks that have no final yet (runs made with
        # `m6bench run --save`): the deployment view alone
        "deployment_only": {name: _deployment_only(found.deployed[name], found)
                            for name in sorted(found.deployed) if name not in by_name},
    }


def _deployment_only(deployed: list[Mapping[str, Any]], found: _Collected) -> dict[str, Any]:
    """A benchmark's title fields and deployment view, from its newest deployment record."""
    newest = max(deployed, key=_when)
    directions = merged_directions(deployed)
    quality = quality_metric(directions, None)
    return {"name": _text((newest.get("benchmark") or {}).get("name")),
            "version": _text((newest.get("benchmark") or {}).get("version")),
            "protocol": _text((newest.get("cut") or {}).get("protocol")),
            "dataset": newest.get("dataset") or {},
            "deployment": deployment_view(deployed, found.by_run_id, metric=quality,
                                          lower_is_better=lower_is_better(quality, directions))}


def _benchmark_rows(name: str, finals: list[dict[str, Any]], found: _Collected,
                    board: BoardSpec | None, metrics: list[str],
                    current_code: Mapping[str, tuple[str | None, str | None]] | None,
                    ) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]], list[Any]]:
    """One row per (plugin, model) from its chosen sweep's finals; those finals and the
    sweep ids, by row."""
    groups: dict[tuple[str, str], dict[str, _Group]] = defaultdict(dict)
    for record in finals:
        key = (_text(record["plugin"].get("name")), record["model"])
        groups[key].setdefault(str(record.get("sweep_id")), _Group()).records.append(record)
    rows: list[dict[str, Any]] = []
    row_finals: dict[int, list[dict[str, Any]]] = {}
    sweep_ids: list[Any] = []
    for (plugin, model), by_sweep in sorted(groups.items()):
        matching = [g for g in by_sweep.values()
                    if _budget_matches(g.records[0], board, name, plugin, model)]
        chosen = max(matching or list(by_sweep.values()), key=lambda g: g.latest)
        sweep_id = chosen.records[0].get("sweep_id")
        trials = found.trials_by_sweep.get(str(sweep_id), []) if sweep_id else []
        row = _row(chosen.records, metrics, trials)
        latest = tuple(current_code[plugin]) if current_code and plugin in current_code \
            else found.newest.get(plugin, ("", (None, None)))[1]
        row["stale"] = any(latest) and tuple(row["code"]) != latest
        row_finals[len(rows)] = [r for r in chosen.records if r["run_id"] in row["runs"]]
        rows.append(row)
        sweep_ids.append(sweep_id)
    return rows, row_finals, sweep_ids


def _benchmark_view(name: str, found: _Collected, board: BoardSpec | None,
                    current_code: Mapping[str, tuple[str | None, str | None]] | None,
                    runs: dict[str, Any], sweeps: dict[str, Any]) -> dict[str, Any]:
    """One benchmark's table (its newest version's rows, ranked, with significance tests);
    fills ``runs`` and ``sweeps`` with the views its rows link to."""
    test = board.test if board else "wilcoxon"
    alpha = board.alpha if board else 0.05
    versions = found.finals_by_bench.get(name, {})
    version = max(versions, key=lambda v: max(_when(r) for r in versions[v]), default="")
    finals = versions.get(version, [])
    spec = (finals[0]["benchmark"].get("spec") if finals else None) or {}
    directions = merged_directions(sorted(finals, key=_when))
    available = {m for r in finals for m in ((r.get("metrics") or {}).get("test") or {})}
    metrics = [m for m in board.metrics if m in available] if board and board.metrics \
        else _default_metrics(spec, available)
    rows, row_finals, sweep_ids = _benchmark_rows(name, finals, found, board, metrics,
                                                  current_code)
    for index, sweep_id in enumerate(sweep_ids):
        if sweep_id and str(sweep_id) not in sweeps:
            sweeps[str(sweep_id)] = _sweep(sweep_id, _text(spec.get("valid_metric"), "ndcg@10"),
                                           found.trials_by_sweep.get(str(sweep_id), []),
                                           directions)
        for record in row_finals[index]:
            runs[record["run_id"]] = _run_view(record)
    ok_models = {(r["plugin"], r["model"]) for r in rows}
    failed_rows = [_failed_row(found.failures[key]) for key in sorted(found.failures)
                   if key[0] == name and key[1:] not in ok_models]
    lower = {m: lower_is_better(m, directions) for m in metrics}
    tests = [t for t in (significance(rows, row_finals, m, lower[m], test, alpha)
                         for m in metrics) if t is not None]
    primary = metrics[0] if metrics else None
    _rank(rows, primary, lower)
    for flag, row in zip(_pareto_points(rows, primary, lower), rows):
        row["pareto"] = flag
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["plugin"], r["model"]))
    first = finals[-1] if finals else {}
    deployed = [r for r in found.deployed.get(name, [])
                if _text((r.get("benchmark") or {}).get("version")) == version]
    quality = quality_metric(available, primary)
    return {
        "name": name,
        "file": safe_name(name),
        "version": version,
        "other_versions": sorted(v for v in versions if v != version),
        "protocol": _text(spec.get("protocol")) or _text((first.get("cut") or {}).get(
            "protocol")),
        "description": _text(spec.get("description")),
        "spec": spec,
        "dataset": first.get("dataset") or {},
        "cut": first.get("cut") or {},
        "metrics": metrics,
        "primary": primary,
        "lower_is_better": lower,
        "significance": {"test": test, "alpha": alpha, "correction": "holm",
                         "pairing": "per-user test values matched by (seed, user id), "
                                    "only between finals cut by the same split",
                         "tests": tests},
        # what the final seeds varied, over the rows (one word when they agree)
        "vary": "/".join(sorted({row["vary"] for row in rows})) or None,
        "rows": rows,
        "failed": failed_rows,
        "deployment": deployment_view(deployed, found.by_run_id, metric=quality,
                                      lower_is_better=lower_is_better(quality, directions)),
    }


def _rank(rows: list[dict[str, Any]], metric: str | None, lower: Mapping[str, bool]) -> None:
    if metric is None:
        return
    low = lower[metric]
    scored = sorted((r for r in rows if r["metrics"][metric]["mean"] is not None),
                    key=lambda r: r["metrics"][metric]["mean"] * (1 if low else -1))
    previous, rank = None, 0
    for position, row in enumerate(scored, start=1):
        value = row["metrics"][metric]["mean"]
        if value != previous:
            rank, previous = position, value
        row["rank"] = rank


def _pareto_points(rows: Sequence[dict[str, Any]], metric: str | None,
                   lower: Mapping[str, bool]) -> list[bool]:
    if metric is None:
        return [False] * len(rows)
    sign = -1.0 if lower[metric] else 1.0
    usable = [i for i, r in enumerate(rows)
              if r["train_seconds"] is not None and r["metrics"][metric]["mean"] is not None]
    flags = pareto_front([(rows[i]["train_seconds"], sign * rows[i]["metrics"][metric]["mean"])
                     for i in usable])
    out = [False] * len(rows)
    for i, flag in zip(usable, flags):
        out[i] = flag
    return out
