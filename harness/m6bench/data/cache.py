"""The load context from the environment, and an Arrow cache of loaded datasets.

Parsing MovieLens-1M takes seconds; reading it back from Arrow takes a fraction of that, and
every run of a sweep loads the same data.  So a loader that can fingerprint its source
cheaply (file hashes, generator parameters) gets its output cached under
``<cache_dir>/datasets/<key>/``, keyed by the loader name, the merged options and that
fingerprint (:func:`cache_key`; :mod:`m6bench.runs.loading` resolves the loader and decides
when to use the cache).  Entries are written to a temporary folder and renamed into place,
so a killed process never leaves a half-written entry that looks complete; an unreadable
entry is ignored and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from m6bench.data.dataset import Dataset
from m6bench.data.specs import LoadContext
from m6bench.environment import CACHE_DIR_ENV, cache_dir
from m6bench.errors import ConfigError

DATA_DIR_ENV = "M6BENCH_DATA_DIR"
OFFLINE_ENV = "M6BENCH_OFFLINE"

CACHE_FORMAT = 2  # 2: merged_duplicates in meta.json
ID_COLUMN = "__id__"  # the entity id column of a cached side table (features keep their names)


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    text = value.strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(
        f"The environment variable {name}={value!r} is not a yes/no value; set it to 1 or 0."
    )


def default_context() -> LoadContext:
    """The load context from the environment.

    ``M6BENCH_DATA_DIR``: folder of real data (RecBole copies), or unset.
    ``M6BENCH_CACHE_DIR``: caches (else ``$XDG_CACHE_HOME/m6bench``, else ``~/.cache/m6bench``).
    ``M6BENCH_OFFLINE`` (else ``HF_HUB_OFFLINE``): offline unless set to 0, because the
    machines this runs on often have no internet and a hub lookup would hang until timeout.
    """
    data_dir = os.environ.get(DATA_DIR_ENV) or None
    offline = _env_flag(OFFLINE_ENV)
    if offline is None:
        offline = _env_flag("HF_HUB_OFFLINE")
    return LoadContext(
        data_dir=data_dir,
        cache_dir=str(cache_dir()),
        offline=True if offline is None else offline,
    )


def cache_key(loader: str, options: Mapping[str, Any], source_fingerprint: str) -> str:
    """The entry name: changes with the cache format, the loader, any option or the source."""
    blob = json.dumps(
        {"format": CACHE_FORMAT, "loader": loader, "options": dict(options),
         "source": source_fingerprint},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ============================================================================= Arrow cache
def _interaction_columns(dataset: Dataset) -> dict[str, np.ndarray]:
    columns = {"user": dataset.users, "item": dataset.items}
    for name, array in (("rating", dataset.ratings), ("timestamp", dataset.timestamps),
                        ("domain", dataset.domains)):
        if array is not None:
            columns[name] = array
    return columns


def _side_frame(ids: np.ndarray, features: pd.DataFrame | None) -> pd.DataFrame:
    frame = pd.DataFrame({ID_COLUMN: pd.Series(ids, dtype="str")})
    if features is not None:
        frame = pd.concat([frame, features.reset_index(drop=True)], axis=1)
    return frame


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """HF ``datasets`` prints a progress bar per save/load; a cache hit should be silent."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def write_cached_dataset(entry: Path, dataset: Dataset) -> None:
    """Store ``dataset`` as Arrow (HF ``datasets``) under ``entry``; never raise for I/O.

    A cache that cannot be written (read-only disk, full disk) only costs speed, so it is a
    warning, not an error.
    """
    temporary: Path | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.tmp-"))
        with _quiet_progress():
            _write_entry(temporary, dataset)
        if entry.exists():
            if read_cached_dataset(entry) is not None:
                return  # another process wrote it meanwhile: keep theirs
            shutil.rmtree(entry, ignore_errors=True)  # the unreadable entry we replace
        try:
            os.replace(temporary, entry)
        except OSError:
            if read_cached_dataset(entry) is None:  # not a lost race: a real failure
                raise
    except (OSError, ImportError) as exc:  # ImportError: HF datasets missing or broken
        warnings.warn(
            f"Could not write the dataset cache {entry} ({exc}); the dataset is loaded but "
            f"will be parsed again next time. Set {CACHE_DIR_ENV} to a writable folder.",
            stacklevel=3,
        )
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _write_entry(folder: Path, dataset: Dataset) -> None:
    import datasets

    datasets.Dataset.from_dict(_interaction_columns(dataset)).save_to_disk(
        str(folder / "interactions")
    )
    for side, ids, features in (("users", dataset.user_ids, dataset.user_features),
                                ("items", dataset.item_ids, dataset.item_features)):
        datasets.Dataset.from_pandas(
            _side_frame(ids, features), preserve_index=False
        ).save_to_disk(str(folder / side))
    meta = {
        "format": CACHE_FORMAT,
        "name": dataset.name,
        "n_interactions": dataset.n_interactions,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "domain_names": list(dataset.domain_names),
        "user_feature_kinds": dataset.user_feature_kinds,
        "item_feature_kinds": dataset.item_feature_kinds,
        "has_user_features": dataset.user_features is not None,
        "has_item_features": dataset.item_features is not None,
        "fingerprint": dataset.fingerprint,
        "source": dataset.source,
        "merged_duplicates": dataset.merged_duplicates,
    }
    # meta.json last: its presence marks a complete entry.
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def read_cached_dataset(entry: Path) -> Dataset | None:
    """The cached dataset under ``entry``, or None when it is absent, partial or corrupt."""
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        return _read_entry(entry, json.loads(meta_path.read_text()))
    except Exception:  # any unreadable entry (bad JSON, truncated Arrow, ...) is rebuilt
        return None


