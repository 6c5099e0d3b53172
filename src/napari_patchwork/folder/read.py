"""Reading a patch folder: its ``dataset.json``, manifest and patch files."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork.folder.dataset import DatasetInfo, read_dataset_info, read_dataset_json
from napari_patchwork.folder.errors import PatchFolderError
from napari_patchwork.folder.files import patch_files_on_disk
from napari_patchwork.folder.manifest import manifest_boxes, manifest_columns
from napari_patchwork.folder.names import (
    DATASET_FILE,
    IMAGES_DIR,
    MANIFEST_FILE,
)
from napari_patchwork.grid import PatchGrid, make_grid
from napari_patchwork.io import LAZY_THRESHOLD_BYTES
from napari_patchwork.resolution import downsampled_shape

PATCH_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")
"""File extensions read as patches (and predictions)."""


def is_patch_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder with a ``dataset.json`` of this plugin (complete or not)."""
    try:
        return Path(path).is_dir() and read_dataset_json(path) is not None
    except OSError:
        return False


def read_patch_file(path: str | os.PathLike) -> np.ndarray:
    """One patch file (TIFF, PNG or NPY, by extension) as a numpy array."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    if ext == ".png":
        import imageio.v3 as iio

        return iio.imread(path, extension=".png")
    if ext == ".npy":
        return np.load(path, allow_pickle=False)
    raise PatchFolderError(
        f"{path.name}: cannot read {ext!r} files; use one of {', '.join(PATCH_EXTENSIONS)}."
    )


@dataclass(frozen=True)
class PatchFolder:
    """A complete patch folder: its ``dataset.json`` (``info``) and manifest.

    ``indices`` ``(N,)``, ``starts``/``stops``/``valid_stops`` ``(N, ndim)`` int64
    hold, per manifest row, the patch index and its box in source pixels over the
    spatial axes (``stops`` may pass the image in ``pad`` mode, ``valid_stops``
    never do); ``out_starts``/``out_stops``/``out_valid_stops`` the same box in
    output pixels (equal at full resolution). ``rows`` are the manifest rows as
    read (strings).
    """

    path: Path
    info: DatasetInfo
    rows: tuple[dict[str, str], ...]
    indices: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    valid_stops: np.ndarray
    out_starts: np.ndarray
    out_stops: np.ndarray
    out_valid_stops: np.ndarray

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The source image's shape (channel axis included)."""
        return tuple(self.info.image.shape)

    @property
    def factors(self) -> tuple[int, ...]:
        """Downsampling factor per spatial axis (all 1 at full resolution)."""
        return tuple(int(f) for f in self.info.downsample)

    @property
    def output_spatial_shape(self) -> tuple[int, ...]:
        """Spatial shape at output resolution (the patch files' pixels)."""
        return downsampled_shape(self.spatial_shape, self.factors)

    @property
    def output_image_shape(self) -> tuple[int, ...]:
        """The stitched image's shape: output spatial shape plus the channel axis."""
        shape = list(self.output_spatial_shape)
        if self.channel_axis is not None:
            shape.insert(self.channel_axis, self.image_shape[self.channel_axis])
        return tuple(shape)

    @property
    def channel_axis(self) -> int | None:
        return self.info.channel_axis

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The source image's spatial shape."""
        axis = self.channel_axis
        return tuple(s for a, s in enumerate(self.image_shape) if a != axis)

    @property
    def has_mask(self) -> bool:
        return self.info.mask is not None

    @property
    def grid(self) -> PatchGrid:
        """The full grid the patches were cut from (before any filter), in output pixels."""
        info = self.info
        return make_grid(
            self.output_image_shape,
            info.patch_size,
            info.stride,
            info.edge,
            channel_axis=self.channel_axis,
        )

    def coverage(self) -> np.ndarray:
        """Bool array of the output spatial shape: True where a patch in the manifest holds
        real data."""
        covered = np.zeros(self.output_spatial_shape, dtype=bool)
        for start, stop in zip(self.out_starts, self.out_valid_stops):
            covered[tuple(slice(a, b) for a, b in zip(start, stop))] = True
        return covered

    def column(self, name: str) -> list[str]:
        """One manifest column, as strings."""
        return [row[name] for row in self.rows]

    def image(self, *, fill_value: float = 0, lazy: bool | None = False) -> Any:
        """The stitched image: output shape (the source shape at full resolution), source dtype.

        A numpy array, or a dask array (:func:`stitch` with ``lazy=True``); ``lazy=None``
        decides by size (dask above :data:`napari_patchwork.io.LAZY_THRESHOLD_BYTES`).
        """
        return self._stitched("images", fill_value, lazy)

    def mask(self, *, fill_value: int = 0, lazy: bool | None = False) -> Any:
        """The stitched mask (output shape, source dtype), or None if the export had no mask;
        ``lazy`` as for :meth:`image`."""
        return self._stitched("masks", fill_value, lazy) if self.has_mask else None

    def _stitched(self, source: str, fill_value: float, lazy: bool | None) -> Any:
        if lazy is None:
            dtype = np.dtype((self.info.image if source == IMAGES_DIR else self.info.mask).dtype)
            shape = self.output_image_shape if source == IMAGES_DIR else self.output_spatial_shape
            lazy = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > LAZY_THRESHOLD_BYTES
        from napari_patchwork.stitch import stitch  # stitching reads folders, not the reverse

        return stitch(self, source, fill_value=fill_value, overlap="last", lazy=lazy)


