"""The patch-folder format, in one place: what an export writes and the reader and stitching
read. GUI-free: no napari, no Qt.

Modules: :mod:`~napari_patchwork.folder.names` (files, folders, patch file names),
:mod:`~napari_patchwork.folder.dataset` (``dataset.json`` as a typed, versioned
:class:`DatasetInfo`), :mod:`~napari_patchwork.folder.schema` (its checks),
:mod:`~napari_patchwork.folder.manifest` (``manifest.csv``),
:mod:`~napari_patchwork.folder.journal` (the export's journal),
:mod:`~napari_patchwork.folder.files` (atomic writes),
:mod:`~napari_patchwork.folder.patch_files` (reading and checking patch files),
:mod:`~napari_patchwork.folder.read` (:func:`read_patch_folder`, :class:`PatchFolder`).

A *patch folder* looks like this::

    out_dir/
        dataset.json              # what was exported and how (see below)
        manifest.csv              # one row per patch file pair
        images/patch_0007_y0_x1792.tif
        masks/patch_0007_y0_x1792.tif

File names are ``<stem>_<index>_y<y0>_x<x0>.<ext>`` (``z<z0>`` before ``y`` for 3D,
``t<t0>`` before that for 4D): ``index`` is the patch number in
:func:`napari_patchwork.grid.make_grid` (zero-padded to the same width for all
patches), ``y0``/``x0`` the patch's start in source pixels. A mask file has the
same name as its image file.

Resolution
----------
``downsample`` (a whole-number factor) or ``pixel_size`` (in the units of the
layer's ``scale``) exports at a lower resolution; the rules (area-averaged images,
dtype kept, integers rounded half to even; masks by the mode of each block, ties
to the lowest id) are in :mod:`napari_patchwork.resolution`. The grid is laid on
the *output* image (``ceil(source / factor)`` pixels per axis), so ``patch_size``
and ``stride`` are in output pixels; each patch reads only its own source region
(``factor`` x the output box) and reduces it.

``manifest.csv`` columns: ``index``, ``split`` (empty without a split),
``image``, ``mask`` (paths relative to the folder, ``mask`` empty without a
mask), ``y0``, ``y1``, ``x0``, ``x1`` (box start/stop per spatial axis in source
pixels, stop exclusive; in ``pad`` mode the stop may lie past the image),
``valid_y1``, ``valid_x1`` (where the real image data ends; the rest of the patch
is padding), ``out_y0`` ... ``out_valid_x1`` (the same box in output pixels, i.e.
in the patch files' pixels; equal to the source box at full resolution),
``foreground_fraction`` (non-zero mask pixels / valid pixels of the mask file; empty
without a mask) and ``image_std`` (the near-blank measure, empty unless
``min_std`` was given); with ``split_by="blocks"`` also ``block_y``, ``block_x``
(the block of the patch's centre, in blocks of ``block_size`` output pixels).

``dataset.json`` records the source shape and dtype of image and mask, axes,
patch size and stride (output pixels), edge and pad mode, file format, filters,
split (``split_by``, ``block_size``; ``n_buffer``, the patches a blocked split left
out between splits), the layer scale/translate and units, ``downsample`` (factor per spatial
axis), ``output_shape`` (spatial shape at output resolution), ``pixel_size``
(output pixel size per spatial axis, ``scale * downsample``; null without a
scale), patch counts and the plugin version; ``"complete": false`` while an
export runs or after it was interrupted. ``format_version`` is the oldest reader
version that can read the folder: 1 at full resolution, 2 when downsampled, 3 for the
zarr container, 4 when a placement (not the regular grid) laid the patches: ``placement``
then records it (``kind``, ``n``, ``classes``, ``seed``, ...; see
:mod:`napari_patchwork.placement`), ``n_grid_patches`` is the number of placed patches,
and the manifest has a column per placed value (``instance_id``, ``area``, ``class``,
``point``).

Formats
-------
* ``tiff`` (default): any dtype, exact. RGB(A) uint8/uint16 patches are written
  as RGB TIFFs, everything else as greyscale pages (a 1D patch as one row);
  ``compression="zlib"`` is lossless.
* ``ome-tiff``: TIFF with OME-XML metadata (``.ome.tif``) that carries the output
  pixel size (``PhysicalSizeX``/``Y``/``Z`` and their unit, from ``scale``,
  ``downsample`` and ``units``; without ``units``, or with napari's default
  ``"pixel"``, the size is written without a unit, which OME readers take as µm).
  Patches need y and x; channels either RGB(A) last or before y and x.
* ``npy``: any dtype, exact, fastest to read back with numpy.
* ``png``: 2D only, uint8 greyscale/grey+alpha/RGB/RGBA or uint16 greyscale (what
  Pillow writes). Float, signed or wider images raise :class:`ExportError`. Masks
  are stored as uint8 (bool/uint8 masks) or uint16 (other integer masks whose
  patch labels lie in 0..65535; others raise): :func:`napari_patchwork.stitch`
  converts them back to the source dtype using ``dataset.json``.

* ``zarr``: no file per patch: ``images.zarr`` and ``masks.zarr``, one zarr v3 array
  each of shape ``(n_patches, *patch_shape)``, one chunk per patch, sharded (about 64 MB
  of patches per shard file), any dtype, exact; ``compression="zstd"`` optional. Row ``i``
  of the manifest (its ``array_index``) is patch ``i``; ``dataset.json`` has ``arrays``
  (their names and ``shard_patches``) and ``format_version`` 3. See
  :mod:`napari_patchwork.folder.zarr_arrays`.

Masks are never interpolated or colour-mapped: their labels and dtype are kept
(``relabel=True`` renumbers the instances of each patch 1..n instead; a
downsampled mask takes the most frequent label of each block).

Never losing data
-----------------
A folder that is not empty and holds no ``dataset.json`` of ours is refused
unless ``overwrite=True`` (then files of the same name are replaced, other files
are left alone). An export of ours with other file settings is also refused
unless ``overwrite=True`` (file settings include ``downsample``, the filters and,
for OME-TIFF, the pixel size and units written into the files; ``pixel_size``
counts as the ``downsample`` it gives). With ``overwrite=True`` an export of ours
in the folder is always redone from scratch, whatever its settings: its patch
files, journal and manifest are removed first. At the end, patch files named like this export's (same stem and
extension in ``images/``/``masks/``) that the manifest does not list are
removed. Every file is written under a temporary name in its final folder and renamed (``os.replace``), so a file with its final name is complete.
Each decided patch is appended to a journal (``.patchwork-journal.jsonl``) once its
files are complete; the lines are flushed every 0.2 s and when the export stops (a
process killed outright writes the patches of its last fraction of a second again). A
re-run with the same file settings into the same folder (without ``overwrite``) resumes: it skips the
patches already on disk and ends with a manifest that lists exactly the patch
files in the folder. The journal stays after the export, so re-running a finished
export only rewrites the manifest (e.g. with another ``split`` or ``seed``, which
do not change any patch file). Resuming assumes the source data did not change; after
editing the image or mask, export again with ``overwrite=True``. Files are not
fsync'ed unless ``fsync=True`` (interruptions of the process are safe either
way; after a power loss, export again with ``overwrite=True``).
"""

