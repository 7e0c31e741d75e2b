"""The README's result tables, generated from the committed ledgers in ``docs/results/``.

No number in the README's result tables is typed by hand: each table is rendered from a
small ledger of ordinary m6bench records (``docs/results/<table>.jsonl``: the runs it
shows, each with its code identity and command, per-user values left out), of speed
records written by a benchmark script, or of a board run (``<table>.jsonl.gz``: its trials
and finals, the finals with the per-user values its significance marks need; the table is
the one ``m6bench leaderboard show --format markdown`` prints, with the anytime plot beside
it as ``<table>-anytime.svg``), and a test fails when the README or a plot differs from
what the ledgers render.  Every run record reproduces with ``m6bench reproduce RUN_ID
--ledger docs/results/<table>.jsonl --no-record`` at the commit its table names (``zcat``
a ``.gz`` ledger to a ``.jsonl`` first).

    python docs/results.py list                  # the tables, their ledgers, how old
    python docs/results.py make cold-items       # re-run what a table measures (minutes)
    python docs/results.py make --all            # every table (see the README for the time)
    python docs/results.py import official LEDGER  # keep a board run made elsewhere
    python docs/results.py write                 # render the tables (and plots) into README.md
    python docs/results.py check                 # exit 1 when README.md or a plot differs
    python docs/results.py stale                 # tables made by other code than this

``make`` runs each table's commands (``m6bench run`` lines, two at a time with one torch
thread each, a benchmark script, or a board's ``m6bench board run``) into a scratch
ledger, keeps the records the table shows, and replaces the table's ledger; then ``write``
renders it.  The real data must be where ``M6BENCH_DATA_DIR`` points.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, also loaded by tests
import results_board  # docs/results_board.py: the board tables
import results_m6_rec  # docs/results_m6_rec.py: the m6-rec tables' statistics and layout
import results_speed  # docs/results_speed.py: the tables of the peer comparisons' speed
from results_format import four, markdown, mean_sd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:{name} -->", "<!-- /results:{name} -->"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# ================================================================================ specs
@dataclass(frozen=True)
class Row:
    """One table row: the runs of one model configuration on one benchmark, by seed.

    ``sets`` are the ``--set`` flags of its command; the records it shows are those of
    ``plugin``/``model`` on ``benchmark`` whose resolved config has every ``where`` value
    (``sets`` plus what tells it apart from the table's other rows).
    """

    label: str
    plugin: str
    model: str
    benchmark: str
    seeds: tuple[int, ...] = (0,)
    sets: Mapping[str, Any] = field(default_factory=dict)
    where: Mapping[str, Any] = field(default_factory=dict)

    def commands(self) -> list[list[str]]:
        sets = [part for key, value in self.sets.items()
                for part in ("--set", f"{key}={_toml(value)}")]
        return [["m6bench", "run", "--plugin", self.plugin, "--model", self.model,
                 "--benchmark", self.benchmark, "--seed", str(seed), "--device", "cpu",
                 "--quiet", *sets] for seed in self.seeds]

    def matches(self, record: Mapping[str, Any], seed: int) -> bool:
        config = record.get("config") or {}
        return (record.get("status") == "ok" and record.get("plugin", {}).get("name")
                == self.plugin and record.get("model") == self.model
                and record.get("benchmark", {}).get("name") == self.benchmark
                and record.get("seed") == seed
                and all(config.get(k) == v for k, v in {**self.sets, **self.where}.items()))


@dataclass(frozen=True)
class Table:
    name: str
    title: str  # what the table shows, for `list`
    render: Callable[[Table, list[dict[str, Any]]], str]
    rows: tuple[Row, ...] = ()
    script: tuple[str, ...] = ()  # a benchmark script that writes the ledger itself
    quiet: bool = False  # a speed table: measured on an otherwise idle machine
    board: str = ""  # a board file (from the checkout's root) whose run the table shows
    benchmark: str = ""  # the one benchmark of ``board`` it shows

    @property
    def ledger(self) -> Path:
        # a board's finals keep their per-user values (the significance marks): gzipped
        return RESULTS / f"{self.name}.jsonl{'.gz' if self.board else ''}"

    @property
    def plot(self) -> Path | None:
        """The anytime plot a board table shows beside it (an SVG file README links)."""
        return RESULTS / f"{self.name}-anytime.svg" if self.board else None

    def commands(self) -> list[list[str]]:
        if self.board:
            return [["m6bench", "board", "run", self.board, "--benchmark", self.benchmark,
                     "--device", "cpu", "--quiet"]]
        if self.script:
            return [[*self.script, "--ledger", str(self.ledger.relative_to(ROOT))]]
        return [command for row in self.rows for command in row.commands()]

    def record(self, records: Sequence[Mapping[str, Any]], row: Row,
               seed: int) -> dict[str, Any] | None:
        """The latest record of ``row`` and ``seed``."""
        found = [r for r in records if row.matches(r, seed)]
        return dict(found[-1]) if found else None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


# ============================================================================== helpers
def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_ledger(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """``records`` as ``path`` (gzipped when it ends in .gz: with no timestamp in the
    header, so the same records make the same bytes), replaced in one step."""
    data = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n"
                   for r in records).encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def _metric(record: Mapping[str, Any] | None, name: str) -> float | None:
    if record is None:
        return None
    value = ((record.get("metrics") or {}).get("test") or {}).get(name)
    return None if value is None else float(value)


def _commits(records: Sequence[Mapping[str, Any]]) -> str:
    """The harness commits that made ``records``, in order of appearance: `abc1234567`."""
    commits = []
    for record in records:
        git = ((record.get("code") or {}).get("harness") or {}).get("git") or {}
        label = (git.get("commit") or "unknown")[:10] + (" (dirty)" if git.get("dirty") else "")
        if label not in commits:
            commits.append(label)
    return ", ".join(f"`{c}`" for c in commits)


def _wall(records: Sequence[Mapping[str, Any]]) -> tuple[str, float]:
    """The first record's start and the minutes from it to the last record's end."""
    started = min(str(r.get("started_at")) for r in records)
    ended = max(str(r.get("ended_at") or r.get("started_at")) for r in records)
    seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
    return started, seconds / 60


def provenance(records: Sequence[Mapping[str, Any]], table: Table) -> str:
    """The line under a table: which ledger, commit(s), date, and how to make it again."""
    if not records:
        return f"_No records yet: `python docs/results.py make {table.name}` makes them._"
    if table.board:
        return board_provenance(records, table)
    started, minutes = _wall(records)
    return (f"_Generated from `docs/results/{table.ledger.name}` ({len(records)} records) made "
            f"at commit {_commits(records)} on {started[:10]} in {minutes:.0f} min on 2 CPU "
            f"cores; `python docs/results.py make {table.name}` makes it again._")


def board_provenance(records: Sequence[Mapping[str, Any]], table: Table) -> str:
    """A board table's line: its ledger, the board and commit, the run's wall time (from
    the records' timestamps) and the machine it shared."""
    started, minutes = _wall(records)
    kinds = [r.get("kind") for r in records]
    cores = sorted({str((r.get("hardware") or {}).get("cores")) for r in records})
    return (f"_Generated from `docs/results/{table.ledger.name}` ({kinds.count('trial')} "
            f"trials and {kinds.count('final')} finals) of `m6bench board run {table.board} "
            f"--benchmark {table.benchmark}` at commit {_commits(records)} on {started[:10]}: "
            f"{minutes:.0f} min wall time, from the first record's start to the last one's "
            f"end, on {'/'.join(cores)} CPU cores, one process for {table.benchmark}, shared "
            f"with other work; `python docs/results.py make {table.name}` makes it again._")


# ============================================================================ renderers
def render_seed_table(metric: str, seeds: Sequence[int]) -> Callable[[Table, list], str]:
    """Rows x seeds of one test metric, with mean ± sd."""
    def render(table: Table, records: list[dict[str, Any]]) -> str:
        body = []
        for row in table.rows:
            values = [_metric(table.record(records, row, s), metric) for s in seeds]
            body.append([row.label, *(four(v) for v in values), mean_sd(values)])
        name = metric.replace("ndcg", "NDCG").replace("recall", "Recall")
        headers = ["model", *(f"{name} seed {s}" for s in seeds), "mean ± sd"]
        return markdown(headers, body)
    return render


def render_models(table: Table, records: list[dict[str, Any]]) -> str:
    body = []
    for row in table.rows:
        record = table.record(records, row, 0)
        body.append([row.label, four(_metric(record, "ndcg@10")),
                     four(_metric(record, "recall@10")), four(_metric(record, "rmse")),
                     "" if record is None else str(record.get("epochs", ""))])
    return markdown(["model", "NDCG@10", "Recall@10", "RMSE", "epochs"], body)


def render_gnn_vs_bpr(table: Table, records: list[dict[str, Any]]) -> str:
    seeds = table.rows[0].seeds
    body = []
    for row in table.rows:
        for metric, name in (("ndcg@10", "NDCG@10"), ("recall@10", "Recall@10")):
            values = [_metric(table.record(records, row, s), metric) for s in seeds]
            body.append([row.label, name, *(four(v) for v in values), mean_sd(values)])
    return markdown(["model", "metric", *(f"seed {s}" for s in seeds), "mean ± sd"], body)


def render_cold_items(table: Table, records: list[dict[str, Any]]) -> str:
    seeds = table.rows[0].seeds
    text = render_seed_table("ndcg@10", seeds)(table, records)
    on, off = ([_metric(table.record(records, table.rows[i], s), "ndcg@10") for s in seeds]
               for i in (0, 2))
    pairs = [(a, b) for a, b in zip(on, off) if a is not None and b is not None]
    if len(pairs) >= 2:
        wins = sum(a > b for a, b in pairs)
        p = stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue
        text += (f"\n\nText on beats text off on {wins} of {len(pairs)} seeds (paired t-test "
                 f"over the seeds, p = {p:.2f}).")
    return text


def render_m6_rec_cold(table: Table, records: list[dict[str, Any]]) -> str:
    fusion = TABLES["cold-items"]  # its first row: text on, the m6-fusion defaults
    reference = results_m6_rec.line(fusion, read_ledger(fusion.ledger), fusion.rows[0], _metric)
    lines = [results_m6_rec.line(table, records, row, _metric) for row in table.rows]
    return results_m6_rec.cold_markdown(lines, reference, table.rows[0].seeds)


def render_m6_rec_xdomain(table: Table, records: list[dict[str, Any]]) -> str:
    tuned, zero, pop = (results_m6_rec.line(table, records, row, _metric) for row in table.rows)
    pct = TABLES["xdomain"]  # its first row: pct-cf's transfer from ML-1M
    transfer = results_m6_rec.line(pct, read_ledger(pct.ledger), pct.rows[0], _metric)
    return (results_m6_rec.seeds_markdown([tuned, zero, pop], table.rows[0].seeds, costs=True)
            + "\n\n" + results_m6_rec.transfer_sentence(tuned, transfer, pop))


def board_data(table: Table, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return results_board.leaderboard(ROOT / table.board, records,
                                     f"docs/results/{table.ledger.name}")


def render_board(table: Table, records: list[dict[str, Any]]) -> str:
    assert table.plot is not None
    return results_board.markdown(board_data(table, records), table.benchmark,
                                  f"docs/results/{table.plot.name}")


def anytime_svg(table: Table, records: list[dict[str, Any]]) -> str:
    return results_board.anytime_svg(board_data(table, records), table.benchmark)


SEEDS3, SEEDS5 = (0, 1, 2), (0, 1, 2, 3, 4)
XDOMAIN = {"lambda": 1.0, "dropout_weight": 0.0, "user_items": 1.0,
           "domain_sampling": "balanced", "epoch_interactions": 160000}
BUILT_IN = (("pop", "classic", "pop"), ("itemknn", "classic", "itemknn"),
            ("ease", "classic", "ease"), ("ials", "classic", "ials"),
            ("bpr-mf", "classic", "bpr-mf"), ("gnn-mf", "gnn-mf", "gnn-mf"),
            ("neumf", "deep", "neumf"), ("deepfm", "deep", "deepfm"),
            ("wide-deep", "deep", "wide-deep"), ("mult-vae", "deep", "mult-vae"),
            ("m6-fusion", "m6-fusion", "m6-fusion"))

TABLES: dict[str, Table] = {t.name: t for t in (
    Table("models", "every built-in model's defaults on ml-100k, seed 0", render_models,
          rows=tuple(Row(label, plugin, model, "ml-100k") for label, plugin, model in BUILT_IN)),
    Table("gnn-vs-bpr", "gnn-mf against BPR-MF on ml-100k, 3 seeds", render_gnn_vs_bpr,
          rows=(Row("gnn-mf (2 layers)", "gnn-mf", "gnn-mf", "ml-100k", SEEDS3),
                Row("bpr-mf", "classic", "bpr-mf", "ml-100k", SEEDS3))),
    Table("cold-items", "m6-fusion's text on cold items, 5 seeds", render_cold_items,
          rows=(Row("m6-fusion, text on (text dropout 0.5)", "m6-fusion", "m6-fusion",
                    "ml-100k-cold-items", SEEDS5, where={"text": True, "text_dropout": 0.5}),
                Row("m6-fusion, text on, no text dropout", "m6-fusion", "m6-fusion",
                    "ml-100k-cold-items", SEEDS5, sets={"text_dropout": 0.0},
                    where={"text": True}),
                Row("m6-fusion, text off", "m6-fusion", "m6-fusion", "ml-100k-cold-items",
                    SEEDS5, sets={"text": False}),
                Row("pop (a seeded random order: no cold item has a count)", "classic",
                    "pop", "ml-100k-cold-items", SEEDS5))),
    Table("xdomain", "pct-cf's transfer from ML-1M to ML-100K, 3 seeds",
          render_seed_table("ndcg@10", SEEDS3),
          rows=(Row("pct-cf, ML-1M + ML-100K", "pct-cf", "pct-cf", "ml-xdomain", SEEDS3,
                    sets=XDOMAIN),
                Row("pct-cf, same config, ML-100K alone", "pct-cf", "pct-cf",
                    "ml-xdomain-target-only", SEEDS3, sets=XDOMAIN),
                Row("bpr-mf defaults, ML-100K alone", "classic", "bpr-mf",
                    "ml-xdomain-target-only", SEEDS3))),
    Table("m6-rec-cold", "m6-rec on cold items against m6-fusion, 5 seeds", render_m6_rec_cold,
          rows=(Row("m6-rec-tuned (defaults: residual adapters)", "m6-rec", "m6-rec-tuned",
                    "ml-100k-cold-items", SEEDS5, where={"tuning": "adapter"}),
                Row("m6-rec-zero (defaults)", "m6-rec", "m6-rec-zero", "ml-100k-cold-items",
                    SEEDS5))),
    Table("m6-rec-xdomain", "m6-rec tuned on ML-1M, zero-shot on ML-100K, 3 seeds",
          render_m6_rec_xdomain,
          rows=(Row("m6-rec-tuned (residual adapters), tuned on ML-1M", "m6-rec",
                    "m6-rec-tuned", "ml-xdomain-target-only", SEEDS3,
                    sets={"tune_dataset": "ml-1m"}, where={"tuning": "adapter"}),
                Row("m6-rec-zero (prior: ML-100K's own training counts)", "m6-rec",
                    "m6-rec-zero", "ml-xdomain-target-only", SEEDS3),
                Row("pop, ML-100K alone", "classic", "pop", "ml-xdomain-target-only",
                    SEEDS3))),
    Table("speed-recbole", "speed beside RecBole 1.2.1 (compare_recbole.py)",
          results_speed.render_speed,
          script=("python", "benchmarks/compare_recbole.py", "--datasets", "ml-100k", "ml-1m",
                  "--models", "bpr-mf", "gnn-mf", "ease", "--epochs", "bpr-mf@ml-1m=40",
                  "--epochs", "gnn-mf@ml-1m=3", "--check"), quiet=True),
    Table("speed-peers", "speed beside implicit 0.7.3 and Cornac 3.0.1 (compare_peers.py)",
          results_speed.render_speed_peers,
          script=("python", "benchmarks/compare_peers.py", "--datasets", "ml-100k", "ml-1m",
                  "--models", "ials", "bpr-mf", "ease", "--checks-only"), quiet=True),
    Table("official", "the official board on ml-100k (leaderboard/board.toml)", render_board,
          board="leaderboard/board.toml", benchmark="ml-100k"),
)}


# ============================================================================ rendering
def block(table: Table, records: list[dict[str, Any]] | None = None) -> str:
    records = read_ledger(table.ledger) if records is None else records
    body = table.render(table, records) if records else ""
    parts = [BEGIN.format(name=table.name)]
    if body:
        parts.append(body)
    parts += [provenance(records, table), END.format(name=table.name)]
    return "\n\n".join(parts)


def _block_pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(BEGIN.format(name=name)) + r".*?"
                      + re.escape(END.format(name=name)), re.DOTALL)


def rendered_readme(text: str) -> str:
    """``text`` (the README) with every table block rendered from its ledger."""
    for table in TABLES.values():
        pattern = _block_pattern(table.name)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no block {BEGIN.format(name=table.name)} ... "
                             f"{END.format(name=table.name)}; add one where the table goes.")
        text = pattern.sub(lambda _m, t=table: block(t), text)
    return text


def rendered_plots() -> dict[Path, str]:
    """Every plot file a table shows, by path, rendered from its ledger."""
    return {table.plot: anytime_svg(table, read_ledger(table.ledger))
            for table in TABLES.values() if table.plot is not None}


def generated_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the README's generated blocks."""
    return [m.span() for t in TABLES.values() for m in _block_pattern(t.name).finditer(text)]


# ================================================================================ make
def _run(command: list[str], ledger: Path, log: Path) -> tuple[list[str], int, float]:
    env = {**os.environ, **SINGLE_THREAD, "M6BENCH_LEDGER": str(ledger)}
    started = time.perf_counter()
    with log.open("a") as out:
        out.write("$ " + shlex.join(command) + "\n")
        out.flush()
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False).returncode
    return command, code, time.perf_counter() - started


