"""Pixel-cluster segmentation: k-means on pixel features, fast and reproducible.

Pure numpy / scikit-learn / dask, no napari, no Qt.

How it works
------------
1. **Features.** Every pixel becomes a feature vector: its channel values
   (RGB, grayscale, or any number of channels on any ``channel_axis``),
   optionally Gaussian-smoothed (``sigma``), and optionally its position
   (``spatial_weight`` > 0, SLIC-like compactness).
2. **Scaling.** Channel values are centred on their mean and divided by a
   standard deviation, both measured on the fitted sample:

   * ``channel_scaling="shared"`` (default): one standard deviation for all
     channels (the root mean square of the per-channel ones). Distances keep the
     proportions of the raw values, so the clusters are those of plain k-means on
     the raw pixels (the classic colour clustering of RGB photos; z-scoring the
     channels of the bundled IHC photo instead changed the clusters: ARI 0.81).
   * ``channel_scaling="per_channel"``: each channel divided by its own standard
     deviation (z-score), for channels in unrelated units (fluorescence markers).

   Spatial features are pixel positions in physical units (``index * scale``,
   like SLIC's ``spacing``) divided by the expected cluster spacing
   ``S = (physical area or volume / n_clusters) ** (1 / ndim)`` and multiplied
   by ``spatial_weight``: with weight 1, moving one cluster spacing costs as much
   as one standard deviation of intensity.
3. **Fit on a sample.** scikit-learn :class:`~sklearn.cluster.KMeans` runs on a
   reproducible random sample of ``sample_size`` pixels from inside the ROI
   (``random_state`` seeds the sample and k-means), coarse to fine: the best of
   ``n_init`` k-means++ runs on 5,000 of them, refined by Lloyd on the whole sample.
4. **Assign every pixel** to its nearest centre, in blocks of at most 65,536
   pixels in float32 on a thread pool (one small matrix product and a running
   minimum per block), so memory stays close to the size of the labels; a dask
   image stays lazy (``map_blocks``).
5. **Stable ids.** Clusters are numbered 1..k by :data:`ID_ORDER`: ascending mean
   channel value of the centre in image units (1 = darkest). 0 is only used for
   pixels outside the ROI and for pixels with a NaN or infinite channel value. Labels
   are ``uint8`` for k <= 255, else ``uint16``.

**NaN and infinite pixels** (``nan_pixels``): by default (``"error"``) a NaN or
infinite pixel inside the ROI is bad input and raises :class:`ClusterError` saying how
to proceed: when it is drawn into the fitting sample, or when its block is labelled
(for numpy input, before anything is returned; for dask input, when that block is
computed: a lazy image cannot be checked without computing all of it). With
``nan_pixels="background"`` they are 'no data' instead, the same for numpy and dask:
left out of the fit and labelled 0, like pixels outside the ROI. An image or ROI whose
sampled pixels are all NaN/inf is refused either way.

The fitted :class:`ClusterModel` (centres, scaling, feature settings) saves to a
small JSON file and re-applies to other images with :meth:`ClusterModel.predict`,
giving the same ids for the same colours.
"""

from __future__ import annotations

import json
import math
import os
import threading
import warnings
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import islice
from pathlib import Path
from types import EllipsisType
from typing import Any, Literal, get_args

import numpy as np

from napari_patchwork._common import is_dask, normalize_axis, per_axis, rescaled, run_steps

ChannelScaling = Literal["shared", "per_channel"]
CHANNEL_SCALINGS: tuple[str, ...] = get_args(ChannelScaling)

DEFAULT_SAMPLE_SIZE = 50_000
"""Pixels k-means is fitted on (all pixels when the ROI is smaller)."""

MAX_CLUSTERS = int(np.iinfo(np.uint16).max)

ID_ORDER = (
    "ascending mean channel value of the centre in image units (1 = darkest); "
    "ties (within 1e-4 standard deviations) broken by the channel values in channel order, "
    "then by position"
)
"""The documented rule that numbers clusters 1..k."""

NAN_PIXELS = ("error", "background")
"""What NaN/inf pixels inside the ROI are: bad input (default), or background (label 0)."""

MODEL_FORMAT = "napari-patchwork/cluster-model"
MODEL_FORMAT_VERSION = 1

_SCORE_BYTES_PER_BLOCK = 1 << 21
"""Bytes of float32 distances per block: sets the block size for large k."""
_MAX_BLOCK_PIXELS = 1 << 16
_COARSE_PIXELS_PER_CLUSTER = 100
_COARSE_SAMPLE = 5_000
"""Rows of the sample k-means first runs on: at least this, at least 100 per cluster
(see :func:`_kmeans`)."""


class ClusterError(ValueError):
    """Bad clustering input or parameters; the message says what to change."""


# --------------------------------------------------------------------------- native threads


