"""Resolved configuration: defaults < config file < command-line overrides; hashed."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomllib

from m6bench.errors import ConfigError, did_you_mean

# Keys the harness's training loop reads; a model's defaults may override their values.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "patience": 10,
    "eval_every": 1,
    "eval_batch_size": 2048,
}


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"lr=0.01"`` -> ``("lr", 0.01)``; values are JSON when they parse, else strings."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"--set {text!r} is not of the form key=value; for example --set lr=0.01."
        )
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    return dict(parse_assignment(item) for item in items)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"Config file {str(path)!r} does not exist; check the path.")
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid TOML: {exc}.") from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("model", "train"):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def _coerce(key: str, value: Any, default: Any, origin: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
    else:
        return value
    raise ConfigError(
        f"{origin} sets {key}={value!r}, but {key} takes a {type(default).__name__} "
        f"(default {default!r}); for example --set {key}={json.dumps(default)}."
    )


def resolve_config(
    model_defaults: Mapping[str, Any],
    *,
    file_values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    model_name: str = "model",
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Merge training defaults, model defaults, a config file and overrides, type-checked.

    A key that neither the training loop nor the model accepts is an error that lists the
    accepted keys; so is a value outside the key's declared ``choices``.
    """
    defaults = {**TRAIN_DEFAULTS, **dict(model_defaults)}
    resolved = dict(defaults)
    for origin, values in (("the config file", file_values or {}), ("--set", overrides or {})):
        for key, value in values.items():
            if key not in defaults:
                model_keys = sorted(k for k in model_defaults if k not in TRAIN_DEFAULTS)
                raise ConfigError(
                    f"{origin} sets {key!r}, which no component of {model_name!r} accepts. "
                    f"Model keys: {', '.join(model_keys) or 'none'}; training keys: "
                    f"{', '.join(sorted(TRAIN_DEFAULTS))}."
                )
            resolved[key] = _coerce(key, value, defaults[key], origin)
    for key, value in resolved.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value} is not a finite number.")
    for key, allowed in (choices or {}).items():
        if key in resolved and resolved[key] not in allowed:
            raise ConfigError(
                did_you_mean(str(resolved[key]), [str(a) for a in allowed],
                             what=f"value of {key!r} for {model_name!r}")
                + f" For example --set {key}={allowed[0]}."
            )
    return resolved


def config_hash(config: Mapping[str, Any]) -> str:
    blob = json.dumps(dict(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
