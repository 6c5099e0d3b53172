"""How a grid layer looks and behaves in the viewer (napari side of the grid layer contract).

* :func:`show_grid_layers` adds or replaces the grid layer (Shapes for small grids,
  a lazy multiscale Labels layer of patch labels for large ones; see
  :mod:`napari_patchwork._layer_data`) and its colour layer, and puts them on top
  of the layer list, so a redrawn grid is never hidden under other layers;
* :class:`OutlineZoom` hides the outlines while patches are smaller than a few
  screen pixels (zoomed out, a 64 px grid on a slide is a moiré of lines);
* Ctrl+click on a Labels grid selects or deselects the patch under the mouse
  (:func:`toggle_patch`); selected patches are outlined in a Shapes layer.
"""

import numpy as np

from napari_patchwork._layer_data import (
    GRID_METADATA_KEY,
    grid_colour_layer_data,
    grid_labels_layer_data,
)
from napari_patchwork._widgets._layers import (
    build_grid_layer_kwargs,
    spatial_transform,
    update_or_add_layer,
)
from napari_patchwork.grid import PatchGrid, boxes_to_rectangles

LABELS_GRID_MIN_PATCHES = 5_000
"""Grids with more patches are a lazy Labels layer: a Shapes layer of 5,000
rectangles already blocks the viewer for about half a second while it is built."""
MIN_OUTLINE_SCREEN_PX = 4.0
"""Outlines are hidden while a patch is smaller than this on screen."""
COLOUR_SUFFIX = " colour"
SELECTION_SUFFIX = " selection"
SELECTION_COLOUR = "#ffea00"
ONE_COLOUR = "(one colour)"
"""The colour-by choice that draws outlines only."""


def show_grid_layers(viewer, image, plan, features: dict, keep: np.ndarray, options: dict):
    """Add or replace the grid layer (and its colour layer), on top; returns the grid layer.

    ``options``: ``name``, ``color_by`` (a feature or :data:`ONE_COLOUR`),
    ``metadata`` (extra grid metadata).
    """
    grid, channel_axis = plan.grid, plan.channel_axis
    name = options["name"]
    # placed patches lie anywhere: always rectangles, coloured by their edges
    large = grid.n_patches > LABELS_GRID_MIN_PATCHES and not grid.placed
    if large:
        transform = spatial_transform(image, channel_axis)
        data, kwargs = grid_labels_layer_data(
            grid,
            features,
            keep,
            scale=transform["scale"],
            translate=transform["translate"],
            channel_axis=channel_axis,
            name=name,
            metadata=options["metadata"],
        )
        layer = update_or_add_layer(viewer, name, "labels", data=data, **kwargs)
        layer.contour = 1
        _connect_selection(viewer, layer, grid)
    else:
        kwargs = build_grid_layer_kwargs(
            image,
            grid,
            features,
            keep,
            color_by=options["color_by"] if grid.placed else None,
            channel_axis=channel_axis,
            metadata=options["metadata"],
        )
        layer = update_or_add_layer(viewer, name, "shapes", **kwargs)
    _remove(viewer, name + SELECTION_SUFFIX)
    colour = _show_colour_layer(viewer, image, plan, features, keep, options)
    for top in (colour, layer):
        if top is not None:
            viewer.layers.move(viewer.layers.index(top), len(viewer.layers))
    viewer.layers.selection.active = layer
    return layer


def _show_colour_layer(viewer, image, plan, features: dict, keep, options: dict):
    """The per-patch colour layer ``"<grid> colour"`` with a colour bar, or none."""
    name = options["name"] + COLOUR_SUFFIX
    color_by = options["color_by"]
    if color_by == ONE_COLOUR or color_by not in features or plan.grid.placed:
        _remove(viewer, name)
        return None
    transform = spatial_transform(image, plan.channel_axis)
    data, kwargs = grid_colour_layer_data(
        plan.grid,
        features[color_by],
        keep,
        scale=transform["scale"],
        translate=transform["translate"],
        name=name,
        label=color_by,
    )
    # updated in place when it exists (a new layer rebuilds its colour bar: ~0.3 s)
    layer = update_or_add_layer(viewer, name, "image", data=data, **kwargs)
    layer.contrast_limits = kwargs["contrast_limits"]
    layer.colormap = kwargs["colormap"]
    layer.colorbar.visible = True
    return layer


def _remove(viewer, name: str) -> None:
    if name in viewer.layers:
        viewer.layers.remove(name)


# -- outlines while zooming ---------------------------------------------------------


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return viewer.camera if scene is None else scene.camera


class OutlineZoom:
    """Hides the grid layers' outlines while patches are under a few screen pixels."""

    def __init__(self, viewer):
        self._viewer = viewer
        camera(viewer).events.zoom.connect(self.update)

    def disconnect(self) -> None:
        camera(self._viewer).events.zoom.disconnect(self.update)

    def update(self, _event=None) -> None:
        for layer in list(self._viewer.layers):
            described = layer.metadata.get(GRID_METADATA_KEY)
            if not isinstance(described, dict) or "stride" not in described:
                continue
            visible = patch_screen_size(layer, described, camera(self._viewer).zoom)
            layer.opacity = 1.0 if visible >= MIN_OUTLINE_SCREEN_PX else 0.0


def patch_screen_size(layer, described: dict, zoom: float) -> float:
    """The smaller of a patch's step in y and x, in screen pixels at camera ``zoom``."""
    stride = described["stride"][-2:]
    scale = np.abs(np.asarray(layer.scale[-2:], dtype=float))
    return float(min(s * c for s, c in zip(stride, scale)) * zoom)


# -- selecting patches of a Labels grid --------------------------------------------


def toggle_patch(layer, patch: int) -> np.ndarray:
    """Select ``patch`` in a Labels grid layer, or deselect it if it was; returns the
    selection (sorted patch indices, also in the layer's metadata)."""
    described = layer.metadata[GRID_METADATA_KEY]
    selected = np.asarray(described.get("selected", ()), dtype=np.int64)
    if patch in selected:
        selected = selected[selected != patch]
    else:
        selected = np.sort(np.append(selected, np.int64(patch)))
    described["selected"] = selected
    return selected


def _connect_selection(viewer, layer, grid: PatchGrid) -> None:
    def on_click(layer_, event):
        if "Control" not in event.modifiers and "Meta" not in event.modifiers:
            return
        label = layer_.get_value(event.position, world=True)
        if label is None or int(np.ravel(label)[-1]) <= 0:
            return
        selected = toggle_patch(layer_, int(np.ravel(label)[-1]) - 1)
        show_selection(viewer, layer_, grid, selected)

    layer.mouse_drag_callbacks.append(on_click)


def show_selection(viewer, layer, grid: PatchGrid, selected: np.ndarray) -> None:
    """Outline the selected patches of a Labels grid in a Shapes layer above it."""
    name = layer.name + SELECTION_SUFFIX
    _remove(viewer, name)
    if len(selected) == 0:
        return
    rectangles, _owner = boxes_to_rectangles(grid.boxes[selected], shape=grid.shape)
    shapes = viewer.add_shapes(
        rectangles,
        shape_type="rectangle",
        name=name,
        face_color="transparent",
        edge_color=SELECTION_COLOUR,
        edge_width=max(2.0, min(grid.patch_size[-2:]) / 20),
        scale=list(layer.scale),
        translate=list(layer.translate),
    )
    viewer.layers.selection.active = layer
    return shapes
