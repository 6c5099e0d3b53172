"""One patch: reduce to the output resolution, filter, relabel, pad and write it."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_patchwork.export.formats import write_patch
from napari_patchwork.folder import PatchInfo, PatchRecord
from napari_patchwork.resolution import downsample_mean, downsample_mode


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels of ``labels`` to 1..n in increasing order of value; 0 stays 0.

    Keeps the dtype (n never exceeds the number of distinct values, so it fits).
    """
    values, inverse = np.unique(labels, return_inverse=True)
    new_ids = np.zeros(len(values), dtype=np.int64)
    nonzero = values != 0
    new_ids[nonzero] = np.arange(1, int(nonzero.sum()) + 1)
    return new_ids[inverse].reshape(labels.shape).astype(labels.dtype, copy=False)


def patch_std(region: np.ndarray, channel_axis: int | None) -> float:
    """Near-blank measure: the largest per-channel standard deviation of ``region``.

    In image intensity units. A uniformly coloured patch scores 0 even if its
    channels differ from each other.
    """
    values = region.astype(np.float64, copy=False) if region.dtype == bool else region
    if channel_axis is None:
        return float(np.std(values, dtype=np.float64))
    per_channel = np.moveaxis(values, channel_axis, 0).reshape(region.shape[channel_axis], -1)
    return float(np.max(np.std(per_channel, axis=1, dtype=np.float64)))


def foreground_fraction_of(mask_region: np.ndarray) -> float:
    """Fraction of non-zero pixels in a mask patch (valid pixels only, no padding)."""
    return np.count_nonzero(mask_region) / max(mask_region.size, 1)


@dataclass(frozen=True)
class PatchSettings:
    """Everything :func:`export_patch` needs besides the arrays (small and picklable)."""

    fmt: str
    compression: str | None
    channel_axis: int | None  # non-negative axis of the image array, or None
    rgb: bool
    pad_mode: str
    pad_value: float
    relabel: bool
    min_foreground: float
    min_std: float | None
    fsync: bool = False
    factors: tuple[int, ...] = ()  # downsampling factor per spatial axis; () = full resolution
    only_foreground: bool = False
    ome_metadata: dict[str, Any] | None = None  # write_patch's, for fmt="ome-tiff"

    @functools.cached_property
    def downsampled(self) -> bool:
        return any(f != 1 for f in self.factors)


def image_at_output_resolution(
    region: np.ndarray, settings: PatchSettings, factors: Sequence[int] | None = None
) -> np.ndarray:
    """An image region (valid part, source pixels) reduced to output pixels (area average);
    ``factors`` instead of the export's for a region read from a pyramid level."""
    factors = settings.factors if factors is None else tuple(factors)
    if all(f == 1 for f in factors):
        return region
    return downsample_mean(region, factors, settings.channel_axis)


def mask_at_output_resolution(
    region: np.ndarray | None, settings: PatchSettings
) -> np.ndarray | None:
    """A mask region (valid part, source pixels) reduced to output pixels (mode, exact ids)."""
    if region is None or not settings.downsampled:
        return region
    return downsample_mode(region, settings.factors)


def screen_patch(
    mask_patch: np.ndarray | None, info: PatchInfo, settings: PatchSettings
) -> PatchRecord | None:
    """The rejection record if the mask patch (output pixels, valid part) fails the
    foreground filters (``min_foreground``, ``only_foreground``), else None.

    Lets the caller skip reading the image patch of a patch that will be dropped.
    """
    if mask_patch is None or (settings.min_foreground <= 0 and not settings.only_foreground):
        return None
    fraction = foreground_fraction_of(mask_patch)
    if fraction < settings.min_foreground or (settings.only_foreground and fraction == 0):
        return PatchRecord(info.index, False, "foreground", fraction)
    return None


def export_patch(
    image_region: np.ndarray,
    mask_region: np.ndarray | None,
    info: PatchInfo,
    settings: PatchSettings,
    out_dir: str | os.PathLike,
    image_factors: Sequence[int] | None = None,
) -> PatchRecord:
    """Reduce, filter, pad, relabel and write one patch; returns what happened.

    ``image_region``/``mask_region`` are the valid (in-image) part of the patch in
    source pixels (:meth:`PatchInfo.region`) as numpy arrays, the image with its
    channel axis; an image region read from a pyramid level is in that level's pixels,
    and ``image_factors`` says what remains to average. Pure apart from writing the two
    files, so a ``dask.distributed`` worker can run it.
    """
    mask_patch = mask_at_output_resolution(mask_region, settings)
    rejected = screen_patch(mask_patch, info, settings)
    if rejected is not None:
        return rejected
    image_patch = image_at_output_resolution(image_region, settings, image_factors)
    return write_output_patch(image_patch, mask_patch, info, settings, out_dir)


def write_output_patch(
    image_patch: np.ndarray,
    mask_patch: np.ndarray | None,
    info: PatchInfo,
    settings: PatchSettings,
    out_dir: str | os.PathLike,
) -> PatchRecord:
    """The rest of :func:`export_patch` for a patch at output resolution that passed
    :func:`screen_patch`: the ``min_std`` filter, relabel, pad (:func:`finish_patch`), write."""
    record, image_patch, mask_patch = finish_patch(image_patch, mask_patch, info, settings)
    if not record.kept:
        return record
    out = os.fspath(out_dir)
    write_patch(
        image_patch,
        mask_patch,
        os.path.join(out, info.image_file),
        None if info.mask_file is None else os.path.join(out, info.mask_file),
        fmt=settings.fmt,
        compression=settings.compression,
        rgb=settings.rgb,
        fsync=settings.fsync,
        ome_metadata=settings.ome_metadata,
    )
    return record


def finish_patch(
    image_patch: np.ndarray, mask_patch: np.ndarray | None, info: PatchInfo, settings: PatchSettings
) -> tuple[PatchRecord, np.ndarray | None, np.ndarray | None]:
    """A patch at output resolution that passed :func:`screen_patch`, made what is written:
    the ``min_std`` filter, relabel, pad. Returns its record and the image and mask patch to
    write (None, None if the ``min_std`` filter drops it)."""
    fraction = None
    if mask_patch is not None:
        # counted in the copy that is written (no other copy is made): faster than in a view
        mask_patch = np.ascontiguousarray(mask_patch)
        fraction = foreground_fraction_of(mask_patch)
    std = None
    if settings.min_std is not None:
        std = patch_std(image_patch, settings.channel_axis)
        if std < settings.min_std:
            return PatchRecord(info.index, False, "blank", fraction, std), None, None
    if mask_patch is not None and settings.relabel:
        mask_patch = relabel_sequential(mask_patch)
    if info.is_padded:
        widths = info.pad_width(image_patch.ndim, settings.channel_axis)
        if settings.pad_mode == "constant":
            image_patch = np.pad(
                image_patch, widths, mode="constant", constant_values=settings.pad_value
            )
        else:
            image_patch = np.pad(image_patch, widths, mode=settings.pad_mode)
        if mask_patch is not None:
            mask_widths = info.pad_width(mask_patch.ndim, None)
            mask_patch = np.pad(mask_patch, mask_widths, mode=settings.pad_mode)  # constant pads 0
    return PatchRecord(info.index, True, "", fraction, std), image_patch, mask_patch
