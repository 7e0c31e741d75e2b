"""Numbers and record fields as people read them: rounded values, metric families, dataset
statistics in a sensible order, hardware and software as short key-value lists.

The site's Jinja2 filters (:func:`filters`) and the summaries of what made a page's numbers
(:func:`provenance`) live here, so every page formats a value the same way.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from markupsafe import Markup

# Metric families, in the order a run page shows them; a metric whose name (before "@k")
# is in no list is ranking@k when it has a cut-off and "other" when it has none.
RATING = ("rmse", "mae", "mse")
BINARY = ("auc", "gauc", "logloss", "accuracy", "f1", "precision_binary", "recall_binary")
COVERAGE = ("coverage", "gini", "novelty", "diversity", "serendipity", "entropy",
            "personalization", "popularity", "arp", "aplt")
FAMILIES = ("ranking@k", "rating", "binary", "coverage / diversity", "other")
# Ranking metrics within a family: the usual reading order, then the rest by name.
RANKING_ORDER = ("ndcg", "recall", "precision", "hit", "mrr", "map")
STATISTICS_ORDER = ("users", "items", "interactions", "density")
_METRIC = re.compile(r"^(?P<base>.+?)@(?P<k>\d+)$")


# ============================================================================ numbers
def fmt(value: Any, digits: int = 4) -> str:
    """A number rounded for reading: 4 decimals below 1, 3 significant-ish decimals above,
    thousands separators from 1,000; ``-`` for missing and non-finite values."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.{max(digits - 1, 1)}f}"
        return f"{value:.{digits}f}"
    return str(value)


