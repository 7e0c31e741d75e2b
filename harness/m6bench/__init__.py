"""m6bench: a fair, fast, reproducible benchmarking harness for recommender systems.

The public API, for notebooks and for plugin packages.  Plugins import only these names,
``m6bench.testing`` (the conformance kit) and ``m6bench.hookspecs`` (an import contract
checks it); the subpackages (data, protocols, evaluation, training, registry, runs, sweeps,
board, cli) are the harness's own and may change between versions.
"""

from __future__ import annotations

from m6bench.data.dataset import FEATURE_KINDS, Dataset
from m6bench.data.features import FeatureTokens, quantile_bands, tokenise_side_table
from m6bench.data.prepared import PreparedBenchmark
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
from m6bench.evaluation.evaluator import evaluate_part
from m6bench.evaluation.metrics import MetricSpec
from m6bench.hookspecs import hookimpl
from m6bench.protocols.spec import ProtocolSpec
from m6bench.registry.catalog import Catalog, PluginFailureWarning, PluginInfo, load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.prepare import prepare_split
from m6bench.runs.run import RunFailed, run, seed_everything
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
    "FeatureTokens",
    "LedgerError",
    "LoadContext",
    "M6BenchError",
    "MetricSpec",
    "ModelSpec",
    "PluginError",
    "PluginFailureWarning",
    "PluginInfo",
    "PreparedBenchmark",
    "ProtocolError",
    "ProtocolSpec",
    "Recommender",
    "RunFailed",
    "Split",
    "TrainSet",
    "csr_row_entries",
    "evaluate_part",
    "hookimpl",
    "load_catalog",
    "prepare_split",
    "quantile_bands",
    "resolve_config",
    "row_gradient",
    "run",
    "seed_everything",
    "tokenise_side_table",
]

__version__ = "0.1.0"

