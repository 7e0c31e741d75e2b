"""The public route from a benchmark name to m6bench's cut, and the cut written for a peer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import m6bench
from m6bench.cli import main
from m6bench_leaderboard import read_ledger

pytestmark = pytest.mark.usefixtures("isolated")


def test_load_benchmark_cuts_what_a_run_with_the_same_seed_cuts(tmp_path):
    result = CliRunner().invoke(main, ["run", "--plugin", "classic", "--model", "pop",
                                       "--seed", "3"])
    assert result.exit_code == 0, result.output
    record = read_ledger(tmp_path / "ledger.jsonl").records[0]
    bench = m6bench.load_benchmark(seed=3)
    assert bench.spec.name == record["benchmark"]["name"]
    assert bench.version == record["benchmark"]["version"]
    assert bench.split.fingerprint == record["cut"]["fingerprint"]
    other = m6bench.load_benchmark(seed=4)
    assert other.split.fingerprint != bench.split.fingerprint


def test_export_split_round_trips_the_training_matrix_and_held_out_pairs(tmp_path):
    bench = m6bench.load_benchmark(seed=0)
    folder = bench.export_split(tmp_path / "split")
    indptr = np.load(folder / "train_indptr.npy")
    indices = np.load(folder / "train_indices.npy")
    rebuilt = torch.sparse_csr_tensor(torch.from_numpy(indptr), torch.from_numpy(indices),
                                      torch.ones(len(indices)),
                                      size=(bench.train.n_users, bench.train.n_items))
    expected = bench.train.matrix.to_dense() != 0
    assert torch.equal(rebuilt.to_dense() != 0, expected)
    for name, part in (("valid", bench.valid), ("test", bench.test)):
        pairs = np.load(folder / f"{name}.npy")
        assert pairs.dtype == np.int64 and pairs.shape == (len(part.users), 2)
        assert np.array_equal(pairs[:, 0], part.users.cpu().numpy())
        assert np.array_equal(pairs[:, 1], part.items.cpu().numpy())
        # no held-out pair is also a training interaction
        assert not expected[pairs[:, 0], pairs[:, 1]].any()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta == {"dataset": "synthetic", "benchmark": "synthetic", "version": bench.version,
                    "n_users": bench.train.n_users, "n_items": bench.train.n_items}
