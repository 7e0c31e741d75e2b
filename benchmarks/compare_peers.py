"""m6bench beside implicit 0.7.3 and Cornac 3.0.1: iALS, BPR and EASE timed side by side.

Settings matched and not: benchmarks/README.md ("compare_peers.py").  Every side trains on
m6bench's exported split (CSR training matrix, validation and test pairs); every side's factors
(or item-item weights) are scored by m6bench's evaluator in an m6bench process, and the peers'
own test evaluation is timed besides.  Each repetition of each side is a fresh process, in the
order m6bench, peer(s), m6bench, ...; 2 threads and ``OMP_WAIT_POLICY=PASSIVE`` on all sides.

* iALS: m6bench ``ials`` (dim 64, 3 CG steps, l2 30, alpha 3, the plugin's epochs and early
  stopping) vs ``implicit.cpu.als.AlternatingLeastSquares`` with the same factors, CG steps,
  regularization and confidence (implicit's ``alpha * value``: 4 = m6bench's 1 + 3), started
  from m6bench's own starting factors, for as many iterations as m6bench ran; the same
  early-stopping rule picks the peer's best iteration on validation NDCG@10.
* BPR: m6bench ``bpr-mf`` (the plugin's defaults, dim 64) vs Cornac ``BPR(k=64,
  learning_rate=0.01, lambda_reg=0.01, max_iter=200, seed=None)`` and implicit
  ``BayesianPersonalizedRanking(factors=64, learning_rate=0.01, regularization=0.001)``.
* EASE: m6bench ``ease`` vs Cornac ``EASE(lamb=<m6bench's l2>, posB=False)``.

The peers run in their own virtual environment, outside the repository (default
``~/.cache/m6bench/peers-venv``, or ``$M6BENCH_PEERS_VENV`` / ``--peers-venv``)::

    python benchmarks/compare_peers.py --setup                      # once: build the venv
    python benchmarks/compare_peers.py --datasets ml-100k ml-1m     # everything (ml-1m: ~30 min)
    python benchmarks/compare_peers.py --datasets ml-100k --models ials --reps 1

It prints the figures (min / median over ``--reps``) with their ratios as a Markdown table,
writes it with the raw figures to ``--out PREFIX`` (``PREFIX.md``, ``PREFIX.json``; default
``.benchmarks/compare_peers/<UTC time>``) and ends with the PASS/FAIL checks; the exit status
is 1 when a check fails.  ``--checks-only`` prints only the checks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling _peers_common
from _peers_common import (
    SCORED,
    build_venv,
    fmt,
    log_tail,
    m6bench_versions,
    machine,
    pinned_env,
    ratio,
    render_checks,
    run_child,
    score_snapshots,
    venv_python,
)

VENV_ENV = "M6BENCH_PEERS_VENV"
DEFAULT_VENV = Path("~/.cache/m6bench/peers-venv").expanduser()
VERSIONS = {"implicit": "0.7.3", "cornac": "3.0.1"}
RECIPE = ((*(f"{name}=={version}" for name, version in VERSIONS.items()), "numpy", "scipy"),)
THREADS, WAIT_POLICY = 2, "PASSIVE"
DRIVER = Path(__file__).resolve().parent / "_peers_driver.py"
DATASETS = ("ml-100k", "ml-1m")
SEED = 0
NDCG_TOLERANCE = 0.002  # iALS and EASE: the same model, so the same test NDCG@10
BPR_EPOCH_FACTOR = 2.0  # m6bench's BPR s/epoch at most 2x implicit's
IMPLICIT_BPR_ITERATIONS, IMPLICIT_BPR_SNAPSHOT_EVERY = 100, 5

# m6bench model -> (explicit settings that make it the peers' model, the peers run beside it)
MODELS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "ials": ({"dim": 64, "cg_steps": 3, "l2": 30.0, "alpha": 3.0}, ("implicit-als",)),
    "bpr-mf": ({"dim": 64}, ("cornac-bpr", "implicit-bpr")),
    "ease": ({}, ("cornac-ease",)),
}
PEER_NAMES = {"implicit-als": "implicit ALS", "implicit-bpr": "implicit BPR",
              "cornac-bpr": "Cornac BPR", "cornac-ease": "Cornac EASE"}


class PeersUnavailable(RuntimeError):
    """The peers' virtual environment is missing or broken."""


