"""m6bench: a fair, fast, reproducible benchmarking harness for recommender systems.

The public API, for notebooks and for plugin packages.  Plugins import only these names
(an import contract checks it); everything in underscore modules is private.
"""

from __future__ import annotations

from m6bench._dataset import FEATURE_KINDS, Dataset
from m6bench._model import Recommender, TrainSet
from m6bench._plugins import Catalog, PluginInfo, load_catalog
from m6bench._protocols import Split
from m6bench._run import RunFailed, run
from m6bench._specs import (
    TASKS,
    BenchmarkSpec,
    ComponentSpec,
    DatasetSpec,
    LoadContext,
    ModelSpec,
    ProtocolSpec,
)
from m6bench._tensor import csr_row_entries, row_gradient
from m6bench.errors import (
    ConfigError,
    DatasetError,
    LedgerError,
    M6BenchError,
    PluginError,
    ProtocolError,
)
from m6bench.hookspecs import hookimpl

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
