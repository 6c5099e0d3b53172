"""Read a patch folder back: stitch its patches, or predictions named like them, into full arrays.

GUI-free (no napari, no Qt). A patch folder is what
:func:`napari_patchwork.export.export_patches` writes; :mod:`napari_patchwork.folder`
describes it and reads it. Stitching an export's ``images``/``masks`` gives back the source image and
mask exactly, dtype included, wherever a kept patch covers them (pixels outside
every kept patch, e.g. the remainder in ``drop`` mode or filtered patches, get
``fill_value``; :meth:`PatchFolder.coverage` says which). Padding is cropped.

A downsampled export is stitched at its output resolution
(:attr:`PatchFolder.output_spatial_shape`): the result equals
:func:`napari_patchwork.resolution.downsample_mean` (image) or
:func:`~napari_patchwork.resolution.downsample_mode` (mask) of the whole source,
wherever kept patches cover it. :func:`~napari_patchwork.resolution.downsampled_transform`
gives the scale/translate that lay it on the source image.

Predictions: a folder of model outputs with the same file names as the image
patches (any of ``.tif``, ``.tiff``, ``.png``, ``.npy``; ``.ome.tif`` patches
match predictions named ``<name>.tif`` and ``<name>.ome.tif``), each with the patch's
spatial shape in output pixels (padding included in ``pad`` mode), optionally with
one channel axis first or last. Where patches overlap, ``overlap`` decides:

* ``"center"`` (default): each pixel comes from the patch whose centre is nearest
  (Chebyshev distance relative to the patch size), which avoids patch-border
  artefacts of predictions;
* ``"last"``: later patches (higher index) overwrite earlier ones;
* ``"mean"``: the average of all patches covering the pixel (float64 result
  unless ``dtype`` is given).

Exported images and masks agree wherever patches overlap, so every mode rebuilds
them exactly. :func:`stitch` returns a numpy array held in memory, or with ``lazy=True`` the
same as a dask array whose blocks read only the patch files they cover (for
folders larger than memory, and for ``dask.distributed``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork.folder import (  # noqa: F401 (public here)
    IMAGES_DIR,
    MASKS_DIR,
    PATCH_EXTENSIONS,
    PatchFolder,
    PatchFolderError,
    checked_patch,
    inside,
    read_patch_file,
    read_patch_folder,
    read_patches,
    verify_patch_folder,
)
from napari_patchwork.io import LAZY_CHUNK_BYTES

# reading a folder lives in napari_patchwork.folder; the README's names stay importable here
__all__ = [
    "OVERLAP_MODES",
    "PatchFolder",
    "PatchFolderError",
    "read_patch_folder",
    "read_patches",
    "stitch",
    "verify_patch_folder",
]


OVERLAP_MODES: tuple[str, ...] = ("center", "last", "mean")


def _source_files(
    patches: PatchFolder, source: str | os.PathLike, allow_missing: bool
) -> list[Path | None]:
    """The file of each manifest row in ``source`` (images, masks or a predictions folder)."""
    if source in (IMAGES_DIR, MASKS_DIR):
        if source == MASKS_DIR and not patches.has_mask:
            raise PatchFolderError(f"the export in {patches.path} has no mask.")
        files = [
            patches.path / row["image" if source == IMAGES_DIR else "mask"] for row in patches.rows
        ]
    else:
        folder = Path(source)
        if not folder.is_absolute():
            folder = patches.path / folder
        if not folder.is_dir():
            raise PatchFolderError(f"predictions folder {folder} does not exist.")
        by_stem: dict[str, str] = {}
        for name in os.listdir(folder):
            stem, ext = os.path.splitext(name)
            if ext.lower() in PATCH_EXTENSIONS:
                stem = _patch_stem(name)
                if stem in by_stem:
                    raise PatchFolderError(
                        f"{folder} holds both {by_stem[stem]} and {name}; keep one per patch."
                    )
                by_stem[stem] = name
        stems = [_patch_stem(Path(row["image"]).name) for row in patches.rows]
        files = [
            inside(folder, by_stem[s], f"prediction {by_stem[s]}") if s in by_stem else None
            for s in stems
        ]
        missing = [s for s, f in zip(stems, files) if f is None]
        if missing and not allow_missing:
            raise PatchFolderError(
                f"{len(missing)} of {len(stems)} patches have no prediction in {folder} "
                f"(e.g. {missing[0]}.tif); predict all patches, or pass allow_missing=True."
            )
        return files
    missing = [f for f in files if not f.is_file()]
    if missing and not allow_missing:
        raise PatchFolderError(
            f"{len(missing)} patch files are missing, e.g. {missing[0]}; export again."
        )
    return [f if f.is_file() else None for f in files]


def _patch_stem(name: str) -> str:
    """A patch file name without its extension (``.ome.tif`` counts as one extension)."""
    stem = os.path.splitext(name)[0]
    return stem[: -len(".ome")] if stem.lower().endswith(".ome") else stem


def _channel_position(
    shape: Sequence[int], patch: Sequence[int], preferred: int | None
) -> int | None:
    """Where the one channel axis of a patch array of ``shape`` is (None: no channel axis)."""
    if tuple(shape) == tuple(patch):
        return None
    if len(shape) == len(patch) + 1:
        candidates = ([] if preferred is None else [preferred]) + [len(shape) - 1, 0]
        for axis in candidates:
            if tuple(s for a, s in enumerate(shape) if a != axis) == tuple(patch):
                return axis
    raise PatchFolderError(
        f"a patch of shape {tuple(shape)} does not fit the patch size {tuple(patch)} "
        "(with at most one channel axis, first or last)."
    )


def _center_distance(start: np.ndarray, stop: np.ndarray, valid_stop: np.ndarray) -> np.ndarray:
    """Chebyshev distance of the valid pixels of box ``start:stop`` to its centre, in half-sizes."""
    distance = np.zeros((), dtype=np.float32)
    ndim = len(start)
    for axis, (a, b, v) in enumerate(zip(start, stop, valid_stop)):
        centre, half = (a + b - 1) / 2.0, max((b - a) / 2.0, 0.5)
        d = (np.abs(np.arange(a, v) - centre) / half).astype(np.float32)
        distance = np.maximum(distance, d.reshape([-1 if k == axis else 1 for k in range(ndim)]))
    return distance


def _has_overlap(patches: PatchFolder) -> bool:
    return any(s < p for s, p in zip(patches.info.stride, patches.info.patch_size))


@dataclass(frozen=True)
class _Stitching:
    """What stitching one source takes, decided once; :func:`_assemble` builds any region.

    Boxes are per manifest row in output pixels over the spatial axes; ``files`` has
    None for a patch without a file (``allow_missing``).
    """

    files: tuple[Path | None, ...]
    starts: np.ndarray
    stops: np.ndarray
    valid_stops: np.ndarray
    spatial_shape: tuple[int, ...]
    channel_axis: int | None
    channels: int | None
    overlap: str
    fill_value: float
    dtype: np.dtype
    file_dtype: np.dtype  # what every patch file must hold (PNG: converted when it fits)
    png: bool

    def with_channels(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """``spatial`` with the channel axis inserted where the stitched array has it."""
        shape = [int(s) for s in spatial]
        if self.channel_axis is not None:
            shape.insert(self.channel_axis, int(self.channels))
        return tuple(shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.with_channels(self.spatial_shape)


def _plan_stitching(
    patches: PatchFolder,
    source: str | os.PathLike,
    overlap: str,
    fill_value: float,
    dtype: Any,
    allow_missing: bool,
) -> _Stitching:
    """Check the options and find the files, output shape and dtype (see :func:`stitch`)."""
    if overlap not in OVERLAP_MODES:
        raise PatchFolderError(
            f"overlap={overlap!r} is not known; choose one of {', '.join(OVERLAP_MODES)}."
        )
    files = _source_files(patches, source, allow_missing)
    channel_axis = channels = None
    if source == IMAGES_DIR:
        source_dtype, channel_axis = np.dtype(patches.info.image.dtype), patches.channel_axis
        channels = None if channel_axis is None else patches.image_shape[channel_axis]
    elif source == MASKS_DIR:
        source_dtype = np.dtype(patches.info.mask.dtype)
    else:  # predictions: their dtype and channels are those of the first file
        first = next((i for i, f in enumerate(files) if f is not None), None)
        if first is None:
            raise PatchFolderError("no prediction file found; nothing to stitch.")
        data = read_patch_file(files[first], " (the first prediction)")
        patch_shape = tuple(int(v) for v in patches.out_stops[first] - patches.out_starts[first])
        channel_axis = _channel_position(data.shape, patch_shape, patches.channel_axis)
        channels = None if channel_axis is None else data.shape[channel_axis]
        source_dtype = data.dtype
    if not _has_overlap(patches) and overlap == "center":
        overlap = "last"  # no pixel is in two patches: the same result, faster
    return _Stitching(
        file_dtype=np.dtype(source_dtype),
        png=source in (IMAGES_DIR, MASKS_DIR) and patches.info.file_format == "png",
        files=tuple(files),
        starts=patches.out_starts,
        stops=patches.out_stops,
        valid_stops=patches.out_valid_stops,
        spatial_shape=tuple(patches.output_spatial_shape),
        channel_axis=channel_axis,
        channels=channels,
        overlap=overlap,
        fill_value=fill_value,
        dtype=_output_dtype(dtype, overlap, source_dtype),
    )


def _read_valid_part(plan: _Stitching, row: int) -> np.ndarray:
    """The valid (unpadded) part of patch ``row``'s file, channels last."""
    path = plan.files[row]
    start, stop, valid = plan.starts[row], plan.stops[row], plan.valid_stops[row]
    expected = plan.with_channels(stop - start)
    where = f" (manifest row {row + 1})"
    data = checked_patch(
        read_patch_file(path, where), expected, plan.file_dtype, plan.png, path.name + where
    )
    if plan.channel_axis is not None:  # channels last: spatial indexing is then the same
        data = np.moveaxis(data, plan.channel_axis, -1)
    return data[tuple(slice(0, int(v - a)) for a, v in zip(start, valid))]


