"""Names in a patch folder: its files and folders, patch file names, temporary files."""

from __future__ import annotations

import re
from collections.abc import Sequence

from napari_patchwork._common import TEMP_SUFFIX
from napari_patchwork.folder.errors import PatchFolderError

FOLDER_FORMAT = "napari-patchwork/patch-folder"


FORMAT_VERSION = 4
"""The newest folder format this module writes and :mod:`napari_patchwork.stitch` reads.

1: full-resolution grid patches; 2: output boxes (downsampling, OME-TIFF pixel sizes);
3: the zarr container; 4: ``placement`` (patches placed around objects, at points, at
random, by class; each box checked on its own)."""


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
    "zarr": ".zarr",
}
"""Export formats and their file extension (``zarr``: two arrays, not a file per patch)."""


CONTAINER_FORMATS: tuple[str, ...] = ("zarr",)
"""Formats that hold all patches in arrays (:mod:`napari_patchwork.folder.zarr_arrays`)."""


_AXIS_NAMES = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x"), 4: ("t", "z", "y", "x")}


def spatial_axis_names(ndim: int) -> tuple[str, ...]:
    """Names of ``ndim`` spatial axes in array order: ``("y", "x")``, ``("z", "y", "x")``..."""
    try:
        return _AXIS_NAMES[ndim]
    except KeyError:
        raise PatchFolderError(
            f"patches can be cut along 1 to 4 spatial axes, the image has {ndim}; "
            "give the non-spatial axis as channel_axis or export a sub-volume."
        ) from None


def patch_file_name(stem: str, index: int, start: Sequence[int], width: int, ext: str) -> str:
    """``<stem>_<index>_y<y0>_x<x0><ext>`` with ``index`` zero-padded to ``width`` digits."""
    names = spatial_axis_names(len(start))
    coords = "_".join(f"{name}{int(s)}" for name, s in zip(names, start))
    return f"{stem}_{index:0{width}d}_{coords}{ext}"


def patch_name_pattern(stem: str, ext: str) -> re.Pattern[str]:
    """Regex matching every file name :func:`patch_file_name` makes for ``stem``/``ext``."""
    return re.compile(rf"^{re.escape(stem)}_\d+(_[tzyx]\d+)+{re.escape(ext)}$")


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)
