"""Text vectors on disk, keyed by content: an encoder never runs twice on the same text.

Layout: ``<cache>/m6-rec/<kind>/<k[:2]>/<k>.npy`` in m6bench's cache folder
(``m6bench.cache_dir()``), where ``kind`` is ``pooled`` (one unit vector ``(H,)`` per text) or
``tokens`` (the token vectors ``(T, H)`` of a text, padding removed), and ``k`` is the sha256
of the encoder's identity (name, layers, weights hash), the template that wrote the text,
the token cap and the text.  An item whose text changes gets a new key, so its vectors are
recomputed; unchanged texts are read back.  Writes are atomic (temporary file + rename), so a
killed run leaves no half-written vector.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import m6bench
from m6bench_m6_rec.encoder import TextEncoder

KINDS = ("pooled", "tokens")


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` or m6bench's cache folder, then ``m6-rec/``."""
    return (Path(cache_dir).expanduser() if cache_dir else m6bench.cache_dir()) / "m6-rec"


def vector_key(identity: str, template: str, max_tokens: int, text: str) -> str:
    """sha256 hex digest of everything that determines a text's vectors."""
    return hashlib.sha256("\0".join([identity, template, str(max_tokens), text]).encode()
                          ).hexdigest()


class VectorCache:
    """Pooled and token vectors of texts written by one template, from disk or encoded once.

    :param encoder: the encoder; its ``identity`` is part of every key.
    :param template: the template that wrote the texts (part of every key).
    :param max_tokens: the token cap the texts are encoded with.
    :param cache_dir: the m6bench cache dir (``None``: ``m6bench.cache_dir()``).

    ``calls`` counts encoder runs (one per batch of missing texts) and ``encoded`` the texts
    encoded: a warm cache encodes nothing.
    """

    def __init__(self, encoder: TextEncoder, template: str, max_tokens: int,
                 cache_dir: str | os.PathLike[str] | None = None, batch_size: int = 64) -> None:
        self.encoder = encoder
        self.template = template
        self.max_tokens = int(max_tokens)
        self.root = cache_root(cache_dir)
        self.batch_size = batch_size
        self.calls = 0
        self.encoded = 0

    def path(self, kind: str, text: str) -> Path:
        key = vector_key(self.encoder.identity, self.template, self.max_tokens, text)
        return self.root / kind / key[:2] / f"{key}.npy"

    def pooled(self, texts: Sequence[str]) -> torch.Tensor:
        """float32 ``(len(texts), H)`` unit vectors."""
        found = self._lookup("pooled", texts)
        if not texts:
            return torch.zeros(0, self.encoder.hidden_size)
        return torch.from_numpy(np.stack([found[text] for text in texts]))

    def tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 token vectors ``(len(texts), T, H)`` padded with zeros to the longest
        text, and their int64 mask ``(len(texts), T)``."""
        found = self._lookup("tokens", texts)
        width = max((found[text].shape[0] for text in texts), default=1)
        hidden = torch.zeros(len(texts), width, self.encoder.hidden_size)
        mask = torch.zeros(len(texts), width, dtype=torch.int64)
        for row, text in enumerate(texts):
            vectors = torch.from_numpy(found[text])
            hidden[row, : len(vectors)] = vectors
            mask[row, : len(vectors)] = 1
        return hidden, mask

    def _lookup(self, kind: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Every distinct text's vectors of ``kind``: read, or encoded in one pass and
        stored."""
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            try:
                found[text] = np.load(self.path(kind, text), allow_pickle=False)
            except (FileNotFoundError, ValueError, OSError):
                missing.append(text)
        if missing:
            self.calls += 1
            self.encoded += len(missing)
            outputs = self.encoder.encode(missing, self.max_tokens, batch_size=self.batch_size)
            for text, (hidden, mask) in zip(missing, outputs):
                if kind == "pooled":
                    array = self.encoder.pooled(hidden[None], mask[None])[0].numpy()
                else:
                    array = hidden.numpy()
                _store(self.path(kind, text), array)
                found[text] = array
        return found


def _store(path: Path, array: np.ndarray) -> None:
    with m6bench.atomic_file(path) as stream:
        np.save(stream, np.ascontiguousarray(array, dtype=np.float32))
