"""Cheap source fingerprints: file digests (memoised) and hashes of loader parameters."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, memoised per (path, size, mtime) within the process.

    Fingerprints hash source bytes so that an edited file never serves a stale cache; the
    memo keeps repeated loads in one process (sweeps, boards) from re-reading large files.
    """
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = _FILE_DIGESTS.get(memo_key)
    if digest is None:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        _FILE_DIGESTS[memo_key] = digest
    return digest


def remember_sha256(path: Path, digest: str) -> None:
    """Record the digest of a file just written (and hashed while writing): no re-read."""
    stat = path.stat()
    _FILE_DIGESTS[(str(path.resolve()), stat.st_size, stat.st_mtime_ns)] = digest


def hash_parts(*parts: object) -> str:
    """sha256 of JSON-encoded parts: a loader's version string, options and file digests."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()