def _assemble(
    plan: _Stitching, region_start: Sequence[int], region_stop: Sequence[int]
) -> np.ndarray:
    """The stitched array over the spatial box ``region_start:region_stop`` (output px).

    Reads only the patches that hold valid pixels in the box. A pixel gets the same
    value whatever the box, so stitching block by block equals stitching at once.
    """
    region_start = np.asarray(region_start, dtype=np.int64)
    region_stop = np.asarray(region_stop, dtype=np.int64)
    region_shape = tuple(int(v) for v in region_stop - region_start)
    channel_shape = () if plan.channel_axis is None else (int(plan.channels),)
    if plan.overlap == "mean":
        sums = np.zeros(region_shape + channel_shape, dtype=np.float64)
        counts = np.zeros(region_shape, dtype=np.int64)
    else:
        out = np.full(region_shape + channel_shape, plan.fill_value, dtype=plan.dtype)
    if plan.overlap == "center":
        best = np.full(region_shape, np.inf, dtype=np.float32)
    lows = np.maximum(plan.starts, region_start)
    highs = np.minimum(plan.valid_stops, region_stop)
    for row in np.flatnonzero(np.all(lows < highs, axis=1)).tolist():
        if plan.files[row] is None:
            continue
        data = _read_valid_part(plan, row)
        start = plan.starts[row]
        take = tuple(
            slice(int(lo - a), int(hi - a)) for lo, hi, a in zip(lows[row], highs[row], start)
        )
        where = tuple(
            slice(int(lo - r), int(hi - r))
            for lo, hi, r in zip(lows[row], highs[row], region_start)
        )
        data = data[take]
        if plan.overlap == "mean":
            sums[where] += data
            counts[where] += 1
        elif plan.overlap == "last":
            out[where] = data
        else:  # center: keep each pixel from the patch whose centre is nearest
            distance = _center_distance(start, plan.stops[row], plan.valid_stops[row])[take]
            nearer = distance < best[where]
            best[where] = np.where(nearer, distance, best[where])
            out[where][nearer] = data[nearer]
    if plan.overlap == "mean":
        covered = counts > 0
        denominator = np.maximum(counts, 1)
        if channel_shape:
            denominator, covered = denominator[..., None], covered[..., None]
        out = np.where(covered, sums / denominator, plan.fill_value).astype(plan.dtype, copy=False)
    if plan.channel_axis is not None:
        out = np.moveaxis(out, -1, plan.channel_axis)
    return out


