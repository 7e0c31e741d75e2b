"""The publishing and release workflows, read as a runner would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _steps(job: dict) -> list[dict]:
    return job["steps"]


def _step(job: dict, name_part: str) -> dict:
    return next(s for s in _steps(job) if name_part in s.get("name", ""))


def test_the_cpu_install_takes_torch_from_the_cpu_index_before_the_readme_command():
    build = _workflow("leaderboard.yml")["jobs"]["build"]
    lines = _step(build, "CPU build")["run"].splitlines()
    cpu_index = next(i for i, line in enumerate(lines)
                     if "download.pytorch.org/whl/cpu" in line and "torch==2.13.0" in line)
    readme = next(i for i, line in enumerate(lines)
                  if line.strip() == 'pip install "torch==2.13.0" -e ".[test]"')
    assert cpu_index < readme


def test_the_gpu_install_names_no_guessed_wheel_index():
    build = _workflow("leaderboard.yml")["jobs"]["build"]
    step = _step(build, "CUDA build")
    assert "cu124" not in step["run"] and "||" not in step["env"]["TORCH_INDEX"]
    assert "exit 1" in step["run"]


def test_the_browser_test_step_fails_rather_than_skips_without_a_browser():
    build = _workflow("leaderboard.yml")["jobs"]["build"]
    step = _step(build, "Test the site")
    assert "chromium" in step["env"]["M6BENCH_REQUIRE"].split(",")
    assert "tests/test_site_browser.py" in step["run"]
    install = _step(build, "Chromium")["run"]
    assert "playwright install --with-deps chromium" in install
    assert "M6BENCH_CHROMIUM=" in install


def _browser_tests(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "M6BENCH_REQUIRE"}
    clean.update(M6BENCH_CHROMIUM=str(tmp_path / "no-chromium-here"), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_site_browser.py")],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=600)


def test_a_missing_browser_skips_here_and_fails_where_it_is_required(tmp_path):
    skipped = _browser_tests(tmp_path)
    # the whole module skips, so pytest collects no test: exit code 5, not a failure
    assert skipped.returncode == 5, skipped.stdout[-2000:]
    assert "skipped" in skipped.stdout and "no-chromium-here" in skipped.stdout
    required = _browser_tests(tmp_path, M6BENCH_REQUIRE="chromium")
    assert required.returncode not in (0, 5), required.stdout[-2000:]
    assert "M6BENCH_REQUIRE requires chromium" in required.stdout


def test_only_the_default_branch_deploys():
    deploy = _workflow("leaderboard.yml")["jobs"]["deploy"]
    assert deploy["if"] == "github.ref == format('refs/heads/{0}', " \
                           "github.event.repository.default_branch)"


def test_the_weekly_build_reads_the_cache_within_its_eviction_window():
    workflow = _workflow("leaderboard.yml")
    triggers = workflow.get("on", workflow.get(True))
    for entry in triggers["schedule"]:
        days = entry["cron"].split()[4].split(",")
        assert len(days) >= 2, f"{entry['cron']}: a weekly cron meets the 7-day eviction"
    build = workflow["jobs"]["build"]
    assert any(s.get("if", "").startswith("${{ steps.restore.outputs.cache-matched-key")
               for s in _steps(build))


def test_the_release_builds_on_tags_and_publishes_by_trusted_publishing():
    release = _workflow("release.yml")
    triggers = release.get("on", release.get(True))
    assert triggers == {"push": {"tags": ["v*"]}}
    assert release["permissions"] == {"contents": "read"}
    build, publish = release["jobs"]["build"], release["jobs"]["publish"]
    assert "python -m build" in _step(build, "Build")["run"]
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["needs"] == "build" and publish["environment"]["name"] == "pypi"
    assert any(s.get("uses", "").startswith("pypa/gh-action-pypi-publish@")
               for s in _steps(publish))


def test_the_tools_that_judge_the_code_are_pinned():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    for tool in ("ruff", "import-linter"):
        spec = next(s for s in extras if s.startswith(tool))
        assert spec.startswith(f"{tool}=="), spec
