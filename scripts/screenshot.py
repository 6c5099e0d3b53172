"""Take the README's screenshots of the real viewer (run under Xvfb):

    xvfb-run -a -s "-screen 0 1400x900x24" python scripts/screenshot.py docs/

The viewer fills a 1,400 x 900 screen with the plugin's dock (all its tabs) on the
right, as `napari -w napari-patchwork` shows it.
"""

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_patchwork._widgets.panel import PatchworkPanel
from napari_patchwork.sample import sample_image, sample_mask

SCREEN = (1400, 900)


def docked_viewer():
    """A viewer the size of the screen with the plugin's dock; returns (viewer, panel)."""
    viewer = napari.Viewer(show=True)
    panel = PatchworkPanel(viewer)
    viewer.window.add_dock_widget(panel, name="Patch tools (napari-patchwork)", area="right")
    viewer.window._qt_window.resize(*SCREEN)
    QApplication.processEvents()
    return viewer, panel


def close_notifications(viewer) -> None:
    """Close the pop-up notifications (they would cover the canvas in the picture)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    QApplication.processEvents()


def save_window(viewer, path: Path) -> Path:
    """The whole window, the image in view and no pop-ups, saved to ``path``; closes the viewer."""
    QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    close_notifications(viewer)
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()
    return path


def wait_for(condition, seconds: float = 60.0) -> None:
    """Let Qt run (worker threads, redraws) until ``condition()`` is true."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the widget's worker did not finish")
        QApplication.processEvents()
        time.sleep(0.02)


def grid_screenshot(out_dir: Path) -> Path:
    viewer, panel = docked_viewer()
    image = viewer.add_image(sample_image(), name="ihc", rgb=True, scale=(0.5, 0.5))
    viewer.add_labels(sample_mask(), name="nuclei", scale=(0.5, 0.5), opacity=0.4)
    widget = panel.grid
    panel.show_form(widget)
    widget.image_combo.value = image
    widget.mask_combo.value = viewer.layers["nuclei"]
    widget.patch_height.value = widget.patch_width.value = 64
    widget.edge.value = "pad"
    widget.show_button.native.click()
    wait_for(lambda: not widget.running and "ihc grid" in viewer.layers)
    viewer.layers["nuclei"].visible = False  # the grid's colours show the mask's share
    return save_window(viewer, out_dir / "grid-widget.png")


def cluster_screenshot(out_dir: Path) -> Path:
    viewer, panel = docked_viewer()
    image = viewer.add_image(sample_image(), name="ihc", rgb=True)
    widget = panel.cluster
    panel.show_form(widget)
    widget.image_combo.value = image
    widget.n_clusters.value = 4
    widget.posterise.value = True
    widget.run_button.native.click()
    wait_for(lambda: not widget.running and "ihc clusters" in viewer.layers)
    viewer.layers["ihc posterised"].visible = False
    viewer.layers["ihc clusters"].opacity = 0.5
    return save_window(viewer, out_dir / "cluster-widget.png")


def export_screenshot(out_dir: Path) -> Path:
    """The Export tab after a grid with a mask: it takes the grid's settings and says how
    many patch pairs it will write before anything is written."""
    viewer, panel = docked_viewer()
    image = viewer.add_image(sample_image(), name="ihc", rgb=True)
    viewer.add_labels(sample_mask(), name="nuclei", opacity=0.4)
    grid = panel.grid
    grid.image_combo.value = image
    grid.mask_combo.value = viewer.layers["nuclei"]
    grid.patch_height.value = grid.patch_width.value = 64
    grid.min_foreground.value = 0.2
    grid.show_button.native.click()
    wait_for(lambda: not grid.running and "ihc grid" in viewer.layers)
    panel.show_form(panel.export)
    return save_window(viewer, out_dir / "export-widget.png")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
    out.mkdir(parents=True, exist_ok=True)
    print(grid_screenshot(out))
    print(cluster_screenshot(out))
    print(export_screenshot(out))
