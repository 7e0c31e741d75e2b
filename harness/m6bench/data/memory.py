"""Refuse work that will not fit in memory, before it allocates.

A model that needs an ``(n_items, n_items)`` matrix, or a generator asked for a huge shape,
estimates its peak bytes and calls :func:`require_memory`; the user then gets an error that
names the estimate and the option that avoids it, instead of the kernel's OOM killer minutes
later (or a machine swapping itself to a standstill).

What "available" means: ``M6BENCH_MEMORY_LIMIT_BYTES`` when set (tests use it to be
deterministic; ``unlimited`` switches the check off), else on a CUDA device the driver's free
memory plus what PyTorch's caching allocator holds unused, else the host's ``MemAvailable``
(Linux ``/proc/meminfo``), else the physical memory ``sysconf`` reports.  When none is known
the check passes: it refuses only what it can show will not fit.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from m6bench.errors import ConfigError, MemoryEstimateError

MEMORY_LIMIT_ENV = "M6BENCH_MEMORY_LIMIT_BYTES"
_MEMINFO = Path("/proc/meminfo")


def require_memory(nbytes: float, *, what: str, avoid: str, device: Any = None) -> None:
    """Raise :class:`MemoryEstimateError` when ``nbytes`` exceed the memory available.

    :param nbytes: the estimated peak of the work about to start, in bytes.
    :param what: what needs it, e.g. ``"EASE's item-item matrices (100,000 items)"``.
    :param avoid: one sentence on how to avoid it (an option, a smaller model).
    :param device: where the memory is allocated; None or a CPU device means host memory.
    """
    available, source = available_memory(device)
    if available is None or nbytes <= available:
        return
    raise MemoryEstimateError(
        f"{what} needs about {_gigabytes(nbytes)} of memory, but only {_gigabytes(available)} "
        f"is available ({source}). {avoid} (If the estimate is wrong for this machine, set "
        f"{MEMORY_LIMIT_ENV} to the bytes to allow, or to 'unlimited'.)"
    )


def available_memory(device: Any = None) -> tuple[int | None, str]:
    """Bytes available for new allocations on ``device`` and where the number comes from;
    ``(None, reason)`` when unknown or unlimited."""
    override = os.environ.get(MEMORY_LIMIT_ENV)
    if override is not None:
        return _parse_override(override), f"{MEMORY_LIMIT_ENV}={override}"
    if device is not None and str(device).startswith("cuda"):
        return _cuda_free(device), f"free memory on {device}"
    from_meminfo = _meminfo_available()
    if from_meminfo is not None:
        return from_meminfo, f"MemAvailable in {_MEMINFO}"
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "physical memory"
    except (AttributeError, ValueError, OSError):
        return None, "unknown on this platform"


def _parse_override(text: str) -> int | None:
    if text.strip().lower() == "unlimited":
        return None
    try:
        value = int(float(text))
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(
            f"Environment variable {MEMORY_LIMIT_ENV}={text!r} is not a number of bytes; set "
            f"it to e.g. {MEMORY_LIMIT_ENV}=8e9 (8 GB), or to 'unlimited' to skip the check."
        )
    return value


def _meminfo_available() -> int | None:
    try:
        lines = _MEMINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # the file counts in kB
    return None


def _cuda_free(device: Any) -> int:
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    # Blocks the caching allocator holds but no tensor uses are free to PyTorch too.
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def _gigabytes(nbytes: float) -> str:
    return f"{nbytes / 1e9:,.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:,.1f} MB"
