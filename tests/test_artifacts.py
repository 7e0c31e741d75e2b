"""Saved models: ``run --save`` writes the artifact the contract names, ``load_run`` rebuilds
a model scoring bit for bit as the trained one, and a tampered file, another benchmark
version or other code is refused with an ArtifactError naming what differs."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import m6bench
from m6bench import ArtifactError
from m6bench.cli import main
from m6bench.registry.catalog import load_catalog
from m6bench.runs import artifacts

pytestmark = pytest.mark.usefixtures("isolated")

SMALL = {"n_users": 120, "n_items": 90, "density": 0.2}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def train_and_save(catalog, ledger, monkeypatch, plugin, model, **overrides):
    """Run with save=True; return the record and the model as trained (captured when
    it is saved)."""
    trained = {}
    save = artifacts.save_artifact

    def capture(model, record, bench, ledger, **options):
        trained["model"] = model
        return save(model, record, bench, ledger, **options)

    monkeypatch.setattr(artifacts, "save_artifact", capture)
    record = m6bench.run(plugin, model=model, overrides=overrides, dataset_options=SMALL,
                         device="cpu", ledger=ledger, catalog=catalog, save=True)
    monkeypatch.setattr(artifacts, "save_artifact", save)
    return record, trained["model"]


MODELS = [
    ("classic", "bpr-mf", {"epochs": 2}),
    ("classic", "ials", {"epochs": 2}),
    ("classic", "ease", {}),
    ("gnn-mf", "gnn-mf", {"epochs": 1}),
    ("deep", "neumf", {"epochs": 1}),
    ("m6-fusion", "m6-fusion", {"epochs": 1, "text": False}),
]


@pytest.mark.parametrize(("plugin", "model", "overrides"), MODELS,
                         ids=[m for _, m, _ in MODELS])
def test_a_loaded_model_scores_bit_for_bit_as_the_trained_one(
        catalog, isolated, monkeypatch, plugin, model, overrides):
    record, trained = train_and_save(catalog, isolated.ledger, monkeypatch, plugin, model,
                                     **overrides)
    loaded = m6bench.load_run(record["run_id"], isolated.ledger, catalog=catalog)

    users = torch.arange(trained.n_users)
    with torch.no_grad():
        assert torch.equal(loaded.model.score(users), trained.eval().score(users))
    assert not loaded.model.training
    assert loaded.variant is None and loaded.record["run_id"] == record["run_id"]
    assert len(loaded.user_ids) == trained.n_users and len(loaded.item_ids) == trained.n_items


def test_the_artifact_is_laid_out_and_recorded_as_the_contract_says(catalog, isolated,
                                                                      monkeypatch):
    record, trained = train_and_save(catalog, isolated.ledger, monkeypatch, "classic", "ease")
    directory = isolated.ledger.parent / "artifacts" / record["run_id"]
    weights = directory / "model.safetensors"
    assert record["artifact"] == {"path": f"artifacts/{record['run_id']}",
                                  "sha256": artifacts.file_sha256(weights),
                                  "bytes": weights.stat().st_size}
    # the ledger holds the same entry
    written = [json.loads(line) for line in isolated.ledger.read_text().splitlines()]
    assert written[-1]["artifact"] == record["artifact"]

    manifest = json.loads((directory / "artifact.json").read_text())
    assert manifest["benchmark"] == {"name": record["benchmark"]["name"],
                                     "version": record["benchmark"]["version"]}
    assert manifest["code"] == record["code"] and manifest["config"] == record["config"]
    # EASE's one tensor: the item x item matrix, float32, hashed as stored
    n_items = trained.n_items
    assert manifest["largest_tensor_bytes"] == n_items * n_items * 4
    assert manifest["tensors"]["item_weights"] == artifacts.tensor_sha256(
        trained.state_dict()["item_weights"])

    ids = json.loads((directory / "ids.json").read_text())
    loaded = m6bench.load_run(record["run_id"], isolated.ledger, catalog=catalog)
    assert loaded.user_ids == ids["users"] and loaded.item_ids == ids["items"]
    assert all(isinstance(i, str) for i in loaded.user_ids)


def test_sparse_csr_buffers_are_stored_as_parts_and_rebuilt():
    from m6bench.training.compression import decode_state, encode_state

    dense = torch.tensor([[0.0, 2.0, 0.0], [1.5, 0.0, -3.0]])
    stored = encode_state({"matrix": dense.to_sparse_csr(), "bias": torch.ones(3)})
    assert set(stored.tensors) == {"matrix::crow", "matrix::col", "matrix::values", "bias"}
    assert stored.tensors["matrix::crow"].tolist() == [0, 1, 3]
    assert stored.tensors["matrix::col"].tolist() == [1, 0, 2]
    state = decode_state(stored)
    assert state["matrix"].layout == torch.sparse_csr
    assert torch.equal(state["matrix"].to_dense(), dense)


@pytest.fixture
def saved_ease(catalog, isolated, monkeypatch):
    record, _ = train_and_save(catalog, isolated.ledger, monkeypatch, "classic", "ease")
    return record


def test_a_tampered_weights_file_is_refused_naming_the_hashes(catalog, isolated, saved_ease):
    weights = isolated.ledger.parent / saved_ease["artifact"]["path"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one bit pattern of the last weight changes
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="changed after it was saved") as caught:
        m6bench.load_run(saved_ease["run_id"], isolated.ledger, catalog=catalog)
    assert saved_ease["artifact"]["sha256"] in str(caught.value)
    assert "--save" in str(caught.value)


def test_another_benchmark_version_is_refused(catalog, isolated, saved_ease, monkeypatch):
    # the data loaded here hashes to another version (as if the dataset had changed)
    monkeypatch.setattr("m6bench.runs.prepare.version_of",
                        lambda catalog, spec, identity: "0123456789ab")
    with pytest.raises(ArtifactError, match="benchmark version differs") as caught:
        m6bench.load_run(saved_ease["run_id"], isolated.ledger, catalog=catalog)
    assert saved_ease["benchmark"]["version"] in str(caught.value)


def test_other_code_is_refused_unless_allowed(catalog, isolated, saved_ease, monkeypatch):
    from m6bench.registry import provenance

    other = {**provenance.harness_identity(), "sha256": "0000000000000000"}
    monkeypatch.setattr("m6bench.runs.reproduce.harness_identity", lambda: other)
    with pytest.raises(ArtifactError, match="made with other code") as caught:
        m6bench.load_run(saved_ease["run_id"], isolated.ledger, catalog=catalog)
    assert "0000000000000000" in str(caught.value)
    assert "--allow-code-change" in str(caught.value)

    loaded = m6bench.load_run(saved_ease["run_id"], isolated.ledger, catalog=catalog,
                              allow_code_change=True)
    assert len(loaded.code_changes) == 1 and "harness" in loaded.code_changes[0]


def test_a_run_saved_without_save_has_no_artifact_to_load(catalog, isolated):
    record = m6bench.run("classic", model="pop", dataset_options=SMALL, device="cpu",
                         ledger=isolated.ledger, catalog=catalog)
    assert "artifact" not in record
    with pytest.raises(ArtifactError, match="--save"):
        m6bench.load_run(record["run_id"], isolated.ledger, catalog=catalog)


def test_the_load_command_checks_the_recorded_metric(isolated, saved_ease):
    result = CliRunner().invoke(main, ["load", saved_ease["run_id"], "--ledger",
                                       str(isolated.ledger), "--check"])
    assert result.exit_code == 0, result.output
    assert "classic/ease" in result.output
    expected = repr(saved_ease["metrics"]["test"]["ndcg@10"])
    assert f"recorded {expected}, re-evaluated {expected}: identical" in result.output


def test_the_run_command_saves_with_save(isolated):
    result = CliRunner().invoke(main, [
        "run", "--plugin", "classic", "--model", "ease", "--device", "cpu", "--quiet",
        "--dataset-opt", "n_users=120", "--dataset-opt", "n_items=90",
        "--dataset-opt", "density=0.2", "--save"])
    assert result.exit_code == 0, result.output
    record = json.loads(isolated.ledger.read_text().splitlines()[-1])
    assert (isolated.ledger.parent / record["artifact"]["path"] / "model.safetensors").is_file()
    assert "saved the model in" in result.output


def test_sweep_finals_are_saved_and_the_reused_trial_is_not_trained_again(catalog, isolated):
    from m6bench.sweeps.sweep import sweep

    fixed = {"epochs": 2, "patience": 2, "eval_every": 1}
    result = sweep("classic", model="bpr-mf", dataset="synthetic", dataset_options=SMALL,
                   trials=2, seeds=2, pruner="none", ledger=isolated.ledger,
                   overrides=fixed, catalog=catalog, device="cpu")
    finals = {r["seed"]: r for r in result.finals}
    assert finals[0]["reuses"] == result.study.best_trial.user_attrs["run_id"]
    for final in finals.values():
        loaded = m6bench.load_run(final["run_id"], isolated.ledger, catalog=catalog)
        assert loaded.record["run_id"] == final["run_id"]
    # the reused trial's staged model became the final's; no trial's stays behind
    staged = isolated.ledger.parent / "artifacts" / artifacts.STAGED
    assert not staged.exists() or not any(staged.iterdir())
    trials = [r for r in result.study.get_trials() if "run_id" in r.user_attrs]
    assert all("artifact" not in r for r in
               [json.loads(line) for line in isolated.ledger.read_text().splitlines()]
               if r["kind"] == "trial") and len(trials) == 2


def test_a_sweep_without_saving_keeps_no_models(catalog, isolated):
    from m6bench.sweeps.sweep import sweep

    result = sweep("classic", model="ease", dataset="synthetic", dataset_options=SMALL,
                   trials=1, seeds=1, pruner="none", ledger=isolated.ledger,
                   catalog=catalog, device="cpu", save_finals=False)
    assert "artifact" not in result.finals[0]
    assert not (isolated.ledger.parent / "artifacts").exists()
