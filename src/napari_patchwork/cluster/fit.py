"""Fitting: the feature scaling measured on a pixel sample, k-means on it, ids sorted by
brightness; :func:`cluster_pixels`, the entry point."""

from __future__ import annotations

import math
import warnings
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_patchwork._common import rescaled, run_steps
from napari_patchwork.cluster.blocks import single_threaded
from napari_patchwork.cluster.errors import ClusterError
from napari_patchwork.cluster.features import (
    FeatureOptions,
    Pixels,
    feature_options,
    gather_finite,
    prepare_pixels,
    resolve_spatial_axes,
    sample_flat_indices,
)
from napari_patchwork.cluster.ids import ID_ORDER, check_n_clusters
from napari_patchwork.cluster.model import ClusterModel
from napari_patchwork.cluster.results import ClusterResult

MAX_PIXEL_MAGNITUDE = 1e38
"""Largest absolute pixel value clustering takes (float32 features; its maximum is 3.4e38)."""
_COARSE_PIXELS_PER_CLUSTER = 100
_COARSE_SAMPLE = 5_000
"""Rows of the sample k-means first runs on: at least this, at least 100 per cluster
(see :func:`fit_kmeans`)."""


@dataclass(frozen=True, eq=False)
class Sample:
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


def prepare_and_sample(
    image: Any, features: FeatureOptions, mask: Any, rng: np.random.Generator
) -> tuple[Pixels, Sample]:
    """The checked image (:func:`pixels_for`) and the pixels drawn from it to fit on
    (:func:`_draw_sample`): the common start of clustering and of choosing k."""
    pixels = pixels_for(image, features, mask)
    return pixels, _draw_sample(pixels, features, rng)


def pixels_for(image: Any, features: FeatureOptions, mask: Any) -> Pixels:
    """The checked (and smoothed, with a sigma) image: :func:`prepare_pixels` with ``features``."""
    return prepare_pixels(
        image,
        channel_axis=features.channel_axis,
        scale=features.scale,
        sigma=features.sigma,
        mask=mask,
        max_channels=features.max_channels,
    )


def _draw_sample(pixels: Pixels, features: FeatureOptions, rng: np.random.Generator) -> Sample:
    """Draw up to ``sample_size`` ROI pixels and measure the feature scaling on them."""
    position_axes = (
        resolve_spatial_axes(features.spatial_axes, pixels.image_ndim, pixels.channel_axis)
        if features.spatial_weight > 0
        else ()
    )
    flat = sample_flat_indices(pixels, features.sample_size, rng)
    values, coords = gather_finite(pixels, flat, bool(position_axes), features.nan_pixels)
    if len(values) == 0:
        raise ClusterError(
            f"all {len(flat)} sampled pixel(s) are NaN or infinite; draw a ROI mask on the valid "
            f"region or replace them (e.g. numpy.nan_to_num) before clustering."
        )
    channels = np.ascontiguousarray(values.T, dtype=np.float64)  # rows: 3x faster reductions
    low, high = float(channels.min()), float(channels.max())
    if max(-low, high) > MAX_PIXEL_MAGNITUDE:
        raise ClusterError(
            f"pixel values reach {low if -low > high else high:g}, too large to cluster "
            f"(features are float32: values up to {MAX_PIXEL_MAGNITUDE:g}); rescale the image "
            f"first, e.g. image / {max(-low, high):.3g}."
        )
    offset = channels.mean(axis=1)
    spread = channels.std(axis=1)
    if features.channel_scaling == "shared":
        spread = np.full_like(spread, np.sqrt(np.mean(spread**2)))
    spread[spread == 0] = 1.0  # a constant channel: nothing to scale
    extent = [pixels.spatial_shape[a] * pixels.scale[a] for a in position_axes]
    template = ClusterModel(
        centers=np.empty((0, pixels.n_channels + len(position_axes)), dtype=np.float32),
        channel_offset=offset,
        channel_scale=spread,
        channel_axis=pixels.channel_axis,
        channel_scaling=features.channel_scaling,
        spatial_weight=features.spatial_weight,
        spatial_axes=position_axes,
        spatial_length=math.prod(extent) ** (1 / len(extent)) if extent else 1.0,
        scale=pixels.scale,
        sigma=features.sigma,
        image_dtype=np.dtype(pixels.dtype).name,
        value_range=(low, high),
    )
    return Sample(template, values, coords)


