"""Dataset options as they arrive from ``--dataset-opt key=value``: parsed, checked, explained.

Values come as strings from the command line and as typed values from benchmark specs, so
every reader here accepts both and names the key and a valid example when it refuses one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from m6bench.data.dataset import DEFAULT_DUPLICATES
from m6bench.errors import DatasetError

# What the options of every loader that reads interactions hold: the duplicates policy (a
# content option, applied by Dataset.from_frames).  The synthetic generator makes no
# duplicates, so it has no such option.
COMMON_DEFAULTS = {"duplicates": DEFAULT_DUPLICATES}



def as_bool(options: Mapping[str, Any], key: str) -> bool:
    """Option values arrive as strings from ``--dataset-opt key=value``; accept both forms."""
    value = options.get(key)
    if isinstance(value, bool) or value is None:
        return bool(value)
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise DatasetError(
        f"Dataset option {key}={value!r} is not a yes/no value; use {key}=true or {key}=false."
    )


def as_number(
    options: Mapping[str, Any], key: str, kind: type, low: float, high: float
) -> Any:
    value = options.get(key)
    try:
        number = kind(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise DatasetError(
            f"Dataset option {key}={value!r} is not {'an integer' if kind is int else 'a number'};"
            f" pass a value between {low} and {high}, e.g. --dataset-opt {key}={kind(low)}."
        ) from None
    if not low <= number <= high:
        raise DatasetError(
            f"Dataset option {key}={number} is out of range; it must lie between {low} and "
            f"{high}."
        )
    return number


def optional_text(options: Mapping[str, Any], key: str) -> str | None:
    """A string option where None, '' and 'none' mean 'not used'."""
    value = options.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return None if text == "" or text.lower() == "none" else text


def required_path(options: Mapping[str, Any], loader: str, what: str = "file") -> Path:
    text = optional_text(options, "path")
    if text is None:
        raise DatasetError(
            f"The {loader!r} dataset loader needs the option path (the {what} to read); "
            f"pass --dataset-opt path=PATH, or give the path itself as the dataset name."
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise DatasetError(
            f"Missing data {what}: {path} does not exist (resolved from the current folder "
            f"{Path.cwd()}). Check the spelling, or point the path option at an existing {what}."
        )
    return path


def one_line(error: BaseException) -> str:
    """Library messages (pandas, urllib) may span lines; errors here are one paragraph."""
    return " ".join(str(error).split())

