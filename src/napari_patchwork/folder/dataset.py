"""``dataset.json``: what was exported and how."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from napari_patchwork.folder.names import DATASET_FILE, FOLDER_FORMAT

FILE_SETTING_KEYS = (
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


def file_settings(info: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the patch files' content (layer names left out), JSON-normalised."""
    settings = {key: info.get(key) for key in FILE_SETTING_KEYS}
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


def settings_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: old there, new now"`` for each file setting that differs."""
    old_settings, new_settings = file_settings(old), file_settings(new)
    return [
        f"{key}: {old_settings[key]!r} there, {new_settings[key]!r} now"
        for key in FILE_SETTING_KEYS
        if old_settings[key] != new_settings[key]
    ]
