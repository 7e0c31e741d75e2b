"""Board specs: which benchmarks x models a leaderboard shows, under which budget.

A board is a TOML file (``leaderboard/board.toml`` is the official one)::

    [board]
    name = "official"                      # a short identifier
    title = "m6bench leaderboard"          # shown on the site
    description = "..."                    # optional
    benchmarks = ["ml-100k", "ml-1m"]      # registered benchmark names
    metrics = ["ndcg@10", "recall@10"]     # optional columns; the first ranks the models
                                           # (default: each benchmark's validation metric,
                                           # recall@10, mrr@10, coverage@10)

    [budget]                               # every model gets the same budget
    trials = 20                            # finished Optuna trials per benchmark x model
    guard_s = 3600                         # optional guard: wall seconds of trials, in all
    seeds = 5                              # final test runs of the best config
    vary = "init"                          # what final seeds vary: init | split | both
    pruner = "median"                      # median | hyperband | none
    sampler_seed = 0

    [significance]
    test = "wilcoxon"                      # wilcoxon | ttest (paired, over per-user values)
    alpha = 0.05                           # family-wise, Holm-corrected across models

    [[models]]
    plugin = "classic"
    model = "bpr-mf"
    trials = 4                             # optional: this model's own trial budget
    seeds = 3                              # optional: its own number of final seeds
    set = { epochs = 30 }                  # optional: fixed config keys, every run
    benchmarks = ["ml-100k"]               # optional: a subset of the board's benchmarks

The budget is a number of trials that every model gets in full: rows are compared at equal
trials, whatever a trial costs.  ``guard_s`` (``timeout_s`` is its older name) only guards
against a runaway row: a sweep that reaches it stops, and its row is flagged *under budget*
on the site and in ``m6bench leaderboard show``, with trials done / trials asked and the
seconds its trials took.

``vary`` says what the final seeds 0..seeds-1 change (the seed of the trials is 0):

* ``"init"``: the model's initialisation and sampling; every final is cut with split seed
  0, so all models are tested on the same users and test items, and the 95% CI (Student's
  t over the finals' means) is the model's own run-to-run variance;
* ``"split"``: the per-user split; the model's seed stays 0, so the CI is the split's
  variance of the score;
* ``"both"`` (the default, what records written before ``vary`` existed mean): final seed
  s seeds both.

The default is ``"both"`` so that old boards and records keep their meaning; the shipped
boards use ``"init"``.  The paired tests match per-user values by (final seed, user id):
models run under the same ``vary`` share the split of each seed, and two models whose
finals of a seed were cut by different splits are not tested against each other (see
:mod:`m6bench_leaderboard.stats`).

A model may be listed again with another budget or ``set`` for other benchmarks, as long as
no benchmark is in two of its entries (``benchmarks`` then says which entry covers which).

The format belongs to the leaderboard package (it also selects what the site shows); the
harness runs a board (``m6bench board run FILE``).  Every error names the file, the key and
the fix.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

PRUNERS = ("median", "hyperband", "none")
VARY = ("init", "split", "both")
TESTS = ("wilcoxon", "ttest")
DEFAULT_METRICS = ("recall@10", "mrr@10", "coverage@10")

_BOARD_KEYS = ("name", "title", "description", "benchmarks", "metrics")
_BUDGET_KEYS = ("trials", "guard_s", "timeout_s", "seeds", "vary", "pruner", "sampler_seed")
_SIGNIFICANCE_KEYS = ("test", "alpha")
_MODEL_KEYS = ("plugin", "model", "trials", "guard_s", "timeout_s", "seeds", "vary", "set",
               "benchmarks", "variants", "loadtest")
_LOADTEST_KEYS = ("users", "duration_s", "backend")
BACKENDS = ("torch", "onnx")
_TOP_KEYS = ("board", "budget", "significance", "models")


class BoardError(ValueError):
    """A board file is missing, not TOML, or breaks the format; the message names the fix."""


@dataclass(frozen=True)
class Budget:
    """The tuning budget of one benchmark x model row (``timeout_s``: the guard_s key)."""

    trials: int | None = 20
    timeout_s: float | None = None
    seeds: int = 5
    pruner: str = "median"
    sampler_seed: int = 0
    vary: str = "both"

    def to_dict(self) -> dict[str, Any]:
        return {"trials": self.trials, "timeout_s": self.timeout_s, "seeds": self.seeds,
                "pruner": self.pruner, "sampler_seed": self.sampler_seed, "vary": self.vary}

    def final_seeds(self, seed: int) -> tuple[int, int]:
        """(init seed, split seed) of final ``seed`` under :attr:`vary`."""
        return (0 if self.vary == "split" else seed, 0 if self.vary == "init" else seed)


@dataclass(frozen=True)
class LoadTest:
    """A row's load test of its seed-0 final (and of each variant): concurrent users,
    seconds, backend."""

    users: int = 16
    duration_s: float = 10.0
    backend: str = "torch"


@dataclass(frozen=True)
class BoardModel:
    """One model of the board, with its budget and fixed config keys; ``variants`` (compression
    methods with their default options) and ``loadtest`` ask for the deployment view of its
    seed-0 final."""

    plugin: str
    model: str
    budget: Budget
    overrides: Mapping[str, Any] = field(default_factory=dict)
    benchmarks: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    loadtest: LoadTest | None = None

    @property
    def label(self) -> str:
        return f"{self.plugin}/{self.model}"

    def overrides_hash(self) -> str:
        """A short hash of the fixed config keys ("" when there are none)."""
        if not self.overrides:
            return ""
        blob = json.dumps(dict(self.overrides), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


@dataclass(frozen=True)
class BoardSpec:
    """A parsed, validated board file."""

    name: str
    title: str
    benchmarks: tuple[str, ...]
    models: tuple[BoardModel, ...]
    budget: Budget = field(default_factory=Budget)
    metrics: tuple[str, ...] = ()
    description: str = ""
    test: str = "wilcoxon"
    alpha: float = 0.05
    source: str = "<board>"

    def rows(self, only: Sequence[str] = ()) -> list[tuple[str, BoardModel]]:
        """Every (benchmark, model) pair of the board, benchmarks first (``only``: those
        benchmarks' rows)."""
        for name in only:
            if name not in self.benchmarks:
                raise BoardError(f"Board file {self.source}: it has no benchmark {name!r}; "
                                 f"choose from {', '.join(self.benchmarks)}.")
        return [(benchmark, model) for benchmark in self.benchmarks for model in self.models
                if (not model.benchmarks or benchmark in model.benchmarks)
                and (not only or benchmark in only)]

    def includes(self, benchmark: str, plugin: str, model: str) -> bool:
        return any(b == benchmark and m.plugin == plugin and m.model == model
                   for b, m in self.rows())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "source": self.source, "benchmarks": list(self.benchmarks),
            "metrics": list(self.metrics), "budget": self.budget.to_dict(),
            "significance": {"test": self.test, "alpha": self.alpha, "correction": "holm"},
            "models": [{"plugin": m.plugin, "model": m.model, "budget": m.budget.to_dict(),
                        "set": dict(m.overrides), "benchmarks": list(m.benchmarks),
                        "variants": list(m.variants),
                        "loadtest": None if m.loadtest is None else vars(m.loadtest)}
                       for m in self.models],
        }


