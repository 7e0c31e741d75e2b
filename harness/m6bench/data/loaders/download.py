"""Fetching a data archive: atomically, and kept only when its checksum is the expected one."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from m6bench.data.loaders.hashing import Checksum, remember_digest
from m6bench.data.loaders.options import one_line
from m6bench.errors import DatasetError
from m6bench.files import atomic_file


def checksum_error(
    variant: str, where: str, expected: Checksum, actual: str, actual_sha256: str | None = None
) -> DatasetError:
    """Also raised for a local archive whose digest differs from the expected one.

    ``actual`` is the file's digest under ``expected.algorithm``; ``actual_sha256`` (when the
    expected digest is not a sha256) lets the message name the value to pass as the fix.
    """
    trusted = actual_sha256 or actual
    return DatasetError(
        f"The {variant} archive from {where} has {expected.algorithm} {actual}, but "
        f"{expected.hexdigest} was expected. The file is corrupt, truncated or a different "
        "release; nothing was kept. Retry the download, or if you trust this file pass "
        f"--dataset-opt sha256={trusted}."
    )


def download_archive(url: str, target: Path, expected: Checksum, variant: str,
                     timeout: float) -> Path:
    """Download ``url`` to ``target`` atomically, verifying its checksum.

    The bytes go to a temporary file beside the target and are renamed only after the
    checksum matches, so an interrupted or corrupt download never leaves a file that a later
    run would trust.
    """
    # sha256 always (fingerprints of local files use it), plus the pinned algorithm if other.
    digests = {name: hashlib.new(name) for name in {"sha256", expected.algorithm}}
    with atomic_file(target, prefix=f".{variant}.", suffix=".part") as out:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    for digest in digests.values():
                        digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DatasetError(
                f"Downloading {variant} from {url} failed: {one_line(exc)}. Check "
                "the network and the url option, or pass a local copy with "
                f"--dataset-opt archive=PATH (or put {target.name} in the folder "
                "M6BENCH_DATA_DIR names)."
            ) from None
        actual = {name: digest.hexdigest() for name, digest in digests.items()}
        if actual[expected.algorithm] != expected.hexdigest:
            raise checksum_error(variant, url, expected, actual[expected.algorithm],
                                 actual["sha256"])
    for name, value in actual.items():
        remember_digest(target, value, name)
    return target
