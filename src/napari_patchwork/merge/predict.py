"""Tiled inference without files: run a function on every patch of an image and merge.

GUI-free. :func:`predict_tiled` is what users write around a model with MONAI's
``sliding_window_inference`` or tiler's ``Merger``, for numpy and (lazily) dask images.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from napari_patchwork import _common
from napari_patchwork.grid import GridError, PatchGrid, make_grid, spatial_shape
from napari_patchwork.merge.lazy import merge_chunks, merge_graph
from napari_patchwork.merge.options import (
    MergeError,
    MergeOptions,
    PredictionLayout,
    as_merge_options,
)
from napari_patchwork.merge.region import merge_region

PREDICT_EDGES: tuple[str, ...] = ("shift", "pad", "partial")
"""Edge modes of :func:`predict_tiled` (see :data:`napari_patchwork.grid.EDGE_MODES`);
``pad`` gives the function zero-padded patches at the image edge."""
PREDICT_CHUNK_BYTES = 32 * 2**20
"""Default size of one merged block of a lazy :func:`predict_tiled`."""


def overlap_stride(
    patch_size: Sequence[int], overlap: float | int | Sequence[float | int]
) -> tuple[int, ...]:
    """The stride for ``overlap`` between neighbouring patches: a fraction of the patch size
    in [0, 1) (float) or pixels (int), one value or one per spatial axis."""
    values = _common.per_axis(
        overlap, len(patch_size), "overlap", convert=lambda v: v, error=MergeError
    )
    stride = []
    for patch, value in zip(patch_size, values):
        if isinstance(value, (float, np.floating)):
            if not 0 <= value < 1:
                raise MergeError(
                    f"overlap={value} is not a fraction in [0, 1); give e.g. 0.25 for a "
                    "quarter of the patch, or an int number of pixels."
                )
            value = int(round(value * patch))
        value = int(value)
        if not 0 <= value < patch:
            raise MergeError(
                f"overlap of {value} px does not fit a {patch} px patch; use 0 to {patch - 1}."
            )
        stride.append(patch - value)
    return tuple(stride)


def predict_tiled(
    image: Any,
    fn: Callable[[np.ndarray], Any],
    patch_size: int | Sequence[int],
    *,
    overlap: float | int | Sequence[float | int] = 0.25,
    merge: str | MergeOptions | None = None,
    batch_size: int | None = None,
    channel_axis: int | None = None,
    edge: str = "shift",
    chunk_bytes: int | None = None,
) -> Any:
    """Apply ``fn`` to every patch of ``image`` and merge the outputs into one array.

    Parameters
    ----------
    image : numpy or dask array; ``channel_axis`` (e.g. -1 for RGB) is never cut.
    fn : takes one patch (the image's axes, the patch's spatial size) and returns its
        prediction: the patch's spatial shape, optionally with one channel axis first
        or last (any number of channels, also when the image has none). With
        ``batch_size`` it takes a stack of up to ``batch_size`` patches (a new first
        axis) and returns a stack of as many predictions.
    patch_size : pixels per spatial axis (one int or one per axis).
    overlap : between neighbouring patches: fraction of the patch size in [0, 1), or
        int pixels; one value or one per spatial axis.
    merge : a mode of :data:`~napari_patchwork.merge.MERGE_MODES` or
        :class:`~napari_patchwork.merge.MergeOptions` (``argmax``, ``sigma_scale``...);
        default ``gaussian`` for float outputs, ``center`` for integer (label) outputs.
    edge : ``shift`` (full-size patches, the last one moved inward), ``pad`` (the last
        patch runs past the edge, zero-padded; needed when the image is smaller than a
        patch) or ``partial`` (smaller last patches).
    chunk_bytes : block size of the lazy result (dask input), default 32 MiB.

    Returns
    -------
    numpy array for numpy input; for dask input a dask array computed block by block,
    one task per batch of patches (each patch predicted once) and one per block. The
    result has the image's spatial shape, with the predictions' channel axis (none after
    ``argmax``). ``fn`` runs once more on the first patch to learn the output layout.
    """
    if edge not in PREDICT_EDGES:
        raise MergeError(
            f"edge={edge!r} is not known here; choose one of {', '.join(PREDICT_EDGES)}."
        )
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise MergeError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
    if not callable(fn):
        raise MergeError(f"fn must be a function of one patch, got {type(fn).__name__}.")
    try:
        n_spatial = len(spatial_shape(image.shape, channel_axis))
        patch = _common.per_axis(patch_size, n_spatial, "patch_size", convert=int, error=GridError)
        grid = make_grid(
            image.shape, patch, overlap_stride(patch, overlap), edge, channel_axis=channel_axis
        )
    except GridError as err:
        raise MergeError(str(err)) from None
    reader = _PatchReader(
        grid, None if channel_axis is None else channel_axis % image.ndim, image.dtype
    )
    patch_shape = tuple(int(v) for v in grid.boxes[0, 1] - grid.boxes[0, 0])
    first = _run(fn, [reader.read(np.asarray(image[reader.slices(0)]), 0)], batch_size)[0]
    layout = PredictionLayout.of(first, patch_shape)
    if merge is None:
        merge = "center" if layout.dtype.kind in "iub" else "gaussian"
    options = as_merge_options(merge)
    if _common.is_dask(image):
        return _predict_lazy(image, fn, grid, reader, batch_size, options, layout, chunk_bytes)
    pairs = _predictions(image, fn, grid, reader, batch_size)
    return merge_region((0,) * grid.ndim, grid.shape, pairs, options, layout)


@dataclass(frozen=True)
class _PatchReader:
    """Cuts patch ``i`` of ``grid`` out of an image (full axes), zero-padding past the edge."""

    grid: PatchGrid
    channel_axis: int | None
    dtype: np.dtype

    def slices(self, i: int) -> tuple[slice, ...]:
        spatial = list(self.grid.slices(i))
        if self.channel_axis is not None:
            spatial.insert(self.channel_axis, slice(None))
        return tuple(spatial)

    def read(self, region: np.ndarray, i: int) -> np.ndarray:
        """The patch from ``region`` = ``image[self.slices(i)]``, padded to the box."""
        start, stop = self.grid.boxes[i]
        pad = [(0, int(b - a - s)) for a, b, s in zip(start, stop, self._spatial(region.shape))]
        if any(p for _, p in pad):
            if self.channel_axis is not None:
                pad.insert(self.channel_axis, (0, 0))
            region = np.pad(region, pad)
        return region

    def _spatial(self, shape: Sequence[int]) -> list[int]:
        return [s for a, s in enumerate(shape) if a != self.channel_axis]


def _run(fn: Callable, patches: list[np.ndarray], batch_size: int | None) -> list[np.ndarray]:
    """``fn`` on each patch, or on the stack of them with ``batch_size``."""
    if batch_size is None:
        return [np.asarray(fn(p)) for p in patches]
    out = np.asarray(fn(np.stack(patches)))
    if out.ndim == 0 or out.shape[0] != len(patches):
        raise MergeError(
            f"fn returned {out.shape} for a batch of {len(patches)} patches; with batch_size "
            "it must return one prediction per patch along a new first axis."
        )
    return list(out)


def _batches(grid: PatchGrid, batch_size: int | None) -> list[list[int]]:
    """Patch numbers in batches of up to ``batch_size`` consecutive patches of one shape
    (``partial`` grids have smaller patches at the edge: they go in batches of their own)."""
    sizes = grid.boxes[:, 1] - grid.boxes[:, 0]
    batches: list[list[int]] = []
    for i in range(grid.n_patches):
        batch = batches[-1] if batches else None
        if batch and len(batch) < (batch_size or 1) and np.array_equal(sizes[batch[0]], sizes[i]):
            batch.append(i)
        else:
            batches.append([i])
    return batches


def _predictions(image, fn, grid, reader, batch_size) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(box, prediction) of every patch, batch by batch (only one batch in memory)."""
    for rows in _batches(grid, batch_size):
        patches = [reader.read(np.asarray(image[reader.slices(i)]), i) for i in rows]
        yield from zip((grid.boxes[i] for i in rows), _run(fn, patches, batch_size))


