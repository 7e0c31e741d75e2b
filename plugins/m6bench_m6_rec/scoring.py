"""Scoring users against every item: bi-encoder dot products and late-interaction MaxSim.

Both are full ranking, batched over all items; MaxSim works in item chunks so its
``(users, user tokens, items, item tokens)`` similarity block stays bounded in memory.
Item vectors may be stored int8 (per-row symmetric, m6bench's own ``quantise_rows``) and
are decoded to float32 for scoring.
"""

from __future__ import annotations

import torch
from torch import Tensor

from m6bench import quantise_rows

ITEM_VECTOR_TYPES = ("float32", "int8")
# Similarity entries one MaxSim chunk may hold (64M float32 = 256 MiB).
_MAXSIM_BLOCK = 1 << 26


def bi_scores(user_vecs: Tensor, item_vecs: Tensor) -> Tensor:
    """Dot products ``(U, H) x (I, H) -> (U, I)`` of pooled vectors (cosines when both are
    unit vectors)."""
    return user_vecs.float() @ item_vecs.float().T


def maxsim_scores(user_tokens: Tensor, user_mask: Tensor, item_tokens: Tensor,
                  item_mask: Tensor) -> Tensor:
    """ColBERT's MaxSim: for each user and item, the sum over the user's tokens of the largest
    dot product with any of the item's tokens.

    :param user_tokens: ``(U, T, H)``; ``user_mask`` ``(U, T)``, 0 for padding (skipped).
    :param item_tokens: ``(I, S, H)``; ``item_mask`` ``(I, S)``, 0 for padding (never the
        max).  An item without any token scores 0.
    :return: float32 ``(U, I)``.
    """
    users, length, _ = user_tokens.shape
    n_items, width, _ = item_tokens.shape
    user_tokens = user_tokens.float()
    weights = user_mask.to(torch.float32)
    chunk = max(1, _MAXSIM_BLOCK // max(1, users * length * width))
    scores = torch.zeros(users, n_items, dtype=torch.float32, device=user_tokens.device)
    for start in range(0, n_items, chunk):
        tokens = item_tokens[start:start + chunk].float()
        valid = item_mask[start:start + chunk].bool()
        similarity = torch.einsum("uth,ish->utis", user_tokens, tokens)
        similarity = similarity.masked_fill(~valid[None, None], float("-inf")).amax(dim=-1)
        similarity = torch.nan_to_num(similarity, neginf=0.0)  # items without tokens
        scores[:, start:start + chunk] = (similarity * weights[:, :, None]).sum(dim=1)
    return scores


def behaviour_maxsim(history_vecs: Tensor, history_mask: Tensor, item_vecs: Tensor) -> Tensor:
    """Late interaction at the behaviour level: each item's largest similarity to any item of
    the user's history, ``(U, L, H), (U, L), (I, H) -> (U, I)``; 0 for an empty history.

    This is :func:`maxsim_scores` with the item as the query (one vector) and the user's
    behaviours as the document's tokens.
    """
    query = item_vecs[:, None, :]
    query_mask = torch.ones(item_vecs.shape[0], 1, device=item_vecs.device)
    return maxsim_scores(query, query_mask, history_vecs, history_mask).T


def quantise_item_vectors(vectors: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row symmetric int8 item vectors: ``q`` int8 ``(I, H)`` and float32 ``scale``
    ``(I,)``, each entry within ``scale / 2`` of the float value."""
    return quantise_rows(vectors)


def dequantise(q: Tensor, scale: Tensor) -> Tensor:
    """float32 item vectors back from :func:`quantise_item_vectors`."""
    return q.to(torch.float32) * scale[:, None]
