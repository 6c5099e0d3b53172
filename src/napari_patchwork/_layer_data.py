"""Layer helpers for the widgets, the reader and the writer, without importing napari.

* what a layer holds: its full-resolution array (:func:`full_resolution_data`,
  :func:`level0`), whether a Shapes layer is a patch grid (:func:`is_grid_layer`,
  :data:`GRID_METADATA_KEY`), an annotation Shapes layer painted into a mask
  (:func:`annotation_mask`);
* what laid a grid layer's patches: :func:`grid_placement` (a placement, or None for
  a regular grid);
* layers to make: :func:`grid_layer_data` returns plain ``(data, kwargs)`` that
  ``napari.layers.Layer.create`` or a reader's layer data tuple accept.

The grid layer contract
-----------------------
A patch grid is shown as one layer, the *grid layer*, whose
``metadata[GRID_METADATA_KEY]`` describes the grid (:func:`grid_metadata`:
``patch_size``, ``stride``, ``edge``, ``shape``, ``channel_axis``, ``n_patches``,
plus e.g. ``image_layer``, ``mask_layer``, ``min_foreground``) and ``kind`` says how
the patches are drawn:

* ``"shapes"`` (small grids, :func:`grid_layer_data`): a Shapes layer with one
  rectangle per patch (per z-plane in 3D), feature ``index`` = patch index. The
  patches shown are the ``index`` values present; the selected ones are the
  ``index`` values of ``layer.selected_data``.
* ``"labels"`` (large grids, :func:`grid_labels_layer_data`): a lazy multiscale
  Labels layer whose pixel values are patch index + 1 (0 = no patch shown there),
  features with ``index`` = that label value and ``patch`` = patch index. The
  patches shown are ``metadata[GRID_METADATA_KEY]["kept"]`` and the selected ones
  ``metadata[GRID_METADATA_KEY]["selected"]`` (patch indices, sorted int64 arrays).

:func:`kept_patches` and :func:`selected_patches` read either kind; the export
widget and the writer go through them. A grid without ``kind`` is a Shapes grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_patchwork.annotations import RasterizedAnnotations, rasterize_shapes
from napari_patchwork.grid import PatchGrid, boxes_to_rectangles
from napari_patchwork.grid_raster import (
    cell_transform,
    lazy_label_pyramid,
    patch_labels,
    patch_value_image,
)
from napari_patchwork.placement import Placement, PlacementError
from napari_patchwork.pyramid import Pyramid

GRID_METADATA_KEY = "napari_patchwork"
"""Key of the grid description in a grid layer's ``metadata``."""
CLUSTERS_METADATA_KEY = "napari_patchwork.cluster"
"""Key of the clustering parameters and model in a cluster Labels layer's ``metadata``
(ids 1..k everywhere: not a foreground mask)."""
ANNOTATION_CLASS_COLUMN = "class"
"""Feature column of an annotation Shapes layer that names each shape's class."""


def level0(data: Any, multiscale: bool) -> Any:
    """The full-resolution array of a layer's data (level 0 of a multiscale layer's levels)."""
    return data[0] if multiscale else data


def full_resolution_data(layer: Any) -> Any:
    """The layer's array at full resolution (level 0 of a multiscale layer)."""
    return level0(layer.data, getattr(layer, "multiscale", False))


def image_levels(layer: Any) -> Pyramid | None:
    """The levels of a multiscale Image layer (level 0 first) as a :class:`Pyramid`, else None."""
    if not getattr(layer, "multiscale", False):
        return None
    return Pyramid(tuple(layer.data))


def is_grid_layer(meta: dict) -> bool:
    """True for a patch-grid layer, Shapes or Labels (its metadata describes the grid)."""
    grid = (meta.get("metadata") or {}).get(GRID_METADATA_KEY)
    return isinstance(grid, dict) and "patch_size" in grid


LAZY_MASK_PIXELS = 2**26
"""Annotation masks larger than this (64 Mpx, e.g. 8192 x 8192) are painted lazily."""
LAZY_MASK_CHUNK = 4096
"""Block size (px, y and x) of lazily painted annotation masks."""


