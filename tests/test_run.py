"""`m6bench run` and `m6bench.run`: records, config resolution, failures, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from plugins_for_tests import catalog_with, fake_plugin

import m6bench
from m6bench import ConfigError, ModelSpec, Recommender, RunFailed, load_catalog
from m6bench.cli import main
from m6bench.runs.config import resolve_config
from m6bench_leaderboard import read_ledger

pytestmark = pytest.mark.usefixtures("isolated")


def test_cli_run_prints_config_table_and_records(tmp_path):
    result = CliRunner().invoke(main, ["run", "--plugin", "classic", "--model", "pop"])
    assert result.exit_code == 0, result.output
    assert "embedded synthetic default" in result.output
    assert "config: {" in result.output and "| metric" in result.output
    assert "ndcg@10" in result.output
    records = read_ledger(tmp_path / "ledger.jsonl").records
    assert len(records) == 1
    record = records[0]
    assert f"recorded run {record['run_id']}" in result.output
    for key in ("benchmark", "dataset", "cut", "plugin", "config", "config_hash", "seed",
                "metrics", "timings", "peak_rss_mb", "parameters", "hardware", "software",
                "code", "command", "started_at", "ended_at", "per_user", "curve", "epochs"):
        assert key in record, key
    assert record["plugin"]["distribution"] == "m6bench"
    assert record["benchmark"]["name"] == "synthetic"
    # the paper the plugin registered travels with the record, so the site can cite it
    assert record["model_info"]["paper"] == "Cremonesi, Koren, Turrin, RecSys 2010"
    assert all(isinstance(part, str) for part in record["command"])
    assert len(record["per_user"]["users"]) == len(record["per_user"]["ndcg@10"])
    mean = sum(record["per_user"]["ndcg@10"]) / len(record["per_user"]["ndcg@10"])
    assert mean == pytest.approx(record["metrics"]["test"]["ndcg@10"], abs=1e-5)


def test_unknown_plugin_on_the_command_line():
    result = CliRunner().invoke(main, ["run", "--plugin", "clasic"])
    assert result.exit_code == 2
    assert "Unknown plugin 'clasic'. Did you mean 'classic'?" in result.output


def test_unknown_set_key_lists_accepted_keys():
    result = CliRunner().invoke(main, ["run", "--plugin", "classic", "--model", "bpr-mf",
                                       "--set", "learning_rate=0.1"])
    assert result.exit_code == 2
    assert "'learning_rate'" in result.output and "no component of 'bpr-mf'" in result.output
    assert "lr" in result.output and "epochs" in result.output


def test_wrong_type_for_a_set_key():
    with pytest.raises(ConfigError, match=r"epochs takes a int"):
        resolve_config({"lr": 0.1}, overrides={"epochs": "many"})


def test_missing_data_folder_on_the_command_line(tmp_path):
    result = CliRunner().invoke(main, ["run", "--plugin", "classic",
                                       "--dataset", str(tmp_path / "no-such-folder")])
    assert result.exit_code == 2
    assert "no-such-folder" in result.output


def test_config_precedence_defaults_file_cli(tmp_path):
    config_file = tmp_path / "c.toml"
    config_file.write_text("lr = 0.02\nepochs = 3\n")
    resolved = resolve_config({"lr": 0.001, "dim": 8}, file_values={"lr": 0.02, "epochs": 3},
                              overrides={"epochs": 4})
    assert resolved["lr"] == 0.02 and resolved["epochs"] == 4 and resolved["dim"] == 8
    record = m6bench.run("classic", model="bpr-mf", config_file=str(config_file),
                         overrides={"epochs": 2})
    assert record["config"]["lr"] == 0.02 and record["config"]["epochs"] == 2
    assert record["epochs"] == 2


class _Diverging(Recommender):
    iterative = True

    def __init__(self, train, config):
        super().__init__(train, config)
        self.weight = torch.nn.Parameter(torch.zeros(train.n_items))

    def fit_epoch(self, train, epoch):
        return {"loss": 1.0 if epoch < 3 else float("nan")}

    def score(self, users):
        return self.weight.expand(len(users), -1)


def test_nan_loss_is_recorded_as_failed_and_earlier_records_survive(tmp_path):
    catalog = catalog_with(("diverging", fake_plugin(
        "diverging", models=[ModelSpec("diverging", build=_Diverging, defaults={"epochs": 10})])))
    ok = m6bench.run("classic", model="pop", catalog=catalog)
    with pytest.raises(RunFailed) as info:
        m6bench.run("diverging", catalog=catalog)
    assert "diverged" in str(info.value) and "epoch 3" in str(info.value)
    records = read_ledger(tmp_path / "ledger.jsonl").records
    assert [r["status"] for r in records] == ["ok", "failed"]
    assert records[0] == ok
    assert records[1]["epochs"] == 3 and "TrainingDiverged" in records[1]["error"]


class _FrozenBackbone(Recommender):
    """A pretrained part that stays frozen (a buffer the optimiser never sees) and a small
    trained head, as a language-model recommender with soft prompts is built."""

    iterative = False

    def __init__(self, train, config):
        super().__init__(train, config)
        self.register_buffer("backbone", torch.ones(train.n_items, 6))
        self.head = torch.nn.Parameter(torch.zeros(6))

    def fit_epoch(self, train, epoch):
        return {}

    def trained_parameter_count(self):
        return self.head.numel()

    def score(self, users):
        return (self.backbone @ self.head).expand(len(users), -1)


def test_records_count_trained_parameters_apart_from_frozen_ones(tmp_path):
    catalog = catalog_with(("frozen", fake_plugin(
        "frozen", models=[ModelSpec("frozen", build=_FrozenBackbone, defaults={})])))
    frozen = m6bench.run("frozen", catalog=catalog)
    n_items = frozen["dataset"]["statistics"]["items"]
    assert frozen["parameters"] == n_items * 6 + 6 and frozen["trained_parameters"] == 6
    # a model that fits everything it has: both counts are its two embedding tables
    bpr = m6bench.run("classic", model="bpr-mf", overrides={"dim": 8, "epochs": 1},
                      catalog=catalog)
    statistics = bpr["dataset"]["statistics"]
    assert bpr["trained_parameters"] == bpr["parameters"] == \
        (statistics["users"] + statistics["items"]) * 8


def test_json_flag_prints_the_record():
    result = CliRunner().invoke(main, ["run", "--plugin", "classic", "--model", "pop",
                                       "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert record["model"] == "pop" and record["status"] == "ok"


def test_listing_commands():
    runner = CliRunner()
    assert "synthetic" in runner.invoke(main, ["datasets"]).output
    assert "bpr-mf (default)" in runner.invoke(main, ["models"]).output
    assert "ml-100k" in runner.invoke(main, ["benchmarks"]).output
    plugins = runner.invoke(main, ["plugins"]).output
    assert "classic" in plugins and "models: " in plugins


# ----------------------------------------------------------------------------- negatives
@pytest.mark.parametrize("bitmap", [True, False], ids=["bitmap", "binary-search"])
def test_membership_and_true_negatives_match_a_python_set(bitmap, monkeypatch, tmp_path):
    import m6bench.data.trainset as model_module
    from m6bench import BenchmarkSpec, LoadContext
    from m6bench.runs.prepare import prepare_benchmark

    if not bitmap:
        monkeypatch.setattr(model_module, "BITMAP_MAX_PAIRS", 0)
    spec = BenchmarkSpec("membership", dataset="synthetic",
                         dataset_options={"n_users": 120, "n_items": 90, "density": 0.2})
    train = prepare_benchmark(load_catalog(), spec, seed=0, device=torch.device("cpu"),
                              context=LoadContext(data_dir=None, cache_dir=str(tmp_path))).train
    assert (train._bitmap is not None) == bitmap
    pairs = set(zip(train.users.tolist(), train.items.tolist()))
    users = torch.randint(0, train.n_users, (5000,), generator=torch.Generator().manual_seed(1))
    items = torch.randint(0, train.n_items, (5000,), generator=torch.Generator().manual_seed(2))
    expected = [(u, i) in pairs for u, i in zip(users.tolist(), items.tolist())]
    assert train.has_interaction(users, items).tolist() == expected
    assert any(expected) and not all(expected)
    # rejection sampling: a row keeps a training item only if every one of 40 draws hit one
    negatives = train.sample_true_negatives(train.users, max_tries=40)
    assert not any((u, i) in pairs for u, i in zip(train.users.tolist(), negatives.tolist()))


def test_bpr_batches_cover_every_interaction_once_with_true_negatives(tmp_path):
    from collections import Counter

    from m6bench import BenchmarkSpec, LoadContext
    from m6bench.runs.prepare import prepare_benchmark

    spec = BenchmarkSpec("bpr-batches", dataset="synthetic",
                         dataset_options={"n_users": 120, "n_items": 90, "density": 0.1})
    train = prepare_benchmark(load_catalog(), spec, seed=0, device=torch.device("cpu"),
                              context=LoadContext(data_dir=None, cache_dir=str(tmp_path))).train
    interactions = Counter(zip(train.users.tolist(), train.items.tolist()))
    epochs = [list(train.bpr_batches(64)) for _ in range(2)]
    for batches in epochs:
        sizes = [users.numel() for users, _, _ in batches]
        assert sizes[:-1] == [64] * (len(sizes) - 1) and 0 < sizes[-1] <= 64
        users, positives, negatives = (torch.cat(part) for part in zip(*batches))
        assert Counter(zip(users.tolist(), positives.tolist())) == interactions
        assert not any((u, i) in interactions
                       for u, i in zip(users.tolist(), negatives.tolist()))
    # each epoch has its own order, drawn from the run's generator
    assert not torch.equal(epochs[0][0][0], epochs[1][0][0])
    uniform = torch.cat([negatives for _, _, negatives in train.bpr_batches(64, False)])
    assert uniform.numel() == train.n_interactions and int(uniform.max()) < train.n_items


def test_id_embedding_gradient_matches_torch_embedding():
    from m6bench.builtin.components import IdEmbedding

    torch.manual_seed(0)
    encoder = IdEmbedding(7, 3, init_std=0.5)
    reference = torch.nn.Embedding(7, 3)
    reference.weight.data.copy_(encoder.weight.data)
    index = torch.tensor([[4, 1, 4], [0, 4, 6]])  # repeated rows accumulate
    upstream = torch.randn(2, 3, 3)
    (encoder(index) * upstream).sum().backward()
    (reference(index) * upstream).sum().backward()
    assert torch.equal(encoder(index), reference(index))
    assert torch.allclose(encoder.weight.grad, reference.weight.grad, atol=1e-6)
    assert encoder.weight.grad[[2, 3, 5]].abs().sum() == 0  # rows never looked up

