"""The grid in the viewer: on top after a redraw, default colours, legend, outlines while
zooming, and large grids as a lazy Labels layer whose selection reaches the export."""

import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_patchwork._layer_data import GRID_EDGE_COLOUR, kept_patches, selected_patches
from napari_patchwork._widgets.export_widget import ExportWidget
from napari_patchwork._widgets.grid_display import (
    LABELS_GRID_MIN_PATCHES,
    MIN_OUTLINE_SCREEN_PX,
    ONE_COLOUR,
    camera,
)
from napari_patchwork._widgets.grid_widget import GridWidget
from napari_patchwork._writer import writer_request
from napari_patchwork.grid import grid_features, make_grid


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = GridWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def _show(widget, image, patch, mask=None):
    widget.image_combo.value = image
    widget.mask_combo.value = mask
    widget.patch_height.value = widget.patch_width.value = patch
    widget.show_button.native.click()
    _wait(widget)


def _wait(widget, seconds=30.0):
    """Until the grid is made and its layers added (large grids: a worker, then turns)."""
    deadline = time.monotonic() + seconds
    while widget.running:
        assert time.monotonic() < deadline, "the grid did not appear"
        QApplication.processEvents()
        time.sleep(0.005)


def test_a_redrawn_grid_comes_back_on_top(viewer_widget):
    viewer, widget = viewer_widget
    image = viewer.add_image(np.zeros((64, 64), np.uint8), name="slide")
    _show(widget, image, 16)
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="posterised", rgb=True)
    assert viewer.layers[-1].name == "posterised"
    widget.show_button.native.click()
    assert [layer.name for layer in viewer.layers][-1] == "slide grid"
    assert viewer.layers.selection.active is viewer.layers["slide grid"]


def test_without_a_mask_the_grid_has_one_colour_and_no_warning(viewer_widget, notifications):
    viewer, widget = viewer_widget
    image = viewer.add_image(np.zeros((64, 96), np.uint8), name="slide")
    assert widget.color_by.value == ONE_COLOUR  # the default without a mask
    widget.color_by.value = "foreground_fraction"  # even when asked for, without a mask
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _show(widget, image, 16)
    grid = viewer.layers["slide grid"]
    expected = np.array([0.0, 229 / 255, 1.0, 1.0])  # GRID_EDGE_COLOUR, #00e5ff
    assert GRID_EDGE_COLOUR == "#00e5ff"
    np.testing.assert_allclose(grid.edge_color, np.tile(expected, (len(grid.data), 1)))
    assert "slide grid colour" not in viewer.layers
    assert not [n for n in notifications if n.severity in ("warning", "error")]


def test_with_a_mask_the_grid_is_coloured_by_foreground_with_a_legend(viewer_widget):
    viewer, widget = viewer_widget
    image = viewer.add_image(np.zeros((64, 64), np.uint8), name="slide", scale=(2.0, 2.0))
    mask = np.zeros((64, 64), np.uint8)
    mask[:16, :8] = 1  # patch 0: half foreground
    mask[16:32, 16:32] = 1  # patch 5: all foreground
    labels = viewer.add_labels(mask, name="tissue", scale=(2.0, 2.0))
    widget.image_combo.value = image
    widget.mask_combo.value = labels
    assert widget.color_by.value == "foreground_fraction"  # the default with a mask
    _show(widget, image, 16, labels)
    colour = viewer.layers["slide grid colour"]
    assert not widget.legend.native.isHidden() and not widget.legend.native.pixmap().isNull()
    assert "by foreground_fraction: 0 (dark) to 1 (bright)" in widget.legend.native.toolTip()
    assert colour.data.shape == (4, 4)
    assert colour.data[0, 0] == pytest.approx(0.5) and colour.data[1, 1] == pytest.approx(1.0)
    # pixel (1, 1) of the colour layer lies on patch (1, 1): y, x 16..31 px, world 32..63
    assert np.allclose(colour.data_to_world((1, 1)), [(16 + 7.5) * 2] * 2)
    assert [layer.name for layer in viewer.layers][-2:] == ["slide grid colour", "slide grid"]
    widget.patch_height.value = widget.patch_width.value = 32  # redrawn: the same colour layer
    widget.show_button.native.click()
    assert viewer.layers["slide grid colour"] is colour and colour.data.shape == (2, 2)
    assert np.allclose(colour.scale, [64.0, 64.0])
    widget.color_by.value = ONE_COLOUR  # outlines only: no colour layer, no legend
    widget.show_button.native.click()
    assert "slide grid colour" not in viewer.layers and widget.legend.native.isHidden()


def test_outlines_hide_while_patches_are_a_few_screen_pixels(viewer_widget):
    viewer, widget = viewer_widget
    image = viewer.add_image(np.zeros((512, 512), np.uint8), name="slide")
    _show(widget, image, 16)
    grid = viewer.layers["slide grid"]
    camera(viewer).zoom = (MIN_OUTLINE_SCREEN_PX / 16) / 2  # a patch is 2 screen px
    assert grid.opacity == 0
    camera(viewer).zoom = 1.0  # 16 screen px
    assert grid.opacity == 1


