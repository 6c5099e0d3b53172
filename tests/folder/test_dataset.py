"""DatasetInfo: dataset.json typed, versioned, with derived file settings."""

import json

import numpy as np
import pytest

from napari_patchwork.export import ExportOptions, export_patches, plan_export
from napari_patchwork.folder import DatasetInfo, PatchFolderError, read_dataset_info
from napari_patchwork.folder.dataset import FILE


def exported(tmp_path, **options):
    image = np.arange(40 * 50 * 3, dtype=np.uint8).reshape(40, 50, 3)
    mask = (image[..., 0] > 100).astype(np.uint16)
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=16, channel_axis=-1, **options)
    return out


def test_json_round_trip_is_exact(tmp_path):
    out = exported(tmp_path, split=(0.5, 0.5), edge="pad", scale=(0.5, 0.5), units="micrometer")
    data = json.loads((out / "dataset.json").read_text())
    info = DatasetInfo.from_json(data)
    assert info.to_json() == data
    assert info.complete and info.n_patches == 12 and info.split_counts == {"train": 6, "val": 6}
    assert info.patch_size == (16, 16) and info.image.shape == (40, 50, 3)
    assert read_dataset_info(out) == info


def test_file_settings_are_the_marked_fields():
    marked = {f.name for f in DatasetInfo.__dataclass_fields__.values() if f.metadata == FILE}
    image = np.zeros((20, 20), np.uint8)
    settings = plan_export(image, None, ExportOptions(patch_size=10)).info.file_settings()
    assert set(settings) == marked | {"ome_pixel_size"}
    assert "name" not in settings["image"] and settings["mask"] is None


def test_differences_name_each_file_setting_and_ignore_the_rest():
    image = np.zeros((20, 20), np.uint8)
    old = plan_export(image, None, ExportOptions(patch_size=10, seed=1, image_name="a")).info
    new = plan_export(image, None, ExportOptions(patch_size=5, seed=2, image_name="b")).info
    assert old.differences(new) == [
        "patch_size: [10, 10] there, [5, 5] now",
        "stride: [10, 10] there, [5, 5] now",
    ]


def test_version_1_folders_are_upgraded(tmp_path):
    out = exported(tmp_path)
    data = json.loads((out / "dataset.json").read_text())
    for key in ("downsample", "output_shape", "pixel_size", "only_foreground", "units"):
        data.pop(key)
    data["format_version"] = 1
    info = DatasetInfo.from_json(data)
    assert info.downsample == (1, 1) and info.output_shape == (40, 50)
    assert info.only_foreground is False and info.pixel_size is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 99}, "newer napari-patchwork"),
        ({"format_version": "x"}, "not a version number"),
        ({"format": "other"}, "not a dataset.json of napari-patchwork"),
        ({"image": 5}, "image must be an object with shape and dtype"),
        ({"patch_size": None}, "patch_size must be 2 whole numbers"),
    ],
)
def test_damaged_dataset_json_is_a_patch_folder_error(tmp_path, change, message):
    data = json.loads((exported(tmp_path) / "dataset.json").read_text())
    data.update(change)
    with pytest.raises(PatchFolderError, match=message):
        DatasetInfo.from_json(data)


def test_missing_keys_are_named(tmp_path):
    data = json.loads((exported(tmp_path) / "dataset.json").read_text())
    del data["stride"], data["edge"]
    with pytest.raises(PatchFolderError, match=r"lacks the keys \['edge', 'stride'\]"):
        DatasetInfo.from_json(data)
