"""A board row's deployment view: its seed-0 final compressed and load-tested, as the
row's ``variants`` and ``loadtest`` keys ask; what the ledger already holds is skipped."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from m6bench.deploy.compress import compress_run
from m6bench.deploy.loadtest import load_test
from m6bench.registry.catalog import Catalog
from m6bench.runs.artifacts import load_run
from m6bench_leaderboard import read_records
from m6bench_leaderboard.board import BoardModel


def _seed_zero_final(records: Sequence[Mapping[str, Any]], entry: BoardModel,
                     benchmark: str, version: str) -> Mapping[str, Any] | None:
    finals = [r for r in records
              if r.get("kind") == "final" and r.get("status") == "ok" and r.get("seed") == 0
              and r.get("model") == entry.model
              and (r.get("plugin") or {}).get("name") == entry.plugin
              and (r.get("benchmark") or {}).get("name") == benchmark
              and (r.get("benchmark") or {}).get("version") == version]
    return max(finals, key=lambda r: str(r.get("started_at")), default=None)


def _recorded(records: Sequence[Mapping[str, Any]], kind: str, run_id: str,
              ) -> list[Mapping[str, Any]]:
    return [r[kind] for r in records
            if r.get("kind") == kind and r.get("status") == "ok"
            and (r.get(kind) or {}).get("base_run_id") == run_id]


def deploy_row(entry: BoardModel, benchmark: str, version: str, *, ledger: Path,
               catalog: Catalog, report: Callable[[str], None]) -> None:
    """Compress the row's seed-0 final with each of ``entry.variants`` (default options)
    and load-test the full model and each variant with ``entry.loadtest``."""
    if not entry.variants and entry.loadtest is None:
        return
    records = read_records(ledger).records
    final = _seed_zero_final(records, entry, benchmark, version)
    if final is None or "artifact" not in final:
        report("no saved seed-0 final to compress or load-test (sweep finals save their "
               "models unless --no-save-finals)")
        return
    run_id = str(final["run_id"])
    made = {v.get("name") for v in _recorded(records, "variant", run_id)}
    names = []
    for method in entry.variants:
        spec = catalog.compressions.get(method)
        name = spec.variant_name(spec.resolve_options({}))
        names.append(name)
        if name not in made:
            variant = compress_run(run_id, method=method, name=name, ledger=ledger,
                                   catalog=catalog)
            report(f"variant {name}: {variant['variant']['size_bytes']:,} bytes, test "
                   f"ndcg@10 change {variant['variant']['delta'].get('ndcg@10', 0.0):+.4f}")
    if entry.loadtest is None:
        return
    test = entry.loadtest
    tested = {(s.get("variant"), s.get("backend"), s.get("concurrency"))
              for s in _recorded(records, "serving", run_id)}
    for name in (None, *names):
        if (name, test.backend, test.users) in tested:
            continue
        loaded = load_run(run_id, ledger, variant=name, catalog=catalog)
        served = load_test(loaded, ledger=ledger, backend=test.backend,
                           concurrency=test.users, duration_s=test.duration_s)["serving"]
        report(f"load test of {name or 'the full model'} ({test.backend}, {test.users} "
               f"users): p50 {served['latency_ms']['p50']:.1f} ms, p99 "
               f"{served['latency_ms']['p99']:.1f} ms, {served['rps']:.0f} requests/s")
