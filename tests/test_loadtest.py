"""Load tests: locust (in a subprocess) against a real server for 2 s, the serving record it
appends, errors counted when the service is down, and the activity-weighted user sample."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from deploy_helpers import loaded_in_process

from m6bench.deploy.loadtest import activity_sample, latency_percentiles, load_test
from m6bench_leaderboard import read_ledger, validate_record

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(scope="module")
def loaded(module_cache, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("M6BENCH_CACHE_DIR", str(module_cache))
        return loaded_in_process("classic", "bpr-mf", tmp_path_factory.mktemp("artifact"))


def test_a_two_second_load_test_appends_a_serving_record(loaded, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    record = load_test(loaded, ledger=ledger, concurrency=4, duration_s=2.0, max_batch=16)
    validate_record(record)
    [written] = read_ledger(ledger).records
    assert written == record
    serving = record["serving"]
    assert record["kind"] == "serving" and record["metrics"] == {}
    assert serving["base_run_id"] == loaded.run_id and serving["variant"] is None
    assert serving["backend"] == "torch" and serving["concurrency"] == 4
    assert serving["max_batch"] == 16 and serving["batch_wait_ms"] == 2.0
    assert serving["requests"] > 20 and serving["errors"] == 0
    assert 1.5 < serving["duration_s"] < 10
    assert serving["rps"] == pytest.approx(serving["requests"] / serving["duration_s"],
                                           rel=0.05)
    latency = serving["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert record["model"] == "bpr-mf" and record["hardware"]["cores"] >= 1


def test_a_service_that_is_down_counts_errors(loaded):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    record = load_test(loaded, url=f"http://127.0.0.1:{port}", concurrency=2,
                       duration_s=1.0, record=False)
    serving = record["serving"]
    assert serving["requests"] > 0 and serving["errors"] == serving["requests"]
    assert serving["rps"] == 0.0 and serving["latency_ms"]["p50"] is None


def test_users_are_sampled_by_training_activity(loaded):
    counts = np.bincount(loaded.train.users.numpy(), minlength=loaded.train.n_users)
    sample = activity_sample(loaded, n=50_000, seed=1)
    index = {user: i for i, user in enumerate(loaded.user_ids)}
    drawn = np.bincount([index[u] for u in sample], minlength=len(counts))
    assert drawn[counts == 0].sum() == 0
    # each user's share of the sample is its share of the interactions (50k draws: the
    # standard error of a share is below 0.0023)
    np.testing.assert_allclose(drawn / drawn.sum(), counts / counts.sum(), atol=0.012)
    assert activity_sample(loaded, n=50_000, seed=1) == sample  # seeded: repeatable


def test_latency_percentiles_by_hand():
    assert latency_percentiles([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == {
        "p50": 5.5, "p95": 9.55, "p99": 9.91}
    assert latency_percentiles([]) == {"p50": None, "p95": None, "p99": None}


@pytest.fixture
def torch_threads_restored():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # `m6bench loadtest` pins them for serving


@pytest.mark.usefixtures("torch_threads_restored")
def test_the_commands_export_and_load_test_a_saved_run(isolated):
    from click.testing import CliRunner

    from m6bench.cli import main

    runner = CliRunner()
    trained = runner.invoke(main, ["run", "--plugin", "classic", "--model", "bpr-mf",
                                   "--set", "epochs=2", "--save", "--quiet"])
    assert trained.exit_code == 0, trained.output
    [run] = read_ledger(isolated.ledger).records
    exported = runner.invoke(main, ["export", run["run_id"]])
    assert exported.exit_code == 0, exported.output
    assert (isolated.ledger.parent / run["artifact"]["path"] / "model.onnx").is_file()
    tested = runner.invoke(main, ["loadtest", run["run_id"], "--users", "2", "--duration",
                                  "1", "--backend", "onnx"])
    assert tested.exit_code == 0, tested.output
    assert "0 errors" in tested.output
    serving = read_ledger(isolated.ledger).records[-1]
    assert serving["kind"] == "serving" and serving["serving"]["backend"] == "onnx"
    assert serving["serving"]["base_run_id"] == run["run_id"]
    missing = runner.invoke(main, ["serve", "no-such-run"])
    assert missing.exit_code == 2 and "no-such-run" in missing.output