def annotation_mask(
    shapes_data: Sequence[np.ndarray],
    shapes_meta: dict,
    image_shape: Sequence[int],
    image_scale: Sequence[float] | None = None,
    image_translate: Sequence[float] | None = None,
) -> RasterizedAnnotations:
    """Paint an annotation Shapes layer (its layer data) into a mask of ``image_shape``.

    ``image_shape`` is the image's spatial shape (y, x or z, y, x);
    ``image_scale``/``image_translate`` the image layer's (a value for a channel
    axis first is ignored). Classes come from the ``class`` feature column when
    present, else every shape gets id 1 (see the module notes). Masks of more
    than :data:`LAZY_MASK_PIXELS` pixels are lazy dask arrays painted block by
    block as the export reads them, so a whole-slide mask is never in memory.
    """
    features = shapes_meta.get("features")
    classes = None
    if features is not None and ANNOTATION_CLASS_COLUMN in features:
        classes = [str(v) for v in features[ANNOTATION_CLASS_COLUMN]]
    return rasterize_shapes(
        shapes_data,
        shapes_meta.get("shape_type") or ["polygon"] * len(shapes_data),
        image_shape,
        classes=classes,
        shapes_scale=shapes_meta.get("scale"),
        shapes_translate=shapes_meta.get("translate"),
        image_scale=image_scale,
        image_translate=image_translate,
        chunks=LAZY_MASK_CHUNK if int(np.prod(image_shape)) > LAZY_MASK_PIXELS else None,
    )


GRID_EDGE_COLOUR = "#00e5ff"
"""Patch outlines: a light cyan that stays visible on brown, blue and white tissue."""
GRID_COLORMAP = "plasma"
"""Colour map of the per-patch colour layer (see :func:`grid_colour_layer_data`)."""
GRID_COLOUR_OPACITY = 0.45
"""Opacity of the per-patch colour layer: the tissue stays visible under it."""


def kept_patches(metadata: dict, features: Any = None) -> np.ndarray:
    """Patch indices a grid layer shows (sorted), from its ``metadata`` and ``features``."""
    grid = metadata[GRID_METADATA_KEY]
    if grid.get("kind") == "labels":
        return np.asarray(grid.get("kept", ()), dtype=np.int64)
    if features is None or "index" not in features:
        return np.arange(int(grid.get("n_patches", 0)), dtype=np.int64)
    return np.unique(np.asarray(features["index"], dtype=np.int64))


def selected_patches(metadata: dict, features: Any = None, selected_rows=()) -> np.ndarray:
    """Patch indices selected in a grid layer (sorted); ``selected_rows`` is a Shapes
    layer's ``selected_data``."""
    grid = metadata[GRID_METADATA_KEY]
    if grid.get("kind") == "labels":
        return np.asarray(grid.get("selected", ()), dtype=np.int64)
    if features is None or "index" not in features or not len(selected_rows):
        return np.zeros(0, dtype=np.int64)
    rows = np.asarray(sorted(selected_rows), dtype=np.int64)
    return np.unique(np.asarray(features["index"], dtype=np.int64)[rows])


def grid_placement(metadata: dict) -> Placement | None:
    """The placement that laid a grid layer's patches (None: a regular grid), from its
    ``metadata[GRID_METADATA_KEY]`` (``placement`` and, for points, ``points`` in image
    pixels), so an export places exactly the same patches."""
    grid = metadata.get(GRID_METADATA_KEY) or {}
    if grid.get("placement") is None:
        return None
    try:
        return Placement.from_json(grid["placement"], points=grid.get("points"))
    except (PlacementError, TypeError) as err:
        raise PlacementError(f"the grid layer's placement is damaged ({err}); draw it again.")


def grid_metadata(grid: PatchGrid, channel_axis: int | None, **extra: Any) -> dict[str, Any]:
    """The grid description stored on a grid layer: enough to rebuild the grid."""
    return {
        "patch_size": list(grid.patch_size),
        "stride": list(grid.stride),
        "edge": grid.edge,
        "shape": list(grid.shape),
        "channel_axis": channel_axis,
        "n_patches": grid.n_patches,
        "kind": "shapes",
        **extra,
    }


