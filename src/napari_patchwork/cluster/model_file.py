"""The cluster model's JSON file: format tag and version, every field checked on load, older
versions upgraded, written atomically.

Nothing read from a model file is trusted: :func:`model_fields` checks types, ranges and
consistency of every field and raises :class:`ClusterError` naming the field, so that a
damaged or hand-edited file can never give NaN centres, a zero scale or a traceback from
numpy. Format versions:

* 1: centres, channel offset/scale, channel axis and scaling, spatial weight/axes/length,
  pixel size, smoothing.
* 2: adds the fitted image's dtype (``image_dtype``) and value range (``value_range``);
  a version-1 file reads with both unknown (None), so no units check is made for it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork._common import atomic_write
from napari_patchwork.cluster.errors import ClusterError
from napari_patchwork.cluster.features import CHANNEL_SCALINGS
from napari_patchwork.cluster.ids import MAX_CLUSTERS

MODEL_FORMAT = "napari-patchwork/cluster-model"
MODEL_FORMAT_VERSION = 2

MAX_MODEL_FILE_BYTES = 256 << 20
"""Larger files are refused before reading (65,535 centres of 64 channels take ~100 MB)."""
MAX_MODEL_CHANNELS = 4096
MAX_MODEL_AXES = 32
"""Spatial axes a model may describe (numpy arrays have at most 64 axes)."""
MODEL_DTYPE_KINDS = "biuf"
"""Image dtypes a model may record: bool, signed and unsigned integers, floats (<= 8 bytes)."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(field: str, what: str, value: Any) -> ClusterError:
    return ClusterError(
        f"the cluster model's '{field}' must be {what}, got {_shown(value)}; "
        f"the file is damaged or was edited: fit and save the model again."
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(data: dict, field: str, *, low: float, strict: bool) -> float:
    value = data[field]
    bound = f"greater than {low:g}" if strict else f"{low:g} or more"
    if (
        not _is_number(value)
        or not math.isfinite(value)
        or value < low
        or (strict and value == low)
    ):
        raise _bad(field, f"a finite number {bound}", value)
    return float(value)


def _numbers(
    data: dict, field: str, *, low: float | None, strict: bool, max_len: int
) -> tuple[float, ...]:
    """A non-empty JSON list of at most ``max_len`` finite numbers, each above ``low``."""
    values = data[field]
    bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
    what = f"a list of 1 to {max_len} finite numbers{bound}"
    if not isinstance(values, list) or not 1 <= len(values) <= max_len:
        raise _bad(field, what, values)
    for value in values:
        if not _is_number(value) or not math.isfinite(value):
            raise _bad(field, what, values)
        if low is not None and (value < low or (strict and value == low)):
            raise _bad(field, what, values)
    return tuple(float(v) for v in values)


def _centers(data: dict, n_features: int) -> np.ndarray:
    """``centers``: k rows of ``n_features`` finite numbers, 2 <= k <= MAX_CLUSTERS."""
    rows = data["centers"]
    if not isinstance(rows, list) or not 2 <= len(rows) <= MAX_CLUSTERS:
        raise _bad("centers", f"a list of 2 to {MAX_CLUSTERS} centres (rows of numbers)", rows)
    for row in rows:
        if not isinstance(row, list) or not all(_is_number(v) for v in row):
            raise _bad("centers", "a list of rows of numbers", row)
        if len(row) != n_features:
            raise ClusterError(
                f"inconsistent cluster model: 'centers' has a row of {len(row)} number(s) but "
                f"the model has {n_features} feature(s) (channels in 'channel_offset' and "
                f"'channel_scale', plus one per 'spatial_axes' entry); the file is damaged."
            )
    with np.errstate(over="ignore"):
        centers = np.array(rows, dtype=np.float32)
    if not np.isfinite(centers).all():
        raise _bad("centers", "finite numbers within float32 range", "NaN, inf or too large")
    return centers


def _channel_axis(data: dict) -> int | None:
    value = data["channel_axis"]
    if value is None:
        return None
    if type(value) is not int or not -64 <= value < 64:
        raise _bad("channel_axis", "null or an axis index from -64 to 63", value)
    return value


def _spatial_axes(data: dict, n_scale: int) -> tuple[int, ...]:
    axes = data["spatial_axes"]
    what = (
        f"a list of distinct increasing negative axis indices from -{n_scale} to -1 "
        f"(one per 'scale' entry at most)"
    )
    if not isinstance(axes, list) or not all(type(a) is int for a in axes):
        raise _bad("spatial_axes", what, axes)
    if any(not -n_scale <= a <= -1 for a in axes) or any(b <= a for a, b in zip(axes, axes[1:])):
        raise _bad("spatial_axes", what, axes)
    return tuple(axes)


def _sigma(data: dict, n_scale: int) -> float | tuple[float, ...]:
    if _is_number(data["sigma"]):
        return _number(data, "sigma", low=0.0, strict=False)
    sigma = _numbers(data, "sigma", low=0.0, strict=False, max_len=MAX_MODEL_AXES)
    if len(sigma) != n_scale:
        raise _bad("sigma", f"one number or {n_scale} (one per 'scale' entry)", data["sigma"])
    return sigma


def _units(data: dict) -> tuple[str | None, tuple[float, float] | None]:
    """``image_dtype`` and ``value_range`` (version 2): both given or both null."""
    name, value_range = data["image_dtype"], data["value_range"]
    if name is None and value_range is None:
        return None, None
    what = "null or the name of a bool, integer or float dtype (e.g. 'uint8')"
    if not isinstance(name, str) or len(name) > 16:
        raise _bad("image_dtype", what, name)
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError, SyntaxError):
        raise _bad("image_dtype", what, name) from None
    if dtype.kind not in MODEL_DTYPE_KINDS or dtype.itemsize > 8:
        raise _bad("image_dtype", what, name)
    numbers = isinstance(value_range, list) and len(value_range) == 2
    numbers = numbers and all(_is_number(v) and math.isfinite(v) for v in value_range)
    if not numbers or not value_range[0] < value_range[1]:
        raise _bad(
            "value_range", "[lowest, highest] finite pixel values, lowest < highest", value_range
        )
    return dtype.name, (float(value_range[0]), float(value_range[1]))


