"""iALS's conjugate-gradient half-step as one parallel CPU loop over rows (numba).

:func:`m6bench_classic.factorisation.solve_side_cg` runs every row's CG at once as about
fifty whole-table tensor operations per half-step; each one is a parallel region that wakes
the thread pool, and on ML-100K's small tables the wake-ups cost as much as the arithmetic.
Each row's system is independent, so here one ``prange`` over the rows runs each row's whole
CG on vectors of ``dim`` floats that stay in cache: one parallel region per half-step, as in
implicit's Cython.  The arithmetic is :func:`solve_side_cg`'s, row by row, with the same
start, steps and guards; the results agree to float rounding (a test compares them), and do
not depend on the thread count (no sum crosses rows).
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch

if "NUMBA_THREADING_LAYER" not in os.environ:
    # numba's own pool: no second OpenMP runtime beside torch's; its threads sleep on a
    # condition variable between the two parallel loops of an epoch.
    numba.config.THREADING_LAYER = "workqueue"

_CACHE = os.environ.get("M6BENCH_NUMBA_CACHE", "1") != "0"


@numba.njit(cache=_CACHE, nogil=True, fastmath=True, error_model="numpy")
def _system_times(direction: np.ndarray, gram: np.ndarray, fixed: np.ndarray,
                  items: np.ndarray, alpha: np.float32, out: np.ndarray) -> None:
    """``out = direction (Y^T Y + l2 I) + alpha sum_i (direction . y_i) y_i`` over the row's
    positives ``items``."""
    dim = direction.shape[0]
    for k in range(dim):
        out[k] = 0.0
    for j in range(dim):
        weight = direction[j]
        row = gram[j]
        for k in range(dim):
            out[k] += weight * row[k]
    for i in items:
        y = fixed[i]
        dot = np.float32(0.0)
        for k in range(dim):
            dot += direction[k] * y[k]
        dot *= alpha
        for k in range(dim):
            out[k] += dot * y[k]


@numba.njit(cache=_CACHE, nogil=True, fastmath=True, error_model="numpy", parallel=True)
def _solve_rows(fixed: np.ndarray, gram: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                current: np.ndarray, alpha: np.float32, steps: int, out: np.ndarray) -> None:
    n_rows, dim = current.shape
    for row in numba.prange(n_rows):
        items = indices[indptr[row]:indptr[row + 1]]
        solution = out[row]
        solution[:] = current[row]
        # b - A x0 = sum_i ((1 + alpha) - alpha x0 . y_i) y_i - x0 (Y^T Y + l2 I)
        residual = np.zeros(dim, dtype=np.float32)
        product = np.empty(dim, dtype=np.float32)
        _system_times(solution, gram, fixed, items, alpha, product)
        for i in items:
            y = fixed[i]
            for k in range(dim):
                residual[k] += y[k]
        for k in range(dim):
            residual[k] = (1.0 + alpha) * residual[k] - product[k]
        direction = residual.copy()
        residual_norm = np.float32(0.0)
        for k in range(dim):
            residual_norm += residual[k] * residual[k]
        for iteration in range(steps):
            _system_times(direction, gram, fixed, items, alpha, product)
            curvature = np.float32(0.0)
            for k in range(dim):
                curvature += direction[k] * product[k]
            # A converged row has a zero direction; the floor keeps its step at 0, not NaN.
            step = residual_norm / max(curvature, np.float32(1e-30))
            for k in range(dim):
                solution[k] += step * direction[k]
            if iteration == steps - 1:
                break  # the next direction would go unused
            new_norm = np.float32(0.0)
            for k in range(dim):
                residual[k] -= step * product[k]
                new_norm += residual[k] * residual[k]
            ratio = new_norm / max(residual_norm, np.float32(1e-30))
            for k in range(dim):
                direction[k] = residual[k] + ratio * direction[k]
            residual_norm = new_norm


def solve_side_rows(fixed: torch.Tensor, indptr: np.ndarray, indices: np.ndarray,
                    current: torch.Tensor, alpha: float, l2: float, steps: int,
                    threads: int) -> torch.Tensor:
    """:func:`~m6bench_classic.factorisation.solve_side_cg` on a CPU, row by row.

    :param fixed: ``(m, d)`` float32 factors of the other side.
    :param indptr: ``indices``: the CSR arrays of this side's interactions (rows x m).
    :param current: ``(n, d)`` factors to start from.
    :param threads: the rows are split over at most this many threads.
    :return: ``(n, d)`` float32 factors.
    """
    fixed = fixed.contiguous()
    gram = fixed.T @ fixed + l2 * torch.eye(fixed.shape[1])
    out = torch.empty_like(current)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    _solve_rows(fixed.numpy(), gram.numpy(), indptr, indices, current.contiguous().numpy(),
                np.float32(alpha), steps, out.numpy())
    return out


def warm_up() -> None:
    """Loads (on the first run after an install: compiles, ~3 s) the kernel for the types a
    model passes, so that no timed half-step pays for it; a model calls this when built."""
    fixed = torch.zeros(2, 2)
    solve_side_rows(fixed, np.array([0, 1], dtype=np.int64), np.array([0], dtype=np.int64),
                    torch.zeros(1, 2), 1.0, 1.0, 1, 1)
