"""Reading a patch folder: its ``dataset.json``, manifest and patch files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork.folder.dataset import DatasetInfo, read_dataset_info, read_dataset_json
from napari_patchwork.folder.errors import PatchFolderError
from napari_patchwork.folder.files import patch_files_on_disk
from napari_patchwork.folder.manifest import ManifestBoxes, read_manifest_rows
from napari_patchwork.folder.names import (
    CONTAINER_FORMATS,
    DATASET_FILE,
    FILE_FORMATS,
    IMAGES_DIR,
    MANIFEST_FILE,
    MASKS_DIR,
    patch_file_name,
)
from napari_patchwork.folder.patch_files import checked_patch, inside, read_patch_file
from napari_patchwork.folder.patch_reader import PatchReader
from napari_patchwork.folder.zarr_arrays import (
    PatchArray,
    ShardReader,
    patch_arrays,
    shard_files_on_disk,
    temporary_shard_files,
)
from napari_patchwork.grid import PatchGrid, make_grid
from napari_patchwork.io import LAZY_THRESHOLD_BYTES
from napari_patchwork.resolution import downsampled_shape


def is_patch_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder with a ``dataset.json`` of this plugin (complete or not)."""
    try:
        return Path(path).is_dir() and read_dataset_json(path) is not None
    except OSError:
        return False


@dataclass(frozen=True)
class PatchFolder(ManifestBoxes):
    """A complete patch folder: its ``dataset.json`` (``info``) and manifest.

    ``indices`` ``(N,)``, ``starts``/``stops``/``valid_stops`` ``(N, ndim)`` int64
    hold, per manifest row, the patch index and its box in source pixels over the
    spatial axes (``stops`` may pass the image in ``pad`` mode, ``valid_stops``
    never do); ``out_starts``/``out_stops``/``out_valid_stops`` the same box in
    output pixels (equal at full resolution). ``rows`` are the manifest rows as
    read (strings): the :class:`~napari_patchwork.folder.manifest.ManifestBoxes` fields.
    """

    path: Path
    info: DatasetInfo

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
    def placed(self) -> bool:
        """True when a placement (objects, points, random, balanced) laid the patches."""
        return self.info.placed

    @property
    def n_grid_patches(self) -> int:
        """How many patches the export tried before filters (the grid's or the placement's)."""
        return int(self.info.n_grid_patches) if self.placed else self.grid.n_patches

    @property
    def grid(self) -> PatchGrid:
        """The full grid the patches were cut from (before any filter), in output pixels.

        For placed patches, the boxes of the placed patches the manifest lists; the ones
        filters left out (not recorded) are empty boxes at 0.
        """
        info = self.info
        if self.placed:
            n = self.n_grid_patches
            boxes = np.zeros((n, 2, len(self.spatial_shape)), dtype=np.int64)
            boxes[self.indices, 0], boxes[self.indices, 1] = self.out_starts, self.out_stops
            return PatchGrid(
                shape=self.output_spatial_shape,
                patch_size=tuple(info.patch_size),
                stride=tuple(info.stride),
                edge=info.edge,
                boxes=boxes,
                grid_index=np.full((n, len(self.spatial_shape)), -1, dtype=np.int64),
                kind=str(info.placement["kind"]),
            )
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

    def patch_shape(self, row: int, with_channels: bool) -> tuple[int, ...]:
        """The shape of row ``row``'s patch files (output pixels; the image's with channels)."""
        shape = [int(v) for v in self.out_stops[row] - self.out_starts[row]]
        if with_channels and self.channel_axis is not None:
            shape.insert(self.channel_axis, self.image_shape[self.channel_axis])
        return tuple(shape)

    @property
    def is_container(self) -> bool:
        """Whether the patches are in zarr arrays (``images.zarr``, ``masks.zarr``)."""
        return self.info.file_format in CONTAINER_FORMATS

    def arrays(self) -> tuple[PatchArray, PatchArray | None]:
        """The zarr arrays of a container folder (image, mask or None), as ``dataset.json``
        describes them."""
        if not self.is_container:
            raise PatchFolderError(
                f"{self.path} holds {self.info.file_format} patch files, not zarr arrays."
            )
        return patch_arrays(self.info, len(self.rows))

    def patches(self, source: str = IMAGES_DIR) -> PatchReader:
        """The patches of ``source`` (``"images"`` or ``"masks"``) in manifest order, as an
        array-like indexed like numpy along its first axis (any format; see
        :class:`~napari_patchwork.folder.patch_reader.PatchReader`)."""
        return PatchReader(self, source)

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

        return stitch(self, source, fill_value=fill_value, merge="last", lazy=lazy)


