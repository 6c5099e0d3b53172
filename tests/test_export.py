"""Patch export core and stitching back (no napari, no Qt)."""

import csv
import re
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_patchwork import export as export_module
from napari_patchwork.export import formats as formats_module
from napari_patchwork.export import patch as patch_module
from napari_patchwork.export import (
    ExportError,
    assign_splits,
    export_patches,
    iter_export,
    relabel_sequential,
)
from napari_patchwork.folder import JOURNAL_FILE
from napari_patchwork.grid import EDGE_MODES, make_grid
from napari_patchwork.stitch import (
    PatchFolderError,
    read_patch_file,
    read_patch_folder,
    read_patches,
    stitch,
    verify_patch_folder,
)

DTYPES = [
    np.uint8,
    np.uint16,
    np.int16,
    np.int32,
    np.uint32,
    np.int64,
    np.float32,
    np.float64,
    np.bool_,
]
MASK_DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.int8, np.bool_]


def random_array(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def files_in(folder: Path, sub: str) -> set[str]:
    return (
        {f"{sub}/{name}" for name in os.listdir(folder / sub)} if (folder / sub).exists() else set()
    )


def read_manifest(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def check_consistent(folder: Path, foreign: set[str] = frozenset()) -> list[dict]:
    """Manifest rows == patch files on disk (besides ``foreign`` files), dataset.json complete."""
    rows = read_manifest(folder)
    listed = {row[k] for row in rows for k in ("image", "mask") if row[k]}
    assert listed == (files_in(folder, "images") | files_in(folder, "masks")) - foreign
    assert verify_patch_folder(folder) == []
    info = json.loads((folder / "dataset.json").read_text())
    assert info["complete"] is True and info["n_patches"] == len(rows)
    return rows


@st.composite
def export_cases(draw):
    n_spatial = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 14 if n_spatial < 3 else 7)) for _ in range(n_spatial)]
    edge = draw(st.sampled_from(EDGE_MODES))
    patch, stride = [], []
    for size in shape:
        low = max(1, size // 3)
        high = size if edge in ("drop", "shift") else size + 3
        p = draw(st.integers(low, max(low, high)))
        if edge in ("drop", "shift"):
            p = min(p, size)
        patch.append(p)
        stride.append(draw(st.integers(max(1, p // 2), p + 2)))
    channel = draw(st.sampled_from([None, "last", "first"]))
    n_channels = draw(st.integers(1, 4))
    full_shape = list(shape)
    channel_axis = None
    if channel == "last":
        full_shape.append(n_channels)
        channel_axis = -1
    elif channel == "first":
        full_shape.insert(0, n_channels)
        channel_axis = 0
    return {
        "shape": tuple(full_shape),
        "spatial": tuple(shape),
        "channel_axis": channel_axis,
        "patch_size": patch,
        "stride": draw(st.sampled_from([None, stride])),
        "edge": edge,
        "dtype": draw(st.sampled_from(DTYPES)),
        "mask_dtype": draw(st.sampled_from([None, *MASK_DTYPES])),
        "fmt": draw(st.sampled_from(["tiff", "npy"])),
        "compression": draw(st.sampled_from([None, "zlib"])),
        "pad_mode": draw(st.sampled_from(["constant", "reflect", "edge"])),
        "subset": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=export_cases())
def test_export_then_stitch_is_exact(case):
    """Random shapes, dtypes, patch sizes, strides, edge modes: stitched == source, dtype too."""
    rng = np.random.default_rng(case["seed"])
    image = random_array(rng, case["shape"], case["dtype"])
    mask = (
        None
        if case["mask_dtype"] is None
        else random_array(rng, case["spatial"], case["mask_dtype"])
    )
    grid = make_grid(
        case["shape"],
        case["patch_size"],
        case["stride"],
        case["edge"],
        channel_axis=case["channel_axis"],
    )
    indices = None
    if case["subset"] and grid.n_patches > 1:
        indices = rng.choice(grid.n_patches, size=grid.n_patches // 2, replace=False)
    compression = case["compression"] if case["fmt"] == "tiff" else None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "patches"
        result = export_patches(
            out,
            image,
            mask,
            patch_size=case["patch_size"],
            stride=case["stride"],
            edge=case["edge"],
            channel_axis=case["channel_axis"],
            fmt=case["fmt"],
            compression=compression,
            pad_mode=case["pad_mode"],
            pad_value=1,
            indices=indices,
        )
        rows = check_consistent(out)
        expected_indices = np.arange(grid.n_patches) if indices is None else np.sort(indices)
        assert (
            [int(r["index"]) for r in rows]
            == expected_indices.tolist()
            == [r["index"] for r in result.rows]
        )
        stitched_image, stitched_mask = read_patches(out)
        covered = read_patch_folder(out).coverage()
        image_covered = (
            covered
            if case["channel_axis"] is None
            else np.expand_dims(covered, case["channel_axis"])
        )
        assert stitched_image.dtype == image.dtype and stitched_image.shape == image.shape
        np.testing.assert_array_equal(
            stitched_image, np.where(image_covered, image, np.zeros_like(image))
        )
        if mask is not None:
            assert stitched_mask.dtype == mask.dtype
            np.testing.assert_array_equal(
                stitched_mask, np.where(covered, mask, np.zeros_like(mask))
            )
        else:
            assert stitched_mask is None
        # lazily, in blocks of one stride: patches that overlap blocks are cut correctly
        for source, eager in (("images", stitched_image), ("masks", stitched_mask)):
            if eager is not None:
                lazy = stitch(out, source, overlap="center", chunk_bytes=1, lazy=True)
                assert lazy.dtype == eager.dtype and lazy.shape == eager.shape
                np.testing.assert_array_equal(lazy.compute(), eager)
        no_gaps = case["stride"] is None or all(
            s <= p for s, p in zip(case["stride"], case["patch_size"])
        )
        if indices is None and case["edge"] != "drop" and no_gaps:
            assert covered.all()
        # every patch file has the full patch shape (padding included) and the source dtype
        first = rows[0]
        patch = read_patch_file(out / first["image"])
        assert patch.dtype == image.dtype
        names = json.loads((out / "dataset.json").read_text())["spatial_axes"]
        box = [int(first[f"{n}1"]) - int(first[f"{n}0"]) for n in names]
        channel = None if case["channel_axis"] is None else case["channel_axis"] % image.ndim
        if case["fmt"] == "tiff" and image.ndim == 1:
            box = [1, *box]  # TIFF stores a 1D patch as one row
        assert [s for axis, s in enumerate(patch.shape) if axis != channel] == box


def test_every_export_option_is_a_field_of_export_options(tmp_path):
    """One options object: export_patches documents each field, and refuses unknown names."""
    import dataclasses

    from napari_patchwork.export import ExportOptions

    names = {f.name for f in dataclasses.fields(ExportOptions)}
    documented = set(re.findall(r"^    (\w+)", export_patches.__doc__, re.MULTILINE))
    documented |= {n for line in re.findall(r"^    ([\w, ]+) :", export_patches.__doc__, re.M)
                   for n in line.replace(" ", "").split(",")}
    assert names - documented == set()
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(ExportError, match=r"unknown export options \['patchsize'\]"):
        export_patches(tmp_path / "out", image, patch_size=4, patchsize=4)
    options = ExportOptions(patch_size=4, fmt="tif")
    assert options.fmt == "tiff" and options.replace(stride=2).stride == 2
    assert export_patches(tmp_path / "out", image, options=options, stride=2).n_patches == 9


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fmt=st.sampled_from(["tiff", "npy"]),
    what=st.sampled_from(["image", "mask"]),
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from([d for d in [*DTYPES, np.float16, np.int8] if np.dtype(d).kind in "uif"]),
    rgb=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_fixed_layout_writes_exactly_the_encoders_file(
    tmp_path, fmt, what, shape, dtype, rgb, seed
):
    """The fast path (header + patch bytes + trailer) gives byte for byte tifffile's/numpy's file."""
    rgb = rgb and what == "image" and len(shape) == 3 and shape[-1] in (3, 4)
    rgb = rgb and np.dtype(dtype) in (np.uint8, np.uint16)
    data = np.frombuffer(np.random.default_rng(seed).bytes(int(np.prod(shape)) * 8), dtype)
    data = data[: int(np.prod(shape))].reshape(shape)
    if seed % 2:  # a strided view, as a patch cut from a bigger array is
        data = np.repeat(data, 2, axis=-1)[..., ::2]
    assert formats_module._fixed_layout(fmt, what, shape, np.dtype(dtype).str, rgb) is not None
    fast = tmp_path / f"fast_{seed}"
    formats_module.write_patch(data, None, fast, None, fmt=fmt, rgb=rgb)
    encode = formats_module._encoder(
        fmt, what, len(shape), compression=None, rgb=rgb, ome_metadata=None
    )
    with open(tmp_path / f"slow_{seed}", "wb") as fh:
        encode(fh, data)
    assert fast.read_bytes() == (tmp_path / f"slow_{seed}").read_bytes()


def test_fixed_layout_is_not_used_where_the_file_depends_on_the_data():
    fixed = formats_module._fixed_layout
    assert fixed("png", "image", (8, 8), "|u1", False) is None
    assert fixed("ome-tiff", "image", (8, 8), "|u1", False) is None  # a new UUID per file
    assert fixed("tiff", "mask", (8, 8), "|b1", False) is None
    assert fixed("tiff", "mask", (4096, 4096), "<u8", False) is None  # big: no gain, no probes


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 90), st.integers(1, 90)),
    patch=st.integers(1, 30),
    stride=st.integers(1, 30),
    edge=st.sampled_from(EDGE_MODES),
    data=st.data(),
)
def test_source_boxes_find_their_patches_at_full_resolution(shape, patch, stride, edge, data):
    try:
        grid = make_grid(shape, patch, stride, edge)
    except ValueError:
        return  # e.g. shift needs one patch to fit
    chosen = data.draw(st.lists(st.integers(0, grid.n_patches - 1), min_size=1, max_size=5))
    export = export_module.export_grid(shape, (), patch_size=patch, stride=stride, edge=edge)
    found = export_module.indices_of_source_boxes(grid.boxes[chosen], export, (), shape)
    assert np.array_equal(grid.boxes[found], grid.boxes[chosen])


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(8, 200), st.integers(8, 200)),
    patch=st.integers(1, 12),
    stride=st.integers(1, 12),
    factor=st.integers(2, 4),
    edge=st.sampled_from(["drop", "pad"]),
)
def test_a_grid_of_source_pixels_maps_onto_the_downsampled_export(
    shape, patch, stride, factor, edge
):
    """A grid of patch * factor source px is the export's grid of patch output px."""
    channels = (*shape, 3)
    try:
        grid = make_grid(channels, patch * factor, stride * factor, edge, channel_axis=-1)
    except ValueError:
        return
    export = export_module.export_grid(
        channels, (factor, factor), patch_size=patch, stride=stride, edge=edge, channel_axis=-1
    )
    found = export_module.indices_of_source_boxes(grid.boxes, export, (factor, factor), shape)
    assert found == sorted(set(found)) and len(found) == grid.n_patches
    starts = export.boxes[found, 0] * factor
    assert np.array_equal(starts, grid.boxes[:, 0])


def test_boxes_that_are_not_patches_of_the_export_say_which_size_would_be():
    boxes = make_grid((400, 600), 128).boxes[:2]
    for factor, message in ((2, r"\(64, 64\) px"), (3, "divides")):
        export = export_module.export_grid((400, 600), (factor,) * 2, patch_size=50)
        with pytest.raises(ExportError, match=message):
            export_module.indices_of_source_boxes(boxes, export, (factor,) * 2, (400, 600))


def sample_pair(shape=(60, 80)):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)
    mask = np.zeros(shape, dtype=np.int32)
    mask[5:25, 10:30] = 7
    mask[30:50, 40:75] = 70000  # needs more than 16 bits
    return image, mask


