"""Side tables and timestamps -> tensors: standardised numbers, context codes, text neighbours.

Everything here is a pure function of a side table (or of the training interactions), run
once when a model is built; the results become non-persistent buffers of the encoders.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

# Numeric kinds become standardised numbers here; every categorical, list and numeric column
# becomes tokens through m6bench's side-table tokeniser (the categorical-features encoder).
NUMERIC_KINDS = ("numeric",)

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400
HOURS, WEEKDAYS = 24, 7


def numeric_matrix(
    table: pd.DataFrame | None, kinds: Mapping[str, str], n: int
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Standardised numeric columns plus a missing-value flag per column.

    :return: float32 ``(n, 2 * n_columns)`` (z-scores with NaN as 0, then 0/1 flags) and the
        column names; ``(n, 0)`` when the table has no numeric column.
    """
    columns: list[str] = []
    blocks: list[np.ndarray] = []
    if table is not None:
        for column, kind in kinds.items():
            if column not in table.columns or kind not in NUMERIC_KINDS:
                continue
            values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)[:n]
            values = np.concatenate([values, np.full(n - len(values), np.nan)])
            finite = np.isfinite(values)
            if not finite.any():
                continue
            mean, std = values[finite].mean(), values[finite].std()
            z = np.where(finite, (values - mean) / (std if std > 0 else 1.0), 0.0)
            columns.append(column)
            blocks.append(np.stack([z, (~finite).astype(np.float64)], axis=1))
    if not blocks:
        return torch.zeros(n, 0), ()
    z_scores = np.concatenate([b[:, :1] for b in blocks], axis=1)
    flags = np.concatenate([b[:, 1:] for b in blocks], axis=1)
    matrix = np.concatenate([z_scores, flags], axis=1).astype(np.float32)
    return torch.from_numpy(matrix), tuple(columns)


def context_codes(
    timestamps: torch.Tensor | None, domains: torch.Tensor | None, n_domains: int, n: int,
    device: torch.device,
) -> torch.Tensor:
    """Context token ids of ``n`` interactions: hour, weekday, domain.

    Layout of the context vocabulary: ``[0, 24)`` hour of day (UTC), ``[24, 31)`` weekday
    (Monday = 0), ``[31, 31 + n_domains)`` domain.  Without timestamps (or domains) those
    columns point at a shared "unknown" id ``31 + n_domains``.

    :return: int64 ``(n, 3)``.
    """
    unknown = HOURS + WEEKDAYS + n_domains
    codes = torch.full((n, 3), unknown, dtype=torch.int64, device=device)
    if timestamps is not None:
        seconds = timestamps.to(torch.int64)
        codes[:, 0] = torch.div(seconds, SECONDS_PER_HOUR, rounding_mode="floor") % HOURS
        days = torch.div(seconds, SECONDS_PER_DAY, rounding_mode="floor")
        codes[:, 1] = HOURS + (days + 3) % WEEKDAYS  # 1970-01-01 was a Thursday
    if domains is not None and n_domains > 0:
        codes[:, 2] = HOURS + WEEKDAYS + domains.to(torch.int64).clamp(0, n_domains - 1)
    return codes


def context_profiles(codes: torch.Tensor, users: torch.Tensor, n_users: int,
                     vocabulary: int) -> torch.Tensor:
    """Each user's average context over their training interactions.

    :param codes: int64 ``(n, 3)`` context ids of the training interactions.
    :param users: int64 ``(n,)`` their users.
    :return: float32 ``(n_users, vocabulary)``: per context field, the share of the user's
        interactions with each id (each field's row sums to 1; all zero for a user without
        interactions), so ``profile @ table`` is the mean context embedding.
    """
    profile = torch.zeros(n_users, vocabulary, device=codes.device)
    ones = torch.ones(users.numel(), device=codes.device)
    for column in range(codes.shape[1]):
        profile.index_put_((users, codes[:, column]), ones, accumulate=True)
    counts = torch.bincount(users, minlength=n_users).clamp_min(1).to(profile.dtype)
    return profile / counts[:, None]


def evidence_bands(popularity: torch.Tensor, n_bands: int) -> torch.Tensor:
    """Item-side context: how much training evidence an item has.

    Band 0 is "no interaction" (a cold item); band ``b >= 1`` holds items with
    ``2^(b-1) <= count < 2^b`` training interactions, capped at ``n_bands - 1``.

    :param popularity: float ``(n_items,)`` training interaction counts.
    :return: int64 ``(n_items,)``.
    """
    bands = torch.floor(torch.log2(popularity.clamp_min(1.0))).to(torch.int64) + 1
    bands = bands.clamp(max=n_bands - 1)
    return torch.where(popularity > 0, bands, torch.zeros_like(bands))


def text_neighbours(vectors: torch.Tensor, eligible: torch.Tensor, k: int,
                    block_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Each entity's ``k`` nearest eligible entities by cosine similarity of text vectors.

    :param vectors: float ``(n, d)`` text vectors (zero rows: no text).
    :param eligible: bool ``(n,)``, who may be a neighbour (warm items with text); nobody is
        their own neighbour.
    :return: int64 ``(n, k)`` neighbour indices and float32 ``(n, k)`` weights: the positive
        similarities normalised to sum 1 per row (all 0 for a row without text or without a
        positively similar eligible entity).  Computed block-wise: memory ``block_size x n``.
    """
    n = vectors.shape[0]
    unit = torch.nn.functional.normalize(vectors.float(), dim=1)
    candidates = eligible.nonzero(as_tuple=True)[0]
    k = max(0, min(k, candidates.numel() - 1))
    index = torch.zeros(n, max(k, 1), dtype=torch.int64)
    weight = torch.zeros(n, max(k, 1), dtype=torch.float32)
    if k == 0:
        return index, weight
    pool = unit[candidates]
    for start in range(0, n, block_size):
        rows = torch.arange(start, min(n, start + block_size))
        similarity = unit[rows] @ pool.T  # (b, n_candidates)
        similarity[rows.unsqueeze(1) == candidates.unsqueeze(0)] = -torch.inf  # not itself
        values, positions = similarity.topk(k, dim=1)
        values = values.clamp_min(0.0)
        total = values.sum(dim=1, keepdim=True)
        index[rows] = candidates[positions]
        weight[rows] = torch.where(total > 0, values / total.clamp_min(1e-12), 0.0)
    return index, weight
