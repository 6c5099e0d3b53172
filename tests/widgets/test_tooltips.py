"""Every field and button of every widget explains itself in a tooltip."""

import pytest
from magicgui.widgets import Label, ProgressBar

from napari_patchwork._widgets.annotation_widget import AnnotationWidget
from napari_patchwork._widgets.cluster_widget import ClusterWidget
from napari_patchwork._widgets.export_widget import ExportWidget
from napari_patchwork._widgets.grid_widget import GridWidget
from napari_patchwork._widgets.merge_widget import MergeWidget


@pytest.mark.parametrize(
    ("widget_class", "least"),
    [
        (GridWidget, 6),
        (ClusterWidget, 6),
        (ExportWidget, 6),
        (AnnotationWidget, 6),
        (MergeWidget, 4),
    ],
)
def test_every_field_has_a_tooltip(make_napari_viewer, widget_class, least):
    widget = widget_class(make_napari_viewer())
    fields = [w for w in widget if not isinstance(w, (Label, ProgressBar))]
    missing = [w.label or getattr(w, "text", "") for w in fields if not (w.tooltip or "").strip()]
    assert not missing, missing
    assert len(fields) >= least
