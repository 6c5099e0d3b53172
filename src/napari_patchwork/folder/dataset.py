"""``dataset.json``: what was exported and how, as a typed and versioned :class:`DatasetInfo`.

:meth:`DatasetInfo.to_json` gives the file's content and :meth:`DatasetInfo.from_json`
reads it back, upgrading the dicts of older ``format_version``\\ s (they lack
``downsample``, ``output_shape``, ``pixel_size`` and ``only_foreground``, which then had
their defaults). The *file settings*, the fields that decide the content of the patch
files, are marked on the fields themselves (``field(metadata=FILE)``), so
:meth:`DatasetInfo.file_settings` is derived, not hand-listed: a resumed export must
have all of them equal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from napari_patchwork.folder.errors import PatchFolderError
from napari_patchwork.folder.files import write_text_atomic
from napari_patchwork.folder.names import DATASET_FILE, FOLDER_FORMAT, FORMAT_VERSION
from napari_patchwork.folder.schema import check_dataset

FILE = {"file": True}
"""Field metadata of the settings that decide the patch files' content."""


@dataclass(frozen=True)
class ArrayInfo:
    """Shape and dtype (numpy ``dtype.str``) of the exported image or mask, and its layer
    name; a mask made from class-named annotations also records ``class_ids``."""

    shape: tuple[int, ...]
    dtype: str
    name: str | None = None
    class_ids: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"shape": list(self.shape), "dtype": self.dtype, "name": self.name}
        if self.class_ids is not None:
            data["class_ids"] = dict(self.class_ids)
        return data

    def content(self) -> dict[str, Any]:
        """What decides the files: everything but the layer name."""
        return {k: v for k, v in self.to_json().items() if k != "name"}


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """The content of ``dataset.json`` (see :mod:`napari_patchwork.folder` for the keys)."""

    format_version: int = FORMAT_VERSION
    plugin_version: str = ""
    complete: bool = False
    image: ArrayInfo = field(metadata=FILE)
    mask: ArrayInfo | None = field(metadata=FILE)
    axes: str
    spatial_axes: tuple[str, ...]
    channel_axis: int | None = field(metadata=FILE)
    rgb: bool
    patch_size: tuple[int, ...] = field(metadata=FILE)
    stride: tuple[int, ...] = field(metadata=FILE)
    edge: str = field(metadata=FILE)
    pad_mode: str | None = field(metadata=FILE)
    pad_value: float | int | bool | None = field(metadata=FILE)
    file_format: str = field(metadata=FILE)
    compression: str | None = field(metadata=FILE)
    stem: str = field(metadata=FILE)
    relabel: bool = field(metadata=FILE)
    min_foreground: float = field(metadata=FILE)
    only_foreground: bool = field(metadata=FILE)
    min_std: float | None = field(metadata=FILE)
    indices: tuple[int, ...] | None = field(metadata=FILE)
    split: dict[str, float] | None
    seed: int
    split_by: str = "patch"
    block_size: tuple[int, ...] | None = None
    scale: tuple[float, ...] | None
    translate: tuple[float, ...] | None
    units: tuple[str | None, ...] | None
    downsample: tuple[int, ...] = field(metadata=FILE)
    output_shape: tuple[int, ...]
    pixel_size: tuple[float, ...] | None
    n_grid_patches: int
    arrays: dict[str, Any] | None = field(default=None, metadata=FILE)
    """``fmt="zarr"``: the arrays' names (``image``, ``mask``) and ``shard_patches``."""
    placement: dict[str, Any] | None = field(default=None, metadata=FILE)
    n_patches: int | None = None
    split_counts: dict[str, int] | None = None
    n_buffer: int | None = None
    written: str | None = None

    @property
    def placed(self) -> bool:
        """True when a placement (not the regular grid) laid the patches."""
        return self.placement is not None

    # -- the file settings ------------------------------------------------------------
    def file_settings(self) -> dict[str, Any]:
        """The settings that decide the patch files' content, JSON-normalised.

        The fields marked ``FILE`` (layer names left out), and for OME-TIFF the pixel
        size and units that the files carry.
        """
        settings: dict[str, Any] = {}
        for f in fields(self):
            if f.metadata.get("file"):
                value = getattr(self, f.name)
                settings[f.name] = value.content() if isinstance(value, ArrayInfo) else value
        settings["ome_pixel_size"] = (
            [self.pixel_size, self.units] if self.file_format == "ome-tiff" else None
        )
        return json.loads(json.dumps(settings))

    def differences(self, new: DatasetInfo) -> list[str]:
        """``"key: old there, new now"`` for each file setting that differs from ``new``."""
        old_settings, new_settings = self.file_settings(), new.file_settings()
        return [
            f"{key}: {old_settings[key]!r} there, {new_settings[key]!r} now"
            for key in old_settings
            if old_settings[key] != new_settings[key]
        ]

    def finished(
        self, n_patches: int, split_counts: dict[str, int], written: str, n_buffer: int = 0
    ) -> DatasetInfo:
        """This export marked complete, with its counts (``n_buffer``: patches left out
        between blocks of different splits)."""
        return replace(
            self,
            complete=True,
            n_patches=n_patches,
            split_counts=split_counts,
            n_buffer=n_buffer,
            written=written,
        )

    # -- JSON -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The ``dataset.json`` dict (keys in a stable order; ``format`` first)."""
        data: dict[str, Any] = {"format": FOLDER_FORMAT}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ArrayInfo):
                value = value.to_json()
            elif isinstance(value, tuple):
                value = list(value)
            data[f.name] = value
        if self.arrays is None:  # file formats: as before the zarr container
            del data["arrays"]
        if self.n_patches is None:  # counts appear once the export is complete
            for key in ("n_patches", "split_counts", "n_buffer", "written"):
                del data[key]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = DATASET_FILE) -> DatasetInfo:
        """Read a ``dataset.json`` dict of any format version up to :data:`FORMAT_VERSION`.

        Raises :class:`PatchFolderError` naming the key that is missing or has the wrong type.
        """
        if not isinstance(data, dict) or data.get("format") != FOLDER_FORMAT:
            raise PatchFolderError(f"{where} is not a dataset.json of napari-patchwork.")
        data = _upgraded(data, where)
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in data and not _has_default(cls, n))
        if missing:
            raise PatchFolderError(f"{where} lacks the keys {missing}; export again.")
        check_dataset(data, where)
        values = {key: data[key] for key in names if key in data}
        try:
            values["image"] = _array_info(values["image"])
            values["mask"] = None if values["mask"] is None else _array_info(values["mask"])
            for key in _TUPLE_FIELDS:
                if values.get(key) is not None or key in _REQUIRED_TUPLES:
                    values[key] = tuple(values[key])
        except (TypeError, KeyError, ValueError) as err:
            raise PatchFolderError(f"{where} is damaged ({err!r}); export again.") from None
        return cls(**values)


