"""The deployment view of a benchmark: what a trained model costs to serve, and what its
compressed variants keep of its quality (issue #18).

It reads two kinds of records besides the runs (the shared deployment contract):

* ``kind: "variant"``: a compressed copy of a run (``variant.name``, ``variant.method``,
  ``variant.base_run_id``, ``variant.size_bytes``, ``variant.base_size_bytes``,
  ``variant.delta``) with its own test metrics;
* ``kind: "serving"``: a load test of a run or of one of its variants
  (``serving.base_run_id``, ``serving.variant``, ``serving.backend``, ``serving.rps``,
  ``serving.latency_ms.{p50,p95,p99}``, ...), with no metrics.

One row per (base run, variant, serving backend): the full model's row comes from the base
run (its test metrics, its artifact's size), each variant's from its latest record, and the
latency columns from the latest load test of that model and backend.  These records never
enter the accuracy tables (:mod:`m6bench_leaderboard.aggregate` ranks finals only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from m6bench_leaderboard.fields import number, text, when
from m6bench_leaderboard.stats import pareto_front

KINDS = ("variant", "serving")
FULL = "full"  # the variant name of the uncompressed model
QUALITY_METRIC = "ndcg@10"  # the contract's quality axis, when records hold it
MB = 1e6


def _latest(records: Iterable[Mapping[str, Any]], key) -> dict[Any, Mapping[str, Any]]:
    latest: dict[Any, Mapping[str, Any]] = {}
    for record in sorted(records, key=when):
        latest[key(record)] = record  # a later record of the same key wins
    return latest


def _test(record: Mapping[str, Any] | None, metric: str) -> float | None:
    if record is None:
        return None
    return number(((record.get("metrics") or {}).get("test") or {}).get(metric))


def _variant_key(record: Mapping[str, Any]) -> tuple[str, str]:
    variant = record.get("variant") or {}
    return text(variant.get("base_run_id")), text(variant.get("name"), "?")


def _serving_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    serving = record.get("serving") or {}
    return (text(serving.get("base_run_id")), text(serving.get("variant")) or FULL,
            text(serving.get("backend"), "?"))


def _base_row(run_id: str, base: Mapping[str, Any] | None,
              variants: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any]:
    """The full model's row: its own record when the ledger holds it, else what its
    variants' records say about it."""
    quality = _test(base, metric)
    size = number(((base or {}).get("artifact") or {}).get("bytes"))
    for record in variants:
        info = record.get("variant") or {}
        if size is None:
            size = number(info.get("base_size_bytes"))
        if quality is None:  # delta = variant - base, so base = variant - delta
            value, delta = _test(record, metric), number((info.get("delta") or {}).get(metric))
            if value is not None and delta is not None:
                quality = value - delta
    source = base or (variants[0] if variants else {})
    return {"variant": FULL, "method": None, "run_id": run_id, "size_mb": _mb(size),
            "quality": quality, "delta": 0.0 if quality is not None else None,
            **_identity(source), "code_changed": False}


def _variant_row(record: Mapping[str, Any], metric: str, base_quality: float | None,
                 ) -> dict[str, Any]:
    info = record.get("variant") or {}
    quality = _test(record, metric)
    delta = number((info.get("delta") or {}).get(metric))
    if delta is None and quality is not None and base_quality is not None:
        delta = quality - base_quality
    return {"variant": text(info.get("name"), "?"), "method": text(info.get("method")) or None,
            "run_id": text(record.get("run_id")), "size_mb": _mb(number(info.get("size_bytes"))),
            "quality": quality, "delta": delta, **_identity(record),
            # the base model was loaded despite a code difference (--allow-code-change)
            "code_changed": bool(record.get("allow_code_change"))}


def _identity(record: Mapping[str, Any]) -> dict[str, Any]:
    plugin = text((record.get("plugin") or {}).get("name"))
    return {"plugin": plugin, "model": text(record.get("model")), "seed": record.get("seed"),
            "label": f"{plugin}/{text(record.get('model'))}"}


def _mb(size: float | None) -> float | None:
    return None if size is None else size / MB


def _serving_columns(record: Mapping[str, Any] | None) -> dict[str, Any]:
    serving = (record or {}).get("serving") or {}
    latency = serving.get("latency_ms") or {}
    return {"backend": text(serving.get("backend")) or None,
            "p50_ms": number(latency.get("p50")), "p95_ms": number(latency.get("p95")),
            "p99_ms": number(latency.get("p99")), "rps": number(serving.get("rps")),
            "concurrency": serving.get("concurrency"), "requests": serving.get("requests"),
            "errors": serving.get("errors"),
            "serving_run_id": text(record.get("run_id")) if record else None,
            "serving_code_changed": bool((record or {}).get("allow_code_change"))}


def deployment_view(records: Iterable[Mapping[str, Any]],
                    base_runs: Mapping[str, Mapping[str, Any]], *, metric: str,
                    lower_is_better: bool = False) -> dict[str, Any]:
    """The deployment table and Pareto front of one benchmark's variant and serving records.

    ``base_runs`` maps a run id to its record (the runs the variants and load tests name);
    ``metric`` is the quality column, ``lower_is_better`` its direction.  A row is on the
    Pareto front when no other row has both a lower p99 latency and a better quality.
    """
    records = [r for r in records if r.get("kind") in KINDS and r.get("status") == "ok"]
    variants = _latest((r for r in records if r["kind"] == "variant"), _variant_key)
    servings = _latest((r for r in records if r["kind"] == "serving"), _serving_key)
    bases = list(dict.fromkeys([*(k[0] for k in variants), *(k[0] for k in servings)]))
    rows = []
    for run_id in bases:
        own = [variants[k] for k in sorted(variants) if k[0] == run_id]
        full = _base_row(run_id, base_runs.get(run_id), own, metric)
        for model in [full, *(_variant_row(r, metric, full["quality"]) for r in own)]:
            tests = [servings[k] for k in sorted(servings)
                     if k[0] == run_id and k[1] == model["variant"]]
            for serving in tests or [None]:  # a model without a load test: one row, no latency
                rows.append({**model, "base_run_id": run_id, **_serving_columns(serving)})
    rows.sort(key=lambda r: (r["label"], str(r["seed"]), r["base_run_id"],
                             r["variant"] != FULL, r["variant"], r["backend"] or ""))
    _mark_front(rows, lower_is_better)
    return {"metric": metric, "lower_is_better": lower_is_better, "rows": rows,
            "variants": len(variants), "load_tests": len(servings)}


def _mark_front(rows: list[dict[str, Any]], lower_is_better: bool) -> None:
    sign = -1.0 if lower_is_better else 1.0
    usable = [i for i, r in enumerate(rows) if r["p99_ms"] is not None
              and r["quality"] is not None]
    flags = pareto_front([(rows[i]["p99_ms"], sign * rows[i]["quality"]) for i in usable])
    for row in rows:
        row["pareto"] = False
    for i, flag in zip(usable, flags):
        rows[i]["pareto"] = flag


def quality_metric(available: Iterable[str], primary: str | None) -> str:
    """The contract's NDCG@10 when the records hold it, else the benchmark's primary metric."""
    names = set(available)
    return QUALITY_METRIC if QUALITY_METRIC in names or not primary else primary