def test_file_names_manifest_and_dataset(tmp_path):
    image, mask = sample_pair()
    result = export_patches(
        tmp_path / "out",
        image,
        mask,
        patch_size=20,
        edge="drop",
        channel_axis=-1,
        image_name="he",
        mask_name="nuclei",
        scale=(0.5, 0.5),
        translate=(10, 20),
    )
    out = tmp_path / "out"
    rows = check_consistent(out)
    assert result.n_patches == len(rows) == 12
    assert (
        rows[0]["image"] == "images/patch_00_y0_x0.tif"
        and rows[0]["mask"] == "masks/patch_00_y0_x0.tif"
    )
    assert rows[5]["image"] == "images/patch_05_y20_x20.tif"
    assert (rows[5]["y0"], rows[5]["y1"], rows[5]["x0"], rows[5]["x1"]) == ("20", "40", "20", "40")
    assert float(rows[0]["foreground_fraction"]) == pytest.approx(
        np.count_nonzero(mask[:20, :20]) / 400
    )
    info = json.loads((out / "dataset.json").read_text())
    assert info["image"] == {"shape": [60, 80, 3], "dtype": "|u1", "name": "he"}
    assert info["mask"]["dtype"] == np.dtype(np.int32).str and info["mask"]["name"] == "nuclei"
    assert info["axes"] == "yxc" and info["patch_size"] == [20, 20] and info["stride"] == [20, 20]
    assert info["edge"] == "drop" and info["scale"] == [0.5, 0.5] and info["translate"] == [10, 20]
    assert info["plugin_version"] and info["rgb"] is True
    assert "12 patches in" in result.message


