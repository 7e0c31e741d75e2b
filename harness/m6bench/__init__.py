"""m6bench: a fair, fast, reproducible benchmarking harness for recommender systems.

The public API, for notebooks and for plugin packages.  Plugins import only these names,
``m6bench.testing`` (the conformance kit) and ``m6bench.hookspecs`` (an import contract
checks it); the subpackages (data, protocols, evaluation, training, registry, runs, sweeps,
board, cli) are the harness's own and may change between versions.
"""

from __future__ import annotations

from m6bench.data.dataset import FEATURE_KINDS, Dataset
from m6bench.data.specs import TASKS, BenchmarkSpec, DatasetSpec, LoadContext
from m6bench.data.split import Split
from m6bench.data.trainset import TrainSet
from m6bench.errors import (
    ConfigError,
    DatasetError,
    LedgerError,
    M6BenchError,
    PluginError,
    ProtocolError,
)
from m6bench.hookspecs import hookimpl
from m6bench.protocols.spec import ProtocolSpec
from m6bench.registry.catalog import Catalog, PluginInfo, load_catalog
from m6bench.runs.run import RunFailed, run
from m6bench.tensor import csr_row_entries, row_gradient
from m6bench.training.recommender import Recommender
from m6bench.training.specs import ComponentSpec, ModelSpec

__all__ = [
    "FEATURE_KINDS",
    "TASKS",
    "BenchmarkSpec",
    "Catalog",
    "ComponentSpec",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "LedgerError",
    "LoadContext",
    "M6BenchError",
    "ModelSpec",
    "PluginError",
    "PluginInfo",
    "ProtocolError",
    "ProtocolSpec",
    "Recommender",
    "RunFailed",
    "Split",
    "TrainSet",
    "csr_row_entries",
    "hookimpl",
    "load_catalog",
    "row_gradient",
    "run",
]

__version__ = "0.1.0"
