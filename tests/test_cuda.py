"""The CUDA paths of the harness and plugins, each checked against the CPU.

Every test here needs a CUDA device and skips with a reason without one (CI has none); the
device run of ``benchmarks/gpu/run.sh`` runs them with ``python -m pytest -m cuda``.  The
paths covered (``grep -rn cuda harness plugins``):

* ``m6bench.tensor.row_gradient``: the embedding backward (sorted indices) on CUDA,
  ``index_add_`` on a CPU: the same gradient, and the CUDA one the same on every run;
* device-resident full-ranking evaluation (``evaluate_ranking(device=cuda)``);
* a benchmark prepared on CUDA: tensors and the sampling generator on the device, negative
  sampling and the training-pair lookup on the device (``data/prepared.py``,
  ``data/trainset.py``);
* the free-memory probe on CUDA (``data/memory.py``);
* a whole run on CUDA: deterministic for a seed, the GPU and its peak memory recorded
  (``runs/run.py``, ``registry/provenance.py``);
* m6-fusion's sentence vectors moved to the GPU with the model (its text buffers);
* the conformance kit's ``device-moves`` rule, which moves models CPU <-> CUDA
  (``testing/tensors.py``);
* sweep workers' devices on a GPU machine (``sweeps/workers.py``).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import m6bench
from m6bench.data.memory import available_memory
from m6bench.data.prepared import csr_matrix
from m6bench.data.specs import BenchmarkSpec, LoadContext
from m6bench.evaluation.ranking import evaluate_ranking
from m6bench.registry.catalog import load_catalog
from m6bench.runs.config import resolve_config
from m6bench.runs.prepare import prepare_benchmark
from m6bench.sweeps.workers import worker_devices
from m6bench.tensor import row_gradient
from m6bench.testing import check_plugin

# The marker is registered in pyproject.toml; the skip names why, on every CPU-only machine.
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device: torch.cuda.is_available() is false here "
                              "(benchmarks/gpu/run.sh runs these on the device machine)"),
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
SMALL_SYNTHETIC = {"n_users": 200, "n_items": 120, "density": 0.1, "seed": 3}


def _small_benchmark(tmp_path, device: torch.device):
    spec = BenchmarkSpec("cuda-small", dataset="synthetic", dataset_options=SMALL_SYNTHETIC,
                         tasks=("ranking", "rating"), ks=(10,))
    context = LoadContext(data_dir=None, cache_dir=str(tmp_path / "cache"))
    return prepare_benchmark(load_catalog(), spec, seed=0, device=device, context=context)


def test_row_gradient_on_cuda_equals_the_cpu_sum_and_repeats_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    index = torch.randint(0, 50, (4096,), generator=generator)  # many repeats per row
    grads = torch.randn(4096, 16, generator=generator)
    on_cpu = row_gradient(grads, index, 60)
    first = row_gradient(grads.to(CUDA), index.to(CUDA), 60)
    second = row_gradient(grads.to(CUDA), index.to(CUDA), 60)
    assert torch.equal(first, second)  # sorted, not atomic: no run-to-run noise
    torch.testing.assert_close(first.cpu(), on_cpu, rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(on_cpu[50:]) == 0  # rows never gathered get no gradient
    hand = torch.zeros(60, 16).index_put_((index,), grads, accumulate=True)
    torch.testing.assert_close(on_cpu, hand, rtol=1e-5, atol=1e-5)


def _ranking_problem(device: torch.device):
    """Scores with no ties (a permutation per user), so both devices rank alike."""
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 200
    scores = torch.from_numpy(np.stack([rng.permutation(n_items) for _ in range(n_users)])
                              .astype(np.float32))
    users = rng.integers(0, n_users, 6000)
    items = rng.integers(0, n_items, 6000)
    part = rng.random(6000)
    train = csr_matrix(users[part < 0.8], items[part < 0.8], n_users, n_items, device)
    truth = csr_matrix(users[part >= 0.8], items[part >= 0.8], n_users, n_items, device)
    scores = scores.to(device)
    return evaluate_ranking(lambda u: scores[u], truth=truth, masks=[train], ks=(5, 10),
                            n_items=n_items, item_popularity=torch.ones(n_items, device=device),
                            n_train_users=n_users, batch_size=64, device=device)


def test_full_ranking_evaluation_on_cuda_matches_the_cpu():
    on_cpu, on_cuda = _ranking_problem(CPU), _ranking_problem(CUDA)
    assert on_cpu.per_user.keys() == on_cuda.per_user.keys()
    for name, values in on_cpu.per_user.items():
        torch.testing.assert_close(on_cuda.per_user[name].cpu(), values.cpu(), msg=name)
    assert on_cpu.per_user["ndcg@10"].numel() > 250  # nearly every user has a test item


def test_benchmark_prepared_on_cuda_samples_on_the_device_and_repeats(tmp_path):
    bench = _small_benchmark(tmp_path, CUDA)
    train = bench.train
    assert train.users.device.type == "cuda" and train.matrix.device.type == "cuda"
    users = train.users[:500]
    negatives = train.sample_true_negatives(users)
    assert negatives.device.type == "cuda"
    assert not bool(train.has_interaction(users, negatives).any())
    assert bool(train.has_interaction(users, train.items[:500]).all())
    again = _small_benchmark(tmp_path, CUDA).train.sample_true_negatives(users)
    assert torch.equal(negatives, again)  # the device generator is seeded by the run
    on_cpu = _small_benchmark(tmp_path, CPU).train
    pairs = torch.randint(0, train.n_items, (500,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(train.has_interaction(users, pairs.to(CUDA)).cpu(),
                       on_cpu.has_interaction(users.cpu(), pairs))


def test_free_memory_probe_reads_the_gpu(monkeypatch):
    monkeypatch.delenv("M6BENCH_MEMORY_LIMIT_BYTES", raising=False)
    free, source = available_memory("cuda:0")
    _, total = torch.cuda.mem_get_info(0)
    assert 0 < free <= total
    assert "cuda:0" in source


@pytest.mark.usefixtures("isolated")
def test_run_on_cuda_is_deterministic_and_records_the_gpu():
    options = {"n_users": 150, "n_items": 90, "density": 0.1}
    first, second = (m6bench.run("classic", model="bpr-mf", dataset="synthetic",
                                 dataset_options=options, overrides={"epochs": 3},
                                 device="cuda") for _ in range(2))
    assert first["status"] == "ok" and first["device"].startswith("cuda")
    assert first["metrics"] == second["metrics"]
    assert first["hardware"]["gpu"] == torch.cuda.get_device_name(0)
    assert first["peak_gpu_mb"] > 0


def _stub_encode(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in for the sentence encoder: a fixed vector per word."""
    out = np.zeros((len(texts), 16), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
            out[row] += np.random.default_rng(seed).normal(size=16)
    return out


@pytest.mark.usefixtures("isolated")
def test_m6_fusion_text_vectors_move_to_cuda_and_score_like_the_cpu(tmp_path):
    from m6bench_m6_fusion import register_text_encoder

    register_text_encoder("cuda-test-stub", _stub_encode)
    bench = _small_benchmark(tmp_path, CPU)
    name, spec = load_catalog().model("m6-fusion", "m6-fusion")
    config = resolve_config({**spec.defaults, "text_model": "cuda-test-stub"}, model_name=name)
    torch.manual_seed(0)
    model = spec.build(bench.train, config).eval()
    users = torch.arange(bench.train.n_users)
    with torch.no_grad():
        on_cpu = model.score(users)
        model.to(CUDA)
        assert model.item_text.vectors.device.type == "cuda"
        on_cuda = model.score(users.to(CUDA))
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-4, atol=1e-4)


def test_conformance_kit_moves_a_model_between_cpu_and_cuda():
    report = check_plugin("classic", models=["bpr-mf"], device="cuda", samples=1)
    assert not report.failures


def test_sweep_workers_share_the_one_gpu_or_take_the_gpus_in_turn():
    gpus = torch.cuda.device_count()
    devices = worker_devices("cuda", 3)
    if gpus == 1:
        assert devices == ["cuda"] * 3
    else:
        assert devices == [f"cuda:{k % gpus}" for k in range(3)]
    assert worker_devices("cuda:0", 2) == ["cuda:0", "cuda:0"]
