"""What one kit run shares, and the state each checked subject carries between its rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from m6bench import (
    Catalog,
    ComponentSpec,
    ModelSpec,
    PluginInfo,
    PreparedBenchmark,
    Recommender,
    TrainSet,
)
from m6bench.testing.bench import KIT_BENCHMARK, kit_benchmarks


@dataclass
class Kit:
    """One run of the kit on one plugin: where and how every subject is checked."""

    catalog: Catalog
    plugin: str
    device: torch.device
    seed: int
    samples: int
    _benches: dict[str, tuple[PreparedBenchmark, PreparedBenchmark]] = field(
        default_factory=dict)

    def benchmarks(self, spec: ModelSpec) -> tuple[PreparedBenchmark, PreparedBenchmark]:
        """The kit benchmark (and its held-out variant) cut by a protocol the model takes."""
        protocol = KIT_BENCHMARK.protocol
        if spec.protocols is not None and protocol not in spec.protocols:
            protocol = spec.protocols[0]
        if protocol not in self._benches:
            self._benches[protocol] = kit_benchmarks(self.catalog, protocol, self.seed,
                                                     self.device)
        return self._benches[protocol]


@dataclass
class PackageCase:
    kit: Kit
    info: PluginInfo | None

    subject = "package"


@dataclass
class HookCase:
    kit: Kit
    hook: str
    function: Any

    @property
    def subject(self) -> str:
        return f"hook {self.hook}"


@dataclass
class ComponentCase:
    kit: Kit
    family: str
    name: str
    spec: ComponentSpec
    module: torch.nn.Module | None = None
    # Runs the family's conventional input through a module; None where it has none.
    probe: Any = None

    @property
    def subject(self) -> str:
        return f"{self.family} {self.name!r}"


@dataclass
class Trained:
    model: Recommender
    train: TrainSet
    scores: torch.Tensor | None = None


@dataclass
class ModelCase:
    kit: Kit
    name: str
    spec: ModelSpec
    config: dict[str, Any] = field(default_factory=dict)
    bench: PreparedBenchmark | None = None
    variant: PreparedBenchmark | None = None
    first: Trained | None = None

    @property
    def subject(self) -> str:
        return f"model {self.name!r}"
