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
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling helper modules
from _peers_common import (
    default_threads,
    log_tail,
    m6bench_versions,
    machine,
    render_checks,
    run_child,
)
from _peers_common import fmt as _fmt
from _peers_common import ratio as _ratio
from _recbole_sides import (  # noqa: F401 (DRIVER, run_m6bench_side: the tests reach them here)
    DATA_FOLDERS,
    DEFAULT_EPOCHS,
    DEFAULT_PATIENCE,
    DEFAULT_VENV,
    DRIVER,
    PAIRS,
    RECBOLE_VERSION,
    VENV_ENV,
    DataUnavailable,
    Pair,
    RecBoleUnavailable,
    Side,
    check_recbole,
    data_dir,
    epochs_cap,
    link_recbole_data,
    m6bench_config,
    m6bench_overrides,
    recbole_config,
    recbole_env,
    run_m6bench_side,
    run_recbole_side,
    setup_recbole,
)
from _speed_ledger import append_line, code_identity, copy_run_record, runs_ledger

SPEEDUP_EVAL, SPEEDUP_EPOCH, NDCG_TOLERANCE, MATMUL_FACTOR = 5.0, 3.0, 0.03, 3.0
PEER = f"RecBole {RECBOLE_VERSION}"
SCRIPT = "benchmarks/compare_recbole.py"  # as the ledger's commands name it


