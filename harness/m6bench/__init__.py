"""m6bench: a fair, fast, reproducible benchmarking harness for recommender systems.

The public API, for notebooks and for plugin packages.  Plugins import only these names,
``m6bench.testing`` (the conformance kit) and ``m6bench.hookspecs`` (an import contract
checks it); the subpackages (data, protocols, evaluation, training, registry, runs, sweeps,
board, cli) are the harness's own and may change between versions.

Every name is imported on first use (PEP 562), so that ``import m6bench`` and the command
line's help and listings do not pay for torch, Optuna and datasets before a command needs
them.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Dataset": "m6bench.data.dataset",
    "FEATURE_KINDS": "m6bench.data.dataset",
    "FeatureTokens": "m6bench.data.features",
    "quantile_bands": "m6bench.data.features",
    "tokenise_side_table": "m6bench.data.features",
    "PreparedBenchmark": "m6bench.data.prepared",
    "BenchmarkSpec": "m6bench.data.specs",
    "DatasetSpec": "m6bench.data.specs",
    "LoadContext": "m6bench.data.specs",
    "TASKS": "m6bench.data.specs",
    "Split": "m6bench.data.split",
    "TrainSet": "m6bench.data.trainset",
    "require_memory": "m6bench.data.memory",
    "cache_dir": "m6bench.environment",
    "atomic_file": "m6bench.files",
    "ArtifactError": "m6bench.errors",
    "ConfigError": "m6bench.errors",
    "DatasetError": "m6bench.errors",
    "LedgerError": "m6bench.errors",
    "M6BenchError": "m6bench.errors",
    "MemoryEstimateError": "m6bench.errors",
    "PluginError": "m6bench.errors",
    "ProtocolError": "m6bench.errors",
    "ExportError": "m6bench.errors",
    "evaluate_part": "m6bench.evaluation.evaluator",
    "MetricSpec": "m6bench.evaluation.metrics",
    "hookimpl": "m6bench.hookspecs",
    "ProtocolSpec": "m6bench.protocols.spec",
    "Catalog": "m6bench.registry.catalog",
    "PluginFailureWarning": "m6bench.registry.catalog",
    "PluginInfo": "m6bench.registry.catalog",
    "load_catalog": "m6bench.registry.catalog",
    "resolve_config": "m6bench.runs.config",
    "prepare_split": "m6bench.runs.prepare",
    "LoadedRun": "m6bench.runs.artifacts",
    "load_run": "m6bench.runs.artifacts",
    "RunFailed": "m6bench.runs.run",
    "run": "m6bench.runs.run",
    "load_benchmark": "m6bench.runs.run",
    "seed_everything": "m6bench.runs.run",
    "bag_sums": "m6bench.tensor",
    "csr_row_entries": "m6bench.tensor",
    "row_gradient": "m6bench.tensor",
    "CompressionSpec": "m6bench.training.compression",
    "StoredState": "m6bench.training.compression",
    "encode_state": "m6bench.training.compression",
    "quantise_rows": "m6bench.training.compression",
    "Recommender": "m6bench.training.recommender",
    "history_rows": "m6bench.training.recommender",
    "ComponentSpec": "m6bench.training.specs",
    "ModelSpec": "m6bench.training.specs",
}

__all__ = sorted(_EXPORTS)

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'm6bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
