"""BPR-MF's training epoch as one fused CPU kernel (numba): shuffle, negative sampling and the
mini-batch Adagrad steps in a single compiled loop.

The tensor step (:meth:`m6bench_classic.factorisation.BPRMF.step`) launches about twenty
small parallel operations per mini-batch; on a CPU each one wakes the pool's sleeping
threads and passes over the batch's rows again, and together they cost 3-4x implicit's
Cython epoch (measured, ``benchmarks/README.md``).  Here one call runs the epoch:

* the training pairs in an order shuffled by Fisher-Yates, and a negative per pair (uniform
  over the items the user has not interacted with, by rejection), from SplitMix64 over
  counters seeded by the run's generator: pair ``b``'s candidates depend on the seed and
  ``b`` only;
* per mini-batch, the same step as the tensor one: one loop over the pairs reads each pair's
  three rows once and adds ``g (p - n)`` to the user's gradient row and ``+-g u`` to the
  items' (``g = -sigmoid(-x)``, ``x = <u, p - n>``); one loop over the touched rows adds the
  l2 term (``2 l2`` times the row, per occurrence), takes the Adagrad step and clears the
  gradient row.  Every gradient is taken at the parameters before the step; rows differ from
  the tensor step's by float rounding only (a test compares them).

It runs on one thread: parallel loops over a batch were no faster on 2 cores (each wakes a
sleeping worker, several times per batch), and one thread keeps its speed beside other work
and gives the same bits on every machine.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch

_CACHE = os.environ.get("M6BENCH_NUMBA_CACHE", "1") != "0"

# error_model="numpy": a float division by zero gives inf instead of raising, which lets LLVM
# vectorise the Adagrad division (measured 5x on its loop; the divisor is >= eps anyway).
_KERNEL = {"cache": _CACHE, "nogil": True, "fastmath": True, "error_model": "numpy"}

# Draws per pair before the last one stands: a user who has seen 90% of the items keeps a
# training item with probability 0.9^64 = 0.1%.
NEGATIVE_TRIES = 64
# The largest user x item grid whose membership bitmap is built (64 MB of bits; ML-1M's takes
# 2.8 MB); beyond it, a binary search in the user's items.
BITMAP_MAX_PAIRS = 512 * 2**20
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(**_KERNEL)
def _mix(state: np.uint64) -> np.uint64:
    """SplitMix64's output function (Steele, Lea, Flood, OOPSLA 2014): a bijection of 64-bit
    integers whose outputs for consecutive counters pass BigCrush."""
    state = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    state = (state ^ (state >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state ^ (state >> np.uint64(31))


@numba.njit(**_KERNEL)
def _is_training_pair(user: int, item: int, indptr: np.ndarray, indices: np.ndarray,
                      n_items: int, bitmap: np.ndarray) -> bool:
    if bitmap.shape[0] > 0:
        key = user * n_items + item
        return (bitmap[key >> 3] >> (key & 7)) & 1 == 1
    low, high = indptr[user], indptr[user + 1]  # binary search of the user's ascending items
    while low < high:
        middle = (low + high) >> 1
        if indices[middle] < item:
            low = middle + 1
        else:
            high = middle
    return low < indptr[user + 1] and indices[low] == item


@numba.njit(**_KERNEL)
def _draw(seed: np.uint64, pair: int, attempt: int, n_items: int) -> np.int64:
    """Pair ``pair``'s ``attempt``-th candidate: counter-based, so any pass order draws it."""
    counter = seed + np.uint64(pair * NEGATIVE_TRIES + attempt + 1) * _GOLDEN
    return np.int64(_mix(counter) % np.uint64(n_items))


@numba.njit(**_KERNEL)
def _fill_negatives(users: np.ndarray, seed: np.uint64, history: tuple, n_items: int,
                    true_negatives: bool, negatives: np.ndarray) -> None:
    """Each pair's first candidate in one branch-free pass (its loads overlap), then the few
    that hit a training item drawn again, up to :data:`NEGATIVE_TRIES` candidates."""
    indptr, indices, bitmap = history
    for b in range(users.shape[0]):
        negatives[b] = _draw(seed, b, 0, n_items)
    if not true_negatives:
        return
    for b in range(users.shape[0]):
        attempt = 1
        while attempt < NEGATIVE_TRIES and _is_training_pair(users[b], negatives[b], indptr,
                                                              indices, n_items, bitmap):
            negatives[b] = _draw(seed, b, attempt, n_items)
            attempt += 1


