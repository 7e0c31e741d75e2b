"""Tensor operations the hot paths of several models share."""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@contextlib.contextmanager
def quiet_sparse_warnings() -> Iterator[None]:
    """Silence torch's notes that CSR tensors are beta and unchecked: ours are built valid by
    construction, so the invariant checks are off on purpose (only within this block, so
    no global warning filter changes on import)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly")
        yield


def row_gradient(row_grads: torch.Tensor, index: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The dense gradient ``(n_rows, d)`` of a table whose rows ``index`` ``(B,)`` were
    gathered and received ``row_grads`` ``(B, d)``: row ``r`` is the sum of ``row_grads[j]``
    over every ``j`` with ``index[j] == r`` (zero for rows not gathered).

    Deterministic on every device, with the faster kernel for each: on a CPU ``index_add_``
    (about half the time of the embedding backward for a mini-batch of a few thousand rows,
    measured on ML-1M with 2 cores; it adds in index order), on CUDA the embedding backward,
    which sorts the indices instead of adding with atomics (run-to-run noise)."""
    if row_grads.device.type == "cpu":
        table = row_grads.new_zeros((n_rows, row_grads.shape[1]))
        return table.index_add_(0, index, row_grads)
    return torch.ops.aten.embedding_dense_backward(row_grads, index, n_rows, -1, False)


class _BagSums(torch.autograd.Function):
    """``embedding_bag(mode="sum")`` whose table gradient is one sparse-dense product."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, indices: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(indices, offsets)
        ctx.n_rows = table.shape[0]
        return torch.nn.functional.embedding_bag(indices, table, offsets, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        indices, offsets = ctx.saved_tensors
        total = indices.numel()
        sizes = torch.diff(offsets, append=offsets.new_tensor([total]))
        bags = torch.repeat_interleave(torch.arange(offsets.numel(), device=offsets.device),
                                       sizes, output_size=total)
        # the transposed bag matrix (table rows x bags) as CSR, each row's bags ascending
        order = torch.argsort(indices, stable=True)
        crow = indices.new_zeros(ctx.n_rows + 1)
        crow[1:] = torch.bincount(indices, minlength=ctx.n_rows).cumsum(0)
        with quiet_sparse_warnings():
            transposed = torch.sparse_csr_tensor(
                crow, bags[order], grad.new_ones(total), size=(ctx.n_rows, offsets.numel()))
        return transposed @ grad, None, None


def bag_sums(table: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``embedding_bag(indices, table, offsets, mode="sum")``: ``(B, d)``, bag ``b`` the sum
    of ``table``'s rows ``indices[offsets[b] : offsets[b + 1]]``.

    The same forward; on a CPU the table's gradient is one product of the transposed bag
    matrix (CSR, a row's bags ascending) with the bags' gradients, which adds each table
    row's occurrences in index order.  The embedding-bag backward sorts the occurrences
    and calls one BLAS ``axpy`` per occurrence through the dispatcher; with bags of hundreds
    of rows (users' whole histories on ML-1M, ~300k occurrences a batch) that was three
    quarters of a pct-cf step, and the product takes half its time (2 threads).  At that
    size its sort is stable, so the two gradients are equal to the bit (pct-cf's runs are
    unchanged); on small batches it adds in another order (float rounding apart)."""
    if table.device.type == "cpu" and table.requires_grad and torch.is_grad_enabled():
        return _BagSums.apply(table, indices, offsets)
    return torch.nn.functional.embedding_bag(indices, table, offsets, mode="sum")


def csr_row_entries(crow: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the non-zeros of some rows of a CSR matrix are, without a Python loop.

    :param crow: int64 ``(n + 1,)`` row pointers of a sparse CSR ``(n, m)`` matrix (its
        ``crow_indices()``, or a model's copy of them).
    :param rows: int64 ``(B,)`` row indices (any order, repeats allowed).
    :return: ``entries`` ``(nnz_of_those_rows,)``, the index of every non-zero of those rows
        into the matrix's column and value arrays, row after row in the order of ``rows``;
        and ``counts`` ``(B,)``, each row's number of non-zeros.  Entry ``k`` belongs to
        ``rows[repeat_interleave(arange(B), counts)[k]]``.
    """
    starts = crow[rows]
    counts = crow[rows + 1] - starts
    total = int(counts.sum())
    # a global arange shifted, row by row, from the row's place in the output to its slots
    entries = torch.arange(total, device=rows.device) + torch.repeat_interleave(
        starts - (counts.cumsum(0) - counts), counts, output_size=total)
    return entries, counts


@dataclass(frozen=True)
class ExpandedCSR:
    """A sparse CSR matrix's non-zeros as ``rows``, ``cols`` and flat keys
    ``row * n_columns + column`` (ascending, as CSR stores them), with the row bounds on the
    host."""

    crow: list[int]
    rows: torch.Tensor
    cols: torch.Tensor
    keys: torch.Tensor


# A benchmark's training matrix, masks and truths are the same tensors for a whole run;
# expanding ML-1M's ~900k non-zeros again at each evaluation cost a tenth of it.
_EXPANDED: dict[int, tuple[weakref.ref[torch.Tensor], ExpandedCSR]] = {}


def expand_csr(matrix: torch.Tensor) -> ExpandedCSR:
    """The expansion of ``matrix``, computed once per tensor object (and dropped with it)."""
    cached = _EXPANDED.get(id(matrix))
    if cached is not None and cached[0]() is matrix:
        return cached[1]
    crow = matrix.crow_indices()
    cols = matrix.col_indices()
    rows = torch.repeat_interleave(torch.arange(matrix.shape[0], device=crow.device),
                                   crow[1:] - crow[:-1])
    # slice bounds on the host: no device sync per batch
    expanded = ExpandedCSR(crow.cpu().tolist(), rows, cols, rows * matrix.shape[1] + cols)
    _EXPANDED[id(matrix)] = (weakref.ref(matrix), expanded)
    weakref.finalize(matrix, _EXPANDED.pop, id(matrix), None)
    return expanded
