"""A typed registry of named things, each owned by one plugin, and the table of the
families plugins register (:data:`FAMILIES`), which everything that lists them reads."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from m6bench.data.specs import BenchmarkSpec, DatasetSpec
from m6bench.errors import PluginError, did_you_mean
from m6bench.evaluation.metrics import MetricSpec
from m6bench.protocols.spec import ProtocolSpec
from m6bench.training.compression import CompressionSpec
from m6bench.training.specs import ComponentSpec, ModelSpec

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    plugin: str


class Registry(Generic[T]):
    """Names -> values of one type; rejects duplicates naming both plugins."""

    def __init__(self, what: str, kind: type) -> None:
        self.what = what
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._frozen = False

    def add(self, value: T, *, plugin: str) -> None:
        if self._frozen:
            raise PluginError(
                f"Plugin {plugin!r} registered a {self.what} after start-up; "
                "register it from the plugin's registration hook instead."
            )
        if not isinstance(value, self.kind):
            raise PluginError(
                f"Plugin {plugin!r} registered {value!r} as a {self.what}, but a "
                f"{self.what} must be a {self.kind.__name__}; wrap it in "
                f"m6bench.{self.kind.__name__}(...)."
            )
        name = value.name  # type: ignore[attr-defined]
        if not isinstance(name, str) or not name:
            raise PluginError(f"Plugin {plugin!r} registered a {self.what} with no name.")
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(
                f"Two plugins register the {self.what} {name!r}: {other!r} and {plugin!r}. "
                f"Uninstall or disable one of them (M6BENCH_DISABLE_PLUGINS={plugin}), "
                "or rename the one you own."
            )
        self._entries[name] = Entry(name, value, plugin)

    def freeze(self) -> None:
        self._frozen = True

    def get(self, name: str) -> T:
        return self.entry(name).value

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise PluginError(did_you_mean(name, self._entries, what=self.what)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def by_plugin(self, plugin: str) -> list[Entry[T]]:
        return [e for e in self if e.plugin == plugin]


@dataclass(frozen=True)
class Family:
    """One family of registered things: the catalog's attribute ``name`` holds a
    :class:`Registry` of ``kind`` values, filled through the hook :attr:`hook`."""

    name: str  # plural: the catalog attribute and the hook's suffix ("encoders")
    what: str  # one of them, in messages and in ``Catalog.component`` ("encoder")
    kind: type
    component: bool = False  # a model part built by name with parameters

    @property
    def hook(self) -> str:
        return f"m6bench_register_{self.name}"


# In registration order: a benchmark names a dataset and a protocol, a model its components.
FAMILIES: tuple[Family, ...] = (
    Family("datasets", "dataset", DatasetSpec),
    Family("protocols", "protocol", ProtocolSpec),
    Family("benchmarks", "benchmark", BenchmarkSpec),
    Family("encoders", "encoder", ComponentSpec, component=True),
    Family("fusions", "fusion", ComponentSpec, component=True),
    Family("heads", "head", ComponentSpec, component=True),
    Family("models", "model", ModelSpec),
    Family("metrics", "metric", MetricSpec),
    Family("compressions", "compression", CompressionSpec),
)
COMPONENT_FAMILIES = tuple(f for f in FAMILIES if f.component)
