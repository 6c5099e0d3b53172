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
one channel axis first or last (also when the image has none), float or integer.
Where patches overlap, ``merge`` decides (:mod:`napari_patchwork.merge` has the rules):

* ``"center"`` (default): each pixel comes from the patch whose centre is nearest
  (Chebyshev distance relative to the patch size), which avoids patch-border
  artefacts of predictions and never mixes labels;
* ``"last"``: later patches (higher index) overwrite earlier ones;
* ``"mean"``, ``"gaussian"``, ``"hann"``: sum(w * p) / sum(w) with a constant, Gaussian
  (sigma = 0.125 x patch size) or Hann window (never zero at a patch edge) per patch
  (float64 result unless ``dtype`` is given);
* ``"max"``: the largest value; ``"vote"``: the label most patches give (integer
  predictions; ties to the nearest centre).

``argmax=True`` reduces a channel axis of class scores to the index of the largest.

Exported images and masks agree wherever patches overlap, so every mode rebuilds
them exactly. :func:`stitch` returns a numpy array held in memory, or with ``lazy=True`` the
same as a dask array whose blocks read only the patch files they cover (for
folders larger than memory, and for ``dask.distributed``).
"""

from __future__ import annotations

import os
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
from napari_patchwork.folder.names import patch_file_name
from napari_patchwork.folder.zarr_arrays import ArrayPatch
from napari_patchwork.io import LAZY_CHUNK_BYTES
from napari_patchwork.merge import (
    MERGE_MODES,
    MergeError,
    MergeOptions,
    PredictionLayout,
    as_merge_options,
    check_options,
    merge_chunks,
    merge_lazy,
    merge_region,
    merged_layout,
)

# reading a folder lives in napari_patchwork.folder; the README's names stay importable here
__all__ = [
    "MERGE_MODES",
    "PatchFolder",
    "PatchFolderError",
    "read_patch_folder",
    "read_patches",
    "stitch",
    "verify_patch_folder",
]


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
        stems = _prediction_stems(patches)
        files = [
            inside(folder, by_stem[s], f"prediction {by_stem[s]}") if s in by_stem else None
            for s in stems
        ]
        missing = [s for s, f in zip(stems, files) if f is None]
        if missing and not allow_missing:
            raise PatchFolderError(
                f"{len(missing)} of {len(stems)} patches have no prediction in {folder} "
                f"(e.g. {missing[0]}.tif); predict all patches, or pass allow_missing=True (--allow-missing on the command line)."
            )
        return files
    missing = [f for f in files if not f.is_file()]
    if missing and not allow_missing:
        raise PatchFolderError(
            f"{len(missing)} patch files are missing, e.g. {missing[0]}; export again, or pass "
            "allow_missing=True (--allow-missing on the command line) to leave them out."
        )
    return [f if f.is_file() else None for f in files]


def _prediction_stems(patches: PatchFolder) -> list[str]:
    """The name (without extension) of each row's prediction file: its image patch file's,
    or for a zarr folder the name a patch file of its patch would have."""
    if not patches.is_container:
        return [_patch_stem(Path(row["image"]).name) for row in patches.rows]
    width = len(str(max(patches.grid.n_patches - 1, 0)))
    stem = patches.info.stem
    return [
        patch_file_name(stem, int(i), s, width, "") for i, s in zip(patches.indices, patches.starts)
    ]


def _patch_stem(name: str) -> str:
    """A patch file name without its extension (``.ome.tif`` counts as one extension)."""
    stem = os.path.splitext(name)[0]
    return stem[: -len(".ome")] if stem.lower().endswith(".ome") else stem


@dataclass(frozen=True)
class PatchFile:
    """One patch file, the shape and dtype it must hold and where it is listed (a source
    of a lazy stitch block)."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    png: bool  # PNG values are converted to ``dtype`` when they fit
    where: str


def read_patch_as(patch: PatchFile | ArrayPatch) -> np.ndarray:
    """The patch file, checked to hold ``patch.shape`` and ``patch.dtype`` (a length-1 axis
    that PNG drops or a 1D TIFF adds is restored); :class:`PatchFolderError` naming the
    file and its manifest row if it does not. A patch of a zarr array is read from its
    shard (and checked there)."""
    if isinstance(patch, ArrayPatch):
        return patch.read()
    data = read_patch_file(patch.path, patch.where)
    return checked_patch(data, patch.shape, patch.dtype, patch.png, patch.path.name + patch.where)


