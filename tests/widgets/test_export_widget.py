"""Drive the real Export patches widget on a headless napari viewer."""

import csv
import json
import os
import threading
import time

import numpy as np
import pytest

from napari_patchwork import export as export_module
from napari_patchwork._widgets.export_widget import ExportWidget
from napari_patchwork._widgets.grid_widget import GridWidget
from napari_patchwork.export import patch as patch_module
from napari_patchwork.sample import sample_image, sample_mask
from napari_patchwork.stitch import read_patches, verify_patch_folder


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(sample_image(), name="ihc")
    viewer.add_labels(sample_mask(), name="nuclei")
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def run_export(qtbot, widget):
    widget.export_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)


def show_grid(viewer, height, width):
    """Click the Patch grid widget's button; its grid layer of the 'ihc' image."""
    grid_widget = GridWidget(viewer)
    grid_widget.patch_height.value = height
    grid_widget.patch_width.value = width
    grid_widget.show_button.native.click()
    return viewer.layers["ihc grid"]


def manifest_indices(folder):
    with open(folder / "manifest.csv", newline="") as fh:
        return [int(row["index"]) for row in csv.DictReader(fh)]


def test_export_button_writes_patches_and_reports_where(
    viewer_widget, qtbot, notifications, tmp_path
):
    viewer, widget = viewer_widget
    widget.mask_combo.value = viewer.layers["nuclei"]
    widget.out_dir.value = tmp_path / "out"
    widget.patch_size.value = "100"
    widget.edge.value = "pad"
    widget.pad_mode.value = "reflect"
    widget.split.value = "0.8, 0.2"
    assert (
        not widget.pad_mode.native.isHidden() and widget.channels_first.native.isHidden()
    )  # RGB image
    widget.export_button.native.click()
    assert not widget.export_button.enabled and widget.cancel_button.enabled  # while it runs
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert widget.export_button.enabled and not widget.cancel_button.enabled
    out = tmp_path / "out"
    assert len(list((out / "images").iterdir())) == 36 == len(list((out / "masks").iterdir()))
    assert verify_patch_folder(out) == []
    image, mask = read_patches(out)
    np.testing.assert_array_equal(image, sample_image())
    np.testing.assert_array_equal(mask, sample_mask())
    info = json.loads((out / "dataset.json").read_text())
    assert info["pad_mode"] == "reflect" and info["split"] == {"train": 0.8, "val": 0.2}
    assert info["image"]["name"] == "ihc" and info["mask"]["name"] == "nuclei"
    assert widget.progress.value == widget.progress.max == 36
    messages = [str(n.message) for n in notifications]
    assert any("Exported 36 patches in" in m and str(out) in m for m in messages), messages
    assert "36 patches" in widget.status.value


def test_grid_layer_gives_patch_size_and_selected_patches(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    grid = show_grid(viewer, 128, 64)
    assert widget.grid_combo.value is grid  # picked because it belongs to the chosen image
    assert widget.patch_size.value == "128, 64" and widget.edge.value == "drop"
    grid.selected_data = {2, 9, 30}
    widget.only_selected.value = True
    widget.out_dir.value = tmp_path / "selected"
    widget.fmt.value = "npy"
    run_export(qtbot, widget)
    expected = sorted(int(i) for i in grid.features["index"][[2, 9, 30]])
    assert manifest_indices(tmp_path / "selected") == expected
    assert len(list((tmp_path / "selected" / "images").glob("*.npy"))) == 3


def test_errors_are_shown_and_nothing_is_lost(viewer_widget, qtbot, notifications, tmp_path):
    viewer, widget = viewer_widget
    widget.export_button.native.click()  # no folder chosen yet
    assert not widget.running
    assert any("choose the folder" in str(n.message) for n in notifications)
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "draft.txt").write_text("precious")
    widget.out_dir.value = folder
    widget.patch_size.value = "64"
    run_export(qtbot, widget)
    assert any("not empty" in str(n.message) for n in notifications)
    assert [p.name for p in folder.iterdir()] == ["draft.txt"]
    assert widget.status.value.startswith("error:") and widget.export_button.enabled
    widget.fmt.value = "png"
    viewer.add_image(np.zeros((64, 64), np.float32), name="float")
    widget.image_combo.value = viewer.layers["float"]
    widget.out_dir.value = tmp_path / "png"
    widget.export_button.native.click()
    assert not widget.running  # refused before starting
    assert "float32" in str(notifications[-1].message)


