"""The README's result tables are rendered from committed ledgers, never typed by hand."""

from __future__ import annotations

import gzip
import json
import math
import re
import statistics
from datetime import datetime
from pathlib import Path

import pytest
from scipy import stats

from m6bench_leaderboard import load_board

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def results(script_module):
    with script_module(ROOT / "docs" / "results.py", "docs_results") as module:
        yield module


def test_the_readme_tables_are_what_the_ledgers_render(results):
    text = README.read_text()
    assert results.rendered_readme(text) == text, (
        "README.md's result tables differ from docs/results/: run `python docs/results.py "
        "write` and commit")


def test_the_plots_are_what_the_ledgers_render(results):
    plots = results.rendered_plots()
    assert set(plots) == {ROOT / "docs" / "results" / "official-anytime.svg"}
    for path, svg in plots.items():
        assert path.exists() and path.read_text(encoding="utf-8") == svg, (
            f"{path.name} differs from what its ledger renders: run `python docs/results.py "
            "write` and commit")
        assert f"](docs/results/{path.name})" in README.read_text(), "README shows it"


def _result_rows(text: str) -> list[tuple[int, str]]:
    """Table rows (with their offsets) that hold a measured number: 0.1234, 12.3x, 0.041."""
    rows, offset = [], 0
    for line in text.splitlines(keepends=True):
        if line.startswith("|") and re.search(r"\d\.\d{3}|\d(\.\d+)?x\b", line):
            rows.append((offset, line))
        offset += len(line)
    return rows


def test_every_number_in_a_result_table_comes_from_a_generated_block(results):
    text = README.read_text()
    spans = results.generated_spans(text)
    assert len(spans) == len(results.TABLES)
    outside = [line.strip() for offset, line in _result_rows(text)
               if not any(start <= offset < end for start, end in spans)]
    assert not outside, f"result rows typed by hand, outside a generated block: {outside}"


def test_every_number_of_a_block_is_in_its_ledger(results):
    """Each 4-decimal value a block shows is a metric of a record in that table's ledger."""
    for table in results.TABLES.values():
        if table.board:  # every number is a mean over seeds: the test below
            continue
        records = results.read_ledger(table.ledger)
        values = set()
        for record in records:
            peers = record.get("peers") if isinstance(record.get("peers"), dict) else {}
            sides = [record.get("m6bench"), record.get("recbole"), *peers.values()]
            for side in sides:
                if isinstance(side, dict):
                    values.update(f"{v:.4f}" for v in side.values() if isinstance(v, float))
            for value in ((record.get("metrics") or {}).get("test") or {}).values():
                if isinstance(value, (int, float)):
                    values.add(f"{value:.4f}")
        body = table.render(table, records) if records else ""
        table_lines = [re.sub(r"\d\.\d{4} ± \d\.\d{4}", "", line)  # means over seeds
                       for line in body.splitlines() if line.startswith("|")]
        shown = {m for line in table_lines for m in re.findall(r"(?<![\d.])\d\.\d{4}(?!\d)", line)}
        assert shown, table.name
        assert shown <= values, (table.name, sorted(shown - values))


def test_every_record_names_its_code_and_command(results):
    """A run record names its command; one a script made is named by the script's line."""
    for table in results.TABLES.values():
        lines = results.read_ledger(table.ledger)
        by_script = {line.get("m6bench_run_id"): line for line in lines}
        runs = results.read_ledger(table.ledger.with_name(f"{table.name}-runs.jsonl"))
        for record in lines + runs:
            harness = (record.get("code") or {}).get("harness") or {}
            assert harness.get("sha256") and (harness.get("git") or {}).get("commit"), table
            command = record.get("command") or by_script.get(record.get("run_id"), {}).get(
                "command")
            assert command, (table.name, record.get("run_id"))
            # a board's finals keep what its significance marks are computed from
            needed = table.board and record.get("kind") == "final"
            assert ("per_user" in record) == bool(needed), (table.name, record.get("kind"))
        assert lines, f"{table.name} has no records: python docs/results.py make {table.name}"


def test_a_row_is_found_by_its_config(results):
    table = results.TABLES["cold-items"]
    on, plain, off, _ = table.rows
    record = {"status": "ok", "plugin": {"name": "m6-fusion"}, "model": "m6-fusion",
              "benchmark": {"name": "ml-100k-cold-items"}, "seed": 3,
              "config": {"text": True, "text_dropout": 0.0}}
    assert plain.matches(record, 3) and not on.matches(record, 3) and not off.matches(record, 3)
    assert not plain.matches(record, 2)
    command = plain.commands()[3]
    assert command[:4] == ["m6bench", "run", "--plugin", "m6-fusion"]
    assert "text_dropout=0.0" in command and "--seed" in command
    assert json.dumps(command)  # plain strings, runnable as they are