def test_3d_names_include_z(tmp_path):
    volume = np.arange(6 * 8 * 8, dtype=np.uint16).reshape(6, 8, 8)
    export_patches(tmp_path / "v", volume, patch_size=(3, 4, 4), fmt="npy")
    rows = read_manifest(tmp_path / "v")
    assert rows[-1]["image"] == "images/patch_7_z3_y4_x4.npy"
    assert {"z0", "z1", "valid_z1"} <= set(rows[0])
    np.testing.assert_array_equal(read_patches(tmp_path / "v")[0], volume)


def test_png_round_trip_converts_masks_and_back(tmp_path):
    image, mask = sample_pair()
    mask[mask > 60000] = 65535
    export_patches(
        tmp_path / "rgb", image, mask, patch_size=16, edge="pad", channel_axis=-1, fmt="png"
    )
    with open(tmp_path / "rgb" / "images" / "patch_00_y0_x0.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    stitched_image, stitched_mask = read_patches(tmp_path / "rgb")
    np.testing.assert_array_equal(stitched_image, image)
    assert stitched_mask.dtype == np.int32
    np.testing.assert_array_equal(stitched_mask, mask)
    gray = np.random.default_rng(0).integers(0, 65535, size=(30, 30), dtype=np.uint16)
    export_patches(tmp_path / "gray", gray, gray > 30000, patch_size=10, fmt="png")
    stitched_gray, stitched_bool = read_patches(tmp_path / "gray")
    np.testing.assert_array_equal(stitched_gray, gray)
    assert stitched_bool.dtype == np.bool_
    np.testing.assert_array_equal(stitched_bool, gray > 30000)


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (np.zeros((20, 20), np.float32), {}, "float32"),
        (np.zeros((20, 20), np.int16), {}, "int16"),
        (np.zeros((20, 20, 3), np.uint16), {"channel_axis": -1}, "greyscale"),
        (np.zeros((4, 20, 20), np.uint8), {"patch_size": (2, 10, 10)}, "2D"),
        (np.zeros((3, 20, 20), np.uint8), {"channel_axis": 0}, "channel axis last"),
        (np.zeros((20, 20, 5), np.uint8), {"channel_axis": -1}, "1 to 4 channels"),
    ],
)
def test_png_refuses_what_it_cannot_hold(tmp_path, image, kwargs, message):
    with pytest.raises(ExportError, match=message):
        export_patches(tmp_path / "out", image, fmt="png", **{"patch_size": 10, **kwargs})
    assert not (tmp_path / "out").exists()  # checked before any file is written


