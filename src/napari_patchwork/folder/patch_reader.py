"""A patch folder's patches as an array-like: ``reader[i]``, ``reader[[7, 3, 9]]``,
``reader[100:164]`` give numpy arrays, in manifest order, for any format (zarr arrays or
patch files), each patch checked against what the folder says it holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_patchwork.folder.errors import PatchFolderError
from napari_patchwork.folder.names import IMAGES_DIR, MASKS_DIR
from napari_patchwork.folder.patch_files import checked_patch, inside, read_patch_file
from napari_patchwork.folder.zarr_arrays import ShardReader

if TYPE_CHECKING:
    from napari_patchwork.folder.read import PatchFolder


class PatchReader:
    """The patches of ``source`` (``"images"`` or ``"masks"``) of a :class:`PatchFolder`.

    Row ``i`` of the manifest is patch ``i``. An int gives one patch (``patch_shape``);
    a slice, a list or an integer array gives them stacked along a new first axis
    (numpy indexing of the first axis; negative numbers count from the end). Patches of
    a zarr folder are read from their shard files (one ``pread`` each once a shard's index
    is read; at most :attr:`ShardReader.MAX_OPEN` shard files stay open: :meth:`close`
    closes them); patch files are read one by one. A reader pickles (for data loader
    workers) and each copy opens its own files.
    """

    def __init__(self, patches: PatchFolder, source: str = IMAGES_DIR) -> None:
        if source not in (IMAGES_DIR, MASKS_DIR):
            raise PatchFolderError(f"source must be 'images' or 'masks', not {source!r}.")
        if source == MASKS_DIR and not patches.has_mask:
            raise PatchFolderError(f"the export in {patches.path} has no mask.")
        self.folder, self.source = patches, source
        info = patches.info.image if source == IMAGES_DIR else patches.info.mask
        self.dtype = np.dtype(info.dtype)
        self._shards: ShardReader | None = None
        if patches.is_container:
            image, mask = patches.arrays()
            self._shards = ShardReader(patches.path, image if source == IMAGES_DIR else mask)

    def __len__(self) -> int:
        return len(self.folder.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_patches, *patch_shape)``; PatchFolderError if the patches differ in shape
        (``edge="partial"`` patch files)."""
        shapes = {self._patch_shape(r) for r in range(len(self))}
        if len(shapes) > 1:
            raise PatchFolderError(
                f"the patches of {self.folder.path} differ in shape (edge='partial'); read "
                "them one at a time."
            )
        return (len(self), *(shapes.pop() if shapes else ()))

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._read(self._row(int(key)))
        if isinstance(key, slice):
            rows: Sequence[int] = range(*key.indices(len(self)))
        else:
            chosen = np.asarray(key)
            if chosen.ndim != 1 or not (chosen.dtype.kind in "iu" or chosen.size == 0):
                raise IndexError(
                    f"index patches with an int, a slice or a 1-D list of ints, not {key!r}."
                )
            rows = [self._row(int(k)) for k in chosen]
        patches = [self._read(r) for r in rows]
        if not patches:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        if len({p.shape for p in patches}) > 1:
            raise PatchFolderError(
                "these patches differ in shape (edge='partial'); read them one at a time."
            )
        return np.stack(patches)

    def close(self) -> None:
        """Close the open shard files (reading again reopens them)."""
        if self._shards is not None:
            self._shards.close()

    def __enter__(self) -> PatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _row(self, key: int) -> int:
        n = len(self)
        if not -n <= key < n:
            raise IndexError(f"patch {key} does not exist: the folder holds {n} patches.")
        return key % n

    def _patch_shape(self, row: int) -> tuple[int, ...]:
        return self.folder.patch_shape(row, with_channels=self.source == IMAGES_DIR)

    def _read(self, row: int) -> np.ndarray:
        if self._shards is not None:
            return self._shards.read(row)
        name = self.folder.rows[row]["image" if self.source == IMAGES_DIR else "mask"]
        path = inside(self.folder.path, name, f"row {row + 1}'s {name}")
        data = read_patch_file(path, f" (manifest row {row + 1})")
        png = self.folder.info.file_format == "png"
        return checked_patch(data, self._patch_shape(row), self.dtype, png, name)
