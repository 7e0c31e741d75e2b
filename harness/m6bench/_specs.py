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


@dataclass(frozen=True)
class BenchmarkSpec:
    """A pinned contract: dataset + protocol + tasks + metrics + candidate set.

    Its :attr:`version` hashes every field, so changing any part makes a new benchmark.
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

    @property
    def version(self) -> str:
        contract = self.to_dict()
        contract.pop("description")
        blob = json.dumps(contract, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]
