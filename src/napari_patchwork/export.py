"""Export image (+ mask) patches to a folder, with a manifest. GUI-free: no napari, no Qt.

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
``min_std`` was given).

``dataset.json`` records the source shape and dtype of image and mask, axes,
patch size and stride (output pixels), edge and pad mode, file format, filters,
split, the layer scale/translate and units, ``downsample`` (factor per spatial
axis), ``output_shape`` (spatial shape at output resolution), ``pixel_size``
(output pixel size per spatial axis, ``scale * downsample``; null without a
scale), patch counts and the plugin version; ``"complete": false`` while an
export runs or after it was interrupted. ``format_version`` is the oldest reader
version that can read the folder: 1 at full resolution, 2 when downsampled.

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
Each decided patch is appended to a journal (``.patchwork-journal.jsonl``); a
re-run with the same file settings into the same folder (without ``overwrite``) resumes: it skips the
patches already on disk and ends with a manifest that lists exactly the patch
files in the folder. The journal stays after the export, so re-running a finished
export only rewrites the manifest (e.g. with another ``split`` or ``seed``, which
do not change any patch file). Resuming assumes the source data did not change; after
editing the image or mask, export again with ``overwrite=True``. Files are not
fsync'ed unless ``fsync=True`` (interruptions of the process are safe either
way; after a power loss, export again with ``overwrite=True``).
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from napari_patchwork._common import ints, is_dask, run_steps
from napari_patchwork.grid import PatchGrid, make_grid, normalize_axis, spatial_shape
from napari_patchwork.resolution import (
    ResolutionError,
    downsample_mean,
    downsample_mode,
    downsampled_shape,
    resolve_factors,
)

FOLDER_FORMAT = "napari-patchwork/patch-folder"
FORMAT_VERSION = 2
"""The newest folder format this module writes and :mod:`napari_patchwork.stitch` reads."""
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "manifest.csv"
JOURNAL_FILE = ".patchwork-journal.jsonl"
IMAGES_DIR = "images"
MASKS_DIR = "masks"
FILE_FORMATS: dict[str, str] = {
    "tiff": ".tif",
    "ome-tiff": ".ome.tif",
    "npy": ".npy",
    "png": ".png",
}
"""Patch file formats and their file extension."""
COMPRESSIONS: tuple[str | None, ...] = (None, "zlib")
PAD_MODES: tuple[str, ...] = ("constant", "reflect", "symmetric", "edge")
"""``numpy.pad`` modes for ``edge="pad"``. Masks are padded with 0 in ``constant``
mode and with the image's mode otherwise (so labels stay aligned with the image)."""
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
"""Split names used when ``split`` is given as a sequence of fractions."""
DEFAULT_READ_BATCH_BYTES = 64 * 2**20
DEFAULT_WRITE_THREADS = 2

_TEMP_SUFFIX = ".part"
_AXIS_NAMES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x"), 4: ("t", "z", "y", "x")}
# dataset.json keys that decide the content of the patch files: a re-run resumes
# only if all of them are equal.
_FILE_SETTING_KEYS = (
    "image",
    "mask",
    "channel_axis",
    "patch_size",
    "stride",
    "edge",
    "pad_mode",
    "pad_value",
    "file_format",
    "compression",
    "stem",
    "relabel",
    "min_foreground",
    "only_foreground",
    "min_std",
    "indices",
    "downsample",
    "ome_pixel_size",
)
OME_LENGTH_UNITS: dict[str, str] = {
    "micrometer": "µm",
    "micron": "µm",
    "um": "µm",
    "µm": "µm",
    "nanometer": "nm",
    "nm": "nm",
    "millimeter": "mm",
    "mm": "mm",
    "centimeter": "cm",
    "cm": "cm",
    "meter": "m",
    "m": "m",
    "angstrom": "Å",
    "Å": "Å",
}
"""Length units (pint names as napari gives them, or OME symbols) -> OME ``UnitsLength``."""
_UNKNOWN_UNITS = (None, "", "pixel", "px")


class ExportError(ValueError):
    """The export cannot run as asked; the message says what to change."""


# --------------------------------------------------------------------------- helpers


def spatial_axis_names(ndim: int) -> tuple[str, ...]:
    """Names of ``ndim`` spatial axes in array order: ``("y", "x")``, ``("z", "y", "x")``..."""
    try:
        return _AXIS_NAMES[ndim]
    except KeyError:
        raise ExportError(
            f"patches can be cut along 1 to 4 spatial axes, the image has {ndim}; "
            "give the non-spatial axis as channel_axis or export a sub-volume."
        ) from None


def patch_file_name(stem: str, index: int, start: Sequence[int], width: int, ext: str) -> str:
    """``<stem>_<index>_y<y0>_x<x0><ext>`` with ``index`` zero-padded to ``width`` digits."""
    names = spatial_axis_names(len(start))
    coords = "_".join(f"{name}{int(s)}" for name, s in zip(names, start))
    return f"{stem}_{index:0{width}d}_{coords}{ext}"


def _patch_name_pattern(stem: str, ext: str) -> re.Pattern[str]:
    """Regex matching every file name :func:`patch_file_name` makes for ``stem``/``ext``."""
    return re.compile(rf"^{re.escape(stem)}_\d+(_[tzyx]\d+)+{re.escape(ext)}$")


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


