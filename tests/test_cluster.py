"""Pure tests of the cluster-segmentation core (no viewer)."""

import json
import subprocess
import sys
import threading
import time
import tracemalloc

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

from napari_patchwork.cluster import (
    ID_ORDER,
    ClusterError,
    ClusterModel,
    choose_k,
    cluster_pixels,
    cluster_pixels_steps,
    clusters_to_mask,
    posterize,
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


def test_core_imports_neither_napari_nor_qt():
    code = (
        "import sys, napari_patchwork.cluster\n"
        "gui = [m for m in ('napari', 'qtpy', 'PyQt5') if m in sys.modules]\n"
        "assert not gui, gui\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


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


def test_choose_k_on_all_pixels_leaves_nan_pixels_out():
    image = IHC[:96, :96].astype(np.float32)
    image[:10] = np.nan
    with pytest.raises(ClusterError, match="NaN"):
        choose_k(image, [2, 3], channel_axis=-1, score_all_pixels=True)
    scores = choose_k(image, [2, 3], channel_axis=-1, score_all_pixels=True, nan_pixels="background")
    assert scores.n_scored == 86 * 96 and np.isfinite(scores.inertia).all()


def test_model_saves_small_and_reapplies_with_the_same_ids(tmp_path):
    result = cluster_pixels(IHC, 5, channel_axis=-1, sigma=1.0)
    path = result.model.save(tmp_path / "model.json")
    assert path.stat().st_size < 4096
    model = ClusterModel.load(path)
    np.testing.assert_array_equal(model.predict(IHC), result.labels)
    np.testing.assert_allclose(model.centers_image, result.centers)
    # the same colours get the same ids elsewhere: a shuffled copy (no smoothing model)
    plain = cluster_pixels(IHC, 5, channel_axis=-1).model
    order = np.random.default_rng(0).permutation(512 * 512)
    shuffled = IHC.reshape(-1, 3)[order].reshape(IHC.shape)
    np.testing.assert_array_equal(
        plain.predict(shuffled).ravel(), plain.predict(IHC).ravel()[order]
    )
    # on another layer of a stack, and lazily
    lazy = ClusterModel.load(path).predict(
        da.from_array(np.stack([IHC, IHC]), chunks=(1, 256, 256, 3))
    )
    np.testing.assert_array_equal(lazy[1].compute(), result.labels)


def test_spatial_model_round_trips(tmp_path):
    result = cluster_pixels(IHC, 6, channel_axis=-1, spatial_weight=1.0, scale=(0.5, 0.5))
    model = ClusterModel.load(result.model.save(tmp_path / "spatial.json"))
    assert model.spatial_axes == (-2, -1) and model.scale == (0.5, 0.5)
    np.testing.assert_array_equal(model.predict(IHC), result.labels)


@pytest.mark.parametrize(
    "options",
    [
        {"channel_axis": -1, "channel_scaling": "per_channel", "sigma": (1.0, 2.0)},
        {"channel_axis": 0, "spatial_weight": 0.5, "scale": (2.0, 0.5)},
        {"channel_axis": -1, "spatial_weight": 1.0, "spatial_axes": (1,), "sigma": 0.5},
    ],
    ids=["per-channel-sigma", "channels-first-spatial", "one-spatial-axis"],
)
def test_every_model_setting_survives_save_and_load(tmp_path, options):
    image = np.moveaxis(IHC, -1, 0) if options["channel_axis"] == 0 else IHC
    result = cluster_pixels(image[..., :200, :200], 4, **options)
    loaded = ClusterModel.load(result.model.save(tmp_path / "model.json"))
    for name in ClusterModel.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result.model, name), name)
    assert loaded.to_dict() == result.model.to_dict()
    np.testing.assert_array_equal(loaded.predict(image[..., :200, :200]), result.labels)


def test_loading_something_else_fails_clearly(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ClusterError, match="not a cluster model"):
        ClusterModel.load(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ClusterError, match="not a JSON cluster model"):
        ClusterModel.load(tmp_path / "broken.json")
    data = cluster_pixels(IHC, 3, channel_axis=-1).model.to_dict()
    data["centers"] = [[1.0, 2.0]] * 3  # 2 features for a 3-channel model
    with pytest.raises(ClusterError, match="inconsistent"):
        ClusterModel.from_dict(data)


