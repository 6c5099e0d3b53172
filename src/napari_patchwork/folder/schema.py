"""The checks a ``dataset.json`` passes before anything it claims is used.

A folder can come from anywhere (downloaded, edited by hand, half-synced), so every
value is checked for its type, its range and its agreement with the other values
before a grid is laid or an array allocated: a damaged or hostile file is a
:class:`~napari_patchwork.folder.errors.PatchFolderError` naming the key, never a
traceback from numpy and never a multi-gigabyte allocation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_patchwork.folder.errors import PatchFolderError
from napari_patchwork.folder.names import CONTAINER_FORMATS, FILE_FORMATS, spatial_axis_names

MAX_SIDE = 2**31
"""The largest size along one axis that a folder may claim (pixels)."""
MAX_CHANNELS = 65_536
MAX_GRID_PATCHES = 50_000_000
"""More patches than any slide gives at a sensible patch size: a larger claim is damage."""
MAX_TEXT = 4096
"""The longest string value (a layer name, a stem, a split name)."""
IMAGE_DTYPES = frozenset(
    np.dtype(f"{order}{kind}").str
    for order in "<>|="
    for kind in ("b1", "u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f2", "f4", "f8")
)
"""numpy ``dtype.str`` values an image may have (numbers and bool, no objects or strings)."""
MASK_DTYPES = frozenset(d for d in IMAGE_DTYPES if np.dtype(d).kind in "bui")
EDGES = ("drop", "pad", "shift", "partial")
STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_dataset(data: dict[str, Any], where: str) -> None:
    """Raise :class:`PatchFolderError` naming the first key whose value is wrong.

    ``data`` is an upgraded ``dataset.json`` dict (all keys of the current format).
    """
    check = _Checker(data, where)
    shape = check.ints_list("image", "shape", low=1, high=MAX_SIDE, length=(1, 5))
    check.dtype("image", IMAGE_DTYPES)
    check.text_or_none("image", "name")
    axis = check.value("channel_axis", _optional_int(0, len(shape) - 1))
    spatial = [s for a, s in enumerate(shape) if a != axis]
    n = len(spatial)
    if not 1 <= n <= 4:
        check.fail("image", f"has {n} spatial axes; a patch folder has 1 to 4")
    if axis is not None and shape[axis] > MAX_CHANNELS:
        check.fail("image", f"claims {shape[axis]} channels (at most {MAX_CHANNELS})")
    if check.value("spatial_axes", _is_list) != list(spatial_axis_names(n)):
        check.fail("spatial_axes", f"must be {list(spatial_axis_names(n))} for this image")
    if data["mask"] is not None:
        mask_shape = check.ints_list("mask", "shape", low=1, high=MAX_SIDE, length=(n, n))
        if mask_shape != spatial:
            check.fail("mask", f"shape {mask_shape} is not the image's spatial shape {spatial}")
        check.dtype("mask", MASK_DTYPES)
        check.text_or_none("mask", "name")
    patch = check.ints("patch_size", n, low=1, high=MAX_SIDE)
    stride = check.ints("stride", n, low=1, high=MAX_SIDE)
    factors = check.ints("downsample", n, low=1, high=MAX_SIDE)
    output = [math.ceil(s / f) for s, f in zip(spatial, factors)]
    if check.ints("output_shape", n, low=1, high=MAX_SIDE) != output:
        check.fail("output_shape", f"must be {output}: the image shape over the downsampling")
    edge = check.value("edge", _choice(EDGES))
    if check.value("placement", _placement) is not None:
        # placed patches: each box is checked against the image by the reader
        n_grid = check.value("n_grid_patches", lambda v: _is_int(v) and 0 <= v <= MAX_GRID_PATCHES)
        if stride != patch:
            check.fail("stride", f"must be the patch size {patch} for placed patches")
        _check_settings(check, n, n_grid)
        return
    n_grid = grid_size(output, patch, stride, edge)
    if n_grid > MAX_GRID_PATCHES:
        check.fail("patch_size", f"gives {n_grid:,} patches (at most {MAX_GRID_PATCHES:,})")
    if check.value("n_grid_patches", _optional_int(0, MAX_GRID_PATCHES)) not in (0, n_grid):
        check.fail("n_grid_patches", f"must be {n_grid} for this image and patch size")
    _check_settings(check, n, n_grid)


def _check_settings(check: _Checker, n: int, n_grid: int) -> None:
    """The keys that do not shape the grid."""
    fmt = check.value("file_format", _choice(tuple(FILE_FORMATS)))
    compressions = (None, "zstd") if fmt in CONTAINER_FORMATS else (None, "zlib")
    check.value("compression", _choice(compressions))
    if fmt in CONTAINER_FORMATS:
        _check_arrays(check)
    elif check.data.get("arrays") is not None:
        check.fail("arrays", f"must be absent: {fmt} folders hold patch files")
    check.value("stem", lambda v: isinstance(v, str) and len(v) < MAX_TEXT and STEM.fullmatch(v))
    check.value(
        "pad_mode", lambda v: v is None or v in ("constant", "reflect", "symmetric", "edge")
    )
    check.value("pad_value", lambda v: v is None or _finite(v))
    for key in ("relabel", "only_foreground", "rgb", "complete"):
        check.value(key, lambda v: isinstance(v, bool))
    check.value("min_foreground", lambda v: _finite(v) and 0 <= v <= 1)
    check.value("min_std", lambda v: v is None or (_finite(v) and v >= 0))
    check.value("seed", _optional_int(-(2**63), 2**63 - 1))
    check.value("indices", lambda v: v is None or _int_list(v, 0, max(n_grid - 1, 0)))
    check.value("split", _split)
    check.value("split_by", _choice(("patch", "blocks", "image")))
    check.value("block_size", lambda v: v is None or (_int_list(v, 1, MAX_SIDE) and len(v) == n))
    check.value("n_buffer", _optional_int(0, n_grid))
    check.value("axes", lambda v: isinstance(v, str) and len(v) <= 5)
    for key in ("scale", "translate", "pixel_size"):
        check.value(
            key, lambda v: v is None or (_is_list(v) and len(v) == n and all(map(_finite, v)))
        )
    check.value(
        "units",
        lambda v: (
            v is None
            or (
                _is_list(v)
                and len(v) == n
                and all(u is None or (isinstance(u, str) and len(u) < 64) for u in v)
            )
        ),
    )
    check.value("n_patches", _optional_int(0, n_grid))
    check.value("plugin_version", lambda v: isinstance(v, str) and len(v) < 64)


def _check_arrays(check: _Checker) -> None:
    """The zarr container's names and shard size (the arrays themselves are checked
    against them when read: :meth:`~napari_patchwork.folder.zarr_arrays.PatchArray.check`)."""
    from napari_patchwork.folder.zarr_arrays import IMAGES_ARRAY, MASKS_ARRAY, MAX_SHARD_PATCHES

    if check.data.get("format_version", 1) < 3:
        check.fail("format_version", "must be at least 3 for a zarr container")
    arrays = check.value("arrays", lambda v: isinstance(v, dict))
    mask = MASKS_ARRAY if check.data.get("mask") is not None else None
    wanted = {"image": IMAGES_ARRAY, "mask": mask}
    for key, name in wanted.items():
        if arrays.get(key) != name:
            check.fail(f"arrays.{key}", f"must be {name!r}, not {_short(arrays.get(key))}")
    shard = arrays.get("shard_patches")
    if not (_is_int(shard) and 1 <= shard <= MAX_SHARD_PATCHES):
        check.fail("arrays.shard_patches", f"must be 1 to {MAX_SHARD_PATCHES}, not {_short(shard)}")
    if set(arrays) != {"image", "mask", "shard_patches"}:
        check.fail("arrays", f"has unknown keys {sorted(set(arrays) - set(wanted))}")
    if check.data.get("edge") == "partial":
        check.fail("edge", "cannot be 'partial' in a zarr container (its patches share one shape)")


def grid_size(shape: list[int], patch: list[int], stride: list[int], edge: str) -> int:
    """How many patches :func:`napari_patchwork.grid.make_grid` lays for these sizes,
    counted without laying them (a claimed huge image costs nothing to check)."""
    count = 1
    for size, p, s in zip(shape, patch, stride):
        count *= _starts_along(size, p, s, edge)
    return count


def _starts_along(size: int, patch: int, stride: int, edge: str) -> int:
    if edge == "drop":
        return 0 if size < patch else (size - patch) // stride + 1
    if size <= patch:
        return 1
    kept = min(-(-(size - patch) // stride) + 1, -(-size // stride))  # starts inside the image
    if edge != "shift":
        return kept
    below = -(-(size - patch) // stride)  # starts before size - patch stay; the rest become it
    return min(kept, below) + (1 if kept > below else 0)


class _Checker:
    """Checks values of ``data``; the first wrong one raises, naming ``where`` and the key."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data, self.where = data, where

    def fail(self, key: str, problem: str) -> None:
        raise PatchFolderError(f"{self.where}: {key} {problem}; export again.")

    def value(self, key: str, ok: Callable[[Any], Any]) -> Any:
        value = self.data.get(key)
        if not ok(value):
            self.fail(key, f"has the wrong value {_short(value)}")
        return value

    def ints(self, key: str, n: int, *, low: int, high: int) -> list[int]:
        value = self.data.get(key)
        if not (_int_list(value, low, high) and len(value) == n):
            self.fail(key, f"must be {n} whole numbers from {low} to {high}, not {_short(value)}")
        return list(value)

    def ints_list(self, key: str, sub: str, *, low: int, high: int, length: tuple) -> list[int]:
        value = self._part(key).get(sub)
        if not (_int_list(value, low, high) and length[0] <= len(value) <= length[1]):
            self.fail(f"{key}.{sub}", f"has the wrong value {_short(value)}")
        return list(value)

    def dtype(self, key: str, allowed: frozenset[str]) -> None:
        value = self._part(key).get("dtype")
        if not (isinstance(value, str) and value in allowed):
            self.fail(f"{key}.dtype", f"{_short(value)} is not a dtype patch folders hold")

    def text_or_none(self, key: str, sub: str) -> None:
        value = self._part(key).get(sub)
        if value is not None and not (isinstance(value, str) and len(value) < MAX_TEXT):
            self.fail(f"{key}.{sub}", f"has the wrong value {_short(value)}")

    def _part(self, key: str) -> dict[str, Any]:
        part = self.data.get(key)
        if not isinstance(part, dict):
            self.fail(key, f"must be an object with shape and dtype, not {_short(part)}")
        return part


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _choice(options: tuple) -> Callable[[Any], bool]:
    return lambda v: (v is None or isinstance(v, str)) and v in options


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: Any, low: int, high: int) -> bool:
    return _is_list(value) and all(_is_int(v) and low <= v <= high for v in value)


