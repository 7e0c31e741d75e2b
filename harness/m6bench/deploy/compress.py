"""Compress a saved run's model, evaluate the variant as the run was evaluated, record it.

The variant is scored by the model's own ``score`` with the compressed state decoded into
it (see :mod:`m6bench.training.compression`), on the same test split with the same
evaluator (:func:`~m6bench.evaluation.evaluator.evaluate_part`) and batch size as its run;
its size is the bytes of its stored ``model.safetensors``.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from m6bench.errors import ConfigError
from m6bench.evaluation.evaluator import evaluate_part, metric_directions
from m6bench.registry.catalog import Catalog, load_catalog
from m6bench.runs.artifacts import (
    artifact_dir,
    load_with_benchmark,
    read_manifest,
    write_stored,
)
from m6bench.runs.ledger import append_derived_record, ledger_path
from m6bench.training.compression import restore_into
from m6bench_leaderboard import SCHEMA_VERSION, redact

VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a folder under variants/
# copied from the base run into a variant record: what the variant is a compression of
COPIED_KEYS = ("benchmark", "dataset", "cut", "plugin", "model", "config", "config_hash",
               "seed", "code", "hardware", "software")


def compress_run(
    run_id: str,
    *,
    method: str,
    options: Mapping[str, Any] | None = None,
    name: str | None = None,
    ledger: str | os.PathLike[str] | None = None,
    allow_code_change: bool = False,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """Compress run ``run_id``'s saved model with ``method``, evaluate it, save it under
    ``variants/<name>`` and append its variant record (returned).

    ``name`` defaults to the method and its option values (``prune-0.5``, ``low-rank-16``).
    """
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat()
    catalog = catalog or load_catalog()
    spec = catalog.compressions.get(method)
    resolved = spec.resolve_options(dict(options or {}))
    name = name or spec.variant_name(resolved)
    if not VARIANT_NAME.fullmatch(name):
        raise ConfigError(f"Variant name {name!r} is not a folder name; use letters, digits, "
                          "'.', '_' and '-' (e.g. --name int8-small).")
    ledger_file = ledger_path(ledger)
    loaded, bench, plan = load_with_benchmark(run_id, ledger_file, catalog=catalog,
                                              allow_code_change=allow_code_change)
    base = loaded.record
    base_manifest = read_manifest(loaded.artifact_dir, f"The saved model of run {run_id}")

    stored = spec.apply(loaded.model, resolved)
    model = restore_into(loaded.model, stored)
    batch_size = int(plan.config["eval_batch_size"])
    metrics = {part: dict(evaluate_part(model, bench, part, tasks=plan.tasks,
                                        batch_size=batch_size).metrics)
               for part in ("valid", "test")}
    directory = artifact_dir(ledger_file, loaded.run_id, name)
    variant_id = uuid.uuid4().hex
    manifest = write_stored(directory, stored, {**base, "run_id": variant_id},
                            extra={"base_run_id": loaded.run_id, "variant": name})
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": variant_id,
        "status": "ok",
        "error": None,
        "kind": "variant",
        "sweep_id": None,
        **{key: base[key] for key in COPIED_KEYS if key in base},
        "variant": {
            "name": name, "method": method, "options": resolved,
            "base_run_id": loaded.run_id,
            "size_bytes": manifest["bytes"],
            "base_size_bytes": base_manifest["bytes"],
            "largest_tensor_bytes": manifest["largest_tensor_bytes"],
            "base_largest_tensor_bytes": base_manifest["largest_tensor_bytes"],
            "delta": _delta(metrics["test"], (base.get("metrics") or {}).get("test") or {}),
        },
        "artifact": {"path": directory.relative_to(ledger_file.parent).as_posix(),
                     "sha256": manifest["sha256"], "bytes": manifest["bytes"]},
        "metrics": {part: _finite(values) for part, values in metrics.items()},
        "metric_directions": metric_directions(bench, metrics),
        "device": "cpu",
        "command": redact(list(sys.argv)),
        "started_at": started_at,
        "timings": {"total": round(time.perf_counter() - started, 4)},
        "ended_at": datetime.now(timezone.utc).isoformat(),
    }
    if loaded.code_changes:
        record["allow_code_change"] = list(loaded.code_changes)
    append_derived_record(ledger_file, record, f"the variant record of run {loaded.run_id}")
    return record


def _finite(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON holds no NaN or infinity: such a metric is recorded as None, as runs do."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in values.items()}


def _delta(variant: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, float]:
    """``variant - base`` of every metric both hold as a number."""
    return {key: variant[key] - base[key] for key in sorted(variant)
            if isinstance(variant[key], (int, float)) and isinstance(base.get(key), (int, float))}
