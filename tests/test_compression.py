"""Compression: the transforms on hand-made tensors (numbers computed by hand), sizes of
the stored forms, ``m6bench compress`` end to end, a plugin's own method through the hook,
and the issue's acceptance check on MovieLens 100K (``real_data``)."""

from __future__ import annotations

import types

import pytest
import torch
from click.testing import CliRunner

import m6bench
from m6bench import CompressionSpec, ConfigError, hookimpl
from m6bench.cli import main
from m6bench.deploy.compress import compress_run
from m6bench.registry.catalog import load_catalog
from m6bench.training.compression import (
    BUILTIN_COMPRESSIONS,
    decode_state,
    encode_state,
    low_rank,
    prune_magnitude,
    quantise_rows,
    restore_into,
)

SMALL = {"n_users": 120, "n_items": 90, "density": 0.2}


class TableModel(m6bench.Recommender):
    """A user table, an item table and one linear layer: what the compressions act on."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor) -> None:
        shape = types.SimpleNamespace(n_users=users.shape[0], n_items=items.shape[0])
        super().__init__(shape, {})
        self.users = torch.nn.Parameter(users.clone())
        self.items = torch.nn.Parameter(items.clone())
        self.mix = torch.nn.Linear(users.shape[1], users.shape[1], bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(users.shape[1]))

    def fit_epoch(self, train, epoch):
        return {}

    def score(self, users):
        return self.mix(self.users[users]) @ self.items.T


def by_name(name: str) -> CompressionSpec:
    return next(spec for spec in BUILTIN_COMPRESSIONS if spec.name == name)


# ----------------------------------------------------------------------------- transforms
def test_int8_rows_are_quantised_symmetrically_by_hand():
    table = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [127.0, 63.4, -127.0]])
    q, scale = quantise_rows(table)
    # row 0: scale 1/127, q = round(127 x) = 127, -63.5 -> -64 (half to even), 31.75 -> 32
    assert scale.tolist() == pytest.approx([1 / 127, 1.0, 1.0])
    assert q.tolist() == [[127, -64, 32], [0, 0, 0], [127, 63, -127]]
    error = (q.float() * scale[:, None] - table).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-7).all())
    assert error[2].tolist() == pytest.approx([0.0, 0.4, 0.0], abs=1e-5)


def test_pruning_zeroes_the_smallest_magnitudes():
    tensor = torch.tensor([[0.1, -3.0, 0.2], [2.0, -0.05, 1.0]])
    assert prune_magnitude(tensor, 0.5).tolist() == [[0.0, -3.0, 0.0], [2.0, 0.0, 1.0]]
    assert torch.equal(prune_magnitude(tensor, 0.0), tensor)


def test_low_rank_keeps_the_largest_singular_directions():
    diagonal = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    left, right = low_rank(diagonal, 2)
    assert left.shape == (3, 2) and right.shape == (2, 3)
    assert torch.allclose(left @ right, torch.diag(torch.tensor([3.0, 2.0, 0.0])), atol=1e-6)
    outer = torch.outer(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0]))
    left, right = low_rank(outer, 1)  # a rank-1 matrix is rebuilt exactly
    assert torch.allclose(left @ right, outer, atol=1e-5)


# ----------------------------------------------------------------------------- stored sizes
@pytest.fixture
def tables():
    generator = torch.Generator().manual_seed(0)
    return TableModel(torch.randn(100, 8, generator=generator),
                      torch.randn(50, 8, generator=generator))


def test_int8_stores_a_byte_per_entry_plus_a_scale_per_row(tables):
    stored = by_name("int8").apply(tables, {})
    # users: 100 x 8 int8 + 100 float32 scales; the linear weight 8 x 8 int8 + 8 scales
    assert stored.nbytes("users") == 800 + 400
    assert stored.nbytes("mix.weight") == 64 + 32
    assert stored.largest_tensor_bytes() == 1200  # was 100 * 8 * 4 = 3200
    state = decode_state(stored)
    _, scale = quantise_rows(tables.users)
    assert bool(((state["users"] - tables.users).abs() <= scale[:, None] / 2 + 1e-7).all())


def test_int8_scores_through_the_models_own_score_with_dequantised_tables(tables):
    users = torch.arange(100)
    with torch.no_grad():
        full = tables.score(users)
    q_users, user_scale = quantise_rows(tables.users)
    q_items, item_scale = quantise_rows(tables.items)
    stored = by_name("int8").apply(tables, {})
    model = restore_into(tables, stored)
    assert "quantized" in type(model.mix).__module__  # torch's dynamically quantised layer
    with torch.no_grad():
        compressed = model.score(users)
        # the tables it scores with are exactly the dequantised int8 values
        by_hand = model.mix(q_users.float() * user_scale[:, None]) @ (
            q_items.float() * item_scale[:, None]).T
    assert torch.equal(compressed, by_hand)
    assert not torch.equal(compressed, full)
    assert torch.allclose(compressed, full, atol=0.5)  # 8-bit weights and activations


def test_pruning_stores_the_kept_entries_sparse(tables):
    stored = by_name("prune").apply(tables, {"sparsity": 0.9})
    # users: 80 of 800 kept; crow 101 int16 (nnz 80 fits), col 80 int16, values 80 float32
    assert stored.nbytes("users") == 101 * 2 + 80 * 2 + 80 * 4
    assert stored.encodings["users"]["kind"] == "pruned"
    state = decode_state(stored)
    assert int((state["users"] != 0).sum()) == 80
    kept = tables.users.detach().abs() >= tables.users.detach().abs().flatten().sort()[0][720]
    assert torch.equal(state["users"], tables.users.detach() * kept)


def test_low_rank_stores_two_factors_and_skips_tables_it_would_not_shrink(tables):
    stored = by_name("low-rank").apply(tables, {"rank": 2})
    assert stored.nbytes("users") == (100 * 2 + 2 * 8) * 4  # was 3200
    assert stored.encodings["mix.weight"]["kind"] == "dense"  # not a user or item table
    wide = by_name("low-rank").apply(tables, {"rank": 8})  # 8 * (100 + 8) > 100 * 8
    assert wide.encodings["users"]["kind"] == "dense"


def test_float16_halves_every_float_tensor(tables):
    stored = by_name("float16").apply(tables, {})
    assert stored.largest_tensor_bytes() == 100 * 8 * 2
    assert decode_state(stored)["users"].dtype == torch.float32


def test_options_are_checked_naming_the_key():
    with pytest.raises(ConfigError, match="no option 'sparsty'"):
        by_name("prune").resolve_options({"sparsty": "0.5"})
    assert by_name("prune").resolve_options({"sparsity": "0.8"}) == {"sparsity": 0.8}
    assert by_name("prune").variant_name({"sparsity": 0.5}) == "prune-0.5"
    assert by_name("low-rank").variant_name({"rank": 16}) == "low-rank-16"
    with pytest.raises(ConfigError, match=r"sparsity=1\.5"):
        by_name("prune").apply(None, {"sparsity": 1.5})


def test_a_variant_name_must_be_a_plain_folder_name(isolated):
    with pytest.raises(ConfigError, match="not a folder name"):
        compress_run("0123456789", method="int8", name="../outside", ledger=isolated.ledger)


# ----------------------------------------------------------------------------- end to end
@pytest.fixture
def saved_ease(isolated):
    catalog = load_catalog()
    record = m6bench.run("classic", model="ease", dataset_options=SMALL, device="cpu",
                         ledger=isolated.ledger, catalog=catalog, save=True)
    return record, catalog


def test_compress_records_and_saves_a_variant_that_loads_back(isolated, saved_ease):
    base, catalog = saved_ease
    record = compress_run(base["run_id"], method="int8", ledger=isolated.ledger,
                          catalog=catalog)
    variant = record["variant"]
    assert record["kind"] == "variant" and variant["name"] == "int8"
    assert variant["base_run_id"] == base["run_id"]
    assert variant["base_size_bytes"] == base["artifact"]["bytes"]
    n_items = 90
    assert variant["base_largest_tensor_bytes"] == n_items * n_items * 4
    assert variant["largest_tensor_bytes"] == n_items * n_items + n_items * 4
    test = record["metrics"]["test"]
    assert variant["delta"]["ndcg@10"] == test["ndcg@10"] - base["metrics"]["test"]["ndcg@10"]
    for key in ("benchmark", "plugin", "model", "config", "seed", "code"):
        assert record[key] == base[key]

    loaded = m6bench.load_run(base["run_id"], isolated.ledger, variant="int8",
                              catalog=catalog)
    assert loaded.variant == "int8" and loaded.artifact_dir.name == "int8"
    result = CliRunner().invoke(main, ["load", base["run_id"], "--ledger",
                                       str(isolated.ledger), "--variant", "int8", "--check"])
    assert result.exit_code == 0, result.output
    assert "identical" in result.output


def test_the_compress_command_names_the_variant_by_its_options(isolated, saved_ease):
    base, _ = saved_ease
    result = CliRunner().invoke(main, ["compress", base["run_id"], "--method", "prune",
                                       "--opt", "sparsity=0.8", "--ledger",
                                       str(isolated.ledger)])
    assert result.exit_code == 0, result.output
    assert "variant prune-0.8" in result.output and "smaller" in result.output
    assert (isolated.ledger.parent / "artifacts" / base["run_id"] / "variants" / "prune-0.8"
            / "model.safetensors").is_file()


def zero_items(model, options):
    """A plugin's method: every float table scaled by ``factor`` (0 zeroes them)."""
    from m6bench import encode_state

    state = model.state_dict()
    scaled = {k: v * options["factor"] if v.is_floating_point() else v
              for k, v in state.items()}
    return encode_state(scaled)


