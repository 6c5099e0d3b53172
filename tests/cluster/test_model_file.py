"""The model file: every field checked on load, older versions upgraded, atomic saves."""

import copy
import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_patchwork.cluster import (
    MODEL_FORMAT_VERSION,
    ClusterError,
    ClusterModel,
    cluster_pixels,
)
from napari_patchwork.sample import sample_image

IHC = sample_image()  # (512, 512, 3) uint8, a real RGB photo
SMALL = np.ascontiguousarray(IHC[:24, :24])
PLAIN = cluster_pixels(IHC[:128, :128], 4, channel_axis=-1, sigma=(1.0, 0.5)).model
SPATIAL = cluster_pixels(IHC[:128, :128], 3, channel_axis=-1, spatial_weight=0.5).model
FUZZ = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_the_fitted_dtype_and_value_range_are_saved(tmp_path):
    data = PLAIN.to_dict()
    assert data["version"] == MODEL_FORMAT_VERSION == 2
    assert data["image_dtype"] == "uint8"
    low, high = data["value_range"]
    assert 0 <= low < high <= 255
    loaded = ClusterModel.load(PLAIN.save(tmp_path / "m.json"))
    assert loaded.image_dtype == "uint8" and loaded.value_range == (low, high)


def test_a_version_1_model_still_loads_and_labels_without_a_units_check():
    old = PLAIN.to_dict()
    old["version"] = 1
    del old["image_dtype"], old["value_range"]
    model = ClusterModel.from_dict(old)
    assert model.image_dtype is None and model.value_range is None
    np.testing.assert_array_equal(model.predict(SMALL), PLAIN.predict(SMALL))
    model.predict(SMALL.astype(np.float32) / 255)  # unknown units: not refused
    assert model.to_dict()["version"] == 2  # saved again: the current version


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("centers", [[float("nan")] * 3] * 4, "'centers' must be finite"),
        ("centers", [[1e39] * 3] * 4, "'centers' must be finite"),
        ("centers", [[0.0] * 3], "'centers' must be a list of 2 to 65535"),
        ("centers", [[0.0] * 3] * 65536, "'centers' must be a list of 2 to 65535"),
        ("centers", [[0.0] * 2] * 4, "inconsistent cluster model: 'centers' has a row of 2"),
        ("centers", [["0"] * 3] * 4, "'centers' must be a list of rows of numbers"),
        ("centers", "[[0]]", "'centers' must be a list of 2"),
        ("channel_scale", [1.0, 0.0, 1.0], "'channel_scale' must be a list of 1 to 4096 finite"),
        ("channel_scale", [1.0, 1.0], "inconsistent cluster model: 'channel_offset' has 3"),
        ("channel_scale", [1.0, float("inf"), 1.0], "'channel_scale' must be"),
        ("channel_scale", [1e308, 1e308, 1e308], "'channel_scale' must be small enough"),
        ("channel_offset", [0, True, 0], "'channel_offset' must be a list"),
        ("channel_axis", 1.5, "'channel_axis' must be null or an axis index"),
        ("channel_axis", 99, "'channel_axis' must be null or an axis index"),
        ("channel_scaling", "zscore", "'channel_scaling' must be one of shared, per_channel"),
        ("spatial_weight", -1, "'spatial_weight' must be a finite number 0 or more"),
        ("spatial_weight", "1", "'spatial_weight' must be a finite number"),
        ("spatial_length", 0, "'spatial_length' must be a finite number greater than 0"),
        ("spatial_axes", [-3], "'spatial_axes' must be a list of distinct increasing negative"),
        ("scale", [], "'scale' must be a list of 1 to 32"),
        ("scale", [1.0, -1.0], "'scale' must be a list of 1 to 32 finite numbers > 0"),
        ("sigma", [1.0], "'sigma' must be one number or 2"),
        ("sigma", -0.5, "'sigma' must be a finite number 0 or more"),
        ("image_dtype", "|O", "'image_dtype' must be null or the name of a bool, integer"),
        ("image_dtype", "foo", "'image_dtype' must be null or the name"),
        ("image_dtype", "complex64", "'image_dtype' must be null or the name"),
        ("value_range", [5, 5], "'value_range' must be \\[lowest, highest\\]"),
        ("value_range", [0], "'value_range' must be"),
        ("value_range", None, "'value_range' must be"),
        ("version", "2", "'version' must be a whole number"),
        ("version", 3, "newer than this napari-patchwork understands"),
        ("format", None, "not a cluster model"),
    ],
)
def test_each_bad_field_is_named(field, value, message):
    data = PLAIN.to_dict()
    data[field] = value
    with pytest.raises(ClusterError, match=message) as caught:
        ClusterModel.from_dict(data)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("field", sorted(set(PLAIN.to_dict()) - {"id_order", "centers_image"}))