def test_png_mask_with_labels_over_16_bit_is_refused(tmp_path):
    image, mask = sample_pair()
    with pytest.raises(ExportError, match="0..65535"):
        export_patches(tmp_path / "out", image, mask, patch_size=20, channel_axis=-1, fmt="png")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mask": np.zeros((60, 81), np.uint8)}, "does not match"),
        ({"mask": np.zeros((60, 80), np.float32)}, "integer labels"),
        ({"split": (0.5, 0.2)}, "add up to 1"),
        ({"split": (0.5, 0.2, 0.2, 0.1)}, "at most 3"),
        ({"stem": "a/b"}, "stem"),
        ({"edge": "pad", "pad_value": 300}, "does not fit"),
        ({"edge": "pad", "pad_mode": "wrap"}, "pad_mode"),
        ({"min_foreground": 0.2}, "needs a mask"),
        ({"indices": [0, 999]}, "do not exist"),
        ({"indices": []}, "no patch selected"),
        ({"fmt": "npy", "compression": "zlib"}, "TIFF only"),
        ({"fmt": "jpeg"}, "not known"),
        ({"scale": (1, 2, 3, 4)}, "one per spatial axis"),
    ],
)
def test_bad_options_say_what_to_change(tmp_path, kwargs, message):
    image = np.zeros((60, 80, 3), np.uint8)
    options = {"patch_size": 20, "channel_axis": -1, **kwargs}
    mask = options.pop("mask", None)
    with pytest.raises(ValueError, match=message):
        export_patches(tmp_path / "out", image, mask, **options)
    assert not (tmp_path / "out").exists()


