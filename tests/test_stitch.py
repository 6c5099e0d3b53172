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
    last = stitch(out, "predictions", merge="last")
    assert last[9, 12] == grid.n_patches - 1
    mean = stitch(out, "predictions", merge="mean")
    assert mean.dtype == np.float64 and mean[0, 0] == 0 and 0 < mean[5, 5] < grid.n_patches
    for mode, eager in (("center", stitched), ("last", last), ("mean", mean)):
        lazy = stitch(out, "predictions", merge=mode, chunk_bytes=1, lazy=True)
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
        stitch_module,
        "read_patch_file",
        lambda path, *where: reads.append(path) or real_read(path, *where),
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
    assert stitch(tmp_path / "o", merge="mean").dtype == np.float64
    assert stitch(tmp_path / "o").dtype == np.uint8


def global_crops(folder, global_array, channels_first=False):
    """A predictions folder whose files are crops of ``global_array`` (channels last) under
    each patch box, zero-padded past the image (``pad`` mode)."""

    def crop(row, shape):
        y0, x0 = int(row["y0"]), int(row["x0"])
        out = np.zeros(shape + global_array.shape[2:], global_array.dtype)
        part = global_array[y0 : y0 + shape[0], x0 : x0 + shape[1]]
        out[: part.shape[0], : part.shape[1]] = part
        return np.moveaxis(out, -1, 0) if channels_first and out.ndim == 3 else out

    make_predictions(folder, crop)


@pytest.mark.parametrize("mode", ["center", "last", "mean", "gaussian", "hann", "max", "vote"])
def test_every_merge_mode_rebuilds_predictions_that_agree(tmp_path, mode):
    image, mask = sample_pair((37, 45))
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=16, stride=11, edge="pad", channel_axis=-1)
    rng = np.random.default_rng(3)
    truth = mask if mode == "vote" else rng.random((37, 45, 3)).astype(np.float32)
    global_crops(out, truth, channels_first=True)
    stitched = stitch(out, "predictions", merge=mode)
    expected = truth if truth.ndim == 2 else np.moveaxis(truth, -1, 0)
    assert stitched.shape == expected.shape
    if mode in ("mean", "gaussian", "hann"):
        assert stitched.dtype == np.float64
        np.testing.assert_allclose(stitched, expected, rtol=1e-6)
    else:
        assert stitched.dtype == truth.dtype
        np.testing.assert_array_equal(stitched, expected)
    lazy = stitch(out, "predictions", merge=mode, lazy=True, chunk_bytes=1)
    assert lazy.numblocks[-2:] == (4, 5)  # blocks of one 11 px stride
    np.testing.assert_array_equal(lazy.compute(), stitched)


@pytest.mark.parametrize("mode", ["gaussian", "vote", "center"])
def test_argmax_turns_class_scores_into_labels(tmp_path, mode):
    labels = np.zeros((40, 40), np.uint8)
    labels[5:30, 8:20], labels[20:38, 25:39] = 1, 2
    out = tmp_path / "out"
    export_patches(out, np.zeros((40, 40), np.uint8), patch_size=16, stride=12, edge="shift")
    scores = np.eye(3, dtype=np.float32)[labels] * 0.8 + 0.1  # (y, x, class)
    global_crops(out, scores, channels_first=True)
    merged = stitch(out, "predictions", merge=mode, argmax=True)
    assert merged.dtype == np.uint8 and merged.shape == (40, 40)
    np.testing.assert_array_equal(merged, labels)
    np.testing.assert_array_equal(
        stitch(out, "predictions", merge=mode, argmax=True, lazy=True).compute(), merged
    )


def test_merge_options_that_do_not_fit_the_predictions_are_refused(tmp_path):
    out = tmp_path / "out"
    export_patches(out, np.zeros((20, 20), np.uint8), patch_size=8)
    make_predictions(out, lambda row, shape: np.zeros(shape, np.float32))
    with pytest.raises(PatchFolderError, match="integer label predictions.*argmax=True"):
        stitch(out, "predictions", merge="vote")
    with pytest.raises(PatchFolderError, match="choose one of center, last, mean"):
        stitch(out, "predictions", merge="average")
    with pytest.raises(PatchFolderError, match="argmax needs predictions with a channel axis"):
        stitch(out, "predictions", argmax=True)


def test_lazy_stitch_of_zarr_arrays_reads_only_the_patches_of_a_block(tmp_path, monkeypatch):
    from napari_patchwork.folder.zarr_arrays import ArrayPatch

    image, mask = sample_pair((64, 96))
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=16, stride=8, edge="pad", channel_axis=-1,
                   fmt="zarr")  # fmt: skip
    reads = []
    real_read = ArrayPatch.read
    monkeypatch.setattr(ArrayPatch, "read", lambda self: reads.append(self.index) or real_read(self))
    lazy = stitch(out, "masks", chunk_bytes=32 * 32 * 4, lazy=True)
    assert lazy.dtype == np.int32 and not reads
    np.testing.assert_array_equal(lazy[40:60, 70:90].compute(), mask[40:60, 70:90])
    assert 0 < len(reads) < 30
    np.testing.assert_array_equal(lazy.compute(), mask)
    np.testing.assert_array_equal(stitch(out, "images", merge="mean", dtype=np.uint8), image)


def test_predictions_of_a_zarr_export_are_named_like_patch_files(tmp_path):
    image, mask = sample_pair((32, 48))
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=16, channel_axis=-1, fmt="zarr")
    patches = read_patch_folder(out)
    (out / "predictions").mkdir()
    for i, row in enumerate(patches.rows):
        name = f"patch_{int(row['index'])}_y{row['y0']}_x{row['x0']}.npy"
        np.save(out / "predictions" / name, np.full((16, 16), i, dtype=np.float32))
    merged = stitch(out, "predictions")
    assert merged.dtype == np.float32 and merged[20, 40] == 5  # row 5: second row, third column
