"""M6-Rec's efficiency options, measured on m6-rec-tuned: early exit (the first 3 of
all-MiniLM-L6-v2's 6 layers), shorter histories (64 against 256 tokens) and int8 item
vectors, in prompt mode (where the encoder runs on every user and item text), and the
adapter mode (the defaults, over cached vectors) beside it.

Every variant is m6-rec-tuned built from its defaults with one option changed, tuned for
``--steps`` steps (0: prompts at their initial words, adapters at the identity, an
inference-only measurement), then scored on the benchmark's test part by the harness's
evaluator.  The
table shows test NDCG@10, the seconds of tuning and of scoring (which encodes every item
once and every test user), and the size of the item vectors.

    OMP_NUM_THREADS=1 python benchmarks/m6_rec_efficiency.py
    OMP_NUM_THREADS=1 python benchmarks/m6_rec_efficiency.py --steps 40 --seed 1

Timings depend on the machine's load: the table prints ``os.getloadavg()`` beside them.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from m6bench import evaluate_part, load_catalog, resolve_config, seed_everything
from m6bench.runs.prepare import prepare_benchmark
from m6bench_m6_rec.tuned import TUNED_SPEC

# name -> config overrides of m6-rec-tuned; the prompt-mode options first.
PROMPT = {"tuning": "prompt"}
VARIANTS: dict[str, dict[str, object]] = {
    "prompt mode (layers 3, history 64, float32)": PROMPT,
    "prompt mode, early exit off (all 6 layers)": {**PROMPT, "layers": 0},
    "prompt mode, history 256 tokens": {**PROMPT, "max_history_tokens": 256},
    "prompt mode, int8 item vectors": {**PROMPT, "item_vectors": "int8"},
    "adapter mode (the defaults)": {},
    "adapter mode, int8 item vectors": {"item_vectors": "int8"},
}


def measure(bench, overrides: dict[str, object], args: argparse.Namespace) -> dict[str, float]:
    """Build, tune ``args.steps`` steps, score the test part; NDCG@10 and seconds."""
    steps = max(1, args.steps)
    config = resolve_config(TUNED_SPEC.defaults, model_name=TUNED_SPEC.name,
                            overrides={**overrides, "steps_per_epoch": steps,
                                       "adapter_steps_per_epoch": steps},
                            choices=TUNED_SPEC.choices)
    seed_everything(args.seed)
    model = TUNED_SPEC.build(bench.train, config)
    started = time.perf_counter()
    if args.steps:
        model.train().fit_epoch(bench.train, 1)
    tuned = time.perf_counter() - started
    started = time.perf_counter()
    test = evaluate_part(model, bench, "test", tasks=("ranking",), batch_size=2048)
    scored = time.perf_counter() - started
    n_items, hidden = bench.train.n_items, model.zero_shot.encoder.hidden_size
    int8 = config["item_vectors"] == "int8"
    size = n_items * (hidden + 4) if int8 else n_items * hidden * 4  # int8 rows + a scale
    return {"ndcg": test.metrics["ndcg@10"], "tune": tuned, "score": scored, "bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="ml-100k-cold-items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=0,
                        help="tuning steps per variant (0: untuned prompts and adapters)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    catalog = load_catalog()
    bench = prepare_benchmark(catalog, catalog.benchmarks.get(args.benchmark),
                              seed=args.seed, device=torch.device("cpu"))
    print(f"{args.benchmark}, seed {args.seed}, {args.steps} tuning steps, "
          f"{torch.get_num_threads()} torch thread(s)")
    print("| variant | test NDCG@10 | tune s | score s | item vectors | load avg |")
    print("|---|---|---|---|---|---|")
    for name, overrides in VARIANTS.items():
        result = measure(bench, overrides, args)
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"| {name} | {result['ndcg']:.4f} | {result['tune']:.0f} | "
              f"{result['score']:.0f} | {result['bytes'] / 1024:.0f} KiB | {load} |",
              flush=True)


if __name__ == "__main__":
    main()
