"""The m6-rec tables of the README, rendered by docs/results.py from numbers it reads out of
the ledgers: per-seed NDCG@10 of the m6-rec models with paired tests against a reference
model on the same seeds, parameters and seconds; and the cross-domain comparison line.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from results_format import four, markdown, mean_sd
from scipy import stats


@dataclass(frozen=True)
class Line:
    """One model's runs, by seed (``None`` where a seed has no record)."""

    label: str
    ndcg: Sequence[float | None]
    trained: Sequence[float | None] = ()  # trained parameters per seed's record
    total: Sequence[float | None] = ()  # the record's ``parameters``
    seconds: Sequence[float | None] = ()  # the record's total seconds


def line(table: Any, records: list[dict[str, Any]], row: Any,
         metric: Callable[[Mapping[str, Any] | None, str], float | None]) -> Line:
    """The :class:`Line` of ``row`` of ``table`` (docs/results.py's ``Table`` and ``Row``)
    from ``records``; ``metric(record, name)`` reads a test metric."""
    found = [table.record(records, row, seed) for seed in row.seeds]

    def trained(record: Mapping[str, Any] | None) -> float | None:
        value = (record or {}).get("trained_parameters")
        if value is None:  # a record older than the field: its fit_epoch reported it
            value = ((record or {}).get("curve") or [{}])[-1].get("trained_parameters")
        return None if value is None else float(value)

    def recorded(record: Mapping[str, Any] | None, read: Callable[[Mapping], Any]) -> Any:
        return None if record is None else float(read(record) or 0)

    return Line(row.label, [metric(r, "ndcg@10") for r in found], [trained(r) for r in found],
                [recorded(r, lambda r: r.get("parameters")) for r in found],
                [recorded(r, lambda r: (r.get("timings") or {}).get("total")) for r in found])


def _mean(values: Sequence[float | None]) -> float | None:
    numbers = [v for v in values if v is not None]
    return statistics.mean(numbers) if numbers else None


def _parameters(line: Line) -> str:
    trained, total = _mean(line.trained), _mean(line.total)
    if total is None:
        return ""
    if trained is None:  # the model's record does not say (m6-fusion trains them all)
        return f"— / {total:,.0f}"
    share = f" ({trained / total:.3%})" if total else ""
    return f"{trained:,.0f} / {total:,.0f}{share}"


def paired_tests(values: Sequence[float | None],
                 reference: Sequence[float | None]) -> str:
    """``values`` against ``reference`` over the seeds both have: wins, and the paired
    t-test's and the Wilcoxon signed-rank test's two-sided p values."""
    pairs = [(a, b) for a, b in zip(values, reference) if a is not None and b is not None]
    if len(pairs) < 2:
        return "too few paired seeds to test"
    ours, theirs = [a for a, _ in pairs], [b for _, b in pairs]
    wins = sum(a > b for a, b in pairs)
    t_p = stats.ttest_rel(ours, theirs).pvalue
    wilcoxon_p = stats.wilcoxon(ours, theirs).pvalue
    mean_gap = statistics.mean(a - b for a, b in pairs)
    return (f"{wins} of {len(pairs)} seeds higher, mean difference {mean_gap:+.4f}; paired "
            f"t-test p = {t_p:.4f}, Wilcoxon signed-rank p = {wilcoxon_p:.4f}")


def seeds_markdown(lines: Sequence[Line], seeds: Sequence[int], costs: bool) -> str:
    """Lines x seeds of test NDCG@10, mean ± sd, and (``costs``) parameters and seconds."""
    headers = ["model", *(f"NDCG@10 seed {s}" for s in seeds), "mean ± sd"]
    if costs:
        headers += ["trained / total parameters", "seconds per run (mean)"]
    body = []
    for line in lines:
        row = [line.label, *(four(v) for v in line.ndcg), mean_sd(line.ndcg)]
        if costs:
            seconds = _mean(line.seconds)
            row += [_parameters(line), "" if seconds is None else f"{seconds:.0f}"]
        body.append(row)
    return markdown(headers, body)


def cold_markdown(lines: Sequence[Line], reference: Line, seeds: Sequence[int]) -> str:
    """The m6-rec lines, then each one's paired tests against the reference line (whose
    per-seed values its own table shows, from its own ledger)."""
    text = seeds_markdown(lines, seeds, costs=True)
    tests = "\n".join(f"- {line.label} against {reference.label} (mean "
                      f"{mean_sd(reference.ndcg)} on the same seeds, cold-items table): "
                      f"{paired_tests(line.ndcg, reference.ndcg)}." for line in lines)
    return f"{text}\n\n{tests}"


def transfer_sentence(ours: Line, theirs: Line, baseline: Line) -> str:
    """How ``ours`` (a transfer through text) compares with ``theirs`` (pct-cf's transfer)
    and with ``baseline`` (popularity on the target alone), by mean NDCG@10."""
    mine, other, base = _mean(ours.ndcg), _mean(theirs.ndcg), _mean(baseline.ndcg)
    if mine is None or other is None or base is None:
        return "Comparison pending: a row has no records yet."
    return (f"{ours.label}: mean NDCG@10 {mine:.4f}, {mine - base:+.4f} against "
            f"{baseline.label} ({base:.4f}) and {mine - other:+.4f} against {theirs.label} "
            f"({other:.4f}, docs/results/xdomain.jsonl, which also trains on ML-100K's "
            f"interactions).")
