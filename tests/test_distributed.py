"""Two processes share one study through a real PostgreSQL server on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import optuna
import pytest
from requirements_for_tests import skip_unless_required

from m6bench.sweeps.storage import finished_counts, make_storage
from m6bench_leaderboard import read_ledger


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = _pg_bin()
    if bin_dir is None:
        skip_unless_required("postgresql", "no PostgreSQL server here (Debian package "
                             "postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="psycopg (v3) is not installed (test extras)")
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            skip_unless_required("postgresql",
                                 "running as root without runuser to drop to the postgres user")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    root = tempfile.mkdtemp(prefix="m6bench-pg-")
    if as_postgres:
        shutil.chown(root, user="postgres")
    data = os.path.join(root, "data")
    port = _free_port()

    def pg(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_postgres, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)

    out = pg(f"{bin_dir}/initdb", "-D", data, "--auth=trust", "-U", "postgres")
    assert out.returncode == 0, out.stderr
    out = pg(f"{bin_dir}/pg_ctl", "-D", data, "-w", "-t", "60", "-l", f"{root}/log", "-o",
             f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    with open(f"{root}/log") as server_log:
        assert out.returncode == 0, out.stderr + server_log.read()
    try:
        out = pg(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                 "m6bench")
        assert out.returncode == 0, out.stderr
        yield f"postgresql://postgres@127.0.0.1:{port}/m6bench"
    finally:
        pg(f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _lines_of(process: subprocess.Popen) -> tuple[list[str], threading.Thread]:
    """Collects a process's output lines as they come, so a test can wait for one."""
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def test_sweep_and_worker_share_a_postgres_study(postgres_url, tmp_path):
    env = {**os.environ, "M6BENCH_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    study = "shared-bpr"
    trials = 10
    # the worker starts first and waits for the study, so it is ready when the sweep's
    # trials begin: started after them, it could find the budget already used
    worker = subprocess.Popen(
        [sys.executable, "-m", "m6bench.cli", "worker", "--study", study, "--device", "cpu",
         "--ledger", str(tmp_path / "b.jsonl"), "--storage", postgres_url, "--wait", "300"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    worker_lines, worker_reader = _lines_of(worker)
    deadline = time.monotonic() + 120
    while not any("waiting up to 300 s" in line for line in worker_lines):
        if time.monotonic() > deadline or worker.poll() is not None:
            worker.kill()
            pytest.fail("the worker never waited for the study:\n" + "".join(worker_lines))
        time.sleep(0.2)
    sweep = subprocess.Popen(
        [sys.executable, "-m", "m6bench.cli", "sweep", "--plugin", "classic", "--model",
         "bpr-mf", "--dataset", "synthetic", "--dataset-opt", "n_users=200", "--dataset-opt",
         "n_items=120", "--trials", str(trials), "--seeds", "0", "--pruner", "none", "--set",
         "epochs=10", "--study", study, "--ledger", str(tmp_path / "a.jsonl"),
         "--storage", postgres_url, "--quiet"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, output
    assert worker.wait(timeout=600) == 0, "".join(worker_lines)
    worker_reader.join(timeout=60)
    storage = make_storage(postgres_url)

    counts = finished_counts(optuna.load_study(study_name=study, storage=storage))
    assert counts["finished"] == trials and counts["running"] == 0
    by_sweep = [r for r in read_ledger(tmp_path / "a.jsonl").records if r["kind"] == "trial"]
    by_worker = [r for r in read_ledger(tmp_path / "b.jsonl").records if r["kind"] == "trial"]
    assert by_worker, "the worker ran no trial"
    assert len(by_sweep) + len(by_worker) == trials
    assert {r["sweep_id"] for r in by_sweep + by_worker} == {study}


def test_a_storage_password_reaches_no_record_output_or_page(postgres_url, tmp_path):
    """A sweep and a worker on a PostgreSQL URL with a password, then the site: the password
    is nowhere (records, run files, results.json, pages, stdout, stderr)."""
    secret = "Sw33p-pa55word-not-for-pages"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores it
    assert secret in url
    env = {**os.environ, "M6BENCH_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    study = "secret-pop"
    ledger = tmp_path / "ledger.jsonl"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "m6bench.cli", "sweep", "--plugin", "classic", "--model",
         "itemknn", "--dataset", "synthetic", "--dataset-opt", "n_users=150", "--dataset-opt",
         "n_items=90", "--trials", "4", "--seeds", "2", "--pruner", "none", "--study", study,
         "--storage", url, "--ledger", str(ledger)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.run(
        [sys.executable, "-m", "m6bench.cli", "worker", "--storage", url, "--study", study,
         "--device", "cpu", "--ledger", str(ledger), "--wait", "300"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, out + err
    assert worker.returncode == 0, worker.stdout + worker.stderr
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "m6bench.cli", "leaderboard", "build", "--ledger", str(ledger),
         "--out", str(site)], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    assert build.returncode == 0, build.stderr
    show = subprocess.run(
        [sys.executable, "-m", "m6bench.cli", "leaderboard", "show", "--ledger", str(ledger),
         "--format", "json"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    outputs = [out, err, worker.stdout, worker.stderr, build.stdout, build.stderr, show.stdout]
    files = [ledger, *(p for p in site.rglob("*") if p.is_file())]
    assert (site / "results.json") in files and any(p.suffix == ".jsonl" for p in files)
    for text in outputs:
        assert secret not in text
    for path in files:
        assert secret not in path.read_text(errors="replace"), path
    commands = [r["command"] for r in read_ledger(ledger).records]
    assert any("postgresql://postgres:***@" in " ".join(c) for c in commands)
