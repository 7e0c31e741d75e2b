"""`m6bench new-plugin`: the scaffold renders, lints, passes the kit, installs and runs.

The fast tests check the rendered project in this interpreter (the package made importable
through a hand-written dist-info, the way an editable install exposes it).  The slow test
is the acceptance path a plugin author follows: a fresh virtual environment, the project
and the scaffold pip-installed into it, `m6bench run --plugin NAME` on the synthetic
default, `m6bench plugins`, and the scaffold's own tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner

from m6bench import PluginError, PluginFailureWarning, load_catalog
from m6bench.cli import main
from m6bench.cli.scaffold import create_plugin, names_for
from m6bench.testing import check_plugin

REPO = Path(__file__).resolve().parents[1]


def _expose(project: Path, distribution: str, name: str, package: str, version: str = "0.1.0"):
    """Make a scaffolded project importable and discoverable without pip: its ``src`` on
    sys.path plus the dist-info (metadata and entry point) an install would write."""
    info = project / "src" / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[m6bench]\n{name} = {package}\n")
    return project / "src"


def test_names_are_derived_from_the_plugin_name():
    assert names_for("my-model") == {"name": "my-model", "distribution": "m6bench-my-model",
                                     "package": "m6bench_my_model", "class_name": "MyModel"}
    assert names_for("m6bench-fancy")["distribution"] == "m6bench-fancy"
    assert names_for("recommender")["class_name"] == "RecommenderModel"


@pytest.mark.parametrize("bad", ["My-Model", "my_model", "-x", "x--y", "9lives", "a b", ""])
def test_unusable_names_are_refused_with_the_rule(bad, tmp_path):
    with pytest.raises(PluginError, match="lowercase letters and digits"):
        create_plugin(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_scaffold_never_overwrites(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(PluginError, match="never overwrites"):
        create_plugin("fresh", tmp_path / "taken")
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_names_already_installed_are_refused(tmp_path):
    with pytest.raises(PluginError, match=r"'ease' is taken.*m6bench plugins"):
        create_plugin("ease", tmp_path / "out", taken={"classic", "ease", "bpr-mf"})


def test_rendered_project_is_complete_and_lint_clean(tmp_path):
    scaffold = create_plugin("lint-me", tmp_path / "lint-me")
    relative = sorted(str(p.relative_to(scaffold.path)) for p in scaffold.files)
    assert relative == ["README.md", "pyproject.toml", "src/m6bench_lint_me/__init__.py",
                        "src/m6bench_lint_me/model.py", "tests/test_plugin.py"]
    for path in scaffold.files:
        text = path.read_text()
        assert "{{" not in text and "}}" not in text, path
    pyproject = tomllib.loads((scaffold.path / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "m6bench-lint-me"
    assert pyproject["project"]["entry-points"]["m6bench"] == {"lint-me": "m6bench_lint_me"}
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/m6bench_lint_me"]
    for path in scaffold.files:
        if path.suffix == ".py":
            compile(path.read_text(), str(path), "exec")
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", "--no-cache", "."], cwd=scaffold.path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_scaffolded_plugin_passes_the_kit_and_is_listed(tmp_path, monkeypatch):
    scaffold = create_plugin("kit-check", tmp_path / "kit-check")
    monkeypatch.syspath_prepend(str(_expose(scaffold.path, scaffold.distribution,
                                            scaffold.name, scaffold.package)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginFailureWarning)
        catalog = load_catalog()
    report = check_plugin("kit-check", catalog=catalog)
    assert report.distribution == "m6bench-kit-check" and report.version == "0.1.0"
    assert ("model 'kit-check'", "no-leak") in report.rules()
    assert ("fusion 'kit-check-biased-dot'", "component-shapes") in report.rules()
    model = catalog.models.get("kit-check")
    assert model.default and model.search_space is not None
    assert model.components == ("encoder:id-embedding", "fusion:kit-check-biased-dot",
                                "head:bpr")

    listing = CliRunner().invoke(main, ["plugins"])
    assert listing.exit_code == 0, listing.output
    row = next(line for line in listing.output.splitlines() if "kit-check" in line)
    assert "m6bench-kit-check" in row and "0.1.0" in row and "models: kit-check" in row


def test_cli_new_plugin_prints_the_commands_to_type(tmp_path, isolated):
    result = CliRunner().invoke(main, ["new-plugin", "cli-made"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m6bench-cli-made" / "pyproject.toml").exists()
    for command in ("pip install -e ./m6bench-cli-made", "m6bench plugins",
                    "m6bench run --plugin cli-made",
                    "python -m pytest ./m6bench-cli-made/tests"):
        assert f"  {command}\n" in result.output, result.output

    result = CliRunner().invoke(main, ["new-plugin", "cli-made", "--dir", "elsewhere"])
    assert result.exit_code == 0 and (tmp_path / "elsewhere" / "README.md").exists()
    assert "pip install -e ./elsewhere" in result.output

    refused = CliRunner().invoke(main, ["new-plugin", "classic"])
    assert refused.exit_code == 2
    assert "'classic' is taken" in refused.output


# =============================================================================== end to end
def _run(command: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a step; on failure, fail with the command and the tail of its output."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             **kwargs)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{' '.join(command)}` did not finish in {timeout:.0f}s; output so "
                    f"far:\n{(exc.stdout or '')[-3000:]}\n{(exc.stderr or '')[-3000:]}",
                    pytrace=False)
    if out.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` exited {out.returncode}\n--- stdout (tail)\n"
                    f"{out.stdout[-4000:]}\n--- stderr (tail)\n{out.stderr[-4000:]}",
                    pytrace=False)
    return out


@pytest.mark.slow
def test_scaffold_installs_into_a_fresh_venv_and_runs(tmp_path):
    """The acceptance path as an outside author meets it: m6bench's sdist built with
    ``python -m build`` and its wheel built from that sdist (so the sdist is complete),
    the wheel installed into a fresh venv, then new-plugin, pip install -e (scaffold),
    m6bench plugins, m6bench run --plugin NAME on the synthetic default, the scaffold's
    own tests: all green.  Minutes: pip installs every dependency into the new venv."""
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               M6BENCH_CACHE_DIR=str(tmp_path / "cache"),
               M6BENCH_LEDGER=str(tmp_path / "ledger.jsonl"),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("M6BENCH_DISABLE_PLUGINS", None)

    _run([sys.executable, "-m", "venv", str(venv)], timeout=300, env=env)
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
    # torch first, from the CPU build, so no CUDA wheel is pulled (as tox.ini does)
    _run([*pip, "torch==2.13.0"], timeout=1200, env=env)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], timeout=900,
         env=env)
    wheels = sorted(dist.glob("m6bench-*.whl"))
    assert len(wheels) == 1 and len(list(dist.glob("m6bench-*.tar.gz"))) == 1, wheels
    _run([*pip, str(wheels[0])], timeout=1200, env=env)
    where = _run([str(bin_dir / "python"), "-c",
                  "import m6bench, m6bench_classic, m6bench_leaderboard as b; "
                  "print(m6bench.__file__); print(b.__file__)"],
                 timeout=300, env=env, cwd=tmp_path)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout

    made = _run([str(bin_dir / "m6bench"), "new-plugin", "venv-check", "--dir",
                 str(tmp_path / "venv-check")], timeout=300, env=env, cwd=tmp_path)
    assert "m6bench run --plugin venv-check" in made.stdout
    project = tmp_path / "venv-check"
    _run([*pip, "-e", f"{project}[test]"], timeout=900, env=env)

    listing = _run([str(bin_dir / "m6bench"), "plugins"], timeout=300, env=env, cwd=tmp_path)
    row = next((line for line in listing.stdout.splitlines() if "venv-check" in line), None)
    assert row is not None, listing.stdout
    assert "m6bench-venv-check" in row and "0.1.0" in row and "FAILED" not in row, row

    run = _run([str(bin_dir / "m6bench"), "run", "--plugin", "venv-check", "--quiet"],
               timeout=900, env=env, cwd=tmp_path)
    assert "embedded synthetic default" in run.stdout and "ndcg@10" in run.stdout, run.stdout
    assert "recorded run" in run.stdout

    tests = _run([str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  str(project / "tests")], timeout=900, env=env, cwd=project)
    assert "2 passed" in tests.stdout, tests.stdout
