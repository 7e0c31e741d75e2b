"""A model's scoring path exported to ONNX, and the two scorers a service runs: in-process
torch and onnxruntime.

The exported graph is :meth:`Recommender.export_module`: ``(users (B,) int64, history (B, L)
int64 padded with n_items, k () int64) -> (values (B, k) float32, items (B, k) int64)``, the
training items in ``history`` masked.  Both axes ``B`` and ``L`` are dynamic; ``k`` is an
input, so one file serves every ``k`` in ``1..n_items``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from m6bench.errors import ExportError
from m6bench.training.recommender import Recommender, masked_top_k, padded_histories

if TYPE_CHECKING:
    from m6bench.runs.artifacts import LoadedRun

ONNX_FILE = "model.onnx"
# The dynamo exporter's own opset (older ones are converted, with warnings); it has every
# operator the scorers use (ScatterElements, TopK with K as an input); onnxruntime 1.14+ runs it.
OPSET = 18


class Scorer(Protocol):
    """Top-``k`` items of users with their training items masked: what a service runs."""

    backend: str

    def top_k(self, users: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(B,)`` user indices -> ``(values (B, k) float32, items (B, k) int64)``."""
        ...


def model_name(model: Recommender) -> str:
    return type(model).__name__


def export_onnx(model: Recommender, path: Path, train_matrix: torch.Tensor) -> Path:
    """Export ``model``'s scoring path to ``path``; raise :class:`ExportError` naming the model
    and the reason when it cannot be exported.  ``train_matrix`` (CSR) gives sample inputs."""
    reason = model.exportable()
    if reason is not None:
        raise ExportError(f"Model {model_name(model)} cannot be exported to ONNX: {reason}. "
                          "Serve it with --backend torch instead.")
    model = model.eval().cpu()
    sample_users = torch.arange(min(2, model.n_users), dtype=torch.int64)
    sample_history = padded_histories(train_matrix.cpu(), sample_users)
    k = torch.tensor(min(2, model.n_items), dtype=torch.int64)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), _quiet_exporter():
            torch.onnx.export(
                model.export_module(), (sample_users, sample_history, k), str(path),
                dynamo=True, opset_version=OPSET,
                input_names=["users", "history", "k"], output_names=["scores", "items"],
                dynamic_shapes={"users": {0: batch}, "history": {0: batch, 1: length},
                                "k": None},
            )
    except Exception as exc:
        raise ExportError(
            f"Exporting model {model_name(model)} to ONNX failed: {_first_line(exc)}. "
            "Override its export_scores() "
            "with traceable tensor code (no sparse tensors, no loops over the batch), or "
            "make exportable() return the reason; serve it with --backend torch meanwhile."
        ) from exc
    return path


def export_run(loaded: LoadedRun, out: Path | None = None) -> Path:
    """Export a loaded run (or variant) to ``out``, by default ``<artifact dir>/model.onnx``."""
    return export_onnx(loaded.model, out or loaded.artifact_dir / ONNX_FILE,
                       loaded.train.matrix)


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # the exporter colours its text
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter prints its progress and warns about internals the user cannot act
    on; an export error still raises with its message."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(level)


def onnx_providers() -> list[str]:
    """CUDA first when this onnxruntime has it, always the CPU as the fallback."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class TorchScorer:
    """The model in-process: ``score`` + mask + top-k, exactly as the evaluator ranks."""

    backend = "torch"

    def __init__(self, model: Recommender, train_matrix: torch.Tensor) -> None:
        self.model = model.eval()
        self.device = next(iter(model.state_dict().values()), torch.empty(0)).device
        self.matrix = train_matrix.to(self.device)

    @torch.no_grad()
    def top_k(self, users: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        users = users.to(self.device)
        history = padded_histories(self.matrix, users)
        values, items = masked_top_k(self.model.score(users), history, k)
        return values.cpu().numpy(), items.cpu().numpy()


class OnnxScorer:
    """An exported model under onnxruntime; histories come from the training matrix."""

    backend = "onnx"

    def __init__(self, path: Path, train_matrix: torch.Tensor, *, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=providers or onnx_providers())
        self.matrix = train_matrix.cpu()

    def top_k(self, users: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        users = users.cpu()
        history = padded_histories(self.matrix, users)
        values, items = self.session.run(None, {
            "users": users.numpy(), "history": history.numpy(),
            "k": np.asarray(k, dtype=np.int64)})
        return values, items