def test_filters_foreground_blank_and_indices(tmp_path):
    image, mask = sample_pair()
    image[40:60, 0:20] = (200, 120, 90)  # a uniformly coloured, blank patch (index 8)
    result = export_patches(
        tmp_path / "fg", image, mask, patch_size=20, channel_axis=-1, min_foreground=0.1
    )
    fractions = [
        np.count_nonzero(mask[y : y + 20, x : x + 20]) / 400
        for y in (0, 20, 40)
        for x in (0, 20, 40, 60)
    ]
    expected = [i for i, f in enumerate(fractions) if f >= 0.1]
    assert [r["index"] for r in result.rows] == expected
    assert result.n_rejected_foreground == 12 - len(expected)
    check_consistent(tmp_path / "fg")

    result = export_patches(tmp_path / "blank", image, patch_size=20, channel_axis=-1, min_std=1.0)
    assert [r["index"] for r in result.rows] == [i for i in range(12) if i != 8]
    assert result.n_rejected_blank == 1 and float(result.rows[0]["image_std"]) > 1.0

    result = export_patches(
        tmp_path / "some", image, mask, patch_size=20, channel_axis=-1, indices=[7, 3, 3]
    )
    assert [r["index"] for r in result.rows] == [3, 7]
    assert json.loads((tmp_path / "some" / "dataset.json").read_text())["indices"] == [3, 7]


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


def test_split_is_deterministic_and_exact(tmp_path):
    labels = assign_splits(10, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3)
    assert labels == assign_splits(10, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3)
    assert (labels.count("train"), labels.count("val"), labels.count("test")) == (7, 2, 1)
    assert labels != assign_splits(10, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=4)
    assert assign_splits(3, None) == ["", "", ""]
    image, mask = sample_pair()
    result = export_patches(
        tmp_path / "out", image, mask, patch_size=20, channel_axis=-1, split=(0.75, 0.25)
    )
    assert result.split_counts == {"train": 9, "val": 3}
    assert [r["split"] for r in read_manifest(tmp_path / "out")] == assign_splits(
        12, {"train": 0.75, "val": 0.25}
    )


def test_rerun_with_other_split_rewrites_only_the_manifest(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1, split=(0.5, 0.5))
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/*")}
    result = export_patches(
        out, image, mask, patch_size=20, channel_axis=-1, split=(0.5, 0.5), seed=1
    )
    assert result.n_written == 0 and result.n_resumed == 12
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*")} == mtimes
    assert [r["split"] for r in read_manifest(out)] == assign_splits(
        12, {"train": 0.5, "val": 0.5}, 1
    )
    check_consistent(out)


def test_refuses_a_foreign_folder_unless_overwrite(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.txt").write_text("precious")
    with pytest.raises(ExportError, match="not empty"):
        export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    assert os.listdir(out) == ["chapter1.txt"]
    export_patches(out, image, mask, patch_size=20, channel_axis=-1, overwrite=True)
    assert (out / "chapter1.txt").read_text() == "precious"
    check_consistent(out)
    with pytest.raises(ExportError, match="a file"):
        export_patches(out / "chapter1.txt", image, patch_size=20, channel_axis=-1)


def test_other_settings_refused_then_replaced_with_overwrite(tmp_path):
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    (out / "images" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="patch_size"):
        export_patches(out, image, mask, patch_size=30, channel_axis=-1, fmt="npy")
    assert len(read_manifest(out)) == 12  # the old export is intact
    result = export_patches(
        out, image, mask, patch_size=30, channel_axis=-1, fmt="npy", overwrite=True
    )
    assert result.n_patches == 4
    check_consistent(out, foreign={"images/notes.txt"})
    assert not list(out.glob("*/*.tif"))
    assert (out / "images" / "notes.txt").read_text() == "mine"


