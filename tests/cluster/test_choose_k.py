"""Choosing k."""

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from napari_patchwork.cluster import (
    ClusterError,
    choose_k,
)
from napari_patchwork.sample import sample_image

IHC = sample_image()  # (512, 512, 3) uint8, a real RGB photo
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_choose_k_on_all_pixels_leaves_nan_pixels_out():
    image = IHC[:96, :96].astype(np.float32)
    image[:10] = np.nan
    with pytest.raises(ClusterError, match="NaN"):
        choose_k(image, [2, 3], channel_axis=-1, score_all_pixels=True)
    scores = choose_k(
        image, [2, 3], channel_axis=-1, score_all_pixels=True, nan_pixels="background"
    )
    assert scores.n_scored == 86 * 96 and np.isfinite(scores.inertia).all()


def test_choose_k_finds_three_colour_blobs():
    rng = np.random.default_rng(4)
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float32)
    layout = np.zeros((90, 90), dtype=int)
    layout[:, 30:] = 1
    layout[45:, 30:] = 2
    image = colours[layout] + rng.normal(0, 8, size=(90, 90, 3)).astype(np.float32)
    scores = choose_k(image, range(2, 7), channel_axis=-1)
    np.testing.assert_array_equal(scores.k, [2, 3, 4, 5, 6])
    assert scores.k[np.argmax(scores.silhouette)] == 3
    assert scores.k[np.argmax(scores.calinski_harabasz)] == 3
    assert scores.k[np.argmin(scores.davies_bouldin)] == 3
    drops = -np.diff(scores.inertia)
    assert drops[0] > 10 * drops[1]  # the elbow at k = 3
    everything = choose_k(
        image, [2, 3], channel_axis=-1, score_all_pixels=True, silhouette_size=500
    )
    assert everything.n_scored == 90 * 90 and everything.n_silhouette == 500
