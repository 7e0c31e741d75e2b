"""Loading, filtering and cutting a benchmark's dataset; the benchmark's version."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from m6bench.data.dataset import Dataset, content_fingerprint
from m6bench.data.prepared import PreparedBenchmark, to_device
from m6bench.data.specs import BenchmarkSpec, LoadContext
from m6bench.data.split import Split
from m6bench.errors import ProtocolError
from m6bench.evaluation.candidates import candidate_masks
from m6bench.evaluation.evaluator import binary_threshold
from m6bench.protocols.cuts import deduplicate, kcore, load_or_cut
from m6bench.registry.catalog import Catalog


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
    from m6bench.data.cache import default_context
    from m6bench.runs.loading import cached_dataset_meta, load_dataset

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
    from m6bench.runs.loading import cached_dataset_meta

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
    split_seed: int | None = None,
) -> PreparedBenchmark:
    """Load, filter and cut the benchmark's dataset and move it to ``device``; the cut is
    seeded with ``split_seed`` (default ``seed``), the train set's sampling with ``seed``."""
    # imported here: HF datasets is slow to import and only needed once data is loaded
    from m6bench.data.cache import default_context
    from m6bench.runs.loading import load_dataset

    context = context or default_context()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    options = {**spec.dataset_options, **(dataset_options or {})}
    if "binary" in spec.tasks:
        binary_threshold(spec)  # a benchmark without one fails here, before any data loads
    dataset = load_dataset(catalog, spec.dataset, options, context)
    version = version_of(catalog, spec, data_identity(dataset))
    if spec.rating_threshold is not None:
        if dataset.ratings is None:
            raise ProtocolError(
                f"Benchmark {spec.name!r} keeps ratings >= {spec.rating_threshold}, but "
                f"dataset {dataset.name!r} has no ratings; drop rating_threshold."
            )
        from m6bench.data.dataset import select_rows

        dataset = select_rows(dataset, np.flatnonzero(dataset.ratings >= spec.rating_threshold),
                              suffix=f"-r{spec.rating_threshold:g}")
    dataset = kcore(deduplicate(dataset), spec.kcore)
    timings["load"] = time.perf_counter() - started

    started = time.perf_counter()
    protocol = catalog.protocols.get(spec.protocol)
    protocol_options = {**protocol.defaults, **spec.protocol_options}
    cut_seed = seed if split_seed is None else split_seed
    split = load_or_cut(dataset, spec.protocol, protocol.cut, cut_seed, protocol_options,
                        context.cache_dir)
    timings["cut"] = time.perf_counter() - started
    bench = to_device(spec, dataset, split, seed=seed, device=device, components=catalog,
                      candidates=candidate_masks(spec, dataset, split, device), timings=timings,
                      version=version)
    bench.metrics = catalog.metric_table().for_tasks(spec.tasks).specs
    return bench


def prepare_split(
    spec: BenchmarkSpec,
    dataset: Dataset,
    split: Split,
    *,
    catalog: Catalog,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> PreparedBenchmark:
    """The tensors of benchmark ``spec`` on ``device``, from an already loaded ``dataset``
    and its ``split``: the train set (its generator seeded with ``seed``, ``catalog`` as the
    source of encoders, fusions and heads), the evaluated parts and the candidate masks of
    ``spec.candidates``.

    Unlike :func:`prepare_benchmark`, nothing is loaded, filtered, cut or cached: the
    caller owns the data, e.g. a test that prepares two benchmarks differing only in their
    held-out rows.
    """
    device = torch.device(device)
    return to_device(spec, dataset, split, seed=seed, device=device, components=catalog,
                     candidates=candidate_masks(spec, dataset, split, device))
