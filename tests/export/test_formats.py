"""Patch file formats: the fixed-layout fast path, PNG limits."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patch_folders import DTYPES, sample_pair

from napari_patchwork.export import (
    ExportError,
    export_patches,
)
from napari_patchwork.export import formats as formats_module
from napari_patchwork.folder import read_patches


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
