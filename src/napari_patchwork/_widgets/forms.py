"""Scrolling forms: a magicgui ``Container`` that napari docks inside a scroll area, with
compact fields, so a dock can be as short as a few rows and as narrow as
:data:`FORM_MIN_WIDTH` (a dock's minimum size becomes the main window's)."""

from magicgui.widgets import Container, FileEdit
from qtpy.QtCore import QSize
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QFrame,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

FORM_MIN_WIDTH = 260
"""Narrowest a form gets before it scrolls sideways (pixels)."""
FORM_MIN_HEIGHT = 120
"""Pixels of a form a dock keeps at least (a few rows); the rest scrolls."""
FORM_HINT = QSize(290, 520)
"""The size a form asks for at most: napari sizes a first window from these hints."""


FIELD_MIN_WIDTH = 72
"""Narrowest drop-down list or number field (pixels). Qt sizes them for their longest
item or largest value otherwise: one long layer name or a maximum of 1e12 widens the dock."""


def compact_fields(field) -> None:
    """Let the Qt widget ``field`` and the fields in it shrink to fit a narrow dock.

    Drop-down lists, number fields and word-wrapped texts may get as narrow as
    :data:`FIELD_MIN_WIDTH` (they still ask for their natural width when there is room).
    """
    for child in [field, *field.findChildren((QComboBox, QAbstractSpinBox, QLabel))]:
        if isinstance(child, (QComboBox, QAbstractSpinBox)):
            child.setMinimumWidth(FIELD_MIN_WIDTH)
        elif isinstance(child, QLabel) and child.wordWrap():  # status lines wrap, not widen
            child.setMinimumWidth(FIELD_MIN_WIDTH)


class _FormScrollArea(QScrollArea):
    """A scroll area whose size hint stays compact, however long the form inside is."""

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return super().sizeHint().boundedTo(FORM_HINT).expandedTo(self.minimumSizeHint())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return QSize(FORM_MIN_WIDTH, FORM_MIN_HEIGHT)


class ScrollingForm(Container):
    """A labelled magicgui ``Container`` that napari docks inside a scroll area.

    ``native`` is the scroll area (what napari puts in a dock or a tab); :attr:`form`
    is the widget that holds the fields and their layout.
    """

    def __init__(self, **kwargs):
        super().__init__(labels=True, **kwargs)
        self.margins = (4, 4, 4, 4)  # Qt's 9 px leave too little of a narrow dock
        form = self._widget._mgui_get_native_widget()
        form.layout().addStretch(1)  # rows stay together at the top of a tall dock
        self._scroll = _FormScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.NoFrame)
        self._scroll.setWidget(form)
        self._scroll._magic_widget = self

    def insert(self, key: int, widget) -> None:
        """Add ``widget`` at ``key`` (``append``/``extend`` come here), made compact."""
        if isinstance(widget, FileEdit):  # "Choose directory" is the widest button
            widget.choose_btn.text = "Browse..."
        compact_fields(widget.native)
        super().insert(key, widget)

    @property
    def native(self):
        """The scroll area around the form (docked by napari); the form while it is made."""
        scroll = self.__dict__.get("_scroll")
        return self._widget._mgui_get_native_widget() if scroll is None else scroll

    @property
    def root_native_widget(self):
        return self.native

    def add_wide(self, widget, title: str, after) -> None:
        """Show the magicgui ``widget`` (a table, a list) across the form's whole width,
        under a ``title`` line, right after the field ``after``.

        The form gives every field a label column on its left, which leaves a table too
        narrow for its columns in a narrow dock; ``widget`` is not one of the form's
        fields (keep a reference to it, as the form's attributes do).
        """
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(2)
        label = QLabel(title)
        label.setWordWrap(True)
        label.setToolTip(widget.tooltip or "")
        layout.addWidget(label)
        layout.addWidget(widget.native)
        widget.native.setMinimumWidth(FIELD_MIN_WIDTH)  # scrolls inside rather than widen the dock
        row = after.native
        while row.parent() is not self.form:
            row = row.parent()
        form_layout = self.form.layout()
        form_layout.insertWidget(form_layout.indexOf(row) + 1, box)

    @property
    def form(self):
        """The Qt widget that holds the fields and their layout."""
        return self._widget._mgui_get_native_widget()
