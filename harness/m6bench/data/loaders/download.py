"""Fetching a data archive: atomically, and kept only when its sha256 is the expected one."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from m6bench.data.loaders.hashing import remember_sha256
from m6bench.data.loaders.options import one_line
from m6bench.errors import DatasetError


def checksum_error(variant: str, where: str, expected: str, actual: str) -> DatasetError:
    """Also raised for a local archive whose digest differs from the sha256 option."""
    return DatasetError(
        f"The {variant} archive from {where} has sha256 {actual}, but {expected} was expected. "
        "The file is corrupt, truncated or a different release; nothing was kept. Retry the "
        "download, or if you trust this file pass --dataset-opt sha256=<its digest>."
    )


def download_archive(url: str, target: Path, expected_sha256: str, variant: str,
                     timeout: float) -> Path:
    """Download ``url`` to ``target`` atomically, verifying its sha256.

    The bytes go to a temporary file beside the target and are renamed only after the
    checksum matches, so an interrupted or corrupt download never leaves a file that a later
    run would trust.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{variant}.", suffix=".part"
    )
    temporary = Path(temporary_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DatasetError(
                    f"Downloading {variant} from {url} failed: {one_line(exc)}. Check "
                    "the network and the url option, or pass a local copy with "
                    "--dataset-opt archive=PATH "
                    "(or set M6BENCH_DATA_DIR to the RecBole copies)."
                ) from None
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise checksum_error(variant, url, expected_sha256, actual)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    remember_sha256(target, actual)
    return target

