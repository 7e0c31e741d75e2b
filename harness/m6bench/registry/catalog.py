"""The plugin manager factory and the catalog of everything plugins registered."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import traceback
import types
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy
import torch

from m6bench import hookspecs
from m6bench.data.specs import BenchmarkSpec, DatasetSpec
from m6bench.environment import plugin_entry_points
from m6bench.errors import ConfigError, PluginError, did_you_mean
from m6bench.evaluation.builtin_metrics import BUILTIN_METRICS
from m6bench.evaluation.metrics import MetricSpec, MetricTable
from m6bench.protocols.spec import ProtocolSpec
from m6bench.registry.provenance import distribution_version, plugin_identity
from m6bench.registry.registry import COMPONENT_FAMILIES, FAMILIES, Registry
from m6bench.training.compression import CompressionSpec
from m6bench.training.specs import ComponentSpec, ModelSpec

TRACE_ENV = "M6BENCH_TRACE_HOOKS"

# The core's own features, written as plugins through the same hooks (datasette's pattern).
BUILTIN_MODULES = (
    "m6bench.builtin.datasets",
    "m6bench.builtin.protocols",
    "m6bench.builtin.benchmarks",
    "m6bench.builtin.components",
    "m6bench.builtin.metrics",
    "m6bench.builtin.compressions",
)

REGISTRATION_HOOKS = {family.hook: family.name for family in FAMILIES}


@dataclass
class PluginInfo:
    """One plugin as ``m6bench plugins`` shows it."""

    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    package: str | None = None  # the top-level package its code lives in (hashed in records)

    @property
    def ok(self) -> bool:
        return self.error is None

    def code(self) -> dict[str, Any]:
        """Its code identity (distribution, version, source hash) for a record."""
        return plugin_identity(self.name, self.distribution, self.version, self.package)


class PluginFailureWarning(UserWarning):
    """A plugin failed to load or register; the others were loaded."""


class Catalog:
    """Everything the loaded plugins registered, by family, plus the plugin manager."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.plugins: dict[str, PluginInfo] = {}
        # the annotations name each family's type for readers and type checkers; FAMILIES
        # (registry.py) is the one list of them
        self.datasets: Registry[DatasetSpec]
        self.protocols: Registry[ProtocolSpec]
        self.benchmarks: Registry[BenchmarkSpec]
        self.encoders: Registry[ComponentSpec]
        self.fusions: Registry[ComponentSpec]
        self.heads: Registry[ComponentSpec]
        self.models: Registry[ModelSpec]
        self.metrics: Registry[MetricSpec]
        self.compressions: Registry[CompressionSpec]
        for family in FAMILIES:
            setattr(self, family.name, Registry(family.what, family.kind))

    @property
    def hook(self) -> Any:
        return self.pm.hook

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if not p.ok]

    # ------------------------------------------------------------------ lookups
    def metric_table(self) -> MetricTable:
        """Every registered metric: what runs compute, and which way each is better.

        The built-in metrics come first in their own order (the order evaluations list
        their values in), then plugins' metrics by name."""
        builtin = {spec.name: index for index, spec in enumerate(BUILTIN_METRICS)}
        entries = sorted(self.metrics, key=lambda e: (builtin.get(e.name, len(builtin)), e.name))
        return MetricTable(entry.value for entry in entries)

    def plugin(self, name: str) -> PluginInfo:
        info = self.plugins.get(name)
        if info is None:
            raise PluginError(
                did_you_mean(name, [p.name for p in self.plugins.values() if p.ok],
                             what="plugin")
                + " Run `m6bench plugins` to list installed plugins; a plugin package is "
                "found once it is pip-installed with an entry point in the 'm6bench' group."
            )
        if info.error:
            raise PluginError(
                f"Plugin {name!r} (distribution {info.distribution} {info.version}) failed to "
                f"load, so it cannot run: {info.error} Fix or reinstall that distribution."
            )
        return info

    def model(self, plugin: str, model: str | None = None) -> tuple[str, ModelSpec]:
        """The model ``model`` of ``plugin`` (its default model when ``model`` is None)."""
        self.plugin(plugin)
        owned = self.models.by_plugin(plugin)
        if not owned:
            raise PluginError(
                f"Plugin {plugin!r} registers no model (it provides: "
                f"{', '.join(self.plugins[plugin].hooks) or 'no hooks'}). "
                "Pick a model plugin from `m6bench models`."
            )
        if model is None:
            defaults = [e for e in owned if e.value.default] or (owned if len(owned) == 1 else [])
            if not defaults:
                raise PluginError(
                    f"Plugin {plugin!r} registers several models and marks none as default; "
                    f"pass --model with one of: {', '.join(e.name for e in owned)}."
                )
            return defaults[0].name, defaults[0].value
        names = [e.name for e in owned]
        if model not in names:
            raise PluginError(
                did_you_mean(model, names, what=f"model of plugin {plugin!r}")
            )
        return model, self.models.get(model)

    def component(self, family: str, name: str, **params: Any) -> torch.nn.Module:
        """Build a registered encoder, fusion or head by name with ``params``."""
        registries = {f.what: getattr(self, f.name) for f in COMPONENT_FAMILIES}
        registry = registries.get(family)
        if registry is None:
            raise PluginError(f"Unknown component family {family!r}; use "
                              f"{', '.join(registries)}.")
        spec = registry.get(name)
        unknown = sorted(set(params) - set(spec.defaults))
        if unknown:
            raise ConfigError(
                f"The {family} {name!r} takes no parameter {', '.join(map(repr, unknown))}; "
                f"it accepts: {', '.join(sorted(spec.defaults)) or 'nothing'}."
            )
        return spec.build(**{**spec.defaults, **params})

    def encoder(self, name: str, **params: Any) -> torch.nn.Module:
        return self.component("encoder", name, **params)

    def fusion(self, name: str, **params: Any) -> torch.nn.Module:
        return self.component("fusion", name, **params)

    def head(self, name: str, **params: Any) -> torch.nn.Module:
        return self.component("head", name, **params)


