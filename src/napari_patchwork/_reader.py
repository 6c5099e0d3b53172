"""npe2 reader: open a patch folder (or its ``dataset.json``) as Image, Labels and grid layers.

Thin adapter over :mod:`napari_patchwork.stitch` (no Qt). :func:`get_reader`
returns None for anything that is not a patch folder of this plugin and never
raises. The reader adds

* the stitched image (source dtype; pixels no exported patch covered are 0), at
  the export's output resolution, with the scale/translate recorded at export.
  Above :data:`napari_patchwork.io.LAZY_THRESHOLD_BYTES` (512 MiB) image and mask
  are dask arrays that read the patch files in view only
  (:func:`napari_patchwork.stitch.stitch` with ``lazy=True``); napari shows them read-only.
  For a downsampled export (factor ``f``) the layers get ``scale * f`` and
  ``translate + (f - 1) / 2 * scale`` (each output pixel centred on its source
  block; :func:`napari_patchwork.resolution.downsampled_transform`), so they lie
  on top of the source image;
* the stitched mask as a Labels layer, if the export had one;
* the patch grid as a Shapes layer with one rectangle per exported patch,
  features ``index``, ``row``, ``col`` (``z``), ``split`` and
  ``foreground_fraction``, and the grid description in
  ``metadata["napari_patchwork"]`` (so it can be saved again as a patch folder).

An incomplete export (interrupted) raises an error that says to run it again.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork._layer_data import grid_layer_data
from napari_patchwork.folder import DATASET_FILE, is_patch_folder, read_patch_folder
from napari_patchwork.grid import grid_features
from napari_patchwork.resolution import downsampled_transform

LayerDataTuple = tuple[Any, dict, str]


def _folder(path: str | os.PathLike | list) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    folder = Path(path)
    if folder.name == DATASET_FILE and folder.is_file():
        folder = folder.parent
    return folder if is_patch_folder(folder) else None


def get_reader(path: str | list[str]) -> Callable[[str], list[LayerDataTuple]] | None:
    """The patch-folder reader for a patch folder (or its ``dataset.json``), else None."""
    try:
        return read_patch_folder_layers if _folder(path) is not None else None
    except Exception:  # noqa: BLE001 - a reader must not raise for paths it does not handle
        return None


PLUGIN_NAME = "napari-patchwork"


def remember_reader_for(folder: str | os.PathLike) -> bool:
    """Have napari open ``folder`` with this plugin from now on, without asking.

    napari offers every reader that accepts folders (its own builtin reader too) and
    asks "Choose reader" unless a preference names one for the folder. Ticking
    "remember" in that dialog stores the folder's real path plus a separator in
    ``settings.plugins.extension2reader``; this stores the same entry, for folders
    this plugin wrote or opened, unless the user already chose a reader for it.
    Returns whether a preference was added. Does nothing without napari.
    """
    try:
        from napari.settings import get_settings
    except ImportError:
        return False
    pattern = glob.escape(os.path.realpath(folder)) + os.sep
    preferences = get_settings().plugins.extension2reader
    if pattern in preferences:
        return False
    get_settings().plugins.extension2reader = {**preferences, pattern: PLUGIN_NAME}
    return True


def read_patch_folder_layers(path: str | list[str]) -> list[LayerDataTuple]:
    """Layer data tuples for a patch folder: stitched image, mask (if any) and grid.

    The folder is remembered as ours (:func:`remember_reader_for`), so opening it
    again never asks which reader to use.
    """
    folder = _folder(path)
    if folder is None:
        raise ValueError(f"{path} is not a patch folder of napari-patchwork.")
    patches = read_patch_folder(folder)
    remember_reader_for(folder)
    info = patches.info
    image_name = info.image.name or folder.name
    spatial_scale, spatial_translate = info.scale, info.translate
    if any(f != 1 for f in patches.factors):
        spatial_scale, spatial_translate = downsampled_transform(
            spatial_scale, spatial_translate, patches.factors
        )
    channel_axis = patches.channel_axis
    image_meta: dict[str, Any] = {"name": image_name, "rgb": info.rgb}
    if spatial_scale is not None:
        scale = list(spatial_scale)
        if channel_axis is not None and not info.rgb:
            scale.insert(channel_axis, 1.0)
        image_meta["scale"] = scale
    if spatial_translate is not None:
        translate = list(spatial_translate)
        if channel_axis is not None and not info.rgb:
            translate.insert(channel_axis, 0.0)
        image_meta["translate"] = translate
    spatial_meta = {
        k: v
        for k, v in (("scale", spatial_scale), ("translate", spatial_translate))
        if v is not None
    }
    layers: list[LayerDataTuple] = [(patches.image(lazy=None), image_meta, "image")]
    if patches.has_mask:
        mask_name = info.mask.name or f"{image_name} mask"
        mask_meta = {"name": mask_name, **spatial_meta}
        layers.append((patches.mask(lazy=None), mask_meta, "labels"))
    grid = patches.grid
    if grid.ndim >= 2:
        features = grid_features(grid)
        fraction = np.full(grid.n_patches, np.nan)
        split = np.full(grid.n_patches, "", dtype=object)
        fg_column = patches.column("foreground_fraction")
        if any(fg_column):
            fraction[patches.indices] = [float(v) if v else np.nan for v in fg_column]
            features["foreground_fraction"] = fraction
        split[patches.indices] = patches.column("split")
        features["split"] = split
        keep = np.zeros(grid.n_patches, dtype=bool)
        keep[patches.indices] = True
        data, kwargs = grid_layer_data(
            grid,
            features,
            keep,
            scale=spatial_scale,
            translate=spatial_translate,
            color_by="foreground_fraction" if "foreground_fraction" in features else "index",
            channel_axis=channel_axis,
            name=f"{image_name} grid",
            metadata={"image_layer": image_name, "patch_folder": str(folder)},
        )
        layers.append((data, kwargs, "shapes"))
    return layers
