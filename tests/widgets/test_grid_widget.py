"""Drive the real patch-grid widget on a headless napari viewer."""

import time

import numpy as np
import pytest

from napari_patchwork._widgets.grid_widget import GridWidget


@pytest.fixture
def grid_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = GridWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def test_grid_layer_lines_up_in_world_coordinates(grid_widget):
    viewer, widget = grid_widget
    scale, translate = (2.0, 0.5), (10.0, -5.0)
    image = viewer.add_image(np.zeros((100, 70), np.uint16), scale=scale, translate=translate)
    mask = np.zeros((100, 70), np.uint8)
    mask[:50, :32] = 1  # patches (0,0) and (1,0) full, (0,1) half (x 32..63 -> 0..31 of it)
    viewer.add_labels(mask, name="mask", scale=scale, translate=translate)
    widget.image_combo.value = image
    widget.mask_combo.value = viewer.layers["mask"]
    widget.patch_height.value = 25
    widget.patch_width.value = 32
    widget.show_button.native.click()

    grid = viewer.layers["Image grid"]
    assert widget.progress.value == widget.progress.max  # a small grid is drawn at once
    assert len(grid.data) == 4 * 2  # 100/25 rows x floor(70/32) cols, edge=drop
    assert list(grid.features["row"]) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert list(grid.features["col"]) == [0, 1] * 4
    assert np.allclose(grid.features["foreground_fraction"], [1, 0, 1, 0, 0, 0, 0, 0])
    # patch 3 = row 1, col 1: pixels y 25..49, x 32..63; its edges lie on pixel edges
    corners_world = np.array([grid.data_to_world(v) for v in grid.data[3]])
    y0, y1 = (25 - 0.5) * scale[0] + translate[0], (50 - 0.5) * scale[0] + translate[0]
    x0, x1 = (32 - 0.5) * scale[1] + translate[1], (64 - 0.5) * scale[1] + translate[1]
    assert np.allclose(corners_world, [[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
    assert grid.metadata["napari_patchwork"]["patch_size"] == [25, 32]
    assert "8 of 8 patches" in widget.status.value


def test_update_replaces_layer_and_filters_by_foreground(grid_widget):
    viewer, widget = grid_widget
    image = viewer.add_image(np.random.default_rng(0).random((64, 64, 3)), rgb=True)
    labels = np.zeros((64, 64), np.uint16)
    labels[:16, :16] = 7
    viewer.add_labels(labels, name="cells")
    widget.image_combo.value = image
    widget.mask_combo.value = viewer.layers["cells"]
    widget.patch_height.value = widget.patch_width.value = 16
    widget.show_button.native.click()
    assert len(viewer.layers["Image grid"].data) == 16
    widget.min_foreground.value = 0.5
    widget.show_button.native.click()
    # the grid on top, its colour layer (colour by foreground fraction, with a mask) under it
    assert [layer.name for layer in viewer.layers] == [
        "Image",
        "cells",
        "Image grid colour",
        "Image grid",
    ]
    grid = viewer.layers["Image grid"]
    assert len(grid.data) == 1 and list(grid.features["index"]) == [0]
    assert "1 of 16 patches" in widget.status.value


def test_rgb_and_channels_first_are_not_cut(grid_widget):
    viewer, widget = grid_widget
    image = viewer.add_image(np.zeros((3, 40, 40), np.uint8), name="cyx")
    widget.image_combo.value = image
    widget.channels_first.value = True
    widget.patch_height.value = widget.patch_width.value = 20
    widget.show_button.native.click()
    grid = viewer.layers["cyx grid"]
    assert grid.ndim == 2 and len(grid.data) == 4


def test_3d_patches_have_one_rectangle_per_plane(grid_widget):
    viewer, widget = grid_widget
    image = viewer.add_image(np.zeros((6, 32, 32), np.uint8), name="stack", scale=(3, 1, 1))
    widget.image_combo.value = image
    assert not widget.patch_depth.native.isHidden()  # shown for 3D images only
    widget.patch_depth.value = 3
    widget.patch_height.value = widget.patch_width.value = 16
    widget.show_button.native.click()
    grid = viewer.layers["stack grid"]
    assert grid.ndim == 3
    assert len(grid.data) == 8 * 3  # 2 z-blocks x 2 x 2 patches, 3 planes each
    assert sorted(set(grid.features["z"])) == [0, 1]
    assert np.allclose(grid.scale, (3, 1, 1))


@pytest.mark.parametrize(
    "setup, message",
    [
        ("big_patch", "larger than the image"),
        ("mask_mismatch", "pick a mask drawn on this image"),
        ("no_image", "no Image layer selected"),
    ],
)
def test_bad_input_shows_notification_and_adds_no_layer(grid_widget, notifications, setup, message):
    viewer, widget = grid_widget
    if setup != "no_image":
        widget.image_combo.value = viewer.add_image(np.zeros((50, 50)))
    if setup == "big_patch":
        widget.patch_height.value = 60
    if setup == "mask_mismatch":
        widget.patch_height.value = widget.patch_width.value = 10
        widget.mask_combo.value = viewer.add_labels(np.zeros((40, 50), np.uint8))
    n_layers = len(viewer.layers)
    widget.show_button.native.click()
    assert len(viewer.layers) == n_layers
    assert any(message in str(n.message) for n in notifications)
    assert message in widget.status.value


def test_lazy_mask_is_measured_in_a_worker(grid_widget, qtbot):
    da = pytest.importorskip("dask.array")
    viewer, widget = grid_widget
    image = viewer.add_image(np.zeros((64, 64), np.uint8), name="img")
    mask = np.zeros((64, 64), np.uint8)
    mask[:32] = 1
    viewer.add_labels(da.from_array(mask, chunks=16), name="lazy")
    widget.image_combo.value = image
    widget.mask_combo.value = viewer.layers["lazy"]
    widget.patch_height.value = widget.patch_width.value = 32
    widget.show_button.native.click()
    assert widget.worker is not None and not widget.show_button.enabled  # running, button off
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert widget.worker is None and widget.show_button.enabled
    grid = viewer.layers["img grid"]
    assert list(grid.features["foreground_fraction"]) == [1.0, 1.0, 0.0, 0.0]


def test_multiscale_image_uses_full_resolution(grid_widget):
    viewer, widget = grid_widget
    levels = [np.zeros((128, 128), np.uint8), np.zeros((64, 64), np.uint8)]
    image = viewer.add_image(levels, multiscale=True, name="pyramid")
    widget.image_combo.value = image
    widget.patch_height.value = widget.patch_width.value = 32
    widget.show_button.native.click()
    assert len(viewer.layers["pyramid grid"].data) == 16


@pytest.fixture
def slow_lazy_mask():
    """A 256 x 256 dask mask of 64 chunks, each taking 50 ms to compute; counts them."""
    da = pytest.importorskip("dask.array")
    computed = []

    def slow_block(block):
        time.sleep(0.05)
        computed.append(block.shape)
        return block

    mask = np.zeros((256, 256), np.uint8)
    mask[:128] = 1
    lazy = da.from_array(mask, chunks=32).map_blocks(slow_block, dtype=np.uint8)
    return lazy, computed


def start_measuring(viewer, widget, lazy, computed):
    widget.image_combo.value = viewer.add_image(np.zeros((256, 256), np.uint8), name="img")
    widget.mask_combo.value = viewer.add_labels(lazy, name="lazy")
    widget.patch_height.value = widget.patch_width.value = 32
    computed.clear()  # napari computed the mask to show it; count the grid's reads only
    widget.show_button.native.click()
    assert widget.worker is not None and widget.cancel_button.enabled


def test_cancel_stops_measuring_a_lazy_mask_and_draws_nothing(grid_widget, qtbot, slow_lazy_mask):
    viewer, widget = grid_widget
    lazy, computed = slow_lazy_mask
    start_measuring(viewer, widget, lazy, computed)
    widget.worker.yielded.connect(lambda _fraction: widget.cancel_button.native.click())
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert "cancelled" in widget.status.value and "img grid" not in viewer.layers
    assert widget.show_button.enabled and not widget.cancel_button.enabled
    assert len(computed) <= 2 * 4  # a chunk (with its neighbours) or two, not all 64
    widget.show_button.native.click()  # and measuring again runs to the end
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    grid = viewer.layers["img grid"]
    assert list(grid.features["foreground_fraction"]) == [1.0] * 32 + [0.0] * 32
    assert widget.progress.value == widget.progress.max


def test_closing_the_viewer_stops_measuring(grid_widget, qtbot, slow_lazy_mask):
    viewer, widget = grid_widget
    lazy, computed = slow_lazy_mask
    start_measuring(viewer, widget, lazy, computed)
    worker = widget.worker
    qtbot.waitUntil(lambda: len(computed) >= 1, timeout=10_000)
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    assert len(computed) < 64


# -- placements ----------------------------------------------------------------------------


def test_points_placement_draws_centred_patches_and_exports_them(grid_widget, qtbot, tmp_path):
    """Pick a Points layer, draw its patches, export them from the Export tab."""
    from napari_patchwork._widgets.export_widget import ExportWidget
    from napari_patchwork.folder import read_patch_folder

    viewer, widget = grid_widget
    scale, translate = (0.5, 2.0), (10.0, -4.0)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (120, 90), dtype=np.uint8)
    image = viewer.add_image(pixels, name="img", scale=scale, translate=translate)
    mask = np.zeros((120, 90), np.uint8)
    mask[40:80, 30:60] = 1
    viewer.add_labels(mask, name="mask", scale=scale, translate=translate)
    wanted = np.array([[20, 15], [60, 45], [100, 80]])  # pixels
    points = viewer.add_points(wanted * scale + translate, name="clicks")  # world units
    widget.image_combo.value = image
    widget.placement.kind.value = "points"
    assert not widget.placement.points_combo.native.isHidden()
    assert widget.stride.native.isHidden() and widget.placement.n.native.isHidden()
    widget.placement.points_combo.value = points
    widget.patch_height.value = widget.patch_width.value = 16
    widget.edge.value = "pad"
    widget.show_button.native.click()

    grid = viewer.layers["img grid"]
    assert list(grid.features["point"]) == [0, 1, 2]
    # each rectangle's centre pixel is its point, on the image in world coordinates
    for rectangle, point in zip(grid.data, wanted):
        low = np.array([grid.data_to_world(v) for v in rectangle]).min(axis=0)
        start = np.round((low - translate) / scale + 0.5).astype(int)
        np.testing.assert_array_equal(start + 8, point)
    assert "3 of 3 patches shown (placed: points" in widget.status.value

    export = ExportWidget(viewer)
    viewer.window.add_dock_widget(export)
    export.grid_combo.value = grid
    assert export.image_combo.value is image and export.mask_combo.value.name == "mask"
    export.out_dir.value = tmp_path / "out"
    assert "will write 3 patch pairs" in export.preview.value
    export.export_button.native.click()
    qtbot.waitUntil(lambda: not export.running, timeout=30_000)
    patches = read_patch_folder(tmp_path / "out")
    assert patches.info.placement["kind"] == "points"
    np.testing.assert_array_equal(patches.starts + 8, wanted)
    assert patches.column("point") == ["0", "1", "2"]
    covered = patches.coverage()
    np.testing.assert_array_equal(patches.image()[covered], pixels[covered])


def test_objects_and_balanced_placements_show_their_features(grid_widget):
    viewer, widget = grid_widget
    image = viewer.add_image(np.zeros((60, 80), np.uint8), name="img")
    labels = np.zeros((60, 80), np.uint16)
    labels[5:10, 5:12] = 4
    labels[30:50, 40:70] = 9
    viewer.add_labels(labels, name="cells")
    widget.image_combo.value = image
    widget.mask_combo.value = viewer.layers["cells"]
    widget.patch_height.value = widget.patch_width.value = 8
    widget.edge.value = "shift"
    widget.placement.kind.value = "objects"
    assert not widget.placement.classes.native.isHidden()
    widget.show_button.native.click()
    grid = viewer.layers["img grid"]
    assert list(grid.features["instance_id"]) == [4, 9] and list(grid.features["area"]) == [
        35,
        600,
    ]
    widget.placement.classes.value = "9"
    widget.show_button.native.click()
    assert list(viewer.layers["img grid"].features["instance_id"]) == [9]
    widget.placement.kind.value = "balanced"
    widget.placement.n.value = 2
    widget.placement.classes.value = "4, 9, 11"
    widget.show_button.native.click()
    grid = viewer.layers["img grid"]
    assert sorted(grid.features["class"]) == [4, 4, 9, 9]
    assert "classes without pixels (no patches): 11" in widget.status.value
    widget.placement.classes.value = "four"
    widget.show_button.native.click()  # reported, not raised
    assert "give label ids" in widget.status.value
