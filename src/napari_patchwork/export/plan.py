"""Planning an export: the options checked against the arrays, the grid and its patches laid out.

:func:`plan_export` is the one place where options meet the image: it runs once per
export (in the widget, on the GUI thread, so a mistake is reported before anything is
written) and its :class:`ExportPlan` is what :func:`~napari_patchwork.export.run.run_export`
executes, without checking anything again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_patchwork._common import ints, per_axis
from napari_patchwork.export.boxes import export_grid, export_placement, feature_rows
from napari_patchwork.export.errors import ExportError
from napari_patchwork.export.formats import check_png, check_writable, ome_tiff_metadata
from napari_patchwork.export.options import ExportOptions
from napari_patchwork.export.patch import PatchInfo, PatchSettings
from napari_patchwork.export.split import SplitBlocks, split_groups
from napari_patchwork.folder import (
    FILE_FORMATS,
    FORMAT_VERSION,
    IMAGES_DIR,
    MASKS_DIR,
    ArrayInfo,
    DatasetInfo,
    PatchFolderError,
    patch_file_name,
    spatial_axis_names,
)
from napari_patchwork.folder.names import CONTAINER_FORMATS
from napari_patchwork.folder.zarr_arrays import IMAGES_ARRAY, MASKS_ARRAY, shard_patches
from napari_patchwork.grid import PatchGrid, normalize_axis, spatial_shape
from napari_patchwork.placement import PlacedPatches
from napari_patchwork.pyramid import LevelChoice, Pyramid, as_pyramid, choose_levels
from napari_patchwork.resolution import ResolutionError, downsampled_shape, resolve_factors


@dataclass(frozen=True)
class Layout:
    """What the image's shape and the options make of its axes and resolution."""

    ndim: int
    channel_axis: int | None  # non-negative, or None
    channels: int | None
    source_shape: tuple[int, ...]  # spatial, source pixels
    names: tuple[str, ...]  # spatial axis names, e.g. ("y", "x")
    factors: tuple[int, ...]  # downsampling per spatial axis
    scale: list[float] | None  # per spatial axis
    translate: list[float] | None
    units: list[str | None] | None
    rgb: bool  # channel-last RGB(A) uint8/uint16: RGB TIFF pages

    @property
    def output_shape(self) -> tuple[int, ...]:
        return downsampled_shape(self.source_shape, self.factors)

    @property
    def output_pixel_size(self) -> list[float] | None:
        return None if self.scale is None else [s * f for s, f in zip(self.scale, self.factors)]

    @property
    def downsampled(self) -> bool:
        return any(f != 1 for f in self.factors)