def test_a_large_grid_is_a_lazy_labels_layer_with_selection_and_colour(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    shape = (2000, 2400)  # 16 px patches: 125 x 150 = 18,750 patches
    image = viewer.add_image(np.zeros(shape, np.uint8), name="slide", scale=(0.5, 0.5))
    mask = np.zeros(shape, np.uint8)
    mask[:1000] = 1
    labels = viewer.add_labels(mask, name="tissue", scale=(0.5, 0.5))
    widget.min_foreground.value = 0.5
    _show(widget, image, 16, labels)
    qtbot.waitUntil(lambda: "slide grid" in viewer.layers, timeout=30_000)
    grid = viewer.layers["slide grid"]
    n_patches = 125 * 150
    assert n_patches > LABELS_GRID_MIN_PATCHES
    assert grid._type_string == "labels" and grid.multiscale
    described = grid.metadata["napari_patchwork"]
    assert described["kind"] == "labels" and described["n_patches"] == n_patches
    kept = kept_patches(grid.metadata, grid.features)
    # rows 0..62 (row 62, y 992..1007, is half in the mask)
    np.testing.assert_array_equal(kept, np.arange(63 * 150))
    # level 0 paints patch index + 1 where a patch is shown, 0 under the filtered ones
    top_left = np.asarray(grid.data[0][:32, :32])
    assert top_left[0, 0] == 1 and top_left[0, 16] == 2 and top_left[16, 0] == 151
    assert np.asarray(grid.data[0][1990, 10]) == 0
    assert list(grid.scale) == [0.5, 0.5]
    assert viewer.layers[-1] is grid
    # colour by foreground fraction: one pixel per patch
    assert viewer.layers["slide grid colour"].data.shape == (125, 150)
    # Ctrl+click selects a patch (and again deselects it); the export sees the selection
    world = grid.data_to_world((20, 40))  # patch row 1, col 2 = index 152
    click = SimpleNamespace(modifiers={"Control"}, position=world, type="mouse_press")
    for callback in grid.mouse_drag_callbacks:
        callback(grid, click)
    np.testing.assert_array_equal(selected_patches(grid.metadata), [152])
    assert len(viewer.layers["slide grid selection"].data) == 1
    export = ExportWidget(viewer)
    export.grid_combo.value = grid
    assert grid not in export.mask_combo.choices
    assert export.selected_indices() == [152]
    for callback in grid.mouse_drag_callbacks:
        callback(grid, click)
    assert len(selected_patches(grid.metadata)) == 0
    # File > Save with the image, the mask and the Labels grid: only the shown patches
    request = writer_request([layer.as_layer_data_tuple() for layer in (image, labels, grid)])
    np.testing.assert_array_equal(request.options.indices, kept)
    assert request.mask is labels.data


def test_large_grid_layer_data_is_fast_and_reads_no_pixel():
    import time

    from napari_patchwork._layer_data import grid_labels_layer_data

    grid = make_grid((99_072, 99_072), 256, edge="pad")
    features = grid_features(grid)
    start = time.perf_counter()
    levels, kwargs = grid_labels_layer_data(grid, features)
    assert time.perf_counter() - start < 1.0
    assert grid.n_patches == 149_769 and levels[0].shape == (99_072, 99_072)
    assert levels[-1].shape[0] <= 512 and kwargs["multiscale"]


def test_a_large_grid_is_made_off_the_gui_thread_and_added_in_turns(viewer_widget, monkeypatch):
    import threading

    from napari_patchwork._widgets import grid_widget as module

    viewer, widget = viewer_widget
    made_in, turns = [], []
    make = module.make_grid_layers

    def recording_make(*args, **kwargs):
        made_in.append(threading.current_thread())
        return make(*args, **kwargs)

    monkeypatch.setattr(module, "make_grid_layers", recording_make)
    ticks = [0]
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))  # one per loop turn
    timer.start(0)
    viewer.layers.events.inserted.connect(lambda event: turns.append((event.value.name, ticks[0])))
    image = viewer.add_image(np.zeros((1600, 1600), np.uint8), name="slide")
    mask = viewer.add_labels((np.arange(1600)[:, None] < 800) * np.ones(1600, np.uint8))
    turns.clear()
    widget.mask_combo.value = mask
    _show(widget, image, 16, mask)  # 10,000 patches, coloured by foreground
    timer.stop()
    assert made_in and made_in[0] is not threading.main_thread()
    assert [name for name, _tick in turns] == ["slide grid", "slide grid colour"]
    assert turns[1][1] > turns[0][1]  # the event loop ran between the two layers
    assert [layer.name for layer in viewer.layers][-2:] == ["slide grid colour", "slide grid"]
    assert widget.status.value.startswith("10,000 of 10,000 patches shown")
    assert not widget.legend.native.isHidden()
