"""The plugin host: discovery through entry points, validation, errors that name names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import pytest
from plugins_for_tests import fake_plugin

import m6bench
from m6bench import ModelSpec, PluginError, hookimpl, load_catalog
from m6bench.registry.catalog import PluginFailureWarning


def _install_fake_distribution(root, dist: str, entry_name: str, module: str, source: str):
    """A distribution on sys.path (dist-info + module) with an m6bench entry point."""
    # a dist-info folder is named with the project name normalised (PEP 427): importlib
    # reads the name up to the first '-', so 'a-b-1.0.dist-info' would pose as project 'a'
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[m6bench]\n{entry_name} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


def test_builtin_plugin_found_through_entry_point():
    catalog = load_catalog()
    info = catalog.plugins["classic"]
    assert info.ok, info.error
    assert info.distribution == "m6bench"
    assert "m6bench_register_models" in info.hooks
    assert "bpr-mf" in [e.name for e in catalog.models.by_plugin("classic")]


def test_unknown_plugin_suggests_close_names():
    catalog = load_catalog()
    with pytest.raises(PluginError) as info:
        catalog.plugin("clasic")
    message = str(info.value)
    assert "Unknown plugin 'clasic'" in message and "Did you mean 'classic'" in message
    assert "m6bench plugins" in message


def test_unknown_model_suggests_close_names():
    catalog = load_catalog()
    with pytest.raises(PluginError, match=r"Did you mean 'ease'"):
        catalog.model("classic", "eas")


def _no_model(train, config):
    return None


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    with pytest.raises(PluginError) as info:
        load_catalog(
            [("first-pkg", fake_plugin("first", models=[ModelSpec("twin", build=_no_model)])),
             ("second-pkg", fake_plugin("second", models=[ModelSpec("twin", build=_no_model)]))],
            entry_points=False)
    message = str(info.value)
    assert "'twin'" in message and "'first-pkg'" in message and "'second-pkg'" in message


def test_failing_import_names_distribution_and_others_still_load(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, "m6bench-broken", "broken", "m6bench_broken_mod",
                               "import this_module_does_not_exist_anywhere\n")
    _install_fake_distribution(tmp_path, "m6bench-fine", "fine", "m6bench_fine_mod", """
        import m6bench

        @m6bench.hookimpl
        def m6bench_register_models(register):
            register(m6bench.ModelSpec("fine-model", build=lambda train, config: None))
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginFailureWarning, match=r"'broken' \(distribution m6bench-broken"):
        catalog = load_catalog()
    broken = catalog.plugins["broken"]
    assert not broken.ok and "ModuleNotFoundError" in broken.error
    assert "this_module_does_not_exist_anywhere" in broken.error
    assert catalog.plugins["fine"].ok and "fine-model" in catalog.models
    assert catalog.plugins["classic"].ok
    with pytest.raises(PluginError, match=r"m6bench-broken 1.2.3.*failed to load"):
        catalog.plugin("broken")

    out = subprocess.run([sys.executable, "-m", "m6bench.cli", "plugins"], capture_output=True,
                         text=True, env={**_env(), "PYTHONPATH": _pythonpath(tmp_path)},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "m6bench-broken" in out.stdout and "FAILED" in out.stdout
    assert "m6bench-fine" in out.stdout and "1.2.3" in out.stdout and "fine-model" in out.stdout


def test_misspelt_hook_fails_loudly_without_stopping_others():
    module = types.ModuleType("typo")
    module.m6bench_register_model = hookimpl(lambda register: None)  # missing 's'
    with pytest.warns(PluginFailureWarning, match="typo"):
        catalog = load_catalog([("typo", module)], entry_points=False)
    error = catalog.plugins["typo"].error
    assert "m6bench_register_model" in error and "no hook spec defines" in error


def test_wrong_hook_signature_is_reported():
    module = types.ModuleType("badsig")

    @hookimpl
    def m6bench_register_models(register, extra):
        pass

    module.m6bench_register_models = m6bench_register_models
    with pytest.warns(PluginFailureWarning):
        catalog = load_catalog([("badsig", module)], entry_points=False)
    assert "extra" in catalog.plugins["badsig"].error


def test_registering_the_wrong_type_names_plugin_and_fix():
    module = types.ModuleType("wrongtype")

    @hookimpl
    def m6bench_register_models(register):
        register({"name": "not-a-spec"})

    module.m6bench_register_models = m6bench_register_models
    with pytest.warns(PluginFailureWarning):
        catalog = load_catalog([("wrongtype", module)], entry_points=False)
    assert "m6bench.ModelSpec" in catalog.plugins["wrongtype"].error


def test_disable_env_skips_a_plugin(monkeypatch):
    monkeypatch.setenv("M6BENCH_DISABLE_PLUGINS", "classic")
    assert "classic" not in load_catalog().plugins


def test_lifecycle_hooks_fire_in_order(isolated):
    events = []

    class Logger:
        @hookimpl
        def m6bench_run_start(self, run_id, config, benchmark):
            events.append(("start", benchmark.name))

        @hookimpl
        def m6bench_epoch_end(self, run_id, epoch, metrics):
            events.append(("epoch", epoch))

        @hookimpl
        def m6bench_run_end(self, record):
            events.append(("end", record["status"]))

    catalog = load_catalog([("logger", Logger())])
    m6bench.run("classic", model="bpr-mf", overrides={"epochs": 2}, catalog=catalog,
                ledger=isolated.ledger)
    assert events == [("start", "synthetic"), ("epoch", 1), ("epoch", 2), ("end", "ok")]


def test_every_hook_is_documented():
    import inspect

    from m6bench import hookspecs

    missing = []
    for name in (n for n in dir(hookspecs) if n.startswith("m6bench_")):
        hook = getattr(hookspecs, name)
        doc = hook.__doc__ or ""
        missing += [f"{name}: {p}" for p in inspect.signature(hook).parameters
                    if f":param {p}:" not in doc]
        if ":return:" not in doc:
            missing.append(f"{name}: return")
    assert not missing, f"undocumented hook parameters: {missing}"


def _env():
    import os

    return dict(os.environ)


def _pythonpath(extra) -> str:
    import os

    return os.pathsep.join([str(extra), *sys.path])
