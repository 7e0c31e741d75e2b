"""Shared by the deployment tests: a LoadedRun built from a model trained in-process on a
tiny benchmark (what ``load_run`` returns for a saved run, without the ledger round trip)."""

from __future__ import annotations

from pathlib import Path

from m6bench import LoadedRun, seed_everything
from m6bench.runs.run import RunRequest, plan_run, prepare


def loaded_in_process(plugin: str, model: str, artifact_dir: Path, *, epochs: int = 1,
                      dataset: str | None = None, overrides: dict | None = None,
                      seed: int = 0) -> LoadedRun:
    """``model`` of ``plugin`` built on the default (synthetic) benchmark, fitted for
    ``epochs`` epochs on the CPU, in eval mode, wrapped as a LoadedRun."""
    plan = plan_run(RunRequest(plugin=plugin, model=model, dataset=dataset, seed=seed,
                               overrides=dict(overrides or {}), device="cpu", command=[]))
    bench = prepare(plan)
    seed_everything(seed)
    built = plan.model_spec.build(bench.train, plan.config)
    for epoch in range(1, epochs + 1):
        built.train()
        built.fit_epoch(bench.train, epoch)
    built.eval()
    record = {"run_id": f"test-{model}", "kind": "run", "model": model,
              "plugin": {"name": plugin, "distribution": "m6bench", "version": None},
              "benchmark": {"name": plan.benchmark.name, "version": bench.version},
              "config": plan.config, "seed": seed, "code": {}, "hardware": {},
              "software": {}, "status": "ok", "metrics": {}}
    return LoadedRun(run_id=record["run_id"], record=record, model=built, train=bench.train,
                     user_ids=[str(u) for u in bench.dataset.user_ids],
                     item_ids=[str(i) for i in bench.dataset.item_ids],
                     variant=None, artifact_dir=artifact_dir)
