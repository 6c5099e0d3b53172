"""Small napari helpers the widgets share (no Qt imports)."""

from typing import Any, Optional

import napari
import numpy as np

from napari_patchwork._layer_data import (
    CLUSTERS_METADATA_KEY,
    full_resolution_data,
    grid_layer_data,
)
from napari_patchwork.grid import PatchGrid, spatial_shape

__all__ = [
    "EDGE_TOOLTIP",
    "add_tooltips",
    "build_grid_layer_kwargs",
    "fitting_labels",
    "image_channel_axis",
    "layer_choices",
    "spatial_transform",
    "update_or_add_layer",
]


EDGE_TOOLTIP = (
    "What the last patch along each axis does at the image edge. "
    "drop: only whole patches inside the image, the remainder is left out. "
    "pad: it runs past the edge and is padded (the manifest records the valid region). "
    "shift: it moves inward to end at the edge (full-size patches, overlapping there). "
    "partial: it is clipped at the edge (smaller)."
)


def add_tooltips(widget, tooltips: dict[str, str]) -> None:
    """Give the widget's fields (attribute name -> text) a tooltip where they have none."""
    for name, text in tooltips.items():
        field = getattr(widget, name)
        if not (field.tooltip or "").strip():
            field.tooltip = text


def layer_choices(viewer: "napari.viewer.Viewer", layer_type: str) -> list:
    """Layers of ``viewer`` of one type (``"image"``, ``"labels"``, ``"shapes"``, ``"points"``)."""
    cls = {
        "image": napari.layers.Image,
        "labels": napari.layers.Labels,
        "shapes": napari.layers.Shapes,
        "points": napari.layers.Points,
    }
    return [layer for layer in viewer.layers if isinstance(layer, cls[layer_type])]


def fitting_labels(viewer: "napari.viewer.Viewer", image, channel_axis: Optional[int]) -> list:
    """The Labels layers of ``viewer`` that can be masks of ``image`` (None: []): its
    spatial shape, and not a cluster-labels layer (non-zero everywhere)."""
    if image is None:
        return []
    shape = spatial_shape(full_resolution_data(image).shape, channel_axis)
    return [
        layer
        for layer in layer_choices(viewer, "labels")
        if tuple(full_resolution_data(layer).shape) == shape
        and CLUSTERS_METADATA_KEY not in layer.metadata
    ]


def image_channel_axis(image: "napari.layers.Image", channels_first: bool = False) -> Optional[int]:
    """The array axis that holds channels: -1 for RGB(A) layers, 0 if asked, else None."""
    if image.rgb:
        return -1
    return 0 if channels_first else None


def spatial_transform(image: "napari.layers.Image", channel_axis: Optional[int]) -> dict[str, Any]:
    """The image layer's world transform restricted to its spatial axes.

    An RGB layer's transform already has only spatial axes; a channels-first layer
    loses axis 0. With no axis dropped, rotate, shear and affine are kept too.
    """
    drop_first = channel_axis == 0 and not image.rgb
    if drop_first:
        return {"scale": list(image.scale[1:]), "translate": list(image.translate[1:])}
    return {
        "scale": list(image.scale),
        "translate": list(image.translate),
        "rotate": image.rotate,
        "shear": image.shear,
        "affine": image.affine,
    }


def build_grid_layer_kwargs(
    image: "napari.layers.Image",
    grid: PatchGrid,
    features: dict,
    keep: np.ndarray,
    *,
    color_by: str,
    channel_axis: Optional[int],
    metadata: dict,
) -> dict[str, Any]:
    """Keyword arguments (``data`` included) for the grid Shapes layer of ``image``."""
    transform = spatial_transform(image, channel_axis)
    data, kwargs = grid_layer_data(
        grid,
        features,
        keep,
        scale=transform.pop("scale"),
        translate=transform.pop("translate"),
        color_by=color_by,
        channel_axis=channel_axis,
        metadata=metadata,
    )
    kwargs.update(transform)
    kwargs["data"] = data
    return kwargs


TRANSFORM_KEYS = ("scale", "translate", "rotate", "shear", "affine")


def update_or_add_layer(viewer: "napari.viewer.Viewer", layer_name: str, layer_type: str, **kwargs):
    """Update the layer called ``layer_name``, or add it; returns it.

    ``kwargs`` are the layer's keyword arguments, ``data`` included. An Image or
    Labels layer of the same kind and dimensions is updated in place (data,
    metadata, transform), so the user's colours, opacity and contrast stay; a
    Shapes layer (features and colours come with the data) or a layer of another
    kind is replaced at the same place in the layer list.
    """
    data = kwargs.pop("data")
    name = kwargs["name"] = layer_name
    existing = viewer.layers[name] if name in viewer.layers else None
    if existing is not None and _updatable(existing, layer_type, data, kwargs):
        existing.data = data
        existing.metadata = kwargs.get("metadata", {})
        for key in TRANSFORM_KEYS:
            if key in kwargs:
                setattr(existing, key, kwargs[key])
        return existing
    return put_layer(viewer, napari.layers.Layer.create(data, kwargs, layer_type))


def put_layer(viewer: "napari.viewer.Viewer", layer):
    """Add ``layer``, replacing a layer of the same name at its place; returns it."""
    if layer.name in viewer.layers:
        index = viewer.layers.index(layer.name)
        viewer.layers.pop(index)
        viewer.layers.insert(index, layer)
    else:
        viewer.layers.append(layer)
    return layer


def _updatable(layer, layer_type: str, data, kwargs: dict) -> bool:
    """Whether ``layer`` can take ``data`` in place (same kind, dimensions and RGB-ness)."""
    if layer_type not in ("image", "labels") or layer._type_string != layer_type:
        return False
    if getattr(layer, "multiscale", False) or np.ndim(data) != np.ndim(layer.data):
        return False
    return layer_type != "image" or bool(kwargs.get("rgb", layer.rgb)) == layer.rgb