def upgrade(data: dict, version: int) -> dict:
    """A model dict of an older format ``version`` as the current version's dict."""
    if version < 2:
        data = {**data, "image_dtype": None, "value_range": None}
    return data


def model_fields(data: Any) -> dict[str, Any]:
    """The checked :class:`~napari_patchwork.cluster.model.ClusterModel` fields of a model
    dict (older versions upgraded); :class:`ClusterError` naming the first bad field."""
    if not isinstance(data, dict):
        raise ClusterError(f"not a cluster model (expected a JSON object, got {_shown(data)}).")
    if data.get("format") != MODEL_FORMAT:
        raise ClusterError(
            f"not a cluster model (format tag {_shown(data.get('format'))}, "
            f"expected {MODEL_FORMAT!r})."
        )
    if "version" not in data:
        raise ClusterError(
            "the cluster model has no 'version' entry; save it again with ClusterModel.save."
        )
    version = data["version"]
    if type(version) is not int or version < 1:
        raise _bad("version", "a whole number from 1", version)
    if version > MODEL_FORMAT_VERSION:
        raise ClusterError(
            f"cluster model format version {version!r} is newer than this napari-patchwork "
            f"understands ({MODEL_FORMAT_VERSION}); upgrade napari-patchwork."
        )
    data = upgrade(data, version)
    try:
        return _checked_fields(data)
    except KeyError as missing:
        raise ClusterError(
            f"the cluster model has no {missing} entry; save it again with ClusterModel.save."
        ) from None


def _checked_fields(data: dict) -> dict[str, Any]:
    offset = _numbers(data, "channel_offset", low=None, strict=False, max_len=MAX_MODEL_CHANNELS)
    scale_c = _numbers(data, "channel_scale", low=0.0, strict=True, max_len=MAX_MODEL_CHANNELS)
    if len(offset) != len(scale_c):
        raise ClusterError(
            f"inconsistent cluster model: 'channel_offset' has {len(offset)} channel(s) but "
            f"'channel_scale' {len(scale_c)}; the file is damaged."
        )
    scale = _numbers(data, "scale", low=0.0, strict=True, max_len=MAX_MODEL_AXES)
    spatial_axes = _spatial_axes(data, len(scale))
    centers = _centers(data, len(offset) + len(spatial_axes))
    channel_offset = np.array(offset, dtype=np.float64)
    channel_scale = np.array(scale_c, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        in_image_units = centers[:, : len(offset)] * channel_scale + channel_offset
    if not np.isfinite(in_image_units).all():
        raise _bad("channel_scale", "small enough for finite centres in image units", scale_c)
    scaling = data["channel_scaling"]
    if not isinstance(scaling, str) or scaling not in CHANNEL_SCALINGS:
        raise _bad("channel_scaling", f"one of {', '.join(CHANNEL_SCALINGS)}", scaling)
    image_dtype, value_range = _units(data)
    return {
        "centers": centers,
        "channel_offset": channel_offset,
        "channel_scale": channel_scale,
        "channel_axis": _channel_axis(data),
        "channel_scaling": scaling,
        "spatial_weight": _number(data, "spatial_weight", low=0.0, strict=False),
        "spatial_axes": spatial_axes,
        "spatial_length": _number(data, "spatial_length", low=0.0, strict=True),
        "scale": scale,
        "sigma": _sigma(data, len(scale)),
        "image_dtype": image_dtype,
        "value_range": value_range,
    }


def read_model_json(path: str | os.PathLike) -> Any:
    """The parsed JSON of a model file; :class:`ClusterError` for anything unreadable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_FILE_BYTES:
            raise ClusterError(
                f"{path} has {size:,} bytes, more than a cluster model can have "
                f"({MAX_MODEL_FILE_BYTES:,}); choose the model's JSON file."
            )
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, ...
        raise ClusterError(f"{path} is not a JSON cluster model ({_shown(str(err))}).") from None
    except OSError as err:
        raise ClusterError(
            f"cannot read the cluster model {path}: {err.strerror or err}; check the path."
        ) from None


def write_json_atomic(path: str | os.PathLike, data: Any, *, overwrite: bool = False) -> Path:
    """Write ``data`` as JSON to ``path`` atomically: a temporary file in the same folder,
    flushed to disk, then renamed. An existing file is never replaced unless ``overwrite``
    (FileExistsError), even if another process creates it meanwhile; a failed write leaves
    the old file (if any) untouched and no temporary file behind."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ClusterError(f"cannot write {path}: the folder {folder} does not exist; create it.")
    if path.is_dir():
        raise ClusterError(f"cannot write {path}: it is a folder; give a file name.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; choose another name or pass overwrite=True.")
    text = json.dumps(data, indent=1, allow_nan=False)
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), fsync=True, replace=overwrite)
    return path
