"""A prepared benchmark: the dataset cut by its protocol, as tensors on the run's device."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from m6bench._dataset import Dataset, content_fingerprint
from m6bench._model import TrainSet
from m6bench._plugins import Catalog
from m6bench._protocols import Split, deduplicate, domain_index, kcore, load_or_cut
from m6bench._specs import BenchmarkSpec, LoadContext
from m6bench.errors import ProtocolError

# CSR tensors are what we want for masks and propagation; torch labels them beta, and our
# tensors are built valid by construction, so its invariant checks are off on purpose.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


def csr_matrix(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, device: torch.device
) -> torch.Tensor:
    """Binary sparse CSR ``(n_users, n_items)`` with ones at (users, items), duplicates merged."""
    keys = np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))
    rows = torch.from_numpy(keys // n_items)
    cols = torch.from_numpy(keys % n_items)
    crow = torch.zeros(n_users + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(rows, minlength=n_users).cumsum(0)
    return torch.sparse_csr_tensor(
        crow, cols, torch.ones(len(keys), dtype=torch.float32), size=(n_users, n_items),
        check_invariants=False,
    ).to(device)


@dataclass(frozen=True, eq=False)
class Part:
    """One evaluated part (valid or test): its interaction rows as tensors, and its truth."""

    users: torch.Tensor
    items: torch.Tensor
    ratings: torch.Tensor | None
    truth: torch.Tensor  # sparse CSR (n_users, n_items)

    @property
    def size(self) -> int:
        return int(self.users.numel())


@dataclass(eq=False)
class PreparedBenchmark:
    spec: BenchmarkSpec
    dataset: Dataset
    split: Split
    train: TrainSet
    valid: Part
    test: Part
    candidates_valid: torch.Tensor | None
    candidates_test: torch.Tensor | None
    timings: dict[str, float] = field(default_factory=dict)
    version: str = ""  # the benchmark's version: see benchmark_version

    @property
    def device(self) -> torch.device:
        return self.train.device

    def describe(self) -> dict[str, Any]:
        return {
            "benchmark": self.spec.name,
            "version": self.version,
            "dataset": self.dataset.name,
            "dataset_fingerprint": self.dataset.fingerprint,
            "protocol": self.spec.protocol,
            "cut_fingerprint": self.split.fingerprint,
            "statistics": self.dataset.statistics(),
            "split_sizes": self.split.sizes(),
        }


def item_text(dataset: Dataset) -> list[str] | None:
    """One string per item from its text features (and genres), for text encoders."""
    table = dataset.item_features
    if table is None:
        return None
    columns = [c for c, kind in dataset.item_feature_kinds.items() if kind == "text"]
    columns += [c for c, kind in dataset.item_feature_kinds.items() if kind == "categorical_seq"]
    if not columns:
        return None
    parts = [table[c].fillna("").astype(str) for c in columns]
    joined = parts[0]
    for extra in parts[1:]:
        joined = joined + " | " + extra
    return joined.str.strip(" |").tolist()


# ----------------------------------------------------------------------------- versions
def data_identity(dataset: Dataset) -> dict[str, Any]:
    """What a version takes from the loaded data: its content fingerprint and feature kinds.

    Nothing here names a file, a folder, a loader or a download: the same content loaded
    through any route has the same identity.
    """
    return {"fingerprint": dataset.fingerprint or content_fingerprint(dataset),
            "user_feature_kinds": dict(dataset.user_feature_kinds),
            "item_feature_kinds": dict(dataset.item_feature_kinds)}


def _identity_of_cached(meta: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`data_identity` of a cached dataset, from its cache entry's ``meta.json``."""
    return {"fingerprint": meta["fingerprint"],
            "user_feature_kinds": dict(meta.get("user_feature_kinds") or {}),
            "item_feature_kinds": dict(meta.get("item_feature_kinds") or {})}