def test_cancel_then_export_again_resumes(viewer_widget, qtbot, tmp_path, monkeypatch):
    viewer, widget = viewer_widget
    real_write = patch_module.write_patch

    def slow_write(*args, **kwargs):
        time.sleep(0.01)
        real_write(*args, **kwargs)

    monkeypatch.setattr(patch_module, "write_patch", slow_write)
    widget.mask_combo.value = viewer.layers["nuclei"]
    widget.out_dir.value = tmp_path / "out"
    widget.patch_size.value = "32"  # 256 patches
    widget.export_button.native.click()

    def cancel_after_some(step):
        if step.done >= 20:
            widget.cancel_button.native.click()

    widget.worker.yielded.connect(cancel_after_some)
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    assert "cancelled after" in widget.status.value and "resume" in widget.status.value
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["complete"] is False
    written_before = len(list((tmp_path / "out" / "images").iterdir()))
    assert 20 <= written_before < 256
    monkeypatch.setattr(patch_module, "write_patch", real_write)
    run_export(qtbot, widget)
    result = widget.last_result
    # the journal has every patch the export reported; the writer threads may have finished
    # a few more files, not yet reported when it stopped: those are written again
    assert result.n_patches == 256 and 20 <= result.n_resumed <= written_before
    assert written_before - result.n_resumed <= 2 * export_module.DEFAULT_WRITE_THREADS + 1
    assert result.n_written == 256 - result.n_resumed
    assert verify_patch_folder(tmp_path / "out") == []