from napari_patchwork.folder.dataset import (
    ArrayInfo,
    DatasetInfo,
    read_dataset_info,
    read_dataset_json,
    write_dataset_info,
)
from napari_patchwork.folder.errors import PatchFolderError
from napari_patchwork.folder.files import (
    atomic_write,
    atomic_write_buffers,
    patch_files_on_disk,
    write_text_atomic,
)
from napari_patchwork.folder.journal import PatchRecord, journal_files, load_journal
from napari_patchwork.folder.manifest import (
    ManifestBoxes,
    PatchInfo,
    block_columns,
    box_columns,
    manifest_boxes,
    manifest_columns,
    manifest_row,
    read_manifest_rows,
    write_manifest,
)
from napari_patchwork.folder.names import (
    DATASET_FILE,
    FILE_FORMATS,
    FOLDER_FORMAT,
    FORMAT_VERSION,
    IMAGES_DIR,
    JOURNAL_FILE,
    MANIFEST_FILE,
    MASKS_DIR,
    is_temp,
    patch_file_name,
    spatial_axis_names,
)
from napari_patchwork.folder.patch_files import (
    PATCH_EXTENSIONS,
    checked_patch,
    inside,
    read_patch_file,
)
from napari_patchwork.folder.read import (
    PatchFolder,
    is_patch_folder,
    read_patch_folder,
    read_patches,
    verify_patch_folder,
)

__all__ = [
    "ArrayInfo",
    "DatasetInfo",
    "read_dataset_info",
    "write_dataset_info",
    "DATASET_FILE",
    "FILE_FORMATS",
    "FOLDER_FORMAT",
    "FORMAT_VERSION",
    "IMAGES_DIR",
    "JOURNAL_FILE",
    "MANIFEST_FILE",
    "MASKS_DIR",
    "PATCH_EXTENSIONS",
    "PatchFolder",
    "PatchFolderError",
    "PatchInfo",
    "PatchRecord",
    "atomic_write",
    "atomic_write_buffers",
    "box_columns",
    "checked_patch",
    "inside",
    "is_patch_folder",
    "is_temp",
    "journal_files",
    "ManifestBoxes",
    "read_manifest_rows",
    "load_journal",
    "manifest_boxes",
    "block_columns",
    "manifest_columns",
    "manifest_row",
    "write_manifest",
    "patch_file_name",
    "patch_files_on_disk",
    "read_dataset_json",
    "read_patch_file",
    "read_patch_folder",
    "read_patches",
    "spatial_axis_names",
    "verify_patch_folder",
    "write_text_atomic",
]
