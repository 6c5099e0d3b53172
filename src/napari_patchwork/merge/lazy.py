"""Lazy merging: a dask array with one :func:`merge_region` per block."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_patchwork.merge.options import (
    MergeOptions,
    PredictionLayout,
    check_options,
    merged_layout,
)
from napari_patchwork.merge.region import merge_region


def overlapping(boxes: np.ndarray, start: Sequence[int], stop: Sequence[int]) -> np.ndarray:
    """Indices of the ``boxes`` ``(N, 2, ndim)`` that share a pixel with ``start:stop``."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 2, len(start))
    hit = np.all((boxes[:, 0] < np.asarray(stop)) & (boxes[:, 1] > np.asarray(start)), axis=1)
    return np.flatnonzero(hit)


def merge_chunks(
    spatial_shape: Sequence[int], stride: Sequence[int], layout: PredictionLayout, chunk_bytes: int
) -> tuple[int, ...]:
    """Spatial block shape for :func:`merge_lazy`: whole multiples of ``stride`` (so
    without overlap a patch is read by one block), about ``chunk_bytes`` per block."""
    from napari_patchwork.io import grow_chunks

    itemsize = np.dtype(layout.dtype).itemsize * int(layout.channels or 1)
    return grow_chunks(tuple(spatial_shape), tuple(stride), itemsize, chunk_bytes)


def merge_lazy(
    spatial_shape: Sequence[int],
    boxes: np.ndarray,
    sources: Sequence[Any],
    read: Callable[[Any], Any] | None,
    options: MergeOptions,
    layout: PredictionLayout,
    chunks: Sequence[int],
) -> Any:
    """:func:`merge_region` as a dask array with one region per block.

    ``boxes[i]`` is the box of prediction ``read(sources[i])``. Each block's task holds
    only the sources of the patches that overlap it (e.g. file paths), so blocks read
    only their own patch files, and ``dask.distributed`` workers can compute them
    (``read`` must then be importable: a module-level function). ``chunks``: the spatial
    block shape (see :func:`merge_chunks`).
    """
    return merge_graph(spatial_shape, boxes, sources, read, options, layout, chunks).array()


@dataclass(frozen=True)
class MergeGraph:
    """The dask graph of a lazy merge: one task per block (see :func:`merge_graph`)."""

    name: str
    graph: dict
    chunks: tuple[tuple[int, ...], ...]
    dtype: np.dtype

    def array(self, graph: dict | None = None, dependencies: Sequence[Any] = ()) -> Any:
        """The dask array of the blocks (with ``graph``: the tasks they depend on too)."""
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph

        tasks = self.graph if graph is None else {**graph, **self.graph}
        return da.Array(
            HighLevelGraph.from_collections(self.name, tasks, dependencies=list(dependencies)),
            self.name,
            self.chunks,
            dtype=self.dtype,
            meta=np.empty((0,) * len(self.chunks), dtype=self.dtype),
        )


def merge_graph(
    spatial_shape: Sequence[int],
    boxes: np.ndarray,
    sources: Sequence[Any],
    read: Callable[[Any], Any] | None,
    options: MergeOptions,
    layout: PredictionLayout,
    chunks: Sequence[int],
) -> MergeGraph:
    """The block tasks of :func:`merge_lazy`. With ``read=None`` each source is the
    prediction itself or a dask task that gives it (for predictions computed in the
    same graph)."""
    import dask.array as da
    from dask.base import tokenize

    check_options(options, layout)
    out = merged_layout(options, layout)
    boxes = np.asarray(boxes, dtype=np.int64)
    spatial_chunks = da.core.normalize_chunks(tuple(chunks), tuple(spatial_shape))
    name = "merge-" + tokenize(spatial_shape, boxes, list(sources), read, options, layout, chunks)
    bounds = [np.cumsum((0,) + c) for c in spatial_chunks]
    graph = {}
    for index in np.ndindex(*(len(c) for c in spatial_chunks)):
        start = [int(b[i]) for b, i in zip(bounds, index)]
        stop = [int(b[i + 1]) for b, i in zip(bounds, index)]
        rows = overlapping(boxes, start, stop).tolist()
        key = list(index)
        if out.channel_axis is not None:
            key.insert(out.channel_axis, 0)
        graph[(name, *key)] = (
            _merged_block, start, stop, boxes[rows], [sources[r] for r in rows], read,
            options, layout,
        )  # fmt: skip
    out_chunks = list(spatial_chunks)
    if out.channel_axis is not None:
        out_chunks.insert(out.channel_axis, (int(out.channels),))
    return MergeGraph(name, graph, tuple(out_chunks), out.dtype)


def _merged_block(start, stop, boxes, sources, read, options, layout) -> np.ndarray:
    """One block of :func:`merge_lazy`."""
    pairs = ((box, source if read is None else read(source)) for box, source in zip(boxes, sources))
    return merge_region(start, stop, pairs, options, layout)
