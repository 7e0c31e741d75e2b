"""Reading loosely typed record fields: a string, a finite number, a timestamp."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def mean(values: Iterable[Any]) -> float | None:
    numbers = [v for v in (number(x) for x in values) if v is not None]
    return sum(numbers) / len(numbers) if numbers else None


def when(record: Mapping[str, Any]) -> str:
    return text(record.get("ended_at")) or text(record.get("started_at"))

