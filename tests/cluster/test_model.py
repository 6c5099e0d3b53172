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
