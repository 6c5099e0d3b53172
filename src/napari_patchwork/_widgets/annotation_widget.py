"""Annotations-to-mask widget: paint a Shapes layer's polygons/rectangles/ellipses into Labels.

Thin GUI over :func:`napari_patchwork.annotations.rasterize_shapes`.
"""

from typing import Optional

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Label, PushButton, SpinBox, Table
from napari.utils.notifications import show_error, show_info

from napari_patchwork._layer_data import full_resolution_data
from napari_patchwork._widgets._layers import (
    add_tooltips,
    image_channel_axis,
    layer_choices,
    spatial_transform,
    update_or_add_layer,
)
from napari_patchwork._widgets.forms import ScrollingForm
from napari_patchwork.annotations import AnnotationError, class_ids_from_names, rasterize_shapes
from napari_patchwork.grid import spatial_shape

NO_COLUMN = "(none: every shape is class 1)"
OVERLAP_LATER = "later shape wins"
OVERLAP_TABLE = "table order wins (first row on top)"


ANNOTATION_TOOLTIPS = {
    "image_combo": "The image whose pixel grid the mask uses (scale and translate respected).",
    "shapes_combo": "The Shapes layer of annotations: polygons, rectangles and ellipses are painted.",
    "column_combo": "The feature column that names each shape's class (none: every shape is 1).",
    "class_table": "Label id of each class; edit the ids here.",
    "instance": "Each shape gets its own id instead of its class's.",
    "overlap": "Where shapes overlap: the later shape wins, or the class higher in the table.",
    "background": "The id of pixels outside every shape.",
    "run_button": "Paint the shapes into the Labels layer '<shapes> mask'.",
}
"""Tooltips of the fields that have none where they are made."""


def shapes_to_labels_kwargs(
    shapes_layer,
    image_layer,
    *,
    column: Optional[str],
    class_ids: Optional[dict],
    instance: bool = False,
    background: int = 0,
    by_table_order: bool = False,
) -> tuple[dict, "object"]:
    """Labels-layer kwargs (``data`` included) painting ``shapes_layer`` in ``image_layer``'s grid.

    Returns ``(kwargs, result)`` with the :class:`RasterizedAnnotations` as ``result``.
    """
    channel_axis = image_channel_axis(image_layer)
    shape = spatial_shape(full_resolution_data(image_layer).shape, channel_axis)
    transform = spatial_transform(image_layer, channel_axis)
    classes = None
    if column and column in shapes_layer.features:
        classes = [str(v) for v in shapes_layer.features[column]]
    result = rasterize_shapes(
        shapes_layer.data,
        shapes_layer.shape_type,
        shape,
        classes=classes,
        class_ids=class_ids,
        instance=instance,
        background=background,
        priority=list(class_ids) if (by_table_order and class_ids and classes) else None,
        shapes_scale=shapes_layer.scale,
        shapes_translate=shapes_layer.translate,
        image_scale=transform["scale"],
        image_translate=transform["translate"],
    )
    kwargs = {
        "data": result.labels,
        "scale": transform["scale"],
        "translate": transform["translate"],
        "metadata": {
            "napari_patchwork": {
                "source": "annotations",
                "shapes_layer": shapes_layer.name,
                "image_layer": image_layer.name,
                "class_column": column,
                "class_ids": result.class_ids,
                "instance": instance,
                "background": background,
            }
        },
    }
    return kwargs, result


