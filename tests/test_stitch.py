"""Stitching patches and predictions back (eager and lazy)."""

import os
from pathlib import Path

import numpy as np
import pytest
from patch_folders import make_predictions, sample_pair

from napari_patchwork.export import (
    export_patches,
)
from napari_patchwork.folder import PatchFolderError, read_patch_file, read_patch_folder
from napari_patchwork.grid import make_grid
from napari_patchwork.stitch import stitch


def test_stitch_predictions_nearest_centre_wins_on_overlap(tmp_path):
    image = np.zeros((10, 13), np.uint8)
    out = tmp_path / "out"
    export_patches(out, image, patch_size=6, stride=4, edge="shift")
    make_predictions(out, lambda row, shape: np.full(shape, int(row["index"]), np.float32))
    stitched = stitch(out, "predictions")
    assert stitched.dtype == np.float32 and stitched.shape == (10, 13)
    grid = make_grid(image.shape, 6, 4, "shift")
    for y in range(10):
        for x in range(
            13
        ):  # brute force: the covering patch with the nearest centre, first on ties
            best = min(
                (max(abs(p - (a + b - 1) / 2) / ((b - a) / 2) for p, a, b in zip((y, x), *box)), i)
                for i, box in enumerate(grid.boxes)
                if all(a <= p < b for p, a, b in zip((y, x), *box))
            )
            assert stitched[y, x] == best[1], (y, x)
    last = stitch(out, "predictions", overlap="last")
    assert last[9, 12] == grid.n_patches - 1
    mean = stitch(out, "predictions", overlap="mean")
    assert mean.dtype == np.float64 and mean[0, 0] == 0 and 0 < mean[5, 5] < grid.n_patches
    for overlap, eager in (("center", stitched), ("last", last), ("mean", mean)):
        lazy = stitch(out, "predictions", overlap=overlap, chunk_bytes=1, lazy=True)
        assert lazy.numblocks == (3, 4)  # blocks of one 4 px stride
        np.testing.assert_array_equal(lazy.compute(), eager)


def test_stitch_predictions_with_channels_padding_and_missing_files(tmp_path):
    image, mask = sample_pair((30, 30))
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=16, edge="pad", channel_axis=-1)
    patches = read_patch_folder(out)

    def from_mask(row, shape):
        return read_patch_file(out / row["mask"]).astype(np.float32)

    make_predictions(out, from_mask, channels_first=True, ext=".tif")
    stitched = stitch(out, "predictions")
    assert stitched.shape == (2, 30, 30)
    np.testing.assert_array_equal(stitched[0], mask)
    np.testing.assert_array_equal(stitched[1], -mask)
    os.remove(out / "predictions" / (Path(patches.rows[0]["image"]).stem + ".tif"))
    with pytest.raises(PatchFolderError, match="no prediction"):
        stitch(out, "predictions")
    partial = stitch(out, out / "predictions", allow_missing=True, fill_value=-1)
    assert (partial[:, :16, :16] == -1).all()
    np.testing.assert_array_equal(partial[0, 16:], mask[16:])
    lazy = stitch(
        out, out / "predictions", allow_missing=True, fill_value=-1, chunk_bytes=1, lazy=True
    )
    assert lazy.chunks[0] == (2,)  # the channel axis whole
    np.testing.assert_array_equal(lazy.compute(), partial)


def test_lazy_stitch_reads_only_the_patches_of_a_block(tmp_path, monkeypatch):
    from napari_patchwork import stitch as stitch_module

    image, mask = sample_pair((64, 96))
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=16, channel_axis=-1, fmt="npy")
    reads = []
    real_read = stitch_module.read_patch_file
    monkeypatch.setattr(
        stitch_module, "read_patch_file", lambda path, *where: reads.append(path) or real_read(path, *where)
    )
    lazy = stitch(out, "images", chunk_bytes=32 * 32 * 3, lazy=True)  # blocks of 2 x 2 patches
    assert lazy.chunks == ((32, 32), (32, 32, 32), (3,)) and not reads
    np.testing.assert_array_equal(lazy[40:60, 70:90].compute(), image[40:60, 70:90])
    assert len(reads) == 4
    reads.clear()
    np.testing.assert_array_equal(lazy.compute(), image)
    assert len(reads) == 24  # every patch once


def test_mean_stitch_is_float64_even_when_no_patch_was_kept(tmp_path):
    from napari_patchwork.stitch import stitch

    image = np.zeros((16, 16), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    export_patches(tmp_path / "o", image, mask, patch_size=8, min_foreground=0.5)  # keeps nothing
    assert stitch(tmp_path / "o", overlap="mean").dtype == np.float64
    assert stitch(tmp_path / "o").dtype == np.uint8