@dataclass(frozen=True)
class ExportPlan:
    """A checked export: its options, the grid, the patches to try, how to write each one,
    and the ``dataset.json`` it will write (without counts)."""

    options: ExportOptions
    layout: Layout
    grid: PatchGrid
    patches: tuple[PatchInfo, ...]
    settings: PatchSettings
    info: DatasetInfo
    blocks: SplitBlocks | None = None
    placed: PlacedPatches | None = None
    levels: LevelChoice | None = None

    @property
    def n_patches(self) -> int:
        """How many patches the export tries (filters may skip some of them)."""
        return len(self.patches)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The manifest columns the placement adds (e.g. ``instance_id``, ``area``)."""
        return () if self.placed is None else tuple(self.placed.features)

    @property
    def notes(self) -> tuple[str, ...]:
        """What the placement could not place, and which pyramid levels a downsampled
        export reads (or could not trust), in sentences."""
        placed = () if self.placed is None else self.placed.notes
        pyramid = (
            () if self.levels is None or not self.levels.description else (self.levels.description,)
        )
        return (*placed, *pyramid)


def array_like(array: Any, what: str) -> Any:
    """``array`` if it indexes like an array (numpy, dask, zarr, memmap), else as numpy."""
    if all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__")):
        return array
    if array is None:
        raise ExportError(f"no {what} given.")
    return np.asarray(array)


def plan_export(
    image: Any, mask: Any = None, options: ExportOptions | None = None, *, labels: Any = None
) -> ExportPlan:
    """Check ``options`` against ``image`` and ``mask`` and lay out the patches, without
    touching any file. ``labels`` is the label mask a placement reads (default: ``mask``).
    Raises :class:`ExportError` (or a ``GridError``, also a ValueError). ``image`` may be a
    pyramid (a :class:`~napari_patchwork.pyramid.Pyramid`, or napari multiscale data):
    everything is planned on level 0; a downsampled export reads the levels
    :func:`choose_levels` picks."""
    options = ExportOptions.of(options)
    pyramid = image_pyramid(image)
    image = pyramid.level0
    mask = None if mask is None else array_like(mask, "mask")
    layout, grid, placed = layout_and_placed(image, options, mask if labels is None else labels)
    _check_arrays(image, mask, options, layout, grid)
    settings = _patch_settings(image, mask, options, layout)
    _check_writable(image, mask, settings, layout)
    candidates = _candidates(grid, options.indices)
    patches = _patch_infos(grid, candidates, layout, options, mask, placed)
    patches, blocks = split_groups(patches, options, len(layout.names))
    info = _dataset_info(image, mask, options, layout, grid, settings)
    if options.fmt in CONTAINER_FORMATS:
        info = replace(info, arrays=_arrays(image, mask, grid, layout, len(patches)))
    levels = choose_levels(pyramid, layout.channel_axis, layout.factors)
    return ExportPlan(options, layout, grid, patches, settings, info, blocks, placed, levels)


def image_pyramid(image: Any) -> Pyramid:
    """``image`` as a :class:`Pyramid` (one level unless it is one), each level array-like."""
    pyramid = as_pyramid(image) or Pyramid((image,))
    return Pyramid(tuple(array_like(a, "image") for a in pyramid.levels), pyramid.claimed)


def layout_and_grid(
    image: Any, options: ExportOptions, labels: Any = None
) -> tuple[Layout, PatchGrid]:
    """The image's :class:`Layout` and the grid an export with ``options`` lays on it (at
    output resolution; before any filter or selection): the regular grid, or the boxes
    of ``options.placement`` (which may read ``labels``)."""
    layout, grid, _ = layout_and_placed(image, options, labels)
    return layout, grid


def layout_and_placed(
    image: Any, options: ExportOptions, labels: Any = None
) -> tuple[Layout, PatchGrid, PlacedPatches | None]:
    """:func:`layout_and_grid` and the :class:`PlacedPatches` behind a placed grid (None
    for the regular grid)."""
    layout = image_layout(image, options)
    if options.placement is None:
        grid = export_grid(
            image.shape,
            layout.factors,
            patch_size=options.patch_size,
            stride=options.stride,
            edge=options.edge,
            channel_axis=layout.channel_axis,
        )
        return layout, grid, None
    labels = None if labels is None else array_like(labels, "labels")
    placed = export_placement(
        options.placement, layout.source_shape, layout.factors, options.patch_size,
        options.edge, labels,
    )  # fmt: skip
    return layout, placed.grid(), placed


def image_layout(image: Any, options: ExportOptions) -> Layout:
    """The image's axes and the export's resolution (see :class:`Layout`)."""
    ndim = len(image.shape)
    axis = None if options.channel_axis is None else normalize_axis(options.channel_axis, ndim)
    source_shape = spatial_shape(image.shape, axis)
    try:
        names = spatial_axis_names(len(source_shape))
    except PatchFolderError as err:
        raise ExportError(str(err)) from None
    n = len(names)
    scale = _per_spatial(options.scale, n, ndim, axis, "scale")
    units = options.units
    units = _per_spatial(
        [units] * n if isinstance(units, str) else units, n, ndim, axis, "units", _unit
    )
    try:
        factors = resolve_factors(
            n, downsample=options.downsample, pixel_size=options.pixel_size, scale=scale
        )
    except ResolutionError as err:
        raise ExportError(str(err)) from None
    channels = None if axis is None else int(image.shape[axis])
    dtype = np.dtype(image.dtype)
    rgb = axis == ndim - 1 and n >= 2 and channels in (3, 4) and dtype in (np.uint8, np.uint16)
    return Layout(
        ndim=ndim,
        channel_axis=axis,
        channels=channels,
        source_shape=source_shape,
        names=names,
        factors=tuple(factors),
        scale=scale,
        translate=_per_spatial(options.translate, n, ndim, axis, "translate"),
        units=units,
        rgb=bool(rgb),
    )


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


def _unit(unit: Any) -> str | None:
    return None if unit is None else str(unit)


def _check_arrays(
    image: Any, mask: Any, options: ExportOptions, layout: Layout, grid: PatchGrid
) -> None:
    """What only the arrays can tell: the mask fits, the format holds the image, filters
    that need a mask have one."""
    if np.dtype(image.dtype).kind not in "biuf":
        raise ExportError(
            f"images must hold numbers, this one holds {np.dtype(image.dtype)} values; convert "
            "it to a numeric dtype (e.g. numpy.asarray(image, dtype=float)) first."
        )
    if mask is not None:
        if tuple(mask.shape) != layout.source_shape:
            raise ExportError(
                f"mask shape {tuple(mask.shape)} does not match the image's spatial shape "
                f"{layout.source_shape} (image shape {tuple(image.shape)}, "
                f"channel_axis={options.channel_axis}); use a mask drawn on this image, or "
                "set channel_axis to the image's channel axis."
            )
        if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer)):
            raise ExportError(
                f"masks must hold integer labels, this one is {mask.dtype}; use a Labels layer."
            )
    if options.fmt == "png":
        check_png(
            np.dtype(image.dtype), grid.ndim, layout.channels, layout.channel_axis, layout.ndim
        )
    if options.min_foreground > 0 and mask is None:
        raise ExportError("min_foreground needs a mask; give a mask or set min_foreground=0.")
    if options.only_foreground and mask is None:
        raise ExportError(
            "only_foreground keeps patches with mask foreground, so it needs a mask; give a "
            "mask (or annotations) or set only_foreground=False."
        )


def _check_writable(image: Any, mask: Any, settings: PatchSettings, layout: Layout) -> None:
    """The file format holds the image's (and mask's) dtype: checked on a tiny probe."""
    spatial = [min(2, s) for s in layout.source_shape]
    image_shape = list(spatial)
    if layout.channel_axis is not None:
        image_shape.insert(layout.channel_axis, int(layout.channels))
    arrays = [("image", np.dtype(image.dtype), image_shape)]
    if mask is not None:
        arrays.append(("mask", np.dtype(mask.dtype), spatial))
    for what, dtype, shape in arrays:
        check_writable(
            settings.fmt,
            what,
            dtype,
            shape,
            compression=settings.compression,
            rgb=settings.rgb,
            ome_metadata=settings.ome_metadata,
        )


def _candidates(grid: PatchGrid, indices: tuple[int, ...] | None) -> np.ndarray:
    """The grid patches to try: all, or the chosen ``indices`` (which must exist)."""
    if indices is None:
        return np.arange(grid.n_patches)
    candidates = np.asarray(indices, dtype=np.int64)
    bad = candidates[(candidates < 0) | (candidates >= grid.n_patches)]
    if bad.size:
        raise ExportError(
            f"patch indices {bad[:5].tolist()} do not exist: the grid has "
            f"{grid.n_patches} patches (0..{grid.n_patches - 1}); is it the grid of this image?"
        )
    return candidates


def _patch_infos(
    grid: PatchGrid,
    candidates: np.ndarray,
    layout: Layout,
    options: ExportOptions,
    mask: Any,
    placed: PlacedPatches | None = None,
) -> tuple[PatchInfo, ...]:
    """Where each candidate patch comes from (source pixels) and goes (file names), and
    the placement's values for it (manifest columns)."""
    width = len(str(max(grid.n_patches - 1, 0)))
    ext = FILE_FORMATS[options.fmt]
    container = options.fmt in CONTAINER_FORMATS
    factors, source_stop = np.array(layout.factors), np.array(layout.source_shape)
    # every box at once (numpy), then plain ints per patch: no numpy call per patch
    out_starts, out_stops = grid.boxes[candidates, 0], grid.boxes[candidates, 1]
    out_valid_stops = grid.clipped_boxes()[candidates, 1]
    starts = out_starts * factors
    valid_stops = np.minimum(out_valid_stops * factors, source_stop)
    columns = zip(
        candidates.tolist(),
        starts.tolist(),
        (out_stops * factors).tolist(),
        valid_stops.tolist(),
        out_starts.tolist(),
        out_stops.tolist(),
        out_valid_stops.tolist(),
        feature_rows(placed, candidates),
    )
    patches = []
    for i, start, stop, valid_stop, out_start, out_stop, out_valid_stop, values in columns:
        name = patch_file_name(options.stem, i, start, width, ext)
        patches.append(
            PatchInfo(
                index=i,
                start=tuple(start),
                stop=tuple(stop),
                valid_stop=tuple(valid_stop),
                out_start=tuple(out_start),
                out_stop=tuple(out_stop),
                out_valid_stop=tuple(out_valid_stop),
                image_file=IMAGES_ARRAY if container else f"{IMAGES_DIR}/{name}",
                mask_file=None
                if mask is None
                else (MASKS_ARRAY if container else f"{MASKS_DIR}/{name}"),
                features=values,
            )
        )
    return tuple(patches)