@numba.njit(**_KERNEL)
def _pair_bitmap(indptr: np.ndarray, indices: np.ndarray, n_items: int) -> np.ndarray:
    bitmap = np.zeros(((indptr.shape[0] - 1) * n_items + 7) // 8, dtype=np.uint8)
    for user in range(indptr.shape[0] - 1):
        for position in range(indptr[user], indptr[user + 1]):
            key = user * n_items + indices[position]
            bitmap[key >> 3] |= np.uint8(1 << (key & 7))
    return bitmap


@numba.njit(**_KERNEL)
def _adagrad_row(row: np.ndarray, squares: np.ndarray, gradient: np.ndarray,
                 decay: np.float32, lr: np.float32, eps: np.float32) -> None:
    """The Adagrad step of one row on ``gradient + decay row`` (``decay``: the l2 factor
    times the row's pairs), then its gradient row cleared for the next batch."""
    for k in range(row.shape[0]):
        total = gradient[k] + decay * row[k]
        square = squares[k] + total * total
        squares[k] = square
        row[k] -= lr * total / (np.sqrt(square) + eps)
        gradient[k] = 0.0


@numba.njit(**_KERNEL)
def _squared_norm(row: np.ndarray) -> float:
    total = np.float32(0.0)
    for k in range(row.shape[0]):
        total += row[k] * row[k]
    return total


@numba.njit(**_KERNEL)
def _touch(row: int, counts: np.ndarray, touched: np.ndarray, n_touched: int) -> int:
    if counts[row] == 0:
        touched[n_touched] = row
        n_touched += 1
    counts[row] += 1
    return n_touched


@numba.njit(**_KERNEL)
def _step_touched(table: np.ndarray, squares: np.ndarray, gradients: np.ndarray,
                  counts: np.ndarray, touched: np.ndarray, decay: np.float32, lr: np.float32,
                  eps: np.float32, with_loss: bool) -> float:
    """The Adagrad step of each touched row of one table; returns the l2 term's squared
    norms (each row's, once per occurrence, before its step; 0 unless ``with_loss``)."""
    norms_total = 0.0
    for row in touched:
        if with_loss:
            norms_total += counts[row] * _squared_norm(table[row])
        _adagrad_row(table[row], squares[row], gradients[row], np.float32(decay * counts[row]),
                     lr, eps)
        counts[row] = 0
    return norms_total


@numba.njit(**_KERNEL)
def _step(tables: tuple, users: np.ndarray, positives: np.ndarray, negatives: np.ndarray,
          lr: np.float32, decay: np.float32, eps: np.float32, work: tuple,
          with_loss: bool) -> tuple:
    """One mini-batch step; returns the batch's summed ``-log sigmoid`` terms and squared
    norms (zeros unless ``with_loss``)."""
    user_table, user_squares, item_table, item_squares = tables
    user_gradients, user_counts, user_touched, item_gradients, item_counts, item_touched = work
    zero = np.float32(0.0)
    ranking_total = norms_total = 0.0
    n_users = n_items = 0
    for b in range(users.shape[0]):
        user, positive, negative = users[b], positives[b], negatives[b]
        own, positive_row, negative_row = user_table[user], item_table[positive], \
            item_table[negative]
        margin = zero
        for k in range(own.shape[0]):
            margin += own[k] * (positive_row[k] - negative_row[k])
        g = np.float32(-1.0 / (1.0 + np.exp(margin)))
        if with_loss:
            # -log sigmoid(x) = log(1 + exp(-x)), written so that exp never overflows
            ranking_total += max(-margin, zero) + np.log1p(np.exp(-abs(margin)))
        n_users = _touch(user, user_counts, user_touched, n_users)
        n_items = _touch(positive, item_counts, item_touched, n_items)
        n_items = _touch(negative, item_counts, item_touched, n_items)
        # Gradients only: every row keeps its value before the step until the loop ends.
        # One loop per written row: LLVM vectorises a loop only after run-time checks that
        # its rows do not overlap, and gives up on one writing three rows and reading three.
        user_gradient = user_gradients[user]
        for k in range(own.shape[0]):
            user_gradient[k] += g * (positive_row[k] - negative_row[k])
        positive_gradient = item_gradients[positive]
        for k in range(own.shape[0]):
            positive_gradient[k] += g * own[k]
        negative_gradient = item_gradients[negative]
        for k in range(own.shape[0]):
            negative_gradient[k] -= g * own[k]
    norms_total += _step_touched(user_table, user_squares, user_gradients, user_counts,
                                 user_touched[:n_users], decay, lr, eps, with_loss)
    norms_total += _step_touched(item_table, item_squares, item_gradients, item_counts,
                                 item_touched[:n_items], decay, lr, eps, with_loss)
    return ranking_total, norms_total


@numba.njit(**_KERNEL)
def _epoch(tables: tuple, pairs: tuple, history: tuple, n_items: int, seed: np.uint64,
           true_negatives: bool, batch_size: int, lr: np.float32, decay: np.float32,
           eps: np.float32, work: tuple, epoch_pairs: tuple, with_loss: bool) -> tuple:
    users, items = pairs
    shuffled_users, shuffled_items, negatives = epoch_pairs
    n = users.shape[0]
    order = np.arange(n)
    for i in range(n - 1, 0, -1):  # Fisher-Yates, from the counters after the negatives'
        j = np.int64(_mix(seed + np.uint64(n * NEGATIVE_TRIES + i) * _GOLDEN) % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]
    for b in range(n):
        shuffled_users[b], shuffled_items[b] = users[order[b]], items[order[b]]
    _fill_negatives(shuffled_users, seed, history, n_items, true_negatives, negatives)
    ranking_total = norms_total = 0.0
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        ranking, norms = _step(tables, shuffled_users[start:stop], shuffled_items[start:stop],
                               negatives[start:stop], lr, decay, eps, work, with_loss)
        ranking_total += ranking
        norms_total += norms
    return ranking_total, norms_total


class FusedBPR:
    """The kernel's state for one model: numpy views of its four float32 CPU tables (updated
    in place), the training pairs and the user-item membership, and the work arrays.

    :param tables: user rows, their Adagrad sums of squares, item rows, theirs.
    :param users: ``items``: int64 ``(n_train,)`` training pairs.
    :param indptr: ``indices``: the training matrix's CSR arrays, each row's items ascending.
    """

    def __init__(self, tables: tuple[torch.Tensor, ...], users: torch.Tensor,
                 items: torch.Tensor, indptr: np.ndarray, indices: np.ndarray, n_items: int,
                 max_batch: int, max_bitmap_pairs: int = BITMAP_MAX_PAIRS) -> None:
        self.tables = tuple(t.detach().numpy() for t in tables)
        self.pairs = (users.numpy(), items.numpy())
        n_users, dim = self.tables[0].shape
        pairs = n_users * n_items
        bitmap = (_pair_bitmap(indptr, indices, n_items) if pairs <= max_bitmap_pairs
                  else np.zeros(0, dtype=np.uint8))
        self.history = (indptr, indices, bitmap)
        self.n_items = n_items
        self.max_batch = max_batch
        # Gradient tables start at zero and are cleared row by row after each step.
        self.work = (
            np.zeros((n_users, dim), dtype=np.float32), np.zeros(n_users, dtype=np.int64),
            np.empty(max_batch, dtype=np.int64),  # users' gradients, occurrences, touched
            np.zeros((n_items, dim), dtype=np.float32), np.zeros(n_items, dtype=np.int64),
            np.empty(2 * max_batch, dtype=np.int64),  # items' gradients, occurrences, touched
        )
        # The epoch's shuffled users and items and their negatives.
        self.epoch_pairs = tuple(np.empty(users.numel(), dtype=np.int64) for _ in range(3))

    def epoch(self, seed: int, true_negatives: bool, lr: float, decay: float, eps: float,
              with_loss: bool) -> tuple[float, float]:
        """One epoch in mini-batches of ``max_batch``; returns the summed ``-log sigmoid``
        terms and squared norms of its pairs (zeros unless ``with_loss``)."""
        return _epoch(self.tables, self.pairs, self.history, self.n_items, np.uint64(seed),
                      true_negatives, self.max_batch, np.float32(lr), np.float32(decay),
                      np.float32(eps), self.work, self.epoch_pairs, with_loss)

    def step(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
             lr: float, decay: float, eps: float, with_loss: bool) -> tuple[float, float]:
        """One mini-batch step on the given int64 ``(B,)`` pairs (``B <= max_batch``)."""
        return _step(self.tables, users.numpy(), positives.numpy(), negatives.numpy(),
                     np.float32(lr), np.float32(decay), np.float32(eps), self.work, with_loss)

    def negatives(self, users: torch.Tensor, seed: int,
                  true_negatives: bool = True) -> torch.Tensor:
        """A negative per user of int64 ``users`` ``(N,)``, drawn as :meth:`epoch` draws."""
        negatives = np.empty(users.numel(), dtype=np.int64)
        _fill_negatives(users.numpy(), np.uint64(seed), self.history, self.n_items,
                        true_negatives, negatives)
        return torch.from_numpy(negatives)


def warm_up() -> None:
    """Loads (on the first run after an install: compiles, ~5 s) the epoch kernel for the
    types a model passes, so that no timed epoch pays for it; a model calls this when built."""
    tables = (torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(3, 2), torch.zeros(3, 2))
    users, items = torch.tensor([0, 1]), torch.tensor([1, 2])
    kernel = FusedBPR(tables, users, items, np.array([0, 1, 2], dtype=np.int64),
                      np.array([1, 2], dtype=np.int64), 3, max_batch=2)
    kernel.epoch(0, True, 0.0, 0.0, 1e-10, with_loss=True)
