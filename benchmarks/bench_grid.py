"""How fast does the patch grid of a 20000 x 20000 image appear in the viewer?

    xvfb-run -a python benchmarks/bench_grid.py

Measures, in one process, the time from clicking "Show grid" (256 px patches, edge
'pad': 79 x 79 = 6,241 patches, foreground fraction from a 20000 x 20000 mask) to
the first rendered frame, for:

* ours: the widget's path, all rectangles in one Shapes layer built with napari's
  fastest triangulation backend (bermuda, a napari optional dependency we require);
* the same single call with napari's pure-Python triangulation (what napari does
  without bermuda);
* the naive approach: one ``layer.add_rectangles`` call per patch, timed on the
  first 300 patches and extrapolated to 6,241 (the full loop takes minutes).

Prints the times and the ratios; the target is under 2 s for ours.
"""

import os
import tempfile
import time

os.environ.setdefault("NAPARI_CONFIG", os.path.join(tempfile.mkdtemp(), "settings.yaml"))

import napari  # noqa: E402
import numpy as np  # noqa: E402
from napari.settings import get_settings  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_patchwork._widgets.grid_widget import GridWidget  # noqa: E402
from napari_patchwork.grid import boxes_to_rectangles, make_grid  # noqa: E402

SIZE, PATCH, NAIVE_SAMPLE = 20_000, 256, 300


def render(viewer) -> None:
    """Process pending events and draw one frame of the canvas."""
    QApplication.processEvents()
    viewer.screenshot(canvas_only=True)


def time_widget(viewer, widget, backend: str) -> float:
    get_settings().experimental.triangulation_backend = backend
    start = time.perf_counter()
    widget.show_button.native.click()
    render(viewer)
    return time.perf_counter() - start


def time_naive(viewer) -> float:
    grid = make_grid((SIZE, SIZE), PATCH, edge="pad")
    rectangles, _ = boxes_to_rectangles(grid.boxes[:NAIVE_SAMPLE])
    layer = viewer.add_shapes(name="naive", face_color="transparent")
    start = time.perf_counter()
    for rectangle in rectangles:
        layer.add_rectangles(rectangle[None], edge_color="yellow")
    render(viewer)
    elapsed = time.perf_counter() - start
    viewer.layers.remove(layer)
    return elapsed * grid.n_patches / NAIVE_SAMPLE


def main() -> None:
    viewer = napari.Viewer(show=False)
    image = viewer.add_image(np.zeros((SIZE, SIZE), np.uint8), name="slide", scale=(0.25, 0.25))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[5000:15000, 3000:17000] = 1
    viewer.add_labels(mask, name="tissue", scale=(0.25, 0.25))
    widget = GridWidget(viewer)
    widget.image_combo.value = image
    widget.mask_combo.value = viewer.layers["tissue"]
    widget.patch_height.value = widget.patch_width.value = PATCH
    widget.edge.value = "pad"
    time_widget(viewer, widget, "fastest available")  # warm-up: imports, GL context
    ours = min(time_widget(viewer, widget, "fastest available") for _ in range(3))
    n = len(viewer.layers["slide grid"].data)
    pure = time_widget(viewer, widget, "pure python")
    naive = time_naive(viewer)
    print(f"grid: {n:,} patches of {PATCH} px on a {SIZE:,} x {SIZE:,} image (with mask)")
    print(f"ours (one Shapes layer, compiled triangulation): {ours:6.2f} s  (target < 2 s)")
    print(f"one call, pure-Python triangulation:            {pure:6.2f} s  ratio {pure / ours:5.1f}x")
    print(f"naive, add_rectangles per patch (extrapolated):  {naive:6.1f} s  ratio {naive / ours:5.1f}x")
    viewer.close()


if __name__ == "__main__":
    main()