def normalize_split(split: Mapping[str, float] | Sequence[float] | None) -> dict[str, float] | None:
    """Check split fractions; a sequence is named ``train``, ``val``, ``test`` in order."""
    if split is None or len(split) == 0:
        return None
    if isinstance(split, Mapping):
        named = {str(k): float(v) for k, v in split.items()}
    else:
        values = [float(v) for v in split]
        if len(values) > len(SPLIT_NAMES):
            raise ExportError(
                f"split has {len(values)} fractions; give at most 3 (train, val, test) "
                "or a mapping such as {'train': 0.7, 'val': 0.2, 'test': 0.1}."
            )
        named = dict(zip(SPLIT_NAMES, values))
    for name, value in named.items():
        if not name or "," in name or not np.isfinite(value) or value < 0:
            raise ExportError(
                f"split {name!r}: {value} is not a valid fraction (0 to 1, name without commas)."
            )
    total = sum(named.values())
    if abs(total - 1.0) > 1e-6:
        raise ExportError(
            f"split fractions must add up to 1, they add up to {total:g}: e.g. (0.8, 0.1, 0.1)."
        )
    return named


def assign_splits(n: int, split: Mapping[str, float] | None, seed: int = 0) -> list[str]:
    """Deterministic split labels for ``n`` patches (in patch order).

    Counts follow the fractions exactly up to rounding (largest remainder, ties in
    the order of the split names); which patch gets which label is a permutation
    drawn from ``numpy.random.default_rng(seed)``. Without a split all labels are "".
    """
    if not split:
        return [""] * n
    names = list(split)
    exact = np.array([split[name] for name in names], dtype=np.float64) * n
    counts = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    for k in np.argsort(-remainder, kind="stable")[: n - int(counts.sum())]:
        counts[k] += 1
    labels = np.repeat(np.array(names, dtype=object), counts)
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=object)
    out[order] = labels
    return [str(v) for v in out]


def read_regions(array: Any, regions: Sequence[tuple[slice, ...]]) -> list[np.ndarray]:
    """Read several regions of a numpy, dask or other array-like (zarr, memmap) as numpy arrays.

    A dask array is read in one ``dask.compute`` call for all regions, so chunks
    that several regions share are computed once, and no other chunk is.
    """
    if isinstance(array, np.ndarray):
        return [array[r] for r in regions]
    if is_dask(array):
        import dask

        return [np.asarray(a) for a in dask.compute(*(array[r] for r in regions))]
    return [np.asarray(array[r]) for r in regions]


# --------------------------------------------------------------------------- file writing


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], None], fsync: bool = False
) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it into place.

    A file with the final name is therefore always complete. The temporary file is
    removed if ``write`` fails. Its name holds the process and thread id, so writers
    of the same file in other threads or processes never share it.
    """
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{threading.get_ident()}{_TEMP_SUFFIX}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_text_atomic(path: str | os.PathLike, text: str, fsync: bool = False) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), fsync)


def _png_array(array: np.ndarray, what: str) -> np.ndarray:
    """The array as Pillow writes it to PNG, or ExportError (see the module notes)."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if what == "mask" and array.dtype not in (np.uint8, np.uint16):
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ExportError(
                f"a mask patch holds labels from {array.min()} to {array.max()}; PNG masks hold "
                "0..65535: use fmt='tiff' or 'npy', or relabel=True."
            )
        array = array.astype(np.uint16)
    return array


def _encoder(
    fmt: str,
    what: str,
    ndim: int,
    *,
    compression: str | None,
    rgb: bool,
    ome_metadata: Mapping[str, Any] | None,
) -> Callable[[BinaryIO, np.ndarray], None]:
    """``encode(fh, patch)`` that writes one patch file of format ``fmt``.

    ``what`` is ``"image"`` or ``"mask"``, ``ndim`` the patch's number of axes; PNG
    patches must already be what Pillow writes (:func:`_png_array`).
    """
    if fmt in ("tiff", "ome-tiff"):
        photometric = "rgb" if (what == "image" and rgb) else "minisblack"
        if fmt == "ome-tiff":
            metadata = dict(ome_metadata or {})
            if what == "mask" and "axes" in metadata:
                metadata["axes"] = metadata["axes"].replace("C", "").replace("S", "")
        else:
            # plain 2D and RGB pages read back in their shape without tifffile's shape
            # description, which costs more time than writing a 256 px patch
            plain = ndim <= 2 or (photometric == "rgb" and ndim == 3)
            metadata = None if plain else {}

        def encode(fh: BinaryIO, data: np.ndarray) -> None:
            import tifffile

            if fmt == "tiff" and data.ndim < 2:
                data = data.reshape(1, -1)  # TIFF pages are 2D: one row (stitch reshapes it back)
            tifffile.imwrite(
                fh,
                data,
                photometric=photometric,
                compression=compression,
                metadata=metadata,
                ome=fmt == "ome-tiff",
                software=False,
            )

        return encode
    if fmt == "npy":
        return lambda fh, data: np.save(fh, np.ascontiguousarray(data), allow_pickle=False)
    if fmt == "png":

        def encode_png(fh: BinaryIO, data: np.ndarray) -> None:
            import imageio.v3 as iio

            iio.imwrite(fh, data, extension=".png")

        return encode_png
    raise ExportError(f"fmt={fmt!r} is not known; choose one of {', '.join(FILE_FORMATS)}.")


_FIXED_LAYOUT_MAX_BYTES = 8 * 2**20  # bigger patches: the encoder's per-file cost does not matter