def test_annotations_as_mask_only_annotated_and_downsampled(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    viewer.layers["ihc"].scale = (0.25, 0.25)
    viewer.layers["ihc"].units = ("micrometer", "micrometer")
    # two regions in world units (µm): pixels y 40..79, x 300..379 and y 400..439, x 8..47
    regions = [
        np.array([[10, 75], [10, 95], [20, 95], [20, 75]]) - 0.125,
        np.array([[100, 2], [100, 12], [110, 12], [110, 2]]) - 0.125,
    ]
    viewer.add_shapes(
        regions, shape_type="rectangle", name="regions", features={"class": ["tumour", "stroma"]}
    )
    assert viewer.layers["regions"] in widget.mask_combo.choices
    widget.mask_combo.value = viewer.layers["regions"]
    widget.only_annotated.value = True
    widget.pixel_size.value = "1"  # 4 x the image's 0.25 µm
    widget.patch_size.value = "32"  # output pixels: 128 source pixels
    widget.fmt.value = "ome-tiff"
    widget.out_dir.value = tmp_path / "out"
    run_export(qtbot, widget)
    assert widget.last_result is not None, widget.status.value
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["downsample"] == [4, 4] and info["pixel_size"] == [1.0, 1.0]
    assert info["mask"]["class_ids"] == {"tumour": 1, "stroma": 2}
    # 16 patches of 128 source px; the regions touch patches 2 (y 0, x 256..383) and 12
    assert manifest_indices(tmp_path / "out") == [2, 12]
    image, mask = read_patches(tmp_path / "out")
    assert image.shape == (128, 128, 3)
    assert (mask == 1).sum() == 10 * 20 and (mask == 2).sum() == 10 * 10
    widget.pixel_size.value = "0.3"
    widget.out_dir.value = tmp_path / "bad"
    widget.export_button.native.click()
    assert not widget.running and "whole-number" in widget.status.value
    widget.pixel_size.value = ""
    widget.downsample.value = 2
    widget.grid_combo.value = None
    widget.only_selected.value = True
    widget.export_button.native.click()
    assert not widget.running and "needs a grid layer" in widget.status.value
    assert not (tmp_path / "bad").exists()


def test_selected_grid_patches_export_downsampled(viewer_widget, qtbot, tmp_path):
    """A grid drawn at full resolution, exported at half: the same rectangles, half the pixels."""
    viewer, widget = viewer_widget
    grid = show_grid(viewer, 128, 96)
    assert widget.patch_size.value == "128, 96"
    widget.downsample.value = 2
    assert widget.patch_size.value == "64, 48" and widget.stride.value == ""
    grid.selected_data = {1, 7}
    widget.only_selected.value = True
    widget.mask_combo.value = viewer.layers["nuclei"]
    widget.fmt.value = "npy"
    widget.out_dir.value = tmp_path / "half"
    run_export(qtbot, widget)
    assert widget.last_result is not None, widget.status.value
    with open(tmp_path / "half" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    boxes = sorted((int(r["y0"]), int(r["x0"]), int(r["y1"]), int(r["x1"])) for r in rows)
    index = grid.features["index"].to_numpy()
    # the selected rectangles' source-pixel boxes: pixels [y0, y1) span y0 - 0.5 .. y1 - 0.5
    selected = sorted(
        tuple(int(v + 0.5) for v in (*grid.data[i].min(axis=0), *grid.data[i].max(axis=0)))
        for i in (1, 7)
    )
    assert boxes == selected and len(set(index[[1, 7]])) == 2
    for row in rows:
        assert np.load(tmp_path / "half" / row["image"]).shape == (64, 48, 3)
    # a patch size that does not cover the rectangles is refused, with the size that would
    widget.patch_size.value = "50"
    widget.out_dir.value = tmp_path / "odd"
    widget.export_button.native.click()
    assert not widget.running and "64, 48" in widget.status.value, widget.status.value
    assert not (tmp_path / "odd").exists()


def open_files_under(folder) -> list[str]:
    """Paths under ``folder`` that this process has open (its /proc/self/fd links)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def python_threads() -> set:
    """Threads started from Python. napari runs workers on Qt's thread pool, which keeps
    idle threads for a while; Python lists such a foreign thread as a dummy thread for
    good once it ran Python code, so those are left out."""
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


def test_cancel_closes_files_and_threads_then_export_resumes(make_napari_viewer, qtbot, tmp_path):
    """A real export (no slowed-down writer), cancelled mid-run: the journal and the
    write threads are closed by the time the widget is idle, and exporting again resumes."""
    viewer = make_napari_viewer()
    image = np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)
    viewer.add_image(image, name="big", rgb=True)
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    out = tmp_path / "out"
    widget.out_dir.value = out
    widget.patch_size.value = "32"  # 4,096 patches
    threads_before = python_threads()
    open_while_running, threads_while_running = [], []

    def cancel_after_some(step):
        if step.done >= 200 and not open_while_running:
            open_while_running.extend(open_files_under(out))
            threads_while_running.extend(python_threads() - threads_before)
            widget.cancel_button.native.click()

    widget.export_button.native.click()
    widget.worker.yielded.connect(cancel_after_some)
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert "cancelled after" in widget.status.value, widget.status.value
    # while it ran, the journal was open and the write threads were there ...
    assert any(p.endswith(".patchwork-journal.jsonl") for p in open_while_running)
    assert len(threads_while_running) == export_module.DEFAULT_WRITE_THREADS
    # ... and once the widget is idle, both are gone
    assert open_files_under(out) == []
    qtbot.waitUntil(lambda: python_threads() <= threads_before, timeout=2_000)
    written_before = len(list((out / "images").iterdir()))
    assert 200 <= written_before < 4096
    run_export(qtbot, widget)
    result = widget.last_result
    assert result is not None, widget.status.value
    assert result.n_patches == 4096 and result.n_resumed >= 200
    assert verify_patch_folder(out) == []
    assert open_files_under(out) == []


def test_closing_the_viewer_mid_export_closes_files_and_threads(
    make_napari_viewer, qtbot, tmp_path
):
    viewer = make_napari_viewer()
    image = np.random.default_rng(1).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)
    viewer.add_image(image, name="big", rgb=True)
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    out = tmp_path / "out"
    widget.out_dir.value = out
    widget.patch_size.value = "32"  # 4,096 patches
    threads_before = python_threads()
    widget.export_button.native.click()
    worker = widget.worker
    steps = []
    worker.yielded.connect(steps.append)
    qtbot.waitUntil(lambda: len(steps) >= 100, timeout=30_000)
    viewer.close()  # deletes the dock widget: the export stops, its callbacks are dropped
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    qtbot.waitUntil(lambda: open_files_under(out) == [], timeout=5_000)
    qtbot.waitUntil(lambda: python_threads() <= threads_before, timeout=5_000)
    assert len(list((out / "images").iterdir())) < 4096  # stopped, not run to the end
    assert json.loads((out / "dataset.json").read_text())["complete"] is False


def test_grid_hands_its_foreground_filter_to_the_export_with_a_preview(
    make_napari_viewer, qtbot, tmp_path
):
    """A grid drawn with a mask and min foreground 0.2: the export widget takes the mask
    and the filter from it, says how many patch pairs it will write before it runs, and
    writes exactly the patches the grid shows (as the writer does from the same grid)."""
    viewer = make_napari_viewer()
    viewer.add_image(sample_image(), name="ihc")
    viewer.add_labels(sample_mask(), name="nuclei")
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="unrelated")  # fits no image
    grid_widget = GridWidget(viewer)
    grid_widget.mask_combo.value = viewer.layers["nuclei"]
    grid_widget.min_foreground.value = 0.2
    grid_widget.patch_height.value = grid_widget.patch_width.value = 64
    grid_widget.show_button.native.click()
    grid = viewer.layers["ihc grid"]
    shown = sorted(set(int(i) for i in grid.features["index"]))
    assert 0 < len(shown) < 64
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.grid_combo.value is grid
    assert widget.mask_combo.value is viewer.layers["nuclei"]
    assert widget.min_foreground.value == pytest.approx(0.2)
    skipped = 64 - len(shown)
    assert widget.preview.value == (
        f"will write {len(shown)} patch pairs ({skipped} skipped: under min foreground 0.2)."
    )
    widget.min_foreground.value = 0.0  # the user's change is kept and previewed at once
    assert widget.preview.value == "will write 64 patch pairs."
    widget.min_foreground.value = 0.2
    widget.out_dir.value = tmp_path / "out"
    run_export(qtbot, widget)
    assert widget.last_result is not None, widget.status.value
    assert manifest_indices(tmp_path / "out") == shown
    # the writer, from the same layers, writes the same patches
    viewer.layers.selection = {viewer.layers["ihc"], viewer.layers["nuclei"], grid}
    from napari_patchwork._writer import write_patch_folder

    write_patch_folder(
        str(tmp_path / "saved"),
        [viewer.layers[n].as_layer_data_tuple() for n in ("ihc", "nuclei", "ihc grid")],
    )
    assert manifest_indices(tmp_path / "saved") == shown


def test_preview_says_why_it_cannot_export_yet_and_filters_applied_while_writing(
    viewer_widget,
):
    viewer, widget = viewer_widget
    assert widget.mask_combo.value is viewer.layers["nuclei"]  # the one Labels layer that fits
    widget.patch_size.value = "100"
    assert widget.preview.value == "will write 25 patch pairs."
    widget.min_std.value = 5
    assert widget.preview.value == (
        "will write at most 25 patch pairs; patches blank below std 5 are skipped while writing."
    )
    widget.patch_size.value = "abc"
    assert widget.preview.value.startswith("cannot export yet: patch size: 'abc'")


def test_split_by_blocks_previews_the_buffer_and_reports_fractions(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    widget.out_dir.value = tmp_path / "out"
    widget.patch_size.value = "64"
    widget.stride.value = "32"
    widget.split.value = "0.75, 0.25"
    assert widget.block_size.native.isHidden()
    widget.split_by.value = "blocks"
    assert not widget.block_size.native.isHidden()
    assert "needs block_size" in widget.preview.value
    widget.block_size.value = "128"
    assert "split by 16 blocks" in widget.preview.value
    buffer = int(widget.preview.value.split("blocks, ")[1].split(" patches")[0])
    assert buffer > 0
    run_export(qtbot, widget)
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    assert len(rows) == 15 * 15 - buffer and "block_x" in rows[0]
    val = sum(r["split"] == "val" for r in rows)
    assert f"{buffer} left out as a buffer" in widget.status.value
    assert f"val {val} ({val / len(rows):.2f})" in widget.status.value


def test_a_placed_grid_exports_its_selected_patches_at_any_resolution(
    viewer_widget, qtbot, tmp_path
):
    """Objects placed on the nuclei: the selected ones, at full and at half resolution."""
    viewer, widget = viewer_widget
    grid_widget = GridWidget(viewer)
    grid_widget.mask_combo.value = viewer.layers["nuclei"]
    grid_widget.patch_height.value = grid_widget.patch_width.value = 32
    grid_widget.edge.value = "shift"
    grid_widget.placement.kind.value = "objects"
    grid_widget.show_button.native.click()
    grid = viewer.layers["ihc grid"]
    assert widget.grid_combo.value is grid and widget.patch_size.value == "32, 32"
    assert len(grid.data) == 152  # one per nucleus
    grid.selected_data = {5, 40}
    chosen = [int(i) for i in grid.features["instance_id"][[5, 40]]]
    widget.only_selected.value = True
    widget.out_dir.value = tmp_path / "full"
    run_export(qtbot, widget)
    with open(tmp_path / "full" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["instance_id"]) for r in rows] == chosen and rows[0]["x1"] != ""
    # at half resolution the same nuclei are placed again (16 px files, same centres)
    widget.downsample.value = 2
    assert widget.patch_size.value == "16, 16"
    widget.out_dir.value = tmp_path / "half"
    run_export(qtbot, widget)
    with open(tmp_path / "half" / "manifest.csv", newline="") as fh:
        half = list(csv.DictReader(fh))
    assert [int(r["instance_id"]) for r in half] == chosen
    for full_row, half_row in zip(rows, half):
        for axis in "yx":
            centre = int(full_row[f"{axis}0"]) + 16
            assert abs(int(half_row[f"{axis}0"]) + 16 - centre) <= 2


def test_choosing_zarr_offers_zstd_and_export_writes_the_arrays(viewer_widget, qtbot, tmp_path):
    import zarr

    viewer, widget = viewer_widget
    widget.mask_combo.value = viewer.layers["nuclei"]
    widget.out_dir.value = tmp_path / "out"
    widget.patch_size.value = "128"
    widget.compression.value = "zlib"
    widget.fmt.value = "zarr"
    assert list(widget.compression.choices) == ["none", "zstd"]
    assert widget.compression.value == "none" and not widget.compression.native.isHidden()
    widget.compression.value = "zstd"
    run_export(qtbot, widget)
    out = tmp_path / "out"
    images = zarr.open_array(out / "images.zarr", mode="r")
    assert images.shape == (16, 128, 128, 3)
    assert zarr.open_array(out / "masks.zarr", mode="r").dtype == sample_mask().dtype
    assert not (out / "images").exists() and verify_patch_folder(out) == []
    image, mask = read_patches(out)
    np.testing.assert_array_equal(image, sample_image())
    np.testing.assert_array_equal(mask, sample_mask())
    assert json.loads((out / "dataset.json").read_text())["compression"] == "zstd"
    assert widget.progress.value == widget.progress.max == 16
    widget.fmt.value = "npy"
    assert widget.compression.native.isHidden()
    widget.fmt.value = "tiff"
    assert list(widget.compression.choices) == ["none", "zlib"]


def test_multiscale_image_exports_from_its_pyramid(viewer_widget, qtbot, tmp_path):
    from napari_patchwork.resolution import downsample_mean

    viewer, widget = viewer_widget
    level0 = sample_image()
    levels = [level0] + [downsample_mean(level0, (f, f), 2) for f in (2, 4)]
    viewer.add_image(levels, multiscale=True, rgb=True, name="pyramid")
    widget.image_combo.value = viewer.layers["pyramid"]
    widget.mask_combo.value = None
    widget.patch_size.value = "32"
    widget.downsample.value = 4
    widget.fmt.value = "npy"
    widget.out_dir.value = tmp_path / "pyr"
    run_export(qtbot, widget)
    assert "read from pyramid level 2 (4 x 4)" in widget.status.value, widget.status.value
    widget.image_combo.value = viewer.layers["ihc"]  # the same pixels, one level
    widget.out_dir.value = tmp_path / "flat"
    run_export(qtbot, widget)
    assert "pyramid" not in widget.status.value.replace(str(tmp_path), "")
    names = sorted(p.name for p in (tmp_path / "flat" / "images").iterdir())
    assert len(names) == 16
    for name in names:
        pyr = np.load(tmp_path / "pyr" / "images" / name)
        assert np.array_equal(pyr, np.load(tmp_path / "flat" / "images" / name))