def _optional_int(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: v is None or (_is_int(v) and low <= v <= high)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


PLACEMENT_KEYS = {
    "kind": lambda v: v in ("objects", "points", "random", "balanced"),
    "n": _optional_int(1, MAX_GRID_PATCHES),
    "classes": lambda v: v is None or (_int_list(v, 0, 2**63 - 1) and 0 < len(v) <= 100_000),
    "seed": _optional_int(-(2**63), 2**63 - 1),
    "min_foreground": lambda v: _finite(v) and 0 <= v <= 1,
    "max_overlap": lambda v: _finite(v) and 0 <= v <= 1,
    "centre": lambda v: v in ("centroid", "bbox"),
    "connected": lambda v: isinstance(v, bool),
    "n_points": _optional_int(0, MAX_GRID_PATCHES),
}


def _placement(value: Any) -> bool:
    """None (the regular grid) or a placement's record (placement.Placement.to_json)."""
    if value is None:
        return True
    return (
        isinstance(value, dict)
        and set(value) - {"n_points"} == set(PLACEMENT_KEYS) - {"n_points"}
        and set(value) <= set(PLACEMENT_KEYS)
        and all(PLACEMENT_KEYS[k](v) for k, v in value.items())
    )


def _split(value: Any) -> bool:
    if value is None:
        return True
    return (
        isinstance(value, dict)
        and len(value) <= 16
        and all(
            isinstance(k, str) and 0 < len(k) < 64 and _finite(v) and 0 <= v <= 1
            for k, v in value.items()
        )
    )
