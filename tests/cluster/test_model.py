"""The model: save, load, re-apply."""

import json

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from napari_patchwork.cluster import (
    ClusterError,
    ClusterModel,
    cluster_pixels,
)
from napari_patchwork.sample import sample_image

IHC = sample_image()  # (512, 512, 3) uint8, a real RGB photo
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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


def test_model_refuses_an_image_with_other_channels():
    model = cluster_pixels(IHC, 3, channel_axis=-1).model
    with pytest.raises(ClusterError, match="fitted on 3 channel"):
        model.predict(IHC[..., 0], channel_axis=None)


# --------------------------------------------------------------------------- units


def test_an_image_of_another_dtype_is_refused_with_how_to_convert_it():
    model = cluster_pixels(IHC, 4, channel_axis=-1).model
    as_float = IHC.astype(np.float32) / 255
    with pytest.raises(ClusterError, match="fitted on a uint8 image.*this image is float32") as e:
        model.predict(as_float)
    assert "skimage.util.img_as_ubyte(image)" in str(e.value)
    assert "allow_other_units=True" in str(e.value)
    with pytest.raises(ClusterError, match="this image is uint16"):
        model.predict(IHC.astype(np.uint16) * 257)
    with pytest.raises(ClusterError, match="this image is float32"):
        model.predict(da.from_array(as_float, chunks=128))  # refused before any compute
    # the same values in a float array are the same units: allowed when asked
    same_values = model.predict(IHC.astype(np.float32), allow_other_units=True)
    np.testing.assert_array_equal(same_values, model.predict(IHC))


def test_values_far_outside_the_fitted_range_are_refused_numpy_and_dask():
    rng = np.random.default_rng(7)
    twelve_bit = rng.integers(0, 4096, size=(64, 64)).astype(np.uint16)
    model = cluster_pixels(twelve_bit, 3).model
    low, high = model.value_range
    assert 0 <= low < high <= 4095
    sixteen_bit = twelve_bit * 16  # the same scene stretched to 16 bits
    with pytest.raises(ClusterError, match="far outside those the model was fitted on"):
        model.predict(sixteen_bit)
    lazy = model.predict(da.from_array(sixteen_bit, chunks=32))  # refused when computed
    with pytest.raises(ClusterError, match="allow_other_units=True"):
        lazy.compute()
    assert model.predict(sixteen_bit, allow_other_units=True).shape == (64, 64)
    # values just beyond the fitted range (within its width) are labelled
    brighter = np.clip(twelve_bit.astype(np.int64) + 1000, 0, 65535).astype(np.uint16)
    assert model.predict(brighter).max() == 3
    # far-out pixels outside the ROI do not matter
    roi = np.ones((64, 64), dtype=bool)
    roi[:8] = False
    hot = twelve_bit.copy()
    hot[:8] = 65535
    labels = model.predict(hot, mask=roi)
    assert (labels[:8] == 0).all() and (labels[8:] > 0).all()


def test_float_models_check_the_range_too():
    unit = (IHC.astype(np.float32) / 255)[:128, :128]
    model = cluster_pixels(unit, 3, channel_axis=-1).model
    assert model.image_dtype == "float32" and model.value_range[1] <= 1.0
    with pytest.raises(ClusterError, match="far outside"):
        model.predict(unit * 255)
    nan_image = unit.copy()
    nan_image[0, 0] = np.nan  # NaN pixels are NaN pixels, not out of range
    assert model.predict(nan_image, nan_pixels="background")[0, 0] == 0
