"""Where an export's patches lie: the grid it lays on the image at output resolution (or
the patches a placement puts there, with their values), and which of its patches cover
boxes chosen elsewhere (e.g. selected in a grid layer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_patchwork._common import ints
from napari_patchwork.export.errors import ExportError
from napari_patchwork.grid import PatchGrid, make_grid, normalize_axis, spatial_shape
from napari_patchwork.placement import PlacedPatches, Placement, PlacementError, place
from napari_patchwork.resolution import downsampled_shape


def export_grid(
    image_shape: Sequence[int],
    factors: Sequence[int],
    *,
    patch_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    edge: str = "drop",
    channel_axis: int | None = None,
) -> PatchGrid:
    """The grid an export lays on the image at output resolution.

    ``image_shape`` is the source image's shape (channel axis included), ``factors``
    the downsampling factor per spatial axis (``()`` or ones: full resolution);
    ``patch_size`` and ``stride`` are in output pixels, as in :func:`export_patches`.
    """
    axis = None if channel_axis is None else normalize_axis(channel_axis, len(image_shape))
    source_shape = spatial_shape(tuple(image_shape), axis)
    output_image_shape = list(
        downsampled_shape(source_shape, tuple(factors) or (1,) * len(source_shape))
    )
    if axis is not None:
        output_image_shape.insert(axis, int(image_shape[axis]))
    return make_grid(output_image_shape, patch_size, stride, edge, channel_axis=axis)


def indices_of_source_boxes(
    boxes: np.ndarray,
    grid: PatchGrid,
    factors: Sequence[int],
    source_shape: Sequence[int],
) -> list[int]:
    """Indices of the patches of ``grid`` (an :func:`export_grid`) that cover exactly
    ``boxes``, in their order.

    ``boxes`` is ``(N, 2, ndim)``: start and stop (exclusive) per spatial axis in
    source pixels, e.g. the boxes of patches selected in a grid laid at full
    resolution; ``factors`` the export's downsampling per spatial axis (``()``: none),
    ``source_shape`` the image's spatial shape in source pixels. Boxes are compared
    clipped to the image, so a padded box matches its padded patch. Raises
    :class:`ExportError`, saying which patch size would match, if a box is not a
    patch of the export.
    """
    source_stop = np.asarray(source_shape, dtype=np.int64)
    scale = np.asarray(tuple(factors) or (1,) * grid.ndim, dtype=np.int64)
    export_boxes = np.minimum(grid.boxes * scale, source_stop)
    lookup: dict[bytes, int] = {}
    for index in range(len(export_boxes) - 1, -1, -1):  # the first of equal boxes wins
        lookup[export_boxes[index].tobytes()] = index
    raw = np.asarray(boxes, dtype=np.int64).reshape(-1, 2, grid.ndim)
    indices = [lookup.get(box.tobytes()) for box in np.minimum(raw, source_stop)]
    missing = [i for i, index in enumerate(indices) if index is None]
    if missing:
        size = (raw[missing, 1] - raw[missing, 0]).max(axis=0)  # edge boxes may be cut short
        suggestion = size // scale if np.all(size % scale == 0) else None
        raise ExportError(
            f"{len(missing)} of the {len(raw)} chosen patches are not patches of this export: "
            f"e.g. the one at {ints(raw[missing[0], 0])} covers {ints(size)} source px, while "
            f"this export's patches cover {ints(np.asarray(grid.patch_size) * scale)} source px "
            f"(patch size {ints(grid.patch_size)} output px, downsample {ints(scale)}). "
            + (
                f"Set the patch size (and stride) to the grid's divided by the downsampling: "
                f"{ints(suggestion)} px."
                if suggestion is not None
                else "Choose a downsampling that divides the grid's patch size, or a new grid."
            )
        )
    return [int(i) for i in indices]


def export_placement(
    placement: Placement,
    source_shape: Sequence[int],
    factors: Sequence[int],
    patch_size: int | Sequence[int],
    edge: str,
    labels: Any = None,
) -> PlacedPatches:
    """The patches ``placement`` puts on an image of spatial ``source_shape`` exported at
    downsampling ``factors`` (boxes in output pixels, like :func:`export_grid`'s)."""
    n = len(source_shape)
    sizes = (patch_size,) * n if np.ndim(patch_size) == 0 else tuple(patch_size)
    if len(sizes) != n:
        raise ExportError(f"patch_size has {len(sizes)} values; give one per spatial axis ({n}).")
    try:
        return place(placement, source_shape, sizes, edge, labels=labels, factors=factors)
    except PlacementError as err:
        raise ExportError(str(err)) from None


def feature_rows(placed: PlacedPatches | None, candidates: np.ndarray) -> list[tuple]:
    """Per candidate patch, its placement values as ``((column, value), ...)`` (plain
    Python, for the manifest); empty tuples for a grid."""
    if placed is None or not placed.features:
        return [()] * len(candidates)
    names = list(placed.features)
    columns = [np.asarray(placed.features[n])[candidates].tolist() for n in names]
    return [tuple(zip(names, values)) for values in zip(*columns)]