def _fit_model(
    sample: Sample, n_clusters: int, n_init: int, rng: np.random.Generator
) -> ClusterModel:
    """k-means on the sample; the model with its centres in :data:`ID_ORDER`."""
    if len(sample.values) < n_clusters:
        raise ClusterError(
            f"the ROI has {len(sample.values)} pixel(s), fewer than n_clusters={n_clusters}; "
            f"use a larger ROI or fewer clusters."
        )
    model = sample.model_for(n_clusters)
    features = model.features(sample.values, sample.coords)
    kmeans = fit_kmeans(features, n_clusters, n_init, rng)
    if len(np.unique(kmeans.labels_)) < n_clusters:
        n_distinct = len(np.unique(features, axis=0))
        raise ClusterError(
            f"the image has only {n_distinct} distinct pixel value(s) "
            f"(in a sample of {len(features)}) "
            f"but n_clusters={n_clusters}; use n_clusters <= {n_distinct}."
        )
    return replace(model, centers=_sort_centers(model, kmeans.cluster_centers_.astype(np.float32)))


def fit_kmeans(features: np.ndarray, n_clusters: int, n_init: int, rng: np.random.Generator) -> Any:
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
    with single_threaded, warnings.catch_warnings():
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


# --------------------------------------------------------------------------- entry points


READ_SHARE = 0.1
"""Progress of :func:`cluster_pixels_steps` once the image is read (and smoothed)..."""
FIT_SHARE = 0.3
"""... once k-means is fitted on the sample; labelling every pixel takes the rest."""


def cluster_pixels_steps(
    image: Any,
    n_clusters: int,
    features: FeatureOptions,
    *,
    mask: Any = None,
    n_init: int = 3,
    n_threads: int | None = None,
) -> Generator[float, None, ClusterResult]:
    """:func:`cluster_pixels` as a generator: yields progress in [0, 1], returns the result.

    For GUIs: drive it in a worker thread and stop it between yields to cancel.
    """
    n_clusters = check_n_clusters(n_clusters)
    if not isinstance(features, FeatureOptions):
        raise TypeError(f"features must be a FeatureOptions, got {type(features).__name__}.")
    yield 0.0
    rng = np.random.default_rng(features.random_state)
    pixels = pixels_for(image, features, mask)  # a numpy image is smoothed here
    yield READ_SHARE
    sample = _draw_sample(pixels, features, rng)
    yield (READ_SHARE + FIT_SHARE) / 2
    model = _fit_model(sample, n_clusters, n_init, rng)
    yield FIT_SHARE
    labels = yield from rescaled(
        model.predict_steps(pixels, n_threads, features.nan_pixels), FIT_SHARE, 1.0
    )
    params = {
        "n_clusters": n_clusters,
        "channel_axis": pixels.channel_axis,
        "channel_scaling": features.channel_scaling,
        "spatial_weight": features.spatial_weight,
        "spatial_axes": list(model.spatial_axes),
        "sigma": model.sigma if np.ndim(model.sigma) == 0 else list(model.sigma),
        "scale": list(pixels.scale),
        "roi": pixels.mask is not None,
        "sample_size": features.sample_size,
        "n_samples": len(sample.values),
        "random_state": features.random_state,
        "n_init": n_init,
        "nan_pixels": features.nan_pixels,
        "id_order": ID_ORDER,
    }
    yield 1.0
    return ClusterResult(labels=labels, model=model, params=params, image_dtype=pixels.dtype)


def cluster_pixels(
    image: Any,
    n_clusters: int = 5,
    *,
    features: FeatureOptions | None = None,
    mask: Any = None,
    n_init: int = 3,
    n_threads: int | None = None,
    **options: Any,
) -> ClusterResult:
    """Segment ``image`` into ``n_clusters`` pixel clusters (k-means, see the package docstring).

    Parameters
    ----------
    image : numpy or dask array, any number of spatial axes (2D, 3D stack, time
        series: one model for all of it, so ids agree across slices/frames).
    n_clusters : k, from 2 to 65535.
    features : a :class:`FeatureOptions` (channel axis, scaling, spatial weight, smoothing,
        pixel size, sample size, seed, NaN handling); default: its defaults.
    mask : ROI with the spatial shape; non-zero = cluster, zero = label 0.
    n_init : k-means++ restarts on the coarse subsample; the best is refined (see
        :func:`fit_kmeans`).
    n_threads : threads for labelling (default: all CPUs).
    **options : any :class:`FeatureOptions` field by name (``channel_axis=-1``,
        ``sigma=1.0``...), applied on top of ``features``.

    Returns
    -------
    ClusterResult : labels (spatial shape, ids 1..k by :data:`ID_ORDER`), centres in
        image units, pixel counts, the model, the parameters.

    Raises
    ------
    ClusterError : (a ValueError) with a message that says what to change.
    """
    steps = cluster_pixels_steps(
        image,
        n_clusters,
        feature_options(features, **options),
        mask=mask,
        n_init=n_init,
        n_threads=n_threads,
    )
    return run_steps(steps)