def number(value: Any) -> str:
    """A count or a size: thousands separators for big values, 4 significant digits else."""
    if isinstance(value, bool) or value is None:
        return fmt(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def pm(cell: Mapping[str, Any]) -> str:
    mean, half = cell.get("mean"), cell.get("ci95")
    if mean is None:
        return "-"
    return f"{mean:.4f}" if half is None else f"{mean:.4f} ± {half:.4f}"


def seconds(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 100:
        return f"{value / 60:.1f} min"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def megabytes(value: Any) -> str:
    """A memory or file size given in MB: ``706 MB``, ``1.42 GB``, ``0.31 MB``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        return "-"
    if value >= 1024:
        return f"{value / 1024:.2f} GB"
    return f"{value:.0f} MB" if value >= 10 else f"{value:.2f} MB"


def milliseconds(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        return "-"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def signed(value: Any) -> str:
    """A change against a base value: ``+0.0012``, ``-0.0300``, ``0`` for no change."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        return "-"
    return "0" if value == 0 else f"{value:+.4f}"


def timestamp(value: Any) -> str:
    """An ISO 8601 time to the minute: ``2026-11-30 15:43 UTC`` (as given when it is not
    one)."""
    match = re.match(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)[^+Z-]*(Z|\+00:00)?$", str(value))
    if not match:
        return "-" if value is None else str(value)
    return f"{match.group(1)} {match.group(2)}" + (" UTC" if match.group(3) else "")


def compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def words(value: Any) -> str:
    """A list as words (``ranking, rating``); anything else as :func:`compact`."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return compact(value)


def pretty(value: Any) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, default=str)


def shell(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(shlex.quote(str(v)) for v in value)
    return "" if value is None else str(value)


def budget_title(budget: Mapping[str, Any]) -> str:
    # timeout_s is recorded under its old name; a board calls it guard_s
    parts = [f"{label}={budget[k]}" for k, label in (
        ("trials", "trials"), ("timeout_s", "guard_s"), ("pruner", "pruner"),
        ("sampler_seed", "sampler_seed")) if budget.get(k) is not None]
    if budget.get("under_budget"):
        parts.append(f"UNDER BUDGET: {budget.get('trials_run')} of {budget.get('trials')} "
                     "trials")
    parts.append(f"ok {budget.get('trials_ok')}, pruned {budget.get('trials_pruned')}, "
                 f"failed {budget.get('trials_failed')}")
    if budget.get("best_valid") is not None:
        parts.append(f"best valid {budget['best_valid']:.4f}")
    return "; ".join(parts)


def paper_link(paper: Any) -> Markup:
    """A model's paper: a link when the record gives a URL, else the citation as text
    (the site links nowhere it cannot name); empty when there is none."""
    if not isinstance(paper, str) or not paper.strip():
        return Markup("")
    paper = paper.strip()
    if re.match(r"^https?://\S+$", paper):
        return Markup('<a class="paper" href="{}" rel="noopener noreferrer">{}</a>').format(
            paper, paper)
    return Markup('<cite class="paper">{}</cite>').format(paper)


# ====================================================================== record fields
def metric_family(name: str) -> str:
    match = _METRIC.match(name)
    base = (match.group("base") if match else name).lower()
    if base in RATING:
        return "rating"
    if base in BINARY:
        return "binary"
    if base in COVERAGE:
        return "coverage / diversity"
    return "ranking@k" if match else "other"


def _metric_key(name: str) -> tuple[int, str]:
    match = _METRIC.match(name)
    base = (match.group("base") if match else name).lower()
    order = RANKING_ORDER.index(base) if base in RANKING_ORDER else len(RANKING_ORDER)
    return order, base


def metric_groups(test: Mapping[str, Any], valid: Mapping[str, Any],
                  directions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The metrics of a run grouped by family, one row per metric name and one column per
    cut-off k: ``[{"family", "ks": [5, 10], "rows": [{"name", "lower", "cells": {k: (valid,
    test)}}]}]`` (k ``None`` for a metric without a cut-off; ``lower``: lower is better, by
    the record's ``directions``)."""
    directions = directions or {}
    lower: set[str] = set()
    groups: dict[str, dict[str, dict[int | None, tuple[Any, Any]]]] = {}
    for name in [*test, *(n for n in valid if n not in test)]:
        match = _METRIC.match(name)
        base, k = (match.group("base"), int(match.group("k"))) if match else (name, None)
        if directions.get(name) == "min":
            lower.add(base)
        family = groups.setdefault(metric_family(name), {})
        family.setdefault(base, {})[k] = (valid.get(name), test.get(name))
    out = []
    for family in FAMILIES:
        rows = groups.get(family)
        if not rows:
            continue
        ks = sorted({k for cells in rows.values() for k in cells},
                    key=lambda k: (k is not None, k or 0))
        out.append({"family": family, "ks": ks,
                    "rows": [{"name": base, "lower": base in lower, "cells": rows[base]}
                             for base in sorted(rows, key=_metric_key)]})
    return out


def statistics(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Dataset statistics in reading order (users, items, interactions, density, then the
    rest by name), formatted: density as a percentage."""
    names = [k for k in STATISTICS_ORDER if k in stats] + sorted(
        k for k in stats if k not in STATISTICS_ORDER)
    out = []
    for name in names:
        value = stats[name]
        if name == "density" and isinstance(value, float) and math.isfinite(value):
            out.append((name, f"{value * 100:.2f}%"))
        else:
            out.append((name.replace("_", " "), number(value)))
    return out


def splits(sizes: Any) -> list[tuple[str, str]]:
    """A cut's split sizes in protocol order: train, valid, test, then any other split."""
    if not isinstance(sizes, Mapping):
        return []
    order = ("train", "valid", "test")
    names = [k for k in order if k in sizes] + sorted(k for k in sizes if k not in order)
    return [(name, number(sizes[name])) for name in names]


def key_values(value: Any) -> list[tuple[str, str]]:
    """A small dict (hardware, software, timings) as (key, text) rows: nested dicts flattened
    as ``name version`` pairs, missing values left out."""
    if not isinstance(value, Mapping):
        return [] if value is None else [("", compact(value))]
    rows = []
    for key in sorted(value):
        item = value[key]
        if item is None or item == "":
            continue
        if isinstance(item, Mapping):
            text = ", ".join(f"{k} {compact(v)}" for k, v in sorted(item.items()))
        elif isinstance(item, float):
            text = fmt(item)
        else:
            text = compact(item)
        rows.append((str(key).replace("_", " "), text))
    return rows


def hardware_text(hardware: Any) -> str:
    """One line: ``AMD EPYC, 2 cores, no GPU``."""
    if not isinstance(hardware, Mapping):
        return "unknown"
    parts = [compact(hardware.get("cpu") or "unknown CPU")]
    if hardware.get("cores"):
        parts.append(f"{hardware['cores']} cores")
    gpu = hardware.get("gpu")
    parts.append(compact(gpu) + (f" (driver {hardware['driver']})" if hardware.get("driver")
                                 else "") if gpu else "no GPU")
    return ", ".join(parts)


def software_text(software: Any) -> str:
    """One line: ``Python 3.11.7, torch 2.13.0+cpu, CUDA none, numpy 2.4.6``."""
    if not isinstance(software, Mapping):
        return "unknown"
    labels = (("python", "Python"), ("torch", "torch"), ("cuda", "CUDA"), ("numpy", "numpy"),
              ("optuna", "Optuna"))
    return ", ".join(f"{label} {software.get(key) or 'none'}" for key, label in labels
                     if key in software)


def code_text(code: Any) -> str:
    """One line: ``m6bench 0.1.0, source 95df10ec, git ada0db99``."""
    harness = (code or {}).get("harness") if isinstance(code, Mapping) else None
    if not isinstance(harness, Mapping):
        return "unknown"
    git = harness.get("git") if isinstance(harness.get("git"), Mapping) else {}
    text = f"{harness.get('distribution') or 'm6bench'} {harness.get('version') or '?'}"
    text += f", source {str(harness.get('sha256') or 'unknown')[:12]}"
    if git.get("commit"):
        text += f", git {str(git['commit'])[:12]}" + (" (dirty)" if git.get("dirty") else "")
    return text


def provenance(records: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """What made a page's numbers: each distinct harness code, hardware and software line
    among ``records``, with how many records say it (most common first)."""
    counts: dict[str, Counter[str]] = {"code": Counter(), "hardware": Counter(),
                                       "software": Counter()}
    for record in records:
        counts["code"][code_text(record.get("code"))] += 1
        counts["hardware"][hardware_text(record.get("hardware"))] += 1
        counts["software"][software_text(record.get("software"))] += 1
    return {key: sorted(counter.items(), key=lambda item: (-item[1], item[0]))
            for key, counter in counts.items()}


def filters() -> dict[str, Any]:
    """The site's Jinja2 filters."""
    return {"fmt": fmt, "number": number, "pm": pm, "seconds": seconds, "compact": compact,
            "pretty": pretty, "shell": shell, "budget_title": budget_title,
            "megabytes": megabytes, "milliseconds": milliseconds, "signed": signed,
            "words": words, "key_values": key_values, "splits": splits,
            "timestamp": timestamp, "statistics": statistics, "paper_link": paper_link}

