"""Saved models: a run's trained weights beside its ledger, and loading them back.

The layout is the deployment contract's: ``<ledger dir>/artifacts/<run_id>/`` holds
``model.safetensors`` (the state dict), ``artifact.json`` (what the weights are and where
they came from) and ``ids.json`` (original user and item ids by index).  Compressed
variants live under ``<run_id>/variants/<name>/`` in the same layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from m6bench.data.prepared import PreparedBenchmark
from m6bench.data.trainset import TrainSet
from m6bench.errors import ArtifactError, ConfigError
from m6bench.registry.catalog import Catalog, load_catalog
from m6bench.runs.ledger import ledger_path
from m6bench.runs.reproduce import benchmark_of, code_differences, find_record
from m6bench.runs.run import RunPlan, RunRequest, plan_run, prepare, seed_everything
from m6bench.training.compression import StoredState, encode_state, restore_into
from m6bench.training.recommender import Recommender

ARTIFACTS = "artifacts"  # beside the ledger
VARIANTS = "variants"  # inside a run's artifact directory
STAGED = ".trials"  # inside ARTIFACTS: sweep trials' models, until their sweep finalises
WEIGHTS = "model.safetensors"
MANIFEST = "artifact.json"
IDS = "ids.json"
_METADATA_KEY = "m6bench"  # the safetensors header entry holding the encodings


@dataclass(frozen=True, eq=False)
class LoadedRun:
    """A trained model rebuilt from its artifact, ready to score.

    ``model`` is in eval mode on the device asked for (CPU unless asked); ``train`` is the
    training part of the same cut (the evaluator and servers mask training items with it);
    ``user_ids[u]`` / ``item_ids[i]`` are the dataset's original ids (strings) of index
    ``u`` / ``i``; ``variant`` is the compressed variant's name, ``None`` for the full model.
    """

    run_id: str
    record: dict[str, Any]
    model: Recommender
    train: TrainSet
    user_ids: list[str]
    item_ids: list[str]
    variant: str | None
    artifact_dir: Path
    # how the installed code differs from the record's, when loaded with allow_code_change;
    # a record derived from this model (a variant, a serving test) carries them
    code_changes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- writing
def artifact_dir(ledger: str | os.PathLike[str], run_id: str,
                 variant: str | None = None) -> Path:
    """``<ledger dir>/artifacts/<run_id>[/variants/<variant>]``."""
    path = Path(ledger).parent / ARTIFACTS / run_id
    return path / VARIANTS / variant if variant else path


def save_artifact(model: Recommender, record: Mapping[str, Any], bench: PreparedBenchmark,
                  ledger: str | os.PathLike[str], *, staged: bool = False) -> dict[str, Any]:
    """Write ``model`` (trained for ``record``, on ``bench``) beside ``ledger``; return the
    record's ``artifact`` entry: path (relative to the ledger's directory), sha256, bytes.

    ``staged`` (a sweep trial's) writes it among the staged models (see :func:`adopt_staged`).
    """
    directory = (_staged_dir(ledger, record["run_id"]) if staged
                 else artifact_dir(ledger, record["run_id"]))
    ids = {"users": bench.dataset.user_ids.tolist(), "items": bench.dataset.item_ids.tolist()}
    written = write_stored(directory, encode_state(model.state_dict()), record, ids=ids)
    return {"path": directory.relative_to(Path(ledger).parent).as_posix(),
            "sha256": written["sha256"], "bytes": written["bytes"]}


def _staged_dir(ledger: str | os.PathLike[str], run_id: str) -> Path:
    return Path(ledger).parent / ARTIFACTS / STAGED / run_id


def adopt_staged(ledger: str | os.PathLike[str], trial_run_id: str,
                 run_id: str) -> dict[str, Any] | None:
    """Make trial ``trial_run_id``'s staged model the artifact of run ``run_id`` (a final
    that is a copy of the trial's record); its ``artifact`` entry, or None when no model
    was staged for the trial (trained by a worker, or without saving)."""
    staged = _staged_dir(ledger, trial_run_id)
    if not (staged / MANIFEST).is_file():
        return None
    directory = artifact_dir(ledger, run_id)
    staged.rename(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest.update(run_id=run_id, trial_run_id=trial_run_id)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return {"path": directory.relative_to(Path(ledger).parent).as_posix(),
            "sha256": manifest["sha256"], "bytes": manifest["bytes"]}


def discard_staged(ledger: str | os.PathLike[str], trial_run_ids: Iterable[str]) -> None:
    """Remove the staged models of these trials (their sweep has finalised)."""
    for run_id in trial_run_ids:
        shutil.rmtree(_staged_dir(ledger, run_id), ignore_errors=True)


def write_stored(directory: Path, stored: StoredState, record: Mapping[str, Any], *,
                 ids: Mapping[str, list[str]] | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``stored`` as ``model.safetensors`` and its ``artifact.json`` manifest (plus
    ``ids.json`` when given) into ``directory``; return the manifest."""
    save_file = require_safetensors().torch.save_file

    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS
    header = {"encodings": stored.encodings, "quantised_linear": stored.quantised_linear}
    save_file(stored.tensors, str(weights), metadata={_METADATA_KEY: json.dumps(header)})
    manifest = {
        "run_id": record["run_id"],
        "plugin": record["plugin"],
        "model": record["model"],
        "config": record["config"],
        "seed": record["seed"],
        "benchmark": {"name": record["benchmark"]["name"],
                      "version": record["benchmark"]["version"]},
        "code": record.get("code"),
        "tensors": {key: tensor_sha256(t) for key, t in sorted(stored.tensors.items())},
        "largest_tensor_bytes": stored.largest_tensor_bytes(),
        "bytes": weights.stat().st_size,
        "sha256": file_sha256(weights),
        **dict(extra or {}),
    }
    if ids is not None:
        (directory / IDS).write_text(json.dumps(ids))
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def require_safetensors() -> Any:
    """The safetensors package (with its torch module), imported when a model is saved or
    loaded; a clear error when it is not installed."""
    try:
        import safetensors
        import safetensors.torch  # the module save_file lives in
    except ImportError as exc:
        raise ArtifactError("Saving and loading models needs safetensors: pip install "
                            "'m6bench[deploy]' (or sweep with save_finals=False).") from exc
    return safetensors


def tensor_sha256(tensor: torch.Tensor) -> str:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy().tobytes()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- reading
def read_stored(directory: Path, *, sha256: str | None, what: str) -> StoredState:
    """The stored state in ``directory``, its file checked against ``sha256`` first."""
    safe_open = require_safetensors().safe_open

    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"{what}: {weights} is missing. Re-run with --save (or copy the "
                            "artifact directory beside the ledger again).")
    actual = file_sha256(weights)
    if sha256 is not None and actual != sha256:
        raise ArtifactError(f"{what}: {weights} has sha256 {actual}, but its record says "
                            f"{sha256}: the file changed after it was saved. Re-run with "
                            "--save to save it again.")
    with safe_open(str(weights), framework="pt") as handle:
        header = json.loads((handle.metadata() or {}).get(_METADATA_KEY, "{}"))
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    return StoredState(tensors, dict(header.get("encodings") or {}),
                       list(header.get("quantised_linear") or []))


