"""The cluster table of the Cluster tab: one row per cluster, centre, pixels and %."""

import numpy as np
from magicgui.widgets import Table
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QHeaderView, QStyledItemDelegate

from napari_patchwork.cluster import ClusterResult

TABLE_COLUMNS = ["centre", "pixels", "%"]
TABLE_ROWS_SHOWN = 8
"""Rows of the cluster table (and of the foreground list) shown without scrolling."""


def make_table() -> Table:
    """The empty, read-only table, its columns as wide as their contents."""
    table = Table(value={"data": [], "index": [], "columns": TABLE_COLUMNS}, label="clusters")
    table.read_only = True
    native = table.native
    native.setMinimumHeight(TABLE_ROWS_SHOWN * 10)
    # every column as wide as its contents: no column stretched past the dock's width
    native.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    native.horizontalHeader().setMinimumSectionSize(24)
    native.setVerticalScrollBarPolicy(Qt.ScrollBarAsNeeded)
    # magicgui's delegate shows every number with 4 decimals ("19.6000"); ours are
    # formatted already (one precision per column)
    native.setItemDelegate(QStyledItemDelegate(native))
    return table


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
    native = table.native
    native.resizeRowsToContents()
    shown = min(len(rows), TABLE_ROWS_SHOWN)  # up to this many rows without scrolling
    native.setFixedHeight(
        native.horizontalHeader().height()
        + 2 * native.frameWidth()
        + sum(native.rowHeight(row) for row in range(shown))
    )
