"""What plugins register: typed, documented specs checked by the registry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    import torch

    from m6bench._dataset import Dataset
    from m6bench._model import Recommender, TrainSet
    from m6bench._protocols import Split

TASKS = ("ranking", "rating", "binary")


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


@dataclass(frozen=True)
class LoadContext:
    """What a dataset loader may use: where real data and caches live."""

    data_dir: str | None
    cache_dir: str
    offline: bool = True


@dataclass(frozen=True)
class ProtocolSpec:
    """A train/valid/test cut: ``cut(dataset, seed, options) -> Split``, deterministic."""

    name: str
    cut: Callable[[Dataset, int, Mapping[str, Any]], Split]
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComponentSpec:
    """One encoder, fusion or task head: ``build(**params) -> torch.nn.Module``.

    ``family`` is ``"encoder"``, ``"fusion"`` or ``"head"``.  ``defaults`` lists every
    parameter ``build`` accepts with its default; the caller's values override them.
    """

    family: str
    name: str
    build: Callable[..., torch.nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A model recipe.

    ``build(train, config)`` returns a :class:`~m6bench.Recommender` for the training data;
    ``config`` holds every key of ``defaults`` (possibly overridden).  ``search_space(trial)``
    returns a partial config sampled from an Optuna trial.  ``tasks`` lists the tasks the
    model supports (``ranking``, ``rating``, ``binary``); ``protocols`` the protocols it
    supports (``None`` means all).  A plugin that registers several models marks one
    ``default=True``.  ``components`` names the encoders, fusions and heads the recipe
    composes (documentation and the ``models`` listing).
    """

    name: str
    build: Callable[[TrainSet, Mapping[str, Any]], Recommender]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    search_space: Callable[[optuna.Trial], dict[str, Any]] | None = None
    tasks: tuple[str, ...] = ("ranking",)
    protocols: tuple[str, ...] | None = None
    default: bool = False
    description: str = ""
    paper: str = ""
    components: tuple[str, ...] = ()


# The fields of a benchmark that pin how it is cut and scored (everything but its name, its
# description and where its data comes from): with the loaded data, they make the version.
CONTRACT_FIELDS = ("protocol", "protocol_options", "tasks", "ks", "valid_metric",
                   "rating_threshold", "kcore", "candidates")


@dataclass(frozen=True)
class BenchmarkSpec:
    """A pinned contract: dataset + protocol + tasks + metrics + candidate set.

    A benchmark's version identifies what it measures: it hashes the content of the loaded
    data (its content fingerprint and feature kinds) and the contract fields (protocol and
    its options, tasks, ks, valid metric, rating threshold, k-core, candidates), never a
    path or the route that loaded the data.  It needs the data, so it is not a property of
    the spec: see ``m6bench._benchmark.benchmark_version``.  :attr:`contract_hash` hashes
    the contract fields alone.
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
        return contract

    @property
    def contract_hash(self) -> str:
        """sha256 (12 hex digits) of :meth:`contract`: not the version, which hashes the data
        too."""
        blob = json.dumps(self.contract(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]