# ---------------------------------------------------------------------------- the venv
def check_peers(venv: Path) -> dict[str, str]:
    """The peers' versions in ``venv``; :class:`PeersUnavailable` when it is unusable."""
    import subprocess

    fix = (f"Build it with `python benchmarks/compare_peers.py --setup --peers-venv {venv}` "
           f"(python -m venv, then pip install {' '.join(RECIPE[0])}), or point --peers-venv "
           f"/ ${VENV_ENV} at a working one.")
    python = venv_python(venv)
    if not python.exists():
        raise PeersUnavailable(f"No peers virtual environment at {venv} ({python} does not "
                               f"exist). {fix}")
    probe = ("import json, implicit, cornac; print(json.dumps({'implicit': "
             "implicit.__version__, 'cornac': cornac.__version__}))")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                         env=pinned_env(1), timeout=300, check=False)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-6:])
        raise PeersUnavailable(f"implicit or cornac does not import in {venv}:\n{tail}\n{fix}")
    versions = json.loads(out.stdout.strip().splitlines()[-1])
    if versions != VERSIONS:
        raise PeersUnavailable(f"{venv} has {versions}, not {VERSIONS}. {fix}")
    return versions


# ---------------------------------------------------------------------------- the split
def prepared_benchmark(dataset: str, seed: int = SEED) -> Any:
    """m6bench's prepared ``dataset`` benchmark on the CPU, cut and seeded as
    ``m6bench run --dataset DATASET --seed SEED`` cuts it."""
    import m6bench

    return m6bench.load_benchmark(dataset=dataset, seed=seed)


