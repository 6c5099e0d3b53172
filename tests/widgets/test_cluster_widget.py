"""Drive the real Cluster segmentation widget on a headless napari viewer.

Run with ``xvfb-run -a python -m pytest tests/widgets/test_cluster_widget.py``.
"""

import re
import time

import numpy as np
import pytest
from qtpy.QtCore import QLocale

from napari_patchwork import cluster
from napari_patchwork._widgets import cluster_widget as widget_module
from napari_patchwork._widgets.cluster_widget import ELBOW_DOCK_NAME, METADATA_KEY, ClusterWidget
from napari_patchwork.sample import sample_image, sample_mask

SCALE = (0.5, 0.25)
TRANSLATE = (10.0, -4.0)


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(sample_image(), name="ihc", scale=SCALE, translate=TRANSLATE)
    widget = ClusterWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def click_and_wait(qtbot, widget, button) -> None:
    button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)


def error_messages(notifications) -> list[str]:
    return [str(n.message) for n in notifications if n.severity == "error"]


def test_run_adds_labels_on_the_image_grid_with_parameters(viewer_widget, qtbot, notifications):
    viewer, widget = viewer_widget
    widget.n_clusters.value = 4
    widget.seed.value = 3
    widget.run_button.native.click()
    assert widget.running and not widget.run_button.enabled and widget.cancel_button.enabled
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert widget.run_button.enabled and not widget.cancel_button.enabled

    layer = viewer.layers["ihc clusters"]
    assert layer.data.dtype == np.uint8 and layer.data.shape == (512, 512)
    assert set(np.unique(layer.data)) == {1, 2, 3, 4}
    np.testing.assert_allclose(layer.scale, SCALE)
    np.testing.assert_allclose(layer.translate, TRANSLATE)
    meta = layer.metadata[METADATA_KEY]
    assert meta["params"]["n_clusters"] == 4 and meta["params"]["random_state"] == 3
    assert meta["params"]["scale"] == list(SCALE)
    # the same call on the core gives the same labels: the widget adds nothing of its own
    expected = cluster.cluster_pixels(
        sample_image(), 4, channel_axis=-1, random_state=3, scale=SCALE
    )
    np.testing.assert_array_equal(layer.data, expected.labels)
    # the stored model re-applies to the image with the same ids
    model = cluster.ClusterModel.from_dict(meta["model"])
    np.testing.assert_array_equal(model.predict(sample_image()), layer.data)
    # table: one row per cluster, counts add up to the image
    table = widget.table.value
    assert list(table["index"]) == [1, 2, 3, 4] and list(table["columns"]) == [
        "centre",
        "pixels",
        "%",
    ]
    assert [row[1] for row in table["data"]] == [int((layer.data == i).sum()) for i in (1, 2, 3, 4)]
    # shown as formatted: % with one decimal (not magicgui's 4), centres in one precision
    native = widget.table.native
    shown = [
        [native.itemDelegate().displayText(native.item(r, c).text(), QLocale()) for c in range(3)]
        for r in range(4)
    ]
    share = 100 * int((layer.data == 1).sum()) / layer.data.size
    assert shown[0][2] == f"{share:.1f}" and all(len(row[2].split(".")[1]) == 1 for row in shown)
    assert all(part.strip().isdigit() for row in shown for part in row[0].split(","))
    # the table spans the dock's width: every column shows without scrolling sideways
    assert (
        not native.horizontalScrollBar().isVisible() or native.horizontalScrollBar().maximum() == 0
    )
    assert not error_messages(notifications)


