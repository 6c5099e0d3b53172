"""Pixel features: channel axes, ROI, smoothing, positions, NaN pixels, bad input."""

import dataclasses
import math

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_patchwork.cluster import (
    CHANNEL_SCALINGS,
    NAN_PIXELS,
    ClusterError,
    FeatureOptions,
    choose_k,
    choose_k_steps,
    cluster_pixels,
    cluster_pixels_steps,
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
    labels = model.predict(lazy, allow_other_units=True)  # float32 copy of the uint8 photo
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


# --------------------------------------------------------------------------- FeatureOptions


def test_feature_options_are_normalised_frozen_and_hashable():
    options = FeatureOptions(
        channel_axis=np.int64(-1),
        spatial_weight=np.float32(0.5),
        spatial_axes=[0, np.int16(1)],
        sigma=[1, 2.5],
        scale=np.array([0.5, 0.25]),
        sample_size=np.int32(1000),
        random_state=np.uint8(3),
    )
    assert options.channel_axis == -1 and type(options.channel_axis) is int
    assert options.spatial_axes == (0, 1) and options.sigma == (1.0, 2.5)
    assert options.scale == (0.5, 0.25) and type(options.scale[0]) is float
    assert options.sample_size == 1000 and options.random_state == 3
    assert options == FeatureOptions(**dataclasses.asdict(options))  # made again: the same
    assert hash(options) == hash(FeatureOptions(**dataclasses.asdict(options)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.sigma = 3.0
    changed = options.replace(sigma=0)
    assert changed.sigma == 0.0 and options.sigma == (1.0, 2.5)
    with pytest.raises(ClusterError, match="sigma must be finite and 0 or more"):
        options.replace(sigma=-1)
    with pytest.raises(TypeError, match="unknown feature option.*sigmaa.*the options are"):
        options.replace(sigmaa=1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channel_axis": 1.0}, "channel_axis must be an integer"),
        ({"channel_axis": True}, "channel_axis must be an integer"),
        ({"channel_scaling": "z"}, "channel_scaling='z'; choose one of shared, per_channel"),
        ({"channel_scaling": ["shared"]}, "choose one of shared, per_channel"),
        ({"spatial_weight": -0.1}, "spatial_weight must be 0 or more"),
        ({"spatial_weight": float("nan")}, "spatial_weight must be 0 or more"),
        ({"spatial_weight": "1"}, "spatial_weight must be a real number"),
        ({"spatial_axes": 0}, "spatial_axes must be a sequence of axis indices"),
        ({"spatial_axes": [0.5]}, "spatial_axes must be an integer"),
        ({"sigma": float("inf")}, "sigma must be finite and 0 or more"),
        ({"sigma": []}, "sigma must be one number or one number per spatial axis"),
        ({"sigma": [[1, 2]]}, "sigma must be one number or one number per spatial axis"),
        ({"sigma": 1j}, "sigma must be a real number"),
        ({"scale": 0}, "scale must be finite and greater than 0"),
        ({"scale": (1, -2)}, "scale must be finite and greater than 0"),
        ({"scale": "1"}, "scale must be a real number"),
        ({"sample_size": 1}, "sample_size must be an integer of at least 2 pixels"),
        ({"sample_size": 1000.0}, "sample_size must be an integer"),
        ({"random_state": -1}, "random_state must be 0 or more"),
        ({"random_state": "seed"}, "random_state must be an integer"),
        ({"max_channels": 0}, "max_channels must be at least 1"),
        ({"nan_pixels": "zero"}, "nan_pixels='zero'; choose one of error, background"),
        ({"nan_pixels": None}, "choose one of error, background"),
    ],
)
def test_bad_feature_options_say_which_option_and_what_to_give(changes, message):
    with pytest.raises(ClusterError, match=message) as caught:
        FeatureOptions(**changes)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ClusterError, match=message):  # the keyword entry points too
        cluster_pixels(IHC[:32, :32], 2, **{"channel_axis": -1, **changes})


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(),
    st.text(max_size=12),
    st.sampled_from(["shared", "per_channel", "error", "background"]),
    st.lists(st.one_of(st.integers(-5, 5), st.floats(), st.text(max_size=3)), max_size=4),
    st.builds(np.array, st.lists(st.floats(-10, 10), max_size=3)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
OPTION_NAMES = [f.name for f in dataclasses.fields(FeatureOptions)]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(changes=st.dictionaries(st.sampled_from(OPTION_NAMES), ANY_VALUE, max_size=4))
def test_feature_options_either_validate_or_raise_cluster_error(changes):
    """Whatever the values: a ClusterError, or options that are normalised, equal to
    themselves made again, hashable, and whose every number is finite and in range."""
    try:
        options = FeatureOptions(**changes)
    except ClusterError:
        return
    assert FeatureOptions(**dataclasses.asdict(options)) == options
    hash(options)
    assert options.channel_axis is None or type(options.channel_axis) is int
    assert options.channel_scaling in CHANNEL_SCALINGS and options.nan_pixels in NAN_PIXELS
    assert math.isfinite(options.spatial_weight) and options.spatial_weight >= 0
    sigmas = np.atleast_1d(options.sigma)
    assert sigmas.size and np.isfinite(sigmas).all() and (sigmas >= 0).all()
    if options.scale is not None:
        scales = np.atleast_1d(options.scale)
        assert scales.size and np.isfinite(scales).all() and (scales > 0).all()
    assert type(options.sample_size) is int and options.sample_size >= 2
    assert options.random_state is None or options.random_state >= 0
    np.random.default_rng(options.random_state)  # a seed numpy accepts


def test_keyword_options_and_an_options_object_give_the_same_result():
    features = FeatureOptions(channel_axis=-1, sigma=1.0, random_state=4)
    by_object = cluster_pixels(IHC[:128, :128], 3, features=features)
    by_keywords = cluster_pixels(IHC[:128, :128], 3, channel_axis=-1, sigma=1.0, random_state=4)
    overridden = cluster_pixels(IHC[:128, :128], 3, features=features.replace(sigma=0), sigma=1.0)
    np.testing.assert_array_equal(by_object.labels, by_keywords.labels)
    np.testing.assert_array_equal(by_object.labels, overridden.labels)
    assert by_object.params == by_keywords.params
    with pytest.raises(TypeError, match="unknown feature option.*chanel_axis"):
        cluster_pixels(IHC, 3, chanel_axis=-1)
    with pytest.raises(TypeError, match="features must be a FeatureOptions"):
        cluster_pixels(IHC, 3, features={"channel_axis": -1})
    with pytest.raises(TypeError, match="features must be a FeatureOptions"):
        next(cluster_pixels_steps(IHC, 3, {"channel_axis": -1}))
    with pytest.raises(TypeError, match="features must be a FeatureOptions"):
        next(choose_k_steps(IHC, [2, 3], {"channel_axis": -1}))


def test_smoothing_wider_than_the_image_or_too_slow_is_refused_with_the_reason():
    with pytest.raises(ClusterError, match="more than the image's 64 pixels.*at most 64"):
        cluster_pixels(IHC[:64, :80], 2, channel_axis=-1, sigma=100)
    with pytest.raises(ClusterError, match="at most 32 \\(in the image's units"):
        cluster_pixels(IHC[:64, :64], 2, channel_axis=-1, sigma=100, scale=0.5)
    with pytest.raises(ClusterError, match="above 256 pixels take minutes.*Downsample"):
        cluster_pixels(IHC, 2, channel_axis=-1, sigma=300)
    with pytest.raises(ClusterError, match="more than the image"):
        choose_k(IHC[:64, :64], [2, 3], channel_axis=-1, sigma=1e6)


def test_huge_float_values_get_a_clear_message():
    image = np.random.default_rng(0).choice([-1e300, 1e300], size=(16, 16))
    with pytest.raises(ClusterError, match="pixel values reach .*1e\\+300, too large to cluster"):
        cluster_pixels(image, 2)
    scaled = cluster_pixels(image / 1e300, 2)  # what the message suggests works
    assert set(np.unique(scaled.labels)) == {1, 2}
