"""ONNX export of every exportable built-in model: onnxruntime's top-k equals torch's for a
sample of users (same items, scores allclose), training items masked, every k from one file;
a model that cannot be exported says which and why."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deploy_helpers import loaded_in_process

from m6bench import Recommender, history_rows
from m6bench.deploy.export import OnnxScorer, TorchScorer, export_run
from m6bench.errors import ExportError
from m6bench.training.recommender import masked_top_k, padded_histories

pytestmark = pytest.mark.usefixtures("isolated")

FAST = [("classic", "bpr-mf"), ("classic", "ials"), ("classic", "ease"),
        ("classic", "itemknn"), ("classic", "pop"), ("gnn-mf", "gnn-mf")]
SLOW = [("deep", "neumf"), ("deep", "deepfm"), ("deep", "wide-deep"), ("deep", "mult-vae"),
        ("m6-fusion", "m6-fusion")]


def assert_same_top_k(torch_answer, onnx_answer) -> None:
    """Same items in the same order, scores allclose.  Where two items' scores are tied to
    float rounding the order may differ; then the torch scores at both positions must agree."""
    (torch_values, torch_items), (onnx_values, onnx_items) = torch_answer, onnx_answer
    np.testing.assert_allclose(onnx_values, torch_values, rtol=1e-4, atol=1e-5)
    differ = torch_items != onnx_items
    np.testing.assert_allclose(torch_values[differ], onnx_values[differ], rtol=1e-5,
                               atol=1e-6)
    assert differ.mean() < 0.05, "ONNX ranks more than near-ties differently"


def check_export(plugin: str, model: str, tmp_path) -> None:
    loaded = loaded_in_process(plugin, model, tmp_path, epochs=1)
    path = export_run(loaded)
    assert path == tmp_path / "model.onnx" and path.stat().st_size > 0
    onnx_scorer = OnnxScorer(path, loaded.train.matrix)
    torch_scorer = TorchScorer(loaded.model, loaded.train.matrix)
    n_users = loaded.train.n_users
    # a batch size other than the export's sample, the heaviest users (longest histories)
    heaviest = torch.bincount(loaded.train.users, minlength=n_users).argsort(descending=True)
    users = torch.cat([torch.arange(0, n_users, max(1, n_users // 13)), heaviest[:3]])
    for k in (1, 10):
        assert_same_top_k(torch_scorer.top_k(users, k), onnx_scorer.top_k(users, k))
    values, items = onnx_scorer.top_k(users, 10)
    seen = loaded.train.matrix.to_dense().bool()
    assert not seen[users[:, None], torch.from_numpy(items)].any(), "a training item served"
    assert np.isfinite(values).all()


@pytest.mark.parametrize(("plugin", "model"), FAST, ids=[m for _, m in FAST])
def test_onnx_top_k_equals_torch(plugin, model, tmp_path):
    check_export(plugin, model, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(("plugin", "model"), SLOW, ids=[m for _, m in SLOW])
def test_onnx_top_k_equals_torch_deep_models(plugin, model, tmp_path):
    check_export(plugin, model, tmp_path)


def test_padded_histories_and_rows_by_hand():
    dense = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.float32)
    matrix = dense.to_sparse_csr()
    history = padded_histories(matrix, torch.tensor([2, 0, 1]))
    assert history.tolist() == [[1, 4, 4], [0, 2, 3], [4, 4, 4]]
    assert history_rows(history, 4).tolist() == dense[[2, 0, 1]].tolist()
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0]] * 3)
    values, items = masked_top_k(scores, history, 2)
    # user 0 saw items 0, 2, 3: item 1 is its only candidate, then any masked item at -inf
    assert items[[0, 2]].tolist() == [[0, 2], [0, 1]] and int(items[1, 0]) == 1
    assert values.tolist() == [[4.0, 2.0], [3.0, float("-inf")], [4.0, 3.0]]


class _Unexportable(Recommender):
    def fit_epoch(self, train, epoch):
        return {}

    def score(self, users):
        return torch.zeros(users.numel(), self.n_items)

    def exportable(self):
        return "its scores come from an external service"


class _Untraceable(_Unexportable):
    def exportable(self):
        return None

    def score(self, users):  # data-dependent Python control flow
        if int(users.sum()) > 10**9:
            return torch.ones(users.numel(), self.n_items)
        return torch.zeros(users.numel(), self.n_items)

    def export_scores(self, users, history):
        return torch.zeros(int(users.max()) + 1, self.n_items)[users.tolist()]


def test_a_model_that_cannot_be_exported_names_itself_and_why(tmp_path):
    loaded = loaded_in_process("classic", "pop", tmp_path)
    refusing = _Unexportable(loaded.train, {})
    with pytest.raises(ExportError, match=r"_Unexportable.*external service.*--backend torch"):
        export_run(_with_model(loaded, refusing))
    failing = _Untraceable(loaded.train, {})
    with pytest.raises(ExportError, match="Exporting model _Untraceable to ONNX failed"):
        export_run(_with_model(loaded, failing))
    assert not (tmp_path / "model.onnx").exists()


def _with_model(loaded, model):
    from dataclasses import replace

    return replace(loaded, model=model)
