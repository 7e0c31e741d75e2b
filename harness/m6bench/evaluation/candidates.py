"""Candidate sets: which items a benchmark ranks (all, the held-out items, one domain's)."""

from __future__ import annotations

import numpy as np
import torch

from m6bench.data.dataset import Dataset
from m6bench.data.specs import BenchmarkSpec
from m6bench.data.split import Split
from m6bench.errors import ProtocolError
from m6bench.protocols.cuts import domain_index


def candidate_masks(
    spec: BenchmarkSpec, dataset: Dataset, split: Split, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The bool ``(n_items,)`` masks of the items ranked in the valid and test parts, by the
    benchmark's ``candidates``: ``all`` (None, None: full ranking), ``heldout`` (the items of
    the evaluated part) or ``domain:NAME`` (the items with an interaction in domain NAME)."""
    n_items = dataset.n_items
    if spec.candidates == "all":
        return None, None
    if spec.candidates == "heldout":
        return (item_mask(dataset.items[split.valid], n_items, device),
                item_mask(dataset.items[split.test], n_items, device))
    if spec.candidates.startswith("domain:"):
        code = domain_index(dataset, spec.candidates.removeprefix("domain:"),
                            f"Benchmark {spec.name!r} (candidates={spec.candidates!r})")
        mask = item_mask(dataset.items[dataset.domains == code], n_items, device)
        return mask, mask
    raise ProtocolError(
        f"Benchmark {spec.name!r} has candidates={spec.candidates!r}; use 'all' (full "
        "ranking), 'heldout' (rank only the items held out in the evaluated part) or "
        "'domain:NAME' (rank only the items with an interaction in domain NAME)."
    )


def item_mask(items: np.ndarray, n_items: int, device: torch.device) -> torch.Tensor:
    """A bool ``(n_items,)`` mask, True at each of ``items``."""
    mask = torch.zeros(n_items, dtype=torch.bool)
    mask[torch.from_numpy(np.unique(items))] = True
    return mask.to(device)