def stitch(
    folder: str | os.PathLike | PatchFolder,
    source: str | os.PathLike = IMAGES_DIR,
    *,
    overlap: str = "center",
    fill_value: float = 0,
    dtype: Any = None,
    allow_missing: bool = False,
    lazy: bool = False,
    chunk_bytes: int | None = None,
) -> Any:
    """Put the patches of a patch folder back together.

    Parameters
    ----------
    folder : a patch folder (path or :class:`PatchFolder`).
    source : ``"images"``, ``"masks"`` or a folder of predictions named like the
        image patches (relative to the patch folder or absolute).
    overlap : ``"center"``, ``"last"`` or ``"mean"`` (see the module notes).
    fill_value : for pixels that no patch covers.
    dtype : output dtype; default the source dtype from ``dataset.json`` for images
        and masks, the first prediction's dtype for predictions (float64 for mean).
    allow_missing : skip patches whose file is missing instead of raising.
    lazy : return a dask array whose blocks read only the patch files they cover
        (the same values once computed). Blocks are whole multiples of the stride
        (so without overlap each file is read by one block), the channel axis whole,
        about ``chunk_bytes`` each (default :data:`napari_patchwork.io.LAZY_CHUNK_BYTES`,
        4 MiB); they hold file paths only, so ``dask.distributed`` workers that see
        the folder can compute them.

    Returns
    -------
    numpy (or dask) array at output resolution (:attr:`PatchFolder.output_image_shape`;
    the source shape unless the export was downsampled): the image's shape for
    ``images``, its spatial shape for ``masks`` and for predictions (plus the
    predictions' channel axis, at the same position as in the prediction files).
    """
    patches = folder if isinstance(folder, PatchFolder) else read_patch_folder(folder)
    plan = _plan_stitching(patches, source, overlap, fill_value, dtype, allow_missing)
    if not lazy:
        _check_fits_in_memory(plan)
        return _assemble(plan, (0,) * len(plan.spatial_shape), plan.spatial_shape)
    import dask.array as da

    from napari_patchwork.io import grow_chunks

    unit = plan.with_channels(patches.info.stride)
    if plan.channel_axis is not None:
        unit = tuple(plan.channels if a == plan.channel_axis else u for a, u in enumerate(unit))
    chunks = grow_chunks(plan.shape, unit, plan.dtype.itemsize, chunk_bytes or LAZY_CHUNK_BYTES)
    return da.map_blocks(
        _stitched_block,
        plan,
        chunks=da.core.normalize_chunks(chunks, plan.shape),
        dtype=plan.dtype,
        meta=np.empty((0,) * len(plan.shape), dtype=plan.dtype),
    )