def read_patch_folder(folder: str | os.PathLike) -> PatchFolder:
    """Open a patch folder written by :func:`napari_patchwork.export.export_patches`.

    Nothing it says is believed before it is checked: ``dataset.json`` against its
    schema (:mod:`napari_patchwork.folder.schema`), every manifest row against the grid
    it describes (box, valid region, file names inside the folder). Raises
    :class:`PatchFolderError` if the folder is not one, is incomplete (interrupted
    export: run the export again to resume), or is damaged.
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
    boxes = read_manifest_rows(path / MANIFEST_FILE, info.spatial_axes, info.format_version)
    patches = PatchFolder(**vars(boxes), path=path, info=info)
    _check_rows(patches)
    return patches


def _check_rows(patches: PatchFolder) -> None:
    """Every manifest row is a patch of the folder's grid, named as the export names it."""
    info, where = patches.info, patches.path / MANIFEST_FILE
    if info.n_patches is not None and info.n_patches != len(patches.rows):
        raise PatchFolderError(
            f"{where} lists {len(patches.rows)} patches, {DATASET_FILE} says {info.n_patches}; "
            "the folder is damaged or half-copied: copy it again, or export again."
        )
    if not len(patches.rows):
        return
    indices = patches.indices
    if (
        indices.min() < 0
        or indices.max() >= patches.n_grid_patches
        or len(set(indices.tolist())) < len(indices)
    ):
        raise PatchFolderError(
            f"{where} lists patch numbers that its grid does not have; export again."
        )
    if patches.placed:
        _check_placed_boxes(patches)
        starts, stops = patches.out_starts, patches.out_stops
    else:
        grid = patches.grid
        starts, stops = grid.boxes[indices, 0], grid.boxes[indices, 1]
    factors = np.array(patches.factors, dtype=np.int64)
    out_valid = np.minimum(stops, patches.output_spatial_shape)
    valid = np.minimum(stops * factors, patches.spatial_shape)
    expected = (
        (patches.out_starts, starts),
        (patches.out_stops, stops),
        (patches.out_valid_stops, out_valid),
        (patches.starts, starts * factors),
        (patches.stops, stops * factors),
        (patches.valid_stops, valid),
    )
    for found, wanted in expected:
        bad = np.flatnonzero(np.any(found != wanted, axis=1))
        if bad.size:
            raise PatchFolderError(
                f"{where} row {int(bad[0]) + 1} does not match the grid in {DATASET_FILE} "
                f"(patch {int(indices[bad[0]])}); export again."
            )
    _check_file_names(patches)


def _check_placed_boxes(patches: PatchFolder) -> None:
    """Each placed box (output pixels) is one the export could write for its edge mode: a
    whole patch inside the image (``drop``, ``shift``), past the end only when padded
    (``pad``, still starting inside), or clipped only where it meets the border
    (``partial``)."""
    info, where = patches.info, patches.path / MANIFEST_FILE
    size = np.asarray(patches.output_spatial_shape, dtype=np.int64)
    patch = np.asarray(info.patch_size, dtype=np.int64)
    starts, stops = patches.out_starts, patches.out_stops
    extent = stops - starts
    ok = np.all(starts >= 0, axis=1)
    if info.edge == "partial":
        whole = extent == patch
        clipped = (extent >= 1) & (extent < patch) & ((starts == 0) | (stops == size))
        ok &= np.all((whole | clipped) & (stops <= size), axis=1)
    else:
        ok &= np.all(extent == patch, axis=1)
        ok &= np.all(starts < size if info.edge == "pad" else stops <= size, axis=1)
    bad = np.flatnonzero(~ok)
    if bad.size:
        row = int(bad[0])
        raise PatchFolderError(
            f"{where} row {row + 1} (patch {int(patches.indices[row])}) has the box "
            f"{starts[row].tolist()}..{stops[row].tolist()}, not a {patch.tolist()} px patch "
            f"of the {size.tolist()} px image with edge={info.edge!r}; export again."
        )


