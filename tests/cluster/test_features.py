"""Pixel features: channel axes, ROI, smoothing, positions, NaN pixels, bad input."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from napari_patchwork.cluster import (
    ClusterError,
    cluster_pixels,
)
from napari_patchwork.sample import sample_image

IHC = sample_image()  # (512, 512, 3) uint8, a real RGB photo
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_roi_is_respected_and_only_roi_pixels_are_fitted():
    roi = np.zeros(IHC.shape[:2], dtype=np.uint16)
    roi[100:300, 50:400] = 7  # any non-zero label counts
    painted = IHC.copy()
    painted[roi == 0] = (0, 255, 0)  # a colour that only exists outside the ROI
    result = cluster_pixels(painted, 4, channel_axis=-1, mask=roi)
    assert (result.labels[roi == 0] == 0).all() and (result.labels[roi > 0] > 0).all()
    unpainted = cluster_pixels(IHC, 4, channel_axis=-1, mask=roi)
    np.testing.assert_array_equal(result.labels, unpainted.labels)
    assert result.params["roi"] is True


@pytest.mark.parametrize("channel_axis", [0, 1])
def test_channel_axis_anywhere_gives_the_same_clusters(channel_axis):
    reference = cluster_pixels(IHC, 5, channel_axis=-1)
    moved = np.ascontiguousarray(np.moveaxis(IHC, -1, channel_axis))
    result = cluster_pixels(moved, 5, channel_axis=channel_axis)
    np.testing.assert_array_equal(result.labels, reference.labels)
    assert result.posterized().shape == moved.shape  # channels back where they were
    np.testing.assert_array_equal(
        np.moveaxis(result.posterized(), channel_axis, -1), reference.posterized()
    )


def test_grayscale_image_without_channel_axis():
    gray = IHC.mean(axis=2).astype(np.float32)
    result = cluster_pixels(gray, 3)
    assert result.labels.shape == gray.shape and result.centers.shape == (3, 1)
    assert np.all(np.diff(result.centers[:, 0]) > 0)  # 1 = darkest
    # one channel: nearest centre = intensity bands, so ids never go down as values go up
    order = np.argsort(gray.ravel(), kind="stable")
    assert np.all(np.diff(result.labels.ravel()[order].astype(int)) >= 0)
    assert set(np.unique(result.labels)) == {1, 2, 3}
    posterised = result.posterized()
    assert posterised.shape == gray.shape and posterised.dtype == np.float32
    np.testing.assert_allclose(posterised, result.centers[result.labels - 1, 0], rtol=1e-6)


def test_spatial_features_use_the_physical_scale():
    """On pure noise with a strong spatial weight, k=2 cuts the longer *physical* side."""
    noise = np.random.default_rng(1).normal(100, 1, size=(32, 32)).astype(np.float32)

    def cut_across_rows(scale) -> bool:
        labels = cluster_pixels(noise, 2, spatial_weight=20, scale=scale, n_init=3).labels
        rows_uniform = np.mean([len(np.unique(row)) == 1 for row in labels])
        cols_uniform = np.mean([len(np.unique(col)) == 1 for col in labels.T])
        assert max(rows_uniform, cols_uniform) > 0.9  # a clean straight cut
        return rows_uniform > cols_uniform

    assert cut_across_rows((4.0, 1.0))  # physically tall: top half / bottom half
    assert not cut_across_rows((1.0, 4.0))  # physically wide: left half / right half


def test_spatial_weight_makes_compact_clusters():
    noise = np.random.default_rng(2).normal(100, 10, size=(48, 48)).astype(np.float32)

    def same_as_right_neighbour(labels):
        return np.mean(labels[:, 1:] == labels[:, :-1])

    colour_only = cluster_pixels(noise, 4).labels
    compact = cluster_pixels(noise, 4, spatial_weight=5.0).labels
    assert same_as_right_neighbour(colour_only) < 0.5
    assert same_as_right_neighbour(compact) > 0.9


def test_smoothing_removes_salt_noise():
    image = np.zeros((64, 64), dtype=np.float32)
    image[:, 32:] = 100
    salt = np.random.default_rng(3).random(image.shape) < 0.02
    image[salt & (image == 0)] = 100
    truth = np.where(np.arange(64) < 32, 1, 2)[None, :].repeat(64, axis=0)
    interior = np.abs(np.arange(64) - 31.5)[None, :].repeat(64, axis=0) > 4
    raw = cluster_pixels(image, 2).labels
    smoothed = cluster_pixels(image, 2, sigma=1.5).labels
    assert (raw[interior] != truth[interior]).sum() > 10  # salt pixels join the bright cluster
    np.testing.assert_array_equal(smoothed[interior], truth[interior])
    assert cluster_pixels(image, 2, sigma=3.0, scale=2.0).params["sigma"] == 3.0


def nan_ihc():
    image = IHC.astype(np.float32)
    image[:60] = np.nan  # about 12 % of the pixels: many of them fall in the sample
    image[300, 300, 1] = np.inf  # one bad channel is enough
    return image


def test_nan_pixels_are_bad_input_by_default_on_both_paths():
    image = nan_ihc()
    with pytest.raises(ClusterError, match="NaN or infinite.*nan_pixels='background'"):
        cluster_pixels(image, 4, channel_axis=-1, sample_size=1000)
    lazy = da.from_array(image, chunks=(128, 128, 3))
    with pytest.raises(ClusterError, match="NaN or infinite"):  # drawn into the sample
        cluster_pixels(lazy, 4, channel_axis=-1, sample_size=1000)
    # a model applied to a lazy image finds them when the block is computed
    model = cluster_pixels(IHC, 4, channel_axis=-1).model
    labels = model.predict(lazy)
    assert np.array_equal(labels[384:, :].compute(), model.predict(IHC[384:, :]))  # clean blocks
    with pytest.raises(ClusterError, match="NaN or infinite"):
        labels.compute()
    # a ROI that leaves them out makes them irrelevant
    roi = np.isfinite(image).all(axis=-1)
    assert (cluster_pixels(image, 4, channel_axis=-1, mask=roi).labels[~roi] == 0).all()


def test_nan_pixels_as_background_get_zero_and_are_not_fitted_on_both_paths():
    """nan_pixels='background': one rule for numpy and dask, label 0 like outside the ROI."""
    image = nan_ihc()
    bad = ~np.isfinite(image).all(axis=-1)
    options = dict(channel_axis=-1, sample_size=1000, nan_pixels="background")
    in_memory = cluster_pixels(image, 4, **options)
    lazy = cluster_pixels(da.from_array(image, chunks=(128, 128, 3)), 4, **options)
    labels = lazy.labels.compute()
    np.testing.assert_array_equal(labels, in_memory.labels)
    assert (labels[bad] == 0).all() and (labels[~bad] > 0).all()
    assert np.isfinite(in_memory.centers).all()
    assert in_memory.params["n_samples"] < 1000  # the NaN pixels drawn were left out
    assert in_memory.params["nan_pixels"] == "background"
    assert in_memory.pixel_counts.sum() == (~bad).sum()
    with pytest.raises(ClusterError, match="NaN"):  # nothing left to fit on
        cluster_pixels(np.full((8, 8), np.nan), 2, nan_pixels="background")
    with pytest.raises(ClusterError, match="nan_pixels='zero'; choose one of error, background"):
        cluster_pixels(image, 4, channel_axis=-1, nan_pixels="zero")


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (IHC, {"n_clusters": 1}, "at least 2"),
        (np.repeat([[0, 200]], 10, axis=0).astype(np.uint8), {"n_clusters": 5}, "only 2 distinct"),
        (np.full((8, 8), np.nan), {"n_clusters": 2}, "NaN"),
        (
            IHC,
            {"n_clusters": 3, "channel_axis": -1, "mask": np.zeros((512, 512))},
            "ROI mask is empty",
        ),
        (IHC, {"n_clusters": 3, "channel_axis": 3}, "does not exist"),
        (IHC, {"n_clusters": 3, "channel_axis": 0}, "looks like a spatial axis"),
        (
            IHC,
            {"n_clusters": 3, "channel_axis": -1, "mask": np.ones((10, 10))},
            "draw the ROI on this image",
        ),
        (
            IHC,
            {"n_clusters": 3, "channel_axis": -1, "scale": (1, 1, 1)},
            "one value per spatial axis",
        ),
        (IHC, {"n_clusters": 3, "channel_axis": -1, "channel_scaling": "bogus"}, "choose one of"),
        (IHC, {"n_clusters": 3, "channel_axis": -1, "sigma": -1}, "sigma must be"),
        (
            IHC,
            {"n_clusters": 9, "channel_axis": -1, "mask": np.pad(np.ones((2, 2)), 255)},
            "fewer than",
        ),
        (np.zeros((4, 4), dtype=complex), {"n_clusters": 2}, "complex"),
    ],
    ids=[
        "k<2",
        "k>distinct",
        "nan",
        "empty-roi",
        "axis-out-of-range",
        "axis-looks-spatial",
        "roi-shape",
        "scale-length",
        "scaling",
        "negative-sigma",
        "roi-smaller-than-k",
        "complex",
    ],
)
def test_bad_input_gets_a_clear_error(image, kwargs, message):
    with pytest.raises(ClusterError, match=message) as caught:
        cluster_pixels(image, **kwargs)
    assert isinstance(caught.value, ValueError)
