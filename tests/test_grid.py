"""Pure tests for the patch-grid core (no napari)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.grid import (
    EDGE_MODES,
    GridError,
    boxes_to_rectangles,
    foreground_fraction,
    foreground_fraction_steps,
    grid_features,
    make_grid,
    spatial_shape,
)


@st.composite
def grid_case(draw, max_ndim=3, overlapping=False):
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.integers(1, 40)) for _ in range(ndim))
    patch = tuple(draw(st.integers(1, 16)) for _ in range(ndim))
    if overlapping:
        stride = tuple(draw(st.integers(1, p)) for p in patch)
    else:
        stride = None
    return shape, patch, stride


def coverage(grid, clip=True):
    count = np.zeros(grid.shape, dtype=np.int64)
    boxes = grid.clipped_boxes() if clip else grid.boxes
    for start, stop in boxes:
        count[tuple(slice(a, b) for a, b in zip(start, stop))] += 1
    return count


@settings(max_examples=150, deadline=None)
@given(grid_case(), st.sampled_from(["drop", "pad", "partial"]))
def test_non_overlapping_grid_covers_each_pixel_at_most_once(case, edge):
    shape, patch, _ = case
    if edge == "drop" and any(p > s for p, s in zip(patch, shape)):
        with pytest.raises(GridError, match="larger than the image"):
            make_grid(shape, patch, edge=edge)
        return
    grid = make_grid(shape, patch, edge=edge)
    assert coverage(grid).max() <= 1
    assert grid.boxes.shape == (grid.n_patches, 2, len(shape))
    assert grid.boxes.dtype == np.int64
    if edge != "drop":  # these also cover every pixel
        assert coverage(grid).min() == 1


@settings(max_examples=150, deadline=None)
@given(grid_case(overlapping=True), st.sampled_from(["pad", "shift", "partial"]))
def test_covering_modes_cover_every_pixel(case, edge):
    shape, patch, stride = case
    if edge == "shift" and any(p > s for p, s in zip(patch, shape)):
        with pytest.raises(GridError, match="at least one patch"):
            make_grid(shape, patch, stride, edge)
        return
    grid = make_grid(shape, patch, stride, edge)
    assert coverage(grid).min() >= 1


@settings(max_examples=150, deadline=None)
@given(grid_case(overlapping=True), st.sampled_from(EDGE_MODES))
def test_boxes_inside_image_except_pad_and_full_size_except_partial(case, edge):
    shape, patch, stride = case
    try:
        grid = make_grid(shape, patch, stride, edge)
    except GridError:
        return
    size = grid.boxes[:, 1] - grid.boxes[:, 0]
    assert (grid.boxes[:, 0] >= 0).all()
    assert (grid.boxes[:, 0] < np.asarray(shape)).all()
    if edge == "pad":
        assert (size == np.asarray(patch)).all()
    else:
        assert (grid.boxes[:, 1] <= np.asarray(shape)).all()
    if edge in ("drop", "shift"):
        assert (size == np.asarray(patch)).all()
    if edge == "partial":
        assert (size <= np.asarray(patch)).all() and (size >= 1).all()
    # patches are unique and numbered in C order of their grid position
    assert len({tuple(b.ravel()) for b in grid.boxes}) == grid.n_patches
    assert np.array_equal(
        np.ravel_multi_index(grid.grid_index.T, grid.grid_shape), np.arange(grid.n_patches)
    )


def test_known_grid_2d():
    grid = make_grid((10, 7), (4, 4), edge="shift")
    assert grid.grid_shape == (3, 2)
    assert grid.boxes[-1].tolist() == [[6, 3], [10, 7]]
    drop = make_grid((10, 7), 4)
    assert drop.boxes.tolist() == [[[0, 0], [4, 4]], [[4, 0], [8, 4]]]
    overlap = make_grid((10,), 4, stride=2, edge="drop")
    assert overlap.boxes[:, :, 0].tolist() == [[0, 4], [2, 6], [4, 8], [6, 10]]


def test_channel_axis_is_never_cut():
    rgb = make_grid((64, 48, 3), 16, channel_axis=-1)
    assert rgb.shape == (64, 48) and rgb.boxes.shape[2] == 2
    cyx = make_grid((5, 64, 48), (16, 16), channel_axis=0)
    assert cyx.shape == (64, 48) and cyx.n_patches == 12
    assert spatial_shape((2, 3, 4, 5), channel_axis=1) == (2, 4, 5)


def test_3d_z_patches():
    grid = make_grid((10, 32, 32), (5, 16, 16))
    assert grid.grid_shape == (2, 2, 2)
    assert grid.boxes[-1].tolist() == [[5, 16, 16], [10, 32, 32]]
    feats = grid_features(grid)
    assert feats["z"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert feats["row"].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert feats["col"].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shape=(10, 10), patch_size=0), "at least 1 pixel"),
        (dict(shape=(10, 10), patch_size=4, stride=0), "stride must be at least 1"),
        (dict(shape=(10, 10), patch_size=11), "larger than the image"),
        (dict(shape=(10, 10), patch_size=(4, 4, 4)), "3 values but the image has 2 spatial axes"),
        (dict(shape=(10, 10), patch_size=4, edge="wrap"), "edge='wrap' is not known"),
        (dict(shape=(10, 10, 3), patch_size=4, channel_axis=3), "channel_axis=3 does not exist"),
        (dict(shape=(10, 10), patch_size=11, edge="shift"), "at least one patch"),
    ],
)
def test_bad_input_gives_clear_error(kwargs, message):
    with pytest.raises(GridError, match=message):
        make_grid(**kwargs)


def test_foreground_fraction_numpy_and_dask_agree():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    mask = (rng.random((37, 29)) > 0.6).astype(np.uint16)
    grid = make_grid(mask.shape, 8, edge="pad")
    expected = [
        np.count_nonzero(mask[s]) / mask[s].size
        for s in (grid.slices(i) for i in range(grid.n_patches))
    ]
    assert np.allclose(foreground_fraction(mask, grid), expected)
    lazy = da.from_array(mask, chunks=10)
    assert np.allclose(foreground_fraction(lazy, grid), expected)


@settings(max_examples=40, deadline=None)
@given(
    grid_case(max_ndim=3, overlapping=True),
    st.sampled_from(["pad", "partial"]),
    st.integers(1, 9),
    st.integers(0, 2**32 - 1),
)
def test_foreground_fraction_steps_in_dask_bands_agree_with_numpy(case, edge, chunk, seed):
    """Band by band (a dask mask) or in batches (numpy): the same fractions as counting
    each patch directly, with progress that only grows and ends at 1."""
    da = pytest.importorskip("dask.array")
    shape, patch, stride = case
    grid = make_grid(shape, patch, stride, edge)
    mask = (np.random.default_rng(seed).random(shape) > 0.5).astype(np.uint8)
    expected = [
        np.count_nonzero(mask[s]) / max(mask[s].size, 1)
        for s in (grid.slices(i) for i in range(grid.n_patches))
    ]
    for array in (mask, da.from_array(mask, chunks=chunk)):
        steps = foreground_fraction_steps(array, grid)
        progress = []
        while True:
            try:
                progress.append(next(steps))
            except StopIteration as stop:
                fractions = stop.value
                break
        np.testing.assert_allclose(fractions, expected)
        assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)


def test_foreground_fraction_shape_mismatch():
    grid = make_grid((20, 20), 5)
    with pytest.raises(GridError, match="does not match the image"):
        foreground_fraction(np.zeros((20, 21)), grid)


def test_rectangles_lie_on_pixel_edges():
    grid = make_grid((8, 8), 4)
    rect, owner = boxes_to_rectangles(grid.boxes)
    assert rect.shape == (4, 4, 2) and owner.tolist() == [0, 1, 2, 3]
    assert rect[1].tolist() == [[-0.5, 3.5], [-0.5, 7.5], [3.5, 7.5], [3.5, 3.5]]


def test_rectangles_3d_one_per_plane_clipped_to_image():
    grid = make_grid((5, 8, 8), (4, 8, 8), edge="pad")  # second z block runs past z=5
    rect, owner = boxes_to_rectangles(grid.boxes, shape=grid.shape)
    assert owner.tolist() == [0, 0, 0, 0, 1]
    assert rect[:, 0, 0].tolist() == [0, 1, 2, 3, 4]


def test_foreground_fraction_takes_linear_time_in_the_number_of_patches():
    import time

    mask = np.zeros((2000, 2000), np.uint8)
    mask[:1000] = 1
    grid = make_grid(mask.shape, 10)  # 40,000 patches (quadratic work took about a minute)
    start = time.perf_counter()
    fraction = foreground_fraction(mask, grid)
    assert time.perf_counter() - start < 5.0
    np.testing.assert_array_equal(fraction, np.repeat([1.0, 0.0], 20_000))
