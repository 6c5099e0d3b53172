"""How fast does a patch grid appear, and how long is the viewer frozen while it is built?

    xvfb-run -a -s "-screen 0 1400x900x24" python benchmarks/bench_grid.py [--skip-old]

Clicks "Show grid" in the real widget and measures, in one process:

* the time from the click to the first frame drawn with the grid;
* the longest the event loop was blocked meanwhile: a QTimer ticks every 10 ms
  and the largest gap between two ticks is reported (a responsive viewer keeps it
  near 10 ms; the target is under 0.1 s);

for a whole-slide grid (99,072 x 99,072 px lazy image, 256 px patches, edge 'pad':
149,769 patches, coloured by row) and for the issue's 10,000 x 10,000 image with a
mask and 64 px patches (24,336 patches, foreground fraction measured). Grids of
more than LABELS_GRID_MIN_PATCHES patches are a lazy multiscale Labels layer.

The old approach, all rectangles in one Shapes layer call (what the widget did
before, with napari's compiled triangulation), is timed the same way on the same
grids for the ratio (--skip-old leaves it out: it takes about a minute).
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("NAPARI_CONFIG", os.path.join(tempfile.mkdtemp(), "settings.yaml"))

import dask.array as da  # noqa: E402
import napari  # noqa: E402
import numpy as np  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_patchwork._layer_data import grid_layer_data  # noqa: E402
from napari_patchwork._widgets.grid_display import LABELS_GRID_MIN_PATCHES  # noqa: E402
from napari_patchwork._widgets.grid_widget import GridWidget  # noqa: E402
from napari_patchwork.grid import grid_features, make_grid  # noqa: E402

TICK_MS = 10


class BlockMeter:
    """Largest gap between ticks of a 10 ms QTimer: the longest event-loop block."""

    def __init__(self):
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.last = self.longest = 0.0

    def _tick(self):
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def __enter__(self):
        self.last, self.longest = time.perf_counter(), 0.0
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self._tick()
        self.timer.stop()


def wait_until(condition, seconds=120.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the grid did not appear")
        QApplication.processEvents()
        time.sleep(0.002)


def first_frame(viewer):
    """Let queued events run, then draw one frame of the canvas (as the screen would)."""
    QApplication.processEvents()
    viewer.window._qt_viewer.canvas._scene_canvas.render()
    QApplication.processEvents()


def lazy_slide(size: int):
    """A lazy multiscale all-zero slide (napari reads only what it shows)."""
    levels, s = [], size
    while True:
        levels.append(da.zeros((s, s), np.uint8, chunks=4096))
        if s <= 1024:
            return levels
        s = -(-s // 2)


def time_ours(viewer, widget, image, mask, patch, color_by):
    widget.image_combo.value = image
    widget.mask_combo.value = mask
    widget.patch_height.value = widget.patch_width.value = patch
    widget.edge.value = "pad"
    widget.color_by.value = color_by
    name = image.name + " grid"
    if name in viewer.layers:
        viewer.layers.remove(name)
    with BlockMeter() as meter:
        start = time.perf_counter()
        widget.show_button.native.click()
        wait_until(lambda: name in viewer.layers and not widget.running)
        first_frame(viewer)
        elapsed = time.perf_counter() - start
    return elapsed, meter.longest, viewer.layers[name]


def time_one_shapes_call(viewer, image, mask, patch):
    """The old approach: every rectangle in one Shapes layer, built on the GUI thread."""
    with BlockMeter() as meter:
        start = time.perf_counter()
        grid = make_grid(
            image.data[0].shape if image.multiscale else image.data.shape, patch, edge="pad"
        )
        features = grid_features(grid, None if mask is None else mask.data)
        data, kwargs = grid_layer_data(grid, features, scale=image.scale, translate=image.translate)
        layer = viewer.add_shapes(data, **kwargs)
        first_frame(viewer)
        elapsed = time.perf_counter() - start
    viewer.layers.remove(layer)
    return elapsed, meter.longest, grid.n_patches


def main() -> None:
    skip_old = "--skip-old" in sys.argv
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 860)
    widget = GridWidget(viewer)
    viewer.window.add_dock_widget(widget)

    slide = viewer.add_image(lazy_slide(99_072), name="slide", multiscale=True)
    small = viewer.add_image(np.zeros((10_000, 10_000), np.uint8), name="image", visible=False)
    mask = np.zeros((10_000, 10_000), np.uint8)
    mask[2_000:8_000, 1_000:9_000] = 1
    tissue = viewer.add_labels(mask, name="tissue", visible=False)
    time_ours(viewer, widget, small, None, 512, "row")  # warm-up: imports, GL context

    cases = [
        ("99,072^2 lazy slide, 256 px, colour by row", slide, None, 256, "row"),
        ("10,000^2 image + mask, 64 px, foreground", small, tissue, 64, "foreground_fraction"),
    ]
    print(f"grids over {LABELS_GRID_MIN_PATCHES:,} patches are a lazy Labels layer\n")
    for title, image, mask_layer, patch, color_by in cases:
        for layer in viewer.layers:
            layer.visible = layer is image or layer is mask_layer
        viewer.reset_view()
        ours, ours_block, layer = time_ours(viewer, widget, image, mask_layer, patch, color_by)
        n = layer.metadata["napari_patchwork"]["n_patches"]
        print(f"{title}: {n:,} patches ({layer._type_string} layer)")
        print(
            f"  ours:                  appears in {ours:6.2f} s, longest block {ours_block:6.3f} s"
            "   (targets < 2 s, < 0.1 s)"
        )
        if skip_old:
            continue
        viewer.layers.remove(layer)
        for extra in (" colour",):
            if image.name + " grid" + extra in viewer.layers:
                viewer.layers.remove(image.name + " grid" + extra)
        old, old_block, _ = time_one_shapes_call(viewer, image, mask_layer, patch)
        print(
            f"  old, one Shapes call:  appears in {old:6.2f} s, longest block {old_block:6.3f} s"
            f"   ratio {old / ours:5.1f}x, block ratio {old_block / ours_block:5.1f}x"
        )
    viewer.close()


if __name__ == "__main__":
    main()
