"""npe2 writer: File > Save Selected Layers... of an Image (+ Labels, + grid) -> patch folder.

Thin adapter over :func:`napari_patchwork.export.export_patches` (no Qt). The
layers arrive as layer data tuples ``(data, meta, layer_type)``:

* exactly one Image layer (RGB layers are cut along y/x only; multiscale layers
  export their full-resolution level);
* optionally the mask: one Labels layer (same y/x size as the image) **or** one
  Shapes layer of annotations (see below);
* optionally one patch-grid Shapes layer (made by the *Patch grid* widget or opened
  from a patch folder). Its ``metadata["napari_patchwork"]`` gives patch size,
  stride, edge mode and channel axis, and only the patches that still have a
  rectangle in the layer are exported (delete rectangles to leave patches out).

A Shapes layer is the grid when its ``metadata["napari_patchwork"]`` has a
``patch_size``; any other Shapes layer is annotations. Its polygons, rectangles
and ellipses are painted into a mask on the image's pixel grid (both layers'
scale/translate respected) with
:func:`napari_patchwork.annotations.rasterize_shapes`: label ids by the feature
column ``class`` (:data:`ANNOTATION_CLASS_COLUMN`) when the layer has it (1, 2, ...
in order of first appearance, recorded as ``class_ids`` in ``dataset.json``),
else every shape is 1; where shapes overlap the later one wins; lines and paths
are ignored. The *Mask from annotations* widget gives full control (edit the
ids, instances, overlap order) and makes a Labels layer to save instead.

Without a grid layer the writer uses :data:`DEFAULT_PATCH_SIZE` (256 px in y and
x, the whole extent along leading axes of a 3D/4D image) with ``edge="pad"``, so
no pixel is left out and stitching the folder gives back the whole image. Files
are uncompressed TIFF; the second writer, *Patch folder, zarr arrays*, writes the zarr
container instead (``fmt="zarr"``: ``images.zarr`` and ``masks.zarr``). The writer never
overwrites: saving to a non-empty folder
that is not a patch folder, or to one made with other settings, raises an error
(use the *Export patches* widget for every option, overwrite included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from napari_patchwork._layer_data import (
    GRID_METADATA_KEY,
    annotation_mask,
    grid_placement,
    is_grid_layer,
    kept_patches,
    level0,
)
from napari_patchwork._reader import remember_reader_for
from napari_patchwork.export import ExportError, ExportOptions, FolderInUseError, export_patches
from napari_patchwork.grid import spatial_shape
from napari_patchwork.pyramid import Pyramid

DEFAULT_PATCH_SIZE = 256
"""Patch size in y and x (pixels) when no grid layer is saved along."""
DEFAULT_EDGE = "pad"
"""Edge mode when no grid layer is saved along: the whole image is exported."""

FullLayerData = tuple[Any, dict, str]


def _grid_indices(meta: dict, n_patches: int | None) -> list[int] | None:
    """Patch indices the grid layer shows (None: all of them)."""
    features = meta.get("features")
    described = meta["metadata"][GRID_METADATA_KEY]
    if described.get("kind", "shapes") == "shapes" and (
        features is None or "index" not in features
    ):
        return None
    indices = kept_patches(meta["metadata"], features)
    if len(indices) == 0:
        raise ExportError(
            "the grid layer has no rectangle left, so no patch would be saved; show the grid "
            "again (Patch grid > Show grid) or save without the grid layer."
        )
    if n_patches is not None and len(indices) == n_patches:
        return None
    return indices.tolist()


SAVE_DIALOG_ADVICE = (
    "in the Save dialog, type the name of a new folder; or, to write into this one, use "
    "Plugins > Patch tools > Export with 'overwrite' ticked."
)
"""What to do when File > Save Selected Layers meets a folder in use (advice for the GUI)."""


@dataclass(frozen=True)
class WriterRequest:
    """What saving the layers exports: the image, the mask (or None), the options."""

    image: Any
    mask: Any
    options: ExportOptions


def writer_request(layer_data: Sequence[FullLayerData]) -> WriterRequest:
    """The export of the saved layers: arrays and checked :class:`ExportOptions`.

    Raises :class:`ExportError` when the layer combination cannot be exported or its
    options are not valid. An annotation Shapes layer is rasterised here (see the
    module notes).
    """
    by_type: dict[str, list[FullLayerData]] = {}
    for item in layer_data:
        by_type.setdefault(item[2], []).append(item)
    images = by_type.get("image", [])
    labels = [item for item in by_type.get("labels", []) if not is_grid_layer(item[1])]
    shapes_and_labels = by_type.get("shapes", []) + by_type.get("labels", [])
    grids = [item for item in shapes_and_labels if is_grid_layer(item[1])]
    annotations = [item for item in by_type.get("shapes", []) if not is_grid_layer(item[1])]
    if (
        len(images) != 1
        or len(labels) + len(annotations) > 1
        or len(grids) > 1
        or set(by_type) - {"image", "labels", "shapes"}
    ):
        names = ", ".join(f"{t} '{m.get('name')}'" for _, m, t in layer_data)
        raise ExportError(
            "a patch folder is saved from one Image layer, optionally with one mask (a Labels "
            "layer or a Shapes layer of annotations) and one patch-grid Shapes layer; "
            f"select just those layers (selected: {names})."
        )
    image_data, image_meta, _ = images[0]
    image = level0(image_data, bool(image_meta.get("multiscale")))
    options: dict[str, Any] = {
        "image": Pyramid(tuple(image_data)) if image_meta.get("multiscale") else image,
        "image_name": image_meta.get("name"),
        "scale": image_meta.get("scale"),
        "translate": image_meta.get("translate"),
    }
    channel_axis = -1 if image_meta.get("rgb") else None
    if grids:
        shapes_meta = grids[0][1]
        grid = shapes_meta["metadata"][GRID_METADATA_KEY]
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
            placement=grid_placement(shapes_meta["metadata"]),  # its mask is the labels
        )
    else:
        spatial = spatial_shape(image.shape, channel_axis)
        patch = [DEFAULT_PATCH_SIZE] * min(2, len(spatial))
        options.update(patch_size=list(spatial[:-2]) + patch, edge=DEFAULT_EDGE)
    options["channel_axis"] = channel_axis
    units = image_meta.get("units")
    if units is not None:
        options["units"] = [str(u) for u in units]
    if labels:
        label_data, label_meta, _ = labels[0]
        options.update(
            mask=level0(label_data, bool(label_meta.get("multiscale"))),
            mask_name=label_meta.get("name"),
        )
    if annotations:
        shapes_data, shapes_meta, _ = annotations[0]
        painted = annotation_mask(
            shapes_data,
            shapes_meta,
            spatial_shape(image.shape, channel_axis),
            image_meta.get("scale"),
            image_meta.get("translate"),
        )
        options.update(mask=painted.labels, mask_name=shapes_meta.get("name"))
        if painted.class_ids:
            options["mask_class_ids"] = painted.class_ids
    image, mask = options.pop("image"), options.pop("mask", None)
    return WriterRequest(image, mask, ExportOptions(**options))


def write_patch_folder(
    path: str, layer_data: list[FullLayerData], fmt: str = "tiff"
) -> list[str]:
    """npe2 writer: export the layers as a patch folder at ``path``; returns ``[path]``."""
    request = writer_request(layer_data)
    try:
        result = export_patches(path, request.image, request.mask, request.options, fmt=fmt)
    except FolderInUseError as err:  # "pass overwrite=True" cannot be done in the Save dialog
        raise ExportError(f"{err.folder} {err.problem}; {SAVE_DIALOG_ADVICE}") from None
    remember_reader_for(result.out_dir)  # File > Open Folder on it never asks for a reader
    return [str(result.out_dir)]


def write_patch_arrays(path: str, layer_data: list[FullLayerData]) -> list[str]:
    """npe2 writer: :func:`write_patch_folder` into the zarr container (``fmt="zarr"``)."""
    return write_patch_folder(path, layer_data, fmt="zarr")
