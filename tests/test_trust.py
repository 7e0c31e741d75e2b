"""Records pin the code that made them; credentials and control characters never leak.

Each test here failed on the code before records carried a code identity (b0c2633): the git
commit came from the working directory, `reproduce` and `board run` ignored code changes,
a storage password reached records, the site and error messages, and `leaderboard show`
passed terminal escape sequences through.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from m6bench import load_catalog
from m6bench.board.board import run_board
from m6bench.cli import main
from m6bench.errors import CodeChanged
from m6bench.registry.provenance import clear_code_cache, git_state, source_hash
from m6bench.runs.reproduce import reproduce
from m6bench_leaderboard import (
    build_leaderboard,
    build_site,
    read_ledger,
    read_records,
    redact_text,
    render_leaderboard,
)
from m6bench_leaderboard.testing import make_record

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_users": 120, "n_items": 80}
SECRET = "Pa55-w0rd-never-shown"

# A plugin package as a third party writes one: a popularity model whose source a test edits.
PLUGIN_SOURCE = '''
import torch
from m6bench import BenchmarkSpec, ModelSpec, Recommender, hookimpl

BONUS = 0.0


class Counts(Recommender):
    def fit_epoch(self, train, epoch):
        counts = torch.bincount(train.items, minlength=train.n_items).float()
        self.register_buffer("counts", counts + BONUS)
        return {}

    def score(self, users):
        return self.counts.expand(users.numel(), -1)


@hookimpl
def m6bench_register_models(register):
    register(ModelSpec("NAME-pop", build=Counts, search_space=lambda trial: {},
                       default=True))
'''


@pytest.fixture(autouse=True)
def _isolated(isolated):
    yield
    clear_code_cache()


def _plugin_packages(root: Path, *names: str) -> dict[str, object]:
    """Write and import one plugin package per name under ``root`` (on sys.path)."""
    modules = {}
    for name in names:
        package = root / f"trust_{name}"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(PLUGIN_SOURCE.replace("NAME", name))
        sys.modules.pop(package.name, None)
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    for name in names:
        modules[name] = importlib.import_module(f"trust_{name}")
    return modules


def _edit_one_line(module: object) -> None:
    path = Path(module.__file__)
    path.write_text(path.read_text().replace("BONUS = 0.0", "BONUS = 0.5"))
    clear_code_cache()


@pytest.fixture
def plugins(tmp_path):
    modules = _plugin_packages(tmp_path / "site", "alpha", "beta")
    yield modules
    sys.path.remove(str(tmp_path / "site"))
    for module in modules.values():
        sys.modules.pop(module.__name__, None)


def _catalog(modules):
    return load_catalog([(name, module) for name, module in modules.items()],
                        entry_points=False)


# ===================================================================== code identity
def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_records_name_the_harness_and_plugin_code_not_the_working_directory(tmp_path):
    """Started inside an unrelated repository, the record names m6bench's own commit."""
    other = tmp_path / "other-repo"
    other.mkdir()
    _git(other, "init", "-q")
    (other / "f.txt").write_text("x")
    _git(other, "add", "f.txt")
    _git(other, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "other")
    out = subprocess.run(
        [sys.executable, "-m", "m6bench.cli", "run", "--plugin", "classic", "--model", "pop",
         "--quiet", "--json", "--ledger", str(tmp_path / "l.jsonl"), "--dataset-opt",
         "n_users=100", "--dataset-opt", "n_items=60"],
        cwd=other, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    record = read_ledger(tmp_path / "l.jsonl").records[-1]
    code = record["code"]
    clear_code_cache()
    assert code["harness"]["git"]["commit"] == _git(ROOT, "rev-parse", "HEAD")
    assert code["harness"]["git"]["commit"] != _git(other, "rev-parse", "HEAD")
    assert code["harness"]["sha256"] == source_hash("m6bench")
    assert code["plugin"]["package"] == "m6bench_classic"
    assert code["plugin"]["sha256"] == source_hash("m6bench_classic")
    assert code["plugin"]["sha256"] != code["harness"]["sha256"]


def test_source_hash_follows_the_source_by_content_and_relative_path(tmp_path, plugins):
    alpha, beta = source_hash("trust_alpha"), source_hash("trust_beta")
    assert None not in (alpha, beta) and alpha != beta  # one model name differs
    _edit_one_line(plugins["alpha"])
    assert source_hash("trust_alpha") != alpha
    assert source_hash("trust_beta") == beta
    assert source_hash("no_such_package_here") is None


def test_git_state_does_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    """The state comes from where m6bench's source lives, whatever the working directory."""
    git_state.cache_clear()
    monkeypatch.chdir(tmp_path)
    assert git_state()["commit"] == _git(ROOT, "rev-parse", "HEAD")


# ========================================================================= reproduce
def test_reproduce_refuses_when_the_plugin_code_changed(tmp_path, plugins):
    catalog = _catalog(plugins)
    ledger = tmp_path / "ledger.jsonl"
    import m6bench

    record = m6bench.run("alpha", dataset="synthetic", dataset_options=SMALL, ledger=ledger,
                         device="cpu", catalog=catalog)
    same = reproduce(record["run_id"], ledger=ledger, record=False, catalog=catalog)
    assert same.ok and not same.code_changed

    _edit_one_line(plugins["alpha"])
    with pytest.raises(CodeChanged) as raised:
        reproduce(record["run_id"], ledger=ledger, record=False, catalog=catalog)
    message = str(raised.value)
    assert "plugin" in message and "trust_alpha" in message and "harness" not in message
    assert record["code"]["plugin"]["sha256"] in message
    # the module in memory is still the old one, so the metrics still match: the code check
    # is what tells the two apart
    anyway = reproduce(record["run_id"], ledger=ledger, record=False, catalog=catalog,
                       allow_code_change=True)
    assert anyway.ok and anyway.code_changed
    assert any("code differs" in note for note in anyway.notes)


def test_reproduce_exit_codes_on_the_command_line(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    import m6bench

    record = m6bench.run("classic", model="pop", dataset="synthetic", dataset_options=SMALL,
                         ledger=ledger, device="cpu")
    ok = CliRunner().invoke(main, ["reproduce", record["run_id"], "--ledger", str(ledger),
                                   "--no-record"])
    assert ok.exit_code == 0, ok.output
    assert "reproduced: all" in ok.output and "(exact)" in ok.output

    changed = dict(record, code={**record["code"], "plugin": {
        **record["code"]["plugin"], "sha256": "0123456789abcdef"}})
    (tmp_path / "changed.jsonl").write_text(json.dumps(changed) + "\n")
    refused = CliRunner().invoke(main, ["reproduce", record["run_id"], "--ledger",
                                        str(tmp_path / "changed.jsonl"), "--no-record"])
    assert refused.exit_code == 3, refused.output
    assert "0123456789abcdef" in refused.output and "--allow-code-change" in refused.output
    anyway = CliRunner().invoke(main, ["reproduce", record["run_id"], "--ledger",
                                       str(tmp_path / "changed.jsonl"), "--no-record",
                                       "--allow-code-change"])
    assert anyway.exit_code == 0, anyway.output
    assert "other code" in anyway.output

    old = {k: v for k, v in record.items() if k != "code"}
    (tmp_path / "old.jsonl").write_text(json.dumps(old) + "\n")
    unknown = CliRunner().invoke(main, ["reproduce", record["run_id"], "--ledger",
                                        str(tmp_path / "old.jsonl"), "--no-record"])
    assert unknown.exit_code == 3 and "no code identity" in unknown.output


# ============================================================================= board
BOARD = """
[board]
name = "trust"
benchmarks = ["synthetic"]
[budget]
trials = 1
seeds = 2
[[models]]
plugin = "alpha"
model = "alpha-pop"
[[models]]
plugin = "beta"
model = "beta-pop"
"""


def test_board_reruns_exactly_the_rows_whose_plugin_code_changed(tmp_path, plugins):
    """The CI workflow's second run after a one-line change to one plugin: only its rows."""
    board = tmp_path / "board.toml"
    board.write_text(BOARD)
    ledger = tmp_path / "ledger.jsonl"
    catalog = _catalog(plugins)
    first = run_board(board, ledger=ledger, device="cpu", catalog=catalog)
    assert {r.plugin: r.status for r in first} == {"alpha": "done", "beta": "done"}
    again = run_board(board, ledger=ledger, device="cpu", catalog=catalog)
    assert {r.plugin: r.status for r in again} == {"alpha": "skipped", "beta": "skipped"}
    before = len(read_ledger(ledger).records)

    _edit_one_line(plugins["beta"])
    lines: list[str] = []
    kept = run_board(board, ledger=ledger, device="cpu", catalog=catalog, keep_stale=True)
    assert {r.plugin: r.status for r in kept} == {"alpha": "skipped", "beta": "skipped"}
    third = run_board(board, ledger=ledger, device="cpu", catalog=catalog,
                      report=lines.append)
    assert {r.plugin: r.status for r in third} == {"alpha": "skipped", "beta": "done"}
    assert any("other code" in line and "beta" in line for line in lines)
    added = read_ledger(ledger).records[before:]
    assert added and {r["plugin"]["name"] for r in added} == {"beta"}
    assert {r["code"]["plugin"]["sha256"] for r in added} == {source_hash("trust_beta")}

    # the site marks nothing stale now (the newest code of each plugin made its rows), and a
    # board built for the installed code leaves out numbers of any other code
    records = read_records(ledger).records
    rows = build_leaderboard(records)["benchmarks"][0]["rows"]
    assert not any(row["stale"] for row in rows)
    old_beta = {r["run_id"] for r in records[:before] if r["plugin"]["name"] == "beta"}
    current = {"alpha": (source_hash("m6bench"), source_hash("trust_alpha")),
               "beta": (source_hash("m6bench"), source_hash("trust_beta"))}
    data = build_leaderboard(records, current_code=current)
    shown = {run for row in data["benchmarks"][0]["rows"] for run in row["runs"]}
    assert shown and not shown & old_beta
    assert data["source"]["other_code"] >= len(old_beta)


def test_site_marks_rows_made_by_older_code(tmp_path):
    old = make_record(model="ease", seed=0, test={"ndcg@10": 0.3}, sweep_id="s-old",
                      kind="final", minute=0)
    new = make_record(model="pop", seed=0, test={"ndcg@10": 0.1}, sweep_id="s-new",
                      kind="final", minute=10)
    new["code"] = json.loads(json.dumps(new["code"]))
    new["code"]["plugin"]["sha256"] = "f" * 16  # the plugin changed after ease's row
    site = tmp_path / "site"
    build_site(None, site, records=[old, new])
    page = (site / "benchmarks" / "bench.html").read_text()
    assert page.count('class="stale-tag"') == 1
    row = next(line for line in page.splitlines() if "stale" in line and "model-row" in line)
    assert "ease" in row


# ========================================================================= redaction
@pytest.mark.parametrize("text, expected", [
    (f"--storage postgresql://m6:{SECRET}@db:5432/m6", "postgresql://m6:***@db:5432/m6"),
    (f"postgresql+psycopg://u:{SECRET}@127.0.0.1/x", "postgresql+psycopg://u:***@127.0.0.1/x"),
    (f"redis://:{SECRET}@h:6379/0", "redis://:***@h:6379/0"),
    (f"--dataset-opt api_key={SECRET}", "--dataset-opt api_key=***"),
    (f"https://host/a.zip?token={SECRET}&x=1", "https://host/a.zip?token=***&x=1"),
    (f"PGPASSWORD={SECRET} m6bench", "PGPASSWORD=*** m6bench"),
    ("sqlite:///m6bench-runs/optuna.db", "sqlite:///m6bench-runs/optuna.db"),
    ("--set max_tokens=512 --set lr=0.01", "--set max_tokens=512 --set lr=0.01"),
])
def test_redact_text(text, expected):
    assert SECRET not in redact_text(text)
    assert expected in redact_text(text)


def test_records_written_and_read_carry_no_credential(tmp_path):
    import m6bench

    ledger = tmp_path / "ledger.jsonl"
    run = m6bench.run("classic", model="pop", dataset="synthetic", dataset_options=SMALL,
                      ledger=ledger, device="cpu")
    assert run["status"] == "ok"
    old = make_record(model="pop", seed=0, test={"ndcg@10": 0.1}, sweep_id="s", kind="final")
    old["command"] = ["m6bench", "sweep", "--storage", f"postgresql://m6:{SECRET}@db/m6"]
    with ledger.open("a") as handle:  # as an older m6bench wrote it: unredacted
        handle.write(json.dumps(old) + "\n")
    assert SECRET in ledger.read_text()
    site = tmp_path / "site"
    build_site(ledger, site)
    for path in site.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path
    assert "postgresql://m6:***@db/m6" in (site / "results.json").read_text() or any(
        "postgresql://m6:***@db/m6" in p.read_text() for p in site.rglob("*.jsonl"))
    for fmt in ("table", "markdown", "json"):
        data = build_leaderboard(read_records(ledger).records)
        assert SECRET not in render_leaderboard(data, fmt)


def test_worker_with_a_wrong_storage_names_it_without_the_password(tmp_path):
    url = f"postgresql://m6:{SECRET}@127.0.0.1:9/m6bench"  # port 9: nothing listens
    out = subprocess.run(
        [sys.executable, "-m", "m6bench.cli", "worker", "--storage", url, "--study", "x"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert "postgresql://m6:***@127.0.0.1:9/m6bench" in out.stderr


# ==================================================================== control chars
def test_leaderboard_show_strips_terminal_escape_sequences(tmp_path):
    link = "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
    record = make_record(model="pop" + link, seed=0, test={"ndcg@10": 0.1}, sweep_id="s",
                         kind="final")
    failed = make_record(model="boom", seed=0, status="failed", sweep_id="f", kind="final")
    failed["error"] = "RuntimeError: \x1b[2J\x1b[31mred\u202e"
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text(json.dumps(record) + "\n" + json.dumps(failed) + "\n")
    for fmt in ("table", "markdown", "json"):
        result = CliRunner().invoke(main, ["leaderboard", "show", "--ledger", str(ledger),
                                           "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\u202e" not in result.output, fmt
        assert "click" in result.output


def test_the_workflow_publishes_only_numbers_of_the_code_it_builds():
    text = (ROOT / ".github" / "workflows" / "leaderboard.yml").read_text()
    build = next(line for line in text.splitlines() if "m6bench leaderboard build" in line)
    assert "--only-current-code" in build
    assert "--keep-stale" not in text
    assert "# Cache key:" in text and "not keyed on the code on purpose" in text
