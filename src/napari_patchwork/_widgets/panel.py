"""How the widgets sit in napari: one tabbed "Patch tools" panel of scrolling forms.

napari docks a magicgui widget's ``native`` widget, and a dock's minimum size
becomes the main window's. Two things keep the window within a laptop screen
(1,400 x 900) with everything docked:

* every form scrolls (:class:`~napari_patchwork._widgets.forms.ScrollingForm`):
  ``native`` is a scroll area, so a dock can be as short as a few rows;
* the plugin contributes one dock, :class:`PatchworkPanel`, with the forms as tabs.
  Several docks tabified on one side make napari (on a first launch) size the window
  for the sum of their long tab titles, "Patch grid (napari-patchwork)" and so on,
  which is wider than such a screen.
"""

from qtpy.QtWidgets import QTabWidget

from napari_patchwork._widgets.annotation_widget import AnnotationWidget
from napari_patchwork._widgets.cluster_widget import ClusterWidget
from napari_patchwork._widgets.export_widget import ExportWidget
from napari_patchwork._widgets.grid_widget import GridWidget
from napari_patchwork._widgets.merge_widget import MergeWidget

TAB_TITLES = {
    "grid": "Grid",
    "cluster": "Cluster",
    "export": "Export",
    "annotations": "Annotations",
    "merge": "Merge",
}
"""Tab titles of the panel, by attribute name (short, so the tab bar stays narrow)."""


class PatchworkPanel(QTabWidget):
    """All of the plugin in one dock: the grid, cluster, export, annotation and merge forms
    as tabs, the attributes :attr:`grid`, :attr:`cluster`, :attr:`export`,
    :attr:`annotations` and :attr:`merge`; each keeps its own state, and they share the
    viewer's layers.
    """

    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821

        super().__init__()
        self.setDocumentMode(True)
        self.setUsesScrollButtons(True)
        self.grid = GridWidget(viewer)
        self.cluster = ClusterWidget(viewer)
        self.export = ExportWidget(viewer)
        self.annotations = AnnotationWidget(viewer)
        self.merge = MergeWidget(viewer)
        for name, title in TAB_TITLES.items():
            self.addTab(getattr(self, name).native, title)

    def forms(self) -> list:
        """The forms, in tab order."""
        return [getattr(self, name) for name in TAB_TITLES]

    def show_form(self, form) -> None:
        """Bring ``form``'s tab to the front."""
        self.setCurrentWidget(form.native)
