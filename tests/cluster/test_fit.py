"""Fitting: ids, reproducibility, scaling, stacks, dask, progress, memory, quality."""

import json
import threading
import tracemalloc

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from napari_patchwork.cluster import (
    ID_ORDER,
    FeatureOptions,
    cluster_pixels,
    cluster_pixels_steps,
)
from napari_patchwork.sample import sample_image

IHC = sample_image()  # (512, 512, 3) uint8, a real RGB photo
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_labels_ids_counts_and_centres_on_a_photo():
    result = cluster_pixels(IHC, 5, channel_axis=-1)
    labels = result.labels
    assert labels.dtype == np.uint8 and labels.shape == (512, 512)
    assert set(np.unique(labels)) == {1, 2, 3, 4, 5}  # no real cluster hidden as 0
    np.testing.assert_array_equal(result.pixel_counts, np.bincount(labels.ravel(), minlength=6)[1:])
    assert result.pixel_counts.sum() == 512 * 512
    assert result.centers.shape == (5, 3)
    # ID_ORDER: ascending mean channel value of the centre, 1 = darkest
    assert np.all(np.diff(result.centers.mean(axis=1)) > 0)
    # each centre is the mean colour of its pixels (a converged k-means on this photo)
    for cluster_id, centre in enumerate(result.centers, start=1):
        np.testing.assert_allclose(IHC[labels == cluster_id].mean(axis=0), centre, atol=3.0)
    json.dumps(result.params)  # metadata-ready
    assert result.params["random_state"] == 0 and result.params["id_order"] == ID_ORDER


def test_same_image_same_ids_on_every_run():
    first = cluster_pixels(IHC, 6, channel_axis=-1, random_state=7)
    again = cluster_pixels(IHC.copy(), 6, channel_axis=-1, random_state=7)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.model.centers, again.model.centers)


@FAST
@given(
    data=st.data(),
    n_colours=st.integers(2, 6),
    seed=st.integers(0, 2**16),
)
def test_ids_follow_the_documented_order_whatever_the_seed(data, n_colours, seed):
    colours = data.draw(
        st.lists(
            st.tuples(*[st.integers(0, 255)] * 3),
            min_size=n_colours,
            max_size=n_colours,
            unique=True,
        )
    )
    colours = np.array(colours, dtype=np.uint8)
    layout = np.random.default_rng(seed).integers(0, n_colours, size=(20, 24))
    layout.flat[:n_colours] = np.arange(n_colours)  # every colour present
    image = colours[layout]
    result = cluster_pixels(image, n_colours, channel_axis=-1, random_state=seed)
    # expected id of each colour: rank by mean value, ties by the channel values
    order = np.lexsort((colours[:, 2], colours[:, 1], colours[:, 0], colours.mean(axis=1)))
    expected_id = np.empty(n_colours, dtype=int)
    expected_id[order] = np.arange(1, n_colours + 1)
    np.testing.assert_array_equal(result.labels, expected_id[layout])
    np.testing.assert_allclose(result.centers, colours[order], atol=1e-3)


def test_per_channel_scaling_weighs_channels_in_unrelated_units():
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 2, size=(64, 64))  # the structure is in channel 0 (0 or 10)
    image = np.stack(
        [10.0 * pattern, rng.uniform(0, 1000, size=(64, 64))], axis=-1
    )  # channel 1: noise
    shared = cluster_pixels(image, 2, channel_axis=-1, channel_scaling="shared")
    per_channel = cluster_pixels(image, 2, channel_axis=-1, channel_scaling="per_channel")
    assert adjusted_rand_score(pattern.ravel(), per_channel.labels.ravel()) > 0.99
    assert adjusted_rand_score(pattern.ravel(), shared.labels.ravel()) < 0.05  # split by the noise


