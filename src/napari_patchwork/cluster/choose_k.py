"""Choosing k: k-means quality scores for a range of k on the same pixels."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_patchwork._common import run_steps
from napari_patchwork.cluster.errors import ClusterError
from napari_patchwork.cluster.features import (
    FeatureOptions,
    Pixels,
    feature_options,
    gather_finite,
    sample_flat_indices,
)
from napari_patchwork.cluster.fit import Sample, fit_kmeans, prepare_and_sample
from napari_patchwork.cluster.ids import check_n_clusters
from napari_patchwork.cluster.model import ClusterModel

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
    k_values: Sequence[int],
    features: FeatureOptions,
    *,
    mask: Any = None,
    n_init: int = 3,
    score_all_pixels: bool = False,
    silhouette_size: int = 5_000,
) -> Generator[float, None, KScores]:
    """:func:`choose_k` as a generator yielding progress in [0, 1]."""
    ks = sorted({check_n_clusters(k) for k in k_values})
    if not ks:
        raise ClusterError(
            "k_values is empty; give the numbers of clusters to compare, e.g. range(2, 11)."
        )
    if not isinstance(features, FeatureOptions):
        raise TypeError(f"features must be a FeatureOptions, got {type(features).__name__}.")
    rng = np.random.default_rng(features.random_state)
    pixels, sample = prepare_and_sample(image, features, mask, rng)
    if len(sample.values) < ks[-1]:
        raise ClusterError(
            f"the ROI has {len(sample.values)} pixel(s), fewer than k={ks[-1]}; "
            f"use smaller k values."
        )
    everything = (
        _everything(sample.template, pixels, features.nan_pixels) if score_all_pixels else None
    )
    rows: list[tuple[float, float, float, float]] = []
    for i, k in enumerate(ks):
        yield i / len(ks)
        kmeans = fit_kmeans(sample.features(k), k, n_init, rng)
        scored = (sample if everything is None else everything).features(k)
        n_silhouette = min(silhouette_size, len(scored))
        rows.append(_scores(kmeans, scored, k, n_silhouette, features.random_state))
    yield 1.0
    inertia, ch, db, sil = (np.array(column) for column in zip(*rows))
    return KScores(
        np.array(ks), inertia, ch, db, sil, n_scored=len(scored), n_silhouette=n_silhouette
    )


def _scores(
    kmeans: Any, features: np.ndarray, k: int, n_silhouette: int, random_state: int | None
) -> tuple[float, float, float, float]:
    """Inertia, Calinski-Harabasz, Davies-Bouldin and silhouette of ``kmeans`` on ``features``."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    labels = kmeans.predict(features)
    if len(np.unique(labels)) < 2:
        raise ClusterError(
            f"k={k} found a single cluster; the image has too few distinct values for k={k}."
        )
    silhouette = silhouette_score(
        features, labels, sample_size=n_silhouette, random_state=random_state
    )
    return (
        -float(kmeans.score(features)),
        float(calinski_harabasz_score(features, labels)),
        float(davies_bouldin_score(features, labels)),
        float(silhouette),
    )


def choose_k(
    image: Any,
    k_values: Sequence[int] = range(2, 11),
    *,
    features: FeatureOptions | None = None,
    mask: Any = None,
    n_init: int = 3,
    score_all_pixels: bool = False,
    silhouette_size: int = 5_000,
    **options: Any,
) -> KScores:
    """Help choosing k: elbow (inertia), Calinski-Harabasz, Davies-Bouldin and silhouette per k.

    k-means is fitted on a sample of ``sample_size`` pixels for each k (same
    features and options as :func:`cluster_pixels`: ``features`` and/or any
    :class:`FeatureOptions` field by name); scores are computed on that
    sample, or on every ROI pixel with ``score_all_pixels=True`` (features of the
    whole image in memory: 4 bytes x features per pixel); the silhouette always on
    a subsample of ``silhouette_size`` pixels.
    """
    steps = choose_k_steps(
        image,
        k_values,
        feature_options(features, **options),
        mask=mask,
        n_init=n_init,
        score_all_pixels=score_all_pixels,
        silhouette_size=silhouette_size,
    )
    return run_steps(steps)


def _everything(template: ClusterModel, pixels: Pixels, nan_pixels: str = "error") -> Sample:
    """Every finite ROI pixel as a :class:`Sample` with the given scaling (in memory)."""
    flat = sample_flat_indices(pixels, pixels.n_inside, np.random.default_rng(0))
    values, coords = gather_finite(pixels, flat, bool(template.spatial_axes), nan_pixels)
    return Sample(template, values, coords)
