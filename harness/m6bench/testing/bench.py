"""The kit's tiny benchmark, prepared through the public API, and its held-out variant."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import tempfile
from collections.abc import Iterator

import numpy as np
import torch

from m6bench import (
    BenchmarkSpec,
    Catalog,
    Dataset,
    LoadContext,
    PreparedBenchmark,
    TrainSet,
    prepare_split,
)

# The tiny benchmark every model is checked on: the embedded synthetic generator, shrunk so a
# whole plugin is checked in seconds.  Its ratings make the rating task checkable too.
KIT_BENCHMARK = BenchmarkSpec(
    name="conformance-kit",
    dataset="synthetic",
    protocol="random",
    dataset_options={"n_users": 60, "n_items": 40, "density": 0.2, "seed": 7},
    tasks=("ranking", "rating"),
    ks=(5, 10),
    description="The conformance kit's tiny benchmark.",
)


def kit_benchmarks(catalog: Catalog, protocol: str, seed: int,
                   device: torch.device) -> tuple[PreparedBenchmark, PreparedBenchmark]:
    """The kit's tiny benchmark, and a variant with equal training but other held-out rows.

    The loader and protocol are called directly (no on-disk cache): the data is tiny, and
    the kit must not touch the user's cache.  The synthetic generator samples each user's
    items without replacement, so there are no duplicate pairs to merge.  In the variant
    every held-out interaction points at another item (and held-out ratings are permuted),
    while the training rows, entity ids and side tables stay identical, so a model that
    reads only its TrainSet cannot tell the two apart.
    """
    spec = KIT_BENCHMARK if protocol == KIT_BENCHMARK.protocol else dataclasses.replace(
        KIT_BENCHMARK, protocol=protocol)
    loader = catalog.datasets.get(spec.dataset)
    context = LoadContext(data_dir=None, cache_dir=tempfile.gettempdir(), offline=True)
    dataset = loader.load({**loader.defaults, **spec.dataset_options}, context)
    cut = catalog.protocols.get(protocol)
    split = cut.cut(dataset, seed, {**cut.defaults, **spec.protocol_options})
    bench = prepare_split(spec, dataset, split, catalog=catalog, seed=seed, device=device)
    variant = prepare_split(spec, heldout_variant(dataset, split.valid, split.test), split,
                                catalog=catalog, seed=seed, device=device)
    return bench, variant


def heldout_variant(dataset: Dataset, valid: np.ndarray, test: np.ndarray) -> Dataset:
    """``dataset`` with the ``valid`` and ``test`` rows pointing at other items."""
    rows = np.concatenate([valid, test]).astype(np.int64)
    items = dataset.items.copy()
    items[rows] = (items[rows] + 1 + dataset.n_items // 2) % dataset.n_items
    ratings = dataset.ratings
    if ratings is not None:
        ratings = ratings.copy()
        ratings[rows] = ratings[rows][::-1]
    # An empty fingerprint means "not computed yet": whoever needs one computes it from the
    # changed content, so the variant never passes for the original.
    return dataclasses.replace(dataset, items=items, ratings=ratings, fingerprint="")


def fresh_train(bench: PreparedBenchmark, seed: int) -> TrainSet:
    """The benchmark's TrainSet with a newly seeded generator, as a new run would get it."""
    device = bench.train.device
    generator = torch.Generator(device=device if device.type == "cuda" else "cpu")
    generator.manual_seed(seed)
    return dataclasses.replace(bench.train, seed=seed, generator=generator)


def sample_users(n_users: int, device: torch.device) -> torch.Tensor:
    """A batch with the first and the last user and a few between, out of order."""
    picks = sorted({0, 1, 2, n_users // 2, n_users - 1}, reverse=True)
    return torch.tensor(picks, dtype=torch.int64, device=device)


@contextlib.contextmanager
def preserved_random_state() -> Iterator[None]:
    """The kit seeds the global generators for every build (as a run does); restore them
    afterwards, so calling it from a test suite does not change the tests that follow."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.random.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
