"""Export image (+ mask) patches to a patch folder, with a manifest. GUI-free: no napari, no Qt.

The folder's layout, file names, ``manifest.csv`` and ``dataset.json`` are described in
:mod:`napari_patchwork.folder`, which owns the format. This package writes it:

* :mod:`~napari_patchwork.export.options`: the export's options, checked when made;
* :mod:`~napari_patchwork.export.plan`: the options checked against the arrays, the
  patches to try;
* :mod:`~napari_patchwork.export.boxes`: the grid laid on the image at output
  resolution, and which of its patches cover boxes chosen elsewhere;
* :mod:`~napari_patchwork.export.patch`: one patch reduced, filtered, padded and written;
* :mod:`~napari_patchwork.export.formats`: the file formats (TIFF, OME-TIFF, NPY, PNG);
* :mod:`~napari_patchwork.export.split`: train/val/test labels, per patch, per spatial
  block with a buffer (leak-free), or per image;
* :mod:`~napari_patchwork.export.batch`: several images, split by image;
* :mod:`~napari_patchwork.export.run`: the folder prepared, patches written on threads or
  as dask tasks, the journal, resume and the manifest;
* :mod:`~napari_patchwork.export.result`: progress and the result.

``export_patches(out, image, mask, options=None, **overrides)`` is the one call: it
builds :class:`ExportOptions` (checked once), plans once (:func:`plan_export`) and runs
the plan (:func:`run_export`).
"""

from napari_patchwork.export.batch import BatchResult, batch_image_splits, export_batch
from napari_patchwork.export.boxes import export_grid, indices_of_source_boxes
from napari_patchwork.export.errors import ExportError, FolderInUseError
from napari_patchwork.export.formats import OME_LENGTH_UNITS, write_patch
from napari_patchwork.export.options import (
    COMPRESSIONS,
    DEFAULT_READ_BATCH_BYTES,
    DEFAULT_WRITE_THREADS,
    FORMAT_ALIASES,
    PAD_MODES,
    ExportOptions,
)
from napari_patchwork.export.patch import (
    PatchSettings,
    export_patch,
    foreground_fraction_of,
    patch_std,
    relabel_sequential,
)
from napari_patchwork.export.plan import ExportPlan, plan_export
from napari_patchwork.export.result import ExportProgress, ExportResult
from napari_patchwork.export.run import export_patches, iter_export, run_export
from napari_patchwork.export.source import read_regions
from napari_patchwork.export.split import (
    SPLIT_BY,
    SPLIT_NAMES,
    BlockSplit,
    achieved_fractions,
    assign_splits,
    block_split,
    image_splits,
    leaking_patches,
    normalize_split,
)
from napari_patchwork.folder import FILE_FORMATS, PatchInfo

__all__ = [
    "SPLIT_BY",
    "BatchResult",
    "BlockSplit",
    "achieved_fractions",
    "batch_image_splits",
    "block_split",
    "export_batch",
    "image_splits",
    "leaking_patches",
    "COMPRESSIONS",
    "DEFAULT_READ_BATCH_BYTES",
    "DEFAULT_WRITE_THREADS",
    "FILE_FORMATS",
    "FORMAT_ALIASES",
    "OME_LENGTH_UNITS",
    "PAD_MODES",
    "SPLIT_NAMES",
    "ExportError",
    "ExportOptions",
    "FolderInUseError",
    "ExportPlan",
    "ExportProgress",
    "ExportResult",
    "PatchInfo",
    "PatchSettings",
    "assign_splits",
    "export_grid",
    "export_patch",
    "export_patches",
    "foreground_fraction_of",
    "indices_of_source_boxes",
    "iter_export",
    "normalize_split",
    "patch_std",
    "plan_export",
    "read_regions",
    "relabel_sequential",
    "run_export",
    "write_patch",
]