def version_of(catalog: Catalog, spec: BenchmarkSpec, identity: Mapping[str, Any]) -> str:
    """sha256 (12 hex digits) of the contract (protocol options merged over the protocol's
    defaults) and the loaded data's :func:`data_identity`."""
    contract = spec.contract()
    protocol = catalog.protocols.get(spec.protocol)
    contract["protocol_options"] = {**protocol.defaults, **spec.protocol_options}
    blob = json.dumps({"contract": contract, "data": dict(identity)}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def benchmark_version(
    catalog: Catalog,
    spec: BenchmarkSpec,
    *,
    dataset_options: Mapping[str, Any] | None = None,
    context: LoadContext | None = None,
) -> str:
    """The version of ``spec``: a hash of its contract and of the content of its data.

    The same data gives the same version whichever route loaded it (an archive at any path,
    a download, the RecBole copy under ``M6BENCH_DATA_DIR``, a CSV or the equivalent
    Parquet or RecBole folder); dataset options change the version exactly when they change
    the loaded content (generator sizes, the duplicates policy where there are duplicates).
    ``dataset_options`` are merged over the spec's, as :func:`prepare_benchmark` does.
    The data is loaded through the on-disk cache; on a cache hit only the entry's
    ``meta.json`` is read.  Raises :class:`~m6bench.errors.DatasetError` for data that
    cannot be loaded.
    """
    from m6bench._loading import cached_dataset_meta, default_context, load_dataset

    context = context or default_context()
    options = {**spec.dataset_options, **(dataset_options or {})}
    meta = cached_dataset_meta(catalog, spec.dataset, options, context)
    if meta is not None and meta.get("fingerprint"):
        identity = _identity_of_cached(meta)
    else:
        identity = data_identity(load_dataset(catalog, spec.dataset, options, context))
    return version_of(catalog, spec, identity)


def cached_benchmark_version(
    catalog: Catalog, spec: BenchmarkSpec, *, context: LoadContext | None = None
) -> str | None:
    """The version when the benchmark's data is in the on-disk cache, else None.

    Loads nothing and never raises for missing data: for listings.
    """
    from m6bench._loading import cached_dataset_meta

    try:
        meta = cached_dataset_meta(catalog, spec.dataset, spec.dataset_options, context)
        if meta is None or not meta.get("fingerprint"):
            return None
        return version_of(catalog, spec, _identity_of_cached(meta))
    except Exception:  # a listing shows '-' for data it cannot find, whatever the loader says
        return None


def prepare_benchmark(
    catalog: Catalog,
    spec: BenchmarkSpec,
    *,
    seed: int,
    device: torch.device,
    context: LoadContext | None = None,
    dataset_options: Mapping[str, Any] | None = None,
) -> PreparedBenchmark:
    """Load, filter and cut the benchmark's dataset and move it to ``device``."""
    # imported here: HF datasets is slow to import and only needed once data is loaded
    from m6bench._loading import default_context, load_dataset

    context = context or default_context()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    options = {**spec.dataset_options, **(dataset_options or {})}
    dataset = load_dataset(catalog, spec.dataset, options, context)
    version = version_of(catalog, spec, data_identity(dataset))
    if spec.rating_threshold is not None:
        if dataset.ratings is None:
            raise ProtocolError(
                f"Benchmark {spec.name!r} keeps ratings >= {spec.rating_threshold}, but "
                f"dataset {dataset.name!r} has no ratings; drop rating_threshold."
            )
        from m6bench._dataset import select_rows

        dataset = select_rows(dataset, np.flatnonzero(dataset.ratings >= spec.rating_threshold),
                              suffix=f"-r{spec.rating_threshold:g}")
    dataset = kcore(deduplicate(dataset), spec.kcore)
    timings["load"] = time.perf_counter() - started

    started = time.perf_counter()
    protocol = catalog.protocols.get(spec.protocol)
    protocol_options = {**protocol.defaults, **spec.protocol_options}
    split = load_or_cut(dataset, spec.protocol, protocol.cut, seed, protocol_options,
                        context.cache_dir)
    timings["cut"] = time.perf_counter() - started
    return _to_device(catalog, spec, dataset, split, seed=seed, device=device, timings=timings,
                      version=version)


def _to_device(
    catalog: Catalog,
    spec: BenchmarkSpec,
    dataset: Dataset,
    split: Split,
    *,
    seed: int,
    device: torch.device,
    timings: dict[str, float],
    version: str = "",
) -> PreparedBenchmark:
    n_users, n_items = dataset.n_users, dataset.n_items

    def tensor(array: np.ndarray | None, rows: np.ndarray) -> torch.Tensor | None:
        if array is None:
            return None
        return torch.from_numpy(np.ascontiguousarray(array[rows])).to(device)

    def part(rows: np.ndarray) -> Part:
        return Part(
            users=tensor(dataset.users, rows),
            items=tensor(dataset.items, rows),
            ratings=tensor(dataset.ratings, rows),
            truth=csr_matrix(dataset.users[rows], dataset.items[rows], n_users, n_items, device),
        )

    train_rows = split.train
    popularity = np.bincount(dataset.items[train_rows], minlength=n_items).astype(np.float32)
    generator = torch.Generator(device=device if device.type == "cuda" else "cpu")
    generator.manual_seed(seed)
    train = TrainSet(
        n_users=n_users,
        n_items=n_items,
        users=tensor(dataset.users, train_rows),
        items=tensor(dataset.items, train_rows),
        ratings=tensor(dataset.ratings, train_rows),
        timestamps=tensor(dataset.timestamps, train_rows),
        domains=tensor(dataset.domains, train_rows),
        matrix=csr_matrix(dataset.users[train_rows], dataset.items[train_rows], n_users,
                          n_items, device),
        item_popularity=torch.from_numpy(popularity).to(device),
        user_features=dataset.user_features,
        item_features=dataset.item_features,
        user_feature_kinds=dataset.user_feature_kinds,
        item_feature_kinds=dataset.item_feature_kinds,
        item_text=item_text(dataset),
        device=device,
        seed=seed,
        generator=generator,
        components=catalog,
    )
    candidates_valid = candidates_test = None
    if spec.candidates == "heldout":
        candidates_valid = _candidates(dataset.items[split.valid], n_items, device)
        candidates_test = _candidates(dataset.items[split.test], n_items, device)
    elif spec.candidates.startswith("domain:"):
        code = domain_index(dataset, spec.candidates.removeprefix("domain:"),
                            f"Benchmark {spec.name!r} (candidates={spec.candidates!r})")
        candidates_valid = candidates_test = _candidates(
            dataset.items[dataset.domains == code], n_items, device)
    elif spec.candidates != "all":
        raise ProtocolError(
            f"Benchmark {spec.name!r} has candidates={spec.candidates!r}; use 'all' (full "
            "ranking), 'heldout' (rank only the items held out in the evaluated part) or "
            "'domain:NAME' (rank only the items with an interaction in domain NAME)."
        )
    return PreparedBenchmark(
        spec=spec,
        dataset=dataset,
        split=split,
        train=train,
        valid=part(split.valid),
        test=part(split.test),
        candidates_valid=candidates_valid,
        candidates_test=candidates_test,
        timings=timings,
        version=version,
    )


def _candidates(items: np.ndarray, n_items: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(n_items, dtype=torch.bool)
    mask[torch.from_numpy(np.unique(items))] = True
    return mask.to(device)
