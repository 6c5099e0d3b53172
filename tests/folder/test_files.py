"""Atomic writes: a file with its final name is always complete; nothing is left on failure."""

import os

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.folder import atomic_write_buffers
from napari_patchwork.folder import files as files_module

pieces = st.lists(
    st.one_of(
        st.binary(max_size=300),
        hnp.arrays(np.uint8, st.integers(0, 5000)),
        hnp.arrays(np.uint16, hnp.array_shapes(max_dims=3, max_side=20)),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(buffers=pieces)
def test_atomic_write_buffers_writes_the_concatenation(tmp_path_factory, buffers):
    folder = tmp_path_factory.mktemp("w")
    path = folder / "patch.tif"
    path.write_bytes(b"old")
    atomic_write_buffers(path, buffers)
    assert path.read_bytes() == b"".join(bytes(memoryview(b).cast("B")) for b in buffers)
    assert os.listdir(folder) == ["patch.tif"]


def test_a_short_write_is_finished(tmp_path, monkeypatch):
    """writev may write less than asked (e.g. a signal, a full pipe); the rest follows."""
    real = os.writev

    def short(fd, buffers):
        return real(fd, [bytes(memoryview(buffers[0]).cast("B"))[:3]])

    monkeypatch.setattr(files_module, "_WRITEV", short)
    data = np.arange(1000, dtype=np.uint16)
    atomic_write_buffers(tmp_path / "a.npy", [b"header", data, b"trailer"])
    assert (tmp_path / "a.npy").read_bytes() == b"header" + data.tobytes() + b"trailer"


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path, monkeypatch):
    def failing(fd, buffers):
        os.write(fd, b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module, "_WRITEV", failing)
    with pytest.raises(OSError, match="space"):
        atomic_write_buffers(tmp_path / "a.tif", [b"header", b"data"])
    assert os.listdir(tmp_path) == []
    (tmp_path / "b.tif").write_bytes(b"complete")
    with pytest.raises(OSError, match="space"):
        atomic_write_buffers(tmp_path / "b.tif", [b"header", b"data"])
    assert (tmp_path / "b.tif").read_bytes() == b"complete"
    assert os.listdir(tmp_path) == ["b.tif"]
