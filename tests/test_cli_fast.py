"""The command line answers help, listings and a mistyped plugin without importing torch,
Optuna or datasets: a lazy command table, entry-point metadata and a listing cache."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import click
import pytest
from click.testing import CliRunner

import m6bench.registry.catalog as registry_catalog
from m6bench import PluginError, hookimpl
from m6bench.cli import COMMANDS, common, main
from m6bench.cli import catalog as cli_catalog

HEAVY = ("torch", "optuna", "datasets", "scipy")


def _heavy_modules_after(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; the heavy modules it imported, and its output."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    *printed, heavy = out.stdout.strip().splitlines()
    return {"heavy": json.loads(heavy), "printed": "\n".join(printed)}


def test_importing_the_command_line_imports_no_heavy_module():
    assert _heavy_modules_after("import m6bench.cli")["heavy"] == []


def test_help_lists_every_command_without_importing_it():
    code = ("from m6bench.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "import sys\nprint('imported:', sorted(m for m in sys.modules "
            "if m.startswith('m6bench.cli.')))")
    result = _heavy_modules_after(code)
    assert result["heavy"] == []
    imported = result["printed"].splitlines()[-1]
    assert imported == "imported: ['m6bench.cli.common']"  # no command module
    for name in COMMANDS:
        assert f"\n  {name} " in result["printed"], name


def test_each_table_entry_is_the_command_it_names_with_its_own_help():
    context = click.Context(main)
    for name, (target, help_line) in COMMANDS.items():
        command = main.get_command(context, name)
        assert isinstance(command, click.Command), target
        # the table's line is the command's own first docstring line, so neither goes stale
        assert command.get_short_help_str(limit=1000) == help_line, name
    assert main.list_commands(context) == sorted(COMMANDS)


def test_help_shows_each_commands_help_line():
    output = CliRunner().invoke(main, ["--help"]).output
    for name, (_, help_line) in COMMANDS.items():
        row = next(line for line in output.splitlines() if line.startswith(f"  {name} "))
        shown = row[len(name) + 2:].strip().removesuffix("...")
        assert help_line.startswith(shown), (name, shown)


def test_a_table_entry_that_is_not_a_command_names_its_key():
    group = type(main)(name="demo", lazy_commands={"oops": ("m6bench.cli.common:redact", "x")})
    with pytest.raises(TypeError, match=r"COMMANDS\['oops'\].*@click.command"):
        group.get_command(click.Context(group), "oops")


def test_installed_plugins_read_from_metadata_match_the_loaded_catalog():
    catalog = registry_catalog.load_catalog()
    loaded = [(p.name, p.distribution, p.version) for p in catalog.plugins.values()
              if not p.name.startswith("m6bench.builtin.")]
    listed = [(name, dist, version) for name, dist, version, _ in common.installed_plugins()]
    assert listed == loaded
    assert "classic" in [name for name, *_ in listed]


def test_disabled_plugins_are_not_installed(monkeypatch):
    monkeypatch.setenv("M6BENCH_DISABLE_PLUGINS", "deep, classic")
    names = [name for name, *_ in common.installed_plugins()]
    assert "classic" not in names and "deep" not in names and "gnn-mf" in names


def test_an_unknown_plugin_fails_from_entry_point_names_before_torch():
    code = ("from m6bench.cli import common\nfrom m6bench.errors import PluginError\n"
            "try:\n    common.require_installed_plugin('clasic')\n"
            "except PluginError as exc:\n    print(exc)")
    result = _heavy_modules_after(code)
    assert result["heavy"] == []
    assert "Unknown plugin 'clasic'. Did you mean 'classic'?" in result["printed"]
    assert "m6bench plugins" in result["printed"]
    common.require_installed_plugin("classic")  # an installed one passes
    with pytest.raises(PluginError, match="Unknown plugin 'nope'"):
        common.require_installed_plugin("nope")


def test_a_replaced_catalog_decides_which_plugins_exist(monkeypatch):
    monkeypatch.setattr(common, "load_cli_catalog", lambda: None)
    common.require_installed_plugin("only-in-the-replaced-catalog")  # no error: not ours


def test_sweep_with_an_unknown_plugin_exits_2_naming_it(isolated):
    result = CliRunner().invoke(main, ["sweep", "--plugin", "nope", "--trials", "1"])
    assert result.exit_code == 2
    assert "Unknown plugin 'nope'" in result.output


# ---------------------------------------------------------------------------- listing cache
@pytest.fixture
def counted_loads(isolated, monkeypatch):
    """Counts every load of the installed catalog (``isolated``: a private cache folder)."""
    loads: list[int] = []
    real = registry_catalog.load_catalog

    def load(*args, **kwargs):
        loads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry_catalog, "load_catalog", load)
    return loads


def test_a_second_listing_comes_from_the_cache_and_matches(counted_loads, isolated):
    runner = CliRunner()
    first = {kind: runner.invoke(main, [kind]).output for kind in ("models", "plugins")}
    assert len(counted_loads) == 1  # one load fills every listing
    assert list((isolated.cache / "listings").glob("listing-*.json"))
    second = {kind: runner.invoke(main, [kind]).output for kind in ("models", "plugins")}
    assert len(counted_loads) == 1
    assert second == first
    assert "bpr-mf (default)" in second["models"] and "models: bpr-mf" in second["plugins"]


def test_a_changed_installation_is_listed_afresh(counted_loads, monkeypatch):
    runner = CliRunner()
    runner.invoke(main, ["models"])
    monkeypatch.setenv("M6BENCH_DISABLE_PLUGINS", "deep")
    output = runner.invoke(main, ["models"]).output
    assert len(counted_loads) == 2
    assert "mult-vae" not in output and "bpr-mf" in output


def test_a_listing_with_a_failed_plugin_is_never_cached(counted_loads, isolated, monkeypatch):
    typo = types.ModuleType("typo")
    typo.m6bench_register_model = hookimpl(lambda register: None)  # misspelt hook: fails
    counting = registry_catalog.load_catalog
    monkeypatch.setattr(registry_catalog, "load_catalog", lambda: counting([("typo", typo)]))
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["plugins"])
        row = next(line for line in result.output.splitlines() if line.startswith("| typo"))
        assert "FAILED" in row
    assert len(counted_loads) == 2
    assert not list((isolated.cache / "listings").glob("listing-*.json"))


def test_a_replaced_catalog_is_listed_and_not_cached(isolated, monkeypatch):
    from plugins_for_tests import catalog_with, fake_plugin

    monkeypatch.setattr(common, "load_cli_catalog",
                        lambda: catalog_with(("fake", fake_plugin("fake_plugin_module"))))
    first = CliRunner().invoke(main, ["plugins"]).output
    assert "| fake" in first
    assert not (isolated.cache / "listings").exists()


def test_an_unreadable_cache_entry_is_rebuilt(counted_loads, isolated):
    path = cli_catalog.listing_cache_dir() / (
        f"listing-{cli_catalog.installation_fingerprint()[:24]}.json")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert "bpr-mf" in CliRunner().invoke(main, ["models"]).output
    assert len(counted_loads) == 1
    assert "bpr-mf" in json.dumps(json.loads(path.read_text())["models"])
