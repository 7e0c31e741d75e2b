"""Files written all or nothing."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, prefix: str | None = None,
                suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """A binary stream whose bytes become ``path`` only when the ``with`` block ends
    without an exception.

    The bytes go to a temporary file beside ``path`` (same file system, so the final rename
    is atomic); an exception, or a process killed part way, leaves ``path`` as it was and no
    half-written file a later run would trust.  Raise inside the block to refuse what was
    written (e.g. a checksum that does not match).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=suffix,
                                         prefix=prefix or f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
