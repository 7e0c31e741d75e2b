"""The statistics of the leaderboard: confidence intervals, paired tests over per-user
values, Holm's correction, significance marks and Pareto fronts.

* :func:`mean_ci` is the mean and the half-width of its 95% confidence interval over the
  final seeds (Student's t with n - 1 degrees of freedom);
* :func:`paired_values` pairs two models' per-user test values by (seed, user id), and
  :func:`paired_pvalue` tests them (Wilcoxon signed-rank, or a paired t-test); a pair is
  only meaningful when both finals of a seed were cut by the same split, so
  :func:`split_mismatch` finds the seeds where they were not and :func:`significance`
  refuses to test those two models (their entry says why);
* :func:`holm` is Holm's step-down correction (Holm, Scand. J. Statist. 1979) across the
  models compared with the best one;
* :func:`pareto_front` marks the (cost, quality) points no other point beats on both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from m6bench_leaderboard.schema import split_seed


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float | None,
                                                                        float | None]:
    """Mean and the half-width of its ``confidence`` interval (t distribution, n - 1 df).

    One value has no interval (``None``); no values give ``(None, None)``.
    """
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return None, None
    mean = float(data.mean())
    if data.size < 2:
        return mean, None
    from scipy import stats  # here: scipy.stats takes 0.7 s to import, the CLI loads this module

    sem = float(data.std(ddof=1)) / math.sqrt(data.size)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=data.size - 1)) * sem
    return mean, half


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order.

    Sorted ascending, p_(i) becomes max over j <= i of min(1, (m - j + 1) p_(j)); a
    hypothesis is rejected at family-wise level alpha when its adjusted p is <= alpha.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def _user_keys(record: Mapping[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    per_user = record.get("per_user")
    if not isinstance(per_user, Mapping):
        return None
    users, values = per_user.get("users"), per_user.get(metric)
    if not isinstance(users, list) or not isinstance(values, list) or len(users) != len(values):
        return None
    try:
        user_ids = np.asarray(users, dtype=np.int64)
        data = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    except (TypeError, ValueError):
        return None
    seed = int(record.get("seed", 0))
    return (np.int64(seed) << np.int64(32)) + user_ids, data


def per_user_table(records: Sequence[Mapping[str, Any]],
                   metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Keys ((seed << 32) + user id), sorted, and values of ``metric`` over the records.

    ``None`` when a record has no per-user values of the metric.
    """
    keys, values = [], []
    for record in records:
        table = _user_keys(record, metric)
        if table is None:
            return None
        keys.append(table[0])
        values.append(table[1])
    if not keys:
        return None
    all_keys, all_values = np.concatenate(keys), np.concatenate(values)
    order = np.argsort(all_keys, kind="stable")
    all_keys, all_values = all_keys[order], all_values[order]
    unique = np.ones(all_keys.size, dtype=bool)
    unique[1:] = all_keys[1:] != all_keys[:-1]
    return all_keys[unique], all_values[unique]


def _split_identity(record: Mapping[str, Any]) -> Any:
    """What identifies the split a record was tested on: its cut's fingerprint, else (for
    records without one) its split seed."""
    fingerprint = (record.get("cut") or {}).get("fingerprint")
    return fingerprint if fingerprint else ("split-seed", split_seed(record))


def split_mismatch(a: Sequence[Mapping[str, Any]],
                   b: Sequence[Mapping[str, Any]]) -> list[int]:
    """The seeds at which finals ``a`` and ``b`` were tested on different splits (a user id
    then names other test items, so its values must not be paired)."""
    splits = {int(r.get("seed", 0)): _split_identity(r) for r in a}
    return sorted({int(r.get("seed", 0)) for r in b
                   if int(r.get("seed", 0)) in splits
                   and splits[int(r.get("seed", 0))] != _split_identity(r)})


def paired_values(a: tuple[np.ndarray, np.ndarray],
                  b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The values of two per-user tables at the (seed, user) keys both have (not NaN)."""
    _, ia, ib = np.intersect1d(a[0], b[0], assume_unique=True, return_indices=True)
    x, y = a[1][ia], b[1][ib]
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def paired_pvalue(x: np.ndarray, y: np.ndarray, test: str = "wilcoxon") -> float | None:
    """Two-sided p-value of a paired test of x against y (``None``: fewer than 2 pairs).

    Identical samples give 1.0.  ``wilcoxon`` is scipy's signed-rank test (zero
    differences dropped); ``ttest`` is scipy's paired t-test.
    """
    if x.size < 2:
        return None
    diff = x - y
    if not np.any(diff):
        return 1.0
    from scipy import stats  # imported when needed, as in mean_ci

    if test == "wilcoxon":
        result = stats.wilcoxon(x, y)
    elif test == "ttest":
        if np.all(diff == diff[0]):  # no variance: a constant shift is certain
            return 0.0
        result = stats.ttest_rel(x, y)
    else:
        raise ValueError(f"unknown paired test {test!r}; use wilcoxon or ttest")
    p = float(result.pvalue)
    return p if math.isfinite(p) else None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which (cost, quality) points no other point beats on both (lower cost, higher q)."""
    flags = []
    for i, (cost, quality) in enumerate(points):
        dominated = any(
            c <= cost and q >= quality and (c < cost or q > quality)
            for j, (c, q) in enumerate(points) if j != i
        )
        flags.append(not dominated)
    return flags



def significance(rows: list[dict[str, Any]], finals: Mapping[int, Sequence[dict[str, Any]]],
                  metric: str, low: bool, test: str, alpha: float) -> dict[str, Any] | None:
    """Mark, per metric, the best row and the rows not significantly worse than it
    (``low``: lower values of ``metric`` are better)."""
    scored = [i for i, row in enumerate(rows) if row["metrics"][metric]["mean"] is not None]
    if not scored:
        return None
    best = sorted(scored, key=lambda i: (rows[i]["metrics"][metric]["mean"] * (1 if low else -1),
                                         rows[i]["plugin"], rows[i]["model"]))[0]
    best_table = per_user_table(finals[best], metric)
    others = [i for i in scored if i != best]
    raw: dict[int, float] = {}
    pairs: dict[int, int] = {}
    refused: dict[int, str] = {}
    if best_table is not None:
        for i in others:
            mismatch = split_mismatch(finals[best], finals[i])
            if mismatch:
                refused[i] = (f"not tested: its finals at seeds {mismatch} were cut by "
                              "another split than the best's (run both on a board with "
                              "the same vary)")
                continue
            table = per_user_table(finals[i], metric)
            if table is None:
                continue
            x, y = paired_values(best_table, table)
            p = paired_pvalue(x, y, test)
            pairs[i] = int(x.size)
            if p is not None:
                raw[i] = p
    tested = sorted(raw)
    adjusted = dict(zip(tested, holm([raw[i] for i in tested])))
    for i in scored:
        entry: dict[str, Any] = {"best": i == best, "p": raw.get(i), "p_holm": adjusted.get(i),
                                 "pairs": pairs.get(i), "refused": refused.get(i)}
        if i == best:
            entry["tied_with_best"] = True
        elif i in adjusted:
            entry["tied_with_best"] = adjusted[i] > alpha
        else:
            entry["tied_with_best"] = None  # no per-user values to test
        rows[i]["significance"][metric] = entry
    return {"metric": metric, "best": f"{rows[best]['plugin']}/{rows[best]['model']}",
            "compared": len(tested), "refused": len(refused)}

