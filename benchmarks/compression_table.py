"""Size against test NDCG@10 of compressed variants of bpr-mf and EASE on MovieLens 100K.

Trains each model once (defaults, seed 0, saved), then compresses it with int8, float16,
pruning (sparsity 0.5, 0.8, 0.9) and low-rank (rank 8, 16, 32) through
``m6bench.deploy.compress.compress_run`` -- the same path as ``m6bench compress`` -- and
prints one row per variant: stored bytes, the largest tensor's bytes, NDCG@10 and its
change against the full model.  Every run and variant is recorded in ``--ledger``.

Usage::

    export M6BENCH_DATA_DIR=/path/to/data
    python benchmarks/compression_table.py --ledger /tmp/compression/ledger.jsonl
"""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

MODELS = ("bpr-mf", "ease")
VARIANTS = (
    ("int8", {}),
    ("float16", {}),
    ("prune", {"sparsity": 0.5}),
    ("prune", {"sparsity": 0.8}),
    ("prune", {"sparsity": 0.9}),
    ("low-rank", {"rank": 8}),
    ("low-rank", {"rank": 16}),
    ("low-rank", {"rank": 32}),
)


def table_rows(ledger: str, dataset: str, device: str) -> list[list[object]]:
    import m6bench
    from m6bench.deploy.compress import compress_run

    catalog = m6bench.load_catalog()
    rows: list[list[object]] = []
    for model in MODELS:
        base = m6bench.run("classic", model=model, dataset=dataset, seed=0, device=device,
                           ledger=ledger, catalog=catalog, save=True)
        full = base["metrics"]["test"]["ndcg@10"]
        rows.append([model, "full", base["artifact"]["bytes"], None, full, 0.0])
        for method, options in VARIANTS:
            record = compress_run(base["run_id"], method=method, options=options,
                                  ledger=ledger, catalog=catalog)
            variant = record["variant"]
            rows.append([model, variant["name"], variant["size_bytes"],
                         variant["largest_tensor_bytes"], record["metrics"]["test"]["ndcg@10"],
                         variant["delta"]["ndcg@10"]])
        rows[len(rows) - len(VARIANTS) - 1][3] = variant["base_largest_tensor_bytes"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", default="compression-runs/ledger.jsonl")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rows = table_rows(args.ledger, args.dataset, args.device)
    print(tabulate(rows, headers=["model", "variant", "bytes", "largest tensor", "ndcg@10",
                                  "change"],
                   floatfmt=("", "", "", "", ".4f", "+.4f"), tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