@functools.lru_cache(maxsize=16)
def _fixed_layout(
    fmt: str, what: str, shape: tuple[int, ...], dtype: str, rgb: bool
) -> tuple[bytes, bytes] | None:
    """The bytes an uncompressed TIFF or NPY encoder writes before and after the raw
    (C-order) data of any array of this shape and dtype, or None if that is not how it
    writes them.

    Found with the real encoder: an array of random bytes and one with every byte
    inverted must give ``header + array.tobytes() + trailer`` with the same header
    and trailer (the data starts at the first byte where the two files differ). So
    writing ``header``, the patch's own memory and ``trailer`` gives the file the
    encoder would write, without its per-file cost (about 0.1 ms of Python for
    tifffile, as long as writing a 256 px patch takes).
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if (
        fmt not in ("tiff", "npy")
        or np.dtype(dtype).kind not in "uif"
        or not 0 < nbytes <= _FIXED_LAYOUT_MAX_BYTES
    ):
        return None
    encode = _encoder(fmt, what, len(shape), compression=None, rgb=rgb, ome_metadata=None)
    random_bytes = np.frombuffer(np.random.default_rng(0).bytes(nbytes), dtype=np.uint8)
    probes = [b.view(dtype).reshape(shape) for b in (random_bytes, ~random_bytes)]
    files = []
    for probe in probes:
        buffer = io.BytesIO()
        encode(buffer, probe)
        files.append(buffer.getvalue())
    if len(files[0]) != len(files[1]) or len(files[0]) < nbytes:
        return None
    differ = np.frombuffer(files[0], np.uint8) != np.frombuffer(files[1], np.uint8)
    start = int(np.argmax(differ))  # where the data starts, as every data byte differs
    header, trailer = files[0][:start], files[0][start + nbytes :]
    if any(f != header + p.tobytes() + trailer for f, p in zip(files, probes)):
        return None
    return header, trailer


def write_patch(
    image_patch: np.ndarray,
    mask_patch: np.ndarray | None,
    image_path: str | os.PathLike,
    mask_path: str | os.PathLike | None,
    *,
    fmt: str = "tiff",
    compression: str | None = None,
    rgb: bool = False,
    fsync: bool = False,
    ome_metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write one image patch (and its mask patch) atomically in format ``fmt``.

    The arrays are written as given (padding and relabelling happen before, in
    :func:`export_patch`). ``rgb`` marks a channel-last RGB(A) uint8/uint16 image
    patch for TIFF. ``ome_metadata`` (``fmt="ome-tiff"``) is tifffile's OME
    ``metadata`` for the image patch: ``axes`` (e.g. ``"YXS"``, ``"CYX"``) and the
    ``PhysicalSize*`` entries; the mask gets the same without the channel axis.
    Uncompressed TIFF and NPY files are written as the encoder's header and trailer
    for the patch's shape and dtype around the patch's bytes (see
    :func:`_fixed_layout`): the same files, faster.
    Needs nothing but the arrays and paths, so a ``dask.distributed`` worker can run it.
    """
    for array, path, what in ((image_patch, image_path, "image"), (mask_patch, mask_path, "mask")):
        if array is None:
            continue
        layout = None
        if compression is None and array.dtype.isnative:
            layout = _fixed_layout(fmt, what, array.shape, array.dtype.str, rgb)
        if layout is not None:
            raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)

            def write(fh, raw=raw, layout=layout):
                fh.write(layout[0])
                fh.write(raw)
                fh.write(layout[1])

        else:
            if fmt == "png":
                array = _png_array(array, what)  # refuses unwritable data before a file is opened
            encode = _encoder(
                fmt, what, array.ndim, compression=compression, rgb=rgb, ome_metadata=ome_metadata
            )

            def write(fh, data=array, encode=encode):
                encode(fh, data)

        atomic_write(path, write, fsync)


# --------------------------------------------------------------------------- one patch


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

    @property
    def downsampled(self) -> bool:
        return any(f != 1 for f in self.factors)


@dataclass(frozen=True)
class PatchInfo:
    """Where one patch comes from and where it goes.

    ``start``/``stop`` are the patch box per spatial axis in source pixels (``stop``
    may pass the image in ``pad`` mode); ``valid_stop`` is the stop clipped to the
    image. ``out_start``/``out_stop``/``out_valid_stop`` are the same box in output
    pixels (the grid's box; the source box divided by the downsampling factors).
    ``image_file``/``mask_file`` are relative to the patch folder.
    """

    index: int
    start: tuple[int, ...]
    stop: tuple[int, ...]
    valid_stop: tuple[int, ...]
    out_start: tuple[int, ...]
    out_stop: tuple[int, ...]
    out_valid_stop: tuple[int, ...]
    image_file: str
    mask_file: str | None

    def region(self, ndim: int, channel_axis: int | None) -> tuple[slice, ...]:
        """Slices of the valid source region in an array of ``ndim`` axes (channel axis whole)."""
        spatial = iter(slice(a, b) for a, b in zip(self.start, self.valid_stop))
        return tuple(slice(None) if axis == channel_axis else next(spatial) for axis in range(ndim))

    def pad_width(self, ndim: int, channel_axis: int | None) -> list[tuple[int, int]]:
        """``numpy.pad`` widths that grow the valid output region to the full output box."""
        pads = iter((0, b - v) for b, v in zip(self.out_stop, self.out_valid_stop))
        return [(0, 0) if axis == channel_axis else next(pads) for axis in range(ndim)]

    @property
    def is_padded(self) -> bool:
        return self.out_stop != self.out_valid_stop