def grid_layer_data(
    grid: PatchGrid,
    features: dict[str, np.ndarray],
    keep: np.ndarray | None = None,
    *,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    color_by: str | None = None,
    channel_axis: int | None = None,
    name: str = "grid",
    metadata: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Rectangles and Shapes-layer keyword arguments for the patches where ``keep`` is True.

    ``scale``/``translate`` are the image layer's, restricted to the spatial axes,
    so the rectangles lie on the image in world coordinates. Features are per
    rectangle (a 3D patch has one rectangle per z-plane, all with its ``index``).
    Edges are :data:`GRID_EDGE_COLOUR`, or coloured by the feature ``color_by`` when it
    varies.
    """
    kept = np.flatnonzero(np.ones(grid.n_patches, bool) if keep is None else keep)
    rectangles, owner = boxes_to_rectangles(grid.boxes[kept], shape=grid.shape)
    owner = kept[owner]
    layer_features = {key: np.asarray(values)[owner] for key, values in features.items()}
    edge_width = max(2.0, min(grid.patch_size[-2:]) / 40)  # data px, visible when zoomed out
    kwargs: dict[str, Any] = {
        "name": name,
        "shape_type": "rectangle",
        "features": layer_features,
        "face_color": "transparent",
        "edge_width": edge_width,
        "metadata": {GRID_METADATA_KEY: grid_metadata(grid, channel_axis, **(metadata or {}))},
    }
    if color_by is not None and len(owner) and _varies(layer_features.get(color_by)):
        kwargs.update(edge_color=color_by, edge_colormap="viridis")
    else:
        kwargs["edge_color"] = GRID_EDGE_COLOUR
    if scale is not None:
        kwargs["scale"] = list(scale)
    if translate is not None:
        kwargs["translate"] = list(translate)
    if len(rectangles) == 0:
        rectangles = np.empty((0, 4, grid.ndim))
        kwargs["ndim"] = grid.ndim
    return rectangles, kwargs


def _varies(values) -> bool:
    if values is None:
        return False
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return len(finite) > 0 and np.ptp(finite) > 0


def grid_labels_layer_data(
    grid: PatchGrid,
    features: dict[str, np.ndarray],
    keep: np.ndarray | None = None,
    *,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    channel_axis: int | None = None,
    name: str = "grid",
    metadata: dict[str, Any] | None = None,
) -> tuple[list, dict[str, Any]]:
    """A large grid as a lazy multiscale Labels layer (see the module's grid layer contract).

    Nothing is painted here: napari computes the blocks it shows, at the level it
    shows, so this takes milliseconds for any number of patches. Patch outlines are
    drawn in :data:`GRID_EDGE_COLOUR` once the layer's ``contour`` is set to 1 (napari
    takes it only after the layer is made).
    """
    keep = np.ones(grid.n_patches, bool) if keep is None else np.asarray(keep, dtype=bool)
    kept = np.flatnonzero(keep).astype(np.int64)
    layer_features = {"index": kept + 1, "patch": kept}
    layer_features.update(
        {key: np.asarray(values)[kept] for key, values in features.items() if key != "index"}
    )
    described = grid_metadata(grid, channel_axis, **(metadata or {}))
    described.update(kind="labels", kept=kept, selected=np.zeros(0, dtype=np.int64))
    kwargs: dict[str, Any] = {
        "name": name,
        "multiscale": True,
        "features": layer_features,
        "colormap": {None: GRID_EDGE_COLOUR, 0: "transparent"},
        "opacity": 1.0,
        "metadata": {GRID_METADATA_KEY: described},
    }
    if scale is not None:
        kwargs["scale"] = list(scale)
    if translate is not None:
        kwargs["translate"] = list(translate)
    return lazy_label_pyramid(grid, patch_labels(grid, keep)), kwargs


def grid_colour_layer_data(
    grid: PatchGrid,
    values: np.ndarray,
    keep: np.ndarray | None = None,
    *,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    name: str = "grid colour",
    label: str = "",
) -> tuple[np.ndarray, dict[str, Any]]:
    """An Image layer with one pixel per patch holding ``values`` (NaN where ``keep`` is
    False), lying on the patches (their stride cells), in :data:`GRID_COLORMAP`."""
    values = np.asarray(values, dtype=np.float64).copy()
    if keep is not None:
        values[~np.asarray(keep, dtype=bool)] = np.nan
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if high <= low:
        high = low + 1.0
    cell_scale, cell_translate = cell_transform(grid, scale, translate)
    kwargs = {
        "name": name,
        "colormap": GRID_COLORMAP,
        "contrast_limits": [low, high],
        "opacity": GRID_COLOUR_OPACITY,
        "interpolation2d": "nearest",
        "scale": cell_scale,
        "translate": cell_translate,
        "metadata": {GRID_METADATA_KEY: {"colour_of": label}},
    }
    return patch_value_image(grid, values), kwargs
