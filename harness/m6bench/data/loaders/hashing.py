"""Cheap source fingerprints: file digests (memoised), pinned checksums, parameter hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

_FILE_DIGESTS: dict[tuple[str, int, int, str], str] = {}


@dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` (a :mod:`hashlib` name) and its hex value.

    Most publishers pin sha256; some archives only ever had an md5 published (GroupLens
    ml-10m), and pinning an md5 beats inventing a sha256 nobody published.
    """

    algorithm: str
    hexdigest: str

    @property
    def label(self) -> str:
        """The digest as fingerprints and messages show it: bare for sha256 (the default,
        so sha256 labels stay what they always were), ``md5:<hex>`` otherwise."""
        if self.algorithm == "sha256":
            return self.hexdigest
        return f"{self.algorithm}:{self.hexdigest}"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, memoised per (path, size, mtime, algorithm).

    Fingerprints hash source bytes so that an edited file never serves a stale cache; the
    memo keeps repeated loads in one process (sweeps, boards) from re-reading large files.
    """
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, algorithm)
    digest = _FILE_DIGESTS.get(memo_key)
    if digest is None:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, algorithm).hexdigest()
        _FILE_DIGESTS[memo_key] = digest
    return digest


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (memoised: see :func:`file_digest`)."""
    return file_digest(path, "sha256")


def remember_digest(path: Path, digest: str, algorithm: str = "sha256") -> None:
    """Record the digest of a file just written (and hashed while writing): no re-read."""
    stat = path.stat()
    _FILE_DIGESTS[(str(path.resolve()), stat.st_size, stat.st_mtime_ns, algorithm)] = digest


def hash_parts(*parts: object) -> str:
    """sha256 of JSON-encoded parts: a loader's version string, options and file digests."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()

