"""The checks of the plugin package as a whole, and of its registration hooks.

The catalog already loaded the plugin; these read what it recorded (the distribution and
the load error, which names the step that failed) rather than loading it again.
"""

from __future__ import annotations

from m6bench.errors import did_you_mean
from m6bench.testing.cases import HookCase, PackageCase
from m6bench.testing.report import RuleBroken, describe, short


def _error(case: PackageCase) -> str:
    assert case.info is not None, "the installed check runs first"
    return case.info.error or ""


def check_installed(case: PackageCase) -> str:
    if case.info is None:
        raise RuleBroken(
            "installed", did_you_mean(case.kit.plugin, case.kit.catalog.plugins, what="plugin"),
            "pip-install the plugin's distribution (`pip install -e PATH` while developing) "
            "with an entry point `NAME = \"package\"` under "
            "`[project.entry-points.m6bench]` in its pyproject.toml, then check "
            "`m6bench plugins` lists it.")
    return f"distribution {case.info.distribution} {case.info.version}"


def check_imports(case: PackageCase) -> None:
    error = _error(case)
    if error.startswith("importing"):
        raise RuleBroken(
            "imports", error,
            "make the module importable on its own: run `python -c \"import MODULE\"` "
            "with the module the entry point names, install any missing dependency (and "
            "declare it in the plugin's pyproject.toml), and fix the line the traceback "
            "points at.")


def check_hook_signatures(case: PackageCase) -> str | None:
    error = _error(case)
    if "hook specs" in error or "no hook spec defines" in error:
        raise RuleBroken(
            "hook-signatures", error,
            "name each hook function exactly as in m6bench.hookspecs and take only the "
            "spec's arguments (e.g. `def m6bench_register_models(register):`); see the "
            "hook reference in docs/writing-a-plugin.md.")
    if error:
        return None
    assert case.info is not None
    return ", ".join(case.info.hooks) or "no hooks"


def check_registers(case: PackageCase) -> None:
    error = _error(case)
    if error:
        raise RuleBroken(
            "registers", error,
            "call `register(...)` once per thing with a spec of the hook's type "
            "(m6bench.ModelSpec for models, m6bench.ComponentSpec for components) and a "
            "name no other plugin uses; the registration hook must not raise.")


def check_hook_returns(case: HookCase) -> None:
    """Registration hooks' return values are ignored, so a hook that *returns* its specs
    (a common slip when coming from other plugin systems) registers nothing."""
    try:
        returned = case.function(register=lambda value: None)
    except Exception as exc:  # it ran once already; report, do not crash
        raise RuleBroken("registers", f"calling it again raised {describe(exc)}",
                         "make registration hooks free of side effects that can fail "
                         "on a second call: only build specs and call register().") from exc
    if returned is not None:
        raise RuleBroken("hook-returns",
                         f"it returned {short(returned)}; the host ignores return "
                         "values, so nothing returned is registered",
                         "call `register(spec)` for each spec inside the hook and "
                         "return nothing.")
