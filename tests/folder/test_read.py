"""Reading a patch folder."""

import json

import numpy as np
import pytest
from patch_folders import sample_pair

from napari_patchwork.export import (
    export_patches,
)
from napari_patchwork.folder import PatchFolderError, read_patch_folder, verify_patch_folder


def test_read_patch_folder_refuses_foreign_and_damaged_folders(tmp_path):
    with pytest.raises(PatchFolderError, match="not a patch folder"):
        read_patch_folder(tmp_path)
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    lines = (out / "manifest.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",0,20,0,20,", ",0,20,0,21,")
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PatchFolderError, match="does not match the grid"):
        read_patch_folder(out)


def exported(tmp_path, fmt="tiff", **options):
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(
        out, image, mask.astype(np.uint16), patch_size=20, channel_axis=-1, fmt=fmt, **options
    )
    return out


def edit_manifest(out, row, column, value):
    lines = (out / "manifest.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "path", ["../../x.tif", "/etc/passwd", "images/../../x.tif", "masks/a.tif"]
)
def test_manifest_paths_must_be_the_patch_own_files(tmp_path, path):
    out = exported(tmp_path)
    edit_manifest(out, 1, "image", path)
    with pytest.raises(PatchFolderError, match="row 1 names"):
        read_patch_folder(out)


def test_a_patch_file_linking_outside_the_folder_is_refused(tmp_path):
    out = exported(tmp_path)
    secret = tmp_path / "secret.tif"
    first = sorted((out / "images").iterdir())[0]
    secret.write_bytes(first.read_bytes())
    first.unlink()
    first.symlink_to(secret)
    with pytest.raises(PatchFolderError, match="points outside"):
        read_patch_folder(out)


def test_patch_files_must_hold_the_folder_dtype_and_shape(tmp_path):
    import tifffile

    out = exported(tmp_path)
    first = sorted((out / "masks").iterdir())[0]
    tifffile.imwrite(first, np.full((20, 20), 70000, np.uint32))  # would wrap to 4464 in uint16
    with pytest.raises(PatchFolderError, match=rf"{first.name} \(manifest row 1\) holds uint32"):
        read_patch_folder(out).mask()
    assert any("holds uint32" in p for p in verify_patch_folder(out))
    tifffile.imwrite(first, np.zeros((20, 19), np.uint16))
    with pytest.raises(PatchFolderError, match=r"has shape \(20, 19\), expected \(20, 20\)"):
        read_patch_folder(out).mask()


@pytest.mark.parametrize("content", [b"", b"II*\x00\x08\x00\x00\x00"])
def test_empty_or_truncated_files_are_named(tmp_path, content):
    out = exported(tmp_path)
    first = sorted((out / "images").iterdir())[0]
    first.write_bytes(content)
    with pytest.raises(PatchFolderError, match=rf"{first.name} \(manifest row 1\) (cannot be|has)"):
        read_patch_folder(out).image()
    assert [p for p in verify_patch_folder(out) if first.name in p]


def test_claims_are_checked_before_they_are_used(tmp_path):
    out = exported(tmp_path)
    info = json.loads((out / "dataset.json").read_text())
    for key, value, message in [
        ("image", {"shape": [10**6, 10**6, 3], "dtype": "|u1"}, "mask shape"),
        ("image", {"shape": [60, 80, 10**9], "dtype": "|u1"}, "channels"),
        ("image", {"shape": [60, 80, 3], "dtype": "|O"}, "not a dtype patch folders hold"),
        ("channel_axis", 9, "channel_axis has the wrong value"),
        ("downsample", [0, 1], "downsample must be 2 whole numbers"),
        ("stride", [1, 1], "n_grid_patches must be 2501"),
    ]:
        broken = {**info, key: value}
        (out / "dataset.json").write_text(json.dumps(broken))
        with pytest.raises(PatchFolderError, match=message):
            read_patch_folder(out)


def test_rows_must_agree_with_dataset_json(tmp_path):
    out = exported(tmp_path)
    manifest = (out / "manifest.csv").read_text()
    (out / "manifest.csv").write_text(manifest.splitlines()[0] + "\n")  # header only
    with pytest.raises(PatchFolderError, match="lists 0 patches, dataset.json says 12"):
        read_patch_folder(out)
    (out / "manifest.csv").write_text(manifest)
    edit_manifest(out, 1, "valid_y1", "-5")
    with pytest.raises(PatchFolderError, match="row 1 does not match the grid"):
        read_patch_folder(out)
    (out / "manifest.csv").write_text(manifest)
    edit_manifest(out, 2, "y0", "1e23")
    with pytest.raises(PatchFolderError, match="damaged"):
        read_patch_folder(out)


