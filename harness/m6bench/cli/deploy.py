"""``m6bench load`` and ``m6bench compress``: rebuild a saved run's model, compress it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from m6bench.cli import common
from m6bench.runs.config import parse_assignments

if TYPE_CHECKING:
    from m6bench.runs.artifacts import LoadedRun

CHECKED_METRIC = "ndcg@10"

ALLOW_CODE_CHANGE_HELP = ("Load the model even when the installed harness or plugin code "
                          "differs from the record's (records derived from it say so).")


@click.command()
@click.argument("run_id")
@common.ledger_option()
@click.option("--variant", default=None, help="A compressed variant of the run (by name).")
@click.option("--check", is_flag=True,
              help=f"Re-evaluate test {CHECKED_METRIC}; it must equal the record's exactly.")
@click.option("--allow-code-change", is_flag=True, help=ALLOW_CODE_CHANGE_HELP)
def load(run_id: str, ledger: str | None, variant: str | None, check: bool,
         allow_code_change: bool) -> None:
    """Rebuild the saved model of run RUN_ID and print what was loaded.

    Exit codes: 0 loaded (and, with --check, the metric matches); 1 the re-evaluated metric
    differs; 2 the artifact is missing, tampered with, or made on other data or code.
    """
    from m6bench.evaluation.evaluator import evaluate_part
    from m6bench.runs.artifacts import load_with_benchmark, read_manifest

    loaded, bench, plan = load_with_benchmark(
        run_id, common.ledger_file(ledger), variant=variant,
        allow_code_change=allow_code_change, catalog=common.load_cli_catalog())
    record = loaded.record
    manifest = read_manifest(loaded.artifact_dir, f"run {loaded.run_id}")
    what = f"variant {variant} of run" if variant else "run"
    click.echo(f"loaded {what} {loaded.run_id}: {record['plugin']['name']}/{record['model']} "
               f"on {record['benchmark']['name']} (version {record['benchmark']['version']}), "
               f"seed {record['seed']}")
    click.echo(f"parameters {record.get('parameters')} | {manifest['bytes']} bytes "
               f"(largest tensor {manifest['largest_tensor_bytes']}) | "
               f"{len(loaded.user_ids)} users, {len(loaded.item_ids)} items | "
               f"{loaded.artifact_dir}")
    for change in loaded.code_changes:
        click.echo(f"note: code differs: {change}")
    if not check:
        return
    expected = _recorded_metric(loaded, ledger)
    evaluation = evaluate_part(loaded.model, bench, "test", tasks=plan.tasks,
                               batch_size=int(plan.config["eval_batch_size"]))
    value = evaluation.metrics.get(CHECKED_METRIC)
    same = value == expected
    click.echo(f"test {CHECKED_METRIC}: recorded {common.format_value(expected)}, "
               f"re-evaluated {common.format_value(value)}: "
               + ("identical" if same else "DIFFERS"))
    if not same:
        raise SystemExit(1)


def _recorded_metric(loaded: LoadedRun, ledger: str | None) -> float | None:
    """The checked metric of the record the loaded weights belong to (the variant's own
    record for a variant)."""
    if loaded.variant is None:
        return ((loaded.record.get("metrics") or {}).get("test") or {}).get(CHECKED_METRIC)
    from m6bench.runs.artifacts import variant_record

    record = variant_record(common.ledger_file(ledger), loaded.run_id, loaded.variant)
    return ((record.get("metrics") or {}).get("test") or {}).get(CHECKED_METRIC)


@click.command()
@click.argument("run_id")
@click.option("--method", required=True, cls=common.CatalogHelpOption,
              names=lambda catalog: catalog.compressions.names(),
              help="Compression: {names}.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="A method option, e.g. --opt sparsity=0.8 or --opt rank=32.")
@click.option("--name", default=None,
              help="Variant name (default: the method and its options, e.g. prune-0.5).")
@common.ledger_option()
@click.option("--allow-code-change", is_flag=True, help=ALLOW_CODE_CHANGE_HELP)
def compress(run_id: str, method: str, opts: tuple[str, ...], name: str | None,
             ledger: str | None, allow_code_change: bool) -> None:
    """Compress a saved run's model, evaluate the variant on its test split, record it.

    The variant (of run RUN_ID, named by --name or by the method and its options) is saved
    under the run's artifact directory, variants/NAME, and recorded in the ledger (kind
    variant) with its size and metrics and their change against the full model.
    """
    from m6bench.deploy.compress import compress_run

    record = compress_run(run_id, method=method, options=parse_assignments(opts), name=name,
                          ledger=common.ledger_file(ledger), allow_code_change=allow_code_change,
                          catalog=common.load_cli_catalog())
    variant = record["variant"]
    after = record["metrics"]["test"].get(CHECKED_METRIC)
    change = variant["delta"].get(CHECKED_METRIC)
    ratio = variant["base_size_bytes"] / max(variant["size_bytes"], 1)
    click.echo(f"variant {variant['name']} of run {variant['base_run_id']} ({method}, "
               f"options {variant['options']})")
    click.echo(f"size {variant['size_bytes']} bytes (full model {variant['base_size_bytes']}, "
               f"{ratio:.2f}x smaller); largest tensor {variant['largest_tensor_bytes']} "
               f"(full {variant['base_largest_tensor_bytes']})")
    click.echo(f"test {CHECKED_METRIC} {common.format_value(after)} (change "
               f"{'-' if change is None else f'{change:+.6f}'} against the full model)")
    click.echo(f"recorded variant {record['run_id']} in {common.ledger_file(ledger)}; saved "
               f"in {common.ledger_file(ledger).parent / record['artifact']['path']}")
