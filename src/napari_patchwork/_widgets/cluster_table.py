"""The cluster table of the Cluster tab: one row per cluster, centre, pixels and %."""

import numpy as np
from qtpy.QtGui import QColor, QIcon, QPixmap

from napari_patchwork.cluster import ClusterResult

TABLE_COLUMNS = ["centre", "pixels", "%"]


def centre_decimals(centres: np.ndarray) -> int:
    """Decimals that show every centre of a table with 3 significant digits of the
    largest value (0 for 0..255 images, 3 for 0..1 floats), the same for all of them."""
    largest = float(np.max(np.abs(centres))) if np.size(centres) else 0.0
    return int(max(0, 2 - np.floor(np.log10(largest)))) if largest > 0 else 0


def format_centre(centre: np.ndarray, decimals: int) -> str:
    return ", ".join(f"{v:.{decimals}f}" for v in centre)


def fill_table(table, result: ClusterResult, counts: np.ndarray, labels_layer) -> None:
    """Centres (one precision for all), pixel counts and % (one decimal); each row's
    id carries a swatch of its colour in the labels layer."""
    total = max(int(counts.sum()), 1)
    decimals = centre_decimals(result.centers)
    rows = [
        [format_centre(centre, decimals), int(count), f"{100 * int(count) / total:.1f}"]
        for centre, count in zip(result.centers, counts)
    ]
    # the row headers are the cluster ids 1..k
    table.value = {
        "data": rows,
        "index": list(range(1, len(rows) + 1)),
        "columns": TABLE_COLUMNS,
    }
    for row in range(len(rows)):
        rgba = np.asarray(labels_layer.get_color(row + 1), dtype=float)
        swatch = QPixmap(12, 12)
        swatch.fill(QColor.fromRgbF(*(float(v) for v in rgba)))
        table.native.verticalHeaderItem(row).setIcon(QIcon(swatch))
    table.native.resizeColumnsToContents()
