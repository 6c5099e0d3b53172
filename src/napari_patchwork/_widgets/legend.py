"""The grid's colour legend in the dock: the colour map as a bar, with the values at its
ends (the feature is the form's "colour by"; the tooltip says it all in words).

A Qt picture in the Grid tab rather than napari's colour bar on the canvas: the canvas
colour bar costs a few tenths of a second of the GUI thread each time a colour layer is
made (its visuals and shaders), which would stop the viewer while a grid appears.
"""

from typing import Optional

import numpy as np
from napari.utils.colormaps import ensure_colormap
from qtpy.QtCore import QRect, Qt
from qtpy.QtGui import QColor, QImage, QPainter, QPixmap

from napari_patchwork._widgets.grid_display import Legend

BAR_WIDTH = 140
"""Narrow enough for the form's value column in a dock of the form's minimum width."""
BAR_HEIGHT = 12
TEXT_HEIGHT = 16


def value_text(value: float) -> str:
    """A legend value: whole numbers as they are, others with 3 significant digits."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}"


def legend_pixmap(legend: Legend, width: int = BAR_WIDTH) -> QPixmap:
    """The colour bar of ``legend`` over a line "low ... high"."""
    colours = ensure_colormap(legend.colormap).map(np.linspace(0.0, 1.0, width))
    rgba = np.ascontiguousarray(
        np.repeat((np.clip(colours, 0, 1) * 255).astype(np.uint8)[None], BAR_HEIGHT, axis=0)
    )
    bar = QImage(rgba.data, width, BAR_HEIGHT, 4 * width, QImage.Format.Format_RGBA8888)
    pixmap = QPixmap(width, BAR_HEIGHT + TEXT_HEIGHT)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    try:
        painter.drawImage(0, 0, bar)
        painter.setPen(QColor("#d0d0d0"))
        line = QRect(0, BAR_HEIGHT, width, TEXT_HEIGHT)
        painter.drawText(line, int(Qt.AlignLeft | Qt.AlignVCenter), value_text(legend.low))
        painter.drawText(line, int(Qt.AlignRight | Qt.AlignVCenter), value_text(legend.high))
    finally:
        painter.end()
    return pixmap


def show_legend(label, legend: Optional[Legend]) -> None:
    """Show ``legend`` in the magicgui ``Label`` ``label`` (hidden without a legend)."""
    native = label.native
    if legend is None:
        native.clear()
        label.visible = False
        return
    native.setPixmap(legend_pixmap(legend))
    native.setToolTip(
        f"Patches coloured by {legend.feature}: {value_text(legend.low)} (dark) to "
        f"{value_text(legend.high)} (bright), colour map {legend.colormap}."
    )
    label.visible = True
