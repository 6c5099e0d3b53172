"""The plugin's dock fits a laptop screen (1,400 x 900): size hints on a real headless viewer."""

import npe2
import pytest
from qtpy.QtWidgets import QApplication

from napari_patchwork._widgets.annotation_widget import AnnotationWidget
from napari_patchwork._widgets.cluster_widget import ClusterWidget
from napari_patchwork._widgets.export_widget import ExportWidget
from napari_patchwork._widgets.grid_widget import GridWidget
from napari_patchwork._widgets.panel import TAB_TITLES, PatchworkPanel
from napari_patchwork.sample import sample_image, sample_mask

MANIFEST = npe2.PluginManifest.from_distribution("napari-patchwork")
SCREEN = (1400, 900)
MAX_MINIMUM = (1400, 860)  # the window's minimum size, leaving room for a panel/taskbar


@pytest.fixture
def plugin_viewer(make_napari_viewer, npe2pm):
    npe2pm.register(MANIFEST)
    return make_napari_viewer(show=True)


def _add_sample(viewer) -> None:
    viewer.add_image(sample_image(), name="ihc", rgb=True)
    viewer.add_labels(sample_mask(), name="nuclei from a long-named labels layer")


def _size(qsize) -> tuple[int, int]:
    return qsize.width(), qsize.height()


def test_all_widgets_docked_fit_the_screen(plugin_viewer):
    # what `napari -w napari-patchwork __all__` does on a first launch: every widget
    # contribution, tabified, then the window resized to its layout's size hint
    docks = [
        plugin_viewer.window.add_plugin_dock_widget("napari-patchwork", w.display_name, tabify=True)
        for w in MANIFEST.contributions.widgets
    ]
    QApplication.processEvents()
    panel = docks[0][1]
    assert isinstance(panel, PatchworkPanel)
    assert [panel.tabText(i) for i in range(panel.count())] == list(TAB_TITLES.values())
    window = plugin_viewer.window._qt_window
    width, height = _size(window.layout().sizeHint())
    assert width <= SCREEN[0] and height <= SCREEN[1], (width, height)
    _add_sample(plugin_viewer)  # layers fill the forms' lists
    QApplication.processEvents()
    width, height = _size(window.minimumSizeHint())
    assert width <= MAX_MINIMUM[0] and height <= MAX_MINIMUM[1], (width, height)


def test_every_form_scrolls_instead_of_growing_the_window(plugin_viewer):
    _add_sample(plugin_viewer)
    # each form docked on its own, all on the same side: their minimum heights add up
    for form_class in (GridWidget, ClusterWidget, ExportWidget, AnnotationWidget):
        form = form_class(plugin_viewer)
        plugin_viewer.window.add_dock_widget(form, name=form_class.__name__, area="right")
        form_height = form.form.minimumSizeHint().height()
        assert form.native.minimumSizeHint().height() < form_height / 2  # it scrolls
    QApplication.processEvents()
    width, height = _size(plugin_viewer.window._qt_window.minimumSizeHint())
    assert width <= MAX_MINIMUM[0] and height <= MAX_MINIMUM[1], (width, height)


def test_forms_fit_the_panel_width_without_scrolling_sideways(plugin_viewer):
    _add_sample(plugin_viewer)
    dock, panel = plugin_viewer.window.add_plugin_dock_widget("napari-patchwork", "Patch tools")
    plugin_viewer.window._qt_window.resize(*MAX_MINIMUM)
    for index, form in enumerate(panel.forms()):
        panel.setCurrentIndex(index)
        QApplication.processEvents()
        assert form.form.minimumSizeHint().width() <= form.native.viewport().width(), index
        assert not form.native.horizontalScrollBar().isVisible(), index