def test_running_again_replaces_the_layer_and_posterises(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    click_and_wait(qtbot, widget, widget.run_button)
    widget.n_clusters.value = 3
    widget.posterise.value = True
    click_and_wait(qtbot, widget, widget.run_button)
    names = [layer.name for layer in viewer.layers]
    assert names.count("ihc clusters") == 1 and "ihc posterised" in names
    labels = viewer.layers["ihc clusters"].data
    assert labels.max() == 3
    posterised = viewer.layers["ihc posterised"]
    assert (
        posterised.rgb
        and posterised.data.shape == (512, 512, 3)
        and posterised.data.dtype == np.uint8
    )
    np.testing.assert_allclose(posterised.scale, SCALE)
    # every pixel of one cluster has that cluster's colour
    colours = posterised.data[labels == 2]
    assert (colours == colours[0]).all()


def test_roi_keeps_zero_outside(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    roi = np.zeros((512, 512), dtype=np.uint8)
    roi[100:300, 50:450] = 1
    viewer.add_labels(roi, name="roi", scale=SCALE, translate=TRANSLATE)
    widget.roi_combo.value = viewer.layers["roi"]
    click_and_wait(qtbot, widget, widget.run_button)
    labels = viewer.layers["ihc clusters"].data
    assert (labels[roi == 0] == 0).all() and (labels[roi == 1] > 0).all()


def test_foreground_mask_from_chosen_clusters(viewer_widget, qtbot, notifications):
    viewer, widget = viewer_widget
    assert not widget.mask_button.enabled  # nothing to choose from yet
    click_and_wait(qtbot, widget, widget.run_button)
    assert widget.mask_button.enabled
    viewer.add_labels(np.zeros((8, 8), dtype=np.uint8), name="unrelated")  # resets layer choices
    assert list(widget.foreground_select.choices) == [1, 2, 3, 4, 5]
    widget.foreground_select.value = [1, 2]  # the two darkest clusters: stained tissue
    widget.mask_button.native.click()
    mask_layer = viewer.layers["ihc foreground"]
    labels = viewer.layers["ihc clusters"].data
    np.testing.assert_array_equal(mask_layer.data, np.isin(labels, [1, 2]).astype(np.uint8))
    np.testing.assert_allclose(mask_layer.scale, SCALE)
    assert mask_layer.metadata["napari_patchwork.foreground"]["cluster_ids"] == [1, 2]
    # the dark clusters are enriched in the (dark-stained) nuclei of the bundled mask
    nuclei = sample_mask() > 0
    assert mask_layer.data[nuclei].mean() > mask_layer.data[~nuclei].mean()
    assert not error_messages(notifications)


def test_errors_are_notifications_and_leave_the_viewer_alone(viewer_widget, qtbot, notifications):
    viewer, widget = viewer_widget
    flat = np.zeros((64, 64), dtype=np.uint8)
    flat[:, 32:] = 200  # two grey levels only
    viewer.add_image(flat, name="flat")
    widget.image_combo.value = viewer.layers["flat"]
    widget.n_clusters.value = 5
    click_and_wait(qtbot, widget, widget.run_button)
    assert any("2 distinct" in message for message in error_messages(notifications))
    assert "flat clusters" not in viewer.layers
    assert widget.run_button.enabled and "error" in widget.status.value

    # a ROI drawn on another image is refused before anything runs
    viewer.add_labels(np.ones((10, 10), dtype=np.uint8), name="small roi")
    widget.roi_combo.value = viewer.layers["small roi"]
    widget.run_button.native.click()
    assert not widget.running
    assert any(
        "pick a Labels layer drawn on this image" in m for m in error_messages(notifications)
    )

    # no result yet for this widget's mask button: it stays disabled; the method explains
    with pytest.raises(cluster.ClusterError, match="run the clustering first"):
        widget.make_foreground_mask()


class SlowSteps:
    """The real core generator, slowed down so that a test can act mid-run; records how
    far it got and whether it was closed (the core's cleanup ran)."""

    def __init__(self, real_steps):
        self.real_steps = real_steps
        self.advanced = 0
        self.closed = False

    def __call__(self, *args, **kwargs):
        steps = self.real_steps(*args, **kwargs)
        try:
            while True:
                try:
                    progress = next(steps)
                except StopIteration as stop:
                    return stop.value
                self.advanced += 1
                time.sleep(0.05)
                yield progress
        finally:
            steps.close()
            self.closed = True


@pytest.fixture
def slow_steps(monkeypatch):
    slow = SlowSteps(widget_module.cluster_pixels_steps)
    monkeypatch.setattr(widget_module, "cluster_pixels_steps", slow)
    return slow


def test_cancel_stops_the_run_and_adds_nothing(viewer_widget, qtbot, slow_steps, monkeypatch):
    viewer, widget = viewer_widget
    widget.run_button.native.click()
    widget.worker.yielded.connect(lambda _progress: widget.cancel_button.native.click())
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert "cancelled" in widget.status.value
    assert "ihc clusters" not in viewer.layers
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    qtbot.waitUntil(lambda: slow_steps.closed, timeout=5_000)  # the core cleaned up
    assert slow_steps.advanced <= 2  # stopped at the next step, not run to the end
    # and a normal run still works afterwards
    monkeypatch.setattr(widget_module, "cluster_pixels_steps", slow_steps.real_steps)
    click_and_wait(qtbot, widget, widget.run_button)
    assert "ihc clusters" in viewer.layers


def test_running_twice_is_refused_while_the_first_run_goes_on(
    viewer_widget, qtbot, slow_steps, notifications
):
    viewer, widget = viewer_widget
    widget.run_button.native.click()
    first = widget.worker
    widget._on_run()  # e.g. a second click that got through
    widget._on_elbow()
    assert widget.worker is first
    assert sum("already running" in m for m in error_messages(notifications)) == 2
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert [layer.name for layer in viewer.layers].count("ihc clusters") == 1
    assert widget.run_button.enabled and widget.elbow_button.enabled


def test_closing_the_viewer_mid_run_stops_the_job_quietly(viewer_widget, qtbot, slow_steps):
    viewer, widget = viewer_widget
    widget.run_button.native.click()
    worker = widget.worker
    qtbot.waitUntil(lambda: slow_steps.advanced >= 2, timeout=10_000)
    viewer.close()  # deletes the dock widget; its callbacks must not run any more
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    qtbot.waitUntil(lambda: slow_steps.closed, timeout=5_000)
    assert slow_steps.advanced <= 3  # stopped, not run to the end (about 10 steps)


def test_elbow_plot_draws_the_scores(viewer_widget, qtbot, notifications):
    _viewer, widget = viewer_widget
    widget.k_min.value, widget.k_max.value = 2, 5
    click_and_wait(qtbot, widget, widget.elbow_button)
    scores = widget.scores
    np.testing.assert_array_equal(scores.k, [2, 3, 4, 5])
    axes = widget._canvas.figure.axes
    assert len(axes) == 4
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), scores.inertia)
    # drawn in a dock of its own, not in the form (which stays short)
    assert not widget.form.isAncestorOf(widget._canvas)
    assert _viewer.window.dock_widgets[ELBOW_DOCK_NAME] is widget._canvas
    assert widget._elbow_dock.isVisible()
    assert "best silhouette" in widget.status.value
    assert not error_messages(notifications)


