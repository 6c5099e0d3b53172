"""Exporting placed patches (objects, points, random, balanced): the same files, manifest
rows and folder as grid patches, read back and stitched."""

import json

import numpy as np
import pytest

from napari_patchwork.export import ExportError, export_patches, plan_export
from napari_patchwork.folder import read_patch_folder, verify_patch_folder
from napari_patchwork.placement import Placement
from napari_patchwork.stitch import stitch


def sample(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    labels = np.zeros((90, 120), np.uint16)
    labels[10:20, 10:26] = 3
    labels[40:70, 60:100] = 7
    labels[80:90, 0:6] = 9  # at the border
    labels[30:34, 100:104] = 12
    return image, labels


PLACEMENTS = [
    Placement(kind="objects"),
    Placement(kind="points", points=[[5, 5], [45.2, 70.7], [89, 119], [45, 70]]),
    Placement(kind="random", n=12, seed=2, max_overlap=0.5),
    Placement(kind="balanced", n=3, seed=1),
]


@pytest.mark.parametrize("placement", PLACEMENTS, ids=lambda p: p.kind)
@pytest.mark.parametrize("edge", ["pad", "shift", "partial", "drop"])
def test_placed_export_reads_back_and_stitches_to_the_source(tmp_path, placement, edge):
    image, labels = sample()
    out = tmp_path / "out"
    result = export_patches(
        out, image, labels, patch_size=16, edge=edge, channel_axis=-1, placement=placement,
        split={"train": 0.5, "val": 0.5}, seed=3,
    )  # fmt: skip
    patches = read_patch_folder(out)
    assert patches.placed and patches.info.placement == placement.to_json()
    assert patches.info.format_version == 4 and result.n_patches == len(patches.rows)
    assert verify_patch_folder(out) == []
    covered = patches.coverage()
    stitched, mask = patches.image(), patches.mask()
    np.testing.assert_array_equal(stitched[covered], image[covered])
    np.testing.assert_array_equal(mask[covered], labels[covered])
    assert not stitched[~covered].any()
    for merge in ("center", "mean", "last"):  # overlapping patches: the merge rules
        merged = stitch(out, "masks", merge=merge)
        np.testing.assert_array_equal(merged[covered], labels[covered])
        lazy = stitch(out, "masks", merge=merge, lazy=True).compute()
        np.testing.assert_array_equal(lazy, merged)
    size = patches.out_stops - patches.out_starts
    assert np.all(size <= 16) and (edge == "partial" or np.all(size == 16))
    width = len(str(patches.info.n_grid_patches - 1))
    for row in patches.rows:  # file names like grid patches: stem, index, start
        index = row["index"].zfill(width)
        assert row["image"] == f"images/patch_{index}_y{row['y0']}_x{row['x0']}.tif"


def test_objects_manifest_records_instance_id_and_area(tmp_path):
    image, labels = sample()
    out = tmp_path / "out"
    export_patches(out, image, labels, patch_size=8, edge="shift", channel_axis=-1,
                   placement=Placement(kind="objects"))  # fmt: skip
    patches = read_patch_folder(out)
    assert patches.column("instance_id") == ["3", "7", "9", "12"]
    assert patches.column("area") == ["160", "1200", "60", "16"]
    info = json.loads((out / "dataset.json").read_text())
    assert info["placement"]["kind"] == "objects" and info["n_grid_patches"] == 4
    centre = patches.out_starts[1] + 4  # instance 7: rows 40..69, cols 60..99
    np.testing.assert_array_equal(centre, [55, 80])  # centroid (54.5, 79.5) -> pixel (55, 80)


def test_filters_resolution_and_selection_apply_to_placed_patches(tmp_path):
    image, labels = sample()
    placement = Placement(kind="objects")
    kept = export_patches(tmp_path / "fg", image, labels, patch_size=16, edge="shift",
                          channel_axis=-1, placement=placement, min_foreground=0.5)  # fmt: skip
    assert kept.n_candidates == 4 and kept.n_patches < 4
    assert {r["instance_id"] for r in kept.rows} <= {3, 7, 9, 12}
    chosen = export_patches(tmp_path / "sel", image, labels, patch_size=16, edge="shift",
                            channel_axis=-1, placement=placement, indices=[1, 3])  # fmt: skip
    assert [r["instance_id"] for r in chosen.rows] == [7, 12]
    low = export_patches(tmp_path / "low", image, labels, patch_size=8, edge="shift",
                         channel_axis=-1, placement=placement, downsample=2)  # fmt: skip
    patches = read_patch_folder(tmp_path / "low")
    assert patches.output_image_shape == (45, 60, 3) and low.n_patches == 4
    np.testing.assert_array_equal(patches.starts, patches.out_starts * 2)
    # instance 7's centroid (54.5, 79.5) is output (27, 39.5) -> centre pixel (27, 40)
    np.testing.assert_array_equal(patches.out_starts[1] + 4, [27, 40])


def test_placed_export_resumes_and_refuses_another_placement(tmp_path):
    image, labels = sample()
    out = tmp_path / "out"
    options = dict(patch_size=16, channel_axis=-1, edge="pad")
    first = export_patches(out, image, labels, placement=Placement(kind="random", n=5, seed=1),
                           **options)  # fmt: skip
    again = export_patches(out, image, labels, placement=Placement(kind="random", n=5, seed=1),
                           **options)  # fmt: skip
    assert again.n_resumed == first.n_patches == 5
    with pytest.raises(ExportError, match="placement"):
        export_patches(out, image, labels, placement=Placement(kind="random", n=5, seed=2),
                       **options)  # fmt: skip


def test_placement_errors_are_export_errors(tmp_path):
    image, _ = sample()
    with pytest.raises(ExportError, match="reads a label mask"):
        plan_export(image, options=dict_options(placement=Placement(kind="objects")))
    with pytest.raises(ExportError, match="placement must be"):
        dict_options(placement="objects")
    grid = dict_options(placement=Placement(kind="grid"))
    assert grid.placement is None  # the regular grid


def dict_options(**changes):
    from napari_patchwork.export import ExportOptions

    return ExportOptions(patch_size=16, channel_axis=-1, **changes)


@pytest.mark.parametrize("fmt", ["zarr", "npy", "png"])
def test_placed_patches_in_every_format(tmp_path, fmt):
    image, labels = sample()
    if fmt == "png":
        image = image[..., 0]
    out = tmp_path / "out"
    export_patches(out, image, labels, patch_size=16, edge="pad", fmt=fmt,
                   channel_axis=-1 if image.ndim == 3 else None,
                   placement=Placement(kind="objects"))  # fmt: skip
    patches = read_patch_folder(out)
    covered = patches.coverage()
    assert verify_patch_folder(out) == [] and patches.column("instance_id") == ["3", "7", "9", "12"]
    np.testing.assert_array_equal(patches.image()[covered], image[covered])
    np.testing.assert_array_equal(stitch(out, "masks", merge="mean")[covered], labels[covered])


def test_placed_patches_in_a_leak_free_blocked_split(tmp_path):
    """split_by='blocks' on placed patches: block columns and placement values side by side,
    and no two overlapping or touching patches of different splits."""
    image, labels = sample()
    out = tmp_path / "out"
    result = export_patches(out, image, labels, patch_size=12, edge="shift", channel_axis=-1,
                            placement=Placement(kind="random", n=40, seed=5),
                            split={"train": 0.5, "val": 0.5}, split_by="blocks",
                            block_size=30)  # fmt: skip
    patches = read_patch_folder(out)
    assert result.n_patches + result.n_buffer == 40 == patches.info.n_grid_patches
    assert {"block_y", "block_x"} <= set(patches.rows[0])
    splits = np.array(patches.column("split"))
    lo, hi = patches.out_starts, patches.out_stops
    for i in range(len(splits)):
        near = np.all((lo[i] <= hi) & (lo <= hi[i]), axis=1)  # overlapping or touching
        assert set(splits[near]) == {splits[i]}
    objects = export_patches(tmp_path / "objects", image, labels, patch_size=12, edge="shift",
                             channel_axis=-1, placement=Placement(kind="objects"),
                             split={"train": 0.5, "val": 0.5}, split_by="blocks",
                             block_size=30)  # fmt: skip
    row = objects.rows[0]
    assert {"block_y", "block_x", "instance_id", "area"} <= set(row)
