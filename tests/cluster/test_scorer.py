"""Labelling blocks: nearest centres, and work that stops when abandoned."""

import time

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from napari_patchwork.cluster import (
    ClusterModel,
    FeatureOptions,
    cluster_pixels,
    cluster_pixels_steps,
)
from napari_patchwork.sample import sample_image

IHC = sample_image()  # (512, 512, 3) uint8, a real RGB photo
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nearest_centre_distances(model: ClusterModel, image: np.ndarray, channel_axis, scale=None):
    """Squared distances (n_pixels, k) in float64 from the model's own features."""
    values = np.moveaxis(image, channel_axis, -1) if channel_axis is not None else image[..., None]
    spatial = values.shape[:-1]
    coords = np.unravel_index(np.arange(np.prod(spatial)), spatial)
    feats = model.features(values.reshape(-1, values.shape[-1]), coords, scale).astype(np.float64)
    return ((feats[:, None, :] - model.centers.astype(np.float64)[None]) ** 2).sum(axis=2)


@FAST
@given(
    shape=st.tuples(st.integers(3, 20), st.integers(3, 20)),
    n_channels=st.integers(1, 4),
    dtype=st.sampled_from(["uint8", "uint16", "int32", "float32", "float64"]),
    offset=st.sampled_from([0.0, 1e6]),
    n_clusters=st.integers(2, 6),
    spatial_weight=st.sampled_from([0.0, 0.7]),
    seed=st.integers(0, 1000),
)
def test_every_pixel_gets_its_nearest_centre(
    shape, n_channels, dtype, offset, n_clusters, spatial_weight, seed
):
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        offset = min(offset, np.iinfo(dtype).max - 300)
    image = (offset + rng.integers(0, 200, size=(*shape, n_channels))).astype(dtype)
    assume(len(np.unique(image.reshape(-1, n_channels), axis=0)) >= n_clusters)
    scale = (1.0, 2.5)
    result = cluster_pixels(
        image,
        n_clusters,
        channel_axis=-1,
        spatial_weight=spatial_weight,
        scale=scale,
        random_state=seed,
    )
    labels = result.labels
    assert labels.dtype == np.uint8 and labels.shape == shape
    assert labels.min() >= 1 and labels.max() <= n_clusters
    d2 = nearest_centre_distances(result.model, image, -1, scale)
    chosen = d2[np.arange(d2.shape[0]), labels.ravel().astype(int) - 1]
    assert np.all(chosen <= d2.min(axis=1) + 1e-3 * (1 + d2.min(axis=1)))


def test_abandoned_steps_stop_labelling_after_the_blocks_in_flight(monkeypatch):
    """A GUI that stops pulling progress (Cancel) must not leave every block computing."""
    import napari_patchwork.cluster.scorer as core

    labelled = []
    label_block = core.Scorer.label_block

    def counting(self, *args, **kwargs):
        labelled.append(1)
        return label_block(self, *args, **kwargs)

    monkeypatch.setattr(core.Scorer, "label_block", counting)
    steps = cluster_pixels_steps(
        np.tile(IHC, (4, 4, 1)), 5, FeatureOptions(channel_axis=-1), n_threads=2
    )
    for _ in range(4):  # start, fitted, two blocks labelled
        next(steps)
    time.sleep(0.5)
    assert len(labelled) <= 2 + 2 * 2  # the two done, at most two blocks per thread in flight
    steps.close()
