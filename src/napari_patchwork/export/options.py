"""Export options: one frozen :class:`ExportOptions`, checked once when it is made.

The API (:func:`~napari_patchwork.export.export_patches`), the command line, the
export widget and the npe2 writer all build one. Everything that can be checked
without the image is checked here (:class:`ExportError` saying what to change);
:func:`~napari_patchwork.export.plan.plan_export` checks the rest against the arrays.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from napari_patchwork._common import fraction
from napari_patchwork.export.errors import ExportError
from napari_patchwork.export.split import SPLIT_BY, normalize_split
from napari_patchwork.folder import FILE_FORMATS
from napari_patchwork.grid import EDGE_MODES
from napari_patchwork.placement import Placement

COMPRESSIONS: tuple[str | None, ...] = (None, "zlib", "zstd")
"""``zlib`` for TIFF and OME-TIFF, ``zstd`` for the zarr container; None for every format."""
PAD_MODES: tuple[str, ...] = ("constant", "reflect", "symmetric", "edge")
"""``numpy.pad`` modes for ``edge="pad"``. Masks are padded with 0 in ``constant``
mode and with the image's mode otherwise (so labels stay aligned with the image)."""
FORMAT_ALIASES: dict[str, str] = {"tif": "tiff", "ome-tif": "ome-tiff"}
"""Other names users give the formats (``.tif`` is what most tools call TIFF)."""
DEFAULT_READ_BATCH_BYTES = 64 * 2**20
DEFAULT_WRITE_THREADS = 2
MAX_PATCH_PIXELS = 2**31
"""Patches larger than this many pixels (2 G) are refused: no patch format holds them well."""


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """Every option of an export (see :func:`~napari_patchwork.export.export_patches`).

    Values are normalised when made: sizes become tuples of ints (or one int), ``fmt``
    aliases their format, ``split`` a dict of fractions, ``indices`` a sorted tuple.
    ``options.replace(**changes)`` gives a new, checked copy.
    """

    patch_size: int | tuple[int, ...] | None = None
    stride: int | tuple[int, ...] | None = None
    edge: str = "drop"
    channel_axis: int | None = None
    fmt: str = "tiff"
    compression: str | None = None
    min_foreground: float = 0.0
    only_foreground: bool = False
    min_std: float | None = None
    indices: tuple[int, ...] | None = None
    split: dict[str, float] | None = None
    seed: int = 0
    split_by: str = "patch"
    block_size: int | tuple[int, ...] | None = None
    image_split: str | None = None
    pad_mode: str = "constant"
    pad_value: float = 0
    relabel: bool = False
    stem: str = "patch"
    downsample: float | tuple[float, ...] | None = None
    pixel_size: float | tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    translate: tuple[float, ...] | None = None
    units: str | tuple[str | None, ...] | None = None
    image_name: str | None = None
    mask_name: str | None = None
    mask_class_ids: dict[str, int] | None = None
    placement: Placement | None = None
    # how to run (they do not change the files)
    overwrite: bool = False
    fsync: bool = False
    read_batch_bytes: int = DEFAULT_READ_BATCH_BYTES
    write_threads: int = DEFAULT_WRITE_THREADS
    as_dask_tasks: bool = False

    def __post_init__(self) -> None:
        normal = {
            "patch_size": _sizes(self.patch_size, "patch_size", required=True),
            "stride": _sizes(self.stride, "stride", required=False),
            "block_size": _sizes(self.block_size, "block_size", required=False, limit=None),
            "fmt": _format(self.fmt),
            "split": normalize_split(self.split),
            "indices": _indices(self.indices),
            "mask_class_ids": _class_ids(self.mask_class_ids),
            "seed": _whole(self.seed, "seed", low=None),
            "write_threads": _whole(self.write_threads, "write_threads", low=1),
            "read_batch_bytes": _whole(self.read_batch_bytes, "read_batch_bytes", low=1),
            "min_foreground": fraction(self.min_foreground, "min_foreground", ExportError),
            "min_std": _min_std(self.min_std),
            "placement": _placement(self.placement),
            **{name: _optional_tuple(getattr(self, name)) for name in ("scale", "translate")},
        }
        for name, value in normal.items():
            object.__setattr__(self, name, value)
        _check_choices(self)
        _check_split_by(self)

    def replace(self, **changes: Any) -> ExportOptions:
        """A copy with ``changes`` (checked like a new one)."""
        _check_names(changes)
        return replace(self, **changes) if changes else self

    @classmethod
    def of(cls, options: ExportOptions | None = None, **changes: Any) -> ExportOptions:
        """``options`` with ``changes``, or new options from ``changes`` alone."""
        if options is not None:
            return options.replace(**changes)
        _check_names(changes)
        return cls(**changes)

    @property
    def padded(self) -> bool:
        return self.edge == "pad"

    @property
    def placed(self) -> bool:
        """True when a placement (not the regular grid) lays the patches."""
        return self.placement is not None


def _check_names(changes: Mapping[str, Any]) -> None:
    unknown = sorted(set(changes) - {f.name for f in fields(ExportOptions)})
    if unknown:
        raise ExportError(f"unknown export options {unknown}; see ExportOptions for the names.")