def read_manifest(directory: Path, what: str) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{what}: {path} is missing. Re-run with --save.")
    return json.loads(path.read_text())


def variant_record(ledger: Path, run_id: str, variant: str) -> dict[str, Any]:
    from m6bench_leaderboard import read_records

    matches = [r for r in read_records(ledger).records
               if r.get("kind") == "variant" and r.get("status") == "ok"
               and (r.get("variant") or {}).get("base_run_id") == run_id
               and r["variant"].get("name") == variant]
    if not matches:
        raise ArtifactError(f"Run {run_id} has no variant {variant!r} in {ledger}; make it "
                            f"with `m6bench compress {run_id} --method METHOD --name {variant}`.")
    return matches[-1]


def load_run(
    run_id: str,
    ledger: str | os.PathLike[str] | None = None,
    *,
    variant: str | None = None,
    device: str | torch.device = "cpu",
    allow_code_change: bool = False,
    catalog: Catalog | None = None,
) -> LoadedRun:
    """Rebuild the model of run ``run_id`` (or its compressed ``variant``) from its artifact.

    The record's plan (benchmark contract, plugin, model, config, seed) is resolved again,
    the benchmark prepared through the cache and its version checked against the record's,
    the model built with ``build(train, config)`` and the saved state loaded strictly.
    Raises :class:`~m6bench.errors.ArtifactError` naming what differs when the weights
    file's hash, the benchmark version or the code identity (harness and plugin source
    hashes) does not match; ``allow_code_change`` loads despite a code difference (listed
    in :attr:`LoadedRun.code_changes`).
    """
    return load_with_benchmark(run_id, ledger, variant=variant, device=device,
                               allow_code_change=allow_code_change, catalog=catalog)[0]