# ---------------------------------------------------------------------------- m6bench child
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
def script_command(argv: Sequence[str]) -> list[str]:
    """``python benchmarks/compare_recbole.py ARGS...`` as a list, secrets redacted."""
    from m6bench_leaderboard import redact

    return redact(["python", SCRIPT, *argv])



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
        run_id = copy_run_record(row.m6bench.run_id, row.m6bench.run_ledger, runs_ledger(path))
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
    if args.setup_recbole:
        return _setup(args.recbole_venv)
    command = script_command(list(sys.argv[1:] if argv is None else argv))
    started_at = datetime.now(timezone.utc)
    load_start = os.getloadavg()
    recbole_versions: dict[str, str] = {}
    try:
        if not args.skip_recbole:
            recbole_versions = check_recbole(args.recbole_venv)
        data = data_dir(args.data_dir)
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="m6bench-vs-recbole-"))
        data_root = link_recbole_data(data, args.datasets, workdir / "data")
    except (RecBoleUnavailable, DataUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = _settings(args)
    versions = {"recbole_venv": recbole_versions, **m6bench_versions()}
    print(f"m6bench vs RecBole {recbole_versions.get('recbole', '(skipped)')}: "
          f"{', '.join(args.models)} on {', '.join(args.datasets)}; {args.threads} threads; "
          f"load average {load_start[0]:.2f}; work folder {workdir}", flush=True)
    write_row = _row_writer(args, settings=settings, versions=versions, command=command)
    rows = [row for dataset in args.datasets for name in args.models
            for row in [_compare_row(args, name, dataset, data=data, data_root=data_root,
                                     workdir=workdir, write_row=write_row)]]
    report = {
        "started_at": started_at.isoformat(),
        "machine": {**machine(), "loadavg_start": load_start, "loadavg_end": os.getloadavg()},
        "versions": versions,
        "settings": settings,
        "rows": [row.to_dict() for row in rows],
        "checks": acceptance_checks(rows),
    }
    _print_summary(rows, report, recbole_versions, args.threads)
    prefix = args.out or Path(".benchmarks", "compare_recbole",
                              started_at.strftime("%Y%m%dT%H%M%SZ"))
    write_outputs(prefix, report, render_table(rows, "github"), render_checks(report["checks"]))
    print(f"\nWritten {prefix.with_suffix('.json')} and {prefix.with_suffix('.md')}")
    if args.ledger:
        print(f"Appended {len(rows)} line(s) to {args.ledger} and the m6bench run records to "
              f"{runs_ledger(args.ledger)}")
    if args.check and any(c["passed"] is False for c in report["checks"]):
        return 1
    return 0


def _setup(venv: Path) -> int:
    try:
        print(f"RecBole venv {venv} already works: {check_recbole(venv)}")
    except RecBoleUnavailable:
        setup_recbole(venv)
        print(f"Built {venv}: {check_recbole(venv)}")
    return 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    caps = _epoch_caps(args.epochs)
    return {"models": args.models, "datasets": args.datasets, "threads": args.threads,
            "epochs": {f"{m}@{d}": epochs_cap(caps, m, d) for d in args.datasets
                       for m in args.models if not PAIRS[m].closed_form},
            "patience": args.patience, "seed": args.seed,
            "eval_repeats": args.eval_repeats, "device": args.device,
            "m6bench_set": args.m6bench_set, "recbole_set": args.recbole_set}


def _row_writer(args: argparse.Namespace, **context: Any):
    """What to do with each finished row: append it to ``--ledger`` when one is given."""
    codes: dict[str, dict[str, Any]] = {}
    if args.ledger:  # the code as it is when this invocation starts, as run records name it
        from m6bench import load_catalog

        catalog = load_catalog()
        codes = {p: code_identity(p, catalog) for p in {PAIRS[m].plugin for m in args.models}}
    invocation = uuid.uuid4().hex

    def write(row: Row, row_started: datetime, row_load: tuple[float, ...]) -> None:
        if args.ledger:
            write_ledger_row(
                args.ledger, row, machine_info={**machine(), "loadavg_start": row_load,
                                                "loadavg_end": os.getloadavg()},
                code=codes[row.pair.plugin], started_at=row_started.isoformat(),
                ended_at=datetime.now(timezone.utc).isoformat(), invocation=invocation,
                **context)

    return write


def _compare_row(args: argparse.Namespace, name: str, dataset: str, *, data: Path,
                 data_root: Path, workdir: Path, write_row) -> Row:
    """Both sides of one (model, dataset): m6bench, then RecBole with m6bench's sizes."""
    pair = PAIRS[name]
    epochs = epochs_cap(_epoch_caps(args.epochs), name, dataset)
    row_started, row_load = datetime.now(timezone.utc), os.getloadavg()
    m6_sets = _scoped(args.m6bench_set, "--m6bench-set")
    overrides = {**m6_sets.get("*", {}), **m6_sets.get(name, {})}
    try:
        m6_config = m6bench_config(pair, overrides)
    except Exception as exc:  # a missing plugin or a bad key: say so, go on
        reason = f"m6bench model {name!r} (plugin {pair.plugin!r}) is not available: {exc}"
        print(f"skip {name} on {dataset}: {reason}", flush=True)
        row = Row(pair, dataset, Side("m6bench", name, dataset, "unavailable", reason),
                  Side("recbole", pair.recbole, dataset, "skipped",
                       "its m6bench counterpart is not available"))
        write_row(row, row_started, row_load)
        return row
    print(f"-> {name} on {dataset} (epochs cap {1 if pair.closed_form else epochs}, "
          f"load {os.getloadavg()[0]:.2f})", flush=True)
    m6 = run_m6bench_child(pair, dataset, epochs=epochs, patience=args.patience,
                           seed=args.seed, threads=args.threads, overrides=overrides,
                           eval_repeats=args.eval_repeats, workdir=workdir, data=data,
                           timeout=args.timeout, device=args.device, echo=args.verbose)
    _report_side(m6)
    if args.skip_recbole:
        rb = Side("recbole", pair.recbole, dataset, "skipped", "--skip-recbole")
    else:
        rb_sets = _scoped(args.recbole_set, "--recbole-set")
        config = recbole_config(
            pair, m6_config, data_root=data_root, checkpoint_dir=workdir / "checkpoints",
            seed=args.seed, epochs=epochs, patience=args.patience, device=args.device,
            extra={**rb_sets.get("*", {}), **rb_sets.get(pair.recbole, {})})
        rb = run_recbole_side(pair, dataset, config, venv=args.recbole_venv,
                              threads=args.threads, eval_repeats=args.eval_repeats,
                              workdir=workdir, timeout=args.timeout, echo=args.verbose)
        _report_side(rb)
    row = Row(pair, dataset, m6, rb)
    write_row(row, row_started, row_load)
    return row


def _print_summary(rows: Sequence[Row], report: Mapping[str, Any],
                   recbole_versions: Mapping[str, str], threads: int) -> None:
    load = {when: "/".join(f"{v:.2f}" for v in report["machine"][f"loadavg_{when}"])
            for when in ("start", "end")}
    print()
    print(f"m6bench vs RecBole {recbole_versions.get('recbole', '(skipped)')} — "
          f"{threads} torch threads per side; load average (1/5/15 min) at start "
          f"{load['start']}, at end {load['end']}")
    print("Speed-ups (x) are RecBole / m6bench; N@10 m6/rb is m6bench's NDCG@10 over RecBole's.")
    print(render_table(rows))
    print()
    print("Acceptance checks:")
    print(render_checks(report["checks"]) or "  (none apply to the models and datasets run)")
    for row in rows:
        for side in (row.m6bench, row.recbole):
            if side.status in ("failed", "unavailable"):
                print(f"\n{side.system} {side.model} {side.dataset} {side.status}: {side.error}")


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
