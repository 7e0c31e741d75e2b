"""The ledger: atomic appends, torn lines, killed writers, invalid records refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from m6bench_leaderboard import RecordError, append_record, read_ledger
from m6bench_leaderboard.schema import SCHEMA_VERSION


def _record(index: int, **extra):
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"run-{index:06d}",
        "status": "ok",
        "benchmark": {"name": "b", "version": "v"},
        "plugin": {"name": "p", "distribution": "d", "version": "1"},
        "model": "m",
        "config": {"lr": 0.01, "note": "x" * (index % 50)},
        "seed": index,
        "metrics": {"test": {"ndcg@10": index / 1000}},
        "started_at": "2026-11-23T00:00:00+00:00",
        **extra,
    }


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "ledger.jsonl"
    records = [_record(i) for i in range(5)]
    for record in records:
        append_record(path, record)
    report = read_ledger(path)
    assert report.records == records and report.skipped == []


def test_missing_ledger_reads_empty(tmp_path):
    assert read_ledger(tmp_path / "none.jsonl").records == []


@pytest.mark.parametrize(
    ("change", "key"),
    [({"seed": "3"}, "seed"), ({"metrics": {"test": {"ndcg@10": float("nan")}}}, "ndcg@10"),
     ({"config": {"fn": object()}}, "record.config.fn"), ({"status": "great"}, "status")],
)
def test_invalid_records_are_refused_and_nothing_is_written(tmp_path, change, key):
    path = tmp_path / "ledger.jsonl"
    append_record(path, _record(0))
    before = path.read_bytes()
    with pytest.raises(RecordError, match=key):
        append_record(path, {**_record(1), **change})
    assert path.read_bytes() == before


def test_torn_last_line_is_reported_skipped_and_next_append_survives(tmp_path):
    path = tmp_path / "ledger.jsonl"
    append_record(path, _record(0))
    append_record(path, _record(1))
    whole = json.dumps(_record(2))
    with open(path, "ab") as handle:
        handle.write(whole[: len(whole) // 2].encode())  # a writer killed mid-line
    report = read_ledger(path)
    assert [r["run_id"] for r in report.records] == ["run-000000", "run-000001"]
    assert len(report.skipped) == 1 and "torn" in report.skipped[0][1]
    append_record(path, _record(3))
    report = read_ledger(path)
    assert [r["run_id"] for r in report.records] == ["run-000000", "run-000001", "run-000003"]
    assert report.skipped[0][0] == 3


WRITER = textwrap.dedent(
    """
    import sys
    from m6bench_leaderboard import append_record
    from m6bench_leaderboard.schema import SCHEMA_VERSION
    path = sys.argv[1]
    index = 0
    while True:
        append_record(path, {
            "schema_version": SCHEMA_VERSION, "run_id": f"run-{index:06d}", "status": "ok",
            "benchmark": {"name": "b", "version": "v"}, "plugin": {"name": "p"}, "model": "m",
            "config": {"padding": "x" * 20000}, "seed": index, "metrics": {},
            "started_at": "2026-11-23T00:00:00+00:00"})
        index += 1
    """
)


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_sigkill_while_appending_loses_nothing_complete(tmp_path, delay):
    path = tmp_path / "ledger.jsonl"
    append_record(path, _record(999999))  # recorded before the writer starts
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], env=env)
    deadline = time.monotonic() + 60
    while (not path.exists() or path.stat().st_size < 100_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    report = read_ledger(path)
    ids = [r["run_id"] for r in report.records]
    assert ids[0] == "run-999999"
    written = ids[1:]
    assert len(written) > 3
    assert written == [f"run-{i:06d}" for i in range(len(written))]  # none lost, in order
    assert len(report.skipped) <= 1  # at most the line being written when killed
    append_record(path, _record(5))
    assert read_ledger(path).records[-1]["run_id"] == "run-000005"


def test_concurrent_writers_never_interleave(tmp_path):
    path = tmp_path / "ledger.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = WRITER.replace("while True:", "for _ in range(40):")
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path)], env=env)
               for _ in range(3)]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    report = read_ledger(path)
    assert len(report.records) == 120 and report.skipped == []
