"""``benchmarks/gpu/run.sh``, the one command of issue #20, run as CI can: on the CPU, tiny.

The script is meant for the device machine (one H200, no network), where no test runs; this
runs it with ``--device cpu --tiny`` (a few minutes on 2 cores) and checks what it leaves in
its output folder: at most 8 files (what the device tool brings back), a summary with every
section filled from real numbers, a ledger with every board row's final run, the site.
The helpers it is made of (shapes, the dist-info shim, the summary's arithmetic) are checked
on their own, with hand-computed numbers.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
GPU_DIR = REPO / "benchmarks" / "gpu"


def _script_module(name: str) -> ModuleType:
    """A module of benchmarks/gpu/ (not a package), loaded under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


shapes = _script_module("shapes")
summary = _script_module("summary")

EXPECTED_FILES = {"summary.md", "ledger.jsonl", "site.tar.gz", "bench.json", "epochs.json",
                  "logs.tar.gz"}
SECTIONS = ("## GPU and versions", "## CUDA tests",
            "## Full-ranking evaluation vs the matmul floor", "## Training epochs",
            "## Sweep throughput: 1 worker vs N", "## Board", "## Steps")
SCRIPT_LIMIT_S = 1200  # ~4 minutes on 2 idle cores; a loaded CI machine gets slack


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-out")
    env = {k: v for k, v in os.environ.items() if not k.startswith("M6BENCH_")}
    env["TMPDIR"] = str(tmp_path_factory.mktemp("gpu-tmp"))
    completed = subprocess.run(
        ["bash", str(GPU_DIR / "run.sh"), "--device", "cpu", "--tiny", "--out", str(out),
         "--deadline", str(SCRIPT_LIMIT_S)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=SCRIPT_LIMIT_S + 120)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, completed.stdout


def test_script_writes_at_most_eight_known_files(tiny_run):
    out, _ = tiny_run
    written = {p.name for p in out.iterdir()}
    assert written == EXPECTED_FILES
    assert len(written) <= 8 and all(p.is_file() for p in out.iterdir())


def test_summary_has_every_section_filled(tiny_run):
    out, _ = tiny_run
    text = (out / "summary.md").read_text()
    positions = [text.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "torch " in text and "GPU none" in text  # versions, and no GPU on the CPU run
    assert "| ML-1M scale (6,040 x 3,706) | " in text and "x |" in text  # a ratio
    for model in ("classic/bpr-mf", "gnn-mf/gnn-mf", "m6-fusion/m6-fusion"):
        assert f"| {model} | ml-1m-shaped (synthetic) | " in text
    for shape in ("ml-100k-shaped", "ml-1m-shaped"):
        assert f"### {shape}" in text
        for plugin, model in shapes.BOARD_MODELS:
            assert f"| {shape} | {plugin}/{model} | ok |" in text
    assert "| cuda-tests | 0 |" in text  # they skip on a CPU, and the step passes
    workers = shapes.TINY_BUDGET.workers
    assert ("Not measured: m6bench sweep has no --workers option" in text
            or (f"| 1 | {shapes.TINY_BUDGET.throughput_trials} |" in text
                and f"| {workers} | {shapes.TINY_BUDGET.throughput_trials} |" in text))


def test_ledger_holds_a_final_run_of_every_board_row(tiny_run):
    out, _ = tiny_run
    records = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    finals = {(r["benchmark"]["spec"]["dataset_options"]["n_users"], r["plugin"]["name"],
               r["model"]) for r in records if r["kind"] == "final" and r["status"] == "ok"}
    expected = {(shape.n_users, plugin, model) for shape in shapes.TINY_SHAPES
                for plugin, model in shapes.BOARD_MODELS}
    assert finals == expected
    trials = [r for r in records if r["kind"] == "trial"]
    assert len(trials) == len(expected) * shapes.TINY_BUDGET.trials  # equal trials per row
    assert {r["device"] for r in records} == {"cpu"}


def test_site_and_logs_are_packed(tiny_run):
    out, _ = tiny_run
    with tarfile.open(out / "site.tar.gz") as site:
        names = set(site.getnames())
    for shape in shapes.TINY_SHAPES:
        assert f"site/{shape.label}/index.html" in names
    with tarfile.open(out / "logs.tar.gz") as logs:
        names = set(logs.getnames())
    assert {"steps.tsv", "logs/environment.log", "logs/bench.log"} <= names
    epochs = json.loads((out / "epochs.json").read_text())
    assert [row["model"] for row in epochs] == ["classic/bpr-mf", "gnn-mf/gnn-mf",
                                                 "m6-fusion/m6-fusion"]
    assert all(row["seconds"] > 0 for row in epochs)


def test_unknown_option_and_missing_output_folder_fail_with_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    missing = subprocess.run(["bash", str(GPU_DIR / "run.sh"), "--tiny"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "set OUT or pass --out DIR" in missing.stderr
    unknown = subprocess.run(["bash", str(GPU_DIR / "run.sh"), "--fast", "--out",
                              str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 2 and "unknown option --fast" in unknown.stderr


def test_dist_info_shim_carries_the_plugins_entry_points(tmp_path):
    info = shapes.write_dist_info(tmp_path)
    distribution = importlib.metadata.PathDistribution(info)
    assert distribution.metadata["Name"] == "m6bench"
    plugins = {ep.name: ep.value for ep in distribution.entry_points if ep.group == "m6bench"}
    assert plugins["gnn-mf"] == "m6bench_gnn_mf"
    # the same plugins pip's install of this tree registers
    installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="m6bench")
                 if ep.dist is not None and ep.dist.name == "m6bench"}
    assert plugins == installed
    assert {"classic", "gnn-mf", "pct-cf", "m6-fusion", "deep", "m6-rec"} <= set(plugins)
    scripts = [ep for ep in distribution.entry_points if ep.group == "console_scripts"]
    assert [(ep.name, ep.value) for ep in scripts] == [("m6bench", "m6bench.cli:main")]


def test_board_rows_give_every_model_of_every_shape_its_dataset_options():
    rows = shapes.board_rows(tiny=False)
    assert len(rows) == len(shapes.SHAPES) * len(shapes.BOARD_MODELS)
    assert rows[0].split() == ["ml-100k-shaped", "gnn-mf", "gnn-mf", "--dataset", "synthetic",
                               "--dataset-opt", "n_users=943", "--dataset-opt",
                               "n_items=1682", "--dataset-opt", "density=0.063"]
    # ML-1M: 1,000,209 ratings over 6,040 x 3,706 cells
    ml1m = shapes.SHAPES[1]
    assert abs(ml1m.n_users * ml1m.n_items * ml1m.density - 1_000_209) < 1_000


def _trial(started: str, ended: str, status: str = "ok", kind: str = "trial") -> str:
    return json.dumps({"kind": kind, "status": status, "started_at": started,
                       "ended_at": ended})


def test_trial_rate_counts_finished_trials_between_first_start_and_last_end(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text("\n".join([
        _trial("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:40+00:00"),
        _trial("2026-01-01T00:00:10+00:00", "2026-01-01T00:01:00+00:00"),
        _trial("2026-01-01T00:00:20+00:00", "2026-01-01T00:01:30+00:00", status="pruned"),
        _trial("2026-01-01T00:00:30+00:00", "2026-01-01T00:05:00+00:00", status="failed"),
        _trial("2026-01-01T00:02:00+00:00", "2026-01-01T00:09:00+00:00", kind="final"),
    ]) + "\n")
    # 3 trials (the failed one and the final run left out) in 90 s: 2 per minute
    assert summary.trial_rate(ledger) == (3, 2.0)


def test_summary_of_an_empty_run_names_what_did_not_run(tmp_path):
    (tmp_path / "steps.tsv").write_text("bench\t124\t180.0\nepochs\t125\t0\n")
    text = summary.build_summary(tmp_path)
    assert all(section in text for section in SECTIONS)
    assert "_step `bench`: exit code 124 (timed out), 180.0 s" in text
    assert "| 100,000 x 50,000 | not run | not run | - |" in text
    assert "_step `epochs` was skipped: the run's deadline was near._" in text
    assert "_step `cuda-tests` did not run._" in text


def test_throughput_section_compares_one_worker_with_n(tmp_path):
    # 1 worker: 2 trials in 60 s (2/min); 2 workers: 4 trials in 60 s (4/min): 2x
    for workers, trials in ((1, 2), (2, 4)):
        ledger = tmp_path / "throughput" / f"workers-{workers}" / "ledger.jsonl"
        ledger.parent.mkdir(parents=True)
        ledger.write_text("\n".join(
            _trial("2026-01-01T00:00:00+00:00", f"2026-01-01T00:00:{30 + k * 10}+00:00")
            for k in range(trials - 1)) + "\n"
            + _trial("2026-01-01T00:00:10+00:00", "2026-01-01T00:01:00+00:00") + "\n")
    (tmp_path / "steps.tsv").write_text("throughput-1\t0\t75.0\nthroughput-2\t0\t45.5\n")
    lines = summary.throughput_section(tmp_path, summary.read_steps(tmp_path))
    assert "| 1 | 2 | 2.0 | 75.0 |" in lines
    assert "| 2 | 4 | 4.0 | 45.5 |" in lines
    assert lines[-1] == "Speed-up with 2 workers: 2.00x."
