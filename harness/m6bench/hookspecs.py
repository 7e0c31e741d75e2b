"""Hook specifications: everything a plugin can implement, in the order the hooks fire.

A plugin is a module (or object) with functions marked ``@m6bench.hookimpl`` whose names
are the hooks below; it is found through the ``m6bench`` entry-point group.  Registration
hooks receive a ``register`` callback: call it once per thing you provide.  The host
validates what you register, rejects a name another plugin already took (naming both), and
owns lookups.  Registration hooks fire once per plugin manager, when the catalog is built;
lifecycle hooks fire during every run, and their return values are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from m6bench.data.specs import BenchmarkSpec, DatasetSpec
    from m6bench.evaluation.metrics import MetricSpec
    from m6bench.protocols.spec import ProtocolSpec
    from m6bench.training.compression import CompressionSpec
    from m6bench.training.specs import ComponentSpec, ModelSpec

PROJECT = "m6bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- data
@hookspec
def m6bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register dataset loaders.

    Called once when the catalog is built.

    :param register: call ``register(DatasetSpec(name=..., load=..., fingerprint=...))``
        for each loader.  ``load(options, context)`` returns an ``m6bench.Dataset``.
    :return: nothing; the return value is ignored.
    """


@hookspec
def m6bench_register_protocols(register: Callable[[ProtocolSpec], None]) -> None:
    """Register train/valid/test protocols.

    Called once when the catalog is built.

    :param register: call ``register(ProtocolSpec(name=..., cut=...))`` for each protocol.
        ``cut(dataset, seed, options)`` returns an ``m6bench.Split`` and must be
        deterministic given the seed.
    :return: nothing; the return value is ignored.
    """


@hookspec
def m6bench_register_benchmarks(register: Callable[[BenchmarkSpec], None]) -> None:
    """Register named benchmarks (dataset + protocol + tasks + metrics, pinned).

    Called once when the catalog is built.

    :param register: call ``register(BenchmarkSpec(name=..., dataset=..., ...))``.
    :return: nothing; the return value is ignored.
    """


# --------------------------------------------------------------------------- metrics
@hookspec
def m6bench_register_metrics(register: Callable[[MetricSpec], None]) -> None:
    """Register evaluation metrics; runs compute every metric of their benchmark's tasks.

    Called once when the catalog is built.

    :param register: call ``register(MetricSpec(name=..., task=..., higher_is_better=...,
        compute=..., per_user=..., at_k=...))`` for each metric.  ``compute(inputs, k)``
        gets, for a per-user ranking metric, an ``m6bench.evaluation.metrics.RankingBatch``
        (hits, recommended lists, n_relevant of a batch of users) and returns a ``(B,)``
        tensor; for a global ranking metric, the ``RecommendedLists`` of all users; for a
        rating or binary metric, the part's ``Predictions``; the last two return a float.
        ``k`` is the cut-off of an ``at_k`` metric (reported as ``name@k`` for every k of
        the benchmark), else None.  The direction is written into every record.
    :return: nothing; the return value is ignored.
    """


# --------------------------------------------------------------------------- components
@hookspec
def m6bench_register_encoders(register: Callable[[ComponentSpec], None]) -> None:
    """Register encoders: an entity or modality -> vectors (ids, categorical, numeric, text).

    Called once when the catalog is built.

    :param register: call ``register(ComponentSpec(family="encoder", name=..., build=...))``.
        ``build(**params)`` returns a ``torch.nn.Module`` mapping a batch to ``(B, dim)``.
    :return: nothing; the return value is ignored.
    """


@hookspec
def m6bench_register_fusions(register: Callable[[ComponentSpec], None]) -> None:
    """Register fusions: several vectors -> a joint representation or a score.

    Called once when the catalog is built.

    :param register: call ``register(ComponentSpec(family="fusion", name=..., build=...))``.
    :return: nothing; the return value is ignored.
    """


@hookspec
def m6bench_register_heads(register: Callable[[ComponentSpec], None]) -> None:
    """Register task heads: joint representation -> predictions and a loss for one task.

    Called once when the catalog is built.

    :param register: call ``register(ComponentSpec(family="head", name=..., build=...))``.
    :return: nothing; the return value is ignored.
    """


# --------------------------------------------------------------------------- models
@hookspec
def m6bench_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model recipes: components, defaults, search space, supported tasks.

    Called once when the catalog is built.

    :param register: call ``register(ModelSpec(name=..., build=..., defaults=...))`` for
        each model; mark one ``default=True`` if the plugin registers several.
    :return: nothing; the return value is ignored.
    """


# --------------------------------------------------------------------------- deployment
@hookspec
def m6bench_register_compressions(register: Callable[[CompressionSpec], None]) -> None:
    """Register ways to compress a trained model (``m6bench compress --method NAME``).

    Called once when the catalog is built.

    :param register: call ``register(CompressionSpec(name=..., apply=..., defaults=...,
        choices=..., description=...))`` for each method.  ``apply(model, options)`` gets
        the trained ``m6bench.Recommender`` and the resolved options and returns the
        compressed ``m6bench.StoredState`` (start from ``m6bench.encode_state(
        model.state_dict())`` and replace entries); the variant is scored by the model's
        own ``score`` with the stored form decoded into it, and sized by its stored bytes.
    :return: nothing; the return value is ignored.
    """


# --------------------------------------------------------------------------- lifecycle
@hookspec
def m6bench_run_start(run_id: str, config: Mapping[str, Any], benchmark: BenchmarkSpec) -> None:
    """A run is about to train.

    :param run_id: the id its ledger record will carry.
    :param config: the fully resolved configuration (model and training keys).
    :param benchmark: the benchmark it runs on.
    :return: nothing; the return value is ignored.
    """


@hookspec
def m6bench_epoch_end(run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
    """An epoch of an iterative model finished.

    :param run_id: the run.
    :param epoch: 1-based epoch number.
    :param metrics: the epoch's losses and, on evaluation epochs, the validation metrics
        (keys ``valid/<metric>``).  Sweeps use this to report to Optuna's pruner.
    :return: nothing; the return value is ignored.  Raising ``optuna.TrialPruned`` stops
        the run (it is recorded as pruned).
    """


@hookspec
def m6bench_run_end(record: Mapping[str, Any]) -> None:
    """A run finished (ok or failed) and its record was built.

    Called before the record is appended to the ledger.

    :param record: the ledger record (see ``m6bench_leaderboard.schema``).
    :return: nothing; the return value is ignored.
    """