def test_multichannel_first_axis_and_3d_stack(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    rgb = sample_image()[:128, :128]
    channels_first = np.moveaxis(rgb, -1, 0).astype(np.uint16) * 100  # (3, y, x), 16-bit
    viewer.add_image(channels_first, name="multi", scale=(1, 2, 2))
    widget = ClusterWidget(viewer)
    widget.channels_first.value = True
    widget.n_clusters.value = 3
    widget.posterise.value = True
    click_and_wait(qtbot, widget, widget.run_button)
    labels = viewer.layers["multi clusters"]
    assert labels.data.shape == (128, 128)
    np.testing.assert_allclose(labels.scale, (2, 2))
    expected = cluster.cluster_pixels(channels_first, 3, channel_axis=0, scale=(2, 2))
    np.testing.assert_array_equal(labels.data, expected.labels)
    posterised = viewer.layers["multi posterised"]  # channels back on axis 0, like the image
    assert posterised.data.shape == channels_first.shape and not posterised.rgb
    np.testing.assert_allclose(posterised.scale, (1, 2, 2))
    np.testing.assert_array_equal(posterised.data, expected.posterized())

    stack = np.stack([rgb[..., 0], rgb[::-1, :, 0], rgb[..., 0]])  # (z, y, x) grayscale
    viewer.add_image(stack, name="stack", scale=(3, 1, 1), translate=(5, 0, 0))
    widget.image_combo.value = viewer.layers["stack"]
    widget.channels_first.value = False
    click_and_wait(qtbot, widget, widget.run_button)
    stack_layer = viewer.layers["stack clusters"]
    np.testing.assert_allclose(stack_layer.scale, (3, 1, 1))
    np.testing.assert_allclose(stack_layer.translate, (5, 0, 0))
    stack_labels = stack_layer.data
    assert stack_labels.shape == stack.shape
    np.testing.assert_array_equal(stack_labels[0], stack_labels[2])  # one model: same ids per slice
    np.testing.assert_array_equal(stack_labels[1], stack_labels[0][::-1])


def test_dask_image_layer_gives_lazy_labels(make_napari_viewer, qtbot):
    import dask.array as da

    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(sample_image(), chunks=(128, 128, 3)), name="lazy", rgb=True)
    widget = ClusterWidget(viewer)
    widget.n_clusters.value = 3
    widget.posterise.value = True
    click_and_wait(qtbot, widget, widget.run_button)
    labels = viewer.layers["lazy clusters"].data
    assert isinstance(labels, da.Array)
    expected = cluster.cluster_pixels(sample_image(), 3, channel_axis=-1)
    np.testing.assert_array_equal(labels.compute(), expected.labels)
    assert [row[1] for row in widget.table.value["data"]] == expected.pixel_counts.tolist()
    assert isinstance(viewer.layers["lazy posterised"].data, da.Array)


def test_nan_pixels_are_an_error_unless_background_is_ticked(viewer_widget, qtbot, notifications):
    viewer, widget = viewer_widget
    image = sample_image().astype(np.float32)
    image[:40] = np.nan
    widget.image_combo.value = viewer.add_image(image, name="holes", rgb=True)
    click_and_wait(qtbot, widget, widget.run_button)
    assert "holes clusters" not in viewer.layers
    assert any("NaN or infinite" in m for m in error_messages(notifications))

    widget.nan_background.value = True
    click_and_wait(qtbot, widget, widget.run_button)
    labels = viewer.layers["holes clusters"].data
    assert (labels[:40] == 0).all() and (labels[40:] > 0).all()
    assert (
        viewer.layers["holes clusters"].metadata[METADATA_KEY]["params"]["nan_pixels"]
        == "background"
    )


