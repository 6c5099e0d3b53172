"""One patch: padding, relabelling."""

import numpy as np
from patch_folders import read_manifest, sample_pair

from napari_patchwork.export import (
    export_patches,
    relabel_sequential,
)
from napari_patchwork.folder import read_patch_file


def test_pad_modes_fill_and_record_the_valid_region(tmp_path):
    image = np.arange(1, 1 + 5 * 7, dtype=np.uint16).reshape(5, 7)
    mask = (image % 3).astype(np.uint8)
    export_patches(tmp_path / "c", image, mask, patch_size=4, edge="pad", pad_value=9)
    rows = read_manifest(tmp_path / "c")
    last = rows[-1]
    assert (last["y0"], last["y1"], last["valid_y1"], last["x0"], last["x1"], last["valid_x1"]) == (
        "4",
        "8",
        "5",
        "4",
        "8",
        "7",
    )
    patch = read_patch_file(tmp_path / "c" / last["image"])
    np.testing.assert_array_equal(patch[:1, :3], image[4:, 4:])
    assert (patch[1:] == 9).all() and (patch[:, 3:] == 9).all()
    assert (read_patch_file(tmp_path / "c" / last["mask"])[1:] == 0).all()
    export_patches(tmp_path / "r", image, mask, patch_size=4, edge="pad", pad_mode="reflect")
    last = read_manifest(tmp_path / "r")[-1]
    np.testing.assert_array_equal(
        read_patch_file(tmp_path / "r" / last["image"]),
        np.pad(image[4:, 4:], ((0, 3), (0, 1)), mode="reflect"),
    )
    np.testing.assert_array_equal(
        read_patch_file(tmp_path / "r" / last["mask"]),
        np.pad(mask[4:, 4:], ((0, 3), (0, 1)), mode="reflect"),
    )


def test_relabel_numbers_instances_per_patch(tmp_path):
    labels = np.array([[0, 50, 50, -3], [7, 7, 0, 0]], dtype=np.int16)
    relabelled = relabel_sequential(labels)
    assert relabelled.dtype == np.int16
    np.testing.assert_array_equal(relabelled, [[0, 3, 3, 1], [2, 2, 0, 0]])
    image, mask = sample_pair()
    export_patches(tmp_path / "out", image, mask, patch_size=20, channel_axis=-1, relabel=True)
    for row in read_manifest(tmp_path / "out"):
        patch = read_patch_file(tmp_path / "out" / row["mask"])
        assert patch.dtype == np.int32
        assert sorted(np.unique(patch)) == list(range(len(np.unique(patch))))  # 0..n, no gaps