def test_a_missing_field_is_named(field):
    data = PLAIN.to_dict()
    del data[field]
    expected = "not a cluster model" if field == "format" else f"has no '{field}' entry"
    with pytest.raises(ClusterError, match=expected):
        ClusterModel.from_dict(data)


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0, 1, -1, 2, 65536, 1e300, -1e-300, 0.0, -0.0]),
        st.text(max_size=8),
        st.sampled_from(["uint8", "float64", "|O", "shared", "per_channel", "<f8", "bool"]),
    ),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every position inside a JSON value, as a tuple of keys / indices."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutate(data, path, action, new_value):
    data = copy.deepcopy(data)
    if not path:
        return new_value
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "replace":
        parent[key] = new_value
    elif action == "delete":
        del parent[key]
    elif action == "duplicate" and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    elif action == "wrap":
        parent[key] = [parent[key]]
    return data


def _check_loads_or_refuses(data):
    """Loading gives a model that saves to the same dict and labels an image (or refuses it
    with a ClusterError), or a ClusterError: never another exception."""
    try:
        model = ClusterModel.from_dict(data)
    except ClusterError:
        return None
    again = ClusterModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.to_dict() == model.to_dict()
    assert np.isfinite(model.centers).all() and np.isfinite(model.centers_image).all()
    assert (model.channel_scale > 0).all() and 2 <= model.n_clusters <= 65535
    assert model.centers.shape[1] == model.n_channels + len(model.spatial_axes)
    image = SMALL if model.n_channels == 3 else SMALL[..., : model.n_channels]
    try:
        labels = model.predict(image, channel_axis=-1 if model.n_channels > 1 else None)
    except ClusterError:
        return model
    assert labels.shape == image.shape[:2] and labels.max() <= model.n_clusters
    return model


@FUZZ
@given(
    base=st.sampled_from([PLAIN, SPATIAL]),
    data=st.data(),
    action=st.sampled_from(["replace", "replace", "delete", "duplicate", "wrap"]),
    new_value=JSON_VALUES,
)
def test_any_mutated_model_loads_equal_or_gives_a_cluster_error(base, data, action, new_value):
    valid = base.to_dict()
    path = data.draw(st.sampled_from(list(_paths(valid))))
    _check_loads_or_refuses(_mutate(valid, path, action, new_value))


@FUZZ
@given(
    base=st.sampled_from([PLAIN, SPATIAL]),
    cut=st.floats(0, 1),
    position=st.floats(0, 1),
    junk=st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "[" * 3000, "\xff", '"', "{}", ""]
    ),
)
def test_damaged_model_files_give_a_cluster_error(tmp_path_factory, base, cut, position, junk):
    """Truncated files and files with tokens Python's json reads oddly (NaN, huge numbers,
    deep nesting, bad UTF-8) give a ClusterError or a valid model, never another exception."""
    text = json.dumps(base.to_dict(), indent=1)
    at = int(position * len(text))
    damaged = (text[:at] + junk + text[at:])[: max(1, int(len(text) * (0.5 + cut / 2)))]
    path = tmp_path_factory.getbasetemp() / "fuzzed-model.json"
    path.write_bytes(damaged.encode("utf-8", "surrogateescape"))
    try:
        model = ClusterModel.load(path)
    except ClusterError:
        return
    assert np.isfinite(model.centers).all()


def test_unreadable_paths_give_a_cluster_error(tmp_path):
    with pytest.raises(ClusterError, match="cannot read the cluster model.*check the path"):
        ClusterModel.load(tmp_path / "missing.json")
    with pytest.raises(ClusterError, match="cannot read the cluster model"):
        ClusterModel.load(tmp_path)  # a folder
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ClusterError, match="expected a JSON object"):
        ClusterModel.load(tmp_path / "list.json")


def test_save_never_replaces_a_file_unless_asked(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="exists; choose another name or pass overwrite"):
        PLAIN.save(path)
    assert path.read_text() == "precious"
    PLAIN.save(path, overwrite=True)
    assert ClusterModel.load(path).to_dict() == PLAIN.to_dict()
    assert sorted(os.listdir(tmp_path)) == ["model.json"]  # no temporary file left
    with pytest.raises(ClusterError, match="does not exist; create it"):
        PLAIN.save(tmp_path / "no-such-folder" / "model.json")
    with pytest.raises(ClusterError, match="it is a folder"):
        PLAIN.save(tmp_path, overwrite=True)


def test_a_failed_save_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = PLAIN.save(tmp_path / "model.json")
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        SPATIAL.save(path, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.json"]


def test_saved_models_are_strict_json():
    text = json.dumps(PLAIN.to_dict(), allow_nan=False)  # no NaN/Infinity tokens
    assert math.isfinite(json.loads(text)["spatial_length"])
