"""Resolve a dataset name or path to a registered loader, and load it through the cache."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from m6bench.data.cache import (
    CACHE_FORMAT,
    cache_key,
    default_context,
    read_cached_dataset,
    write_cached_dataset,
)
from m6bench.data.dataset import Dataset, content_fingerprint
from m6bench.data.loaders.movielens import grouplens_variant
from m6bench.data.specs import DatasetSpec, LoadContext
from m6bench.errors import DatasetError, did_you_mean

# Which loader reads a file given as the dataset itself, by its extension.
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".tab": "csv", ".parquet": "csv", ".pq": "csv",
                  ".inter": "recbole"}


# ============================================================================= resolution
def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or text.startswith((".", "~"))
        or Path(text).suffix.lower() in {*TABLE_SUFFIXES, ".zip", ".json", ".jsonl"}
    )


def resolve_dataset(
    catalog: Any, name_or_path: str, options: Mapping[str, Any] | None = None
) -> tuple[DatasetSpec, dict[str, Any]]:
    """The loader for a registered name or an existing path, and the merged options.

    A registered name wins over a same-named file.  A folder holding a ``.inter`` file is
    read as RecBole atomic files; a ``.csv`` / ``.tsv`` / ``.parquet`` file as a table; a
    GroupLens zip by the matching MovieLens loader.
    Options are merged over the loader's defaults; unknown keys are rejected so that a typo
    never silently falls back to a default.
    """
    options = dict(options or {})
    registry = catalog.datasets
    if name_or_path in registry:
        spec = registry.get(name_or_path)
    else:
        loader, path_options = _detect_path(name_or_path, registry)
        if loader not in registry:
            raise DatasetError(
                f"{name_or_path} looks like a {loader} dataset, but no {loader!r} loader is "
                "registered (is m6bench.builtin.datasets disabled?)."
            )
        spec = registry.get(loader)
        options = {**path_options, **options}
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        accepted = sorted(spec.defaults)
        hints = [
            f"Did you mean {close[0]!r} for {key!r}? "
            for key in unknown
            if (close := difflib.get_close_matches(key, accepted, n=1, cutoff=0.6))
        ]
        raise DatasetError(
            f"The dataset loader {spec.name!r} takes no option "
            f"{', '.join(map(repr, unknown))}. {''.join(hints)}Accepted options: "
            f"{', '.join(accepted) or 'none'} (pass them as --dataset-opt key=value)."
        )
    return spec, {**spec.defaults, **options}


def _grouplens_variant(path: Path) -> str:
    """Which MovieLens loader reads this zip, judged by its members' layout."""
    try:
        with zipfile.ZipFile(path) as archive:
            variant = grouplens_variant(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path} is not a readable zip archive ({exc}).") from None
    if variant is None:
        raise DatasetError(
            f"{path} is a zip but not a GroupLens MovieLens archive (ml-100k's u.data, "
            "ml-1m's or ml-10m's ratings.dat, or ml-20m's or ml-25m's ratings.csv and "
            "movies.csv). Unpack it and pass the table file or RecBole folder inside instead."
        )
    return variant


def _detect_path(text: str, registry: Any) -> tuple[str, dict[str, Any]]:
    path = Path(text).expanduser()
    if path.is_dir():
        if any(path.glob("*.inter")):
            return "recbole", {"path": str(path)}
        raise DatasetError(
            f"The folder {path} holds no .inter file, so it is not a RecBole atomic dataset. "
            "Pass a folder with <name>.inter (and optionally .user/.item), a .csv/.tsv/.parquet "
            f"file, or a registered dataset name ({', '.join(registry.names())})."
        )
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return _grouplens_variant(path), {"archive": str(path)}
        loader = TABLE_SUFFIXES.get(path.suffix.lower())
        if loader is None:
            raise DatasetError(
                f"{path} is a file m6bench cannot read by its extension ({path.suffix or 'none'}"
                "). Use .csv, .tsv or .parquet (or a RecBole folder); for JSON or other formats "
                "use the hf loader: --dataset hf --dataset-opt path=json "
                f"--dataset-opt data_files={path}."
            )
        return loader, {"path": str(path)}
    if _looks_like_path(text):
        raise DatasetError(
            f"Missing data folder or file: {path} does not exist (looked from {Path.cwd()}). "
            "Check the path, or use a registered dataset name: "
            f"{', '.join(registry.names())}."
        )
    raise DatasetError(
        did_you_mean(text, registry.names(), what="dataset")
        + " A path to a RecBole folder or a .csv/.tsv/.parquet file is accepted too."
    )


# ============================================================================= loading
def load_dataset(
    catalog: Any,
    name_or_path: str,
    options: Mapping[str, Any] | None = None,
    context: LoadContext | None = None,
) -> Dataset:
    """Load a dataset by registered name or path, through the on-disk Arrow cache.

    The cache key hashes the loader name, the merged options and the loader's source
    fingerprint, so a changed file or option misses the cache while a repeated load reads
    Arrow without calling the loader.
    """
    context = context or default_context()
    spec, merged = resolve_dataset(catalog, name_or_path, options)
    if spec.fingerprint is None:
        return _fingerprinted(spec.load(merged, context))
    entry = _cache_entry(spec, merged, context)
    cached = read_cached_dataset(entry)
    if cached is not None:
        return cached
    dataset = _fingerprinted(spec.load(merged, context))
    write_cached_dataset(entry, dataset)
    return dataset


def _fingerprinted(dataset: Dataset) -> Dataset:
    """A loader that built its Dataset directly may leave the fingerprint empty: fill it."""
    if dataset.fingerprint:
        return dataset
    return dataclasses.replace(dataset, fingerprint=content_fingerprint(dataset))


def _cache_entry(spec: DatasetSpec, merged: Mapping[str, Any], context: LoadContext) -> Path:
    key = cache_key(spec.name, merged, spec.fingerprint(merged, context))
    return Path(context.cache_dir) / "datasets" / key


def cached_dataset_meta(
    catalog: Any,
    name_or_path: str,
    options: Mapping[str, Any] | None = None,
    context: LoadContext | None = None,
) -> dict[str, Any] | None:
    """The ``meta.json`` of the dataset's complete cache entry, or None, reading no data.

    It holds the content ``fingerprint`` and the feature kinds, which is all a benchmark's
    version needs.  Resolving the loader and computing its source fingerprint may raise
    :class:`DatasetError` (e.g. the data is not there).
    """
    context = context or default_context()
    spec, merged = resolve_dataset(catalog, name_or_path, options)
    if spec.fingerprint is None:
        return None
    meta_path = _cache_entry(spec, merged, context) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return None
    return meta
