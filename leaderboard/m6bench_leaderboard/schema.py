"""The ledger record: one JSON object per run, schema-versioned, every key documented."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, TypedDict

from m6bench_leaderboard.redact import redact

SCHEMA_VERSION = 1


class RecordError(ValueError):
    """A record does not follow the schema, or holds a value JSON cannot represent."""


class RunRecord(TypedDict, total=False):
    """One run of (benchmark, plugin, model, config, seed), with full provenance.

    Required keys are checked by :func:`validate_record`; the rest are present when known.
    """

    schema_version: int  # SCHEMA_VERSION of the writer
    run_id: str  # unique id (uuid4 hex)
    status: str  # "ok" | "failed" | "pruned"
    error: str | None  # "ExceptionType: message" when status is failed
    kind: str  # "run" | "trial" | "final" | "variant" (a compressed copy of a run's model)
    #            | "serving"; variant and serving records never enter the accuracy tables
    sweep_id: str | None  # the sweep a trial or final run belongs to
    sweep: dict[str, Any]  # id (study name), trial number, budget (trials, timeout_s, sampler,
    #                        sampler_seed, pruner), best_valid for finals
    benchmark: dict[str, Any]  # name, version (hash of the loaded data's content and the
    #                            contract), spec (the contract)
    dataset: dict[str, Any]  # name, fingerprint, statistics
    cut: dict[str, Any]  # protocol, fingerprint, sizes of train/valid/test
    plugin: dict[str, Any]  # name, distribution, version
    model: str  # model name within the plugin
    model_info: dict[str, Any]  # paper, description: from the model's registered ModelSpec
    config: dict[str, Any]  # fully resolved configuration
    config_hash: str  # sha256 prefix of the sorted config JSON
    seed: int  # the run's seed; a final's replicate number within its sweep
    split_seed: int  # seeds the protocol cut; absent from older records: it was ``seed``
    init_seed: int  # seeds the model (init, sampling); absent from older records: ``seed``
    device: str  # e.g. "cpu", "cuda:0"
    metrics: dict[str, dict[str, float | None]]  # {"valid": {...}, "test": {...}}
    metric_directions: dict[str, str]  # {"ndcg@10": "max", "rmse": "min", ...}: which way
    #                                    each metric in metrics is better (from its registered
    #                                    spec); absent from records written before it existed
    slices: dict[str, dict[str, float | None]]  # per slice name: test metrics
    per_user: dict[str, Any]  # {"users": [...], "<metric>": [...]} test values per user
    curve: list[dict[str, float | int | None]]  # per epoch: epoch, losses, valid metric
    epochs: int  # epochs trained
    best_epoch: int  # epoch whose weights were evaluated
    timings: dict[str, float]  # seconds per phase: load, cut, train, evaluate, total
    peak_rss_mb: float  # peak resident memory of the process
    peak_gpu_mb: float | None  # peak CUDA memory allocated, None on CPU
    parameters: int  # trainable parameters plus fitted buffers
    trained_parameters: int  # how many of parameters were fitted on the benchmark's data
    #                          (fewer than parameters when pretrained weights stay frozen);
    #                          absent from records written before it existed
    hardware: dict[str, Any]  # cpu, cores, gpu, driver
    software: dict[str, Any]  # python, torch, cuda, m6bench and plugin versions, platform
    code: dict[str, Any]  # code identity: harness {distribution, version, package, sha256,
    #                       git {commit, dirty}} and plugin {name, distribution, version,
    #                       package, sha256}; sha256 hashes the package's Python source
    command: list[str]  # the exact command line (argv), credentials redacted as ***
    reproduces: str  # on a reproduction run: the run_id it re-ran
    reuses: str  # on a final that is its sweep's best trial run (same config, seed): its run_id
    board: dict[str, Any]  # on a board's failure record: board name and source file
    artifact: dict[str, Any]  # the saved model (run --save, sweep finals, variants): path
    #                           (relative to the ledger's directory), sha256 of its
    #                           model.safetensors, bytes
    variant: dict[str, Any]  # on kind "variant": name, method, options, base_run_id,
    #                          size_bytes, base_size_bytes, largest_tensor_bytes,
    #                          base_largest_tensor_bytes, delta {metric: variant - base} (test)
    serving: dict[str, Any]  # on kind "serving" (a load test of a served run): base_run_id,
    #                          variant (None = full model), backend ("torch" | "onnx"),
    #                          concurrency, duration_s, requests, errors, rps, latency_ms
    #                          {p50, p95, p99}, max_batch, batch_wait_ms; hardware is the
    #                          serving machine's, not the base run's
    allow_code_change: list[str]  # on a record derived from a model loaded despite a code
    #                               difference: each difference
    started_at: str  # ISO 8601 UTC
    ended_at: str  # ISO 8601 UTC


REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "run_id": str,
    "status": str,
    "benchmark": dict,
    "plugin": dict,
    "model": str,
    "config": dict,
    "seed": int,
    "metrics": dict,
    "started_at": str,
}
STATUSES = ("ok", "failed", "pruned")
METRIC_DIRECTIONS = ("max", "min")


def split_seed(record: Mapping[str, Any]) -> int:
    """The seed of the record's protocol cut (``seed`` for records older than the key)."""
    value = record.get("split_seed")
    return int(record.get("seed", 0) if value is None else value)