def _arrow_table(folder: Path) -> pa.Table:
    """Read a table that ``datasets.Dataset.save_to_disk`` wrote, with pyarrow alone.

    ``save_to_disk`` writes Arrow IPC streams listed in ``state.json``: exactly what
    ``datasets.load_from_disk`` reads.  Reading them directly spares a cache hit the
    ~2 s import of ``datasets``, which would otherwise dominate a cached load.
    """
    state = json.loads((folder / "state.json").read_text())
    tables = []
    for data_file in state["_data_files"]:
        with pa.OSFile(str(folder / data_file["filename"])) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _read_entry(entry: Path, meta: dict[str, Any]) -> Dataset | None:
    if meta.get("format") != CACHE_FORMAT:
        return None
    interactions = _arrow_table(entry / "interactions")
    users = _arrow_table(entry / "users")
    items = _arrow_table(entry / "items")
    if (interactions.num_rows, users.num_rows, items.num_rows) != (
        meta["n_interactions"], meta["n_users"], meta["n_items"]
    ):
        return None

    def column(name: str, dtype: type) -> np.ndarray | None:
        if name not in interactions.column_names:
            return None
        # Arrow buffers are read-only; callers get writeable arrays of the declared dtype.
        return np.array(interactions.column(name).to_numpy(), dtype=dtype, copy=True)

    def side(table: Any, present: bool) -> tuple[np.ndarray, pd.DataFrame | None]:
        ids = np.asarray(table.column(ID_COLUMN).to_pylist(), dtype=str)
        if not present:
            return ids, None
        frame = table.drop_columns([ID_COLUMN]).to_pandas()
        return ids, frame

    user_ids, user_features = side(users, meta["has_user_features"])
    item_ids, item_features = side(items, meta["has_item_features"])
    return Dataset(
        name=meta["name"],
        users=column("user", np.int64),
        items=column("item", np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
        ratings=column("rating", np.float32),
        timestamps=column("timestamp", np.int64),
        domains=column("domain", np.int64),
        domain_names=tuple(meta["domain_names"]),
        user_features=user_features,
        item_features=item_features,
        user_feature_kinds=dict(meta["user_feature_kinds"]),
        item_feature_kinds=dict(meta["item_feature_kinds"]),
        fingerprint=meta["fingerprint"],
        source=meta["source"],
        merged_duplicates=int(meta.get("merged_duplicates", 0)),
    )