def test_eager_stitch_that_would_not_fit_is_refused_with_the_lazy_way(tmp_path, monkeypatch):
    from napari_patchwork import stitch as stitch_module

    out = exported(tmp_path)
    monkeypatch.setattr(stitch_module, "memory_limit", lambda: 1000)
    with pytest.raises(PatchFolderError, match="lazy=True"):
        read_patch_folder(out).image()
    image, _ = sample_pair()
    np.testing.assert_array_equal(read_patch_folder(out).image(lazy=True).compute(), image)


# -- the zarr container -------------------------------------------------------------------


def zarr_folder(tmp_path):
    image, mask = sample_pair()
    export_patches(tmp_path, image, mask, patch_size=16, channel_axis=-1, fmt="zarr")
    return tmp_path


@pytest.mark.parametrize(
    "array, key, value, message",
    [
        ("images.zarr", "shape", [13, 16, 16, 3], "shape is"),
        ("masks.zarr", "data_type", "uint16", "data_type is"),
        (
            "images.zarr",
            "chunk_grid",
            {"name": "regular", "configuration": {"chunk_shape": [1, 16, 16, 3]}},
            "chunk_grid is",
        ),  # noqa: E501
        ("masks.zarr", "zarr_format", 2, "zarr_format is"),
    ],
)
def test_zarr_arrays_that_disagree_with_dataset_json_are_refused(
    tmp_path, array, key, value, message
):  # noqa: E501
    out = zarr_folder(tmp_path)
    path = out / array / "zarr.json"
    metadata = json.loads(path.read_text())
    metadata[key] = value
    path.write_text(json.dumps(metadata))
    with pytest.raises(PatchFolderError, match=f"{array}: {message}"):
        read_patch_folder(out)


def test_a_missing_array_is_refused(tmp_path):
    import shutil

    out = zarr_folder(tmp_path)
    shutil.rmtree(out / "masks.zarr")
    with pytest.raises(PatchFolderError, match="masks.zarr is missing"):
        read_patch_folder(out)


def test_an_array_linked_from_outside_is_refused(tmp_path_factory):
    import os
    import shutil

    out = zarr_folder(tmp_path_factory.mktemp("out"))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.move(out / "images.zarr", elsewhere / "images.zarr")
    os.symlink(elsewhere / "images.zarr", out / "images.zarr")
    with pytest.raises(PatchFolderError, match="outside"):
        read_patch_folder(out)


def test_a_shard_linked_from_outside_is_refused(tmp_path_factory):
    import os
    import shutil

    out = zarr_folder(tmp_path_factory.mktemp("out"))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shard = out / "images.zarr" / "c" / "0" / "0" / "0" / "0"
    shutil.move(shard, elsewhere / "0")
    os.symlink(elsewhere / "0", shard)
    patches = read_patch_folder(out)  # the metadata is fine
    with pytest.raises(PatchFolderError, match="points outside"):
        patches.image()
    assert any("points outside" in p for p in verify_patch_folder(out))


def test_zarr_manifest_rows_must_follow_the_arrays(tmp_path):
    out = zarr_folder(tmp_path)
    lines = (out / "manifest.csv").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]  # two rows swapped
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PatchFolderError, match="rows follow the arrays"):
        read_patch_folder(out)


def test_verify_lists_damaged_and_extra_shards(tmp_path):
    out = zarr_folder(tmp_path)
    shard = out / "masks.zarr" / "c" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:-1])
    extra = out / "images.zarr" / "c" / "9" / "0" / "0" / "0"
    extra.parent.mkdir(parents=True)
    extra.write_bytes(b"")
    problems = verify_patch_folder(out)
    assert "not in the manifest: images.zarr/c/9/0/0/0" in problems
    assert sum("masks.zarr/c/0/0/0" in p and "bad patch" in p for p in problems) == 15