def _adder(registry: Registry[Any], plugin: str) -> Any:
    def register(value: Any) -> None:
        registry.add(value, plugin=plugin)

    return register


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    return sorted(
        caller.name for caller in (pm.get_hookcallers(plugin) or [])
    )


def _register(
    pm: pluggy.PluginManager, catalog: Catalog, plugin: object, info: PluginInfo
) -> None:
    unknown = sorted(
        attr for attr in dir(plugin)
        if attr.startswith("m6bench_") and not hasattr(hookspecs, attr)
    )
    if unknown:
        info.error = (
            f"it implements {', '.join(unknown)}, which no hook spec defines (misspelt?); "
            f"valid hooks: {', '.join(n for n in dir(hookspecs) if n.startswith('m6bench_'))}."
        )
        return
    try:
        pm.register(plugin, name=info.name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        info.error = f"its hooks do not match the hook specs: {exc}"
        return
    info.hooks = _hook_names(pm, plugin)


def load_catalog(
    plugins: Iterable[tuple[str, object]] = (), *, entry_points: bool = True
) -> Catalog:
    """Build a fresh plugin manager and catalog (nothing is loaded at import time).

    Loads the core's built-in plugins, then every ``m6bench`` entry point (unless
    ``entry_points`` is false or the name is in ``M6BENCH_DISABLE_PLUGINS``), then the
    ``(name, plugin)`` pairs given.  A plugin that fails to import or register is recorded
    in :attr:`Catalog.failures` with a warning; the others still load.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    catalog = Catalog(pm)
    core_version = distribution_version("m6bench") or "unknown"

    for module_name in BUILTIN_MODULES:
        module = __import__(module_name, fromlist=["_"])
        info = PluginInfo(module_name, "m6bench", core_version, package="m6bench")
        _register(pm, catalog, module, info)
        catalog.plugins[info.name] = info

    if entry_points:
        for ep in plugin_entry_points():
            if ep.name in catalog.plugins:
                continue
            dist = ep.dist.name if ep.dist else "unknown"
            info = PluginInfo(ep.name, dist, ep.dist.version if ep.dist else "unknown",
                              package=_top_package(ep.value.split(":")[0]))
            catalog.plugins[ep.name] = info
            try:
                module = ep.load()
            except Exception as exc:
                info.error = (
                    f"importing {ep.value!r} raised {type(exc).__name__}: {exc}\n"
                    + "".join(traceback.format_exception(exc)[-3:])
                ).strip()
                continue
            _register(pm, catalog, module, info)

    for name, plugin in plugins:
        module_name = (plugin.__name__ if isinstance(plugin, types.ModuleType)
                       else type(plugin).__module__)
        dist, version = _distribution_of(module_name)
        info = PluginInfo(name, dist, version, package=_top_package(module_name))
        catalog.plugins[name] = info
        _register(pm, catalog, plugin, info)

    for hook_name, attr in REGISTRATION_HOOKS.items():
        registry: Registry[Any] = getattr(catalog, attr)
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            info = catalog.plugins[impl.plugin_name]
            if info.error:
                continue
            try:
                impl.function(register=_adder(registry, impl.plugin_name))
            except PluginError as exc:
                if "Two plugins register" in str(exc):
                    raise
                info.error = str(exc)
            except Exception as exc:
                info.error = f"{hook_name} raised {type(exc).__name__}: {exc}"
        registry.freeze()

    for info in catalog.failures:
        warnings.warn(
            f"m6bench plugin {info.name!r} (distribution {info.distribution} {info.version}) "
            f"failed and was skipped: {info.error.splitlines()[0] if info.error else ''}",
            PluginFailureWarning,
            stacklevel=2,
        )
        if pm.is_registered(pm.get_plugin(info.name)):
            pm.unregister(name=info.name)

    if os.environ.get(TRACE_ENV):
        pm.trace.root.setwriter(lambda message: sys.stderr.write(message))
        pm.enable_tracing()
    return catalog


def _top_package(module_name: str) -> str | None:
    return module_name.split(".")[0] or None


def _distribution_of(module_name: str) -> tuple[str, str]:
    top = module_name.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        return dist, distribution_version(dist) or "unknown"
    return "local", "unknown"
