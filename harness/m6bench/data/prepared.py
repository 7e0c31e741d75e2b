"""A prepared benchmark: the dataset cut by its protocol, as tensors on the run's device."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from m6bench.data.dataset import Dataset
from m6bench.data.specs import BenchmarkSpec
from m6bench.data.split import Split
from m6bench.data.trainset import ComponentSource, TrainSet, sorted_distinct
from m6bench.tensor import quiet_sparse_warnings


def csr_matrix(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, device: torch.device
) -> torch.Tensor:
    """Binary sparse CSR ``(n_users, n_items)`` with ones at (users, items), duplicates merged."""
    keys = sorted_distinct(users.astype(np.int64) * n_items + items.astype(np.int64))
    rows = torch.from_numpy(keys // n_items)
    cols = torch.from_numpy(keys % n_items)
    crow = torch.zeros(n_users + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(rows, minlength=n_users).cumsum(0)
    with quiet_sparse_warnings():
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
    """A benchmark ready to train and evaluate on: its spec, the loaded dataset and its cut,
    the train set and the evaluated parts as tensors on one device, and the candidate masks
    of the valid and test parts (None: every item is ranked)."""

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
    # the MetricSpecs of its tasks, resolved from the catalog by runs.prepare (untyped: the
    # data layer may not name the evaluation layer); empty means the built-in metrics
    metrics: tuple[object, ...] = ()

    @property
    def device(self) -> torch.device:
        return self.train.device

    def export_split(self, folder: str | os.PathLike[str]) -> Path:
        """Write the cut for another library to train and be scored on, in m6bench's user
        and item indices: ``train_indptr.npy`` / ``train_indices.npy`` (the binary CSR
        training matrix), ``valid.npy`` / ``test.npy`` ((n, 2) int64 user, item pairs) and
        ``meta.json`` (dataset, benchmark, version, n_users, n_items).  Returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        matrix = self.train.matrix.cpu()
        np.save(folder / "train_indptr.npy", matrix.crow_indices().numpy().astype(np.int64))
        np.save(folder / "train_indices.npy", matrix.col_indices().numpy().astype(np.int64))
        for name, part in (("valid", self.valid), ("test", self.test)):
            pairs = np.stack([part.users.cpu().numpy(), part.items.cpu().numpy()], axis=1)
            np.save(folder / f"{name}.npy", pairs.astype(np.int64))
        (folder / "meta.json").write_text(json.dumps({
            "dataset": self.spec.dataset, "benchmark": self.spec.name, "version": self.version,
            "n_users": self.train.n_users, "n_items": self.train.n_items}, indent=1))
        return folder


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


def to_device(
    spec: BenchmarkSpec,
    dataset: Dataset,
    split: Split,
    *,
    seed: int,
    device: torch.device,
    components: ComponentSource,
    candidates: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None),
    timings: dict[str, float] | None = None,
    version: str = "",
) -> PreparedBenchmark:
    """The cut ``dataset`` as tensors on ``device``: the train set (seeded generator,
    ``components`` to build encoders, fusions and heads from) and the evaluated parts.
    ``candidates`` are the bool item masks of the valid and test parts (None: every item)."""
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
        components=components,
    )
    candidates_valid, candidates_test = candidates
    return PreparedBenchmark(
        spec=spec,
        dataset=dataset,
        split=split,
        train=train,
        valid=part(split.valid),
        test=part(split.test),
        candidates_valid=candidates_valid,
        candidates_test=candidates_test,
        timings=dict(timings or {}),
        version=version,
    )
