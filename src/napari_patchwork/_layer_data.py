"""Layer helpers for the widgets, the reader and the writer, without importing napari.

* what a layer holds: its full-resolution array (:func:`full_resolution_data`,
  :func:`level0`), whether a Shapes layer is a patch grid (:func:`is_grid_layer`,
  :data:`GRID_METADATA_KEY`), an annotation Shapes layer painted into a mask
  (:func:`annotation_mask`);
* layers to make: :func:`grid_layer_data` returns plain ``(data, kwargs)`` that
  ``napari.layers.Layer.create`` or a reader's layer data tuple accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_patchwork.annotations import RasterizedAnnotations, rasterize_shapes
from napari_patchwork.grid import PatchGrid, boxes_to_rectangles

GRID_METADATA_KEY = "napari_patchwork"
"""Key of the grid description in a grid Shapes layer's ``metadata``."""
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


def is_grid_layer(meta: dict) -> bool:
    """True for a patch-grid Shapes layer (its metadata describes the grid)."""
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


def grid_metadata(grid: PatchGrid, channel_axis: int | None, **extra: Any) -> dict[str, Any]:
    """The grid description stored on a grid layer: enough to rebuild the grid."""
    return {
        "patch_size": list(grid.patch_size),
        "stride": list(grid.stride),
        "edge": grid.edge,
        "shape": list(grid.shape),
        "channel_axis": channel_axis,
        "n_patches": grid.n_patches,
        **extra,
    }


def grid_layer_data(
    grid: PatchGrid,
    features: dict[str, np.ndarray],
    keep: np.ndarray | None = None,
    *,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    color_by: str = "index",
    channel_axis: int | None = None,
    name: str = "grid",
    metadata: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Rectangles and Shapes-layer keyword arguments for the patches where ``keep`` is True.

    ``scale``/``translate`` are the image layer's, restricted to the spatial axes,
    so the rectangles lie on the image in world coordinates. Features are per
    rectangle (a 3D patch has one rectangle per z-plane, all with its ``index``).
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
    if len(owner) and color_by in layer_features and np.ptp(layer_features[color_by]) > 0:
        kwargs.update(edge_color=color_by, edge_colormap="viridis")
    else:
        kwargs["edge_color"] = "yellow"
    if scale is not None:
        kwargs["scale"] = list(scale)
    if translate is not None:
        kwargs["translate"] = list(translate)
    if len(rectangles) == 0:
        rectangles = np.empty((0, 4, grid.ndim))
        kwargs["ndim"] = grid.ndim
    return rectangles, kwargs