def test_a_plugin_registers_its_own_compression_through_the_hook(isolated):
    plugin = types.ModuleType("m6bench_scaling_for_tests")

    @hookimpl
    def m6bench_register_compressions(register):
        register(CompressionSpec("scale", zero_items, defaults={"factor": 1.0},
                                 description="every float weight times factor"))

    plugin.m6bench_register_compressions = m6bench_register_compressions
    catalog = load_catalog([("scaling", plugin)])
    assert catalog.compressions.entry("scale").plugin == "scaling"
    base = m6bench.run("classic", model="ease", dataset_options=SMALL, device="cpu",
                       ledger=isolated.ledger, catalog=catalog, save=True)
    same = compress_run(base["run_id"], method="scale", ledger=isolated.ledger,
                        catalog=catalog)
    assert same["variant"]["name"] == "scale-1"
    assert same["metrics"]["test"] == base["metrics"]["test"]  # factor 1: the same model
    zeroed = compress_run(base["run_id"], method="scale", options={"factor": 0},
                          ledger=isolated.ledger, catalog=catalog)
    assert zeroed["metrics"]["test"]["ndcg@10"] < base["metrics"]["test"]["ndcg@10"]


def test_encode_state_round_trips_every_builtin_model_tensor(tables):
    state = decode_state(encode_state(tables.state_dict()))
    assert all(torch.equal(state[k], v) for k, v in tables.state_dict().items())


# ----------------------------------------------------------------------------- acceptance
@pytest.mark.real_data
@pytest.mark.parametrize("model", ["bpr-mf", "ease"])
def test_int8_on_ml100k_loses_at_most_1pct_and_shrinks_the_largest_tensor_3_5x(
        isolated, model):
    from m6bench.testing import real_data_folder

    real_data_folder("recbole-ml-100k", purpose="the int8 compression acceptance check")
    catalog = load_catalog()
    base = m6bench.run("classic", model=model, dataset="ml-100k", seed=0, device="cpu",
                       ledger=isolated.ledger, catalog=catalog, save=True)
    record = compress_run(base["run_id"], method="int8", ledger=isolated.ledger,
                          catalog=catalog)
    before = base["metrics"]["test"]["ndcg@10"]
    after = record["metrics"]["test"]["ndcg@10"]
    variant = record["variant"]
    print(f"\n{model} int8: ndcg@10 {before:.4f} -> {after:.4f}; largest tensor "
          f"{variant['base_largest_tensor_bytes']} -> {variant['largest_tensor_bytes']}")
    assert after >= before * 0.99
    assert variant["base_largest_tensor_bytes"] >= 3.5 * variant["largest_tensor_bytes"]