def test_running_again_keeps_the_users_layer_appearance(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.n_clusters.value = 3
    click_and_wait(qtbot, widget, widget.run_button)
    layer = viewer.layers["ihc clusters"]
    layer.opacity = 0.25  # the user's choice
    widget.n_clusters.value = 4
    click_and_wait(qtbot, widget, widget.run_button)
    assert viewer.layers["ihc clusters"] is layer and layer.opacity == 0.25
    assert set(np.unique(layer.data)) == {1, 2, 3, 4}
    assert layer.metadata[METADATA_KEY]["params"]["n_clusters"] == 4


def test_foreground_mask_is_ready_in_the_grid_and_export_widgets(viewer_widget, qtbot):
    """The foreground mask is the one Labels layer that fits the image: the grid and
    export widgets pre-select it, and a grid drawn with it hands it to the export."""
    from napari_patchwork._widgets.export_widget import ExportWidget
    from napari_patchwork._widgets.grid_widget import GridWidget

    viewer, widget = viewer_widget
    grid_widget, export_widget = GridWidget(viewer), ExportWidget(viewer)
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="unrelated")  # fits no image
    widget.n_clusters.value = 3
    click_and_wait(qtbot, widget, widget.run_button)
    # the clusters layer (ids everywhere) is no mask: nothing is pre-selected yet
    assert grid_widget.mask_combo.value is None and export_widget.mask_combo.value is None
    widget.foreground_select.value = [1]
    foreground = widget.make_foreground_mask()
    assert grid_widget.mask_combo.value is foreground
    assert export_widget.mask_combo.value is foreground
    grid_widget.min_foreground.value = 0.1
    grid_widget.patch_height.value = grid_widget.patch_width.value = 128
    grid_widget.show_button.native.click()
    assert "foreground_fraction" in viewer.layers["ihc grid"].features
    assert export_widget.grid_combo.value is viewer.layers["ihc grid"]
    assert export_widget.min_foreground.value == pytest.approx(0.1)
    assert export_widget.preview.value.startswith("will write")


def test_table_has_one_precision_and_swatches_of_the_label_colours(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.n_clusters.value = 4
    click_and_wait(qtbot, widget, widget.run_button)
    rows = widget.table.value["data"]
    # 8-bit RGB centres: whole numbers, all alike; % with one decimal
    assert all(re.fullmatch(r"\d+, \d+, \d+", row[0]) for row in rows), rows
    assert all(re.fullmatch(r"\d+\.\d", row[2]) for row in rows), rows
    assert sum(float(row[2]) for row in rows) == pytest.approx(100, abs=0.3)
    layer = viewer.layers["ihc clusters"]
    for row in range(4):
        icon = widget.table.native.verticalHeaderItem(row).icon()
        pixel = icon.pixmap(12, 12).toImage().pixelColor(6, 6)
        expected = np.asarray(layer.get_color(row + 1)) * 255
        assert np.allclose(pixel.getRgb()[:3], expected[:3], atol=2), (row, pixel.getRgb())


def test_progress_moves_in_every_phase_and_the_posterised_image_is_made_off_the_gui_thread(
    viewer_widget, qtbot, monkeypatch
):
    import threading

    from napari_patchwork.cluster import ClusterResult

    viewer, widget = viewer_widget
    widget.posterise.value = True
    made_in = []
    posterized = ClusterResult.posterized

    def recording(self):
        made_in.append(threading.current_thread())
        return posterized(self)

    monkeypatch.setattr(ClusterResult, "posterized", recording)
    steps = []
    widget.progress.changed.connect(lambda v: steps.append(v / widget.progress.max))
    widget.start_clustering()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert made_in and made_in[0] is not threading.main_thread()
    # the image read (and smoothed), the fit, the labelling, the counts and posterising
    # (the core's 0.1 and 0.3 are 0.09 and 0.27 of the job: the last 10 % count and posterise)
    for low, high in ((0.0, 0.09), (0.09, 0.27), (0.27, 0.9), (0.9, 1.0)):
        assert any(low < step <= high for step in steps), (low, high, steps)
    assert widget.status.value.startswith(f"{widget.n_clusters.value} clusters in")
    assert "ihc posterised" in viewer.layers


def test_the_status_names_each_phase_of_clustering():
    from napari_patchwork._widgets.cluster_widget import cluster_phase

    assert cluster_phase(0.0) == "reading and smoothing the image..."
    assert cluster_phase(0.09 + 1e-9) == "fitting k-means on the sampled pixels..."  # core 0.1
    assert cluster_phase(0.27 + 0.63 / 2) == "labelling every pixel (50%)..."
    assert cluster_phase(0.95) == "counting pixels and posterising..."