def make(table: Table, jobs: int = 2) -> int:
    """Re-make ``table``'s ledger: run its commands, keep the records it shows."""
    if not os.environ.get("M6BENCH_DATA_DIR"):
        print("M6BENCH_DATA_DIR is not set: point it at the MovieLens data.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    if table.script:  # the script appends its own speed records; a new table starts empty
        for old in (table.ledger, table.ledger.with_name(f"{table.name}-runs.jsonl")):
            old.unlink(missing_ok=True)
        command = table.commands()[0]
        command[0] = sys.executable if command[0] == "python" else command[0]
        code = subprocess.run(command, cwd=ROOT, check=False).returncode
        print(f"{table.name}: {time.perf_counter() - started:.0f} s, exit {code}")
        return code
    with tempfile.TemporaryDirectory(prefix=f"m6bench-docs-{table.name}-") as scratch_dir:
        scratch = Path(scratch_dir) / "ledger.jsonl"
        log = Path(scratch_dir) / "make.log"
        commands = table.commands()
        # the first run fills the data caches alone; the rest share them
        first = _run(commands[0], scratch, log)
        results = [first]
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            for done in pool.map(lambda c: _run(c, scratch, log), commands[1:]):
                results.append(done)
                print(f"  {done[2]:6.0f} s  exit {done[1]}  {shlex.join(done[0])}", flush=True)
        failed = sum(code != 0 for _, code, _ in results)
        records = read_ledger(scratch)
        kept = (results_board.keep(table.benchmark, records) if table.board
                else row_records(table, records))
        if not table.board:  # a row or seed without its record
            failed += sum(len(row.seeds) for row in table.rows) - len(kept)
        if failed:
            print(f"{table.name}: {failed} runs failed; the ledger is unchanged. Log:\n"
                  + log.read_text()[-4000:], file=sys.stderr)
            return 1
        write_ledger(table.ledger, kept)
    print(f"{table.name}: {len(kept)} records in {time.perf_counter() - started:.0f} s")
    return 0


def row_records(table: Table, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The record of each row and seed of ``table``, without per-user values (a README
    table needs none; that keeps the file small)."""
    kept = []
    for row in table.rows:
        for seed in row.seeds:
            record = table.record(records, row, seed)
            if record is None:
                print(f"  no ok record for {row.label}, seed {seed}", file=sys.stderr)
                continue
            record.pop("per_user", None)
            kept.append(record)
    return kept


def import_board(table: Table, ledger: Path) -> int:
    """Keep ``table``'s records of a board run made elsewhere (its ledger) as the table's."""
    from m6bench_leaderboard import read_records

    if not ledger.is_file():
        print(f"{ledger} does not exist: pass the ledger the board run wrote (its --ledger)",
              file=sys.stderr)
        return 2
    loaded = read_records(ledger)  # skips a line a running board is still writing
    kept = results_board.keep(table.benchmark, loaded.records)
    if not kept:
        print(f"{ledger} has no trial or final of {table.benchmark}: is it the ledger of "
              f"`m6bench board run {table.board}`?", file=sys.stderr)
        return 1
    write_ledger(table.ledger, kept)
    print(f"{table.name}: {len(kept)} records of {ledger} kept in "
          f"{table.ledger.relative_to(ROOT)} ({table.ledger.stat().st_size:,} bytes)"
          + (f"; {len(loaded.skipped)} lines skipped" if loaded.skipped else ""))
    return 0


# ================================================================================ stale
def stale_tables() -> list[str]:
    """Tables whose records name other harness or plugin source than is installed."""
    from m6bench import load_catalog
    from m6bench.registry.provenance import harness_identity

    catalog = load_catalog()
    harness = harness_identity()["sha256"]
    out = []
    for table in TABLES.values():
        records = read_ledger(table.ledger)
        if table.script:
            records = read_ledger(table.ledger.with_name(f"{table.name}-runs.jsonl"))
        changed = set()
        for record in records:
            code = record.get("code") or {}
            plugin = (record.get("plugin") or {}).get("name")
            info = catalog.plugins.get(plugin)
            if (code.get("harness") or {}).get("sha256") != harness:
                changed.add("harness")
            if info is None or (code.get("plugin") or {}).get("sha256") != info.code()["sha256"]:
                changed.add(f"plugin {plugin}")
        if changed or not records:
            out.append(f"{table.name}: " + (", ".join(sorted(changed)) + " changed"
                                            if records else "no records"))
    return out


# ========================================================================== entry point
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["list", "make", "import", "write", "check", "stale"])
    parser.add_argument("tables", nargs="*", help="tables to make (see `list`); for import: "
                        "a board table and the ledger of its run")
    parser.add_argument("--all", action="store_true", help="make every table")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    args = parser.parse_args(argv)
    if args.action == "list":
        for table in TABLES.values():
            records = read_ledger(table.ledger)
            print(f"{table.name:14} {len(records):3} records  {table.title}")
        return 0
    if args.action == "make":
        unknown = sorted(set(args.tables) - set(TABLES))
        if unknown or not (args.tables or args.all):
            print(f"make which tables? choose from {', '.join(TABLES)} or --all"
                  + (f" (unknown: {', '.join(unknown)})" if unknown else ""), file=sys.stderr)
            return 2
        chosen = list(TABLES) if args.all else args.tables
        # the speed tables last, when nothing else of ours uses the CPU
        chosen.sort(key=lambda name: TABLES[name].quiet)
        return max(make(TABLES[name], args.jobs) for name in chosen)
    if args.action == "import":
        boards = [name for name, table in TABLES.items() if table.board]
        if len(args.tables) != 2 or args.tables[0] not in boards:
            print(f"usage: python docs/results.py import TABLE LEDGER, TABLE one of "
                  f"{', '.join(boards)}", file=sys.stderr)
            return 2
        return import_board(TABLES[args.tables[0]], Path(args.tables[1]))
    if args.action == "stale":
        found = stale_tables()
        print("\n".join(found) if found else "every table was made by the installed code")
        return 1 if found else 0
    return write_or_check(args.action == "write")


def write_or_check(write: bool) -> int:
    """Render the README's tables and the plot files; write them, or compare (exit 1)."""
    text = README.read_text()
    rendered = rendered_readme(text)
    plots = rendered_plots()
    if write:
        README.write_text(rendered)
        for path, svg in plots.items():
            path.write_text(svg, encoding="utf-8")
        print("README.md tables and plots rendered from docs/results/")
        return 0
    differ = [str(path.relative_to(ROOT)) for path, svg in plots.items()
              if not path.exists() or path.read_text(encoding="utf-8") != svg]
    if rendered != text:
        differ.insert(0, "README.md")
    if differ:
        print(f"{', '.join(differ)} differ from what docs/results/ renders: run "
              "`python docs/results.py write` (and commit the ledgers).", file=sys.stderr)
        return 1
    print("README.md's result tables and plots match docs/results/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
