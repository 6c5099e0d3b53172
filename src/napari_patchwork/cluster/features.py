"""Pixel features: the options that define them (:class:`FeatureOptions`, held once), the image
brought to ``(*spatial, channels)`` order, smoothed, with its ROI; the spatial axes whose
positions are features; the pixels sampled for fitting."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, get_args

import numpy as np

from napari_patchwork._common import is_dask, normalize_axis, per_axis
from napari_patchwork.cluster.blocks import MAX_BLOCK_PIXELS
from napari_patchwork.cluster.errors import ClusterError

ChannelScaling = Literal["shared", "per_channel"]
CHANNEL_SCALINGS: tuple[str, ...] = get_args(ChannelScaling)

DEFAULT_SAMPLE_SIZE = 50_000
"""Pixels k-means is fitted on (all pixels when the ROI is smaller)."""

MAX_SIGMA_PIXELS = 256
"""Widest smoothing taken, in pixels (the kernel spans 8 sigma: cost grows with sigma)."""

NanPixels = Literal["error", "background"]
NAN_PIXELS: tuple[str, ...] = get_args(NanPixels)
"""What NaN/inf pixels inside the ROI are: bad input (default), or background (label 0)."""


# --------------------------------------------------------------------------- the options


@dataclass(frozen=True)
class FeatureOptions:
    """How pixels become features, and which pixels the model is fitted on.

    One frozen, validated object shared by :func:`~napari_patchwork.cluster.cluster_pixels`,
    :func:`~napari_patchwork.cluster.choose_k`, the widget and the command line. Bad values
    raise :class:`ClusterError` when the object is made; values that depend on the image
    (one value per spatial axis, the channel axis existing) are checked against it.

    Attributes
    ----------
    channel_axis : the channel axis (RGB: -1), or None for a single channel.
    channel_scaling : ``"shared"`` (default; channels in the same units, e.g. RGB)
        or ``"per_channel"`` (z-score each channel).
    spatial_weight : weight of pixel positions (0 = intensity only; ~0.1-1 makes
        compact, SLIC-like clusters).
    spatial_axes : image axes whose position is a feature (default: all but the
        channel axis; e.g. ``(-3, -2)`` for y, x of a ``(t, y, x, c)`` series).
    sigma : Gaussian smoothing before clustering, in physical units (0 = none);
        one number or one per spatial axis.
    scale : physical pixel size per spatial axis (napari layer ``scale``); None = 1.
    sample_size : pixels k-means is fitted on (default :data:`DEFAULT_SAMPLE_SIZE`).
    random_state : seed of the pixel sample and of k-means; None = not reproducible.
    max_channels : a longer channel axis is refused as probably a spatial axis.
    nan_pixels : ``"error"`` (default): NaN/inf pixels in the ROI are bad input;
        ``"background"``: they are left out of the fit and labelled 0.
    """

    channel_axis: int | None = None
    channel_scaling: ChannelScaling = "shared"
    spatial_weight: float = 0.0
    spatial_axes: tuple[int, ...] | None = None
    sigma: float | tuple[float, ...] = 0.0
    scale: float | tuple[float, ...] | None = None
    sample_size: int = DEFAULT_SAMPLE_SIZE
    random_state: int | None = 0
    max_channels: int = 64
    nan_pixels: NanPixels = "error"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.channel_axis is not None:
            put(
                "channel_axis", _integer(self.channel_axis, "channel_axis", "an axis index or None")
            )
        if (
            not isinstance(self.channel_scaling, str)
            or self.channel_scaling not in CHANNEL_SCALINGS
        ):
            raise ClusterError(
                f"channel_scaling={self.channel_scaling!r}; "
                f"choose one of {', '.join(CHANNEL_SCALINGS)}."
            )
        weight = _number(self.spatial_weight, "spatial_weight")
        if not (math.isfinite(weight) and weight >= 0):
            raise ClusterError(f"spatial_weight must be 0 or more, got {self.spatial_weight}.")
        put("spatial_weight", weight)
        if self.spatial_axes is not None:
            if np.ndim(self.spatial_axes) != 1:
                raise ClusterError(
                    f"spatial_axes must be a sequence of axis indices or None, "
                    f"got {self.spatial_axes!r}."
                )
            put(
                "spatial_axes",
                tuple(_integer(a, "spatial_axes", "axis indices") for a in self.spatial_axes),
            )
        put("sigma", _per_axis_or_one(self.sigma, "sigma", allow_zero=True))
        if self.scale is not None:
            put("scale", _per_axis_or_one(self.scale, "scale", allow_zero=False))
        sample_size = _integer(self.sample_size, "sample_size", "a number of pixels")
        if sample_size < 2:
            raise ClusterError(
                f"sample_size must be an integer of at least 2 pixels, got {self.sample_size!r}."
            )
        put("sample_size", sample_size)
        if self.random_state is not None:
            seed = _integer(self.random_state, "random_state", "a seed or None")
            if seed < 0:
                raise ClusterError(f"random_state must be 0 or more (or None), got {seed}.")
            put("random_state", seed)
        max_channels = _integer(self.max_channels, "max_channels", "a number of channels")
        if max_channels < 1:
            raise ClusterError(f"max_channels must be at least 1, got {max_channels}.")
        put("max_channels", max_channels)
        check_nan_pixels(self.nan_pixels)

    def replace(self, **changes: Any) -> FeatureOptions:
        """A new, validated :class:`FeatureOptions` with ``changes``."""
        return replace(self, **check_option_names(changes))


def check_option_names(options: dict[str, Any]) -> dict[str, Any]:
    """``options``, if every name is a :class:`FeatureOptions` field; else a TypeError."""
    known = [f.name for f in fields(FeatureOptions)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(
            f"unknown feature option(s) {', '.join(unknown)}; the options are {', '.join(known)}."
        )
    return options


def feature_options(features: FeatureOptions | None = None, **options: Any) -> FeatureOptions:
    """``features`` (default: the defaults) with keyword ``options`` applied: how the
    keyword entry points (``cluster_pixels(image, k, channel_axis=-1)``) build theirs."""
    if features is not None and not isinstance(features, FeatureOptions):
        raise TypeError(f"features must be a FeatureOptions, got {type(features).__name__}.")
    base = FeatureOptions() if features is None else features
    return base.replace(**options) if options else base


def _integer(value: Any, name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ClusterError(f"{name} must be an integer ({what}), got {value!r}.")
    return int(value)


def _number(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_, np.complexfloating)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ClusterError(f"{name} must be a real number, got {value!r}.")
    return float(value)


def _per_axis_or_one(value: Any, name: str, *, allow_zero: bool) -> float | tuple[float, ...]:
    """One finite number, or a non-empty sequence of them (one per spatial axis), each
    ``>= 0`` (``allow_zero``) or ``> 0``; as float / tuple of floats."""
    if np.ndim(value) > 1 or (np.ndim(value) == 1 and len(value) == 0):
        raise ClusterError(
            f"{name} must be one number or one number per spatial axis, got {value!r}."
        )
    values = [_number(v, name) for v in np.atleast_1d(np.asarray(value, dtype=object))]
    if not all(math.isfinite(v) and (v >= 0 if allow_zero else v > 0) for v in values):
        bound = "0 or more" if allow_zero else "greater than 0"
        shown = values[0] if np.ndim(value) == 0 else tuple(values)
        raise ClusterError(f"{name} must be finite and {bound} on every axis, got {shown}.")
    return values[0] if np.ndim(value) == 0 else tuple(values)


# --------------------------------------------------------------------------- input checks


def _per_spatial_axis(value: Any, ndim: int, name: str, *, allow_zero: bool) -> tuple[float, ...]:
    """Broadcast a number to ``ndim`` spatial axes or check a sequence has one per axis."""
    values = per_axis(value, ndim, name, error=ClusterError)
    low_ok = (lambda v: v >= 0) if allow_zero else (lambda v: v > 0)
    if not all(math.isfinite(v) and low_ok(v) for v in values):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ClusterError(f"{name} must be finite and {bound} on every axis, got {values}.")
    return values


@dataclass(frozen=True, eq=False)
class Pixels:
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


def prepare_pixels(
    image: Any,
    *,
    channel_axis: int | None,
    scale: Sequence[float] | float | None,
    sigma: Sequence[float] | float,
    mask: Any,
    max_channels: int,
) -> Pixels:
    """Validate the inputs and bring the image to ``(*spatial, channels)`` order."""
    lazy = is_dask(image)
    if not lazy:
        image = np.asarray(image)
    dtype = np.dtype(image.dtype)
    if dtype.kind == "b":
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
        values = image if axis == image.ndim - 1 else moveaxis(image, axis, -1)
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
    _check_sigma(sigma_px, spatial, pixel_size)
    if any(sigma_px):
        values = _smooth(values, sigma_px)
    channel_axis = None if channel_axis is None else int(channel_axis)
    return Pixels(values, channel_axis, image.ndim, pixel_size, _prepare_mask(mask, spatial), dtype)


def _check_sigma(
    sigma_px: Sequence[float], spatial_shape: Sequence[int], pixel_size: Sequence[float]
) -> None:
    """Refuse smoothing wider than the image (it would make every pixel the image's mean)
    or than :data:`MAX_SIGMA_PIXELS` (its cost grows with sigma: minutes per image)."""
    for axis, (s, n, p) in enumerate(zip(sigma_px, spatial_shape, pixel_size)):
        if s > n:
            raise ClusterError(
                f"sigma is {s:g} pixels on spatial axis {axis}, more than the image's {n} pixels "
                f"along it: smoothing that wide makes every pixel the image's mean. Use a sigma "
                f"of at most {n * p:g} (in the image's units; a few pixels is usual)."
            )
        if s > MAX_SIGMA_PIXELS:
            raise ClusterError(
                f"sigma is {s:g} pixels on spatial axis {axis}: smoothing costs grow with "
                f"sigma and above {MAX_SIGMA_PIXELS} pixels take minutes. Downsample the image "
                f"(e.g. {math.ceil(s / 16)}x) and use a smaller sigma."
            )


def moveaxis(array: Any, source: int, destination: int) -> Any:
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


def _stratified_ranks(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` sorted distinct integers in ``[0, n)``: one at random in each of ``size``
    equal runs (a jittered systematic sample).

    O(size) and already sorted (``rng.choice(n, size, replace=False)`` shuffles all
    ``n`` when ``size > n / 50``), and it covers the image evenly.
    """
    bounds = (np.arange(size + 1, dtype=np.float64) * (n / size)).astype(np.int64)
    return bounds[:-1] + (rng.random(size) * np.diff(bounds)).astype(np.int64)


def sample_flat_indices(pixels: Pixels, size: int, rng: np.random.Generator) -> np.ndarray:
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
    for start in range(0, flat_mask.size, MAX_BLOCK_PIXELS):
        block = flat_mask[start : start + MAX_BLOCK_PIXELS]
        n_true = int(np.count_nonzero(block))
        stop = int(np.searchsorted(ranks, seen + n_true))
        if stop > taken:
            out[taken:stop] = np.flatnonzero(block)[ranks[taken:stop] - seen] + start
        taken, seen = stop, seen + n_true
    return out


def nan_error(n_bad: int, where: str) -> ClusterError:
    return ClusterError(
        f"{n_bad:,} pixel(s) {where} are NaN or infinite; replace them (e.g. numpy.nan_to_num), "
        f"draw a ROI mask that leaves them out, or pass nan_pixels='background' to label them 0."
    )


def check_nan_pixels(nan_pixels: str) -> str:
    if not isinstance(nan_pixels, str) or nan_pixels not in NAN_PIXELS:
        raise ClusterError(f"nan_pixels={nan_pixels!r}; choose one of {', '.join(NAN_PIXELS)}.")
    return nan_pixels


def gather_finite(
    pixels: Pixels, flat: np.ndarray, with_coords: bool, nan_pixels: str = "error"
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
                raise nan_error(int((~finite).sum()), "of the fitting sample")
            gathered, flat = gathered[finite], flat[finite]
    return gathered, np.unravel_index(flat, pixels.spatial_shape) if with_coords else ()


def resolve_spatial_axes(
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