# ================================================================ the official board
def _cells(body: str) -> dict[str, dict[str, str]]:
    """The Markdown table of ``leaderboard show``, by model, then by column."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    return {cells[1]: dict(zip(headers, cells)) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_the_official_table_shows_each_models_mean_and_ci_over_its_finals(results):
    """Recomputed here from the ledger's finals: mean and t-interval over the seeds, and
    the trials each row ran against the board's budget."""
    table = results.TABLES["official"]
    records = results.read_ledger(table.ledger)
    rows = _cells(table.render(table, records))
    assert rows, "no rows: python docs/results.py import official LEDGER"
    asked = {m.model: m.budget.trials for m in load_board(ROOT / table.board).models
             if table.benchmark in m.benchmarks}
    for model, row in rows.items():
        finals = [r for r in records if r["kind"] == "final" and r["model"] == model]
        trials = [r for r in records if r["kind"] == "trial" and r["model"] == model]
        assert {f["seed"] for f in finals} == {0, 1, 2}, model
        assert len({f["cut"]["fingerprint"] for f in finals}) == 1, "vary = init: one split"
        assert row["trials"] == f"{len(trials)}/{asked[model]}", model
        assert row["seeds"] == "3"
        for metric in ("ndcg@10", "recall@10", "mrr@10"):
            values = [f["metrics"]["test"][metric] for f in finals]
            half = stats.t.ppf(0.975, 2) * statistics.stdev(values) / math.sqrt(3)
            assert row[metric].startswith(f"{statistics.mean(values):.4f} ± {half:.4f}"), (
                model, metric, row[metric])
    ranked = sorted(rows.values(), key=lambda r: int(r["rank"]))
    means = [float(r["ndcg@10"].split()[0]) for r in ranked]
    assert means == sorted(means, reverse=True)
    assert ranked[0]["ndcg@10"].endswith("*"), "the first row is marked best"


def test_the_official_footer_names_the_board_commit_wall_time_and_machine(results):
    table = results.TABLES["official"]
    records = results.read_ledger(table.ledger)
    footer = results.provenance(records, table)
    assert "`m6bench board run leaderboard/board.toml --benchmark ml-100k`" in footer
    commit = records[0]["code"]["harness"]["git"]["commit"]
    assert f"at commit `{commit[:10]}` on {records[0]['started_at'][:10]}" in footer
    assert "2 CPU cores, one process for ml-100k, shared with other work" in footer
    started = min(datetime.fromisoformat(r["started_at"]) for r in records)
    ended = max(datetime.fromisoformat(r["ended_at"]) for r in records)
    assert f" {(ended - started).total_seconds() / 60:.0f} min wall time" in footer


def test_a_board_ledger_keeps_trials_and_finals_and_only_the_finals_per_user_values(
        results, tmp_path):
    def record(kind, benchmark="ml-100k"):
        return {"kind": kind, "benchmark": {"name": benchmark}, "run_id": kind + benchmark,
                "per_user": {"users": [1, 2], "ndcg@10": [0.5, 1.0]}}

    ledger = [record("trial"), record("final"), record("run"), record("final", "ml-1m")]
    kept = results.results_board.keep("ml-100k", ledger)
    assert [(r["kind"], "per_user" in r) for r in kept] == [("trial", False), ("final", True)]
    assert "per_user" in ledger[0], "the records read are left as they were"
    path = tmp_path / "board.jsonl.gz"
    results.write_ledger(path, kept)
    first = path.read_bytes()
    assert results.read_ledger(path) == kept
    assert json.loads(gzip.decompress(first).splitlines()[1]) == kept[1]
    results.write_ledger(path, kept)
    assert path.read_bytes() == first, "the same records make the same bytes (no mtime)"


def test_the_anytime_svg_stands_alone(results):
    """Shown as an image, the SVG cannot reach the site's stylesheet: it carries its size
    and the plot's colours, and nothing it needs is fetched."""
    svg = (ROOT / "docs" / "results" / "official-anytime.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg ") and svg.rstrip().endswith("</svg>")
    assert 'width="1280" height="340"' in svg.split(">", 1)[0]
    style = svg.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "svg .series-0 { stroke: #1f5fae; fill: #1f5fae; }" in style
    assert "--muted: #5b6672" in style and "body" not in style
    assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert svg.count("<polyline") >= 2 * 4  # two panels, a curve per tuned model
