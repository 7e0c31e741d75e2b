"""What a protocol is: the spec plugins register."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from m6bench.data.dataset import Dataset
    from m6bench.data.split import Split


@dataclass(frozen=True)
class ProtocolSpec:
    """A train/valid/test cut: ``cut(dataset, seed, options) -> Split``, deterministic."""

    name: str
    cut: Callable[[Dataset, int, Mapping[str, Any]], Split]
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
