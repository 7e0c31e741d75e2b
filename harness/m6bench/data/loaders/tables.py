"""The ``csv`` loader: a CSV, TSV or Parquet file with a column mapping.

A file without a header row names its columns with the ``names`` option.  The "ratings
only" files of the Amazon review datasets (e.g. ``ratings_Books.csv``: ``item,user,rating,
timestamp`` rows, no header) load with ``names=item_id,user_id,rating,timestamp``, which
the default column mapping then reads as item, user, rating and timestamp.

The column mapping and the feature-table readers are shared with the ``hf`` loader, which
turns a HuggingFace dataset into the same kind of frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from m6bench.data.dataset import Dataset
from m6bench.data.loaders.frames import RawTables, build_dataset, kind_for, typed_table
from m6bench.data.loaders.hashing import file_sha256, hash_parts
from m6bench.data.loaders.options import (
    COMMON_DEFAULTS,
    one_line,
    optional_text,
    required_path,
)
from m6bench.data.specs import LoadContext
from m6bench.errors import DatasetError

CSV_VERSION = "csv-1"
COLUMN_DEFAULTS = {
    "user": "user_id", "item": "item_id", "rating": "rating", "timestamp": "timestamp",
    "domain": "domain",
}
CSV_DEFAULTS = {"path": None, "sep": None, "names": None, **COLUMN_DEFAULTS,
                "user_features": None, "item_features": None, **COMMON_DEFAULTS}


def _separator(path: Path, options: Mapping[str, Any]) -> str:
    explicit = options.get("sep")
    if explicit not in (None, ""):
        return {"tab": "\t", "\\t": "\t"}.get(str(explicit), str(explicit))
    return "\t" if path.suffix.lower() in (".tsv", ".tab") else ","


def header_names(options: Mapping[str, Any]) -> list[str] | None:
    """The ``names`` option: the columns of a file without a header row, comma-separated."""
    text = optional_text(options, "names")
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if "" in names or len(set(names)) != len(names):
        raise DatasetError(
            f"Dataset option names={text!r} must list distinct, non-empty column names "
            "separated by commas, e.g. --dataset-opt names=item_id,user_id,rating,timestamp."
        )
    return names


def read_table_file(
    path: Path, options: Mapping[str, Any], text_columns: list[str],
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file; ``text_columns`` (ids) are kept as strings.

    ``names`` are the columns of a CSV/TSV without a header row (its first row is data).
    """
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            sep = _separator(path, options)
            header = names or pd.read_csv(path, sep=sep, nrows=0).columns
            frame = pd.read_csv(
                path, sep=sep, engine="c" if len(sep) == 1 else "python",
                header=None if names else "infer", names=names,
                dtype={c: "str" for c in text_columns if c in header},
                keep_default_na=False, na_values=[""],
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError) as exc:
        raise DatasetError(
            f"{path} could not be read as a table: {one_line(exc)}. Check it is a CSV/TSV "
            "(with a header row; set the separator with --dataset-opt sep=...) or a Parquet file."
        ) from None
    return frame


def interactions_from_frame(
    frame: pd.DataFrame, options: Mapping[str, Any], where: str
) -> pd.DataFrame:
    """Apply the column mapping: rename source columns to user/item/rating/timestamp/domain.

    ``user`` and ``item`` must exist; the other defaults are optional (a default column that
    is absent is not used), but a column the user named explicitly must exist.
    """
    renamed: dict[str, str] = {}
    for target, default in COLUMN_DEFAULTS.items():
        column = optional_text(options, target)
        if column is None:
            continue
        if column not in frame.columns:
            if target in ("user", "item") or column != default:
                raise DatasetError(
                    f"{where}: there is no column {column!r} for the {target} "
                    f"(columns found: {', '.join(map(str, frame.columns)) or 'none'}). Name the "
                    f"right column with --dataset-opt {target}=COLUMN."
                )
            continue
        renamed[column] = target
    interactions = frame[list(renamed)].rename(columns=renamed)
    for column in ("user", "item", "domain"):
        if column in interactions.columns:
            interactions[column] = interactions[column].astype("str")
    if "timestamp" in interactions.columns:
        interactions["timestamp"] = _to_unix_seconds(interactions["timestamp"])
    return interactions


def _to_unix_seconds(values: pd.Series) -> pd.Series:
    """Numbers pass through; date/time strings become Unix seconds; others stay for errors."""
    if pd.api.types.is_numeric_dtype(values):
        return values
    if pd.api.types.is_datetime64_any_dtype(values):
        return (values - pd.Timestamp(0, tz=values.dt.tz)) // pd.Timedelta(seconds=1)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    if parsed.notna().all():
        return (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return values


def features_from_frame(
    frame: pd.DataFrame, key_column: str, key: str, where: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    if key_column not in frame.columns:
        raise DatasetError(
            f"{where}: the {key} feature table has no column {key_column!r} to join on "
            f"(columns found: {', '.join(map(str, frame.columns))}). Use the same id column "
            f"name as the interactions, or set --dataset-opt {key}=COLUMN."
        )
    features = [c for c in frame.columns if c != key_column]
    kinds = {str(c): kind_for(str(c), None, frame[c]) for c in features}
    prepared = frame[features].copy()
    prepared.columns = [str(c) for c in features]
    for column, kind in kinds.items():
        if kind == "categorical_seq" and prepared[column].astype("str").str.contains("|").any():
            # 'Action|Sci-Fi' (MovieLens CSVs) -> space-separated tokens, the shared format.
            prepared[column] = (prepared[column].astype("str").str.replace(" ", "_")
                                .str.replace("|", " "))
    table = typed_table(prepared, kinds)
    table.insert(0, key, frame[key_column].astype("str"))
    return table, kinds


def tables_from_frames(
    frame: pd.DataFrame,
    options: Mapping[str, Any],
    where: str,
    read_side: Callable[[Path], pd.DataFrame],
) -> RawTables:
    interactions = interactions_from_frame(frame, options, where)
    sides: dict[str, tuple[pd.DataFrame | None, dict[str, str]]] = {}
    for key in ("user", "item"):
        option = f"{key}_features"
        side_path = optional_text(options, option)
        if side_path is None:
            sides[key] = (None, {})
            continue
        path = required_path({"path": side_path}, option)
        key_column = optional_text(options, key) or COLUMN_DEFAULTS[key]
        sides[key] = features_from_frame(read_side(path), key_column, key, str(path))
    return RawTables(interactions, sides["user"][0], sides["item"][0], sides["user"][1],
                     sides["item"][1], where)


def id_columns(options: Mapping[str, Any]) -> list[str]:
    return [c for c in (optional_text(options, k) for k in ("user", "item", "domain")) if c]


def csv_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    paths = [required_path(options, "csv")]
    paths += [Path(p).expanduser() for p in (optional_text(options, "user_features"),
                                             optional_text(options, "item_features")) if p]
    return hash_parts(CSV_VERSION, [file_sha256(p) if p.exists() else str(p) for p in paths])


def load_csv(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    path = required_path(options, "csv")
    if path.is_dir():
        raise DatasetError(
            f"{path} is a folder; the csv loader reads one CSV/TSV/Parquet file. For a folder "
            "of RecBole atomic files use the recbole loader (or pass the folder as the dataset)."
        )
    ids = id_columns(options)

    def read_side(file: Path) -> pd.DataFrame:
        return read_table_file(file, options, ids)

    frame = read_table_file(path, options, ids, header_names(options))
    tables = tables_from_frames(frame, options, str(path), read_side)
    return build_dataset(path.stem, tables, options)

