"""Patch files: found only inside their folder, read with errors that name them, checked
against what the folder says they hold."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_patchwork.folder.errors import PatchFolderError

PATCH_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")
"""File extensions read as patches (and predictions)."""


def inside(folder: Path, relative: str | os.PathLike, what: str) -> Path:
    """``folder / relative`` if it stays inside ``folder`` once links are followed, else
    :class:`PatchFolderError` (an absolute path, ``..`` or a link that leaves the folder)."""
    root = os.path.realpath(folder)
    path = Path(folder) / relative
    if Path(relative).is_absolute() or os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise PatchFolderError(
            f"{what} points outside {folder} ({relative}); patch folders hold their own files: "
            "copy the folder again, or export again."
        )
    return path


def read_patch_file(path: str | os.PathLike, where: str = "") -> np.ndarray:
    """One patch file (TIFF, PNG or NPY, by extension) as a numpy array.

    A file that cannot be read (empty, truncated, not of its format) is a
    :class:`PatchFolderError` naming it (and ``where``, e.g. its manifest row).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in PATCH_EXTENSIONS:
        raise PatchFolderError(
            f"{path.name}: cannot read {ext!r} files; use one of {', '.join(PATCH_EXTENSIONS)}."
        )
    try:
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        if ext == ".png":
            import imageio.v3 as iio

            return np.asarray(iio.imread(path, extension=".png"))
        import tifffile

        return tifffile.imread(path)
    except FileNotFoundError:
        raise PatchFolderError(f"{path}{where} is missing; export again.") from None
    except Exception as err:  # noqa: BLE001 - any reader failure means a damaged file
        raise PatchFolderError(
            f"{path}{where} cannot be read ({type(err).__name__}: {err}); it is damaged or "
            "not a patch file: export again."
        ) from None


def checked_patch(
    data: np.ndarray, expected: Sequence[int], dtype: np.dtype, png: bool, name: str
) -> np.ndarray:
    """``data`` if it has the ``expected`` shape and ``dtype``, else PatchFolderError.

    A length-1 axis dropped (PNG) or added (a 1D patch in a TIFF) is put back. PNG
    files hold uint8/uint16: their values are converted to ``dtype`` when they fit it.
    """
    expected = tuple(int(s) for s in expected)
    if data.shape != expected:
        if [s for s in data.shape if s != 1] != [s for s in expected if s != 1]:
            raise PatchFolderError(f"{name} has shape {data.shape}, expected {expected}.")
        data = data.reshape(expected)
    if data.dtype == dtype:
        return data
    if png and data.dtype in (np.uint8, np.uint16) and _fits(data, dtype):
        return data.astype(dtype)
    raise PatchFolderError(
        f"{name} holds {data.dtype} values, the folder's patches are {dtype}: the file was "
        "replaced or the folder edited; export again."
    )


def _fits(data: np.ndarray, dtype: np.dtype) -> bool:
    if dtype == np.bool_:
        return data.size == 0 or int(data.max()) <= 1
    if dtype.kind in "ui":
        return data.size == 0 or int(data.max()) <= np.iinfo(dtype).max
    return False  # PNG patches are never float: a float dtype is a damaged dataset.json
