"""The large GroupLens archives: ml-10m (``::`` .dat files) and ml-20m / ml-25m (CSV files).

Tens of millions of ratings are read by pyarrow into typed columns (int32 ids, float32
ratings, int64 timestamps) without a Python-level loop over rows, and reach
``Dataset.from_frames`` as those integer columns: it turns ids into strings itself, and
measured on 10 M rows that is faster than handing it strings or categoricals of strings.

Items are keyed by their ``movieId`` (these archives have no RecBole copy whose ids they
would have to match); titles, release years and genres become item features, and users have
none.  tags, links and the tag genome are not read.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from m6bench.data.loaders.frames import RawTables, strip_title_year, typed_table
from m6bench.data.loaders.grouplens import (
    MOVIELENS_ITEM_KINDS,
    member_name,
    open_zip,
    read_member,
)
from m6bench.data.loaders.options import one_line
from m6bench.errors import DatasetError

RATING_COLUMNS = ("user", "item", "rating", "timestamp")
RATING_TYPES = {"user": pa.int32(), "item": pa.int32(), "rating": pa.float32(),
                "timestamp": pa.int64()}
# The GroupLens CSV header names of the rating columns, in RATING_COLUMNS order.
CSV_RATING_HEADER = ("userId", "movieId", "rating", "timestamp")
# What GroupLens writes for a movie without genres (ml-20m, ml-25m): missing, not 3 tokens.
NO_GENRES = "(no genres listed)"


def parse_ml10m_archive(path: Path) -> RawTables:
    """GroupLens ml-10m (``ml-10M100K/``): ratings.dat and movies.dat, ``::``-separated."""
    with open_zip(path) as archive:
        # pyarrow (like pandas' fast engine) splits on one character: '::' becomes a tab,
        # which no field holds.  Done on the bytes, so no row is ever a Python object.
        ratings = read_member(archive, path, "ratings.dat").replace(b"::", b"\t")
        movies = read_member(archive, path, "movies.dat").replace(b"::", b"\t")
    table = _read_ratings(pa.BufferReader(ratings), path, "ratings.dat",
                          pacsv.ReadOptions(column_names=list(RATING_COLUMNS),
                                            block_size=1 << 24),
                          dict(zip(RATING_COLUMNS, RATING_COLUMNS, strict=True)))
    del ratings
    movie_raw = _read_movies(movies, path, "movies.dat", sep="\t", header=None)
    return _large_tables(table, movie_raw, f"{path}:ratings.dat")


def parse_grouplens_csv_archive(path: Path) -> RawTables:
    """GroupLens ml-20m / ml-25m: ratings.csv and movies.csv, with headers, UTF-8."""
    with open_zip(path) as archive:
        with archive.open(member_name(archive, path, "ratings.csv")) as stream:
            table = _read_ratings(stream, path, "ratings.csv",
                                  pacsv.ReadOptions(block_size=1 << 24),
                                  dict(zip(CSV_RATING_HEADER, RATING_COLUMNS, strict=True)))
        movies = read_member(archive, path, "movies.csv")
    movie_raw = _read_movies(movies, path, "movies.csv", sep=",", header=0)
    return _large_tables(table, movie_raw, f"{path}:ratings.csv")


def _read_ratings(
    source: pa.NativeFile | zipfile.ZipExtFile, path: Path, member: str,
    read_options: pacsv.ReadOptions, names: dict[str, str],
) -> pa.Table:
    """Read four typed rating columns; ``names`` maps the file's column names to ours."""
    convert = pacsv.ConvertOptions(
        column_types={source_name: RATING_TYPES[ours] for source_name, ours in names.items()},
        include_columns=list(names),
    )
    dat = member.endswith(".dat")  # '::' already made a tab; .dat fields are never quoted
    parse = pacsv.ParseOptions(delimiter="\t" if dat else ",",
                               quote_char=False if dat else '"')
    try:
        table = pacsv.read_csv(source, read_options=read_options, parse_options=parse,
                               convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as exc:
        raise DatasetError(
            f"{path}: {member} could not be read as ratings {', '.join(names)} "
            f"({one_line(exc)}). Pass an unmodified GroupLens archive."
        ) from None
    return table.rename_columns([names[name] for name in table.column_names])


def _read_movies(data: bytes, path: Path, member: str, *, sep: str,
                 header: int | None) -> pd.DataFrame:
    """movieId, title, genres as text (some tens of thousands of rows)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # older GroupLens files are latin-1
        text = data.decode("latin-1")
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, header=header, names=["item", "raw_title", "genres"],
            dtype="str", keep_default_na=False, na_values=[""], engine="c",
            # .dat titles hold bare quotes; CSV titles are quoted when they hold commas
            quoting=csv.QUOTE_NONE if header is None else csv.QUOTE_MINIMAL,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DatasetError(
            f"{path}: {member} could not be parsed ({one_line(exc)}). Pass an unmodified "
            "GroupLens archive."
        ) from None
    return frame


def _large_tables(ratings: pa.Table, movie_raw: pd.DataFrame, source: str) -> RawTables:
    interactions = pd.DataFrame({
        "user": ratings.column("user").to_numpy(),
        "item": ratings.column("item").to_numpy(),
        "rating": ratings.column("rating").to_numpy(),
        "timestamp": ratings.column("timestamp").to_numpy(),
    })
    title, year = strip_title_year(movie_raw["raw_title"])
    genres = movie_raw["genres"].where(movie_raw["genres"] != NO_GENRES)
    items = pd.DataFrame({
        "title": title,
        "genres": genres.str.replace("|", " ", regex=False),
        "year": year,
    })
    item_table = typed_table(items.astype(object), MOVIELENS_ITEM_KINDS)
    item_table.insert(0, "item", movie_raw["item"].astype("str"))
    return RawTables(interactions, None, item_table, {}, dict(MOVIELENS_ITEM_KINDS), source)

