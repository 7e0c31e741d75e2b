"""The README's result tables are rendered from committed ledgers, never typed by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

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
        records = results.read_ledger(table.ledger)
        values = set()
        for record in records:
            for side in ("m6bench", "recbole"):
                if isinstance(record.get(side), dict):
                    values.update(f"{v:.4f}" for v in record[side].values()
                                  if isinstance(v, float))
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
            assert "per_user" not in record, f"{table.name}: per-user values are not needed"
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
