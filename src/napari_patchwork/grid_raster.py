"""Patch grids as images: which patch each pixel belongs to, painted per region and lazily.

Pure numpy/dask, no napari, no Qt. A whole-slide grid has ~150,000 patches: drawn
as one vector shape each it takes seconds to build, but as an image of patch
labels it is computed only where and at the resolution it is looked at.

* :func:`paint_patch_labels` paints any region of a grid, at any downsampling;
* :func:`lazy_label_pyramid` makes the lazy multiscale pyramid of it;
* :func:`patch_value_image` places one value per patch (e.g. the foreground
  fraction) on a small image with one pixel per patch, to colour the grid.

A pixel inside several overlapping patches (stride < patch size) belongs to the one
that starts last before it: the image shows each patch's *stride cell*.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from napari_patchwork.grid import GridError, PatchGrid

LABEL_DTYPE = np.int32
"""Patch labels are patch index + 1 (0 = no patch shown there)."""
PYRAMID_CHUNK = 1024
"""Block size (pixels, y and x) of the lazy pyramid levels."""
PYRAMID_SMALLEST = 512
"""The coarsest pyramid level is at most this many pixels along y and x."""
EAGER_LEVEL_PIXELS = 2048 * 2048
"""Pyramid levels of at most this many pixels are painted at once (16 MB at most), not
lazily: napari shows one of them when a whole slide is in view, and reading it then
costs the GUI thread nothing, while a lazy level is painted in the GUI thread."""


def grid_axis_starts_stops(grid: PatchGrid, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops of the patches along spatial ``axis``, by grid position."""
    count = grid.grid_shape[axis]
    starts = np.zeros(count, dtype=np.int64)
    stops = np.zeros(count, dtype=np.int64)
    starts[grid.grid_index[:, axis]] = grid.boxes[:, 0, axis]
    stops[grid.grid_index[:, axis]] = grid.boxes[:, 1, axis]
    return starts, stops


def positions_along_axis(starts: np.ndarray, stops: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Grid position of the patch holding each pixel coordinate (the last one starting at or
    before it), -1 where no patch covers it."""
    position = np.searchsorted(starts, coords, side="right") - 1
    inside = position >= 0
    inside[inside] = coords[inside] < stops[position[inside]]
    return np.where(inside, position, -1)


def patch_labels(grid: PatchGrid, keep: np.ndarray | None = None) -> np.ndarray:
    """Label of each patch for painting: index + 1 where ``keep`` is True, else 0."""
    labels = np.arange(1, grid.n_patches + 1, dtype=LABEL_DTYPE)
    if keep is not None:
        labels[~np.asarray(keep, dtype=bool)] = 0
    return labels


def paint_patch_labels(
    grid: PatchGrid,
    labels: np.ndarray,
    start: Sequence[int],
    stop: Sequence[int],
    factor: Sequence[int] | None = None,
) -> np.ndarray:
    """The patch labels of the region ``start:stop`` of the grid downsampled by ``factor``.

    ``start``/``stop`` are pixel positions at that downsampling, one per spatial axis;
    output pixel ``j`` stands for source pixel ``j * factor + factor // 2`` (its
    centre; the image's last pixel for a block that runs past the edge). ``labels``
    is one value per patch (see :func:`patch_labels`); pixels no patch covers are 0.
    """
    factor = (1,) * grid.ndim if factor is None else tuple(int(f) for f in factor)
    if not (len(start) == len(stop) == len(factor) == grid.ndim):
        raise GridError(f"a region of a {grid.ndim}-D grid needs {grid.ndim} starts and stops.")
    flat = np.zeros([max(int(b) - int(a), 0) for a, b in zip(start, stop)], dtype=np.int64)
    valid = np.ones(flat.shape, dtype=bool)
    counts = grid.grid_shape
    for axis, (a, b, f, size) in enumerate(zip(start, stop, factor, grid.shape)):
        coords = np.minimum(np.arange(int(a), int(b), dtype=np.int64) * f + f // 2, size - 1)
        position = positions_along_axis(*grid_axis_starts_stops(grid, axis), coords)
        shape = [1] * grid.ndim
        shape[axis] = len(position)
        position = position.reshape(shape)
        valid &= position >= 0
        flat = flat * counts[axis] + np.maximum(position, 0)
    out = np.zeros(flat.shape, dtype=LABEL_DTYPE)
    out[valid] = np.asarray(labels, dtype=LABEL_DTYPE)[flat[valid]]
    return out


def pyramid_factors(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Downsampling per level (y and x halved each level; leading axes kept)."""
    factors = []
    f = 1
    while True:
        factors.append((1,) * (len(shape) - 2) + (f, f) if len(shape) >= 2 else (f,))
        if max(-(-s // f) for s in shape[-2:]) <= PYRAMID_SMALLEST:
            return factors
        f *= 2


def lazy_label_pyramid(grid: PatchGrid, labels: np.ndarray) -> list:
    """Multiscale patch-label image of the grid: level ``k`` is downsampled by ``2**k``
    along y and x. Levels larger than :data:`EAGER_LEVEL_PIXELS` are lazy (dask), blocks
    of :data:`PYRAMID_CHUNK` pixels painted on demand; smaller ones are painted now."""
    import dask.array as da

    labels = np.asarray(labels, dtype=LABEL_DTYPE)
    # a key of our own: dask would otherwise hash the grid's boxes for every level
    key = f"patch-labels-{uuid.uuid4().hex}"
    levels = []
    for level, factor in enumerate(pyramid_factors(grid.shape)):
        shape = tuple(-(-s // f) for s, f in zip(grid.shape, factor))
        if np.prod(shape, dtype=np.float64) <= EAGER_LEVEL_PIXELS:
            levels.append(paint_patch_labels(grid, labels, [0] * grid.ndim, shape, factor))
            continue
        chunks = tuple(
            s if axis < grid.ndim - 2 else min(PYRAMID_CHUNK, s) for axis, s in enumerate(shape)
        )

        def block(block_info=None, factor=factor):
            location = block_info[None]["array-location"]
            return paint_patch_labels(
                grid, labels, [a for a, _ in location], [b for _, b in location], factor
            )

        chunks = da.core.normalize_chunks(chunks, shape)
        meta = np.empty((0,) * grid.ndim, dtype=LABEL_DTYPE)  # dask must not call block()
        levels.append(
            da.map_blocks(block, dtype=LABEL_DTYPE, chunks=chunks, meta=meta, name=f"{key}-{level}")
        )
    return levels


def patch_value_image(grid: PatchGrid, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """One pixel per patch (at its grid position) holding ``values``; ``fill`` elsewhere."""
    image = np.full(grid.grid_shape, fill, dtype=np.float32)
    image[tuple(grid.grid_index.T)] = np.asarray(values, dtype=np.float32)
    return image


def cell_transform(
    grid: PatchGrid, scale: Sequence[float] | None, translate: Sequence[float] | None
) -> tuple[list[float], list[float]]:
    """Scale and translate that put pixel ``j`` of :func:`patch_value_image` on the stride
    cell of grid position ``j``, given the image layer's spatial scale and translate."""
    scale = [1.0] * grid.ndim if scale is None else [float(s) for s in scale]
    translate = [0.0] * grid.ndim if translate is None else [float(t) for t in translate]
    first = grid.boxes[0, 0] if grid.n_patches else np.zeros(grid.ndim)
    cell_scale = [st * s for st, s in zip(grid.stride, scale)]
    cell_translate = [
        t + (f + (st - 1) / 2) * s for t, f, st, s in zip(translate, first, grid.stride, scale)
    ]
    return cell_scale, cell_translate
