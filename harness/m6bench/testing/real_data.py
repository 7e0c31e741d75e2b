"""A pytest helper for tests on the real MovieLens copies under ``$M6BENCH_DATA_DIR``."""

from __future__ import annotations

import os
from pathlib import Path


def real_data_folder(*parts: str, purpose: str = "the real-data tests") -> Path:
    """For tests on real data: the folder ``parts`` under ``$M6BENCH_DATA_DIR`` (the data
    folder itself without ``parts``), or a pytest skip saying which is missing and how to
    provide it, e.g. ``real_data_folder("recbole-ml-100k", purpose="the quality targets")``.
    """
    import pytest

    root = os.environ.get("M6BENCH_DATA_DIR")
    if not root:
        pytest.skip(f"M6BENCH_DATA_DIR is not set; point it at the folder of MovieLens "
                    f"RecBole copies to run {purpose}")
    folder = Path(root, *parts)
    if not folder.is_dir():
        pytest.skip(f"M6BENCH_DATA_DIR={root} has no {Path(*parts)}/ folder, needed by "
                    f"{purpose}")
    return folder
