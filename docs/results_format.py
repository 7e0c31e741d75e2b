"""How the README's result tables write numbers, shared by ``docs/results.py`` and its
sibling renderers (boards, m6-rec, speed)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate


def four(value: float | None) -> str:
    """A metric as the README shows it: four decimals, empty when missing."""
    return "" if value is None else f"{value:.4f}"


def mean_sd(values: Sequence[float | None]) -> str:
    """``mean ± sd`` over the seeds that have a value (one value: itself)."""
    numbers = [v for v in values if v is not None]
    if len(numbers) < 2:
        return four(numbers[0]) if numbers else ""
    return f"{statistics.mean(numbers):.4f} ± {statistics.stdev(numbers):.4f}"


def markdown(headers: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    """A GitHub table, every cell as written (no number parsing)."""
    return tabulate(body, headers=list(headers), tablefmt="github", disable_numparse=True)
