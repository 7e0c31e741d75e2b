"""``m6bench export``, ``m6bench serve`` and ``m6bench loadtest``: a saved run (or one of its
compressed variants) exported to ONNX, served over HTTP, and load-tested."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from m6bench.cli import common
from m6bench.cli.deploy import ALLOW_CODE_CHANGE_HELP

if TYPE_CHECKING:
    from m6bench.runs.artifacts import LoadedRun


def _variant_option():
    return click.option("--variant", default=None,
                        help="A compressed variant of the run (by name); default the full model.")


def _backend_option():
    return click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch",
                        show_default=True,
                        help="torch: the model in-process; onnx: its ONNX export under "
                             "onnxruntime (exported on first use).")


def _load(run_id: str, ledger: str | None, variant: str | None,
          allow_code_change: bool) -> LoadedRun:
    from m6bench.runs.artifacts import load_run

    return load_run(run_id, common.ledger_file(ledger), variant=variant,
                    allow_code_change=allow_code_change, catalog=common.load_cli_catalog())


@click.command()
@click.argument("run_id")
@common.ledger_option()
@_variant_option()
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the ONNX file [default: <artifact dir>/model.onnx].")
@click.option("--allow-code-change", is_flag=True, help=ALLOW_CODE_CHANGE_HELP)
def export(run_id: str, ledger: str | None, variant: str | None, out: str | None,
           allow_code_change: bool) -> None:
    """Export a saved run's scoring path (user -> top-k items) to ONNX.

    The graph of run RUN_ID maps users and their training items to the top k items, with
    training items masked."""
    from pathlib import Path

    from m6bench.deploy.export import export_run

    loaded = _load(run_id, ledger, variant, allow_code_change)
    path = export_run(loaded, Path(out) if out else None)
    click.echo(f"exported {loaded.record.get('model')} of run {loaded.run_id}"
               + (f" (variant {variant})" if variant else "")
               + f" to {path} ({path.stat().st_size} bytes)")


@click.command()
@click.argument("run_id")
@common.ledger_option()
@_variant_option()
@_backend_option()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (0.0.0.0 exposes the service to the network).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--max-batch", type=click.IntRange(1), default=64, show_default=True,
              help="Most requests scored together.")
@click.option("--batch-wait-ms", type=click.FloatRange(0), default=2.0, show_default=True,
              help="How long the first request of a batch waits for others.")
@click.option("--fallback", type=click.Choice(["none", "popularity"]), default="none",
              show_default=True, help="What an unknown user gets: a 404, or popular items.")
@click.option("--allow-code-change", is_flag=True, help=ALLOW_CODE_CHANGE_HELP)
def serve(run_id: str, ledger: str | None, variant: str | None, backend: str, host: str,
          port: int, max_batch: int, batch_wait_ms: float, fallback: str,
          allow_code_change: bool) -> None:
    """Serve a saved run over HTTP: top-k recommendations, micro-batched.

    Run RUN_ID answers GET /recommend/{user_id}?k=10, POST /recommend, GET /healthz and
    GET /metadata."""
    import torch

    from m6bench.deploy.serve import create_app, run_server, serving_threads

    torch.set_num_threads(serving_threads())
    loaded = _load(run_id, ledger, variant, allow_code_change)
    app = create_app(loaded, backend=backend, max_batch=max_batch,
                     batch_wait_ms=batch_wait_ms,
                     fallback=None if fallback == "none" else fallback)
    click.echo(f"serving {loaded.record.get('model')} of run {loaded.run_id} ({backend}) on "
               f"http://{host}:{port} (Ctrl-C stops)")
    run_server(app, host=host, port=port)


@click.command()
@click.argument("run_id")
@common.ledger_option()
@_variant_option()
@_backend_option()
@click.option("--url", default=None,
              help="A service already running; by default one is started here.")
@click.option("--users", "concurrency", type=click.IntRange(1), default=16,
              show_default=True, help="Concurrent simulated users (each sends requests "
                                      "back to back).")
@click.option("--duration", type=click.FloatRange(0.5), default=10.0, show_default=True,
              help="Seconds of load.")
@click.option("--max-batch", type=click.IntRange(1), default=64, show_default=True)
@click.option("--batch-wait-ms", type=click.FloatRange(0), default=2.0, show_default=True)
@click.option("--allow-code-change", is_flag=True, help=ALLOW_CODE_CHANGE_HELP)
def loadtest(run_id: str, ledger: str | None, variant: str | None, backend: str,
             url: str | None, concurrency: int, duration: float, max_batch: int,
             batch_wait_ms: float, allow_code_change: bool) -> None:
    """Load-test a saved run's service with locust; record latency and requests/s.

    The serving record of run RUN_ID (p50/p95/p99 latency, requests/s, errors) goes into
    the ledger."""
    import torch

    from m6bench.deploy.loadtest import load_test
    from m6bench.deploy.serve import serving_threads

    torch.set_num_threads(serving_threads())
    loaded = _load(run_id, ledger, variant, allow_code_change)
    record = load_test(loaded, ledger=common.ledger_file(ledger), url=url, backend=backend,
                       concurrency=concurrency, duration_s=duration, max_batch=max_batch,
                       batch_wait_ms=batch_wait_ms)
    serving = record["serving"]
    latency = serving["latency_ms"]
    click.echo(f"{serving['requests']} requests in {serving['duration_s']} s with "
               f"{concurrency} users ({backend}): {serving['rps']} requests/s, "
               f"p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms, "
               f"{serving['errors']} errors; serving record {record['run_id']}")
