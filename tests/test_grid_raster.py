"""Patch grids painted as label images (grid_raster): equal to painting the boxes one by one."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.grid import EDGE_MODES, GridError, make_grid
from napari_patchwork.grid_raster import (
    cell_transform,
    lazy_label_pyramid,
    paint_patch_labels,
    patch_labels,
    patch_value_image,
    pyramid_factors,
)


def brute_force(grid, labels):
    """Paint every patch's box in index order (later patches over earlier ones)."""
    out = np.zeros(grid.shape, dtype=np.int64)
    for i in range(grid.n_patches):
        out[grid.slices(i)] = labels[i]
    return out


grids = st.builds(
    lambda shape, patch, stride, edge: (shape, patch, stride, edge),
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    st.one_of(st.none(), st.tuples(st.integers(1, 15), st.integers(1, 15))),
    st.sampled_from(EDGE_MODES),
)


def _grid(params):
    shape, patch, stride, edge = params
    try:
        return make_grid(shape, patch, stride, edge)
    except GridError:
        return None


@settings(max_examples=150, deadline=None)
@given(grids, st.integers(0, 2**32 - 1))
def test_painting_equals_the_boxes_painted_one_by_one(params, seed):
    grid = _grid(params)
    if grid is None or grid.n_patches == 0:
        return
    keep = np.random.default_rng(seed).random(grid.n_patches) < 0.7
    labels = patch_labels(grid, keep)
    painted = paint_patch_labels(grid, labels, (0, 0), grid.shape)
    np.testing.assert_array_equal(painted, brute_force(grid, labels))
    assert painted.dtype == np.int32


@settings(max_examples=80, deadline=None)
@given(grids, st.integers(2, 5), st.data())
def test_a_downsampled_region_samples_the_full_resolution_labels(params, factor, data):
    grid = _grid(params)
    if grid is None or grid.n_patches == 0:
        return
    labels = patch_labels(grid)
    full = brute_force(grid, labels)
    size = [-(-s // factor) for s in grid.shape]
    y0 = data.draw(st.integers(0, size[0] - 1))
    x0 = data.draw(st.integers(0, size[1] - 1))
    y1, x1 = data.draw(st.integers(y0, size[0])), data.draw(st.integers(x0, size[1]))
    region = paint_patch_labels(grid, labels, (y0, x0), (y1, x1), (factor, factor))
    ys = np.minimum(np.arange(y0, y1) * factor + factor // 2, grid.shape[0] - 1)
    xs = np.minimum(np.arange(x0, x1) * factor + factor // 2, grid.shape[1] - 1)
    np.testing.assert_array_equal(region, full[np.ix_(ys, xs)])


def test_3d_grid_paints_every_plane():
    grid = make_grid((5, 20, 30), (2, 10, 10), edge="pad")
    labels = patch_labels(grid)
    np.testing.assert_array_equal(
        paint_patch_labels(grid, labels, (0, 0, 0), grid.shape), brute_force(grid, labels)
    )


def test_pyramid_levels_halve_large_ones_lazily():
    grid = make_grid((3000, 5000), 256, edge="pad")
    keep = np.arange(grid.n_patches) % 3 != 0
    labels = patch_labels(grid, keep)
    levels = lazy_label_pyramid(grid, labels)
    assert [lv.shape for lv in levels] == [
        (3000, 5000),
        (1500, 2500),
        (750, 1250),
        (375, 625),
        (188, 313),
    ]
    assert pyramid_factors(grid.shape)[-1] == (16, 16)
    assert levels[0].chunksize == (1024, 1024)
    full = brute_force(grid, labels)
    np.testing.assert_array_equal(
        levels[0][1000:1300, 4000:4400].compute(), full[1000:1300, 4000:4400]
    )
    # levels up to EAGER_LEVEL_PIXELS are painted at once (napari reads them in the GUI
    # thread), larger ones stay lazy; both paint the same pixels
    assert [isinstance(lv, np.ndarray) for lv in levels] == [False, True, True, True, True]
    for level, step in ((1, 2), (2, 4), (4, 16)):
        # pixel j stands for source pixel j * step + step // 2 (the last one at the edge)
        ys, xs = (
            np.minimum(np.arange(n) * step + step // 2, size - 1)
            for n, size in zip(levels[level].shape, full.shape)
        )
        np.testing.assert_array_equal(levels[level], full[np.ix_(ys, xs)])


def test_value_image_and_its_transform_sit_on_the_patches():
    grid = make_grid((100, 90), (20, 30), stride=(10, 30), edge="drop")
    values = np.arange(grid.n_patches, dtype=float) / 10
    image = patch_value_image(grid, values)
    assert image.shape == grid.grid_shape == (9, 3)
    assert image[2, 1] == pytest.approx(values[2 * 3 + 1])
    scale, translate = cell_transform(grid, (0.5, 2.0), (10.0, -4.0))
    assert scale == [5.0, 60.0]
    # cell (0, 0) centred on the first stride cell: source pixels 0..9 and 0..29
    assert translate == pytest.approx([10.0 + 4.5 * 0.5, -4.0 + 14.5 * 2.0])