def _has_overlap(patches: PatchFolder) -> bool:
    """Whether patches may share pixels: an overlapping grid, or placed patches."""
    return patches.placed or any(
        s < p for s, p in zip(patches.info.stride, patches.info.patch_size)
    )


@dataclass(frozen=True)
class _Stitching:
    """What stitching one source takes, decided once: the files of the patches that have
    one, their boxes in output pixels, the layout of the files and the merge options."""

    files: tuple[PatchFile, ...]
    boxes: np.ndarray
    spatial_shape: tuple[int, ...]
    stride: tuple[int, ...]
    layout: PredictionLayout
    options: MergeOptions

    def pairs(self):
        """(box, patch array) of every patch with a file, read one at a time."""
        return ((box, read_patch_as(patch)) for box, patch in zip(self.boxes, self.files))


def _layout(patches: PatchFolder, source: str | os.PathLike, files) -> PredictionLayout:
    """The layout of the files: from ``dataset.json`` for images and masks, from the first
    file for predictions (its channel axis where the image has one, else last, else first)."""
    if source == IMAGES_DIR:
        axis = patches.channel_axis
        channels = None if axis is None else patches.image_shape[axis]
        return PredictionLayout(axis, channels, np.dtype(patches.info.image.dtype))
    if source == MASKS_DIR:
        return PredictionLayout(None, None, np.dtype(patches.info.mask.dtype))
    first = next((i for i, f in enumerate(files) if f is not None), None)
    if first is None:
        raise PatchFolderError("no prediction file found; nothing to stitch.")
    data = read_patch_file(files[first], " (the first prediction)")
    patch_shape = tuple(int(v) for v in patches.out_stops[first] - patches.out_starts[first])
    try:
        if patches.channel_axis is not None and data.ndim == len(patch_shape) + 1:
            try:
                return PredictionLayout.of(data, patch_shape, patches.channel_axis)
            except MergeError:
                pass
        return PredictionLayout.of(data, patch_shape)
    except MergeError as err:
        raise PatchFolderError(f"{files[first].name}: {err}") from None


def _plan_stitching(
    patches: PatchFolder, source: str | os.PathLike, options: MergeOptions, allow_missing: bool
) -> _Stitching:
    """Check the options and find the files, their layout and the boxes (see :func:`stitch`)."""
    if patches.is_container and source in (IMAGES_DIR, MASKS_DIR):
        return _plan_array_stitching(patches, source, options)
    files = _source_files(patches, source, allow_missing)
    layout = _layout(patches, source, files)
    try:
        check_options(options, layout)
    except MergeError as err:
        raise PatchFolderError(str(err)) from None
    if not _has_overlap(patches) and options.mode == "center":
        options = options.replace(mode="last")  # no pixel is in two patches: the same, faster
    rows = [r for r, f in enumerate(files) if f is not None]
    boxes = np.stack([patches.out_starts, patches.out_stops], axis=1)[rows]
    png = source in (IMAGES_DIR, MASKS_DIR) and patches.info.file_format == "png"
    return _Stitching(
        files=tuple(
            PatchFile(
                files[r],
                layout.shape(boxes[k, 1] - boxes[k, 0]),
                layout.dtype,
                png,
                f" (manifest row {r + 1})",
            )  # fmt: skip
            for k, r in enumerate(rows)
        ),
        boxes=boxes.reshape(len(rows), 2, len(patches.output_spatial_shape)),
        spatial_shape=tuple(patches.output_spatial_shape),
        stride=tuple(int(s) for s in patches.info.stride),
        layout=layout,
        options=options,
    )