# ---------------------------------------------------------------------------- m6bench side
def run_m6bench(model: str, dataset: str, overrides: Mapping[str, Any], folder: Path
                ) -> dict[str, Any]:
    """Train and evaluate m6bench's ``model`` through ``m6bench.run`` in this process: every
    ``fit_epoch`` timed, the training loop's wall (validation included) and the test
    evaluation timed, the starting factors of a factor model saved under ``folder/start``."""
    import time

    import numpy as np

    import m6bench
    from m6bench.runs import run as _run
    from m6bench.training import loop as _loop

    epoch_s: list[float] = []
    timed: dict[str, float] = {}
    original_train, original_evaluate = _run.train_model, _loop.evaluate_part

    def timed_training(recommender: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(recommender, "user_factors"):  # the peers start where m6bench starts
            (folder / "start").mkdir(parents=True, exist_ok=True)
            for name in ("user", "item"):
                factors = getattr(recommender, f"{name}_factors").detach().cpu().numpy()
                np.save(folder / "start" / f"{name}.npy", factors)
        fit_epoch = recommender.fit_epoch

        def timed_fit_epoch(*fit_args: Any, **fit_kwargs: Any) -> Any:
            begin = time.perf_counter()
            losses = fit_epoch(*fit_args, **fit_kwargs)
            epoch_s.append(time.perf_counter() - begin)
            return losses

        recommender.fit_epoch = timed_fit_epoch  # this instance, this run
        begin = time.perf_counter()
        try:
            return original_train(recommender, *args, **kwargs)
        finally:
            timed["fit_wall_s"] = time.perf_counter() - begin
            del recommender.fit_epoch

    def timed_evaluate(recommender: Any, bench: Any, part: str, **kwargs: Any) -> Any:
        begin = time.perf_counter()
        result = original_evaluate(recommender, bench, part, **kwargs)
        if part == "test":
            timed["eval_s"] = time.perf_counter() - begin
        return result

    _run.train_model, _loop.evaluate_part = timed_training, timed_evaluate
    try:
        record = m6bench.run("classic", model=model, dataset=dataset, seed=SEED,
                             overrides=dict(overrides), device="cpu",
                             ledger=folder / "ledger.jsonl")
    finally:
        _run.train_model, _loop.evaluate_part = original_train, original_evaluate
    return {"epochs": record["epochs"], "best_epoch": record["best_epoch"],
            "epoch_s": epoch_s, "fit_wall_s": timed["fit_wall_s"], "eval_s": timed["eval_s"],
            "ndcg10": record["metrics"]["test"]["ndcg@10"], "config": record["config"],
            "start_factors": str(folder / "start") if (folder / "start").exists() else None}


def peer_spec(peer: str, m6: Mapping[str, Any]) -> dict[str, Any]:
    """The driver's settings for ``peer``, matched to m6bench's resolved config ``m6``'s."""
    config = m6["config"]
    if peer == "implicit-als":
        # implicit's confidence is alpha * value: alpha = m6bench's 1 + alpha on binary data
        return {"settings": {"factors": config["dim"], "regularization": config["l2"],
                             "alpha": 1.0 + config["alpha"], "cg_steps": config["cg_steps"],
                             "random_state": SEED},
                "iterations": m6["epochs"], "snapshot_every": config["eval_every"],
                "start_factors": m6["start_factors"], "patience": config["patience"]}
    if peer == "implicit-bpr":  # the best validation NDCG@10 of 7 settings on ml-100k
        return {"settings": {"factors": config["dim"], "learning_rate": 0.01,
                             "regularization": 0.001, "random_state": SEED},
                "iterations": IMPLICIT_BPR_ITERATIONS,
                "snapshot_every": IMPLICIT_BPR_SNAPSHOT_EVERY, "patience": 4}
    if peer == "cornac-bpr":  # seeded, Cornac's BPR drops to one thread: seed=None
        return {"settings": {"k": config["dim"], "learning_rate": 0.01, "lambda_reg": 0.01,
                             "max_iter": 200, "seed": None}, "patience": 1}
    if peer == "cornac-ease":  # posB=True would clip negative weights, unlike m6bench's EASE
        return {"settings": {"lamb": config["l2"], "posB": False}, "patience": 1}
    raise KeyError(f"unknown peer {peer!r}; known: {sorted(PEER_NAMES)}")


# ---------------------------------------------------------------------------- children
def _worker(spec_path: str) -> int:
    """One fresh m6bench process: an m6bench run, a split export or a peer's scoring."""
    spec = json.loads(Path(spec_path).read_text())
    folder = Path(spec["folder"])
    if spec["task"] == "m6bench":
        result = run_m6bench(spec["model"], spec["dataset"], spec["overrides"], folder)
    elif spec["task"] == "export":
        result = {"split": str(prepared_benchmark(spec["dataset"]).export_split(folder))}
    else:
        peer = json.loads((Path(spec["peer_folder"]) / "result.json").read_text())
        result = score_snapshots(prepared_benchmark(spec["dataset"]), peer["snapshots"],
                                 spec["patience"])
    (folder / "m6bench.json").write_text(json.dumps(result, default=str))
    return 0


class Child:
    """Runs the children of one invocation under ``workdir``, each in a fresh process with
    the pinned threads; returns what each wrote, or raises with its log's tail."""

    def __init__(self, workdir: Path, venv: Path, threads: int, timeout: float,
                 verbose: bool) -> None:
        self.workdir, self.venv, self.threads = workdir, venv, threads
        self.timeout, self.verbose, self.count = timeout, verbose, 0

    def _run(self, python: str, script: Path, spec: dict[str, Any], label: str,
             result_name: str) -> dict[str, Any]:
        self.count += 1
        folder = self.workdir / f"{self.count:03d}-{label.replace(' ', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = {**spec, "folder": str(folder), "out": str(folder)}
        (folder / "spec.json").write_text(json.dumps(spec))
        cmd = [python, str(script), *(["--worker"] if script != DRIVER else []),
               str(folder / "spec.json")]
        log = folder / "output.log"
        code, peak, wall = run_child(cmd, env=pinned_env(self.threads, wait_policy=WAIT_POLICY),
                                     cwd=Path.cwd(), log_path=log, timeout=self.timeout,
                                     echo=f"[{label}]" if self.verbose else None)
        if code != 0 or not (folder / result_name).exists():
            raise RuntimeError(f"{label} exited with status {code}; log {log}:\n"
                               f"{log_tail(log)}")
        return {**json.loads((folder / result_name).read_text()), "peak_rss_mb": peak,
                "process_wall_s": wall, "folder": str(folder)}

    def m6bench(self, task: str, dataset: str, label: str, **spec: Any) -> dict[str, Any]:
        return self._run(sys.executable, Path(__file__).resolve(),
                         {"task": task, "dataset": dataset, **spec}, label, "m6bench.json")

    def peer(self, peer: str, dataset: str, split: str, m6: Mapping[str, Any]
             ) -> dict[str, Any]:
        spec = {"peer": peer, "split": split, "threads": self.threads,
                **peer_spec(peer, m6)}
        trained = self._run(str(venv_python(self.venv)), DRIVER, spec, f"{peer} {dataset}",
                            "result.json")
        scored = self.m6bench("score", dataset, f"score {peer} {dataset}",
                              peer_folder=trained["folder"], patience=spec["patience"])
        return {**trained, **{key: scored[key] for key in SCORED}}


# ---------------------------------------------------------------------------- figures
Runs = Mapping[str, Sequence[Mapping[str, Any]]]  # side -> its repetitions


def per_epoch(run: Mapping[str, Any]) -> float:
    return statistics.mean(run["epoch_s"])


def spread(runs: Sequence[Mapping[str, Any]], figure: Any) -> tuple[float, float] | None:
    """(min, median) of ``figure(run)`` over the repetitions; None without any."""
    values = [figure(run) for run in runs]
    return (min(values), statistics.median(values)) if values else None


def _cell(pair: tuple[float, float] | None, kind: str = "s") -> str:
    return "—" if pair is None else f"{fmt(pair[0], kind)} / {fmt(pair[1], kind)}"


def _median(pair: tuple[float, float] | None) -> float | None:
    return None if pair is None else pair[1]


def _quality(runs: Sequence[Mapping[str, Any]]) -> str:
    """Test NDCG@10 (its range over the repetitions) and the epoch it was picked at."""
    if not runs:
        return "—"
    low, high = min(r["ndcg10"] for r in runs), max(r["ndcg10"] for r in runs)
    text = f"{low:.4f}" if f"{low:.4f}" == f"{high:.4f}" else f"{low:.4f}-{high:.4f}"
    epochs = runs[0].get("epochs") or runs[0].get("stopped_epoch")
    return f"{text} (epoch {runs[0]['best_epoch']} of {epochs})"


def figure_rows(dataset: str, model: str, runs: Runs) -> list[list[str]]:
    """The table's rows of one (dataset, model): speed, quality and evaluation, m6bench
    beside each peer; ratios are m6bench / peer (below 1: m6bench faster)."""
    m6 = runs["m6bench"]
    rows: list[list[str]] = []
    name = {"ials": "iALS", "bpr-mf": "BPR", "ease": "EASE"}[model]
    speed = "fit s" if model == "ease" else "s/epoch"
    for peer in MODELS[model][1]:
        theirs, label = runs.get(peer, []), PEER_NAMES[peer]
        ours_speed, their_speed = spread(m6, per_epoch), spread(theirs, per_epoch)
        rows.append([f"{name} {speed}", dataset, _cell(ours_speed), label,
                     _cell(their_speed), fmt(ratio(_median(ours_speed), _median(their_speed)),
                                             "x")])
        rows.append([f"{name} test NDCG@10 (m6bench's evaluator)", dataset, _quality(m6),
                     label, _quality(theirs), ""])
        if model == "bpr-mf":
            ours, their = spread(m6, lambda r: r["fit_wall_s"]), spread(theirs,
                                                                       lambda r: r["fit_s"])
            rows.append([f"{name} training wall s (m6bench: to early stop, validation "
                         "included; peer: its fit)", dataset, _cell(ours), label, _cell(their),
                         fmt(ratio(_median(ours), _median(their)), "x")])
        ours, their = spread(m6, lambda r: r["eval_s"]), spread(theirs,
                                                               lambda r: r["own_eval_s"])
        rows.append([f"{name} test evaluation s (m6bench's evaluator / the peer's own)",
                     dataset, _cell(ours), label, _cell(their),
                     fmt(ratio(_median(ours), _median(their)), "x")])
    return rows


HEADERS = ["figure", "data", "m6bench (min / median)", "peer", "peer (min / median)",
           "m6bench / peer"]


def render_table(results: Mapping[tuple[str, str], Runs], tablefmt: str = "github") -> str:
    from tabulate import tabulate

    rows = [row for (dataset, model), runs in results.items()
            for row in figure_rows(dataset, model, runs)]
    return tabulate(rows, headers=HEADERS, tablefmt=tablefmt, disable_numparse=True)


# ---------------------------------------------------------------------------- checks
def _check(name: str, value: float | None, target: str, passed: bool) -> dict[str, Any]:
    return {"check": name, "value": value, "target": target,
            "passed": None if value is None else bool(passed)}


def _ndcg_check(label: str, m6: Sequence[Mapping[str, Any]],
                theirs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    gap = None
    if m6 and theirs:
        gap = abs(statistics.median(r["ndcg10"] for r in m6)
                  - statistics.median(r["ndcg10"] for r in theirs))
    return _check(f"{label}: |test NDCG@10 difference|", gap, f"<= {NDCG_TOLERANCE}",
                  gap is not None and gap <= NDCG_TOLERANCE)


def _bpr_checks(dataset: str, runs: Runs) -> list[dict[str, Any]]:
    m6, cornac, implicit = runs["m6bench"], runs.get("cornac-bpr", []), runs.get(
        "implicit-bpr", [])
    pairs = list(zip(m6, cornac))  # repetition r of each side: adjacent in time
    beaten = [ours["ndcg10"] >= theirs["ndcg10"] and ours["fit_wall_s"] < theirs["fit_s"]
              for ours, theirs in pairs]
    share = sum(beaten) / len(beaten) if beaten else None
    epoch = ratio(_median(spread(m6, per_epoch)), _median(spread(implicit, per_epoch)))
    return [
        _check(f"BPR {dataset}: share of repetitions where m6bench reaches >= Cornac's test "
               "NDCG@10 in less wall time than Cornac's fit", share, "1.0",
               share is not None and share == 1.0),
        _check(f"BPR {dataset}: m6bench s/epoch / implicit's", epoch,
               f"<= {BPR_EPOCH_FACTOR:g}", epoch is not None and epoch <= BPR_EPOCH_FACTOR),
    ]


def acceptance_checks(results: Mapping[tuple[str, str], Runs]) -> list[dict[str, Any]]:
    """Issue 17's criteria on the figures of the (dataset, model) pairs that ran."""
    checks: list[dict[str, Any]] = []
    for (dataset, model), runs in results.items():
        m6 = runs["m6bench"]
        if model == "ials":
            theirs = runs.get("implicit-als", [])
            value = ratio(_median(spread(m6, per_epoch)), _median(spread(theirs, per_epoch)))
            checks.append(_check(f"iALS {dataset}: m6bench s/iteration / implicit's", value,
                                 "<= 1", value is not None and value <= 1))
            checks.append(_ndcg_check(f"iALS {dataset}", m6, theirs))
        elif model == "bpr-mf" and dataset == "ml-1m":
            checks.extend(_bpr_checks(dataset, runs))
        elif model == "ease":
            theirs = runs.get("cornac-ease", [])
            checks.append(_ndcg_check(f"EASE {dataset}", m6, theirs))
            value = ratio(_median(spread(theirs, lambda r: r["own_eval_s"])),
                          _median(spread(m6, lambda r: r["eval_s"])))
            checks.append(_check(f"EASE {dataset}: Cornac's own test evaluation s / m6bench's",
                                 value, ">= 1", value is not None and value >= 1))
    return checks


# ---------------------------------------------------------------------------- the ledger
def side_figures(runs: Sequence[Mapping[str, Any]], wall: str, evaluation: str
                 ) -> dict[str, Any]:
    """One side's figures over its repetitions: (min, median) seconds per epoch, training
    wall (``wall``: m6bench's to early stop, a peer's fit) and test evaluation."""
    figures: dict[str, Any] = {"repetitions": len(runs)}
    for name, figure in (("epoch_s", per_epoch), ("wall_s", lambda r: r.get(wall)),
                         ("eval_s", lambda r: r.get(evaluation))):
        pair = spread([r for r in runs if figure(r) is not None], figure)
        figures[f"{name}_min"], figures[f"{name}_median"] = pair or (None, None)
    if runs:
        figures["best_epoch"] = runs[0]["best_epoch"]
        figures["epochs"] = runs[0].get("epochs") or runs[0].get("stopped_epoch")
    return figures


def ledger_lines(results: Mapping[tuple[str, str], Runs], context: Mapping[str, Any]
                 ) -> list[dict[str, Any]]:
    """The ``--ledger`` lines: one per (dataset, model), with m6bench's and each peer's
    figures, every side's median test NDCG@10 (``metrics.test``, by side) and the checks on
    that pair; ``context`` adds the command, code identity, machine and times."""
    lines = []
    for (dataset, model), runs in results.items():
        sides = {"m6bench": runs["m6bench"], **{PEER_NAMES[p]: runs.get(p, [])
                                                for p in MODELS[model][1]}}
        lines.append({
            "kind": "speed", "table": "peers", "status": "ok", "plugin": "classic",
            "model": model, "dataset": dataset,
            "m6bench": side_figures(runs["m6bench"], "fit_wall_s", "eval_s"),
            "peers": {PEER_NAMES[p]: side_figures(runs.get(p, []), "fit_s", "own_eval_s")
                      for p in MODELS[model][1]},
            "metrics": {"test": {f"{side} ndcg@10": statistics.median(r["ndcg10"] for r in rs)
                                 for side, rs in sides.items() if rs}},
            "checks": acceptance_checks({(dataset, model): runs}),
            **context})
    return lines


def ledger_context(args: argparse.Namespace, argv: Sequence[str], versions: Mapping[str, str],
                   started: datetime) -> dict[str, Any]:
    """What every ledger line names: the command, the code as the run starts (its end time
    is added when it ends), the machine and the versions."""
    from m6bench import load_catalog
    from m6bench.registry.provenance import code_identity

    plugin = load_catalog().plugins.get("classic")
    return {"command": ["python", "benchmarks/compare_peers.py", *argv],
            "code": code_identity(plugin.code() if plugin is not None else None),
            "versions": {**versions, **m6bench_versions()}, "machine": machine(),
            "settings": {"reps": args.reps, "threads": args.threads, "seed": SEED,
                         "wait_policy": WAIT_POLICY},
            "started_at": started.isoformat()}


def append_ledger(path: Path, lines: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(line, default=str) + "\n" for line in lines)


# ---------------------------------------------------------------------------- command line
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time m6bench's iALS, BPR and EASE beside implicit 0.7.3 and Cornac "
                    "3.0.1 on the same split, score every side with m6bench's evaluator, and "
                    "check issue 17's criteria.")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--reps", type=int, default=3,
                        help="interleaved repetitions per side, each in a fresh process")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads per side")
    parser.add_argument("--peers-venv", type=Path,
                        default=Path(os.environ.get(VENV_ENV) or DEFAULT_VENV))
    parser.add_argument("--setup", action="store_true",
                        help="build the peers' venv (unless it already works), then exit")
    parser.add_argument("--checks-only", action="store_true",
                        help="print only the PASS/FAIL checks (the table is still written)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds before a child process is killed")
    parser.add_argument("--workdir", type=Path, help="children's files (default: a temp folder)")
    parser.add_argument("--out", type=Path, help="PREFIX for PREFIX.md and PREFIX.json")
    parser.add_argument("--ledger", type=Path, metavar="PATH",
                        help="append one JSON line per (dataset, model) with every side's "
                             "figures and the checks (docs/results/speed-peers.jsonl)")
    parser.add_argument("-v", "--verbose", action="store_true", help="echo the children")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def compare(args: argparse.Namespace, child: Child) -> dict[tuple[str, str], dict[str, list]]:
    """Every (dataset, model): m6bench and its peers, ``args.reps`` times, interleaved."""
    results: dict[tuple[str, str], dict[str, list]] = {}
    for dataset in args.datasets:
        split = child.m6bench("export", dataset, f"export {dataset}")["split"]
        for rep in range(1, args.reps + 1):
            for model in args.models:
                overrides, peers = MODELS[model]
                runs = results.setdefault((dataset, model), {"m6bench": []})
                m6 = child.m6bench("m6bench", dataset, f"m6bench {model} {dataset} {rep}",
                                   model=model, overrides=overrides)
                runs["m6bench"].append(m6)
                _say(f"m6bench {model} {dataset} rep {rep}", m6)
                for peer in peers:
                    theirs = child.peer(peer, dataset, split, m6)
                    runs.setdefault(peer, []).append(theirs)
                    _say(f"{PEER_NAMES[peer]} {dataset} rep {rep}", theirs)
    return results


