"""Batched helpers over the sparse CSR training matrix (no Python loops over users or items)."""

from __future__ import annotations

import torch


def float_csr(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` as a float32 sparse CSR tensor (sparse matmuls need a floating dtype)."""
    return torch.sparse_csr_tensor(
        matrix.crow_indices(), matrix.col_indices(), matrix.values().to(torch.float32),
        size=matrix.shape,
    )


def transpose_csr(matrix: torch.Tensor) -> torch.Tensor:
    """The transpose of a sparse CSR ``(n, m)`` matrix, again in CSR ``(m, n)``.

    Item-side algorithms (ItemKNN, the item step of iALS) need rows per item, which the
    user-by-item training matrix does not give directly.
    """
    return matrix.to_sparse_coo().t().coalesce().to_sparse_csr()


def row_entries(matrix: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                      torch.Tensor]:
    """The non-zeros of ``matrix``'s rows ``rows``: (position in ``rows``, column, value).

    :param matrix: sparse CSR ``(n, m)``.
    :param rows: int64 ``(B,)`` row indices (any order, repeats allowed).
    :return: three ``(nnz_of_those_rows,)`` tensors.
    """
    crow = matrix.crow_indices()
    starts = crow[rows]
    counts = crow[rows + 1] - starts
    batch_position = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device),
                                             counts)
    # Offset of each entry inside its own row: a global arange minus each row's first slot.
    within_row = torch.arange(int(counts.sum()), device=rows.device) - torch.repeat_interleave(
        counts.cumsum(0) - counts, counts
    )
    flat = torch.repeat_interleave(starts, counts) + within_row
    return batch_position, matrix.col_indices()[flat], matrix.values()[flat]


def dense_rows(matrix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` of a sparse CSR ``(n, m)`` matrix as a dense float32 ``(B, m)`` tensor."""
    batch_position, columns, values = row_entries(matrix, rows)
    out = torch.zeros(rows.numel(), matrix.shape[1], dtype=torch.float32, device=rows.device)
    out[batch_position, columns] = values.to(torch.float32)
    return out


def sparse_rows(matrix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` of a sparse CSR ``(n, m)`` matrix as a float32 sparse CSR ``(B, m)``."""
    crow = matrix.crow_indices()
    counts = crow[rows + 1] - crow[rows]
    _, columns, values = row_entries(matrix, rows)
    new_crow = torch.zeros(rows.numel() + 1, dtype=crow.dtype, device=rows.device)
    torch.cumsum(counts, 0, out=new_crow[1:])
    return torch.sparse_csr_tensor(new_crow, columns, values.to(torch.float32),
                                   size=(rows.numel(), matrix.shape[1]))


def row_block(matrix: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Rows ``start:end`` of a sparse CSR matrix as a CSR ``(end - start, m)``, without a copy
    of the index structure beyond the slice itself."""
    crow = matrix.crow_indices()
    first, last = int(crow[start]), int(crow[end])
    return torch.sparse_csr_tensor(
        crow[start : end + 1] - first,
        matrix.col_indices()[first:last],
        matrix.values()[first:last],
        size=(end - start, matrix.shape[1]),
    )


def row_norms(matrix: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of every row of a sparse CSR ``(n, m)`` matrix, float32 ``(n,)``."""
    values = matrix.values().to(torch.float32)
    rows = torch.repeat_interleave(torch.arange(matrix.shape[0], device=values.device),
                                   matrix.crow_indices().diff())
    squares = torch.zeros(matrix.shape[0], dtype=torch.float32, device=values.device)
    return squares.index_add_(0, rows, values * values).sqrt()