class AnnotationWidget(ScrollingForm):
    """Shapes annotations -> a Labels mask on an image's pixel grid.

    Pick the image (whose pixel grid the mask uses), the Shapes layer and the
    feature column holding class names; edit the class -> label id table; "Make
    mask" adds or updates the Labels layer ``"<shapes> mask"``.
    """

    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__()
        self._viewer = viewer
        self.image_combo = ComboBox(label="image", choices=self._image_choices)
        self.shapes_combo = ComboBox(label="annotations", choices=self._shapes_choices)
        self.column_combo = ComboBox(label="class column", choices=self._column_choices)
        self.class_table = Table(value={"class": [], "label id": []}, label="class ids")
        self.instance = CheckBox(text="instances (each shape its own id)", value=False)
        self.overlap = ComboBox(label="overlap", choices=[OVERLAP_LATER, OVERLAP_TABLE])
        self.background = SpinBox(label="background id", value=0, min=0, max=65535)
        self.run_button = PushButton(text="Make mask")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.image_combo,
                self.shapes_combo,
                self.column_combo,
                self.class_table,
                self.instance,
                self.overlap,
                self.background,
                self.run_button,
                self.status,
            ]
        )
        add_tooltips(self, ANNOTATION_TOOLTIPS)
        self.shapes_combo.changed.connect(self._on_shapes_changed)
        self.column_combo.changed.connect(self.refresh_table)
        self.run_button.changed.connect(self._on_run)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.reset_choices)
        self.reset_choices()
        self.refresh_table()

    def _image_choices(self, _widget=None) -> list:
        return layer_choices(self._viewer, "image")

    def _shapes_choices(self, _widget=None) -> list:
        # grid layers are not annotations
        return [
            layer
            for layer in layer_choices(self._viewer, "shapes")
            if "patch_size" not in layer.metadata.get("napari_patchwork", {})
        ]

    def _column_choices(self, _widget=None) -> list:
        layer = self.shapes_combo.value if hasattr(self, "shapes_combo") else None
        columns = [] if layer is None else [str(c) for c in layer.features.columns]
        return columns + [NO_COLUMN]

    def _on_shapes_changed(self, _value=None) -> None:
        self.column_combo.reset_choices()
        layer = self.shapes_combo.value
        if layer is not None and "class" in layer.features:
            self.column_combo.value = "class"
        self.refresh_table()

    def refresh_table(self, _value=None) -> None:
        """Fill the table with the column's classes (keeping ids the user already set)."""
        layer = self.shapes_combo.value
        column = self.column_combo.value
        if layer is None or column in (None, NO_COLUMN):
            self.class_table.value = {"class": [], "label id": []}
            return
        current = self.class_ids()
        names = list(dict.fromkeys(str(v) for v in layer.features[column]))
        ids = class_ids_from_names(names, {k: v for k, v in current.items() if k in names})
        self.class_table.value = {"class": list(ids), "label id": list(ids.values())}

    def class_ids(self) -> dict:
        """The table as {class name: label id}, in table order."""
        data = self.class_table.to_dict(orient="list") if self.class_table.shape[0] else {}
        try:
            return {str(c): int(i) for c, i in zip(data.get("class", []), data.get("label id", []))}
        except (TypeError, ValueError) as err:
            raise AnnotationError(
                f"every label id in the table must be a whole number ({err})."
            ) from err

    def _on_run(self, _value=None) -> None:
        try:
            layer = self.make_mask()
        except (AnnotationError, ValueError) as err:
            show_error(str(err))
            self.status.value = f"error: {err}"
            return
        meta = layer.metadata["napari_patchwork"]
        annotated = int(np.count_nonzero(np.asarray(layer.data) != meta["background"]))
        self.status.value = (
            f"'{layer.name}': {meta['n_painted']} shapes painted, {meta['n_skipped']} skipped; "
            f"{annotated:,} annotated pixels"
        )
        show_info(self.status.value)

    def make_mask(self):
        """Rasterise and add/update the Labels layer; returns it."""
        image, shapes = self.image_combo.value, self.shapes_combo.value
        if image is None:
            raise AnnotationError(
                "no Image layer: the mask takes its pixel grid from an image; add one."
            )
        if shapes is None:
            raise AnnotationError(
                "no Shapes layer with annotations: draw polygons, rectangles or ellipses first."
            )
        column = self.column_combo.value
        kwargs, result = shapes_to_labels_kwargs(
            shapes,
            image,
            column=None if column == NO_COLUMN else column,
            class_ids=self.class_ids() or None,
            instance=self.instance.value,
            background=self.background.value,
            by_table_order=self.overlap.value == OVERLAP_TABLE,
        )
        kwargs["metadata"]["napari_patchwork"].update(
            n_painted=result.n_painted, n_skipped=result.n_skipped
        )
        return update_or_add_layer(self._viewer, f"{shapes.name} mask", "labels", **kwargs)