class _SingleThreaded:
    """Context manager: BLAS and OpenMP libraries run single-threaded while any user is inside.

    We parallelise over blocks ourselves, and k-means runs on a sample small enough
    for one core. Measured on a 2-core machine with one core busy elsewhere: the
    same k-means fit took 17 ms single-threaded and 120-300 ms with two OpenMP
    threads; spinning OpenBLAS threads slowed block products 10x (re-measured for the
    whole 2048 x 2048 RGB benchmark on a loaded 2-core machine: median 51 ms with this
    limit, 82 ms without). Re-entrant and shared between threads: the original limits
    come back when the last user leaves. ``threadpoolctl.threadpool_limits`` alone does
    not do that: dask runs :func:`_label_dask_block` in several threads at once, and the
    first to leave would restore the limits while the others still run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._limiter: Any = None
        self._controller: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1)
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


_single_threaded = _SingleThreaded()


# --------------------------------------------------------------------------- input checks


def _per_spatial_axis(value: Any, ndim: int, name: str, *, allow_zero: bool) -> tuple[float, ...]:
    """Broadcast a number to ``ndim`` spatial axes or check a sequence has one per axis."""
    values = per_axis(value, ndim, name, error=ClusterError)
    low_ok = (lambda v: v >= 0) if allow_zero else (lambda v: v > 0)
    if not all(math.isfinite(v) and low_ok(v) for v in values):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ClusterError(f"{name} must be finite and {bound} on every axis, got {values}.")
    return values


def _check_n_clusters(n_clusters: Any) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ClusterError(f"n_clusters must be an integer, got {n_clusters!r}.")
    if n_clusters < 2:
        raise ClusterError(f"n_clusters={n_clusters}: clustering needs at least 2 clusters.")
    if n_clusters > MAX_CLUSTERS:
        raise ClusterError(f"n_clusters={n_clusters} is too many; use at most {MAX_CLUSTERS}.")
    return int(n_clusters)


def labels_dtype(n_clusters: int) -> np.dtype:
    """``uint8`` for up to 255 clusters, else ``uint16`` (0 is kept for 'outside the ROI')."""
    return np.dtype(np.uint8) if n_clusters <= np.iinfo(np.uint8).max else np.dtype(np.uint16)


@dataclass(frozen=True, eq=False)
class _Pixels:
    """An image prepared for clustering: channel axis last, smoothed, ROI as a bool mask."""

    values: Any  # (*spatial_shape, n_channels), numpy or dask
    channel_axis: int | None  # as given by the caller (e.g. -1), None for one channel
    image_ndim: int  # of the original image
    scale: tuple[float, ...]  # physical pixel size per spatial axis
    mask: np.ndarray | None  # bool, spatial_shape; None = every pixel
    dtype: np.dtype  # of the original image

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.values.shape[:-1])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[-1])

    @property
    def lazy(self) -> bool:
        return is_dask(self.values)

    @property
    def n_inside(self) -> int:
        """Pixels inside the ROI."""
        return math.prod(self.spatial_shape) if self.mask is None else int(self.mask.sum())


def _prepare(
    image: Any,
    *,
    channel_axis: int | None,
    scale: Sequence[float] | float | None,
    sigma: Sequence[float] | float,
    mask: Any,
    max_channels: int,
) -> _Pixels:
    """Validate the inputs and bring the image to ``(*spatial, channels)`` order."""
    lazy = is_dask(image)
    if not lazy:
        image = np.asarray(image)
    dtype = np.dtype(image.dtype)
    if dtype == bool:
        image = image.astype(np.uint8)
    elif not np.issubdtype(dtype, np.integer) and not np.issubdtype(dtype, np.floating):
        raise ClusterError(
            f"the image has dtype {dtype}; cluster an integer or floating-point image "
            f"(convert complex data to magnitudes first)."
        )
    if image.ndim == 0:
        raise ClusterError("the image is a single number; give an array of pixels.")
    if channel_axis is None:
        values = image[..., None]
    else:
        axis = normalize_axis(channel_axis, image.ndim, "channel_axis", ClusterError)
        if image.ndim < 2:
            raise ClusterError(
                "the image has a single axis, so a channel axis leaves no spatial axis; "
                "use channel_axis=None."
            )
        n_channels = image.shape[axis]
        if n_channels > max_channels:
            raise ClusterError(
                f"channel_axis={channel_axis} has {n_channels} entries, which looks like a "
                f"spatial axis (image shape {tuple(image.shape)}); RGB images use channel_axis=-1, "
                f"grayscale images channel_axis=None (or raise max_channels={max_channels})."
            )
        values = image if axis == image.ndim - 1 else _moveaxis(image, axis, -1)
    spatial = tuple(int(s) for s in values.shape[:-1])
    if math.prod(spatial) == 0 or values.shape[-1] == 0:
        raise ClusterError(f"the image is empty (shape {tuple(image.shape)}).")
    pixel_size = _per_spatial_axis(
        1.0 if scale is None else scale, len(spatial), "scale", allow_zero=False
    )
    sigma_px = tuple(
        s / p
        for s, p in zip(
            _per_spatial_axis(sigma, len(spatial), "sigma", allow_zero=True), pixel_size
        )
    )
    if any(sigma_px):
        values = _smooth(values, sigma_px)
    channel_axis = None if channel_axis is None else int(channel_axis)
    return _Pixels(
        values, channel_axis, image.ndim, pixel_size, _prepare_mask(mask, spatial), dtype
    )


def _moveaxis(array: Any, source: int, destination: int) -> Any:
    if is_dask(array):
        import dask.array as da

        return da.moveaxis(array, source, destination)
    return np.moveaxis(array, source, destination)


def _smooth(values: Any, sigma_px: Sequence[float]) -> Any:
    """Gaussian-smooth each channel over the spatial axes (sigma in pixels), float32 out."""
    from scipy import ndimage

    sigma_all = (*sigma_px, 0.0)
    truncate = 4.0

    def smooth(block: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(
            block, sigma_all, output=np.float32, mode="reflect", truncate=truncate
        )

    if not is_dask(values):
        return smooth(values)
    # scipy's kernel radius is int(truncate * sigma + 0.5); dask's 'reflect' boundary
    # mirrors like scipy's 'reflect' mode, so blocks match the in-memory result.
    depth = {axis: int(truncate * s + 0.5) for axis, s in enumerate(sigma_all)}
    values = values.rechunk({values.ndim - 1: -1})
    return values.map_overlap(smooth, depth=depth, boundary="reflect", dtype=np.float32)


def _prepare_mask(mask: Any, spatial_shape: tuple[int, ...]) -> np.ndarray | None:
    """The ROI as an in-memory bool array (non-zero = inside; a dask mask is computed,
    1 byte per pixel), or None when it covers everything."""
    if mask is None:
        return None
    roi = np.asarray(mask)
    if roi.shape != spatial_shape:
        raise ClusterError(
            f"the ROI mask has shape {roi.shape} but the image's spatial shape is {spatial_shape}; "
            f"draw the ROI on this image (same size, no channel axis)."
        )
    roi = roi != 0
    if not roi.any():
        raise ClusterError(
            "the ROI mask is empty (no non-zero pixel); paint the region to cluster."
        )
    return None if roi.all() else roi


# --------------------------------------------------------------------------- blocks and samples


def _block_slices(shape: Sequence[int], max_pixels: int) -> Iterator[tuple[slice, ...]]:
    """C-order blocks of at most ``max_pixels`` pixels covering an array of ``shape``.

    Trailing axes are taken whole while they fit, the next axis is cut into runs,
    leading axes are stepped one index at a time.
    """
    inner = 1
    for split in range(len(shape) - 1, -1, -1):
        if inner * shape[split] > max_pixels:
            break
        inner *= shape[split]
    else:
        yield tuple(slice(0, n) for n in shape)
        return
    step = max(1, max_pixels // inner)
    whole = tuple(slice(0, n) for n in shape[split + 1 :])
    for lead in np.ndindex(*shape[:split]):
        head = tuple(slice(i, i + 1) for i in lead)
        for start in range(0, shape[split], step):
            yield (*head, slice(start, min(start + step, shape[split])), *whole)


def _stratified_ranks(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` sorted distinct integers in ``[0, n)``: one at random in each of ``size``
    equal runs (a jittered systematic sample).

    O(size) and already sorted (``rng.choice(n, size, replace=False)`` shuffles all
    ``n`` when ``size > n / 50``), and it covers the image evenly.
    """
    bounds = (np.arange(size + 1, dtype=np.float64) * (n / size)).astype(np.int64)
    return bounds[:-1] + (rng.random(size) * np.diff(bounds)).astype(np.int64)