def test_posterize_uses_rounded_centres_and_zero_outside():
    labels = np.array([[0, 1], [2, 2]], dtype=np.uint8)
    centres = np.array([[10.4, 20.6, 30.5], [250.2, 260.0, -3.0]])
    out = posterize(labels, centres, channel_axis=-1, dtype=np.uint8)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [10, 21, 30])  # numpy rounds half to even
    np.testing.assert_array_equal(out[1, 0], [250, 255, 0])  # clipped to uint8


def test_foreground_mask_from_clusters():
    result = cluster_pixels(IHC, 5, channel_axis=-1)
    mask = clusters_to_mask(result.labels, [1, 3])
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask, np.isin(result.labels, [1, 3]))
    assert mask.sum() == result.pixel_counts[[0, 2]].sum()
    lazy = clusters_to_mask(da.from_array(result.labels, chunks=100), 2)
    np.testing.assert_array_equal(lazy.compute(), result.labels == 2)
    for bad, message in (([0], "outside the ROI"), ([], "no cluster chosen"), ([1.5], "integers")):
        with pytest.raises(ClusterError, match=message):
            clusters_to_mask(result.labels, bad)
    with pytest.raises(ClusterError, match="1..5"):
        result.foreground([6])


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


def test_more_than_255_clusters_use_uint16():
    image = np.random.default_rng(5).integers(0, 60000, size=(40, 40), dtype=np.uint16)
    result = cluster_pixels(image, 300)
    assert result.labels.dtype == np.uint16 and result.labels.max() == 300


def test_steps_report_progress_and_can_be_stopped():
    steps = cluster_pixels_steps(np.tile(IHC, (2, 2, 1)), 5, channel_axis=-1)
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
    stopped = cluster_pixels_steps(np.tile(IHC, (2, 2, 1)), 5, channel_axis=-1)
    for _ in range(4):
        next(stopped)
    stopped.close()  # what the widget's Cancel does, at a yield
    assert threading.active_count() == threads_before


def test_abandoned_steps_stop_labelling_after_the_blocks_in_flight(monkeypatch):
    """A GUI that stops pulling progress (Cancel) must not leave every block computing."""
    import napari_patchwork.cluster as core

    labelled = []
    label_block = core._Scorer.label_block

    def counting(self, *args, **kwargs):
        labelled.append(1)
        return label_block(self, *args, **kwargs)

    monkeypatch.setattr(core._Scorer, "label_block", counting)
    steps = cluster_pixels_steps(np.tile(IHC, (4, 4, 1)), 5, channel_axis=-1, n_threads=2)
    for _ in range(4):  # start, fitted, two blocks labelled
        next(steps)
    time.sleep(0.5)
    assert len(labelled) <= 2 + 2 * 2  # the two done, at most two blocks per thread in flight
    steps.close()


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


def test_model_refuses_an_image_with_other_channels():
    model = cluster_pixels(IHC, 3, channel_axis=-1).model
    with pytest.raises(ClusterError, match="fitted on 3 channel"):
        model.predict(IHC[..., 0], channel_axis=None)


def test_agrees_with_plain_kmeans_on_all_pixels_of_a_real_photo():
    """The issue's reference: KMeans(n_clusters=5, random_state=0) on all pixels of an RGB photo."""
    from sklearn.cluster import KMeans

    image = sample_image()
    pixels = image.reshape(-1, 3).astype(np.float64)
    reference = KMeans(n_clusters=5, random_state=0).fit(pixels)

    def inertia(labels):
        flat = labels.ravel()
        return sum(((pixels[flat == c] - pixels[flat == c].mean(0)) ** 2).sum() for c in np.unique(flat))

    ours = cluster_pixels(image, 5, channel_axis=-1, random_state=0)
    assert adjusted_rand_score(reference.labels_, ours.labels.ravel()) >= 0.95
    # every seed reaches a k-means solution as good as the full fit's (within 0.2 %)
    for seed in range(4):
        labels = cluster_pixels(image, 5, channel_axis=-1, random_state=seed).labels
        assert inertia(labels) <= 1.002 * reference.inertia_