def init_seed(record: Mapping[str, Any]) -> int:
    """The seed of the record's model init and sampling (``seed`` for older records)."""
    value = record.get("init_seed")
    return int(record.get("seed", 0) if value is None else value)


def code_key(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(harness source hash, plugin source hash) of a record: what code made its numbers.

    ``(None, None)`` for records written before code identities were recorded.
    """
    code = record.get("code")
    if not isinstance(code, Mapping):
        return (None, None)
    harness, plugin = code.get("harness") or {}, code.get("plugin") or {}
    return (harness.get("sha256") if isinstance(harness, Mapping) else None,
            plugin.get("sha256") if isinstance(plugin, Mapping) else None)


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(
                f"record key {path} is {value}, which JSON cannot hold; store None instead."
            )
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError(f"record key {path} has a non-string key {key!r}.")
            _check_json(item, f"{path}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
        return
    raise RecordError(
        f"record key {path} holds a {type(value).__name__} ({value!r:.60}), which is not "
        "JSON; convert it to a string, number, list or dict before recording."
    )


def validate_record(record: Mapping[str, Any]) -> None:
    """Raise :class:`RecordError` naming the key when ``record`` breaks the schema."""
    for key, kind in REQUIRED.items():
        if key not in record:
            raise RecordError(f"record has no {key!r} key; every record needs {sorted(REQUIRED)}.")
        if not isinstance(record[key], kind) or (kind is int and isinstance(record[key], bool)):
            raise RecordError(
                f"record key {key!r} is a {type(record[key]).__name__}, expected {kind}."
            )
    if record["status"] not in STATUSES:
        raise RecordError(f"record status {record['status']!r} is not one of {STATUSES}.")
    if record["schema_version"] > SCHEMA_VERSION:
        raise RecordError(
            f"record schema_version {record['schema_version']} is newer than this reader "
            f"({SCHEMA_VERSION}); upgrade m6bench."
        )
    _check_directions(record.get("metric_directions"))
    _check_json(dict(record), "record")


def _check_directions(directions: Any) -> None:
    """``metric_directions`` is optional (older records lack it); when present, every value
    is one of :data:`METRIC_DIRECTIONS`."""
    if directions is None:
        return
    if not isinstance(directions, Mapping):
        raise RecordError(f"record key 'metric_directions' is a {type(directions).__name__}, "
                          "expected a dict of metric name -> 'max' or 'min'.")
    for name, direction in directions.items():
        if direction not in METRIC_DIRECTIONS:
            raise RecordError(f"record key metric_directions.{name} is {direction!r}; use "
                              f"one of {METRIC_DIRECTIONS}.")


def dumps_record(record: Mapping[str, Any]) -> str:
    """One line of JSON (no newline inside), after validation, with credentials redacted."""
    validate_record(record)
    return json.dumps(redact(dict(record)), separators=(",", ":"), sort_keys=True,
                      allow_nan=False)