def test_overwrite_redoes_an_export_with_the_same_settings(tmp_path):
    """After the source changed, overwrite=True must rewrite every patch, not resume."""
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    edited_image, edited_mask = image // 2, np.where(mask > 0, 5, 0).astype(mask.dtype)
    result = export_patches(
        out, edited_image, edited_mask, patch_size=20, channel_axis=-1, overwrite=True
    )
    assert result.n_written == result.n_patches == 12 and result.n_resumed == 0
    stitched_image, stitched_mask = read_patches(out)
    np.testing.assert_array_equal(stitched_image, edited_image)
    np.testing.assert_array_equal(stitched_mask, edited_mask)
    check_consistent(out)


def test_a_journal_without_its_dataset_json_is_not_resumed(tmp_path):
    """A journal left by an export whose dataset.json is gone describes no export of this folder."""
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1, min_foreground=0.5)
    (out / "dataset.json").unlink()  # e.g. deleted by hand: the folder is no export of ours now
    steps = iter_export(out, image, mask, patch_size=20, channel_axis=-1, overwrite=True)
    next(steps), next(steps)
    steps.close()  # interrupted after one patch
    result = export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    assert result.n_patches == 12 and result.n_rejected_foreground == 0  # nothing from the old run
    check_consistent(out)


class ShapeDtypeOnly:
    """The least array-like the export accepts: ``shape``, ``dtype`` and indexing (no ``ndim``)."""

    def __init__(self, data):
        self._data, self.shape, self.dtype = data, data.shape, data.dtype

    def __getitem__(self, key):
        return self._data[key]


@pytest.mark.parametrize("as_dask_tasks", [False, True])
def test_array_likes_without_ndim_are_exported(tmp_path, as_dask_tasks):
    if as_dask_tasks:
        pytest.importorskip("dask.array")
    image, mask = sample_pair((40, 40))
    export_patches(
        tmp_path / "out",
        ShapeDtypeOnly(image),
        ShapeDtypeOnly(mask),
        patch_size=16,
        edge="pad",
        channel_axis=-1,
        as_dask_tasks=as_dask_tasks,
    )
    stitched_image, stitched_mask = read_patches(tmp_path / "out")
    np.testing.assert_array_equal(stitched_image, image)
    np.testing.assert_array_equal(stitched_mask, mask)


class DiskFull(OSError):
    pass


@pytest.mark.parametrize("write_threads", [1, 2])
def test_interrupted_export_resumes_to_a_consistent_folder(tmp_path, monkeypatch, write_threads):
    """Patch 5's write fails mid-file; the re-run writes only the rest, consistently.

    With writer threads, patches after 5 may be on disk already: they are not in the
    journal, so they are written again.
    """
    image, mask = sample_pair()
    out = tmp_path / "out"
    real_write = patch_module.write_patch

    def failing_write(image_patch, mask_patch, image_path, mask_path, **kwargs):
        if "_05_" in Path(image_path).name:
            real_write(image_patch, None, image_path, None, **kwargs)  # image written, mask not
            Path(mask_path).with_name(".half-written.part").write_bytes(b"\0" * 10)
            raise DiskFull("no space left on device")
        real_write(image_patch, mask_patch, image_path, mask_path, **kwargs)

    monkeypatch.setattr(patch_module, "write_patch", failing_write)
    with pytest.raises(DiskFull):
        export_patches(
            out,
            image,
            mask,
            patch_size=20,
            channel_axis=-1,
            split=(0.5, 0.5),
            write_threads=write_threads,
        )
    assert json.loads((out / "dataset.json").read_text())["complete"] is False
    assert not (out / "manifest.csv").exists()
    with pytest.raises(PatchFolderError, match="incomplete"):
        read_patch_folder(out)

    monkeypatch.setattr(patch_module, "write_patch", real_write)
    result = export_patches(out, image, mask, patch_size=20, channel_axis=-1, split=(0.5, 0.5))
    assert result.n_resumed == 5 and result.n_written == 7 and result.n_patches == 12
    rows = check_consistent(out)
    assert not list(out.rglob("*.part"))
    reference = export_patches(
        tmp_path / "ref", image, mask, patch_size=20, channel_axis=-1, split=(0.5, 0.5)
    )
    assert [r["split"] for r in rows] == [r["split"] for r in reference.rows]
    for row in rows:
        for key in ("image", "mask"):
            assert (out / row[key]).read_bytes() == (tmp_path / "ref" / row[key]).read_bytes()


