"""m6bench.atomic_file: a file is written whole or not at all."""

from __future__ import annotations

import pytest

import m6bench


def test_the_bytes_appear_only_when_the_block_ends(tmp_path):
    target = tmp_path / "deep" / "vectors.npy"
    with m6bench.atomic_file(target) as stream:
        stream.write(b"first")
        assert not target.exists()  # nothing under the final name while writing
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["vectors.npy"]


def test_a_failure_inside_the_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "archive.zip"
    target.write_bytes(b"trusted")
    with pytest.raises(ValueError, match="checksum"), \
            m6bench.atomic_file(target, prefix=".archive.", suffix=".part") as stream:
        stream.write(b"half of a corrupt download")
        raise ValueError("checksum does not match")
    assert target.read_bytes() == b"trusted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.zip"]
