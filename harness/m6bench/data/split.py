"""A cut of a dataset: row indices for train, valid and test."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices of a dataset's interactions for each part.

    ``train``, ``valid`` and ``test`` are int64 arrays of row numbers.  ``cold_users`` /
    ``cold_items`` list entities the protocol held out of training entirely (empty for warm
    protocols).  ``fingerprint`` identifies the cut (dataset, protocol, options, seed).
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    cold_users: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    cold_items: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    protocol: str = ""
    fingerprint: str = ""

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}