def test_png_folder_claiming_float_patches_is_damaged(tmp_path):
    # found by test_fuzz: a PNG export whose dataset.json says the image is float64
    image = np.arange(48 * 48 * 3, dtype=np.uint8).reshape(48, 48, 3)
    export_patches(tmp_path / "f", image, patch_size=16, channel_axis=-1, fmt="png")
    info = json.loads((tmp_path / "f" / "dataset.json").read_text())
    info["image"]["dtype"] = "<f8"
    (tmp_path / "f" / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(
        PatchFolderError, match="holds uint8 values, the folder's patches are float64"
    ):
        read_patch_folder(tmp_path / "f").image()


# -- placed patches: each box checked on its own ------------------------------------------


def placed_folder(tmp_path, edge="pad", name="placed"):
    from napari_patchwork.placement import Placement

    image, mask = sample_pair()
    out = tmp_path / name
    points = [[2, 3], [30, 30], [31, 31], [image.shape[0] - 2, image.shape[1] - 1]]
    export_patches(out, image, mask.astype(np.uint16), patch_size=12, channel_axis=-1,
                   edge=edge, placement=Placement(kind="points", points=points))  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("out_y1", "13", "not a \\[12, 12\\] px patch"),  # a box of another size
        ("y1", "13", "does not match the grid"),  # source box not the output box
        ("out_x0", "-1", "not a \\[12, 12\\] px patch"),  # before the image
        ("index", "4", "patch numbers that its grid does not have"),
        ("index", "1", "patch numbers that its grid does not have"),  # a duplicate
        ("image", "images/patch_0_y9_x9.tif", "row 1 names"),
        ("y0", "1.5", "damaged"),
    ],
)
def test_a_tampered_placed_manifest_is_refused(tmp_path, column, value, message):
    out = placed_folder(tmp_path)
    read_patch_folder(out)  # as exported: fine
    edit_manifest(out, 1, column, value)
    with pytest.raises(PatchFolderError, match=message):
        read_patch_folder(out)


@pytest.mark.parametrize(
    ("edge", "row", "changes", "message"),
    [
        # a whole patch moved past the end is only allowed when padded
        ("shift", 4, {"out_x0": "72", "out_x1": "84"}, "edge='shift'"),
        ("pad", 4, {"out_y0": "60", "out_y1": "72"}, "edge='pad'"),  # starts outside
        # partial: clipped only where the box meets the border
        ("partial", 2, {"out_y1": "35"}, "edge='partial'"),
    ],
)
def test_placed_boxes_must_fit_the_edge_mode(tmp_path, edge, row, changes, message):
    out = placed_folder(tmp_path, edge)
    for column, value in changes.items():
        edit_manifest(out, row, column, value)
    with pytest.raises(PatchFolderError, match=message):
        read_patch_folder(out)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("placement", {"kind": "spiral"}, "placement has the wrong value"),
        ("placement", "points", "placement has the wrong value"),
        ("n_grid_patches", 10**9, "n_grid_patches has the wrong value"),
        ("n_grid_patches", 3, "n_patches has the wrong value"),  # more kept than placed
        ("stride", [6, 6], "stride must be the patch size"),
        ("n_patches", 5, "n_patches has the wrong value"),  # more than placed
        ("n_patches", 3, "lists 4 patches"),
    ],
)
def test_a_tampered_placed_dataset_json_is_refused(tmp_path, key, value, message):
    out = placed_folder(tmp_path)
    info = json.loads((out / "dataset.json").read_text())
    info[key] = value
    (out / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(PatchFolderError, match=message):
        read_patch_folder(out)


def test_mutated_placed_manifest_cells_read_exactly_or_are_refused(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    original = placed_folder(tmp_path, name="original")
    patches = read_patch_folder(original)
    image, mask = patches.image(), patches.mask()
    header = (original / "manifest.csv").read_text().splitlines()[0].split(",")
    values = st.sampled_from(["0", "-1", "1", "11", "12", "13", "24", "29", "40", "", "x", "1e3",
                              "99999999999999", "images/../../x.tif"])  # fmt: skip

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(row=st.integers(1, 4), column=st.sampled_from(header), value=values)
    def check(row, column, value):
        import shutil

        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(original, copy)
        edit_manifest(copy, row, column, value)
        try:
            read = read_patch_folder(copy)
            got_image, got_mask = read.image(), read.mask()
        except PatchFolderError:
            return
        np.testing.assert_array_equal(got_image, image)
        np.testing.assert_array_equal(got_mask, mask)

    check()
