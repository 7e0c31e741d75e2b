"""What every GroupLens archive parser shares: zip member access (with errors that say
which file and how to fix it) and the kinds of the MovieLens item features."""

from __future__ import annotations

import zipfile
from pathlib import Path

from m6bench.data.loaders.options import one_line
from m6bench.errors import DatasetError

# Every MovieLens variant describes its movies with these, whichever source it is read from.
MOVIELENS_ITEM_KINDS = {"title": "text", "genres": "categorical_seq", "year": "numeric"}


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(
            f"{path} is not a readable zip archive ({one_line(exc)}). Download it again or "
            "pass another archive with --dataset-opt archive=PATH."
        ) from None


def member_name(archive: zipfile.ZipFile, path: Path, filename: str) -> str:
    """The member called ``filename`` at the top or in the archive's one folder."""
    for member in archive.namelist():
        if member == filename or member.endswith("/" + filename):
            return member
    raise DatasetError(
        f"{path} has no {filename}, so it is not a GroupLens MovieLens archive in the "
        f"expected layout (members: {', '.join(archive.namelist()[:8])}...). Pass the "
        "unmodified zip from files.grouplens.org."
    )


def read_member(archive: zipfile.ZipFile, path: Path, filename: str) -> bytes:
    return archive.read(member_name(archive, path, filename))