def test_stack_and_time_series_share_one_model():
    stack = np.stack([IHC, IHC[::-1], IHC])  # (z, y, x, c)
    result = cluster_pixels(stack, 5, channel_axis=-1)
    labels = result.labels
    assert labels.shape == (3, 512, 512)
    np.testing.assert_array_equal(labels[0], labels[2])
    np.testing.assert_array_equal(labels[1], labels[0][::-1])
    np.testing.assert_array_equal(result.model.predict(IHC), labels[0])  # same ids frame by frame


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mask": "roi"},
        {"sigma": 1.5},
        {"spatial_weight": 0.5, "scale": (1.0, 0.5)},
        {"channel_scaling": "per_channel", "n_clusters": 3},
    ],
    ids=["plain", "roi", "smoothed", "spatial", "per-channel"],
)
def test_dask_gives_the_numpy_labels_lazily(options):
    options = dict(options)
    if options.get("mask") == "roi":
        roi = np.zeros(IHC.shape[:2], dtype=bool)
        roi[50:400, 120:500] = True
        options["mask"] = roi
    n_clusters = options.pop("n_clusters", 5)
    in_memory = cluster_pixels(IHC, n_clusters, channel_axis=-1, **options)
    lazy = cluster_pixels(
        da.from_array(IHC, chunks=(100, 130, 3)), n_clusters, channel_axis=-1, **options
    )
    assert isinstance(lazy.labels, da.Array) and lazy.labels.dtype == np.uint8
    np.testing.assert_array_equal(lazy.labels.compute(), in_memory.labels)
    np.testing.assert_array_equal(lazy.pixel_counts, in_memory.pixel_counts)
    posterised = lazy.posterized()
    assert isinstance(posterised, da.Array)
    np.testing.assert_array_equal(posterised.compute(), in_memory.posterized())


def test_more_than_255_clusters_use_uint16():
    image = np.random.default_rng(5).integers(0, 60000, size=(40, 40), dtype=np.uint16)
    result = cluster_pixels(image, 300)
    assert result.labels.dtype == np.uint16 and result.labels.max() == 300


def test_steps_report_progress_and_can_be_stopped():
    steps = cluster_pixels_steps(np.tile(IHC, (2, 2, 1)), 5, FeatureOptions(channel_axis=-1))
    progress = []
    while True:
        try:
            progress.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    assert progress[0] == 0.0 and progress[-1] == 1.0 and np.all(np.diff(progress) >= 0)
    assert len(progress) > 10  # one step per block of pixels
    assert result.labels.shape == (1024, 1024)

    threads_before = threading.active_count()
    stopped = cluster_pixels_steps(np.tile(IHC, (2, 2, 1)), 5, FeatureOptions(channel_axis=-1))
    for _ in range(4):
        next(stopped)
    stopped.close()  # what the widget's Cancel does, at a yield
    assert threading.active_count() == threads_before


def test_peak_memory_stays_below_one_float32_copy_of_the_image():
    image = np.tile(IHC, (2, 2, 1))  # 1024 x 1024 RGB
    cluster_pixels(image, 5, channel_axis=-1)  # warm up imports outside the measurement
    tracemalloc.start()
    try:
        cluster_pixels(image, 5, channel_axis=-1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < image.size * 4  # the naive approach holds several float64 copies


def test_agrees_with_plain_kmeans_on_all_pixels_of_a_real_photo():
    """The issue's reference: KMeans(n_clusters=5, random_state=0) on all pixels of an RGB photo."""
    from sklearn.cluster import KMeans

    image = sample_image()
    pixels = image.reshape(-1, 3).astype(np.float64)
    reference = KMeans(n_clusters=5, random_state=0).fit(pixels)

    def inertia(labels):
        flat = labels.ravel()
        return sum(
            ((pixels[flat == c] - pixels[flat == c].mean(0)) ** 2).sum() for c in np.unique(flat)
        )

    ours = cluster_pixels(image, 5, channel_axis=-1, random_state=0)
    assert adjusted_rand_score(reference.labels_, ours.labels.ravel()) >= 0.95
    # every seed reaches a k-means solution as good as the full fit's (within 0.2 %)
    for seed in range(4):
        labels = cluster_pixels(image, 5, channel_axis=-1, random_state=seed).labels
        assert inertia(labels) <= 1.002 * reference.inertia_
