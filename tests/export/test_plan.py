"""Planning: options checked against the arrays, selection by source boxes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork import export as export_module
from napari_patchwork.export import (
    ExportError,
    export_patches,
)
from napari_patchwork.grid import EDGE_MODES, make_grid


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


def test_nan_pad_value_for_an_integer_image_is_explained(tmp_path):
    with pytest.raises(ExportError, match="does not fit the image dtype"):
        export_patches(
            tmp_path / "o",
            np.zeros((10, 10), np.uint8),
            patch_size=4,
            edge="pad",
            pad_value=float("nan"),
        )
