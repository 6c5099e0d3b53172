"""Drive the merge-predictions widget on a headless viewer."""

import numpy as np
import pytest
import tifffile

from napari_patchwork._widgets.merge_widget import MergeWidget
from napari_patchwork.export import export_patches
from napari_patchwork.folder import read_patch_folder


@pytest.fixture
def folder(tmp_path):
    """A 40 x 50 patch folder (overlapping patches, scale 2) and class scores beside it."""
    labels = (np.arange(40)[:, None] // 14 + np.arange(50)[None, :] // 20).astype(np.uint8)
    out = tmp_path / "patches"
    export_patches(out, np.zeros((40, 50), np.uint8), labels, patch_size=16, stride=10,
                   edge="shift", scale=(2.0, 2.0), translate=(5.0, 7.0))  # fmt: skip
    scores = tmp_path / "scores"
    scores.mkdir()
    for row in read_patch_folder(out).rows:
        y0, x0 = int(row["y0"]), int(row["x0"])
        one_hot = np.eye(5, dtype=np.float32)[labels[y0 : y0 + 16, x0 : x0 + 16]]
        tifffile.imwrite(scores / row["image"].split("/")[-1], one_hot)  # channels last
    return out, scores, labels


def test_merge_adds_labels_then_replaces_them_with_scores(make_napari_viewer, folder):
    out, scores, labels = folder
    viewer = make_napari_viewer()
    widget = MergeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.folder_edit.value = out
    widget.predictions_edit.value = scores
    widget.merge_combo.value = "vote"
    widget.argmax_check.value = True
    widget.run_button.native.click()
    layer = viewer.layers["patches predictions"]
    assert layer._type_string == "labels" and layer.data.dtype == np.uint8
    np.testing.assert_array_equal(layer.data, labels)
    np.testing.assert_allclose(layer.scale, (2, 2))
    np.testing.assert_allclose(layer.translate, (5, 7))
    assert "merged with vote" in widget.status.value
    # scores, hann: an Image with the channel axis last (scale 1 there), same layer name
    widget.merge_combo.value = "hann"
    widget.argmax_check.value = False
    widget.run_button.native.click()
    assert [lay.name for lay in viewer.layers].count("patches predictions") == 1
    layer = viewer.layers["patches predictions"]
    assert layer._type_string == "image" and layer.data.shape == (40, 50, 5)
    assert not layer.rgb
    np.testing.assert_allclose(layer.scale, (2, 2, 1))
    np.testing.assert_allclose(np.argmax(layer.data, axis=-1), labels)


def test_predictions_inside_the_folder_are_found_and_bad_choices_reported(
    make_napari_viewer, folder, notifications
):
    out, scores, _ = folder
    scores.rename(out / "predictions")
    viewer = make_napari_viewer()
    widget = MergeWidget(viewer)
    widget.folder_edit.value = out
    assert widget.predictions_edit.value == out / "predictions"
    widget.merge_combo.value = "vote"  # float scores without arg-max: refused, says why
    widget.run_button.native.click()
    assert "patches predictions" not in viewer.layers
    assert "argmax=True" in widget.status.value
    assert any("argmax=True" in str(n.message) for n in notifications)
    widget.folder_edit.value = out / "predictions"  # not a patch folder
    widget.run_button.native.click()
    assert "is not a patch folder" in widget.status.value
