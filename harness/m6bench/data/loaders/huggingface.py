"""The ``hf`` loader: the HuggingFace ``datasets`` hub, or its local builders (csv, json, ...).

``datasets`` is imported only when this loader runs: it is slow to import and optional.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from m6bench.data.dataset import Dataset
from m6bench.data.loaders.frames import build_dataset
from m6bench.data.loaders.hashing import file_sha256, hash_parts
from m6bench.data.loaders.options import COMMON_DEFAULTS, one_line, optional_text
from m6bench.data.loaders.tables import (
    COLUMN_DEFAULTS,
    id_columns,
    read_table_file,
    tables_from_frames,
)
from m6bench.data.specs import LoadContext
from m6bench.errors import DatasetError

HF_VERSION = "hf-1"
HF_DEFAULTS = {"path": None, "name": None, "data_files": None, "split": "train",
               "revision": None, **COLUMN_DEFAULTS, **COMMON_DEFAULTS}


@contextlib.contextmanager
def _hf_offline(offline: bool) -> Iterator[None]:
    """Make HF ``datasets`` use only local files while loading, then restore its settings.

    ``datasets`` reads the HF_*_OFFLINE variables once at import, so the module constants
    are switched too.
    """
    if not offline:
        yield
        return
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env = {n: os.environ.get(n) for n in names}
    os.environ.update(dict.fromkeys(names, "1"))
    import datasets.config
    import huggingface_hub.constants

    modules = (datasets.config, huggingface_hub.constants)
    saved = [(m, n, getattr(m, n)) for m in modules for n in names if hasattr(m, n)]
    for module, name, _ in saved:
        setattr(module, name, True)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _hf_data_files(options: Mapping[str, Any]) -> list[str] | None:
    value = options.get("data_files")
    if value in (None, ""):
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


def hf_fingerprint(options: Mapping[str, Any], context: LoadContext) -> str:
    files = _hf_data_files(options) or []
    local = [Path(f).expanduser() for f in files]
    digests = [file_sha256(p) if p.is_file() else str(p) for p in local]
    hub = {k: options.get(k) for k in ("path", "name", "split", "revision")}
    return hash_parts(HF_VERSION, hub, digests)


def load_hf(options: Mapping[str, Any], context: LoadContext) -> Dataset:
    path = optional_text(options, "path")
    if path is None:
        raise DatasetError(
            "The 'hf' dataset loader needs the option path: a hub dataset name (e.g. "
            "--dataset-opt path=user/dataset) or a local builder (csv, json, parquet) with "
            "--dataset-opt data_files=FILE."
        )
    data_files = _hf_data_files(options)
    for file in data_files or []:
        if "://" not in file and not any(ch in file for ch in "*?[") and not Path(
            file
        ).expanduser().exists():
            raise DatasetError(
                f"Missing data file: {file} (from the data_files option) does not exist. "
                "Check the path; several files are separated by commas."
            )
    import datasets

    where = f"hf:{path}" + (f" ({', '.join(data_files)})" if data_files else "")
    try:
        with _hf_offline(context.offline):
            loaded = datasets.load_dataset(
                path,
                name=optional_text(options, "name"),
                data_files=data_files,
                split=optional_text(options, "split") or "train",
                revision=optional_text(options, "revision"),
                cache_dir=str(Path(context.cache_dir) / "huggingface"),
            )
    except Exception as exc:  # the hub raises many types; all mean "could not load"
        hint = (
            " This machine is in offline mode (M6BENCH_OFFLINE / HF_HUB_OFFLINE): only local "
            "files and the HF cache are used; set M6BENCH_OFFLINE=0 to reach the hub."
            if context.offline else ""
        )
        raise DatasetError(
            f"HuggingFace datasets could not load {where}: {type(exc).__name__}: "
            f"{one_line(exc)}.{hint} Check the path, name, split and data_files options."
        ) from None
    frame = loaded.to_pandas()
    ids = id_columns(options)
    for column in ids:
        if column in frame.columns:
            frame[column] = frame[column].astype("str")
    tables = tables_from_frames(frame, options, where, lambda p: read_table_file(p, options, ids))
    name = Path(data_files[0]).stem if data_files else path.rstrip("/").split("/")[-1]
    return build_dataset(name, tables, options)