@dataclass(frozen=True)
class PatchRecord:
    """The outcome for one patch: kept (files written) or why not.

    ``reason`` is ``""`` for kept patches, ``"foreground"`` (below
    ``min_foreground``) or ``"blank"`` (``image_std`` below ``min_std``).
    """

    index: int
    kept: bool
    reason: str = ""
    foreground_fraction: float | None = None
    image_std: float | None = None

    def journal_line(self) -> str:
        """The record as one JSON line of the journal (``PatchRecord(**json.loads(line))``)."""
        return json.dumps(vars(self)) + "\n"  # fields are plain values: no deep copy needed


def image_at_output_resolution(region: np.ndarray, settings: PatchSettings) -> np.ndarray:
    """An image region (valid part, source pixels) reduced to output pixels (area average)."""
    if not settings.downsampled:
        return region
    return downsample_mean(region, settings.factors, settings.channel_axis)


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
) -> PatchRecord:
    """Reduce, filter, pad, relabel and write one patch; returns what happened.

    ``image_region``/``mask_region`` are the valid (in-image) part of the patch in
    source pixels (:meth:`PatchInfo.region`) as numpy arrays, the image with its
    channel axis. Pure apart from writing the two files, so a ``dask.distributed``
    worker can run it.
    """
    mask_patch = mask_at_output_resolution(mask_region, settings)
    rejected = screen_patch(mask_patch, info, settings)
    if rejected is not None:
        return rejected
    image_patch = image_at_output_resolution(image_region, settings)
    return write_output_patch(image_patch, mask_patch, info, settings, out_dir)


def write_output_patch(
    image_patch: np.ndarray,
    mask_patch: np.ndarray | None,
    info: PatchInfo,
    settings: PatchSettings,
    out_dir: str | os.PathLike,
) -> PatchRecord:
    """The rest of :func:`export_patch` for a patch at output resolution that passed
    :func:`screen_patch`: the ``min_std`` filter, relabel, pad, write."""
    fraction = None if mask_patch is None else foreground_fraction_of(mask_patch)
    std = None
    if settings.min_std is not None:
        std = patch_std(image_patch, settings.channel_axis)
        if std < settings.min_std:
            return PatchRecord(info.index, False, "blank", fraction, std)
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
    return PatchRecord(info.index, True, "", fraction, std)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ExportPlan:
    """A validated export: the grid, the patches to try, and the dataset description."""

    grid: PatchGrid
    patches: tuple[PatchInfo, ...]
    settings: PatchSettings
    split: dict[str, float] | None
    seed: int
    dataset: dict[str, Any]  # dataset.json content (without counts)


def _array_like(array: Any, what: str) -> Any:
    if all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__")):
        return array
    if array is None:
        raise ExportError(f"no {what} given.")
    return np.asarray(array)


