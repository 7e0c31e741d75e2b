"""The ``spec-fields`` rule: registered specs are well formed before anything is built."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from m6bench import TASKS, M6BenchError, resolve_config
from m6bench.testing.cases import ComponentCase, ModelCase
from m6bench.testing.report import RuleBroken, short


def check_component_spec(case: ComponentCase) -> None:
    spec, family = case.spec, case.family
    if spec.family != family:
        raise RuleBroken(
            "spec-fields",
            f"it was registered through m6bench_register_{family}s but says "
            f"family={spec.family!r}",
            f"set ComponentSpec(family={family!r}, ...) or register it through the hook "
            f"of its family.")
    json_defaults(spec.defaults, "ComponentSpec.defaults")
    if not callable(spec.build):
        raise RuleBroken("spec-fields", f"its build is {short(spec.build)}, not callable",
                         "pass the module class or a factory function as build.")
    _accepts(spec.build, spec.defaults, "ComponentSpec.build")


def check_model_spec(case: ModelCase) -> None:
    """Check the spec's fields and keep its resolved defaults as the case's config."""
    spec = case.spec
    unknown = [t for t in spec.tasks if t not in TASKS]
    if not spec.tasks or unknown:
        raise RuleBroken("spec-fields", f"tasks={spec.tasks!r} has no known task or "
                         f"unknown ones {unknown}",
                         f"list tasks from {', '.join(TASKS)}, e.g. tasks=('ranking',).")
    if not callable(spec.build):
        raise RuleBroken("spec-fields", f"build is {short(spec.build)}, not callable",
                         "pass the Recommender subclass (or a factory) as build.")
    if spec.search_space is not None and not callable(spec.search_space):
        raise RuleBroken("spec-fields", f"search_space is {short(spec.search_space)}",
                         "pass a function trial -> dict of config values, or None.")
    json_defaults(spec.defaults, "ModelSpec.defaults")
    _defaults_within_choices(spec.defaults, spec.choices)
    try:
        resolve_config(spec.defaults, model_name=case.name, choices=spec.choices)
    except M6BenchError as exc:
        raise RuleBroken("spec-fields", f"its defaults do not resolve as a config: {exc}",
                         "give every default a finite, JSON-typed value.") from exc
    try:  # what the kit trains: the defaults with the spec's kit overrides
        case.config = resolve_config(spec.defaults, overrides=spec.kit_overrides,
                                     model_name=case.name, choices=spec.choices)
    except M6BenchError as exc:
        raise RuleBroken("spec-fields", f"its kit_overrides {dict(spec.kit_overrides)} do not "
                         f"resolve over its defaults: {exc}",
                         "name only keys of the defaults in kit_overrides, with values of "
                         "the defaults' types.") from exc
    stray = sorted(set(spec.choices) - set(case.config))
    if stray:
        raise RuleBroken(
            "spec-fields", f"ModelSpec.choices names {stray}, which are not config keys, so "
            "those choices constrain nothing",
            "list choices only for keys of the model's defaults (or training keys), spelt "
            "exactly as in defaults.")


def _defaults_within_choices(defaults: Mapping[str, Any],
                             choices: Mapping[str, Any]) -> None:
    """Each key with choices has a non-empty, JSON-typed list of them holding its default."""
    if not isinstance(choices, Mapping):
        raise RuleBroken("spec-fields", f"ModelSpec.choices is {short(choices)}, not a "
                         "mapping", "pass a dict of config keys to tuples of allowed values.")
    for key, allowed in choices.items():
        if isinstance(allowed, (str, bytes)) or not isinstance(allowed, (list, tuple)) \
                or not allowed:
            raise RuleBroken("spec-fields", f"ModelSpec.choices[{key!r}] is {short(allowed)}",
                             "give each key a non-empty tuple of allowed values, e.g. "
                             "choices={'fusion': ('attention', 'concat')}.")
        json_defaults({key: list(allowed)}, f"ModelSpec.choices[{key!r}]")
        if key in defaults and defaults[key] not in allowed:
            raise RuleBroken(
                "spec-fields", f"its default {key}={defaults[key]!r} is not one of its "
                f"choices {list(allowed)}, so a run with the defaults is refused",
                f"make defaults[{key!r}] one of choices[{key!r}], or add it to the choices.")


def json_defaults(defaults: Any, what: str) -> None:
    if not isinstance(defaults, Mapping):
        raise RuleBroken("spec-fields", f"{what} is {short(defaults)}, not a mapping",
                         "pass a dict of parameter names to default values.")
    try:
        json.dumps(dict(defaults), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RuleBroken("spec-fields", f"{what} is not JSON-serialisable ({exc})",
                         "use numbers, strings, booleans, lists or None: every resolved "
                         "config is hashed and written to the ledger.") from exc


def _accepts(build: Callable[..., Any], defaults: Mapping[str, Any], what: str) -> None:
    try:
        signature = inspect.signature(build)
    except (TypeError, ValueError):
        return  # builtins without a signature: the build itself will tell
    try:
        signature.bind(**defaults)
    except TypeError as exc:
        raise RuleBroken("spec-fields", f"{what} cannot take its defaults "
                         f"{sorted(defaults)}: {exc}",
                         "list exactly the parameters build() takes in defaults, each with "
                         "a default value.") from exc
