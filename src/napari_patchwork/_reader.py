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
* ``"<image> predictions"``, if the folder holds a ``predictions`` folder of model
  outputs named like the image patches: merged (``center`` for integer predictions,
  shown as Labels; ``gaussian`` for float scores, shown as an Image) and laid on the
  stitched image like the mask (:func:`prediction_layer_data`; the *Merge predictions*
  widget picks another folder, mode or arg-max). Predictions that cannot be merged give
  a warning, and the rest of the folder still opens;
* the patch grid as a Shapes layer with one rectangle per exported patch,
  features ``index``, ``row``, ``col`` (``z``), ``split`` and
  ``foreground_fraction``, and the grid description in
  ``metadata["napari_patchwork"]`` (so it can be saved again as a patch folder).

An incomplete export (interrupted) raises an error that says to run it again.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork._layer_data import grid_layer_data
from napari_patchwork.folder import (
    DATASET_FILE,
    PatchFolder,
    PatchFolderError,
    is_patch_folder,
    read_patch_folder,
)
from napari_patchwork.grid import grid_features
from napari_patchwork.io import LAZY_THRESHOLD_BYTES
from napari_patchwork.merge import MergeError, PredictionLayout
from napari_patchwork.placement import FEATURE_COLUMNS
from napari_patchwork.resolution import downsampled_transform
from napari_patchwork.stitch import stitch

LayerDataTuple = tuple[Any, dict, str]
PREDICTIONS_DIR = "predictions"
"""A folder of this name inside a patch folder holds model outputs named like the image
patches; the reader shows them merged (see :func:`prediction_layer_data`)."""


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
    this plugin wrote or opened, unless the user already chose a reader for it; the
    export widget, the writer and the command line's ``tile`` call it for their folders.
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
    spatial_meta = _spatial_meta(patches)
    channel_axis = patches.channel_axis
    image_meta: dict[str, Any] = {"name": image_name, "rgb": info.rgb}
    image_meta.update(_spatial_meta(patches, None if info.rgb else channel_axis))
    layers: list[LayerDataTuple] = [(patches.image(lazy=None), image_meta, "image")]
    if patches.has_mask:
        mask_name = info.mask.name or f"{image_name} mask"
        mask_meta = {"name": mask_name, **spatial_meta}
        layers.append((patches.mask(lazy=None), mask_meta, "labels"))
    if (folder / PREDICTIONS_DIR).is_dir():
        try:
            layers.append(prediction_layer_data(patches, folder / PREDICTIONS_DIR))
        except (PatchFolderError, MergeError) as err:  # the folder itself still opens
            warnings.warn(f"{folder / PREDICTIONS_DIR} not shown: {err}", stacklevel=2)
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
        features.update(placed_features(patches))
        keep = np.zeros(grid.n_patches, dtype=bool)
        keep[patches.indices] = True
        data, kwargs = grid_layer_data(
            grid,
            features,
            keep,
            scale=spatial_meta.get("scale"),
            translate=spatial_meta.get("translate"),
            color_by="foreground_fraction" if "foreground_fraction" in features else "index",
            channel_axis=channel_axis,
            name=f"{image_name} grid",
            metadata={"image_layer": image_name, "patch_folder": str(folder)},
        )
        layers.append((data, kwargs, "shapes"))
    return layers


def placed_features(patches: PatchFolder) -> dict[str, np.ndarray]:
    """The placement's manifest columns (``instance_id``, ``area``, ``class``, ``point``)
    as grid features (-1 where a patch was left out); nothing for a regular grid."""
    features: dict[str, np.ndarray] = {}
    if not patches.placed or not patches.rows:
        return features
    for name in FEATURE_COLUMNS:
        if name in patches.rows[0]:
            column = np.full(patches.grid.n_patches, -1, dtype=np.int64)
            try:
                column[patches.indices] = [int(v) for v in patches.column(name)]
            except ValueError:
                continue  # an edited cell: the column is only informative
            features[name] = column
    return features


def _spatial_meta(patches: PatchFolder, channel_axis: int | None = None) -> dict[str, list]:
    """``scale``/``translate`` that lay the stitched arrays on the source image (output
    resolution included), with 1 / 0 at ``channel_axis`` if given."""
    scale, translate = patches.info.scale, patches.info.translate
    if any(f != 1 for f in patches.factors):
        scale, translate = downsampled_transform(scale, translate, patches.factors)
    meta = {}
    for key, values, filler in (("scale", scale, 1.0), ("translate", translate, 0.0)):
        if values is not None:
            values = list(values)
            if channel_axis is not None:
                values.insert(channel_axis, filler)
            meta[key] = values
    return meta


def prediction_layer_data(
    folder: str | os.PathLike | PatchFolder,
    predictions: str | os.PathLike = PREDICTIONS_DIR,
    *,
    merge: str | None = None,
    argmax: bool = False,
) -> LayerDataTuple:
    """The merged predictions of a patch folder as a layer lying on its stitched image:
    Labels for integer results, else Image (channels kept as an axis of the layer).

    ``merge`` is a mode of :data:`napari_patchwork.merge.MERGE_MODES`; default ``center``
    for integer predictions, ``gaussian`` for float scores. Above
    :data:`~napari_patchwork.io.LAZY_THRESHOLD_BYTES` the data stay a dask array that reads
    only the patch files in view.
    """
    patches = folder if isinstance(folder, PatchFolder) else read_patch_folder(folder)
    if merge is None:
        first = stitch(patches, predictions, merge="last", lazy=True)  # reads one file
        merge = "center" if np.dtype(first.dtype).kind in "iub" else "gaussian"
    data = stitch(patches, predictions, merge=merge, argmax=argmax, lazy=True)
    if data.nbytes <= LAZY_THRESHOLD_BYTES:
        data = data.compute()
    is_labels = np.dtype(data.dtype).kind in "iub"
    channel_axis = PredictionLayout.of(data, patches.output_spatial_shape).channel_axis
    image_name = patches.info.image.name or patches.path.name
    meta: dict[str, Any] = {
        "name": f"{image_name} predictions",
        **_spatial_meta(patches, channel_axis),
        "metadata": {
            "napari_patchwork": {
                "predictions": str(Path(patches.path, predictions)),
                "merge": merge,
                "argmax": argmax,
                "patch_folder": str(patches.path),
            }
        },
    }
    if not is_labels:
        meta["rgb"] = False
    return data, meta, "labels" if is_labels else "image"