def _patch_settings(image: Any, mask: Any, options: ExportOptions, layout: Layout) -> PatchSettings:
    """How every patch is filtered, padded and written."""
    padded = options.padded
    return PatchSettings(
        fmt=options.fmt,
        compression=options.compression,
        channel_axis=layout.channel_axis,
        rgb=layout.rgb,
        pad_mode=options.pad_mode if padded else "constant",
        pad_value=_check_pad_value(options.pad_value, np.dtype(image.dtype)) if padded else 0,
        relabel=bool(options.relabel) and mask is not None,
        min_foreground=options.min_foreground,
        min_std=options.min_std,
        fsync=options.fsync,
        factors=layout.factors,
        only_foreground=bool(options.only_foreground),
        ome_metadata=(
            ome_tiff_metadata(
                layout.names,
                layout.channel_axis,
                layout.rgb,
                layout.ndim,
                layout.output_pixel_size,
                layout.units,
            )
            if options.fmt == "ome-tiff"
            else None
        ),
    )


def _format_version(options: ExportOptions, layout: Layout) -> int:
    """The oldest folder format that holds this export (see :data:`FORMAT_VERSION`)."""
    if options.placed:
        return FORMAT_VERSION  # 4: placed boxes, checked box by box
    if options.fmt in CONTAINER_FORMATS:
        return 3
    return 2 if layout.downsampled or options.fmt == "ome-tiff" else 1