class _Checker:
    """Reads typed values out of TOML tables, raising errors that name file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str, fix: str) -> BoardError:
        return BoardError(f"Board file {self.source}: {key} {problem}; {fix}")

    def unknown(self, table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail(f"{where}{key}", "is not a board key",
                                f"{hint}valid keys there: {', '.join(allowed)}.")

    def table(self, data: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", f"is a {type(value).__name__}",
                            f"write it as a table: [{key}].")
        return value

    def text(self, data: Mapping[str, Any], key: str, where: str, *,
             default: str | None = None, choices: Sequence[str] = ()) -> str:
        if key not in data:
            if default is None:
                raise self.fail(f"{where}{key}", "is missing",
                                f'add it, for example {key} = "..."')
            return default
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}{key}", f"is {value!r}, not a non-empty string",
                            f'write it in quotes, for example {key} = "name".')
        if choices and value not in choices:
            raise self.fail(f"{where}{key}", f"is {value!r}",
                            f"use one of {', '.join(choices)}.")
        return value

    def names(self, data: Mapping[str, Any], key: str, where: str, *,
              required: bool) -> tuple[str, ...]:
        if key not in data:
            if required:
                raise self.fail(f"{where}{key}", "is missing",
                                f'list them, for example {key} = ["ml-100k"].')
            return ()
        value = data[key]
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v.strip() for v in value)):
            raise self.fail(f"{where}{key}", f"is {value!r}",
                            f'write a non-empty list of names, for example {key} = ["ml-100k"].')
        if len(set(value)) != len(value):
            twice = sorted({v for v in value if value.count(v) > 1})
            raise self.fail(f"{where}{key}", f"lists {', '.join(twice)} twice",
                            "list each name once.")
        return tuple(value)

    def integer(self, data: Mapping[str, Any], key: str, where: str, default: int | None, *,
                minimum: int) -> int | None:
        if key not in data:
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"{where}{key}", f"is {value!r}",
                            f"write a whole number >= {minimum}, for example {key} = "
                            f"{max(minimum, 3)}.")
        return value

    def number(self, data: Mapping[str, Any], key: str, where: str, default: float | None, *,
               low: float, high: float = math.inf) -> float | None:
        if key not in data:
            return default
        value = data[key]
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not low < value < high):
            bound = f"between {low} and {high}" if math.isfinite(high) else f"above {low}"
            raise self.fail(f"{where}{key}", f"is {value!r}", f"write a number {bound}.")
        return float(value)


def _budget(check: _Checker, data: Mapping[str, Any], where: str, base: Budget) -> Budget:
    trials = check.integer(data, "trials", where, base.trials, minimum=1)
    if "guard_s" in data and "timeout_s" in data:
        raise check.fail(f"{where}timeout_s", "is given with guard_s (its older name)",
                         "keep guard_s only.")
    key = "guard_s" if "guard_s" in data else "timeout_s"
    timeout = check.number(data, key, where, base.timeout_s, low=0.0)
    vary = check.text(data, "vary", where, default=base.vary, choices=VARY)
    seeds = check.integer(data, "seeds", where, base.seeds, minimum=1)
    pruner = check.text(data, "pruner", where, default=base.pruner, choices=PRUNERS)
    sampler_seed = check.integer(data, "sampler_seed", where, base.sampler_seed, minimum=0)
    return Budget(trials=trials, timeout_s=timeout, seeds=int(seeds or 1), pruner=pruner,
                  sampler_seed=int(sampler_seed or 0), vary=vary)


def _loadtest(check: _Checker, entry: Mapping[str, Any], where: str) -> LoadTest | None:
    if "loadtest" not in entry:
        return None
    table = check.table(entry, "loadtest", where)
    check.unknown(table, _LOADTEST_KEYS, f"{where}loadtest.")
    users = check.integer(table, "users", f"{where}loadtest.", 16, minimum=1)
    duration = check.number(table, "duration_s", f"{where}loadtest.", 10.0, low=0.0)
    backend = check.text(table, "backend", f"{where}loadtest.", default="torch",
                         choices=BACKENDS)
    return LoadTest(users=int(users or 16), duration_s=float(duration or 10.0),
                    backend=backend)


def parse_board(data: Mapping[str, Any], source: str = "<board>") -> BoardSpec:
    """Validate the TOML tables of a board file (``source`` names it in errors)."""
    check = _Checker(source)
    check.unknown(data, _TOP_KEYS, "")
    board = check.table(data, "board")
    if "board" not in data:
        raise check.fail("[board]", "is missing",
                         'start the file with [board] and name = "...", benchmarks = [...].')
    check.unknown(board, _BOARD_KEYS, "board.")
    name = check.text(board, "name", "board.")
    title = check.text(board, "title", "board.", default=f"m6bench leaderboard: {name}")
    description = board.get("description", "")
    if not isinstance(description, str):
        raise check.fail("board.description", f"is {description!r}", "write a string.")
    benchmarks = check.names(board, "benchmarks", "board.", required=True)
    metrics = check.names(board, "metrics", "board.", required=False)

    budget_table = check.table(data, "budget")
    check.unknown(budget_table, _BUDGET_KEYS, "budget.")
    budget = _budget(check, budget_table, "budget.", Budget())
    if "trials" not in budget_table:
        raise check.fail("budget.trials", "is missing",
                         "give every model the same number of trials, for example trials = "
                         "20 (a time limit is only a guard: guard_s = 3600).")

    significance = check.table(data, "significance")
    check.unknown(significance, _SIGNIFICANCE_KEYS, "significance.")
    test = check.text(significance, "test", "significance.", default="wilcoxon", choices=TESTS)
    alpha = check.number(significance, "alpha", "significance.", 0.05, low=0.0, high=1.0)

    entries = data.get("models")
    if not isinstance(entries, list) or not entries:
        raise check.fail("[[models]]", "is missing or empty",
                         'add one table per model: [[models]] plugin = "classic" '
                         'model = "ease".')
    models: list[BoardModel] = []
    # an entry's rows -> its index: a model may be listed again for other benchmarks
    seen: dict[tuple[str, str, str], int] = {}
    for index, entry in enumerate(entries):
        where = f"models[{index}]."
        if not isinstance(entry, dict):
            raise check.fail(f"models[{index}]", f"is {entry!r}",
                             "write each model as a [[models]] table.")
        check.unknown(entry, _MODEL_KEYS, where)
        plugin = check.text(entry, "plugin", where)
        model = check.text(entry, "model", where)
        overrides = entry.get("set", {})
        if not isinstance(overrides, dict):
            raise check.fail(f"{where}set", f"is {overrides!r}",
                             "write fixed config keys as a table, e.g. set = { epochs = 30 }.")
        subset = check.names(entry, "benchmarks", where, required=False)
        for benchmark in subset:
            if benchmark not in benchmarks:
                raise check.fail(f"{where}benchmarks", f"names {benchmark!r}, which is not in "
                                 "board.benchmarks", f"add it there or use one of "
                                 f"{', '.join(benchmarks)}.")
        for benchmark in subset or benchmarks:
            earlier = seen.setdefault((benchmark, plugin, model), index)
            if earlier != index:
                raise check.fail(f"{where}model", f"repeats {plugin}/{model} on {benchmark} "
                                 f"(models[{earlier}] has it)",
                                 "list a model once per benchmark: give each of its entries "
                                 "benchmarks = [...] with none in common.")
        models.append(BoardModel(plugin=plugin, model=model,
                                 budget=_budget(check, entry, where, budget),
                                 overrides=dict(overrides), benchmarks=subset,
                                 variants=check.names(entry, "variants", where, required=False),
                                 loadtest=_loadtest(check, entry, where)))
    return BoardSpec(name=name, title=title, description=description, benchmarks=benchmarks,
                     models=tuple(models), budget=budget, metrics=metrics, test=test,
                     alpha=float(alpha if alpha is not None else 0.05), source=source)


def load_board(path: str | os.PathLike[str]) -> BoardSpec:
    """Read and validate a board file; :class:`BoardError` names the file, key and fix."""
    path = Path(path)
    if not path.is_file():
        raise BoardError(f"Board file {path} does not exist; pass the path of a board TOML "
                         "file, for example leaderboard/board.toml.")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(f"Board file {path} is not valid TOML ({exc}); fix the syntax at "
                         "that line.") from exc
    return parse_board(data, str(path))
