"""Planning an export: options checked against the arrays, the grid and its patches laid out."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_patchwork._common import ints
from napari_patchwork.export.formats import check_png, ome_tiff_metadata
from napari_patchwork.export.options import COMPRESSIONS, PAD_MODES, ExportError
from napari_patchwork.export.patch import PatchInfo, PatchSettings
from napari_patchwork.export.split import normalize_split
from napari_patchwork.folder import (
    FILE_FORMATS,
    FOLDER_FORMAT,
    FORMAT_VERSION,
    IMAGES_DIR,
    MASKS_DIR,
    patch_file_name,
    spatial_axis_names,
)
from napari_patchwork.grid import PatchGrid, make_grid, normalize_axis, spatial_shape
from napari_patchwork.resolution import (
    ResolutionError,
    downsampled_shape,
    resolve_factors,
)


@dataclass(frozen=True)
class ExportPlan:
    """A validated export: the grid, the patches to try, and the dataset description."""

    grid: PatchGrid
    patches: tuple[PatchInfo, ...]
    settings: PatchSettings
    split: dict[str, float] | None
    seed: int
    dataset: dict[str, Any]  # dataset.json content (without counts)


def array_like(array: Any, what: str) -> Any:
    if all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__")):
        return array
    if array is None:
        raise ExportError(f"no {what} given.")
    return np.asarray(array)


def _per_spatial(
    values: Sequence[Any] | None,
    n_spatial: int,
    ndim: int,
    channel_axis: int | None,
    name: str,
    convert: Callable[[Any], Any] = float,
) -> list[Any] | None:
    """One converted value per spatial axis (scale, translate, units), or None.

    ``values`` has one entry per spatial axis or per array axis (the channel axis'
    entry is then dropped).
    """
    if values is None:
        return None
    values = [convert(v) for v in values]
    if len(values) == ndim and channel_axis is not None:
        values = [v for axis, v in enumerate(values) if axis != channel_axis]
    if len(values) != n_spatial:
        raise ExportError(
            f"{name} has {len(values)} values; give one per spatial axis ({n_spatial})."
        )
    return values


def _unit_name(unit: Any) -> str | None:
    return None if unit is None else str(unit)


def plan_export(
    image: Any,
    mask: Any = None,
    *,
    patch_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    edge: str = "drop",
    channel_axis: int | None = None,
    fmt: str = "tiff",
    compression: str | None = None,
    min_foreground: float = 0.0,
    min_std: float | None = None,
    indices: Iterable[int] | None = None,
    split: Mapping[str, float] | Sequence[float] | None = None,
    seed: int = 0,
    pad_mode: str = "constant",
    pad_value: float = 0,
    relabel: bool = False,
    stem: str = "patch",
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    image_name: str | None = None,
    mask_name: str | None = None,
    fsync: bool = False,
    downsample: float | Sequence[float] | None = None,
    pixel_size: float | Sequence[float] | None = None,
    units: str | Sequence[str | None] | None = None,
    only_foreground: bool = False,
    mask_class_ids: Mapping[str, int] | None = None,
) -> ExportPlan:
    """Validate the export options and lay out the patches, without touching any file.

    Parameters are those of :func:`export_patches`. Raises :class:`ExportError`
    (or :class:`napari_patchwork.grid.GridError`, also a ValueError).
    """
    image = array_like(image, "image")
    mask = None if mask is None else array_like(mask, "mask")
    ndim = len(image.shape)
    image_dtype = np.dtype(image.dtype)
    axis = None if channel_axis is None else normalize_axis(channel_axis, ndim)
    source_shape = spatial_shape(image.shape, axis)
    names = spatial_axis_names(len(source_shape))
    spatial_scale = _per_spatial(scale, len(names), ndim, axis, "scale")
    spatial_translate = _per_spatial(translate, len(names), ndim, axis, "translate")
    spatial_units = _per_spatial(
        [units] * len(names) if isinstance(units, str) else units,
        len(names),
        ndim,
        axis,
        "units",
        _unit_name,
    )
    try:
        factors = resolve_factors(
            len(names), downsample=downsample, pixel_size=pixel_size, scale=spatial_scale
        )
    except ResolutionError as err:
        raise ExportError(str(err)) from None
    output_shape = downsampled_shape(source_shape, factors)
    grid = export_grid(
        image.shape, factors, patch_size=patch_size, stride=stride, edge=edge, channel_axis=axis
    )
    if mask is not None:
        if tuple(mask.shape) != source_shape:
            raise ExportError(
                f"mask shape {tuple(mask.shape)} does not match the image's spatial shape "
                f"{source_shape} (image shape {tuple(image.shape)}, channel_axis={channel_axis}); "
                "use a mask drawn on this image, or set channel_axis to the image's channel axis."
            )
        if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer)):
            raise ExportError(
                f"masks must hold integer labels, this one is {mask.dtype}; use a Labels layer."
            )
    if fmt not in FILE_FORMATS:
        raise ExportError(f"fmt={fmt!r} is not known; choose one of {', '.join(FILE_FORMATS)}.")
    if compression not in COMPRESSIONS:
        raise ExportError(f"compression={compression!r} is not supported; use None or 'zlib'.")
    if compression is not None and fmt not in ("tiff", "ome-tiff"):
        raise ExportError(
            "compression applies to TIFF only; use fmt='tiff' or 'ome-tiff', or compression=None."
        )
    channels = None if axis is None else int(image.shape[axis])
    if fmt == "png":
        check_png(image_dtype, grid.ndim, channels, axis, ndim)
    if not 0.0 <= float(min_foreground) <= 1.0:
        raise ExportError(f"min_foreground must be a fraction from 0 to 1, got {min_foreground}.")
    if min_foreground > 0 and mask is None:
        raise ExportError("min_foreground needs a mask; give a mask or set min_foreground=0.")
    if only_foreground and mask is None:
        raise ExportError(
            "only_foreground keeps patches with mask foreground, so it needs a mask; give a "
            "mask (or annotations) or set only_foreground=False."
        )
    if min_std is not None and not (np.isfinite(min_std) and min_std >= 0):
        raise ExportError(
            f"min_std must be a number >= 0 (or None to keep blank patches), got {min_std}."
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", stem or ""):
        raise ExportError(
            f"stem={stem!r}: use letters, digits, '.', '_' or '-' (no spaces or slashes)."
        )
    padded = edge == "pad"
    if padded:
        if pad_mode not in PAD_MODES:
            raise ExportError(
                f"pad_mode={pad_mode!r} is not known; choose one of {', '.join(PAD_MODES)}."
            )
        pad_value = _check_pad_value(pad_value, image_dtype)
    split_fractions = normalize_split(split)

    candidates = np.arange(grid.n_patches)
    if indices is not None:
        candidates = np.unique(np.asarray(list(indices), dtype=np.int64))
        if candidates.size == 0:
            raise ExportError(
                "no patch selected (indices is empty); select patches or pass indices=None."
            )
        bad = candidates[(candidates < 0) | (candidates >= grid.n_patches)]
        if bad.size:
            raise ExportError(
                f"patch indices {bad[:5].tolist()} do not exist: the grid has "
                f"{grid.n_patches} patches (0..{grid.n_patches - 1}); is it the grid of this image?"
            )
    width = len(str(max(grid.n_patches - 1, 0)))
    ext = FILE_FORMATS[fmt]
    out_valid_stops = grid.clipped_boxes()[:, 1]
    factor_array, source_stop = np.array(factors), np.array(source_shape)
    patches = []
    for i in candidates.tolist():
        out_start, out_stop = grid.boxes[i, 0], grid.boxes[i, 1]
        start = out_start * factor_array
        name = patch_file_name(stem, i, start, width, ext)
        patches.append(
            PatchInfo(
                index=i,
                start=ints(start),
                stop=ints(out_stop * factor_array),
                valid_stop=ints(np.minimum(out_valid_stops[i] * factor_array, source_stop)),
                out_start=ints(out_start),
                out_stop=ints(out_stop),
                out_valid_stop=ints(out_valid_stops[i]),
                image_file=f"{IMAGES_DIR}/{name}",
                mask_file=None if mask is None else f"{MASKS_DIR}/{name}",
            )
        )
    # RGB(A) TIFF pages need y, x and a last axis of 3 or 4 uint8/uint16 samples
    rgb = (
        axis == ndim - 1
        and grid.ndim >= 2
        and channels in (3, 4)
        and image_dtype in (np.uint8, np.uint16)
    )
    downsampled = any(f != 1 for f in factors)
    output_pixel_size = (
        None if spatial_scale is None else [s * f for s, f in zip(spatial_scale, factors)]
    )
    ome_metadata = (
        ome_tiff_metadata(names, axis, bool(rgb), ndim, output_pixel_size, spatial_units)
        if fmt == "ome-tiff"
        else None
    )
    settings = PatchSettings(
        fmt=fmt,
        compression=compression,
        channel_axis=axis,
        rgb=bool(rgb),
        pad_mode=pad_mode if padded else "constant",
        pad_value=pad_value if padded else 0,
        relabel=bool(relabel) and mask is not None,
        min_foreground=float(min_foreground),
        min_std=None if min_std is None else float(min_std),
        fsync=fsync,
        factors=tuple(factors),
        only_foreground=bool(only_foreground),
        ome_metadata=ome_metadata,
    )
    axes = list(names)
    if axis is not None:
        axes.insert(axis, "c")
    from napari_patchwork import __version__

    dataset = {
        "format": FOLDER_FORMAT,
        "format_version": FORMAT_VERSION if downsampled or fmt == "ome-tiff" else 1,
        "plugin_version": __version__,
        "complete": False,
        "image": {
            "shape": list(map(int, image.shape)),
            "dtype": image_dtype.str,
            "name": image_name,
        },
        "mask": None
        if mask is None
        else {
            "shape": list(map(int, mask.shape)),
            "dtype": np.dtype(mask.dtype).str,
            "name": mask_name,
            **({} if mask_class_ids is None else {"class_ids": _class_ids(mask_class_ids)}),
        },
        "axes": "".join(axes),
        "spatial_axes": list(names),
        "channel_axis": axis,
        "rgb": bool(rgb),
        "patch_size": list(grid.patch_size),
        "stride": list(grid.stride),
        "edge": edge,
        "pad_mode": settings.pad_mode if padded else None,
        "pad_value": settings.pad_value if padded else None,
        "file_format": fmt,
        "compression": compression,
        "stem": stem,
        "relabel": settings.relabel,
        "min_foreground": settings.min_foreground,
        "only_foreground": settings.only_foreground,
        "min_std": settings.min_std,
        "indices": None if indices is None else candidates.tolist(),
        "split": split_fractions,
        "seed": int(seed),
        "scale": spatial_scale,
        "translate": spatial_translate,
        "units": spatial_units,
        "downsample": list(factors),
        "output_shape": list(output_shape),
        "pixel_size": output_pixel_size,
        "n_grid_patches": grid.n_patches,
    }
    return ExportPlan(grid, tuple(patches), settings, split_fractions, int(seed), dataset)


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


def _class_ids(mapping: Mapping[str, int]) -> dict[str, int]:
    try:
        return {str(name): int(value) for name, value in mapping.items()}
    except (TypeError, ValueError, AttributeError):
        raise ExportError(
            f"mask_class_ids must map class names to label ids, e.g. {{'tumour': 1}}; "
            f"got {mapping!r}."
        ) from None


def _check_pad_value(pad_value: float, dtype: np.dtype) -> float | int | bool:
    """``pad_value`` as a JSON number the image dtype holds exactly, or ExportError."""
    value = np.asarray(pad_value).item()
    if dtype == np.bool_:
        if value not in (0, 1):
            raise ExportError(f"pad_value={pad_value} does not fit a bool image; use 0 or 1.")
        return bool(value)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if (
            not np.isfinite(value)
            or float(value) != int(value)
            or not info.min <= int(value) <= info.max
        ):
            raise ExportError(
                f"pad_value={pad_value} does not fit the image dtype {dtype} "
                f"({info.min}..{info.max}); use a whole number in that range."
            )
        return int(value)
    return float(value)