def _arrays(image: Any, mask: Any, grid: PatchGrid, layout: Layout, n: int) -> dict[str, Any]:
    """``dataset.json``'s ``arrays`` of a zarr export: names and patches per shard."""
    pixels = int(np.prod(grid.patch_size, dtype=np.int64))
    patch_bytes = pixels * np.dtype(image.dtype).itemsize * int(layout.channels or 1)
    if mask is not None:
        patch_bytes += pixels * np.dtype(mask.dtype).itemsize
    return {
        "image": IMAGES_ARRAY,
        "mask": None if mask is None else MASKS_ARRAY,
        "shard_patches": shard_patches(patch_bytes, n),
    }


def _dataset_info(
    image: Any,
    mask: Any,
    options: ExportOptions,
    layout: Layout,
    grid: PatchGrid,
    settings: PatchSettings,
) -> DatasetInfo:
    """The ``dataset.json`` this export writes (counts are added when it is complete)."""
    from napari_patchwork import __version__

    axes = list(layout.names)
    if layout.channel_axis is not None:
        axes.insert(layout.channel_axis, "c")
    padded = options.padded
    return DatasetInfo(
        format_version=_format_version(options, layout),
        plugin_version=__version__,
        image=ArrayInfo(ints(image.shape), np.dtype(image.dtype).str, options.image_name),
        mask=None
        if mask is None
        else ArrayInfo(
            ints(mask.shape), np.dtype(mask.dtype).str, options.mask_name, options.mask_class_ids
        ),
        axes="".join(axes),
        spatial_axes=layout.names,
        channel_axis=layout.channel_axis,
        rgb=layout.rgb,
        patch_size=ints(grid.patch_size),
        stride=ints(grid.stride),
        edge=options.edge,
        pad_mode=settings.pad_mode if padded else None,
        pad_value=settings.pad_value if padded else None,
        file_format=options.fmt,
        compression=options.compression,
        stem=options.stem,
        relabel=settings.relabel,
        min_foreground=settings.min_foreground,
        only_foreground=settings.only_foreground,
        min_std=settings.min_std,
        indices=options.indices,
        split=options.split,
        seed=options.seed,
        split_by=options.split_by,
        block_size=None
        if options.block_size is None
        else per_axis(options.block_size, len(layout.names), "block_size", convert=int),
        scale=None if layout.scale is None else tuple(layout.scale),
        translate=None if layout.translate is None else tuple(layout.translate),
        units=None if layout.units is None else tuple(layout.units),
        downsample=layout.factors,
        output_shape=layout.output_shape,
        pixel_size=None if layout.output_pixel_size is None else tuple(layout.output_pixel_size),
        n_grid_patches=grid.n_patches,
        placement=None if options.placement is None else options.placement.to_json(),
    )


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