def _sample_flat_indices(pixels: _Pixels, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted flat (C-order) indices of ``size`` distinct pixels inside the ROI.

    All ROI pixels when there are no more than ``size``, else a stratified random
    sample (:func:`_stratified_ranks`) of them. With a mask, the ranks
    drawn among the ROI pixels are mapped to positions block by block, so no
    index array of the whole image is built.
    """
    n_inside = pixels.n_inside
    ranks = None if size >= n_inside else _stratified_ranks(n_inside, size, rng)
    if pixels.mask is None:
        return np.arange(n_inside, dtype=np.int64) if ranks is None else ranks.astype(np.int64)
    flat_mask = pixels.mask.ravel()
    if ranks is None:
        return np.flatnonzero(flat_mask)
    out = np.empty(len(ranks), dtype=np.int64)
    taken = seen = 0
    for start in range(0, flat_mask.size, _MAX_BLOCK_PIXELS):
        block = flat_mask[start : start + _MAX_BLOCK_PIXELS]
        n_true = int(np.count_nonzero(block))
        stop = int(np.searchsorted(ranks, seen + n_true))
        if stop > taken:
            out[taken:stop] = np.flatnonzero(block)[ranks[taken:stop] - seen] + start
        taken, seen = stop, seen + n_true
    return out


def _nan_error(n_bad: int, where: str) -> ClusterError:
    return ClusterError(
        f"{n_bad:,} pixel(s) {where} are NaN or infinite; replace them (e.g. numpy.nan_to_num), "
        f"draw a ROI mask that leaves them out, or pass nan_pixels='background' to label them 0."
    )


def _check_nan_pixels(nan_pixels: str) -> str:
    if nan_pixels not in NAN_PIXELS:
        raise ClusterError(f"nan_pixels={nan_pixels!r}; choose one of {', '.join(NAN_PIXELS)}.")
    return nan_pixels


def _gather_finite(
    pixels: _Pixels, flat: np.ndarray, with_coords: bool, nan_pixels: str = "error"
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Channel values ``(m, n_channels)`` of the pixels at ``flat`` whose channels are all
    finite, and (if asked) their indices along each spatial axis. NaN/inf pixels raise
    (``nan_pixels="error"``) or are left out (``"background"``)."""
    values = pixels.values
    if not pixels.lazy and values.flags.c_contiguous:  # rows: faster than per-axis indexing
        gathered = values.reshape(-1, pixels.n_channels).take(flat, axis=0)
    else:
        index = np.unravel_index(flat, pixels.spatial_shape)
        gathered = np.asarray(values.vindex[index].compute()) if pixels.lazy else values[index]
    if np.issubdtype(gathered.dtype, np.inexact):
        finite = np.isfinite(gathered).all(axis=1)
        if not finite.all():
            if nan_pixels == "error":
                raise _nan_error(int((~finite).sum()), "of the fitting sample")
            gathered, flat = gathered[finite], flat[finite]
    return gathered, np.unravel_index(flat, pixels.spatial_shape) if with_coords else ()


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, eq=False)
class ClusterModel:
    """A fitted clustering: everything needed to label other pixels the same way.

    Attributes
    ----------
    centers : ``(k, n_features)`` float32 cluster centres in the scaled feature
        space (channels first, then spatial features), row ``i`` is cluster id ``i + 1``.
    channel_offset, channel_scale : ``(n_channels,)`` float64; scaled channel
        feature = ``(value - offset) / scale`` (see the module docstring).
    channel_axis : the channel axis given for the fitted image (e.g. -1 for RGB, so the
        model also fits a stack of RGB frames), None for one channel.
    channel_scaling : ``"shared"`` or ``"per_channel"``.
    spatial_weight : weight of the position features (0 = colour only).
    spatial_axes : spatial axes whose position is a feature, as negative indices
        into the spatial shape (channel axis removed), e.g. ``(-2, -1)`` for y, x.
    spatial_length : the cluster spacing ``S`` in physical units that positions are divided by.
    scale : physical pixel size per spatial axis of the fitted image.
    sigma : Gaussian smoothing in physical units applied before clustering (0 = none).
    """

    centers: np.ndarray
    channel_offset: np.ndarray
    channel_scale: np.ndarray
    channel_axis: int | None = None
    channel_scaling: str = "shared"
    spatial_weight: float = 0.0
    spatial_axes: tuple[int, ...] = ()
    spatial_length: float = 1.0
    scale: tuple[float, ...] = (1.0, 1.0)
    sigma: float | tuple[float, ...] = 0.0

    @property
    def n_clusters(self) -> int:
        return int(self.centers.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.channel_offset.shape[0])

    @property
    def labels_dtype(self) -> np.dtype:
        return labels_dtype(self.n_clusters)

    @property
    def centers_image(self) -> np.ndarray:
        """``(k, n_channels)`` float64 centres in image units (intensities), row ``i`` = id ``i + 1``."""
        channels = self.centers[:, : self.n_channels].astype(np.float64)
        return channels * self.channel_scale + self.channel_offset

    # --- features and assignment ---------------------------------------------------------

    def _position_factors(self, scale: Sequence[float]) -> np.ndarray:
        """Feature per pixel index step along each of ``spatial_axes``."""
        return np.array(
            [self.spatial_weight * scale[a] / self.spatial_length for a in self.spatial_axes],
            dtype=np.float32,
        )

    def features(
        self,
        values: np.ndarray,
        coords: Sequence[np.ndarray | None] | None = None,
        scale: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Scaled float32 features ``(n, n_features)`` of ``n`` pixels.

        ``values`` is ``(n, n_channels)`` in image units; ``coords`` one array of
        ``n`` pixel indices per spatial axis (only those in ``spatial_axes`` are
        read; needed when ``spatial_weight`` > 0) and
        ``scale`` the pixel size per spatial axis (default: the fitted one).
        """
        n_channels = self.n_channels
        feats = np.empty((len(values), n_channels + len(self.spatial_axes)), dtype=np.float32)
        channel_feats = feats[:, :n_channels]
        np.subtract(
            values, self.channel_offset.astype(np.float32), out=channel_feats, casting="unsafe"
        )
        channel_feats *= (1.0 / self.channel_scale).astype(np.float32)
        if self.spatial_axes:
            if coords is None:
                raise ClusterError("this model uses pixel positions: pass coords with the values.")
            factors = self._position_factors(self.scale if scale is None else scale)
            for column, (axis, factor) in enumerate(
                zip(self.spatial_axes, factors), start=n_channels
            ):
                np.multiply(coords[axis], factor, out=feats[:, column], casting="unsafe")
        return feats

    def _scorer(
        self, scale: Sequence[float], dtype: np.dtype, nan_pixels: str = "error"
    ) -> _Scorer:
        """The nearest-centre computation for pixels of ``dtype`` with pixel size ``scale``."""
        return _Scorer.from_model(self, scale, dtype, nan_pixels)

    def _check_image(self, pixels: _Pixels) -> None:
        if pixels.n_channels != self.n_channels:
            raise ClusterError(
                f"the model was fitted on {self.n_channels} channel(s) but the image has "
                f"{pixels.n_channels} along channel_axis={pixels.channel_axis}; "
                f"pass the channel_axis of the image (None for grayscale)."
            )
        ndim = len(pixels.spatial_shape)
        if any(a < -ndim for a in self.spatial_axes):
            raise ClusterError(
                f"the model uses positions along spatial axes {self.spatial_axes} but the image "
                f"has only {ndim} spatial axes."
            )

    def _predict_steps(
        self, pixels: _Pixels, n_threads: int | None = None, nan_pixels: str = "error"
    ) -> Generator[float, None, Any]:
        """Label every pixel; yields the fraction of blocks done; returns the labels.

        numpy in, numpy out; dask in, lazy dask out (nothing yielded). NaN/inf pixels
        in the ROI raise or get 0, as ``nan_pixels`` says.
        Blocks run on ``n_threads`` threads (default: all CPUs), at most two per thread
        submitted ahead, so a caller that stops pulling progress (Cancel) stops the work
        after the blocks in flight.
        """
        self._check_image(pixels)
        if pixels.lazy:
            return self._predict_lazy(pixels, nan_pixels)
        scorer = self._scorer(pixels.scale, pixels.values.dtype, nan_pixels)
        labels = np.zeros(pixels.spatial_shape, dtype=self.labels_dtype)
        blocks = list(_block_slices(pixels.spatial_shape, scorer.block_pixels))

        def label(block: tuple[slice, ...]) -> None:
            roi = None if pixels.mask is None else pixels.mask[block]
            labels[block] = scorer.label_block(pixels.values[block], [s.start for s in block], roi)

        n_threads = n_threads or os.cpu_count() or 1
        waiting = iter(blocks)
        with _single_threaded, ThreadPoolExecutor(max_workers=n_threads) as pool:
            in_flight = deque(pool.submit(label, b) for b in islice(waiting, 2 * n_threads))
            try:
                for done in range(1, len(blocks) + 1):
                    in_flight.popleft().result()
                    in_flight.extend(pool.submit(label, b) for b in islice(waiting, 1))
                    yield done / len(blocks)
            finally:  # closed (cancelled) or failed: drop the blocks not started
                for future in in_flight:
                    future.cancel()
        return labels

    def _predict_lazy(self, pixels: _Pixels, nan_pixels: str = "error") -> Any:
        import dask.array as da

        values = pixels.values.rechunk({pixels.values.ndim - 1: -1})
        spatial_chunks = values.chunks[:-1]
        args = [values]
        if pixels.mask is not None:  # a trailing length-1 axis lines it up with the channel axis
            args.append(da.from_array(pixels.mask[..., None], chunks=(*spatial_chunks, (1,))))
        return da.map_blocks(
            _label_dask_block,
            *args,
            scorer=self._scorer(pixels.scale, values.dtype, nan_pixels),
            dtype=self.labels_dtype,
            drop_axis=values.ndim - 1,
            chunks=spatial_chunks,
            meta=np.empty((0,) * len(spatial_chunks), dtype=self.labels_dtype),
        )

    def predict(
        self,
        image: Any,
        *,
        channel_axis: int | None | EllipsisType = ...,
        mask: Any = None,
        scale: Sequence[float] | float | None = None,
        max_channels: int = 64,
        nan_pixels: str = "error",
    ) -> Any:
        """Label ``image`` with this model: ids ``1..k`` (0 outside ``mask``), shape = spatial shape.

        ``nan_pixels``: NaN/inf pixels in the ROI raise (``"error"``) or get 0
        (``"background"``); see the module docstring.

        ``channel_axis`` defaults to the fitted image's. The model's smoothing and
        positions apply to the spatial axes it was fitted on, aligned from the last
        axis: a model fitted on 2D frames labels each frame of a stack exactly as it
        labels that frame alone. ``scale`` (physical pixel size per spatial axis)
        defaults to the fitted one (1 on extra leading axes). numpy in, numpy out;
        dask in, lazy dask out.
        """
        image = image if is_dask(image) else np.asarray(image)
        channel_axis = self.channel_axis if channel_axis is ... else channel_axis
        n_spatial = image.ndim - (channel_axis is not None)
        fitted_sigma = (
            (self.sigma,) * len(self.scale) if np.ndim(self.sigma) == 0 else tuple(self.sigma)
        )
        pixels = _prepare(
            image,
            channel_axis=channel_axis,
            scale=_trailing(self.scale, n_spatial, 1.0) if scale is None else scale,
            sigma=_trailing(fitted_sigma, n_spatial, 0.0),
            mask=mask,
            max_channels=max_channels,
        )
        return run_steps(self._predict_steps(pixels, nan_pixels=_check_nan_pixels(nan_pixels)))

    # --- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible description (format tag included), the inverse of :meth:`from_dict`."""
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_FORMAT_VERSION,
            "id_order": ID_ORDER,
            "centers": self.centers.tolist(),
            "channel_offset": self.channel_offset.tolist(),
            "channel_scale": self.channel_scale.tolist(),
            "channel_axis": self.channel_axis,
            "channel_scaling": self.channel_scaling,
            "spatial_weight": self.spatial_weight,
            "spatial_axes": list(self.spatial_axes),
            "spatial_length": self.spatial_length,
            "scale": list(self.scale),
            "sigma": self.sigma if np.ndim(self.sigma) == 0 else list(self.sigma),
            "centers_image": self.centers_image.tolist(),  # for people reading the file
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterModel:
        """Rebuild a model from :meth:`to_dict` output; ClusterError if it is not one."""
        if data.get("format") != MODEL_FORMAT:
            raise ClusterError(
                f"not a cluster model (format tag {data.get('format')!r}, expected {MODEL_FORMAT!r})."
            )
        version = data.get("version", 0)
        if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
            raise ClusterError(
                f"cluster model format version {version!r} is newer than this napari-patchwork "
                f"understands ({MODEL_FORMAT_VERSION}); upgrade napari-patchwork."
            )
        try:
            model = cls(
                centers=np.asarray(data["centers"], dtype=np.float32),
                channel_offset=np.asarray(data["channel_offset"], dtype=np.float64),
                channel_scale=np.asarray(data["channel_scale"], dtype=np.float64),
                channel_axis=data["channel_axis"],
                channel_scaling=data["channel_scaling"],
                spatial_weight=float(data["spatial_weight"]),
                spatial_axes=tuple(int(a) for a in data["spatial_axes"]),
                spatial_length=float(data["spatial_length"]),
                scale=tuple(float(s) for s in data["scale"]),
                sigma=data["sigma"] if np.ndim(data["sigma"]) == 0 else tuple(data["sigma"]),
            )
        except KeyError as missing:
            raise ClusterError(
                f"the cluster model has no {missing} entry; save it again with ClusterModel.save."
            ) from None
        n_features = model.n_channels + len(model.spatial_axes)
        if (
            model.centers.ndim != 2
            or model.centers.shape[1] != n_features
            or model.channel_scale.shape != model.channel_offset.shape
        ):
            raise ClusterError(
                f"inconsistent cluster model: centres {model.centers.shape} for {model.n_channels} "
                f"channel(s) and {len(model.spatial_axes)} spatial feature(s)."
            )
        return model

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as a small JSON file; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClusterModel:
        """Read a model written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ClusterError(f"{path} is not a JSON cluster model ({err}).") from None
        if not isinstance(data, dict):
            raise ClusterError(f"{path} is not a cluster model (expected a JSON object).")
        return cls.from_dict(data)


def _trailing(values: Sequence[float], n: int, fill: float) -> tuple[float, ...]:
    """The last ``n`` of ``values``, padded in front with ``fill`` if there are fewer."""
    values = tuple(values)
    return (fill,) * (n - len(values)) + values[max(0, len(values) - n) :]


def _label_dask_block(
    values: np.ndarray,
    roi: np.ndarray | None = None,
    *,
    scorer: _Scorer,
    block_info: dict | None = None,
) -> np.ndarray:
    """``map_blocks`` body: label one dask block (NaN/inf pixels get 0).

    ``values`` is ``(*block_shape, n_channels)``, ``roi`` ``(*block_shape, 1)``.
    """
    origin = (
        [start for start, _ in block_info[0]["array-location"][:-1]]
        if block_info
        else [0] * (values.ndim - 1)
    )
    labels = np.empty(values.shape[:-1], dtype=scorer.labels_dtype)
    with _single_threaded:
        for block in _block_slices(labels.shape, scorer.block_pixels):
            start = [o + s.start for o, s in zip(origin, block)]
            labels[block] = scorer.label_block(
                values[block], start, None if roi is None else roi[block][..., 0]
            )
    return labels


_FLOAT32_EXACT = tuple(
    np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.float16, np.float32)
)


@dataclass(frozen=True, eq=False)
class _Scorer:
    """Nearest centre for raw pixel values, as one float32 matrix product per block.

    For scaled features ``f`` the nearest centre minimises ``|f - c|^2 - |f|^2 =
    |c|^2 - 2 c.f``, which is linear in the raw values ``x`` and pixel indices ``r``:
    ``score_j = bias_j + channel_weights[j].x + position_weights[j].r``. Raw values of
    dtypes exact in float32 (8/16-bit, float32) go straight into the product; wider
    dtypes are centred on the channel offset in float64 first, to keep precision.
    """

    channel_weights: np.ndarray  # (k, n_channels) float32
    bias: np.ndarray  # (k,) float32
    position_weights: np.ndarray  # (k, len(spatial_axes)) float32
    spatial_axes: tuple[int, ...]
    centre_first: np.ndarray | None  # (n_channels,) float64 offset subtracted before the product
    labels_dtype: np.dtype
    nan_pixels: str = "error"  # see NAN_PIXELS

    @classmethod
    def from_model(
        cls, model: ClusterModel, scale: Sequence[float], dtype: np.dtype, nan_pixels: str = "error"
    ) -> _Scorer:
        centers = model.centers.astype(np.float64)
        n_channels = model.n_channels
        channel_centers = centers[:, :n_channels] / model.channel_scale  # per raw unit
        exact = np.dtype(dtype) in _FLOAT32_EXACT
        bias = np.einsum("ij,ij->i", centers, centers)
        if exact:
            bias += 2 * channel_centers @ model.channel_offset
        return cls(
            channel_weights=(-2 * channel_centers).astype(np.float32),
            bias=bias.astype(np.float32),
            position_weights=(-2 * centers[:, n_channels:] * model._position_factors(scale)).astype(
                np.float32
            ),
            spatial_axes=model.spatial_axes,
            centre_first=None if exact else model.channel_offset,
            labels_dtype=model.labels_dtype,
            nan_pixels=nan_pixels,
        )

    @property
    def block_pixels(self) -> int:
        """Pixels per block: ~2 MiB of float32 scores, at most 65536 pixels."""
        n_clusters = len(self.bias)
        return int(np.clip(_SCORE_BYTES_PER_BLOCK // (4 * n_clusters), 1024, _MAX_BLOCK_PIXELS))

    def label_block(
        self, values: np.ndarray, origin: Sequence[int], roi: np.ndarray | None
    ) -> np.ndarray:
        """Ids (0 outside ``roi`` and for NaN/inf pixels) of a block ``(*block_shape,
        n_channels)`` whose first pixel is at ``origin``."""
        block_shape = values.shape[:-1]
        raw = values.reshape(-1, values.shape[-1])
        if self.centre_first is not None:
            raw = (raw - self.centre_first).astype(np.float32)
        else:
            raw = raw.astype(np.float32, copy=False)
        scores = self.channel_weights @ raw.T  # (k, n)
        scores += self.bias[:, None]
        if self.spatial_axes:
            ndim = len(block_shape)
            grid = scores.reshape(-1, *block_shape)
            for weights, axis in zip(self.position_weights.T, self.spatial_axes):
                axis %= ndim
                along = np.arange(origin[axis], origin[axis] + block_shape[axis], dtype=np.float32)
                shape = [-1 if a == axis + 1 else 1 for a in range(ndim + 1)]
                grid += weights.reshape(-1, *[1] * ndim) * along.reshape(shape)
        ids, best = _argmin_plus_one(scores, self.labels_dtype)
        if not np.issubdtype(values.dtype, np.integer):
            finite = np.isfinite(best)  # a NaN/inf channel makes every score NaN/inf
            if not finite.all():
                bad = ~finite if roi is None else ~finite & roi.ravel()
                if self.nan_pixels == "error" and bad.any():
                    raise _nan_error(int(bad.sum()), f"in the block at {tuple(origin)}")
                ids[~finite] = 0
        if roi is not None:
            ids[~roi.ravel()] = 0
        return ids.reshape(block_shape)


def _argmin_plus_one(scores: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Row index + 1 of the minimum of each column of ``scores`` (k, n), and the minimum.

    A running minimum over the k rows, with ufuncs only (they release the GIL, so
    blocks run in parallel): a row that beats the best so far has a larger index
    than any id assigned so far, so ``ids = max(ids, better * (row + 1))``. About
    twice as fast as ``argmin(axis=0)`` on image data. NaN scores propagate to the
    minimum (so NaN pixels can be found); ties go to the lower index like ``argmin``.
    """
    n = scores.shape[1]
    best = scores[0].copy()
    ids = np.ones(n, dtype=dtype)
    better = np.empty(n, dtype=bool)
    candidate = np.empty(n, dtype=dtype)
    for row in range(1, scores.shape[0]):
        np.less(scores[row], best, out=better)
        np.multiply(better, dtype.type(row + 1), out=candidate)
        np.maximum(ids, candidate, out=ids)
        np.minimum(best, scores[row], out=best)
    return ids, best


# --------------------------------------------------------------------------- fitting


def _resolve_spatial_axes(
    spatial_axes: Sequence[int] | None, image_ndim: int, channel_axis: int | None
) -> tuple[int, ...]:
    """Image axes -> negative indices into the spatial shape (channel axis removed)."""
    channel = None if channel_axis is None else channel_axis % image_ndim
    spatial = [a for a in range(image_ndim) if a != channel]
    if spatial_axes is None:
        chosen = spatial
    else:
        chosen = sorted(
            {normalize_axis(a, image_ndim, "spatial_axes", ClusterError) for a in spatial_axes}
        )
        if channel in chosen:
            raise ClusterError(
                f"spatial_axes {tuple(spatial_axes)} includes the channel axis {channel_axis}."
            )
        if not chosen:
            raise ClusterError(
                "spatial_axes is empty; give the axes whose position is a feature, or None for all."
            )
    return tuple(spatial.index(a) - len(spatial) for a in chosen)


@dataclass(frozen=True, eq=False)
class _Sample:
    """Pixels drawn for fitting, and the feature scaling measured on them."""

    template: ClusterModel  # scaling and feature settings, spacing for k = 1, no centres
    values: np.ndarray  # (m, n_channels) in image units
    coords: tuple[np.ndarray, ...]  # m indices per spatial axis (empty without positions)

    def model_for(self, n_clusters: int) -> ClusterModel:
        """The template with the cluster spacing ``S`` for ``n_clusters`` (still no centres)."""
        n_positions = len(self.template.spatial_axes)
        if not n_positions:
            return self.template
        return replace(
            self.template,
            spatial_length=self.template.spatial_length / n_clusters ** (1 / n_positions),
        )

    def features(self, n_clusters: int) -> np.ndarray:
        return self.model_for(n_clusters).features(self.values, self.coords)


def _prepare_and_sample(
    image: Any,
    *,
    channel_axis: int | None,
    channel_scaling: str,
    spatial_weight: float,
    spatial_axes: Sequence[int] | None,
    sigma: float | Sequence[float],
    mask: Any,
    scale: Sequence[float] | float | None,
    sample_size: int,
    max_channels: int,
    rng: np.random.Generator,
    nan_pixels: str = "error",
) -> tuple[_Pixels, _Sample]:
    """The checked image (:func:`_prepare`) and the pixels drawn from it to fit on
    (:func:`_draw_sample`): the common start of clustering and of choosing k."""
    pixels = _prepare(
        image,
        channel_axis=channel_axis,
        scale=scale,
        sigma=sigma,
        mask=mask,
        max_channels=max_channels,
    )
    sample = _draw_sample(
        pixels,
        channel_scaling=channel_scaling,
        spatial_weight=spatial_weight,
        spatial_axes=spatial_axes,
        sigma=sigma,
        sample_size=sample_size,
        rng=rng,
        nan_pixels=nan_pixels,
    )
    return pixels, sample


def _draw_sample(
    pixels: _Pixels,
    *,
    channel_scaling: str,
    spatial_weight: float,
    spatial_axes: Sequence[int] | None,
    sigma: float | Sequence[float],
    sample_size: int,
    rng: np.random.Generator,
    nan_pixels: str = "error",
) -> _Sample:
    """Draw up to ``sample_size`` ROI pixels and measure the feature scaling on them."""
    if channel_scaling not in CHANNEL_SCALINGS:
        raise ClusterError(
            f"channel_scaling={channel_scaling!r}; choose one of {', '.join(CHANNEL_SCALINGS)}."
        )
    if not (math.isfinite(spatial_weight) and spatial_weight >= 0):
        raise ClusterError(f"spatial_weight must be 0 or more, got {spatial_weight}.")
    if (
        isinstance(sample_size, bool)
        or not isinstance(sample_size, (int, np.integer))
        or sample_size < 2
    ):
        raise ClusterError(
            f"sample_size must be an integer of at least 2 pixels, got {sample_size!r}."
        )
    position_axes = (
        _resolve_spatial_axes(spatial_axes, pixels.image_ndim, pixels.channel_axis)
        if spatial_weight > 0
        else ()
    )
    flat = _sample_flat_indices(pixels, int(sample_size), rng)
    values, coords = _gather_finite(
        pixels, flat, bool(position_axes), _check_nan_pixels(nan_pixels)
    )
    if len(values) == 0:
        raise ClusterError(
            f"all {len(flat)} sampled pixel(s) are NaN or infinite; draw a ROI mask on the valid "
            f"region or replace them (e.g. numpy.nan_to_num) before clustering."
        )
    channels = np.ascontiguousarray(values.T, dtype=np.float64)  # rows: 3x faster reductions
    offset = channels.mean(axis=1)
    spread = channels.std(axis=1)
    if channel_scaling == "shared":
        spread = np.full_like(spread, np.sqrt(np.mean(spread**2)))
    spread[spread == 0] = 1.0  # a constant channel: nothing to scale
    extent = [pixels.spatial_shape[a] * pixels.scale[a] for a in position_axes]
    template = ClusterModel(
        centers=np.empty((0, pixels.n_channels + len(position_axes)), dtype=np.float32),
        channel_offset=offset,
        channel_scale=spread,
        channel_axis=pixels.channel_axis,
        channel_scaling=channel_scaling,
        spatial_weight=float(spatial_weight),
        spatial_axes=position_axes,
        spatial_length=math.prod(extent) ** (1 / len(extent)) if extent else 1.0,
        scale=pixels.scale,
        sigma=float(sigma) if np.ndim(sigma) == 0 else tuple(float(s) for s in sigma),
    )
    return _Sample(template, values, coords)


def _fit_model(
    sample: _Sample, n_clusters: int, n_init: int, rng: np.random.Generator
) -> ClusterModel:
    """k-means on the sample; the model with its centres in :data:`ID_ORDER`."""
    if len(sample.values) < n_clusters:
        raise ClusterError(
            f"the ROI has {len(sample.values)} pixel(s), fewer than n_clusters={n_clusters}; "
            f"use a larger ROI or fewer clusters."
        )
    model = sample.model_for(n_clusters)
    features = model.features(sample.values, sample.coords)
    kmeans = _kmeans(features, n_clusters, n_init, rng)
    if len(np.unique(kmeans.labels_)) < n_clusters:
        n_distinct = len(np.unique(features, axis=0))
        raise ClusterError(
            f"the image has only {n_distinct} distinct pixel value(s) (in a sample of {len(features)}) "
            f"but n_clusters={n_clusters}; use n_clusters <= {n_distinct}."
        )
    return replace(model, centers=_sort_centers(model, kmeans.cluster_centers_.astype(np.float32)))


def _kmeans(features: np.ndarray, n_clusters: int, n_init: int, rng: np.random.Generator) -> Any:
    """scikit-learn KMeans on ``features`` (rows = pixels), coarse to fine.

    k-means (k-means++ seeding, best of ``n_init`` runs) first runs on a coarse
    subsample (:data:`_COARSE_SAMPLE` rows, 100 per cluster for large k); Lloyd then
    refines the best centres on all rows in 2-3 iterations instead of 15-25.
    Measured on a 2048 x 2048 mosaic of photos (12 seeds): 3 restarts on 5,000 rows
    never ended in the poor local optimum (+6% inertia) that a single k-means++ run
    reached 4 times in 12 (plain full-image KMeans too, e.g. ``random_state=5``), in
    the time of one run on 10,000 rows. Single-threaded: see :class:`_SingleThreaded`.
    """
    from sklearn.cluster import KMeans

    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise ClusterError(f"n_init must be a positive integer, got {n_init!r}.")
    seed = int(rng.integers(2**31))
    with _single_threaded, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "fewer distinct clusters": the callers check the labels
        n_coarse = max(_COARSE_SAMPLE, _COARSE_PIXELS_PER_CLUSTER * n_clusters)
        if len(features) > n_coarse:
            rows = rng.choice(len(features), n_coarse, replace=False)
            coarse = KMeans(n_clusters, n_init=int(n_init), random_state=seed).fit(features[rows])
            return KMeans(n_clusters, init=coarse.cluster_centers_, n_init=1).fit(features)
        return KMeans(n_clusters, n_init=int(n_init), random_state=seed).fit(features)


def _sort_centers(model: ClusterModel, centers: np.ndarray) -> np.ndarray:
    """Centres in :data:`ID_ORDER`.

    Keys are compared on a grid of 1e-4 standard deviations, so float rounding in
    the centres (e.g. 12.99999 vs 13.00001 for equally bright colours) counts as a
    tie and the channel values decide, as documented.
    """
    in_image_units = centers[:, : model.n_channels] * model.channel_scale + model.channel_offset
    step = 1e-4 * model.channel_scale.min()
    channel_keys = np.rint(in_image_units / step)
    brightness = np.rint(in_image_units.mean(axis=1) / step)
    position_keys = np.rint(centers[:, model.n_channels :] / 1e-4)
    keys = [brightness, *channel_keys.T, *position_keys.T]
    return centers[np.lexsort(keys[::-1])]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """Output of :func:`cluster_pixels`.

    Attributes
    ----------
    labels : spatial-shaped ``uint8`` (k <= 255) or ``uint16`` ids 1..k, 0 outside the
        ROI; numpy, or a lazy dask array for dask input.
    model : the fitted :class:`ClusterModel` (re-apply with ``model.predict``).
    params : the parameters used (seed included), JSON-compatible, for layer metadata.
    image_dtype : dtype of the clustered image (for :meth:`posterized`).
    """

    labels: Any
    model: ClusterModel
    params: dict[str, Any]
    image_dtype: np.dtype

    @property
    def centers(self) -> np.ndarray:
        """``(k, n_channels)`` centres in image units; row ``i`` is cluster id ``i + 1``."""
        return self.model.centers_image

    @cached_property
    def pixel_counts(self) -> np.ndarray:
        """``(k,)`` int64 pixels per cluster id 1..k (computes dask labels)."""
        k = self.model.n_clusters
        if is_dask(self.labels):
            import dask.array as da

            counts, _ = da.histogram(self.labels, bins=k + 1, range=(-0.5, k + 0.5))
            return np.asarray(counts.compute(), dtype=np.int64)[1:]
        return np.bincount(self.labels.ravel(), minlength=k + 1)[1:].astype(np.int64)

    def posterized(self) -> Any:
        """The image with every pixel replaced by its cluster centre (see :func:`posterize`)."""
        return posterize(
            self.labels, self.centers, channel_axis=self.model.channel_axis, dtype=self.image_dtype
        )

    def foreground(self, cluster_ids: Sequence[int]) -> Any:
        """uint8 mask, 1 where the label is one of ``cluster_ids`` (see :func:`clusters_to_mask`)."""
        bad = [i for i in cluster_ids if not 1 <= int(i) <= self.model.n_clusters]
        if bad:
            raise ClusterError(
                f"cluster ids {bad} do not exist; this result has ids 1..{self.model.n_clusters}."
            )
        return clusters_to_mask(self.labels, cluster_ids)


def posterize(
    labels: Any, centers: np.ndarray, *, channel_axis: int | None = -1, dtype: Any = np.float32
) -> Any:
    """Replace every label by its centre: the 'posterised' image.

    ``labels``: ids 1..k (0 = outside, drawn as zeros), numpy or dask; ``centers``
    ``(k, n_channels)`` in image units. The channel axis is put back at
    ``channel_axis`` (None: no channel axis, one channel). Integer ``dtype``\\ s
    get rounded, clipped centres; the default is float32.
    """
    centers = np.asarray(centers, dtype=np.float64)
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        centers = np.clip(np.rint(centers), info.min, info.max)
    lut = np.zeros((len(centers) + 1, centers.shape[1]), dtype=dtype)
    lut[1:] = centers
    if is_dask(labels):
        out = labels.map_blocks(
            lambda block: np.take(lut, block, axis=0),
            dtype=dtype,
            new_axis=labels.ndim,
            chunks=(*labels.chunks, (lut.shape[1],)),
        )
    else:
        out = _lookup(lut, np.asarray(labels))
    if channel_axis is None:
        if lut.shape[1] != 1:
            raise ClusterError(f"channel_axis=None but the centres have {lut.shape[1]} channels.")
        return out[..., 0]
    return _moveaxis(out, -1, channel_axis) if channel_axis not in (-1, out.ndim - 1) else out


def _lookup(lut: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``lut[labels]`` with a trailing channel axis, in blocks on a thread pool.

    ``np.take`` is 3x faster than fancy indexing; blocks bound its temporary
    (it converts the indices to int64) and use every core.
    """
    out = np.empty((*labels.shape, lut.shape[1]), dtype=lut.dtype)

    def fill(block: tuple[slice, ...]) -> None:
        np.take(lut, labels[block], axis=0, out=out[block], mode="clip")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(fill, _block_slices(labels.shape, 4 * _MAX_BLOCK_PIXELS)))
    return out


def clusters_to_mask(labels: Any, cluster_ids: Sequence[int] | int) -> Any:
    """Foreground mask from chosen clusters: ``uint8``, 1 where ``labels`` is in ``cluster_ids``.

    Same shape as ``labels``; numpy or (lazy) dask. Ids are 1..k; 0 ('outside the
    ROI') is never foreground and cannot be chosen.
    """
    ids = np.unique(np.atleast_1d(np.asarray(cluster_ids)))
    if ids.size == 0:
        raise ClusterError("no cluster chosen; pick at least one cluster id for the foreground.")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ClusterError(f"cluster ids must be integers, got {cluster_ids!r}.")
    if ids.min() < 1:
        raise ClusterError(
            "cluster id 0 means 'outside the ROI', not a cluster; choose ids from 1."
        )
    labels_max = np.iinfo(labels.dtype).max if np.issubdtype(labels.dtype, np.integer) else None
    if labels_max is not None and ids.max() > labels_max:
        raise ClusterError(f"cluster id {ids.max()} cannot occur in {labels.dtype} labels.")
    if is_dask(labels):
        return labels.map_blocks(lambda block: np.isin(block, ids).view(np.uint8), dtype=np.uint8)
    return np.isin(labels, ids).view(np.uint8)


# --------------------------------------------------------------------------- entry points


def cluster_pixels_steps(
    image: Any,
    n_clusters: int = 5,
    *,
    channel_axis: int | None = None,
    channel_scaling: ChannelScaling = "shared",
    spatial_weight: float = 0.0,
    spatial_axes: Sequence[int] | None = None,
    sigma: float | Sequence[float] = 0.0,
    mask: Any = None,
    scale: Sequence[float] | float | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    random_state: int | None = 0,
    n_init: int = 3,
    max_channels: int = 64,
    n_threads: int | None = None,
    nan_pixels: str = "error",
) -> Generator[float, None, ClusterResult]:
    """:func:`cluster_pixels` as a generator: yields progress in [0, 1], returns the result.

    For GUIs: drive it in a worker thread and stop it between yields to cancel.
    """
    n_clusters = _check_n_clusters(n_clusters)
    yield 0.0
    rng = np.random.default_rng(random_state)
    pixels, sample = _prepare_and_sample(
        image,
        channel_axis=channel_axis,
        channel_scaling=channel_scaling,
        spatial_weight=spatial_weight,
        spatial_axes=spatial_axes,
        sigma=sigma,
        mask=mask,
        scale=scale,
        sample_size=sample_size,
        max_channels=max_channels,
        rng=rng,
        nan_pixels=nan_pixels,
    )
    model = _fit_model(sample, n_clusters, n_init, rng)
    fit_share = 0.3
    yield fit_share
    labels = yield from rescaled(
        model._predict_steps(pixels, n_threads, nan_pixels), fit_share, 1.0
    )
    params = {
        "n_clusters": n_clusters,
        "channel_axis": pixels.channel_axis,
        "channel_scaling": channel_scaling,
        "spatial_weight": float(spatial_weight),
        "spatial_axes": list(model.spatial_axes),
        "sigma": model.sigma if np.ndim(model.sigma) == 0 else list(model.sigma),
        "scale": list(pixels.scale),
        "roi": pixels.mask is not None,
        "sample_size": int(sample_size),
        "n_samples": len(sample.values),
        "random_state": random_state,
        "n_init": n_init,
        "nan_pixels": nan_pixels,
        "id_order": ID_ORDER,
    }
    yield 1.0
    return ClusterResult(labels=labels, model=model, params=params, image_dtype=pixels.dtype)


def cluster_pixels(image: Any, n_clusters: int = 5, **kwargs: Any) -> ClusterResult:
    """Segment ``image`` into ``n_clusters`` pixel clusters (k-means, see the module docstring).

    Parameters
    ----------
    image : numpy or dask array, any number of spatial axes (2D, 3D stack, time
        series: one model for all of it, so ids agree across slices/frames).
    n_clusters : k, from 2 to 65535.
    channel_axis : the channel axis (RGB: -1), or None for a single channel.
    channel_scaling : ``"shared"`` (default; channels in the same units, e.g. RGB)
        or ``"per_channel"`` (z-score each channel).
    spatial_weight : weight of pixel positions (0 = intensity only; ~0.1-1 makes
        compact, SLIC-like clusters).
    spatial_axes : image axes whose position is a feature (default: all but the
        channel axis; e.g. ``(-3, -2)`` for y, x of a ``(t, y, x, c)`` series).
    sigma : Gaussian smoothing before clustering, in physical units (0 = none);
        one number or one per spatial axis.
    mask : ROI with the spatial shape; non-zero = cluster, zero = label 0.
    scale : physical pixel size per spatial axis (napari layer ``scale``).
    sample_size : pixels k-means is fitted on (default :data:`DEFAULT_SAMPLE_SIZE`).
    random_state : seed of the pixel sample and of k-means; None = not reproducible.
    n_init : k-means++ restarts on the coarse subsample; the best is refined (see
        :func:`_kmeans`).
    max_channels : a longer channel axis is refused as probably a spatial axis.
    n_threads : threads for labelling (default: all CPUs).
    nan_pixels : ``"error"`` (default): NaN/inf pixels in the ROI are bad input;
        ``"background"``: they are left out of the fit and labelled 0 (see the module docstring).

    Returns
    -------
    ClusterResult : labels (spatial shape, ids 1..k by :data:`ID_ORDER`), centres in
        image units, pixel counts, the model, the parameters.

    Raises
    ------
    ClusterError : (a ValueError) with a message that says what to change.
    """
    return run_steps(cluster_pixels_steps(image, n_clusters, **kwargs))


# --------------------------------------------------------------------------- choosing k


@dataclass(frozen=True, eq=False)
class KScores:
    """Quality of k-means for a range of k, all measured on the same pixels.

    ``inertia``: sum of squared distances to the nearest centre on the scoring
    pixels (scaled features), for the elbow plot. ``calinski_harabasz`` (higher is
    better), ``davies_bouldin`` (lower is better), ``silhouette`` (higher is
    better, on a subsample of ``n_silhouette`` pixels: it is O(n^2)).
    """

    k: np.ndarray
    inertia: np.ndarray
    calinski_harabasz: np.ndarray
    davies_bouldin: np.ndarray
    silhouette: np.ndarray
    n_scored: int
    n_silhouette: int


def choose_k_steps(
    image: Any,
    k_values: Sequence[int] = range(2, 11),
    *,
    channel_axis: int | None = None,
    channel_scaling: ChannelScaling = "shared",
    spatial_weight: float = 0.0,
    spatial_axes: Sequence[int] | None = None,
    sigma: float | Sequence[float] = 0.0,
    mask: Any = None,
    scale: Sequence[float] | float | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    score_all_pixels: bool = False,
    silhouette_size: int = 5_000,
    random_state: int | None = 0,
    n_init: int = 3,
    max_channels: int = 64,
    nan_pixels: str = "error",
) -> Generator[float, None, KScores]:
    """:func:`choose_k` as a generator yielding progress in [0, 1]."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    ks = sorted({_check_n_clusters(k) for k in k_values})
    if not ks:
        raise ClusterError(
            "k_values is empty; give the numbers of clusters to compare, e.g. range(2, 11)."
        )
    rng = np.random.default_rng(random_state)
    pixels, sample = _prepare_and_sample(
        image,
        channel_axis=channel_axis,
        channel_scaling=channel_scaling,
        spatial_weight=spatial_weight,
        spatial_axes=spatial_axes,
        sigma=sigma,
        mask=mask,
        scale=scale,
        sample_size=sample_size,
        max_channels=max_channels,
        rng=rng,
        nan_pixels=nan_pixels,
    )
    if len(sample.values) < ks[-1]:
        raise ClusterError(
            f"the ROI has {len(sample.values)} pixel(s), fewer than k={ks[-1]}; use smaller k values."
        )
    everything = _everything(sample.template, pixels, nan_pixels) if score_all_pixels else None
    rows: list[tuple[float, float, float, float]] = []
    for i, k in enumerate(ks):
        yield i / len(ks)
        features = sample.features(k)
        kmeans = _kmeans(features, k, n_init, rng)
        if everything is not None:
            features = everything.features(k)
        labels = kmeans.predict(features)
        if len(np.unique(labels)) < 2:
            raise ClusterError(
                f"k={k} found a single cluster; the image has too few distinct values for k={k}."
            )
        n_silhouette = min(silhouette_size, len(features))
        rows.append(
            (
                -float(kmeans.score(features)),
                float(calinski_harabasz_score(features, labels)),
                float(davies_bouldin_score(features, labels)),
                float(
                    silhouette_score(
                        features, labels, sample_size=n_silhouette, random_state=random_state
                    )
                ),
            )
        )
    yield 1.0
    inertia, ch, db, sil = (np.array(column) for column in zip(*rows))
    return KScores(
        np.array(ks), inertia, ch, db, sil, n_scored=len(features), n_silhouette=n_silhouette
    )


def choose_k(image: Any, k_values: Sequence[int] = range(2, 11), **kwargs: Any) -> KScores:
    """Help choosing k: elbow (inertia), Calinski-Harabasz, Davies-Bouldin and silhouette per k.

    k-means is fitted on a sample of ``sample_size`` pixels for each k (same
    features and options as :func:`cluster_pixels`); scores are computed on that
    sample, or on every ROI pixel with ``score_all_pixels=True`` (features of the
    whole image in memory: 4 bytes x features per pixel); the silhouette always on
    a subsample of ``silhouette_size`` pixels.
    """
    return run_steps(choose_k_steps(image, k_values, **kwargs))


def _everything(template: ClusterModel, pixels: _Pixels, nan_pixels: str = "error") -> _Sample:
    """Every finite ROI pixel as a :class:`_Sample` with the given scaling (in memory)."""
    flat = _sample_flat_indices(pixels, pixels.n_inside, np.random.default_rng(0))
    values, coords = _gather_finite(pixels, flat, bool(template.spatial_axes), nan_pixels)
    return _Sample(template, values, coords)
