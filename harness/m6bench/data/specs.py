"""What a dataset loader and a benchmark are: typed specs plugins register."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from m6bench.data.dataset import Dataset


TASKS = ("ranking", "rating", "binary")


@dataclass(frozen=True)
class LoadContext:
    """What a dataset loader may use: where real data and caches live."""

    data_dir: str | None
    cache_dir: str
    offline: bool = True


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset loader.

    ``load(options, context)`` returns a :class:`~m6bench.Dataset`; ``options`` are the
    user's ``--dataset-opt key=value`` pairs merged over ``defaults``.  ``fingerprint``
    (optional) returns a cheap key of the source (file hashes, generator parameters) so
    the harness can serve the Arrow cache without parsing; without it nothing is cached.
    A loader that reads interactions takes the option ``duplicates`` (default ``"last"``;
    ``first``, ``sum``, ``error``) and passes it to ``Dataset.from_frames(duplicates=...)``.
    Options only change a benchmark's version through the content they load, so a path or
    a download flag never does.
    """

    name: str
    load: Callable[[Mapping[str, Any], LoadContext], Dataset]
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Callable[[Mapping[str, Any], LoadContext], str] | None = None


# The fields of a benchmark that pin how it is cut and scored (everything but its name, its
# description and where its data comes from): with the loaded data, they make the version.
CONTRACT_FIELDS = ("protocol", "protocol_options", "tasks", "ks", "valid_metric",
                   "rating_threshold", "binary_threshold", "kcore", "candidates")


@dataclass(frozen=True)
class BenchmarkSpec:
    """A pinned contract: dataset + protocol + tasks + metrics + candidate set.

    A benchmark's version identifies what it measures: it hashes the content of the loaded
    data (its content fingerprint and feature kinds) and the contract fields (protocol and
    its options, tasks, ks, valid metric, rating and binary thresholds, k-core, candidates), never a
    path or the route that loaded the data.  It needs the data, so it is not a property of
    the spec: see ``m6bench.runs.prepare.benchmark_version``.  :attr:`contract_hash` hashes
    the contract fields alone.

    ``rating_threshold`` keeps only the interactions rated at or above it (an implicit-feedback
    view of rated data); ``binary_threshold`` labels a rating at or above it positive for the
    binary task, which needs one (set only then, so it leaves other versions alone).
    """

    name: str
    dataset: str
    protocol: str = "random"
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    protocol_options: Mapping[str, Any] = field(default_factory=dict)
    tasks: tuple[str, ...] = ("ranking",)
    ks: tuple[int, ...] = (5, 10, 20)
    valid_metric: str = "ndcg@10"
    rating_threshold: float | None = None
    binary_threshold: float | None = None
    kcore: int = 0
    candidates: str = "all"
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dataset_options"] = dict(self.dataset_options)
        data["protocol_options"] = dict(self.protocol_options)
        data["tasks"] = list(self.tasks)
        data["ks"] = list(self.ks)
        return data

    def contract(self) -> dict[str, Any]:
        """The contract fields, normalised (lists, float threshold) so equal means equal."""
        data = self.to_dict()
        contract = {key: data[key] for key in CONTRACT_FIELDS}
        contract["ks"] = [int(k) for k in self.ks]
        contract["kcore"] = int(self.kcore)
        if self.rating_threshold is not None:
            contract["rating_threshold"] = float(self.rating_threshold)
        # only when set, so the benchmarks that have none keep their versions
        if self.binary_threshold is not None:
            contract["binary_threshold"] = float(self.binary_threshold)
        else:
            del contract["binary_threshold"]
        return contract

    @property
    def contract_hash(self) -> str:
        """sha256 (12 hex digits) of :meth:`contract`: not the version, which hashes the data
        too."""
        blob = json.dumps(self.contract(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]
