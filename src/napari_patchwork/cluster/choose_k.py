"""Choosing k: k-means quality scores for a range of k on the same pixels."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_patchwork._common import run_steps
from napari_patchwork.cluster.errors import ClusterError
from napari_patchwork.cluster.features import (
    DEFAULT_SAMPLE_SIZE,
    ChannelScaling,
    Pixels,
    gather_finite,
    sample_flat_indices,
)
from napari_patchwork.cluster.fit import Sample, fit_kmeans, prepare_and_sample
from napari_patchwork.cluster.model import ClusterModel, check_n_clusters

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

    ks = sorted({check_n_clusters(k) for k in k_values})
    if not ks:
        raise ClusterError(
            "k_values is empty; give the numbers of clusters to compare, e.g. range(2, 11)."
        )
    rng = np.random.default_rng(random_state)
    pixels, sample = prepare_and_sample(
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
        kmeans = fit_kmeans(features, k, n_init, rng)
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


def _everything(template: ClusterModel, pixels: Pixels, nan_pixels: str = "error") -> Sample:
    """Every finite ROI pixel as a :class:`Sample` with the given scaling (in memory)."""
    flat = sample_flat_indices(pixels, pixels.n_inside, np.random.default_rng(0))
    values, coords = gather_finite(pixels, flat, bool(template.spatial_axes), nan_pixels)
    return Sample(template, values, coords)