def read_patch_folder(folder: str | os.PathLike) -> PatchFolder:
    """Open a patch folder written by :func:`napari_patchwork.export.export_patches`.

    Raises :class:`PatchFolderError` if the folder is not one, is incomplete
    (interrupted export: run the export again to resume), or its manifest does not
    match the grid in ``dataset.json``.
    """
    path = Path(folder)
    if path.name == DATASET_FILE:
        path = path.parent
    info = read_dataset_info(path)
    if info is None:
        raise PatchFolderError(
            f"{path} is not a patch folder of napari-patchwork (no valid {DATASET_FILE})."
        )
    if not info.complete:
        raise PatchFolderError(
            f"the export in {path} is incomplete (interrupted or still running); "
            "run the same export again to finish it."
        )
    names = info.spatial_axes
    try:
        with open(path / MANIFEST_FILE, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            # manifests of format version 1 have no output boxes: they equal the source boxes
            required = manifest_columns(names)
            if info.format_version < 2:
                required = [c for c in required if not c.startswith("out_")]
            missing = set(required) - columns
            if missing:
                raise PatchFolderError(
                    f"{path / MANIFEST_FILE} lacks the columns {sorted(missing)}."
                )
            rows = tuple(reader)
        indices = np.array([int(r["index"]) for r in rows], dtype=np.int64)
        starts, stops, valid = manifest_boxes(rows, names, "")
        prefix = "out_" if f"out_{names[0]}0" in columns else ""
        out_starts, out_stops, out_valid = manifest_boxes(rows, names, prefix)
    except FileNotFoundError:
        raise PatchFolderError(
            f"{path} has no {MANIFEST_FILE}; run the export again to write it."
        ) from None
    except (ValueError, KeyError) as err:
        if isinstance(err, PatchFolderError):
            raise
        raise PatchFolderError(
            f"{path / MANIFEST_FILE} is damaged ({err}); export again."
        ) from None
    folder_obj = PatchFolder(
        path, info, rows, indices, starts, stops, valid, out_starts, out_stops, out_valid
    )
    grid = folder_obj.grid
    factors = np.array(folder_obj.factors, dtype=np.int64)
    if len(indices) and (
        indices.max() >= grid.n_patches
        or indices.min() < 0
        or not np.array_equal(grid.boxes[indices, 0], out_starts)
        or not np.array_equal(grid.boxes[indices, 1], out_stops)
        or not np.array_equal(out_starts * factors, starts)
    ):
        raise PatchFolderError(
            f"{path / MANIFEST_FILE} does not match the grid in {DATASET_FILE}; export again."
        )
    return folder_obj


def read_patches(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """The stitched image and mask (None without a mask) of a patch folder, exactly as exported
    (at output resolution)."""
    patches = read_patch_folder(folder)
    return patches.image(), patches.mask()


def verify_patch_folder(folder: str | os.PathLike) -> list[str]:
    """Problems that make the manifest and the files disagree; an empty list if none.

    Reports manifest rows whose file is missing, patch files (of this export's
    naming) that the manifest does not list, and leftover temporary files.
    """
    patches = read_patch_folder(folder)
    listed = {row[key] for row in patches.rows for key in ("image", "mask") if row[key]}
    on_disk = set(patch_files_on_disk(patches.path, patches.info.stem, patches.info.file_format))
    problems = [
        f"missing: {name}" for name in sorted(listed) if not (patches.path / name).is_file()
    ]
    problems += [f"not in the manifest: {name}" for name in sorted(on_disk - listed)]
    return problems