@dataclass(frozen=True)
class _ChunkedPatch:
    """Where patch ``index`` lies in a dask image (``start:stop`` over all axes, clipped) and
    the offsets of the image chunks it spans, in the order their arrays are passed."""

    index: int
    start: tuple[int, ...]
    stop: tuple[int, ...]
    offsets: tuple[tuple[int, ...], ...]


def _chunked_patches(image, reader: _PatchReader, rows: list[int]):
    """The patches ``rows`` as :class:`_ChunkedPatch` plus the keys of their chunks, in order."""
    bounds = [np.cumsum((0,) + tuple(c)) for c in image.chunks]
    patches, keys = [], []
    for i in rows:
        slices = [s.indices(n)[:2] for s, n in zip(reader.slices(i), image.shape)]
        ranges = [
            range(int(np.searchsorted(b, lo, "right")) - 1, int(np.searchsorted(b, hi, "left")))
            for b, (lo, hi) in zip(bounds, slices)
        ]
        chunk_ids = list(product(*ranges))
        keys += [(image.name, *idx) for idx in chunk_ids]
        offsets = tuple(tuple(int(b[k]) for b, k in zip(bounds, idx)) for idx in chunk_ids)
        patches.append(
            _ChunkedPatch(i, tuple(lo for lo, _ in slices), tuple(hi for _, hi in slices), offsets)
        )
    return patches, keys


