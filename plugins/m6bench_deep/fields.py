"""Side tables -> the field layout of factorisation machines and wide models.

A *field* is one input slot of DeepFM or Wide&Deep: the user id, the gender, the
occupation, the age band, the item id, the genres, the release-year band, ...  Every entity
has every field; a field holds up to ``K`` tokens with weights summing to 1 (a multi-valued
field such as genres averages its tokens; a missing value holds none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from m6bench import tokenise_side_table


@dataclass(frozen=True)
class FieldTable:
    """One side's fields: ``tokens`` int64 ``(n, F, K)`` into a shared vocabulary, ``0`` as
    padding; ``weights`` float32 ``(n, F, K)``; ``names`` the F field names; ``vocabulary``
    the number of token ids (with padding); ``id_field`` the position of the entity-id field
    (always 0)."""

    tokens: torch.Tensor
    weights: torch.Tensor
    names: tuple[str, ...]
    vocabulary: int

    @property
    def n_fields(self) -> int:
        return len(self.names)


def field_table(
    n: int,
    table: pd.DataFrame | None,
    kinds: Mapping[str, str],
    *,
    with_id: bool = True,
    bands: int = 6,
    min_count: int = 2,
    id_name: str = "id",
) -> FieldTable:
    """The fields of ``n`` entities: their id (``with_id``), every categorical and token-list
    column, and every numeric column as quantile bands.  Tokens held by fewer than
    ``min_count`` entities are dropped (the field is then empty for those entities).

    Token ids come from m6bench's side-table tokeniser, per field in order of first
    appearance (so entity ``e``'s id token is ``e + 1``)."""
    tokens = tokenise_side_table(table, kinds, n, bands=bands, min_count=min_count,
                                 id_field=id_name if with_id else None, order="first-seen")
    return FieldTable(tokens.tokens, tokens.weights, tokens.fields, tokens.size)
