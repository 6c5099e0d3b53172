"""Rasterising shape annotations into label images (pure)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.annotations import (
    AnnotationError,
    class_ids_from_names,
    ellipse_polygon,
    rasterize_shapes,
)


def rect(y0, x0, y1, x1):
    """A napari rectangle whose edges lie on pixel edges of pixels [y0, y1) x [x0, x1)."""
    a, b, c, d = y0 - 0.5, x0 - 0.5, y1 - 0.5, x1 - 0.5
    return np.array([[a, b], [a, d], [c, d], [c, b]])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(1, 30), st.integers(1, 30))
def test_rectangle_area_is_exact(y0, x0, h, w):
    result = rasterize_shapes([rect(y0, x0, y0 + h, x0 + w)], ["rectangle"], (80, 80))
    assert result.labels.sum() == h * w
    assert result.labels[y0 : y0 + h, x0 : x0 + w].all()


@pytest.mark.parametrize("ry, rx, angle", [(30, 20, 0.0), (55, 12.5, 0.0), (40, 25, 0.6)])
def test_ellipse_area_within_one_percent(ry, rx, angle):
    centre = np.array([100.0, 100.0])
    u = np.array([np.cos(angle), np.sin(angle)])  # rotated bounding box
    v = np.array([-np.sin(angle), np.cos(angle)])
    corners = np.array(
        [
            centre - ry * u - rx * v,
            centre - ry * u + rx * v,
            centre + ry * u + rx * v,
            centre + ry * u - rx * v,
        ]
    )
    result = rasterize_shapes([corners], ["ellipse"], (200, 200))
    assert abs(result.labels.sum() / (np.pi * ry * rx) - 1) < 0.01


def test_ellipse_polygon_passes_through_edge_midpoints():
    corners = np.array([[0, 0], [0, 10], [4, 10], [4, 0]], float)
    poly = ellipse_polygon(corners, n_vertices=4)
    assert np.allclose(poly, [[2, 10], [4, 5], [2, 0], [0, 5]])


def test_class_ids_overlap_later_shape_wins_and_priority():
    shapes = [rect(0, 0, 10, 10), rect(5, 5, 15, 15)]
    classes = ["tumor", "stroma"]
    later = rasterize_shapes(shapes, ["rectangle"] * 2, (20, 20), classes=classes)
    assert later.class_ids == {"tumor": 1, "stroma": 2}
    assert later.labels[7, 7] == 2 and later.labels[2, 2] == 1 and later.labels[12, 12] == 2
    prio = rasterize_shapes(
        shapes, ["rectangle"] * 2, (20, 20), classes=classes, priority=["tumor", "stroma"]
    )
    assert prio.labels[7, 7] == 1 and prio.labels[12, 12] == 2
    mapped = rasterize_shapes(
        shapes, ["rectangle"] * 2, (20, 20), classes=classes, class_ids={"stroma": 9}, background=3
    )
    assert mapped.class_ids == {"stroma": 9, "tumor": 10}
    assert mapped.labels[19, 19] == 3 and mapped.labels[7, 7] == 9


def test_instance_mode_gives_each_shape_its_id():
    shapes = [rect(0, 0, 4, 4), rect(10, 10, 14, 14), rect(2, 2, 6, 6)]
    result = rasterize_shapes(shapes, ["rectangle"] * 3, (20, 20), instance=True)
    assert sorted(np.unique(result.labels)) == [0, 1, 2, 3]
    assert result.labels[3, 3] == 3  # later shape on top


def test_scaled_and_translated_layers_land_in_the_image_grid():
    # image: 0.5 um/px, origin at (100, 200) um; shapes drawn in um (scale 1)
    image_scale, image_translate = (0.5, 0.5), (100.0, 200.0)
    # pixels [10, 20) x [4, 8) of the image are um [105-0.25, 110-0.25) x [202-0.25, 204-0.25)
    corners_um = np.array([[104.75, 201.75], [104.75, 203.75], [109.75, 203.75], [109.75, 201.75]])
    result = rasterize_shapes(
        [corners_um],
        ["rectangle"],
        (40, 40),
        image_scale=image_scale,
        image_translate=image_translate,
    )
    assert result.labels.sum() == 10 * 4 and result.labels[10:20, 4:8].all()
    # the same rectangle, with shapes in their own pixel grid (scale 0.25, translate 100, 200)
    corners_shapes = (corners_um - [100, 200]) / 0.25
    again = rasterize_shapes(
        [corners_shapes],
        ["rectangle"],
        (40, 40),
        shapes_scale=(0.25, 0.25),
        shapes_translate=(100, 200),
        image_scale=image_scale,
        image_translate=image_translate,
    )
    assert np.array_equal(result.labels, again.labels)


def test_lines_paths_and_outside_shapes_are_skipped():
    line = np.array([[0, 0], [10, 10]], float)
    outside = rect(50, 50, 60, 60)
    result = rasterize_shapes(
        [line, outside, rect(0, 0, 2, 2)], ["line", "rectangle", "polygon"], (20, 20)
    )
    assert result.n_painted == 1 and result.n_skipped == 2 and result.labels.sum() == 4


def test_3d_shapes_paint_their_plane():
    square = np.c_[np.full(4, 2.0), rect(0, 0, 3, 3)]
    result = rasterize_shapes([square], ["rectangle"], (4, 5, 5), classes=["a"])
    assert result.labels[2].sum() == 9 and result.labels.sum() == 9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(classes=["a", "b"]), "one class per shape"),
        (dict(classes=["a"], priority=["b"]), "not in the priority list"),
        (dict(class_ids={"a": -1}, classes=["a"]), ">= 0"),
        (dict(classes=["a"], class_ids={"a": 300}, dtype=np.uint8), "does not fit"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(AnnotationError, match=message):
        rasterize_shapes([rect(0, 0, 2, 2)], ["rectangle"], (10, 10), **kwargs)


def test_dimension_mismatch_is_explained():
    with pytest.raises(AnnotationError, match="spatial axes"):
        rasterize_shapes([np.zeros((4, 3))], ["rectangle"], (10, 10))


def test_class_ids_from_names_keeps_mapping_and_appends():
    assert class_ids_from_names(["x", "y", "x"], {"y": 4}) == {"y": 4, "x": 5}


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-20, 120),
            st.floats(-20, 120),
            st.floats(1, 60),
            st.floats(1, 60),
            st.sampled_from(["rectangle", "ellipse", "polygon"]),
            st.sampled_from("abc"),
        ),
        min_size=1,
        max_size=8,
    ),
    st.integers(7, 64),
)
def test_lazy_blocks_equal_the_whole_painting(shapes, chunk):
    data, kinds, classes = [], [], []
    for y, x, h, w, kind, cls in shapes:
        corners = np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]])
        if kind == "polygon":
            corners = corners[[0, 1, 2]]  # a triangle
        data.append(corners)
        kinds.append(kind)
        classes.append(cls)
    whole = rasterize_shapes(data, kinds, (100, 90), classes=classes)
    lazy = rasterize_shapes(data, kinds, (100, 90), classes=classes, chunks=chunk)
    assert type(lazy.labels).__module__.startswith("dask")
    assert lazy.class_ids == whole.class_ids
    assert np.array_equal(lazy.labels.compute(), whole.labels)


def test_lazy_whole_slide_mask_paints_only_the_blocks_asked_for():
    big = (200_000, 200_000)  # 40 GB as uint8 if it were ever made whole
    shapes = [rect(100_000, 100_000, 100_300, 100_200), rect(5, 5, 10, 10)]
    result = rasterize_shapes(shapes, ["rectangle"] * 2, big, classes=["t", "s"], chunks=4096)
    assert result.labels.shape == big and result.n_painted == 2
    region = result.labels[99_990:100_310, 99_990:100_210].compute()
    assert (region == 1).sum() == 300 * 200
    assert result.labels[:16, :16].compute().sum() == 2 * 25


def test_writer_paints_whole_slide_annotation_masks_lazily():
    from napari_patchwork._layer_data import LAZY_MASK_PIXELS, annotation_mask

    meta = {"shape_type": ["rectangle"], "features": {"class": ["tumour"]}}
    small = annotation_mask([rect(0, 0, 4, 4)], meta, (64, 64))
    assert isinstance(small.labels, np.ndarray) and small.labels.sum() == 16
    side = int(np.sqrt(LAZY_MASK_PIXELS)) + 1
    big = annotation_mask([rect(side - 10, side - 10, side, side)], meta, (side, side))
    assert type(big.labels).__module__.startswith("dask")
    assert big.labels[-10:, -10:].compute().sum() == 100 and big.class_ids == {"tumour": 1}
