"""npe2 writer: File > Save Selected Layers... of an Image (+ Labels, + grid) -> patch folder.

Thin adapter over :func:`napari_patchwork.export.export_patches` (no Qt). The
layers arrive as layer data tuples ``(data, meta, layer_type)``:

* exactly one Image layer (RGB layers are cut along y/x only; multiscale layers
  export their full-resolution level);
* optionally one Labels layer, exported as the masks (same y/x size as the image);
* optionally one patch-grid Shapes layer (made by the *Patch grid* widget or opened
  from a patch folder). Its ``metadata["napari_patchwork"]`` gives patch size,
  stride, edge mode and channel axis, and only the patches that still have a
  rectangle in the layer are exported (delete rectangles to leave patches out).

Without a grid layer the writer uses :data:`DEFAULT_PATCH_SIZE` (256 px in y and
x, the whole extent along leading axes of a 3D/4D image) with ``edge="pad"``, so
no pixel is left out and stitching the folder gives back the whole image. Files
are uncompressed TIFF. The writer never overwrites: saving to a non-empty folder
that is not a patch folder, or to one made with other settings, raises an error
(use the *Export patches* widget for every option, overwrite included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_patchwork.export import ExportError, export_patches
from napari_patchwork.grid import spatial_shape

GRID_METADATA_KEY = "napari_patchwork"
DEFAULT_PATCH_SIZE = 256
"""Patch size in y and x (pixels) when no grid layer is saved along."""
DEFAULT_EDGE = "pad"
"""Edge mode when no grid layer is saved along: the whole image is exported."""

FullLayerData = tuple[Any, dict, str]


def _level0(data: Any, meta: dict) -> Any:
    return data[0] if meta.get("multiscale") else data


def _grid_indices(meta: dict, n_patches: int | None) -> list[int] | None:
    """Patch indices that have a rectangle in the grid layer (None: all of them)."""
    features = meta.get("features")
    if features is None or "index" not in features:
        return None
    indices = np.unique(np.asarray(features["index"], dtype=np.int64))
    if n_patches is not None and len(indices) == n_patches:
        return None
    return indices.tolist()


def writer_options(layer_data: Sequence[FullLayerData]) -> dict[str, Any]:
    """Keyword arguments of :func:`export_patches` (without ``out_dir``) for the saved layers.

    Raises :class:`ExportError` when the layer combination cannot be exported.
    """
    by_type: dict[str, list[FullLayerData]] = {}
    for item in layer_data:
        by_type.setdefault(item[2], []).append(item)
    images, labels, shapes = (
        by_type.get("image", []),
        by_type.get("labels", []),
        by_type.get("shapes", []),
    )
    if (
        len(images) != 1
        or len(labels) > 1
        or len(shapes) > 1
        or set(by_type) - {"image", "labels", "shapes"}
    ):
        raise ExportError(
            "a patch folder is saved from one Image layer, optionally with one Labels layer "
            "(the mask) and one patch-grid Shapes layer; select just those layers."
        )
    image_data, image_meta, _ = images[0]
    image = _level0(image_data, image_meta)
    options: dict[str, Any] = {
        "image": image,
        "image_name": image_meta.get("name"),
        "scale": image_meta.get("scale"),
        "translate": image_meta.get("translate"),
    }
    channel_axis = -1 if image_meta.get("rgb") else None
    if shapes:
        shapes_meta = shapes[0][1]
        grid = (shapes_meta.get("metadata") or {}).get(GRID_METADATA_KEY)
        if not grid or "patch_size" not in grid:
            raise ExportError(
                f"the Shapes layer '{shapes_meta.get('name')}' is not a patch grid; make one with "
                "the Patch grid widget, or save without the Shapes layer (default 256 px patches)."
            )
        if not image_meta.get("rgb"):
            channel_axis = grid.get("channel_axis")
        if grid.get("shape") is not None and list(grid["shape"]) != list(
            spatial_shape(image.shape, channel_axis)
        ):
            raise ExportError(
                f"the grid '{shapes_meta.get('name')}' was made for an image of size "
                f"{grid['shape']}, not for '{image_meta.get('name')}' {tuple(image.shape)}; "
                "select the matching grid."
            )
        options.update(
            patch_size=grid["patch_size"],
            stride=grid.get("stride"),
            edge=grid.get("edge", "drop"),
            indices=_grid_indices(shapes_meta, grid.get("n_patches")),
        )
    else:
        spatial = spatial_shape(image.shape, channel_axis)
        patch = [DEFAULT_PATCH_SIZE] * min(2, len(spatial))
        options.update(patch_size=list(spatial[:-2]) + patch, edge=DEFAULT_EDGE)
    options["channel_axis"] = channel_axis
    if labels:
        label_data, label_meta, _ = labels[0]
        options.update(mask=_level0(label_data, label_meta), mask_name=label_meta.get("name"))
    return options


def write_patch_folder(path: str, layer_data: list[FullLayerData]) -> list[str]:
    """npe2 writer: export the layers as a patch folder at ``path``; returns ``[path]``."""
    options = writer_options(layer_data)
    result = export_patches(path, **options)
    return [str(result.out_dir)]