@pytest.mark.parametrize("write_threads", [1, 2])
def test_cancelled_export_resumes_even_with_a_torn_journal(tmp_path, write_threads):
    image, mask = sample_pair()
    out = tmp_path / "out"
    steps = iter_export(
        out,
        image,
        mask,
        patch_size=20,
        channel_axis=-1,
        min_foreground=0.05,
        write_threads=write_threads,
    )
    for step in steps:
        if step.done == 6:
            break
    steps.close()  # what Cancel does
    journal = (out / JOURNAL_FILE).read_text().splitlines()
    assert len(journal) == 6
    # the process died after renaming patch 5's files but before its journal line was complete
    (out / JOURNAL_FILE).write_text("\n".join(journal[:5]) + "\n" + journal[5][:7])
    result = export_patches(out, image, mask, patch_size=20, channel_axis=-1, min_foreground=0.05)
    assert result.n_written + result.n_resumed == result.n_patches
    assert result.n_resumed == sum(json.loads(line)["kept"] for line in journal[:5])
    check_consistent(out)
    np.testing.assert_array_equal(
        read_patches(out)[1] > 0, (mask > 0) & read_patch_folder(out).coverage()
    )


@pytest.mark.parametrize(
    "options",
    [
        dict(fmt="tiff", min_foreground=0.05, split=(0.6, 0.4)),
        dict(fmt="npy", edge="pad", pad_mode="reflect", relabel=True, min_std=20.0),
        dict(fmt="png", stride=15, edge="shift"),
        dict(fmt="tiff", compression="zlib", edge="partial"),
    ],
)
def test_writer_threads_write_the_same_folder(tmp_path, monkeypatch, options):
    image, mask = sample_pair()
    mask = (mask > 0).astype(np.uint16) * 3  # PNG masks hold 16 bits
    image[:20, :20] = 9  # a blank patch for min_std
    writers = set()
    real_write = patch_module.write_patch

    def recording_write(*args, **kwargs):
        writers.add(threading.current_thread().name)
        real_write(*args, **kwargs)

    monkeypatch.setattr(patch_module, "write_patch", recording_write)
    folders = {}
    for threads in (1, 3):
        writers.clear()
        folders[threads] = tmp_path / f"threads_{threads}"
        export_patches(
            folders[threads],
            image,
            mask,
            patch_size=20,
            channel_axis=-1,
            write_threads=threads,
            **options,
        )
        assert (threading.main_thread().name in writers) == (threads == 1)
    files = {
        threads: {
            f.relative_to(folder): f.read_bytes()
            for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != "dataset.json"  # which holds the time of the export
        }
        for threads, folder in folders.items()
    }
    assert len(files[1]) > 3 and files[1] == files[3]


@pytest.mark.parametrize("write_threads", [0, 1.5, True, "2"])
def test_write_threads_must_be_a_whole_number(tmp_path, write_threads):
    image, mask = sample_pair()
    with pytest.raises(ExportError, match="write_threads"):
        export_patches(tmp_path, image, mask, patch_size=20, write_threads=write_threads)


