"""Fake plugins for tests: in-memory modules that register specs, and the catalogs holding them.

A test that needs a model, benchmark or component the installed plugins lack builds a plugin
here instead of writing the ``types.ModuleType`` + ``@hookimpl`` boilerplate again::

    catalog = catalog_with(("fragile", fake_plugin("fragile", models=[ModelSpec(...)])))

Tests of malformed hooks (a misspelt name, a wrong signature, a hook that raises or returns
specs) keep writing their hook by hand: the malformed hook is what they test.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Iterable
from typing import Any

from m6bench import Catalog, Recommender, hookimpl, load_catalog
from m6bench.registry.catalog import PluginFailureWarning

# hook kind -> the registration hook a plugin implements for it (see m6bench/hookspecs.py)
REGISTRATION_KINDS = ("datasets", "protocols", "benchmarks", "encoders", "fusions", "heads",
                      "models", "compressions")


def _registering(specs: tuple[Any, ...]):
    @hookimpl
    def register_all(register):
        for spec in specs:
            register(spec)

    return register_all


def fake_plugin(module_name: str, **specs_by_kind: Iterable[Any]) -> types.ModuleType:
    """An in-memory plugin module whose ``m6bench_register_<kind>`` hooks register the given
    specs, in order: ``fake_plugin("tiny", models=[ModelSpec(...)], benchmarks=[...])``.

    ``module_name`` becomes the module's ``__name__``, which the catalog records as the
    plugin's package (its provenance), so pick one no installed package uses.
    """
    unknown = set(specs_by_kind) - set(REGISTRATION_KINDS)
    if unknown:
        raise TypeError(f"fake_plugin got unknown spec kinds {sorted(unknown)}; use one of "
                        f"{', '.join(REGISTRATION_KINDS)}")
    module = types.ModuleType(module_name)
    for kind, specs in specs_by_kind.items():
        setattr(module, f"m6bench_register_{kind}", _registering(tuple(specs)))
    return module


def catalog_with(*plugins: tuple[str, object], entry_points: bool = True,
                 failures_expected: bool = False) -> Catalog:
    """``load_catalog`` with the given ``(name, plugin)`` pairs; ``failures_expected`` hides
    the :class:`PluginFailureWarning` of plugins a test breaks on purpose (their errors are
    still in ``catalog.plugins[name].error``)."""
    if not failures_expected:
        return load_catalog(list(plugins), entry_points=entry_points)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginFailureWarning)
        return load_catalog(list(plugins), entry_points=entry_points)


class PopularityModel(Recommender):
    """Scores every item by its training popularity; an epoch trains nothing.  Test models
    subclass it to fail, sleep or diverge on purpose while still ranking something."""

    iterative = True

    def __init__(self, train, config):
        super().__init__(train, config)
        self.register_buffer("popularity", train.item_popularity.clone())

    def fit_epoch(self, train, epoch):
        return {}

    def score(self, users):
        return self.popularity.expand(len(users), -1)
