"""Running the rules: every subject a plugin registers, each rule in its subject's order."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from m6bench import Catalog, PluginError, PluginFailureWarning, hookspecs, load_catalog
from m6bench.errors import did_you_mean
from m6bench.testing.bench import preserved_random_state
from m6bench.testing.cases import ComponentCase, HookCase, Kit, ModelCase, PackageCase
from m6bench.testing.report import (
    FAIL,
    PASS,
    SKIP,
    ConformanceError,
    ConformanceReport,
    NotChecked,
    RuleBroken,
)
from m6bench.testing.rules import (
    COMPONENT_CHAIN,
    HOOK_CHAIN,
    MODEL_AFTER_CHAIN,
    MODEL_CHAIN,
    PACKAGE_CHAIN,
    Rule,
)

# The hooks that register things, in the order the specs define them.
REGISTRATION_HOOKS = tuple(name for name in vars(hookspecs)
                           if name.startswith("m6bench_register_"))


def check_plugin(
    name: str,
    *,
    catalog: Catalog | None = None,
    device: str | torch.device = "cpu",
    models: Sequence[str] | None = None,
    seed: int = 0,
    samples: int = 3,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Check every model and component plugin ``name`` registers against :data:`RULES`.

    :param name: the plugin's name (its entry-point name, as ``m6bench plugins`` shows it).
    :param catalog: the catalog to look it up in; by default every installed plugin is
        loaded, exactly as ``m6bench run`` would.
    :param device: where models are built and trained; the ``device-moves`` rule also moves
        them to a second device when one is available (CUDA next to the CPU).
    :param models: check only these models of the plugin (default: all of them).
    :param seed: the seed of every build; ``save-load`` also builds under ``seed + 1``.
    :param samples: how many search-space configs to sample and train per model.
    :param raise_on_failure: raise :class:`ConformanceError` when any rule is broken.
    :return: the report of every rule checked.
    """
    if catalog is None:
        with warnings.catch_warnings():
            # failures are findings here, not warnings
            warnings.simplefilter("ignore", PluginFailureWarning)
            catalog = load_catalog()
    kit = Kit(catalog, name, torch.device(device), seed=seed, samples=samples)
    report = ConformanceReport(name, "unknown", "unknown", str(kit.device))
    with preserved_random_state():
        _check_everything(kit, report, models)
    if raise_on_failure and report.failures:
        raise ConformanceError(report)
    return report


def assert_plugin_conforms(name: str, **options: Any) -> ConformanceReport:
    """:func:`check_plugin` for pytest: a broken rule fails the test with the kit's message
    alone (no traceback into the kit), so the output says what to fix and nothing else."""
    report = check_plugin(name, raise_on_failure=False, **options)
    if report.failures:
        import pytest

        pytest.fail(report.failure_text(), pytrace=False)
    return report


def _check_everything(kit: Kit, report: ConformanceReport,
                      only_models: Sequence[str] | None) -> None:
    info = kit.catalog.plugins.get(kit.plugin)
    if info is not None:
        report.distribution, report.version = info.distribution, info.version
    # A plugin that did not load registered nothing: report why, and nothing after it.
    if not _run_chain(report, PackageCase(kit, info), "package", PACKAGE_CHAIN,
                      skip_rest=False):
        return
    for hook_name in REGISTRATION_HOOKS:
        for impl in getattr(kit.catalog.hook, hook_name).get_hookimpls():
            if impl.plugin_name == kit.plugin:
                _run_chain(report, HookCase(kit, hook_name, impl.function), "hook", HOOK_CHAIN,
                           skip_rest=False)
    catalog = kit.catalog
    for family, registry in (("encoder", catalog.encoders), ("fusion", catalog.fusions),
                             ("head", catalog.heads)):
        for entry in registry.by_plugin(kit.plugin):
            _run_chain(report, ComponentCase(kit, family, entry.name, entry.value),
                       "component", COMPONENT_CHAIN)
    for entry in _owned_models(kit, only_models):
        case = ModelCase(kit, entry.name, entry.value)
        if _run_chain(report, case, "model", MODEL_CHAIN, rest=MODEL_AFTER_CHAIN):
            _run_independent(report, case, "model", MODEL_AFTER_CHAIN)


def _owned_models(kit: Kit, only_models: Sequence[str] | None) -> list[Any]:
    owned = kit.catalog.models.by_plugin(kit.plugin)
    if only_models is None:
        return owned
    names = [e.name for e in owned]
    for wanted in only_models:
        if wanted not in names:
            raise PluginError(did_you_mean(wanted, names, what=f"model of plugin {kit.plugin!r}"))
    return [e for e in owned if e.name in only_models]


def _run_chain(report: ConformanceReport, case: Any, kind: str, chain: Sequence[Rule], *,
               rest: Sequence[Rule] = (), skip_rest: bool = True) -> bool:
    """Check ``chain`` in order, each rule needing the one before; at the first broken rule
    stop, and (with ``skip_rest``) record the chain's and ``rest``'s unchecked rules as
    skipped.  True when no rule broke."""
    for rule in chain:
        try:
            _check(report, case, kind, rule)
        except RuleBroken as error:
            report.record(case.subject, error.rule, FAIL, error.detail, error.fix)
            if skip_rest:
                done = report.recorded(case.subject)
                for left in (*chain, *rest):
                    if left.id not in done:
                        report.record(case.subject, left.id, SKIP,
                                      f"the {error.rule!r} rule is broken")
            return False
    return True


def _run_independent(report: ConformanceReport, case: Any, kind: str,
                     rules: Sequence[Rule]) -> None:
    """Check every rule, a broken one stopping only the rules that need it."""
    held: set[str] = set()
    for rule in rules:
        if rule.needs and rule.needs not in held:
            report.record(case.subject, rule.id, SKIP,
                          f"{rule.needs_why}, which needs the {rule.needs!r} rule to hold")
            continue
        try:
            if _check(report, case, kind, rule):
                held.add(rule.id)
        except RuleBroken as error:
            report.record(case.subject, error.rule, FAIL, error.detail, error.fix)


def _check(report: ConformanceReport, case: Any, kind: str, rule: Rule) -> bool:
    """Record ``rule`` as held or not checked; True when it held.  RuleBroken propagates."""
    try:
        detail = rule.check_of(kind)(case)
    except NotChecked as reason:
        report.record(case.subject, rule.id, SKIP, reason.reason)
        return False
    report.record(case.subject, rule.id, PASS, detail or "")
    return True
