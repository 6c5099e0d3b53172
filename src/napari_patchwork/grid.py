"""Patch grids: where to cut an N-D image into patches.

Pure numpy, no napari, no Qt. Everything here works on *spatial* axes only:
channel axes (RGB, or a channel axis of a multichannel array) are never cut,
see :func:`spatial_shape`.

Boxes are integer arrays of shape ``(N, 2, ndim)``: ``boxes[i, 0]`` is the start
(inclusive) and ``boxes[i, 1]`` the stop (exclusive) of patch ``i`` along each
spatial axis, in pixel units and in array axis order (``zyx`` / ``yx``).
Patches are numbered in C order: the last axis (x, "col") varies fastest.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from napari_patchwork import _common

EdgeMode = Literal["drop", "pad", "shift", "partial"]
EDGE_MODES: tuple[str, ...] = get_args(EdgeMode)
"""How the last patch along an axis treats the image edge.

* ``drop``: only whole patches that lie inside the image; a remainder is left out.
* ``pad``: the last patch runs past the edge (its stop > size); export pads it.
* ``shift``: the last patch is moved inward to end at the edge, so the whole image
  is covered by full-size patches that overlap only at the edge.
* ``partial``: the last patch is clipped at the edge (smaller than the others).
"""


class GridError(ValueError):
    """Bad grid parameters; the message says what to change."""


def normalize_axis(axis: int, ndim: int, what: str = "channel_axis") -> int:
    """Return ``axis`` as a non-negative index into ``ndim`` axes, or raise GridError."""
    return _common.normalize_axis(axis, ndim, what, GridError)


def spatial_axes(ndim: int, channel_axis: int | None = None) -> tuple[int, ...]:
    """Indices of the axes that patches cut: all but ``channel_axis``."""
    if channel_axis is None:
        return tuple(range(ndim))
    c = normalize_axis(channel_axis, ndim)
    return tuple(a for a in range(ndim) if a != c)


def spatial_shape(shape: Sequence[int], channel_axis: int | None = None) -> tuple[int, ...]:
    """The shape of ``shape`` without its channel axis (RGB(A) is ``channel_axis=-1``)."""
    return tuple(int(shape[a]) for a in spatial_axes(len(shape), channel_axis))


def _per_axis(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    """Broadcast an int to ``ndim`` axes or check a sequence has ``ndim`` entries, all >= 1."""
    values = _common.per_axis(value, ndim, name, convert=int, error=GridError)
    for v in values:
        if v < 1:
            raise GridError(f"{name} must be at least 1 pixel along every axis, got {values}.")
    return values


def axis_starts_stops(
    size: int, patch: int, stride: int, edge: str
) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops of the patches along one axis of ``size`` pixels.

    Returns two int64 arrays of equal length. ``stop - start == patch`` except for
    the last patch in ``partial`` mode (clipped to ``size``).
    """
    if edge not in EDGE_MODES:
        raise GridError(f"edge={edge!r} is not known; choose one of {', '.join(EDGE_MODES)}.")
    if edge == "drop":
        starts = np.arange(0, size - patch + 1, stride, dtype=np.int64)
        return starts, starts + patch
    # pad / shift / partial: cover up to the edge
    if size <= patch:
        starts = np.zeros(1, dtype=np.int64)
    else:
        n = -(-(size - patch) // stride) + 1  # ceil((size - patch) / stride) + 1
        starts = np.arange(n, dtype=np.int64) * stride
        starts = starts[starts < size]
    if edge == "pad":
        return starts, starts + patch
    if edge == "partial":
        return starts, np.minimum(starts + patch, size)
    # shift
    if size < patch:
        raise GridError(
            f"edge='shift' needs the image ({size} px) to be at least one patch ({patch} px) "
            f"long on every axis; use a smaller patch size or edge='pad'/'partial'."
        )
    starts = np.unique(np.minimum(starts, size - patch))
    return starts, starts + patch


@dataclass(frozen=True)
class PatchGrid:
    """Patch boxes over the spatial axes of an image.

    Attributes
    ----------
    shape : spatial shape of the image in pixels (channel axis removed).
    patch_size, stride : per spatial axis, in pixels.
    edge : the edge mode (see :data:`EDGE_MODES`).
    boxes : ``(N, 2, ndim)`` int64, start (inclusive) and stop (exclusive) per axis.
    grid_index : ``(N, ndim)`` int64, position of each patch in the grid
        (for 2D: ``[:, 0]`` is the row, ``[:, 1]`` the column); -1 for placed patches.
    kind : ``"grid"`` for a regular grid, else the placement that laid the boxes
        (:mod:`napari_patchwork.placement`): no stride or grid position then.
    """

    shape: tuple[int, ...]
    patch_size: tuple[int, ...]
    stride: tuple[int, ...]
    edge: str
    boxes: np.ndarray
    grid_index: np.ndarray
    kind: str = "grid"

    @property
    def placed(self) -> bool:
        """True for boxes laid by a placement (not a regular grid)."""
        return self.kind != "grid"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_patches(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Number of patches along each axis."""
        if self.n_patches == 0:
            return (0,) * self.ndim
        return tuple(int(m) + 1 for m in self.grid_index.max(axis=0))

    def clipped_boxes(self) -> np.ndarray:
        """Boxes clipped to the image (differs from ``boxes`` only in ``pad`` mode)."""
        return np.minimum(self.boxes, np.asarray(self.shape, dtype=np.int64))

    def slices(self, i: int) -> tuple[slice, ...]:
        """Slices of patch ``i`` over the spatial axes, clipped to the image."""
        start, stop = self.clipped_boxes()[i]
        return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))

    def __len__(self) -> int:
        return self.n_patches


def make_grid(
    shape: Sequence[int],
    patch_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    edge: str = "drop",
    *,
    channel_axis: int | None = None,
) -> PatchGrid:
    """Cut an image of ``shape`` into patches.

    Parameters
    ----------
    shape : full array shape, channel axis included if ``channel_axis`` is given.
    patch_size : pixels per spatial axis (one int for all axes, or one per axis in
        array order, e.g. ``(z, y, x)``).
    stride : step between patch starts per spatial axis; default ``patch_size``
        (non-overlapping). Smaller than the patch makes overlapping patches.
    edge : ``drop``, ``pad``, ``shift`` or ``partial`` (see :data:`EDGE_MODES`).
    channel_axis : an axis that is never cut (RGB images: ``-1``).

    Raises
    ------
    GridError : with a message that says what to change.
    """
    spatial = spatial_shape(shape, channel_axis)
    if len(spatial) == 0:
        raise GridError("the image has no spatial axis to cut.")
    if any(s < 1 for s in spatial):
        raise GridError(f"the image is empty (spatial shape {spatial}).")
    ndim = len(spatial)
    patch = _per_axis(patch_size, ndim, "patch_size")
    step = patch if stride is None else _per_axis(stride, ndim, "stride")
    if edge == "drop":
        too_big = [(s, p) for s, p in zip(spatial, patch) if p > s]
        if too_big:
            raise GridError(
                f"patch size {patch} is larger than the image {spatial} on some axis, so "
                f"edge='drop' keeps no patch; use a smaller patch size or edge='pad'/'partial'."
            )
    per_axis = [axis_starts_stops(s, p, st, edge) for s, p, st in zip(spatial, patch, step)]
    counts = [len(starts) for starts, _ in per_axis]
    # C order (the last axis fastest), as itertools.product would give, without a Python loop
    grid_index = np.indices(counts, dtype=np.int64).reshape(ndim, -1).T.copy()
    boxes = np.empty((len(grid_index), 2, ndim), dtype=np.int64)
    for axis, (starts, stops) in enumerate(per_axis):
        boxes[:, 0, axis] = starts[grid_index[:, axis]]
        boxes[:, 1, axis] = stops[grid_index[:, axis]]
    return PatchGrid(
        shape=spatial,
        patch_size=patch,
        stride=step,
        edge=edge,
        boxes=boxes,
        grid_index=grid_index,
    )


def foreground_fraction(mask, grid: PatchGrid) -> np.ndarray:
    """Fraction of non-zero mask pixels inside each patch, clipped to the image.

    ``mask`` is a numpy or dask array with the grid's spatial shape. Returns a
    float64 array of shape ``(N,)`` with values in [0, 1]. Padding (``pad`` mode)
    does not count as pixels. See :func:`foreground_fraction_steps` for how a dask
    mask is read.
    """
    return _common.run_steps(foreground_fraction_steps(mask, grid))


FOREGROUND_BATCH = 4096
"""Patches of a numpy mask measured between two progress steps."""


def foreground_fraction_steps(mask, grid: PatchGrid) -> Generator[float, None, np.ndarray]:
    """:func:`foreground_fraction` as a generator: yields the fraction of patches
    measured so far, returns the fractions.

    A dask (lazy) mask is read one block of chunks at a time: the patches that start
    in the same chunk are measured together from one region (that chunk, extended to
    their ends) read with one ``dask.compute``, so memory stays at about a chunk and
    each chunk is computed about once.
    """
    if tuple(mask.shape) != grid.shape:
        raise GridError(
            f"mask shape {tuple(mask.shape)} does not match the image's spatial shape "
            f"{grid.shape}; use a mask drawn on this image (same size, no channel axis)."
        )
    boxes = grid.clipped_boxes()
    sizes = np.prod(boxes[:, 1] - boxes[:, 0], axis=1).astype(np.float64)
    counts = np.zeros(grid.n_patches, np.int64)
    lazy = not isinstance(mask, np.ndarray)
    done = 0
    for batch in _foreground_batches(mask, boxes) if lazy else _numpy_batches(grid.n_patches):
        origin = boxes[batch, 0].min(axis=0) if lazy else np.zeros(grid.ndim, np.int64)
        region = mask
        if lazy:
            stop = boxes[batch, 1].max(axis=0)
            region = np.asarray(mask[tuple(slice(a, b) for a, b in zip(origin, stop))])
        for i in batch:
            start, stop = boxes[i] - origin
            counts[i] = np.count_nonzero(region[tuple(map(slice, start, stop))])
        done += len(batch)
        yield done / max(grid.n_patches, 1)
    return counts / np.maximum(sizes, 1.0)


def _numpy_batches(n_patches: int) -> list[np.ndarray]:
    return np.array_split(np.arange(n_patches), max(1, -(-n_patches // FOREGROUND_BATCH)))


def _foreground_batches(mask, boxes: np.ndarray) -> list[np.ndarray]:
    """Patch indices grouped by the mask chunk their start lies in (C order of chunks)."""
    chunks = getattr(mask, "chunks", None) or [(n,) for n in mask.shape]
    chunk_of = np.stack(
        [
            np.searchsorted(np.cumsum(sizes), boxes[:, 0, axis], side="right")
            for axis, sizes in enumerate(chunks)
        ],
        axis=1,
    )
    if len(boxes) == 0:
        return []
    _, group = np.unique(chunk_of, axis=0, return_inverse=True)
    group = group.ravel()
    order = np.argsort(group, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(group[order])) + 1)


def grid_features(grid: PatchGrid, mask=None) -> dict[str, np.ndarray]:
    """Per-patch feature columns, one value per box.

    ``index`` (patch number), ``row`` and ``col`` (grid position along y and x),
    ``z`` for 3D grids (position along the first spatial axis), and
    ``foreground_fraction`` when a mask is given (see :func:`foreground_fraction`).
    """
    features: dict[str, np.ndarray] = {"index": np.arange(grid.n_patches, dtype=np.int64)}
    if grid.ndim >= 3:
        features["z"] = grid.grid_index[:, -3]
    features["row"] = (
        grid.grid_index[:, -2] if grid.ndim >= 2 else np.zeros(grid.n_patches, np.int64)
    )
    features["col"] = grid.grid_index[:, -1]
    if mask is not None:
        features["foreground_fraction"] = foreground_fraction(mask, grid)
    return features


def boxes_to_rectangles(
    boxes: np.ndarray, shape: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rectangles (in the last two axes, y and x) that outline ``boxes`` on pixel edges.

    napari puts pixel ``i`` at data coordinate ``i`` (its centre), so a box of
    pixels ``[y0, y1)`` spans ``y0 - 0.5`` to ``y1 - 0.5`` in data coordinates.

    For 2D boxes ``(N, 2, 2)`` returns vertices ``(N, 4, 2)`` and ``owner`` =
    ``arange(N)``. Boxes with more axes ``(N, 2, ndim)`` get one rectangle per
    plane of the leading axes they span (napari shows a shape only on its own
    plane): vertices ``(M, 4, ndim)`` and ``owner`` ``(M,)``, the box each
    rectangle belongs to. Corner order: (y0, x0), (y0, x1), (y1, x1), (y1, x0).
    With ``shape`` (the image's spatial shape) planes past the image (``pad``
    mode) get no rectangle; y and x are never clipped, so padding stays visible.
    """
    boxes = np.array(boxes, dtype=np.int64)
    if shape is not None and boxes.shape[2] > 2:
        boxes[:, 1, :-2] = np.minimum(boxes[:, 1, :-2], np.asarray(shape)[:-2])
    n, _, ndim = boxes.shape
    if ndim < 2:
        raise GridError("rectangles need at least two spatial axes (y, x).")
    lead = boxes[:, :, :-2]
    # planes per box along the leading axes: product of the extents
    extents = (lead[:, 1] - lead[:, 0]).reshape(n, -1)
    planes_per_box = np.prod(extents, axis=1) if ndim > 2 else np.ones(n, dtype=np.int64)
    owner = np.repeat(np.arange(n), planes_per_box)
    verts = np.empty((len(owner), 4, ndim), dtype=np.float64)
    if ndim > 2:
        # enumerate the plane coordinates of each box in C order
        offsets = np.arange(len(owner)) - np.repeat(
            np.cumsum(planes_per_box) - planes_per_box, planes_per_box
        )
        plane = np.empty((len(owner), ndim - 2), dtype=np.int64)
        for axis in range(ndim - 3, -1, -1):
            size = extents[owner, axis]
            plane[:, axis] = lead[owner, 0, axis] + offsets % size
            offsets = offsets // size
        verts[:, :, :-2] = plane[:, None, :]
    y0, x0 = boxes[owner, 0, -2] - 0.5, boxes[owner, 0, -1] - 0.5
    y1, x1 = boxes[owner, 1, -2] - 0.5, boxes[owner, 1, -1] - 0.5
    verts[:, :, -2] = np.stack([y0, y0, y1, y1], axis=1)
    verts[:, :, -1] = np.stack([x0, x1, x1, x0], axis=1)
    return verts, owner