def _check_file_names(patches: PatchFolder) -> None:
    """Each row's files are the ones the export names for its patch (so inside the folder);
    a container's rows name its arrays and their places in them, in order, and the arrays'
    metadata is what ``dataset.json`` implies."""
    info = patches.info
    if patches.is_container:
        _check_array_rows(patches)
        return
    width = len(str(max(patches.n_grid_patches - 1, 0)))
    ext = FILE_FORMATS[info.file_format]
    for row_number, (row, index, start) in enumerate(
        zip(patches.rows, patches.indices, patches.starts), start=1
    ):
        name = patch_file_name(info.stem, int(index), start, width, ext)
        wanted = (f"{IMAGES_DIR}/{name}", f"{MASKS_DIR}/{name}" if patches.has_mask else "")
        if (row.get("image"), row.get("mask")) != wanted:
            raise PatchFolderError(
                f"{patches.path / MANIFEST_FILE} row {row_number} names "
                f"{row.get('image')!r}/{row.get('mask')!r}, not this patch's files "
                f"{wanted[0]!r}/{wanted[1]!r}; export again."
            )
        for file in filter(None, wanted):
            inside(patches.path, file, f"row {row_number}'s {file}")


def _check_array_rows(patches: PatchFolder) -> None:
    image, mask = patches.arrays()
    wanted = (image.name, "" if mask is None else mask.name)
    for row_number, row in enumerate(patches.rows, start=1):
        found = (row.get("image"), row.get("mask"))
        if found != wanted or row.get("array_index") != str(row_number - 1):
            raise PatchFolderError(
                f"{patches.path / MANIFEST_FILE} row {row_number} names "
                f"{found[0]!r}/{found[1]!r} at {row.get('array_index')!r}, not "
                f"{wanted[0]!r}/{wanted[1]!r} at '{row_number - 1}' (rows follow the arrays); "
                "export again."
            )
    for array in (image, mask):
        if array is not None:
            array.check(patches.path)


def read_patches(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """The stitched image and mask (None without a mask) of a patch folder, exactly as exported
    (at output resolution)."""
    patches = read_patch_folder(folder)
    return patches.image(), patches.mask()


def verify_patch_folder(folder: str | os.PathLike) -> list[str]:
    """Every problem that makes the files disagree with the manifest; an empty list if none.

    A damaged ``dataset.json`` or manifest raises :class:`PatchFolderError` (it cannot
    be checked further). Then, without stitching: manifest rows whose file is missing,
    a link leaving the folder, unreadable or of another shape or dtype than the folder
    says; patch files (of this export's naming) that the manifest does not list; and
    leftover temporary files.
    """
    patches = read_patch_folder(folder)
    if patches.is_container:
        return _array_problems(patches)
    info = patches.info
    listed = {row[key] for row in patches.rows for key in ("image", "mask") if row[key]}
    on_disk = set(patch_files_on_disk(patches.path, info.stem, info.file_format))
    problems = []
    for row_number, row in enumerate(patches.rows, start=1):
        for key in ("image", "mask"):
            if row[key]:
                problem = _file_problem(patches, row_number - 1, key)
                if problem:
                    problems.append(f"{problem} (row {row_number})")
    problems += [f"not in the manifest: {name}" for name in sorted(on_disk - listed)]
    return problems


def _array_problems(patches: PatchFolder) -> list[str]:
    """:func:`verify_patch_folder` of a container: every patch read and checked, shard files
    past the arrays' end, temporary files."""
    problems = []
    for array in filter(None, patches.arrays()):
        reader = ShardReader(patches.path, array)
        try:
            for row in range(array.n_patches):
                try:
                    reader.read(row)
                except PatchFolderError as err:
                    problems.append(f"bad patch: {err} (row {row + 1})")
        finally:
            reader.close()
        wanted = {array.shard_file(k) for k in range(array.n_shards)}
        on_disk = shard_files_on_disk(patches.path, array.name)
        problems += [f"not in the manifest: {name}" for name in sorted(on_disk - wanted)]
        temporary = temporary_shard_files(patches.path, [array.name])
        problems += [f"not in the manifest: {name}" for name in sorted(temporary)]
    return problems


def _file_problem(patches: PatchFolder, row: int, key: str) -> str | None:
    name = patches.rows[row][key]
    try:
        path = inside(patches.path, name, name)
    except PatchFolderError:
        return f"outside the folder: {name}"
    if not path.is_file():
        return f"missing: {name}"
    try:
        expected = patches.patch_shape(row, with_channels=key == "image")
        info = patches.info.image if key == "image" else patches.info.mask
        checked_patch(
            read_patch_file(path),
            expected,
            np.dtype(info.dtype),
            patches.info.file_format == "png",
            name,
        )
    except PatchFolderError as err:
        return f"bad file: {err}"
    return None