class RecordingArray:
    """An array-like that records every region dask reads from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list[int] = []

    def __getitem__(self, key):
        block = self.data[key]
        self.reads.append(block.size)
        return block


def test_dask_input_is_read_a_batch_at_a_time_never_whole(tmp_path):
    da = pytest.importorskip("dask.array")
    import dask

    image_np, mask_np = sample_pair((64, 96))
    recorder_image, recorder_mask = RecordingArray(image_np), RecordingArray(mask_np)
    image = da.from_array(recorder_image, chunks=(16, 16, 3))
    mask = da.from_array(recorder_mask, chunks=(16, 16))
    computes = []

    class CountComputes(dask.callbacks.Callback):
        def _start(self, dsk):
            computes.append((sum(recorder_image.reads), sum(recorder_mask.reads)))

    with CountComputes():
        result = export_patches(
            tmp_path / "out",
            image,
            mask,
            patch_size=16,
            channel_axis=-1,
            read_batch_bytes=4 * 16 * 16 * (3 + 4),
        )
    assert result.n_patches == 24
    # every source pixel is read exactly once, in many small computes (4 patches per batch)
    assert sum(recorder_image.reads) == image_np.size and sum(recorder_mask.reads) == mask_np.size
    assert max(recorder_image.reads) <= 16 * 16 * 3
    reads_per_compute = np.diff(np.array(computes + [(image_np.size, mask_np.size)]).sum(axis=1))
    assert len(computes) >= 2 * 24 // 4 and reads_per_compute.max() <= 4 * 16 * 16 * 4
    stitched_image, stitched_mask = read_patches(tmp_path / "out")
    np.testing.assert_array_equal(stitched_image, image_np)
    np.testing.assert_array_equal(stitched_mask, mask_np)


def test_dask_skips_reading_image_patches_the_mask_filters_out(tmp_path):
    da = pytest.importorskip("dask.array")
    image_np, mask_np = sample_pair((40, 40))
    mask_np[:] = 0
    mask_np[:20, :20] = 1
    recorder = RecordingArray(image_np)
    image = da.from_array(recorder, chunks=(20, 20, 3))
    result = export_patches(
        tmp_path / "out",
        image,
        da.from_array(mask_np, chunks=20),
        patch_size=20,
        channel_axis=-1,
        min_foreground=0.5,
    )
    assert result.n_patches == 1 and sum(recorder.reads) == 20 * 20 * 3


# --------------------------------------------------------------------------- predictions


def make_predictions(folder: Path, value_of, channels_first=False, ext=".npy"):
    """A predictions folder: for each image patch, an array from ``value_of(row, shape)``."""
    patches = read_patch_folder(folder)
    (folder / "predictions").mkdir()
    for row in patches.rows:
        shape = tuple(int(row[f"{n}1"]) - int(row[f"{n}0"]) for n in patches.info.spatial_axes)
        data = value_of(row, shape)
        if channels_first:
            data = np.stack([data, -data])
        name = Path(row["image"]).stem + ext
        if ext == ".npy":
            np.save(folder / "predictions" / name, data)
        else:
            import tifffile

            tifffile.imwrite(folder / "predictions" / name, data)


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
        stitch_module, "read_patch_file", lambda path: reads.append(path) or real_read(path)
    )
    lazy = stitch(out, "images", chunk_bytes=32 * 32 * 3, lazy=True)  # blocks of 2 x 2 patches
    assert lazy.chunks == ((32, 32), (32, 32, 32), (3,)) and not reads
    np.testing.assert_array_equal(lazy[40:60, 70:90].compute(), image[40:60, 70:90])
    assert len(reads) == 4
    reads.clear()
    np.testing.assert_array_equal(lazy.compute(), image)
    assert len(reads) == 24  # every patch once


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


def test_nan_pad_value_for_an_integer_image_is_explained(tmp_path):
    with pytest.raises(ExportError, match="does not fit the image dtype"):
        export_patches(
            tmp_path / "o",
            np.zeros((10, 10), np.uint8),
            patch_size=4,
            edge="pad",
            pad_value=float("nan"),
        )


def test_writer_with_an_emptied_grid_says_what_to_do(tmp_path):
    from napari_patchwork._writer import write_patch_folder

    image = np.zeros((32, 32), np.uint8)
    grid_meta = {
        "name": "grid",
        "features": {"index": np.array([], np.int64)},
        "metadata": {
            "napari_patchwork": {
                "patch_size": [16, 16],
                "stride": [16, 16],
                "edge": "drop",
                "n_patches": 4,
            }
        },
    }
    with pytest.raises(ExportError, match="no rectangle left"):
        write_patch_folder(
            str(tmp_path / "o"), [(image, {"name": "img"}, "image"), ([], grid_meta, "shapes")]
        )


def test_mean_stitch_is_float64_even_when_no_patch_was_kept(tmp_path):
    from napari_patchwork.stitch import stitch

    image = np.zeros((16, 16), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    export_patches(tmp_path / "o", image, mask, patch_size=8, min_foreground=0.5)  # keeps nothing
    assert stitch(tmp_path / "o", overlap="mean").dtype == np.float64
    assert stitch(tmp_path / "o").dtype == np.uint8