def _predict_batch(fn, batch_size, reader, patches, chunks) -> list[np.ndarray]:
    """One batch task of a lazy :func:`predict_tiled`: assemble the patches from their
    image chunks, then run ``fn``."""
    inputs, position = [], 0
    for patch in patches:
        shape = tuple(b - a for a, b in zip(patch.start, patch.stop))
        region = np.empty(shape, dtype=reader.dtype)
        for offset in patch.offsets:
            chunk = np.asarray(chunks[position])
            position += 1
            low = [max(a, o) for a, o in zip(patch.start, offset)]
            high = [min(b, o + n) for b, o, n in zip(patch.stop, offset, chunk.shape)]
            region[tuple(slice(lo - a, hi - a) for lo, hi, a in zip(low, high, patch.start))] = (
                chunk[tuple(slice(lo - o, hi - o) for lo, hi, o in zip(low, high, offset))]
            )
        inputs.append(reader.read(region, patch.index))
    return _run(fn, inputs, batch_size)


def _predict_lazy(image, fn, grid, reader, batch_size, options, layout, chunk_bytes) -> Any:
    """The dask graph of :func:`predict_tiled`: a task per batch, a merge task per block."""
    from dask.base import tokenize

    name = "predict-" + tokenize(image.name, fn, grid.boxes, batch_size, reader.channel_axis)
    tasks, sources = {}, [None] * grid.n_patches
    for b, rows in enumerate(_batches(grid, batch_size)):
        patches, keys = _chunked_patches(image, reader, rows)
        tasks[(name, b)] = (_predict_batch, fn, batch_size, reader, patches, keys)
        for position, i in enumerate(rows):
            sources[i] = (operator.getitem, (name, b), position)
    chunks = merge_chunks(grid.shape, grid.stride, layout, chunk_bytes or PREDICT_CHUNK_BYTES)
    blocks = merge_graph(grid.shape, grid.boxes, sources, None, options, layout, chunks)
    return blocks.array(tasks, dependencies=[image])
