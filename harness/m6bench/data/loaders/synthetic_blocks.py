"""The synthetic generator's users x items work, done a block of users at a time.

The planted logits ``2 * standardised(U I^T / sqrt(dim)) + item_bias`` exist only one block of
users at a time, so peak memory is ``O(interactions + (users + items) x dim + _BLOCK_CELLS)``
instead of ``O(users x items)``.

Draw order is the dense generator's: the Gumbel noise of the whole matrix (row by row, which
is the order one ``(n_users, n_items)`` draw fills it), then the per-user counts.  A block
needs its users' counts before the later blocks' noise is drawn, so the counts are read ahead
from a copy of the bit generator advanced past the noise (:func:`_counts_ahead`).

The block size does not change the content.  When the whole matrix fits in one block (up to
``_BLOCK_CELLS`` cells: the defaults and the built-in benchmarks) the arithmetic is the dense
generator's, step for step.  With several blocks the random stream is the same and the
discrete choices (which items, in which order, their ratings) come out the same; only the
last bits of the affinity may differ (BLAS multiplies a block of rows, and the affinity's mean
and spread come from closed forms over the factors), and a last bit could tip a choice only in
a ~1e-15 coincidence.  The dense generator had that exposure to the BLAS build already; tests
check that several blocks and one give the same frames, and the dense generator's
fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# At most this many users x items cells exist at once (32 MiB per float64 array).
_BLOCK_CELLS = 2**22


def rows_per_block(n_items: int) -> int:
    """Users per block: as many as keep a block's logits within ``_BLOCK_CELLS`` cells."""
    return max(1, _BLOCK_CELLS // n_items)


def block_bytes(n_users: int, n_items: int) -> int:
    """Peak bytes of one block's work: about eight float64 or int64 arrays of its cells."""
    return 8 * 8 * min(n_users, rows_per_block(n_items)) * n_items


@dataclass(frozen=True)
class PlantedLogits:
    """What a block of planted logits is computed from: ``(n_users, dim)``, ``(n_items, dim)``
    factors, the ``(n_items,)`` item bias and the affinity's weight in the logit."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    affinity_weight: float

    @property
    def n_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    def row_blocks(self) -> list[range]:
        step = rows_per_block(self.n_items)
        return [range(start, min(start + step, self.n_users))
                for start in range(0, self.n_users, step)]

    def raw_affinity(self, rows: range) -> np.ndarray:
        dim = self.user_factors.shape[1]
        return self.user_factors[rows.start:rows.stop] @ self.item_factors.T / np.sqrt(dim)


@dataclass(frozen=True)
class AffinityScale:
    """Mean and standard deviation of the raw affinity over every (user, item) cell."""

    mean: float
    std: float

    @classmethod
    def measure(cls, planted: PlantedLogits) -> AffinityScale:
        blocks = planted.row_blocks()
        if len(blocks) == 1:
            # Exactly the dense generator's reductions, so one-block content is unchanged.
            whole = planted.raw_affinity(blocks[0])
            return cls(whole.mean(), whole.std())
        # Closed forms over the factors, O((users + items) dim^2) and no pass over the cells:
        # sum_ui <u,i> = <sum u, sum i> and sum_ui <u,i>^2 = trace(U^T U I^T I).
        users, items = planted.user_factors, planted.item_factors
        cells, dim = planted.n_users * planted.n_items, users.shape[1]
        mean = users.sum(axis=0) @ items.sum(axis=0) / np.sqrt(dim) / cells
        mean_square = np.sum((users.T @ users) * (items.T @ items)) / dim / cells
        return cls(mean, np.sqrt(max(mean_square - mean**2, 0.0)))

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        """``(raw - mean) / std``, overwriting ``raw``."""
        raw -= self.mean
        raw /= self.std
        return raw


@dataclass(frozen=True)
class SampledInteractions:
    """Interactions in generation order with the standardised affinity of each pair."""

    users: np.ndarray
    items: np.ndarray
    affinity: np.ndarray


def sample_interactions(
    rng: np.random.Generator,
    planted: PlantedLogits,
    scale: AffinityScale,
    draw_counts: Callable[[np.random.Generator], np.ndarray],
) -> SampledInteractions:
    """Gumbel top-k per user (sampling without replacement ∝ exp(logit)), block by block.

    ``draw_counts(rng)`` draws the ``(n_users,)`` interaction counts; it is called after the
    noise, as the dense generator did.  Every item gets at least one interaction: an item no
    user picked goes to its most eager user (highest perturbed logit), so n_items is exact.
    """
    start_state = rng.bit_generator.state
    counts = _counts_ahead(rng, planted.n_users * planted.n_items, draw_counts)
    sampled = _sample_blocks(rng, planted, scale, counts)
    drawn = draw_counts(rng)
    if not np.array_equal(drawn, counts):
        # A Gumbel draw rejected a uniform (probability 2**-53 each), so the read-ahead was
        # one step off: redo the pass with the counts the stream really holds.
        rng.bit_generator.state = start_state
        sampled = _sample_blocks(rng, planted, scale, drawn)
        draw_counts(rng)
    return sampled


def _counts_ahead(
    rng: np.random.Generator, n_draws: int,
    draw_counts: Callable[[np.random.Generator], np.ndarray],
) -> np.ndarray:
    """The counts ``rng`` will draw after ``n_draws`` more Gumbel variates (one 64-bit
    output each), read from an advanced copy; ``rng`` itself does not move."""
    state = rng.bit_generator.state
    ahead = type(rng.bit_generator)()
    ahead.state = state
    ahead.advance(n_draws)
    # advance() drops the buffered 32-bit half-word; Gumbel draws never touch it, so the
    # real stream still holds it after the noise.
    advanced = ahead.state
    advanced["has_uint32"], advanced["uinteger"] = state["has_uint32"], state["uinteger"]
    ahead.state = advanced
    return draw_counts(np.random.Generator(ahead))


def _sample_blocks(
    rng: np.random.Generator, planted: PlantedLogits, scale: AffinityScale,
    counts: np.ndarray,
) -> SampledInteractions:
    n_items = planted.n_items
    picked_items, picked_affinity = [], []
    eager_logit = np.full(n_items, -np.inf)
    eager_user = np.zeros(n_items, dtype=np.int64)
    eager_affinity = np.zeros(n_items)
    for rows in planted.row_blocks():
        affinity = scale.standardise(planted.raw_affinity(rows))
        perturbed = rng.gumbel(size=affinity.shape)
        # In place, in the dense generator's order (a + b == b + a exactly in IEEE 754).
        perturbed += planted.affinity_weight * affinity + planted.item_bias[None, :]
        items, taken = _top_counts(perturbed, counts[rows.start:rows.stop])
        picked_items.append(items[taken])
        picked_affinity.append(np.take_along_axis(affinity, items, axis=1)[taken])
        # The earliest user wins a tie, as argmax over the whole column would choose.
        block_best = perturbed.argmax(axis=0)
        block_logit = perturbed[block_best, np.arange(n_items)]
        better = block_logit > eager_logit
        eager_logit[better] = block_logit[better]
        eager_user[better] = block_best[better] + rows.start
        eager_affinity[better] = affinity[block_best[better], np.flatnonzero(better)]
    users = np.repeat(np.arange(planted.n_users), counts)
    items = np.concatenate(picked_items)
    affinity = np.concatenate(picked_affinity)
    unseen = np.flatnonzero(np.bincount(items, minlength=n_items) == 0)
    if len(unseen):
        users = np.concatenate([users, eager_user[unseen]])
        items = np.concatenate([items, unseen])
        affinity = np.concatenate([affinity, eager_affinity[unseen]])
    return SampledInteractions(users, items, affinity)


def _top_counts(perturbed: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``max(counts)`` best items, best first, and the mask of the first
    ``counts[row]`` of them: the head of a full descending argsort, without sorting it all."""
    n_items = perturbed.shape[1]
    widest = int(counts.max())
    if widest < n_items:
        head = np.argpartition(perturbed, n_items - widest, axis=1)[:, n_items - widest:]
    else:
        head = np.broadcast_to(np.arange(n_items), perturbed.shape)
    order = np.argsort(-np.take_along_axis(perturbed, head, axis=1), axis=1)
    items = np.take_along_axis(head, order, axis=1)
    taken = np.arange(widest)[None, :] < counts[:, None]
    return items, taken