def load_with_benchmark(
    run_id: str,
    ledger: str | os.PathLike[str] | None = None,
    *,
    variant: str | None = None,
    device: str | torch.device = "cpu",
    allow_code_change: bool = False,
    catalog: Catalog | None = None,
) -> tuple[LoadedRun, PreparedBenchmark, RunPlan]:
    """:func:`load_run`, with the prepared benchmark and the plan it was rebuilt from (to
    evaluate the model as its run did)."""
    ledger_file = ledger_path(ledger)
    record = find_record(run_id, ledger_file)
    run_id = record["run_id"]
    saved = record.get("artifact")
    if not saved:
        raise ArtifactError(f"Run {run_id} has no saved model (its record names no "
                            "artifact). Re-run it with `m6bench run ... --save`.")
    base_dir = ledger_file.parent / saved["path"]
    directory, sha256, what = base_dir, saved["sha256"], f"The saved model of run {run_id}"
    if variant is not None:
        saved_variant = variant_record(ledger_file, run_id, variant)
        directory = base_dir / VARIANTS / variant
        sha256 = (saved_variant.get("artifact") or {}).get("sha256")
        what = f"Variant {variant!r} of run {run_id}"
    manifest = read_manifest(directory, what)
    stored = read_stored(directory, sha256=sha256, what=what)

    catalog = catalog or load_catalog()
    changes = tuple(code_differences(record, catalog.plugin(record["plugin"]["name"])))
    if changes and not allow_code_change:
        raise ArtifactError(f"{what} was made with other code: " + "; ".join(changes) + ". "
                            "Install the code the record names, re-run with --save, or pass "
                            "--allow-code-change (allow_code_change=True) to load it anyway.")
    model, bench, plan = _rebuild(record, stored, catalog, device=torch.device(device),
                                  what=what, saved_version=manifest["benchmark"]["version"])
    ids = json.loads((base_dir / IDS).read_text())
    loaded = LoadedRun(run_id=run_id, record=record, model=model, train=bench.train,
                       user_ids=list(ids["users"]), item_ids=list(ids["items"]),
                       variant=variant, artifact_dir=directory, code_changes=changes)
    return loaded, bench, plan


def _rebuild(record: Mapping[str, Any], stored: StoredState, catalog: Catalog, *,
             device: torch.device, what: str,
             saved_version: str) -> tuple[Recommender, PreparedBenchmark, RunPlan]:
    """The record's model built on its prepared benchmark with ``stored`` loaded into it."""
    recorded_version = record["benchmark"]["version"]
    if saved_version != recorded_version:
        raise ArtifactError(f"{what} was saved on benchmark version {saved_version}, but the "
                            f"record names version {recorded_version}. Re-run with --save.")
    try:
        benchmark = benchmark_of(record, catalog)
    except ConfigError as exc:
        raise ArtifactError(f"{what} cannot be loaded: the benchmark version differs. "
                            f"{exc}") from exc
    # the cut's and the model's seeds, as recorded (older records have only ``seed``)
    request = RunRequest(plugin=record["plugin"]["name"], model=record["model"],
                         benchmark=benchmark, seed=int(record["seed"]),
                         split_seed=record.get("split_seed"), init_seed=record.get("init_seed"),
                         overrides=dict(record["config"]), device=str(device), command=[])
    plan = plan_run(request, catalog)
    bench = prepare(plan)
    if bench.version != recorded_version:
        raise ArtifactError(f"{what} was trained on benchmark {benchmark.name!r} version "
                            f"{recorded_version}, but the data loaded here gives version "
                            f"{bench.version}. Load the record's data (dataset fingerprint "
                            f"{(record.get('dataset') or {}).get('fingerprint')}), or re-run "
                            "with --save on this data.")
    seed_everything(int(record.get("init_seed", record["seed"])))
    model = plan.model_spec.build(bench.train, plan.config)
    if stored.quantised_linear and device.type != "cpu":
        raise ArtifactError(f"{what} has dynamically quantised linear layers, which run on "
                            "the CPU only; load it with device='cpu'.")
    try:
        model = restore_into(model, stored)
    except RuntimeError as exc:
        raise ArtifactError(f"{what} does not fit the model {record['model']!r} built here "
                            f"({exc}). Re-run with --save.") from exc
    return model.to(device).eval(), bench, plan