def _check_choices(o: ExportOptions) -> None:
    if o.edge not in EDGE_MODES:
        raise ExportError(f"edge={o.edge!r} is not known; choose one of {', '.join(EDGE_MODES)}.")
    if o.compression not in COMPRESSIONS:
        raise ExportError(
            f"compression={o.compression!r} is not supported; use None, 'zlib' (TIFF) or "
            "'zstd' (zarr)."
        )
    if o.compression == "zlib" and o.fmt not in ("tiff", "ome-tiff"):
        raise ExportError(
            "compression='zlib' applies to TIFF only; use fmt='tiff' or 'ome-tiff', 'zstd' with "
            "fmt='zarr', or compression=None."
        )
    if o.compression == "zstd" and o.fmt != "zarr":
        raise ExportError(
            "compression='zstd' applies to the zarr container; use fmt='zarr', 'zlib' with "
            "TIFF, or compression=None."
        )
    if o.fmt == "zarr" and o.edge == "partial":
        raise ExportError(
            "the zarr arrays hold patches of one shape, edge='partial' cuts smaller ones at the "
            "border; use edge='pad', 'shift' or 'drop' with fmt='zarr'."
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", o.stem or ""):
        raise ExportError(
            f"stem={o.stem!r}: use letters, digits, '.', '_' or '-' (no spaces or slashes)."
        )
    if o.padded and o.pad_mode not in PAD_MODES:
        raise ExportError(
            f"pad_mode={o.pad_mode!r} is not known; choose one of {', '.join(PAD_MODES)}."
        )


def _check_split_by(o: ExportOptions) -> None:
    """``split_by`` and what it needs: a split, a block size (blocks), the image's split
    (image, set per image by a batch export)."""
    if o.split_by not in SPLIT_BY:
        raise ExportError(
            f"split_by={o.split_by!r} is not known; choose one of {', '.join(SPLIT_BY)}."
        )
    if o.split_by != "patch" and o.split is None:
        raise ExportError(
            f"split_by={o.split_by!r} groups the patches of a split, but no split is given: "
            "give split fractions, e.g. split=(0.8, 0.2), or leave split_by='patch'."
        )
    if (o.split_by == "blocks") != (o.block_size is not None):
        raise ExportError(
            "split_by='blocks' needs block_size (pixels, e.g. block_size=2048)."
            if o.split_by == "blocks"
            else f"block_size is for split_by='blocks' (split_by is {o.split_by!r}); "
            "set split_by='blocks' or leave block_size out."
        )
    if o.split_by == "image":
        if o.image_split is not None and o.image_split not in (o.split or {}):
            raise ExportError(
                f"image_split={o.image_split!r} is not one of the splits {list(o.split or {})}."
            )
    elif o.image_split is not None:
        raise ExportError("image_split is for split_by='image'; leave it out otherwise.")


def _format(fmt: Any) -> str:
    name = FORMAT_ALIASES.get(str(fmt).lower(), str(fmt).lower())
    if name not in FILE_FORMATS:
        raise ExportError(f"fmt={fmt!r} is not known; choose one of {', '.join(FILE_FORMATS)}.")
    return name


def _sizes(
    value: Any, name: str, *, required: bool, limit: int | None = MAX_PATCH_PIXELS
) -> int | tuple[int, ...] | None:
    """One whole number of pixels, or one per spatial axis (the grid checks the count), of
    at most ``limit`` pixels in all."""
    if value is None:
        if required:
            raise ExportError(f"{name} is missing: give a size in pixels, e.g. {name}=256.")
        return None
    values = [value] if np.ndim(value) == 0 else list(value)
    sizes = tuple(_whole(v, name, low=None) for v in values)
    if any(s < 1 for s in sizes):
        raise ExportError(f"{name} must be at least 1 pixel along every axis, got {value}.")
    if limit is not None and int(np.prod(sizes, dtype=object)) > limit:
        raise ExportError(
            f"{name}={value} makes patches of over {MAX_PATCH_PIXELS:,} pixels; no patch file "
            "format holds that well: choose a smaller patch size."
        )
    return sizes[0] if np.ndim(value) == 0 else sizes


def _whole(value: Any, name: str, *, low: int | None, high: int | None = None) -> int:
    """``value`` as an int if it is a whole number in range, else ExportError."""
    number = value
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)):
        raise ExportError(f"{name}={value!r}: give a whole number.")
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"at least {low}" if high is None else f"from {low} to {high}"
        raise ExportError(f"{name}={value!r} is out of range: give a whole number {bounds}.")
    return int(number)


def _min_std(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (np.isfinite(number) and number >= 0):
        raise ExportError(
            f"min_std must be a number >= 0 (or None to keep blank patches), got {value}."
        )
    return number


def _indices(indices: Any) -> tuple[int, ...] | None:
    if indices is None:
        return None
    try:
        chosen = np.unique(np.asarray(list(indices), dtype=np.int64))
    except (TypeError, ValueError, OverflowError):
        raise ExportError(f"indices must be patch numbers, got {indices!r}.") from None
    if chosen.size == 0:
        raise ExportError(
            "no patch selected (indices is empty); select patches or pass indices=None."
        )
    return tuple(int(i) for i in chosen)


def _class_ids(mapping: Mapping[str, int] | None) -> dict[str, int] | None:
    if mapping is None:
        return None
    try:
        return {str(name): int(value) for name, value in mapping.items()}
    except (TypeError, ValueError, AttributeError):
        raise ExportError(
            f"mask_class_ids must map class names to label ids, e.g. {{'tumour': 1}}; "
            f"got {mapping!r}."
        ) from None


def _placement(placement: Any) -> Placement | None:
    """A :class:`Placement`, or None for the regular grid (``Placement(kind="grid")`` too)."""
    if placement is None:
        return None
    if not isinstance(placement, Placement):
        raise ExportError(
            f"placement must be a napari_patchwork.placement.Placement, got {placement!r}; "
            'e.g. Placement(kind="objects").'
        )
    return None if placement.is_grid else placement


def _optional_tuple(values: Sequence[Any] | None) -> tuple[Any, ...] | None:
    return None if values is None else tuple(values)