_TUPLE_FIELDS = (
    "spatial_axes",
    "patch_size",
    "stride",
    "indices",
    "scale",
    "translate",
    "units",
    "downsample",
    "output_shape",
    "pixel_size",
    "block_size",
)


_REQUIRED_TUPLES = ("spatial_axes", "patch_size", "stride", "downsample", "output_shape")


def _has_default(cls: type, name: str) -> bool:
    from dataclasses import MISSING

    f = next(f for f in fields(cls) if f.name == name)
    return f.default is not MISSING or f.default_factory is not MISSING


def _array_info(data: Any) -> ArrayInfo:
    if not isinstance(data, dict):
        raise TypeError(f"expected an object with shape and dtype, got {data!r}")
    return ArrayInfo(
        shape=tuple(data["shape"]),
        dtype=data["dtype"],
        name=data.get("name"),
        class_ids=data.get("class_ids"),
    )


def _upgraded(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with the keys of the current format filled in as older versions meant them."""
    version = data.get("format_version", 1)
    if not isinstance(version, int) or version < 1:
        raise PatchFolderError(f"{where}: format_version {version!r} is not a version number.")
    if version > FORMAT_VERSION:
        raise PatchFolderError(
            f"{where} was written by a newer napari-patchwork "
            f"({data.get('plugin_version')}); update the plugin to read it."
        )
    data = dict(data)
    data["format_version"] = version
    axes = data.get("spatial_axes")
    n_spatial = len(axes) if isinstance(axes, list) else 0
    # format 1: full resolution, and only_foreground did not exist yet
    if data.get("downsample") is None:
        data["downsample"] = [1] * n_spatial
    data["only_foreground"] = bool(data.get("only_foreground", False))
    data.setdefault("pixel_size", data.get("scale"))
    image = data.get("image")
    if (
        "output_shape" not in data
        and isinstance(image, dict)
        and isinstance(image.get("shape"), list)
    ):
        axis = data.get("channel_axis")
        data["output_shape"] = [s for a, s in enumerate(image["shape"]) if a != axis]
    data.setdefault("units", None)
    data.setdefault("n_grid_patches", 0)
    data.setdefault("split_by", "patch")  # before blocked and per-image splits
    data.setdefault("placement", None)
    return data


def read_dataset_info(folder: str | os.PathLike) -> DatasetInfo | None:
    """The :class:`DatasetInfo` of a patch folder of this plugin, or None if it has no
    ``dataset.json`` of ours. A damaged one raises :class:`PatchFolderError`."""
    data = read_dataset_json(folder)
    return None if data is None else DatasetInfo.from_json(data, str(Path(folder) / DATASET_FILE))


def read_dataset_json(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The ``dataset.json`` dict of a patch folder written by this plugin, or None if it has none."""
    path = Path(folder) / DATASET_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("format") != FOLDER_FORMAT:
        return None
    return info


def write_dataset_info(folder: str | os.PathLike, info: DatasetInfo, fsync: bool = False) -> None:
    """Write ``dataset.json`` atomically."""
    text = json.dumps(info.to_json(), indent=2) + "\n"
    write_text_atomic(Path(folder) / DATASET_FILE, text, fsync)
