"""Thumbnails of images of any size, and how their pixels are shown.

:func:`thumbnail` gives an image at most ``max_side`` px on its long side, read from the
smallest fitting level of a pyramid, block-averaged strip by strip for numpy arrays and
read with strided slices for dask arrays (a tiled or memory-mapped file then serves only
the sampled pixels), so a whole slide is never in memory. :func:`display_pixels` and
:func:`label_colors` turn pixels and label ids into colours. GUI-free.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_patchwork._common import is_dask, normalize_axis

PREVIEW_MAX_SIDE = 2000
"""Long side (px) of a patch preview picture."""
CLUSTER_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_STRIP_BYTES = 64 * 2**20  # float working memory of one strip of a block mean


class PreviewError(ValueError):
    """Bad input for a picture; the message says what to change."""


# -- thumbnails --------------------------------------------------------------------------
@dataclass(frozen=True)
class Thumbnail:
    """A reduced image: ``pixels`` ``(h, w)`` or ``(h, w, c)`` (channels last) in the
    image's dtype, ``scale`` source pixels per thumbnail pixel along y and x, and
    ``source_shape`` the full-resolution (level 0) height and width."""

    pixels: np.ndarray
    scale: tuple[float, float]
    source_shape: tuple[int, int]

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """matplotlib's ``imshow`` extent (left, right, bottom, top) in source pixels."""
        height, width = self.pixels.shape[:2]
        return (0.0, width * self.scale[1], height * self.scale[0], 0.0)


def _levels(image: Any) -> list[Any]:
    levels = list(image) if isinstance(image, (list, tuple)) else [image]
    if not levels:
        raise PreviewError("an empty list of pyramid levels; give at least one image.")
    return levels


def _plane_index(ndim: int, channel_axis: int | None, steps: Sequence[int]) -> tuple:
    """Index of the middle plane of the axes before y and x, with steps along y and x."""
    spatial = [a for a in range(ndim) if a != channel_axis]
    index: list[Any] = [slice(None)] * ndim
    if len(spatial) < 2:
        raise PreviewError(
            f"an image needs two spatial axes for a picture; this one has shape {ndim} axes "
            f"with channel_axis={channel_axis}."
        )
    for axis in spatial[:-2]:
        index[axis] = None  # filled with the middle below
    index[spatial[-2]] = slice(None, None, steps[0])
    index[spatial[-1]] = slice(None, None, steps[1])
    return tuple(index)


def _yx(shape: Sequence[int], channel_axis: int | None) -> tuple[int, int]:
    """Height and width of an array of ``shape`` (``channel_axis`` non-negative or None)."""
    spatial = [s for a, s in enumerate(shape) if a != channel_axis]
    return int(spatial[-2]), int(spatial[-1])


def source_yx(image: Any, channel_axis: int | None = None) -> tuple[int, int]:
    """Height and width of ``image`` (or of the first of its pyramid levels), without reading it."""
    shape = tuple(_levels(image)[0].shape)
    if channel_axis is not None:
        channel_axis = normalize_axis(channel_axis, len(shape), error=PreviewError)
    return _yx(shape, channel_axis)


