"""m6-rec-tuned's adapter mode: LoRA-shaped residual adapters on the frozen pooled vectors.

The frozen encoder's unit vector of each item text is computed once (and cached on disk, as
m6-rec-zero's); a user is the mean of the vectors of their history's items.  Two adapters,
one per side, each ``x + B A x`` with ``A`` ``(r, H)`` and ``B`` ``(H, r)`` (LoRA's shape, Hu
et al., ICLR 2022, applied to the encoder's pooled output instead of its attention
weights), learn which text predicts which user's choice: the score is the dot product of
the adapted user vector and the adapted, re-normalised item vector.  ``B`` starts at zero,
so an untrained adapter scores the plain cosine of the history's mean with the item.

Why over cached vectors: nothing backpropagates through the encoder, so a step of 256
(user, item) pairs costs a few small matrix products instead of a 3-layer transformer pass,
and a pass over ml-100k's training pairs takes seconds (the soft prompts' 120 steps of 32
pairs took ~300 s).

Two losses (``adapter_loss``):

* ``"full"`` (default): a softmax over every item the tuning corpus counts, a user's other
  positives left out as negatives, with a :class:`TextPopularityHead` adding each item's
  logit bias from its text.  The item vectors go through dropout in training (as
  m6-fusion's ``text_dropout``), so the adapters and the head learn from text what
  carries over to items they never saw, rather than the warm items' exact vectors.
* ``"in-batch"``: the batch's other positives as negatives, logQ-corrected (Yi et al.,
  RecSys 2019); no bias, since the correction takes popularity out of the logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from m6bench import ConfigError, csr_row_entries


class ResidualAdapter(nn.Module):
    """``x -> x + (x A^T) B^T``: a rank-``rank`` update of ``hidden``-sized vectors.

    ``A`` starts as Gaussian noise of variance ``1 / hidden`` (from the global torch
    generator, which the harness seeds), ``B`` at zero, as LoRA initialises them: the
    adapter starts as the identity and its first gradient step is well defined.
    """

    def __init__(self, hidden: int, rank: int) -> None:
        super().__init__()
        if rank < 1:
            raise ConfigError(f"m6-rec-tuned: adapter_rank={rank} must be at least 1 (e.g. "
                              "--set adapter_rank=16), or use tuning=prompt.")
        self.down = nn.Parameter(torch.randn(rank, hidden) / hidden ** 0.5)
        self.up = nn.Parameter(torch.zeros(hidden, rank))

    def forward(self, vectors: Tensor) -> Tensor:
        return vectors + (vectors @ self.down.T) @ self.up.T


class BehaviourAdapters(nn.Module):
    """The user-side and item-side :class:`ResidualAdapter` (``2 * 2 * hidden * rank``
    numbers in all)."""

    def __init__(self, hidden: int, rank: int) -> None:
        super().__init__()
        self.user = ResidualAdapter(hidden, rank)
        self.item = ResidualAdapter(hidden, rank)

    def users(self, history_means: Tensor) -> Tensor:
        """Adapted user vectors from the means of their history's item vectors ``(B, H)``."""
        return self.user(history_means)

    def items(self, item_vectors: Tensor) -> Tensor:
        """Adapted item vectors, unit length ``(I, H)``."""
        return nn.functional.normalize(self.item(item_vectors), dim=-1)


class TextPopularityHead(nn.Module):
    """An item's logit bias from its frozen text vector ``(I, H) -> (I,)``: one hidden layer
    of ``width`` GELU units, or a linear map when ``width`` is 0.

    Why learned inside the softmax: with full negatives the bias is the item's share of the
    users' choices that their history does not explain, which is popularity as these users
    see it, read from the text that a cold item has too.
    """

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        if width < 0:
            raise ConfigError(f"m6-rec-tuned: popularity_head={width} must be 0 (linear) or "
                              "a hidden width (e.g. --set popularity_head=64).")
        self.layers = (nn.Sequential(nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, 1))
                       if width else nn.Linear(hidden, 1))

    def forward(self, item_vectors: Tensor) -> Tensor:
        return self.layers(item_vectors).squeeze(-1)


def full_softmax(user_vectors: Tensor, item_vectors: Tensor, item_bias: Tensor,
                 temperature: float, targets: Tensor, excluded: Tensor) -> Tensor:
    """Mean cross-entropy of each row's ``targets`` column among all ``item_vectors``.

    Logits are ``user_vectors (B, H) @ item_vectors (I, H).T / temperature + item_bias
    (I,)``; the ``excluded`` ``(B, I)`` entries (a user's other positives, no negatives of
    this pair) are dropped from the softmax.
    """
    logits = user_vectors @ item_vectors.T / float(temperature) + item_bias[None, :]
    return nn.functional.cross_entropy(logits.masked_fill(excluded, float("-inf")), targets)


def other_positives(indptr: Tensor, positives: Tensor, users: Tensor, targets: Tensor,
                    columns: int) -> Tensor:
    """``(B, columns)`` bool: row ``b`` marks user ``users[b]``'s positive columns except its
    own target ``targets[b]``.  The positives are CSR ``indptr (U + 1,)`` and column indices
    ``positives``."""
    entries, counts = csr_row_entries(indptr, users)
    rows = torch.arange(len(users), device=users.device)
    mask = torch.zeros(len(users), columns, dtype=torch.bool, device=users.device)
    mask[torch.repeat_interleave(rows, counts), positives[entries]] = True
    mask[rows, targets] = False
    return mask


def history_csr(histories: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """The histories as CSR: row pointers ``(U + 1,)`` and their items in order, int64."""
    lengths = torch.tensor([len(items) for items in histories], dtype=torch.int64)
    indptr = torch.zeros(len(histories) + 1, dtype=torch.int64)
    indptr[1:] = lengths.cumsum(0)
    flat = torch.tensor([item for items in histories for item in items], dtype=torch.int64)
    return indptr, flat


def history_sums(item_vectors: Tensor, histories: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Each user's sum of their history's item vectors ``(U, H)`` and history length
    ``(U,)`` float32; a user without history sums to zero."""
    indptr, flat = history_csr(histories)
    lengths = indptr.diff()
    owners = torch.repeat_interleave(torch.arange(len(histories)), lengths)
    sums = torch.zeros(len(histories), item_vectors.shape[1], dtype=item_vectors.dtype)
    sums.index_add_(0, owners, item_vectors.cpu()[flat])
    return sums.to(item_vectors.device), lengths.to(item_vectors.device, torch.float32)


def history_means(sums: Tensor, lengths: Tensor) -> Tensor:
    """The mean item vector of each history (zero for an empty one)."""
    return sums / lengths.clamp_min(1.0)[:, None]


def leave_one_out_means(sums: Tensor, lengths: Tensor, users: Tensor, items: Tensor,
                        item_vectors: Tensor) -> Tensor:
    """Each pair's user's history mean without the paired item, as evaluation ranks items
    absent from the history (a history of that one item gives zero)."""
    rest = sums[users] - item_vectors[items]
    return rest / (lengths[users] - 1.0).clamp_min(1.0)[:, None]