def _plan_array_stitching(patches: PatchFolder, source: str, options: MergeOptions) -> _Stitching:
    """:func:`_plan_stitching` of the image or mask array of a zarr folder."""
    if source == MASKS_DIR and not patches.has_mask:
        raise PatchFolderError(f"the export in {patches.path} has no mask.")
    layout = _layout(patches, source, [])
    try:
        check_options(options, layout)
    except MergeError as err:
        raise PatchFolderError(str(err)) from None
    if not _has_overlap(patches) and options.mode == "center":
        options = options.replace(mode="last")
    image, mask = patches.arrays()
    array = image if source == IMAGES_DIR else mask
    folder = str(patches.path)
    n = len(patches.rows)
    boxes = np.stack([patches.out_starts, patches.out_stops], axis=1)
    return _Stitching(
        files=tuple(ArrayPatch(folder, array, row) for row in range(n)),
        boxes=boxes.reshape(n, 2, len(patches.output_spatial_shape)),
        spatial_shape=tuple(patches.output_spatial_shape),
        stride=tuple(int(s) for s in patches.info.stride),
        layout=layout,
        options=options,
    )


def stitch(
    folder: str | os.PathLike | PatchFolder,
    source: str | os.PathLike = IMAGES_DIR,
    *,
    merge: str | MergeOptions = "center",
    argmax: bool | None = None,
    fill_value: float | None = None,
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
    merge : where patches overlap: a mode of :data:`~napari_patchwork.merge.MERGE_MODES`
        (``center``, ``last``, ``mean``, ``gaussian``, ``hann``, ``max``, ``vote``) or
        :class:`~napari_patchwork.merge.MergeOptions` (e.g. ``sigma_scale``).
    argmax : reduce the predictions' channel axis to the index of the largest channel.
    fill_value : for pixels that no patch covers (default 0).
    dtype : output dtype; default the source dtype (from ``dataset.json`` for images and
        masks, the first prediction's for predictions), float64 for the weighted modes,
        uint8 with ``argmax``.
    allow_missing : skip patches whose file is missing instead of raising.
    lazy : return a dask array whose blocks read only the patch files they cover
        (the same values once computed; weights made per block). Blocks are whole
        multiples of the stride (so without overlap each file is read by one block), the
        channel axis whole, about ``chunk_bytes`` each (default
        :data:`napari_patchwork.io.LAZY_CHUNK_BYTES`, 4 MiB); they hold file paths only, so
        ``dask.distributed`` workers that see the folder can compute them.

    Returns
    -------
    numpy (or dask) array at output resolution (:attr:`PatchFolder.output_image_shape`;
    the source shape unless the export was downsampled): the image's shape for
    ``images``, its spatial shape for ``masks`` and for predictions (plus the
    predictions' channel axis, at the same position as in the prediction files, unless
    ``argmax``).
    """
    patches = folder if isinstance(folder, PatchFolder) else read_patch_folder(folder)
    changes = {"argmax": argmax, "fill_value": fill_value, "dtype": dtype}
    try:
        options = as_merge_options(merge, **{k: v for k, v in changes.items() if v is not None})
    except MergeError as err:
        raise PatchFolderError(str(err)) from None
    plan = _plan_stitching(patches, source, options, allow_missing)
    if not lazy:
        _check_fits_in_memory(plan)
        start = (0,) * len(plan.spatial_shape)
        return merge_region(start, plan.spatial_shape, plan.pairs(), plan.options, plan.layout)
    out = merged_layout(plan.options, plan.layout)
    chunks = merge_chunks(plan.spatial_shape, plan.stride, out, chunk_bytes or LAZY_CHUNK_BYTES)
    return merge_lazy(plan.spatial_shape, plan.boxes, plan.files, read_patch_as, plan.options,
                      plan.layout, chunks)  # fmt: skip


def memory_limit() -> int:
    """Bytes an eager stitch may allocate: half the machine's memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _check_fits_in_memory(plan: _Stitching) -> None:
    """Refuse an eager stitch larger than :func:`memory_limit` (e.g. a folder claiming a
    huge image), before anything is allocated."""
    out = merged_layout(plan.options, plan.layout)
    shape = out.shape(plan.spatial_shape)
    n = int(np.prod(shape, dtype=object))
    need = n * out.dtype.itemsize + (n * 16 if plan.options.window else 0)
    if need > memory_limit():
        raise PatchFolderError(
            f"stitching this folder needs {need / 2**30:,.1f} GiB in memory (output "
            f"{shape} {out.dtype}); pass lazy=True for a dask array read block by "
            "block, or use `napari-patchwork stitch`, which writes the result block by block."
        )