def _check_png(
    image_dtype: np.dtype, n_spatial: int, channels: int | None, channel_axis: int | None, ndim: int
) -> None:
    hint = "use fmt='tiff' or 'npy' (both keep any dtype exactly)"
    if n_spatial != 2:
        raise ExportError(
            f"PNG holds 2D images, these patches have {n_spatial} spatial axes; {hint}."
        )
    if channel_axis is not None and channel_axis != ndim - 1:
        raise ExportError(f"PNG needs the channel axis last, it is axis {channel_axis}; {hint}.")
    if image_dtype not in (np.uint8, np.uint16, np.bool_):
        raise ExportError(
            f"PNG holds uint8 or uint16 images, this image is {image_dtype}; {hint}, "
            "or convert the image to uint8/uint16 first."
        )
    if channels not in (None, 1, 2, 3, 4):
        raise ExportError(f"PNG holds 1 to 4 channels, this image has {channels}; {hint}.")
    if image_dtype == np.uint16 and channels not in (None, 1):
        raise ExportError(
            f"PNG (as written by Pillow) holds uint16 only as greyscale; this image has "
            f"{channels} uint16 channels; {hint}, or convert it to uint8."
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
    image = _array_like(image, "image")
    mask = None if mask is None else _array_like(mask, "mask")
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
        _check_png(image_dtype, grid.ndim, channels, axis, ndim)
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
        _ome_metadata(names, axis, bool(rgb), ndim, output_pixel_size, spatial_units)
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


def _ome_metadata(
    names: Sequence[str],
    channel_axis: int | None,
    rgb: bool,
    ndim: int,
    pixel_size: Sequence[float] | None,
    units: Sequence[str | None] | None,
) -> dict[str, Any]:
    """tifffile's OME ``metadata`` for the image patches (axes, physical pixel size)."""
    hint = "use fmt='tiff' or 'npy'"
    if len(names) < 2:
        raise ExportError(f"OME-TIFF patches need y and x, these have {len(names)} axis; {hint}.")
    if channel_axis is not None and not rgb and channel_axis > ndim - 3:
        raise ExportError(
            "OME-TIFF stores channels before y and x (or RGB(A) uint8/uint16 last); this "
            f"image has them on axis {channel_axis}; move the channel axis first, or {hint}."
        )
    spatial = iter(n.upper() for n in names)
    axes = "".join(
        ("S" if rgb else "C") if a == channel_axis else next(spatial) for a in range(ndim)
    )
    metadata: dict[str, Any] = {"axes": axes}
    if pixel_size is None:
        return metadata
    for i, name in enumerate(names):
        if name not in "zyx":
            continue  # OME has no physical size for t
        metadata[f"PhysicalSize{name.upper()}"] = float(pixel_size[i])
        unit = None if units is None else units[i]
        if unit in _UNKNOWN_UNITS:
            continue
        if unit not in OME_LENGTH_UNITS:
            raise ExportError(
                f"unit {unit!r} has no OME-TIFF equivalent; use one of "
                f"{', '.join(sorted(set(OME_LENGTH_UNITS)))}, or units=None."
            )
        metadata[f"PhysicalSize{name.upper()}Unit"] = OME_LENGTH_UNITS[unit]
    return metadata


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


# --------------------------------------------------------------------------- the folder


@dataclass
class ExportProgress:
    """Progress of a running export: ``done`` of ``total`` patches decided."""

    done: int
    total: int
    written: int = 0
    resumed: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class ExportResult:
    """What an export left on disk.

    ``n_patches`` patches are in the manifest: ``n_written`` written by this run,
    ``n_resumed`` found complete from an interrupted earlier run. Of the
    ``n_candidates`` patches tried, ``n_rejected_foreground`` were under
    ``min_foreground`` and ``n_rejected_blank`` under ``min_std``.
    """

    out_dir: Path
    manifest_path: Path
    dataset_path: Path
    n_candidates: int
    n_patches: int
    n_written: int
    n_resumed: int
    n_rejected_foreground: int
    n_rejected_blank: int
    split_counts: dict[str, int]
    rows: tuple[dict[str, Any], ...] = field(repr=False)

    @property
    def message(self) -> str:
        """One sentence for users: how many patches, where."""
        text = f"{self.n_patches} patch{'es' if self.n_patches != 1 else ''} in {self.out_dir}"
        details = []
        if self.n_resumed:
            details.append(
                f"{self.n_written} written now, {self.n_resumed} already there from an earlier run"
            )
        skipped = self.n_rejected_foreground + self.n_rejected_blank
        if skipped:
            details.append(
                f"{skipped} of {self.n_candidates} skipped: "
                f"{self.n_rejected_foreground} under min foreground, {self.n_rejected_blank} blank"
            )
        if self.split_counts:
            details.append(", ".join(f"{k} {v}" for k, v in self.split_counts.items()))
        return text + (f" ({'; '.join(details)})" if details else "")


def read_dataset_json(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The ``dataset.json`` of a patch folder written by this plugin, or None if it has none."""
    path = Path(folder) / DATASET_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != FOLDER_FORMAT:
        return None
    return info


def _json_normal(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _file_settings(info: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the patch files' content (layer names left out), JSON-normalised."""
    settings = {key: info.get(key) for key in _FILE_SETTING_KEYS}
    for key in ("image", "mask"):
        if isinstance(settings[key], dict):
            settings[key] = {k: v for k, v in settings[key].items() if k != "name"}
    # exports written before these settings existed had their defaults
    if settings["downsample"] is None:
        settings["downsample"] = [1] * len(info.get("spatial_axes") or ())
    settings["only_foreground"] = bool(settings["only_foreground"])
    # OME-TIFF files carry the pixel size (from scale, downsample and units)
    settings["ome_pixel_size"] = (
        [info.get("pixel_size"), info.get("units")]
        if info.get("file_format") == "ome-tiff"
        else None
    )
    return json.loads(json.dumps(settings))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old there, new now"`` for each file setting that differs."""
    old_settings, new_settings = _file_settings(old), _file_settings(new)
    return [
        f"{key}: {old_settings[key]!r} there, {new_settings[key]!r} now"
        for key in _FILE_SETTING_KEYS
        if old_settings[key] != new_settings[key]
    ]


def patch_files_on_disk(folder: Path, info: dict[str, Any]) -> list[str]:
    """Patch files (``images/<name>``, ``masks/<name>``) of the export described by ``info``,
    and leftover temporary files."""
    pattern = _patch_name_pattern(
        info.get("stem", "patch"), FILE_FORMATS.get(info.get("file_format"), ".tif")
    )
    found = []
    for sub in (IMAGES_DIR, MASKS_DIR):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder / sub):
                if entry.is_file() and (pattern.match(entry.name) or _is_temp(entry.name)):
                    found.append(f"{sub}/{entry.name}")
    return found


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(_TEMP_SUFFIX)


def _prepare_folder(out: Path, plan: ExportPlan, overwrite: bool) -> dict[int, PatchRecord]:
    """Check and set up ``out``; return the records an interrupted run left (to resume)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; choose a folder for the patches.")
    out.mkdir(parents=True, exist_ok=True)
    old = read_dataset_json(out)
    resumed: dict[int, PatchRecord] = {}
    if old is None:
        if any(os.scandir(out)) and not overwrite:
            raise ExportError(
                f"{out} is not empty and holds no patch export of ours; choose an empty or new "
                "folder, or pass overwrite=True to write into it (files of the same name are "
                "replaced)."
            )
        # a journal without its dataset.json belongs to no export here: never resume from it
        with contextlib.suppress(FileNotFoundError):
            (out / JOURNAL_FILE).unlink()
    else:
        differences = _differences(old, plan.dataset)
        if differences and not overwrite:
            raise ExportError(
                f"{out} holds a patch export with other settings ({'; '.join(differences)}); "
                "choose another folder, or pass overwrite=True to replace that export."
            )
        # overwrite: remove that export (also with the same settings: the source may have
        # changed) and leave other files alone; else resume it
        for name in patch_files_on_disk(out, old):
            if overwrite or _is_temp(name):
                (out / name).unlink()
        if overwrite:
            for name in (JOURNAL_FILE, MANIFEST_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
        else:
            resumed = _load_journal(out, plan)
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    if plan.patches and plan.patches[0].mask_file is not None:
        (out / MASKS_DIR).mkdir(exist_ok=True)
    _write_text_atomic(
        out / DATASET_FILE, json.dumps(plan.dataset, indent=2) + "\n", plan.settings.fsync
    )
    return resumed


def _load_journal(out: Path, plan: ExportPlan) -> dict[int, PatchRecord]:
    """Records of patches decided by an earlier run whose files are all on disk."""
    by_index = {p.index: p for p in plan.patches}
    on_disk = set()
    for sub in (IMAGES_DIR, MASKS_DIR):
        with contextlib.suppress(FileNotFoundError):
            on_disk.update(f"{sub}/{name}" for name in os.listdir(out / sub))
    records: dict[int, PatchRecord] = {}
    try:
        with open(out / JOURNAL_FILE, encoding="utf-8") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            record = PatchRecord(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut short by the interruption
        info = by_index.get(record.index)
        if info is None:
            continue
        if record.kept and not (
            info.image_file in on_disk and (info.mask_file is None or info.mask_file in on_disk)
        ):
            continue
        records[record.index] = record
    return records


def _manifest_rows(
    plan: ExportPlan, kept: list[PatchRecord], splits: list[str]
) -> list[dict[str, Any]]:
    by_index = {p.index: p for p in plan.patches}
    names = spatial_axis_names(plan.grid.ndim)
    rows = []
    for record, split_name in zip(kept, splits):
        info = by_index[record.index]
        row: dict[str, Any] = {
            "index": record.index,
            "split": split_name,
            "image": info.image_file,
            "mask": info.mask_file or "",
        }
        for name, a, b in zip(names, info.start, info.stop):
            row[f"{name}0"], row[f"{name}1"] = a, b
        for name, v in zip(names, info.valid_stop):
            row[f"valid_{name}1"] = v
        for name, a, b in zip(names, info.out_start, info.out_stop):
            row[f"out_{name}0"], row[f"out_{name}1"] = a, b
        for name, v in zip(names, info.out_valid_stop):
            row[f"out_valid_{name}1"] = v
        row["foreground_fraction"] = (
            "" if record.foreground_fraction is None else f"{record.foreground_fraction:.6g}"
        )
        row["image_std"] = "" if record.image_std is None else f"{record.image_std:.6g}"
        rows.append(row)
    return rows


def manifest_columns(names: Sequence[str]) -> list[str]:
    """The manifest's column names for spatial axes ``names`` (e.g. ``("y", "x")``)."""
    return (
        ["index", "split", "image", "mask"]
        + box_columns(names)
        + box_columns(names, "out_")
        + ["foreground_fraction", "image_std"]
    )


def box_columns(names: Sequence[str], prefix: str = "") -> list[str]:
    """A box's manifest columns: ``y0, y1, x0, x1, valid_y1, valid_x1`` (with ``prefix``)."""
    return [f"{prefix}{n}{k}" for n in names for k in (0, 1)] + [
        f"{prefix}valid_{n}1" for n in names
    ]


def _finish(
    out: Path, plan: ExportPlan, records: dict[int, PatchRecord], written: int, resumed: int
) -> ExportResult:
    """Write the manifest, drop stale patch files, mark the export complete."""
    ordered = [records[p.index] for p in plan.patches]
    kept = [r for r in ordered if r.kept]
    splits = assign_splits(len(kept), plan.split, plan.seed)
    rows = _manifest_rows(plan, kept, splits)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=manifest_columns(spatial_axis_names(plan.grid.ndim)), lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    _write_text_atomic(out / MANIFEST_FILE, buffer.getvalue(), plan.settings.fsync)
    listed = {row[key] for row in rows for key in ("image", "mask") if row[key]}
    for name in patch_files_on_disk(out, plan.dataset):
        if name not in listed:  # e.g. a patch dropped by a filter after the source changed
            (out / name).unlink()
    split_counts = {name: splits.count(name) for name in (plan.split or {})}
    dataset = {
        **plan.dataset,
        "complete": True,
        "n_patches": len(kept),
        "split_counts": split_counts,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_text_atomic(
        out / DATASET_FILE, json.dumps(dataset, indent=2) + "\n", plan.settings.fsync
    )
    return ExportResult(
        out_dir=out,
        manifest_path=out / MANIFEST_FILE,
        dataset_path=out / DATASET_FILE,
        n_candidates=len(ordered),
        n_patches=len(kept),
        n_written=written,
        n_resumed=resumed,
        n_rejected_foreground=sum(r.reason == "foreground" for r in ordered),
        n_rejected_blank=sum(r.reason == "blank" for r in ordered),
        split_counts=split_counts,
        rows=tuple(rows),
    )


def _batches(
    patches: Sequence[PatchInfo], bytes_per_pixel: int, budget: int
) -> Iterable[list[PatchInfo]]:
    """Consecutive patches whose regions together stay under ``budget`` bytes (>= 1 each)."""
    batch: list[PatchInfo] = []
    size = 0
    for info in patches:
        n = bytes_per_pixel * int(np.prod([b - a for a, b in zip(info.start, info.valid_stop)]))
        if batch and size + n > budget:
            yield batch
            batch, size = [], 0
        batch.append(info)
        size += n
    if batch:
        yield batch


def _export_batches_here(
    image: Any,
    mask: Any,
    batches: Iterable[list[PatchInfo]],
    settings: PatchSettings,
    out: Path,
    write_threads: int = DEFAULT_WRITE_THREADS,
) -> Iterable[list[PatchRecord]]:
    """Export in this process, yielding ``[record]`` after each patch.

    Per batch, the mask regions are read (and reduced to output pixels) first;
    image regions are read (one ``dask.compute`` for dask input) only for patches
    the mask filters keep. With ``write_threads`` > 1 the kept patches are written
    by that many threads (file creation and copying into the page cache release the
    GIL) while this thread prepares and reads the next ones; records still come in
    patch order. Closing the generator waits for the files being written and skips
    the patches not started, so every yielded record's files are complete.
    """
    channel_axis = settings.channel_axis
    pool = ThreadPoolExecutor(write_threads) if write_threads > 1 else None
    pending: deque[Future | PatchRecord] = deque()  # in patch order
    try:
        for batch in batches:
            masks = (
                [None] * len(batch)
                if mask is None
                else [
                    mask_at_output_resolution(region, settings)
                    for region in read_regions(
                        mask, [p.region(len(mask.shape), None) for p in batch]
                    )
                ]
            )
            decided = {p.index: screen_patch(m, p, settings) for p, m in zip(batch, masks)}
            to_read = [p for p in batch if decided[p.index] is None]
            images = iter(
                read_regions(image, [p.region(len(image.shape), channel_axis) for p in to_read])
            )
            for info, mask_patch in zip(batch, masks):
                record = decided[info.index]
                if record is None:
                    image_patch = image_at_output_resolution(next(images), settings)
                    if pool is None:
                        record = write_output_patch(image_patch, mask_patch, info, settings, out)
                    else:
                        record = pool.submit(
                            write_output_patch, image_patch, mask_patch, info, settings, out
                        )
                pending.append(record)
                # a few patches in flight per thread keep the threads busy, and memory small
                while len(pending) > 2 * write_threads or (
                    pending and not isinstance(pending[0], Future)
                ):
                    yield [_record_of(pending.popleft())]
        while pending:
            yield [_record_of(pending.popleft())]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _record_of(item: Future | PatchRecord) -> PatchRecord:
    return item.result() if isinstance(item, Future) else item


def _export_batches_as_dask_tasks(
    image: Any, mask: Any, batches: Iterable[list[PatchInfo]], settings: PatchSettings, out: Path
) -> Iterable[list[PatchRecord]]:
    """For each batch, one ``dask.compute`` of one :func:`export_patch` task per patch.

    Numpy inputs are wrapped as dask arrays first, so a task ships only its region.
    """
    import dask
    import dask.array as da

    def lazy(array: Any) -> Any:
        if is_dask(array):
            return array
        # meta: dask then needs nothing but shape, dtype and indexing (no ndim)
        meta = np.empty((0,) * len(array.shape), dtype=array.dtype)
        return da.from_array(array, chunks="auto", meta=meta)

    image = lazy(image)
    mask = None if mask is None else lazy(mask)
    export_task = dask.delayed(export_patch, pure=False)
    for batch in batches:
        tasks = [
            export_task(
                image[info.region(image.ndim, settings.channel_axis)],
                None if mask is None else mask[info.region(mask.ndim, None)],
                info,
                settings,
                str(out),
            )
            for info in batch
        ]
        yield list(dask.compute(*tasks))


def iter_export(
    out_dir: str | os.PathLike,
    image: Any,
    mask: Any = None,
    *,
    overwrite: bool = False,
    read_batch_bytes: int = DEFAULT_READ_BATCH_BYTES,
    write_threads: int = DEFAULT_WRITE_THREADS,
    as_dask_tasks: bool = False,
    **options: Any,
) -> Generator[ExportProgress, None, ExportResult]:
    """:func:`export_patches` as a generator: yields :class:`ExportProgress` after each patch.

    Its return value (``StopIteration.value``, or ``result = yield from ...``) is the
    :class:`ExportResult`. Stopping early (``close()``, an exception) leaves a
    folder that a re-run with the same settings resumes.

    With ``as_dask_tasks`` every patch (read its region, filter, write its files)
    is one dask task, computed a batch at a time; progress then comes per batch.
    Under a ``dask.distributed`` Client (the default scheduler once created) the
    tasks run on the cluster's workers, which must see ``out_dir``; the journal,
    manifest and ``dataset.json`` are written here.
    """
    if (
        isinstance(write_threads, bool)
        or not isinstance(write_threads, (int, np.integer))
        or write_threads < 1
    ):
        raise ExportError(
            f"write_threads={write_threads!r}: give a whole number of threads >= 1 "
            "(1 writes in the calling thread)."
        )
    plan = plan_export(image, mask, **options)
    image = _array_like(image, "image")
    mask = None if mask is None else _array_like(mask, "mask")
    out = Path(out_dir)
    records = _prepare_folder(out, plan, overwrite)
    resumed = sum(r.kept for r in records.values())
    todo = [p for p in plan.patches if p.index not in records]
    progress = ExportProgress(done=len(records), total=len(plan.patches), resumed=resumed)
    yield replace(progress)
    channel_axis = plan.settings.channel_axis
    bytes_per_pixel = np.dtype(image.dtype).itemsize * (
        1 if channel_axis is None else image.shape[channel_axis]
    )
    bytes_per_pixel += 0 if mask is None else np.dtype(mask.dtype).itemsize
    batches = _batches(todo, bytes_per_pixel, read_batch_bytes)
    if as_dask_tasks:
        decisions = _export_batches_as_dask_tasks(image, mask, batches, plan.settings, out)
    else:
        decisions = _export_batches_here(
            image, mask, batches, plan.settings, out, int(write_threads)
        )
    with open(out / JOURNAL_FILE, "a", encoding="utf-8") as journal, contextlib.closing(decisions):
        for decided in decisions:
            for record in decided:
                journal.write(record.journal_line())
                records[record.index] = record
                progress.written += record.kept
            journal.flush()
            progress.done += len(decided)
            yield replace(progress)
    return _finish(out, plan, records, progress.written, resumed)


def export_patches(
    out_dir: str | os.PathLike,
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
    overwrite: bool = False,
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
    read_batch_bytes: int = DEFAULT_READ_BATCH_BYTES,
    write_threads: int = DEFAULT_WRITE_THREADS,
    as_dask_tasks: bool = False,
    progress: Callable[[ExportProgress], Any] | None = None,
) -> ExportResult:
    """Write image (and mask) patches, ``manifest.csv`` and ``dataset.json`` to ``out_dir``.

    Parameters
    ----------
    out_dir : folder to create or resume (see the module notes on safety).
    image : numpy, dask or other array-like (zarr, memmap), channel axis included.
        Dask and other lazy arrays are read a batch of patch regions at a time
        (about ``read_batch_bytes``), never whole.
    mask : integer labels with the image's spatial shape (source pixels), or None.
    patch_size, stride, edge, channel_axis : as :func:`napari_patchwork.grid.make_grid`
        (output pixels per spatial axis; RGB images use ``channel_axis=-1``).
    fmt : ``"tiff"``, ``"ome-tiff"``, ``"npy"`` or ``"png"``; compression: None or
        ``"zlib"`` (TIFF, OME-TIFF).
    downsample : export at lower resolution: a whole-number factor >= 1, one for y
        and x (leading axes such as z stay at full resolution) or one per spatial
        axis. Images are area-averaged, masks take the mode of each block (see
        :mod:`napari_patchwork.resolution`).
    pixel_size : instead of ``downsample``: the output pixel size in the units of
        ``scale`` (e.g. 0.5 for 0.5 µm/px from a 0.25 µm/px scan); must be a
        whole multiple of the scale (within 0.1%).
    units : the layer's length unit(s), e.g. ``"micrometer"`` (recorded; written
        into OME-TIFF files).
    min_foreground : keep patches whose mask foreground fraction (output pixels) is
        >= this (0..1).
    only_foreground : keep only patches whose mask has any foreground (a non-zero
        pixel at output resolution), e.g. the annotated patches of a mask made from
        annotations.
    mask_class_ids : class name -> label id of the mask (recorded in ``dataset.json``,
        e.g. for a mask rasterised from class-named annotations).
    min_std : drop near-blank patches whose largest per-channel standard deviation
        (intensity units, valid output pixels) is below this; None keeps them.
    indices : only these patch indices of the grid (e.g. the selected grid shapes).
    split : fractions per split, ``{"train": 0.8, "val": 0.2}`` or ``(0.8, 0.1, 0.1)``
        (train/val/test); assigned to the kept patches by :func:`assign_splits` with
        ``seed``. Overlapping patches (stride < patch) can share pixels across splits.
    pad_mode, pad_value : how ``edge="pad"`` fills the part past the image (see
        :data:`PAD_MODES`); the valid region is in the manifest.
    relabel : renumber the mask instances of each patch 1..n (the stitched mask then
        holds per-patch ids, not the source labels).
    overwrite : write into a foreign non-empty folder, or redo an export of ours from
        scratch (whatever its settings; e.g. after the image or mask changed).
    stem : file name prefix.
    scale, translate : the image layer's, per spatial axis (recorded for the reader;
        ``scale`` also gives ``pixel_size`` its meaning).
    image_name, mask_name : layer names (recorded).
    fsync : flush every file to disk before renaming it (slower; power-loss safe).
    write_threads : threads that write patch files while the next patches are read
        and prepared (1: all in the calling thread). Two are faster on a 2-core
        machine, up to 1.5x where the memory is slow to hand out page-cache pages
        (see ``benchmarks/bench_export.py``).
    as_dask_tasks : one dask task per patch (read, filter, write), so that under a
        ``dask.distributed`` Client the workers do the export (see :func:`iter_export`).
    progress : called with an :class:`ExportProgress` after each patch (each batch
        with ``as_dask_tasks``).

    Returns
    -------
    ExportResult
    """
    # the first statement, so it holds exactly the parameters above: they go on to
    # iter_export and plan_export by name, without a second list to keep in step
    arguments = dict(locals())
    on_progress = arguments.pop("progress")
    return run_steps(iter_export(**arguments), on_progress)
