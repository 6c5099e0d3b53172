"""How a grid layer looks and behaves in the viewer (napari side of the grid layer contract).

* :func:`make_grid_layers` builds the grid layer (Shapes for small grids, a lazy
  multiscale Labels layer of patch labels for large ones; see
  :mod:`napari_patchwork._layer_data`) and its colour layer's data off the GUI thread,
  with the :class:`Legend` of the colours; :func:`place_grid_layers` puts them into the
  viewer on top of the layer list (a redrawn grid is never hidden under other layers),
  one layer per turn of the event loop, so the viewer keeps painting;
* :class:`OutlineZoom` hides the outlines while patches are smaller than a few
  screen pixels (zoomed out, a 64 px grid on a slide is a moiré of lines);
* Ctrl+click on a Labels grid selects or deselects the patch under the mouse
  (:func:`toggle_patch`); selected patches are outlined in a Shapes layer.
"""

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Optional

import napari
import numpy as np

from napari_patchwork._layer_data import (
    GRID_COLORMAP,
    GRID_METADATA_KEY,
    grid_colour_layer_data,
    grid_labels_layer_data,
)
from napari_patchwork._widgets._layers import (
    build_grid_layer_kwargs,
    put_layer,
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


@dataclass(frozen=True)
class Legend:
    """What the grid's colours mean: the feature and the values at the colour map's ends."""

    feature: str
    low: float
    high: float
    colormap: str = GRID_COLORMAP


@dataclass(frozen=True)
class GridLayers:
    """A grid's layers, made but not yet in a viewer (see :func:`make_grid_layers`)."""

    grid: Any  # the grid layer: napari Shapes (small grids) or lazy multiscale Labels
    grid_kind: str  # "shapes" or "labels"
    colour: Optional[tuple]  # (data, kwargs) of the per-patch colour Image layer, or None
    legend: Optional[Legend]
    patch_grid: PatchGrid


def make_grid_layers(image, plan, features: dict, keep: np.ndarray, options: dict) -> GridLayers:
    """The grid layer (and the colour layer's data) for ``plan``, without a viewer.

    Safe in a worker thread: it builds napari layer models (no Qt), which is where a
    large grid's time goes (a Shapes layer's triangles, a lazy pyramid's graph).
    ``options``: ``name``, ``color_by`` (a feature or :data:`ONE_COLOUR`),
    ``metadata`` (extra grid metadata).
    """
    grid, channel_axis = plan.grid, plan.channel_axis
    name = options["name"]
    # placed patches lie anywhere: always rectangles, coloured by their edges
    if grid.n_patches > LABELS_GRID_MIN_PATCHES and not grid.placed:
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
        layer = napari.layers.Labels(data, **kwargs)
        layer.contour = 1
        kind = "labels"
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
        kwargs["name"] = name
        layer = napari.layers.Layer.create(kwargs.pop("data"), kwargs, "shapes")
        kind = "shapes"
    colour, legend = _colour_layer_data(image, plan, features, keep, options)
    return GridLayers(layer, kind, colour, legend, grid)


def place_grid_layers(viewer, made: GridLayers) -> Generator[None, None, Any]:
    """Put ``made``'s layers into ``viewer``, on top, one layer per step (the caller
    lets the event loop run between steps); returns the grid layer.

    A grid layer of the same name is replaced at its place; the colour layer
    ``"<grid> colour"`` is updated in place when it exists, else added (or removed
    when the grid is not coloured). Then both move to the top of the layer list, so a
    redrawn grid is never hidden under other layers, and the grid layer is selected.
    """
    layer = made.grid
    _remove(viewer, layer.name + SELECTION_SUFFIX)
    put_layer(viewer, layer)
    if made.grid_kind == "labels":
        _connect_selection(viewer, layer, made.patch_grid)
    yield
    name = layer.name + COLOUR_SUFFIX
    colour = None
    if made.colour is None:
        _remove(viewer, name)
    else:
        data, kwargs = made.colour
        # updated in place when it exists (a new Image layer costs a few tenths of a second)
        colour = update_or_add_layer(viewer, name, "image", data=data, **kwargs)
        colour.contrast_limits = kwargs["contrast_limits"]
        colour.colormap = kwargs["colormap"]
        yield
    for top in (colour, layer):
        if top is not None:
            viewer.layers.move(viewer.layers.index(top), len(viewer.layers))
    yield
    viewer.layers.selection.active = layer  # its layer controls are made now
    return layer


def _colour_layer_data(image, plan, features: dict, keep, options: dict):
    """``((data, kwargs), Legend)`` of the per-patch colour layer, or ``(None, None)``."""
    color_by = options["color_by"]
    if color_by == ONE_COLOUR or color_by not in features or plan.grid.placed:
        return None, None
    transform = spatial_transform(image, plan.channel_axis)
    data, kwargs = grid_colour_layer_data(
        plan.grid,
        features[color_by],
        keep,
        scale=transform["scale"],
        translate=transform["translate"],
        name=options["name"] + COLOUR_SUFFIX,
        label=color_by,
    )
    low, high = kwargs["contrast_limits"]
    return (data, kwargs), Legend(color_by, low, high)


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
