"""Drive the annotations-to-mask widget on a headless viewer."""

import numpy as np
import pytest

from napari_patchwork._widgets.annotation_widget import OVERLAP_TABLE, AnnotationWidget


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def add_annotations(viewer, **kwargs):
    squares = [
        np.array([[9.5, 9.5], [9.5, 29.5], [29.5, 29.5], [29.5, 9.5]]),  # pixels 10..29
        np.array([[19.5, 19.5], [19.5, 39.5], [39.5, 39.5], [39.5, 19.5]]),  # overlaps the first
    ]
    return viewer.add_shapes(
        squares,
        shape_type="rectangle",
        name="roi",
        features={"class": ["tumor", "stroma"]},
        **kwargs,
    )


def test_make_mask_with_class_table(viewer_widget):
    viewer, widget = viewer_widget
    viewer.add_image(np.zeros((64, 64)), name="img", scale=(2, 2), translate=(4, 6))
    add_annotations(viewer, scale=(2, 2), translate=(4, 6))
    widget.shapes_combo.value = viewer.layers["roi"]
    assert widget.column_combo.value == "class"
    assert widget.class_ids() == {"tumor": 1, "stroma": 2}
    widget.run_button.native.click()
    mask = viewer.layers["roi mask"]
    assert mask.data.shape == (64, 64) and mask.data.dtype == np.uint8
    assert np.allclose(mask.scale, (2, 2)) and np.allclose(mask.translate, (4, 6))
    assert (mask.data == 1).sum() == 400 - 100 and (mask.data == 2).sum() == 400
    assert mask.metadata["napari_patchwork"]["class_ids"] == {"tumor": 1, "stroma": 2}
    assert "2 shapes painted" in widget.status.value

    # edit the table: stroma -> 5, and let the first row (tumor) win the overlap
    widget.class_table.value = {"class": ["tumor", "stroma"], "label id": [3, 5]}
    widget.overlap.value = OVERLAP_TABLE
    widget.run_button.native.click()
    assert [layer.name for layer in viewer.layers].count("roi mask") == 1
    mask = viewer.layers["roi mask"]
    assert (mask.data == 3).sum() == 400 and (mask.data == 5).sum() == 300


def test_shapes_on_a_different_grid_land_on_the_image(viewer_widget):
    viewer, widget = viewer_widget
    viewer.add_image(np.zeros((40, 40)), name="img", scale=(0.5, 0.5))
    # shapes in world units (scale 1): world 4.75..9.75 -> image pixels 10..19
    viewer.add_shapes(
        [np.array([[4.75, 4.75], [4.75, 9.75], [9.75, 9.75], [9.75, 4.75]])],
        shape_type="rectangle",
        name="um",
    )
    widget.shapes_combo.value = viewer.layers["um"]
    widget.instance.value = True
    widget.run_button.native.click()
    mask = viewer.layers["um mask"].data
    assert mask.sum() == 100 and mask[10:20, 10:20].all()


def test_no_shapes_layer_is_a_clear_message(viewer_widget):
    viewer, widget = viewer_widget
    viewer.add_image(np.zeros((10, 10)))
    widget.run_button.native.click()
    assert "no Shapes layer" in widget.status.value
    assert len(viewer.layers) == 1