def _say(label: str, run: Mapping[str, Any]) -> None:
    print(f"  {label}: {fmt(per_epoch(run))} s/epoch, test NDCG@10 {_quality([run])}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)


def write_outputs(prefix: Path, report: Mapping[str, Any], table: str, checks: str) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    prefix.with_suffix(".md").write_text(f"{report['headline']}\n\n{table}\n\n```\n{checks}\n"
                                         "```\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return _worker(args.worker)
    if args.setup:
        try:
            print(f"{args.peers_venv} already works: {check_peers(args.peers_venv)}")
        except PeersUnavailable:
            build_venv(args.peers_venv, RECIPE)
            print(f"Built {args.peers_venv}: {check_peers(args.peers_venv)}")
        return 0
    try:
        versions = check_peers(args.peers_venv)
    except PeersUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started, load_start = datetime.now(timezone.utc), os.getloadavg()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="m6bench-vs-peers-"))
    context = (ledger_context(args, list(sys.argv[1:] if argv is None else argv), versions,
                              started) if args.ledger else {})
    print(f"m6bench vs implicit {versions['implicit']} and Cornac {versions['cornac']}: "
          f"{', '.join(args.models)} on {', '.join(args.datasets)}, {args.reps} repetitions, "
          f"{args.threads} threads per side; work folder {workdir}", flush=True)
    try:
        results = compare(args, Child(workdir, args.peers_venv, args.threads, args.timeout,
                                      args.verbose))
    except RuntimeError as exc:  # a child failed: its log's tail says why
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load = "/".join(f"{v:.2f}" for v in (*load_start, *os.getloadavg()))
    headline = (f"m6bench vs implicit {versions['implicit']} and Cornac {versions['cornac']}, "
                f"{args.reps} interleaved repetitions (min / median), {args.threads} threads "
                f"per side, OMP_WAIT_POLICY={WAIT_POLICY}; load average (1/5/15 min) at start "
                f"/ end {load}; {machine().get('cpu', '?')}")
    table, checks = render_table(results), acceptance_checks(results)
    checks_text = render_checks(checks)
    if not args.checks_only:
        print(f"\n{headline}\n\n{table}\n")
    print(f"Checks:\n{checks_text or '  (none apply to what ran)'}")
    report = {"started_at": started.isoformat(), "headline": headline, "checks": checks,
              "versions": {**versions, **m6bench_versions()}, "settings": vars(args),
              "results": [{"dataset": d, "model": m, "runs": runs}
                          for (d, m), runs in results.items()]}
    prefix = args.out or Path(".benchmarks", "compare_peers",
                              started.strftime("%Y%m%dT%H%M%SZ"))
    write_outputs(prefix, report, table, checks_text)
    print(f"\nWritten {prefix.with_suffix('.md')} and {prefix.with_suffix('.json')}")
    if args.ledger:
        context["ended_at"] = datetime.now(timezone.utc).isoformat()
        append_ledger(args.ledger, ledger_lines(results, context))
        print(f"Appended {len(results)} lines to {args.ledger}")
    return 1 if any(c["passed"] is False for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