def memory_limit() -> int:
    """Bytes an eager stitch may allocate: half the machine's memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _check_fits_in_memory(plan: _Stitching) -> None:
    """Refuse an eager stitch larger than :func:`memory_limit` (e.g. a folder claiming a
    huge image), before anything is allocated."""
    n = int(np.prod(plan.shape, dtype=object))
    need = n * plan.dtype.itemsize + (n * 16 if plan.overlap == "mean" else 0)
    if need > memory_limit():
        raise PatchFolderError(
            f"stitching this folder needs {need / 2**30:,.1f} GiB in memory (output "
            f"{plan.shape} {plan.dtype}); pass lazy=True for a dask array read block by "
            "block, or use `napari-patchwork stitch`, which writes the result block by block."
        )


def _stitched_block(plan: _Stitching, block_info: dict | None = None) -> np.ndarray:
    """One block of :func:`stitch` with ``lazy=True``."""
    location = [
        loc
        for axis, loc in enumerate(block_info[None]["array-location"])
        if axis != plan.channel_axis
    ]
    return _assemble(plan, [a for a, _ in location], [b for _, b in location])


def _output_dtype(dtype: Any, overlap: str, source_dtype: np.dtype) -> np.dtype:
    """The stitched dtype: ``dtype`` if given, float64 for ``overlap="mean"``, else the source's."""
    if dtype is not None:
        return np.dtype(dtype)
    return np.dtype(np.float64) if overlap == "mean" else np.dtype(source_dtype)