def block_mean(plane: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor x factor`` blocks of a ``(h, w)`` or ``(h, w, c)`` array, strip by
    strip (bounded memory); blocks cut by the edge average the pixels they have. Integer
    dtypes are rounded back to the dtype, booleans become the majority."""
    if factor == 1:
        return np.asarray(plane)
    height, width = plane.shape[:2]
    channels = tuple(plane.shape[2:])
    out_h, out_w = -(-height // factor), -(-width // factor)
    dtype = np.dtype(plane.dtype)
    exact_in_float32 = dtype.itemsize == 1 and factor * factor * 255 < 2**24
    work = np.float32 if exact_in_float32 else np.float64
    out = np.empty((out_h, out_w, *channels), dtype=np.float64)
    row_bytes = factor * width * int(np.prod(channels, dtype=np.int64)) * 8
    rows = max(1, _STRIP_BYTES // max(row_bytes, 1))  # output rows per strip
    col_counts = np.minimum(factor, width - np.arange(out_w) * factor)
    for r0 in range(0, out_h, rows):
        strip = np.asarray(plane[r0 * factor : (r0 + rows) * factor])
        n_rows = -(-strip.shape[0] // factor)
        sums = np.zeros((n_rows, width, *channels), dtype=work)
        for i in range(factor):  # add the i-th row of every block: whole rows at a time
            part = strip[i::factor]
            sums[: len(part)] += part
        block_sums = np.zeros((n_rows, out_w, *channels), dtype=work)
        for j in range(factor):
            part = sums[:, j::factor]
            block_sums[:, : part.shape[1]] += part
        row_counts = np.minimum(factor, strip.shape[0] - np.arange(n_rows) * factor)
        counts = np.outer(row_counts, col_counts).reshape(n_rows, out_w, *([1] * len(channels)))
        out[r0 : r0 + n_rows] = block_sums / counts
    if dtype.kind == "b":
        return out >= 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(dtype)


def thumbnail(
    image: Any,
    max_side: int = PREVIEW_MAX_SIDE,
    channel_axis: int | None = None,
    *,
    labels: bool = False,
) -> Thumbnail:
    """A picture of ``image`` at most ``max_side`` px on its long side.

    ``image``: a numpy or dask array, or a list of pyramid levels (largest first, e.g.
    napari multiscale data or tifffile series levels; each numpy, dask or zarr-like):
    the smallest level still at least ``max_side`` px long (or the largest) is read.
    numpy input is averaged over blocks strip by strip; other input (dask, zarr) is read
    with strided slices, one sampled pixel per block, so nothing is computed whole.
    ``labels=True`` always samples (never averages label ids). Axes before y and x
    (z, t) are shown at their middle plane. The channel axis moves last.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer)) or max_side < 1:
        raise PreviewError(f"max_side must be a positive number of pixels, got {max_side!r}.")
    levels = _levels(image)
    ndim = len(levels[0].shape)
    axis = None if channel_axis is None else normalize_axis(channel_axis, ndim, error=PreviewError)
    source = _yx(levels[0].shape, axis)
    fitting = [lv for lv in levels if max(_yx(lv.shape, axis)) >= min(max_side, max(source))]
    level = min(fitting or levels[:1], key=lambda lv: max(_yx(lv.shape, axis)))
    level_yx = _yx(level.shape, axis)
    factor = max(1, math.ceil(max(level_yx) / max_side))
    strided = labels or not isinstance(level, np.ndarray)
    index = list(_plane_index(ndim, axis, (factor, factor) if strided else (1, 1)))
    for a, item in enumerate(index):
        if item is None:
            index[a] = int(level.shape[a]) // 2
    plane = level[tuple(index)]
    if is_dask(plane):
        plane = plane.compute()
    plane = np.asarray(plane)
    if axis is not None:
        kept_axes = [a for a in range(ndim) if not isinstance(index[a], int)]
        plane = np.moveaxis(plane, kept_axes.index(axis), -1)
    if not strided:
        plane = block_mean(plane, factor)
    scale = tuple(s / p for s, p in zip(source, plane.shape[:2]))
    return Thumbnail(plane, (float(scale[0]), float(scale[1])), source)


def display_pixels(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (channels last) as matplotlib shows them: uint8 grey or RGB as they are,
    anything else contrast-stretched per channel (0.5-99.5 percentiles) to floats in
    [0, 1]; two channels become red and green, more than three the first three."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[-1] == 4 and pixels.dtype == np.uint8:
        pixels = pixels[..., :3]  # RGBA: alpha is not a colour
    if pixels.dtype == np.uint8 and (pixels.ndim == 2 or pixels.shape[-1] == 3):
        return pixels
    values = pixels.astype(np.float64)
    if values.ndim == 2:
        return _stretch(values)
    channels = [_stretch(values[..., c]) for c in range(min(3, values.shape[-1]))]
    while len(channels) < 3:
        channels.append(np.zeros_like(channels[0]))
    return np.stack(channels, axis=-1)


def _stretch(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    low, high = np.percentile(finite, [0.5, 99.5])
    if high <= low:
        high = low + 1
    return np.nan_to_num(np.clip((values - low) / (high - low), 0, 1))


def label_colors(labels: np.ndarray, kind: str = "labels") -> np.ndarray:
    """RGB uint8 of a label image: ``"clusters"`` ids 1..k in :data:`CLUSTER_COLORS`,
    ``"labels"`` (instances) one hue per id spread by the golden ratio; 0 is black."""
    from matplotlib.colors import hsv_to_rgb, to_rgb

    ids = np.asarray(labels).astype(np.int64)
    top = int(ids.max(initial=0))
    if kind == "clusters":
        table = [to_rgb(CLUSTER_COLORS[(i - 1) % len(CLUSTER_COLORS)]) for i in range(1, top + 1)]
    else:
        hues = (np.arange(1, top + 1) * 0.618034) % 1.0
        table = hsv_to_rgb(np.stack([hues, np.full(top, 0.7), np.full(top, 1.0)], -1))
    lut = np.zeros((top + 1, 3), dtype=np.uint8)
    lut[1:] = np.rint(np.asarray(table).reshape(-1, 3) * 255)
    return lut[np.clip(ids, 0, top)]
