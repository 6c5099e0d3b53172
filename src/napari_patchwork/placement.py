"""Placements: where patches go besides a regular grid (around objects, at points, at
random, balanced by class).

Pure numpy/scipy, no napari, no Qt. A :class:`Placement` (frozen, checked when made)
says how; :func:`place` returns a :class:`PlacedPatches` whose ``boxes`` have the
representation of :attr:`napari_patchwork.grid.PatchGrid.boxes`: ``(N, 2, ndim)``
int64 starts (inclusive) and stops (exclusive) per spatial axis, in *output* pixels
(the image's pixels divided by the export's downsampling), so export, filters,
resolution, split and stitch treat placed patches exactly like grid patches.

Positions are pixel centres: pixel ``i`` spans ``i - 0.5 .. i + 0.5``. A patch of
``p`` pixels centred on a point ``c`` starts at ``round(c) - p // 2``; its *centre
pixel* (``start + p // 2``) is the pixel holding ``c``.

The edge mode treats a placed patch that crosses the image border as the grid treats
its last patch, with one difference forced by the folder format (which pads only after
the end of an axis):

* ``drop``: the patch is left out (counted in :attr:`PlacedPatches.notes`);
* ``shift``: it is moved inward to lie inside the image;
* ``pad``: past the end it is padded; before pixel 0 it is moved to begin at 0;
* ``partial``: it is clipped to the image (smaller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

import numpy as np

from napari_patchwork._common import fraction
from napari_patchwork.grid import EDGE_MODES, PatchGrid

PlacementKind = Literal["grid", "objects", "points", "random", "balanced"]
PLACEMENT_KINDS: tuple[str, ...] = get_args(PlacementKind)
CENTRES: tuple[str, ...] = ("centroid", "bbox")
FEATURE_COLUMNS: tuple[str, ...] = ("instance_id", "area", "class", "point")
"""Per-patch values a placement records (manifest columns, grid layer features)."""
MAX_PLACED = 50_000_000


class PlacementError(ValueError):
    """Bad placement options or input; the message says what to change."""


@dataclass(frozen=True, kw_only=True)
class Placement:
    """How to place patches (see the module docstring).

    kind : ``grid`` (the regular grid), ``objects`` (one patch per label instance of
        the labels), ``points`` (one per point), ``random`` (``n`` patches at seeded
        random positions) or ``balanced`` (``n`` patches per class of the labels).
    n : ``random``: how many patches; ``balanced``: how many per class.
    classes : ``objects``: keep only instances whose label (``connected=False``: the
        instance id itself; ``connected=True``: the class value) is one of these;
        ``balanced``: the classes to sample (default: every non-zero label).
    points : ``points``: ``(N, ndim)`` positions in source pixels (array axis order).
    seed : ``random`` and ``balanced``: the same seed gives the same patches.
    min_foreground : ``random``: only patches whose share of non-zero label pixels is
        at least this.
    max_overlap : ``random``: the largest share of a patch's area another patch may
        cover (1 = no cap; identical patches are never placed).
    centre : ``objects``: centre on the ``centroid`` or the bounding-box centre (``bbox``).
    connected : ``objects``: the labels are a *semantic* mask (one value per class):
        each connected region of one value is an object, its value the ``class``.
        Default False: an *instance* mask (cellpose, StarDist): each label id is one object.
    """

    kind: str = "grid"
    n: int | None = None
    classes: tuple[int, ...] | None = None
    points: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)
    seed: int = 0
    min_foreground: float = 0.0
    max_overlap: float = 1.0
    centre: str = "centroid"
    connected: bool = False

    def __post_init__(self) -> None:
        if self.kind not in PLACEMENT_KINDS:
            raise PlacementError(
                f"placement {self.kind!r} is not known; choose one of {', '.join(PLACEMENT_KINDS)}."
            )
        if self.centre not in CENTRES:
            raise PlacementError(f"centre={self.centre!r}: use 'centroid' or 'bbox'.")
        set_ = object.__setattr__
        set_(self, "seed", _whole(self.seed, "seed", None))
        for name in ("min_foreground", "max_overlap"):
            set_(self, name, fraction(getattr(self, name), name, PlacementError))
        if self.kind in ("random", "balanced"):
            what = "patches" if self.kind == "random" else "patches per class"
            if self.n is None:
                raise PlacementError(f"placement {self.kind!r} needs n, the number of {what}.")
            set_(self, "n", _whole(self.n, "n", 1))
        elif self.n is not None:
            raise PlacementError(
                f"n applies to 'random' and 'balanced' placements, not {self.kind!r}."
            )
        if self.classes is not None:
            if self.kind not in ("objects", "balanced"):
                raise PlacementError("classes apply to 'objects' and 'balanced' placements only.")
            values = [self.classes] if np.ndim(self.classes) == 0 else list(self.classes)
            if not values:
                raise PlacementError("classes is empty: give label ids, or None for all.")
            set_(self, "classes", tuple(sorted({_whole(v, "classes", 0) for v in values})))
        if self.kind == "points":
            set_(self, "points", _points_tuple(self.points))
        elif self.points is not None:
            raise PlacementError(f"points apply to the 'points' placement, not {self.kind!r}.")

    @property
    def is_grid(self) -> bool:
        return self.kind == "grid"

    @property
    def needs_labels(self) -> bool:
        """Whether :func:`place` needs a labels array."""
        return self.kind in ("objects", "balanced") or (
            self.kind == "random" and self.min_foreground > 0
        )

    def points_array(self) -> np.ndarray:
        """The points as an ``(N, ndim)`` float64 array (``(0, 0)`` without points)."""
        return np.asarray(self.points or np.zeros((0, 0)), dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        """What ``dataset.json`` records (the points themselves only as their count)."""
        data = {
            "kind": self.kind,
            "n": self.n,
            "classes": None if self.classes is None else list(self.classes),
            "seed": self.seed,
            "min_foreground": self.min_foreground,
            "max_overlap": self.max_overlap,
            "centre": self.centre,
            "connected": self.connected,
        }
        if self.kind == "points":
            data["n_points"] = len(self.points or ())
        return data

    def replace(self, **changes: Any) -> Placement:
        return replace(self, **changes)

    @classmethod
    def from_json(cls, data: Any, points: Any = None) -> Placement:
        """The placement :meth:`to_json` recorded (with its ``points`` given back)."""
        if not isinstance(data, dict) or "kind" not in data:
            raise PlacementError(f"{data!r} is not a recorded placement.")
        keys = ("kind", "n", "classes", "seed", "min_foreground", "max_overlap", "centre",
                "connected")  # fmt: skip
        return cls(**{k: data[k] for k in keys if k in data}, points=points)


@dataclass(frozen=True)
class PlacedPatches:
    """Placed patch boxes (output pixels, ``(N, 2, ndim)`` int64), one feature array per
    recorded value (see :data:`FEATURE_COLUMNS`), and what could not be placed (``notes``)."""

    placement: Placement
    shape: tuple[int, ...]
    patch_size: tuple[int, ...]
    edge: str
    boxes: np.ndarray
    features: dict[str, np.ndarray]
    notes: tuple[str, ...] = ()

    @property
    def n_patches(self) -> int:
        return int(len(self.boxes))

    def grid(self) -> PatchGrid:
        """The boxes as a :class:`PatchGrid` (``kind`` = the placement's, no grid index)."""
        return PatchGrid(
            shape=self.shape,
            patch_size=self.patch_size,
            stride=self.patch_size,
            edge=self.edge,
            boxes=self.boxes,
            grid_index=np.full((self.n_patches, len(self.shape)), -1, dtype=np.int64),
            kind=self.placement.kind,
        )


def place(
    placement: Placement,
    shape: Sequence[int],
    patch_size: int | Sequence[int],
    edge: str = "drop",
    *,
    labels: Any = None,
    factors: Sequence[int] | None = None,
) -> PlacedPatches:
    """Place patches of ``patch_size`` output pixels on an image of spatial ``shape``
    (source pixels, no channel axis) exported at downsampling ``factors`` (default 1).

    ``labels`` (same spatial shape, integers) is the label mask the ``objects``,
    ``balanced`` and foreground-checked ``random`` placements read. Raises
    :class:`PlacementError` saying what to change.
    """
    from napari_patchwork.placement_sampling import (
        balanced_centres,
        object_centres,
        random_starts,
    )

    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    f = np.ones(ndim, np.int64) if not factors else np.asarray(factors, dtype=np.int64)
    out_shape = tuple(int(v) for v in -(-np.asarray(shape) // f))
    patch = _patch(patch_size, ndim)
    if edge not in EDGE_MODES:
        raise PlacementError(f"edge={edge!r} is not known; choose one of {', '.join(EDGE_MODES)}.")
    if placement.is_grid:
        raise PlacementError("the 'grid' placement is the regular grid: use grid.make_grid.")
    if placement.needs_labels:
        labels = _checked_labels(labels, shape, placement.kind)
    geometry = Geometry(shape, out_shape, patch, edge, f)
    if placement.kind == "random":
        starts, features, notes = random_starts(placement, geometry, labels)
        return _result(placement, geometry, starts, features, notes, keep=None)
    if placement.kind == "points":
        centres = _checked_points(placement.points_array(), shape)
        features = {"point": np.arange(len(centres), dtype=np.int64)}
        notes: tuple[str, ...] = ()
    elif placement.kind == "objects":
        centres, features, notes = object_centres(placement, labels)
    else:
        centres, features, notes = balanced_centres(placement, geometry, labels)
    starts = geometry.starts_of(centres)
    fitted, keep = geometry.fit(starts)
    return _result(placement, geometry, fitted, features, notes, keep)


@dataclass(frozen=True)
class Geometry:
    """The image and patch sizes a placement works in (source and output pixels)."""

    shape: tuple[int, ...]  # source pixels
    out_shape: tuple[int, ...]  # output pixels
    patch: np.ndarray  # output pixels per axis
    edge: str
    factors: np.ndarray

    def starts_of(self, centres: np.ndarray) -> np.ndarray:
        """Output-pixel starts of patches centred on ``centres`` (source pixels, float)."""
        out = (np.asarray(centres, dtype=np.float64) + 0.5) / self.factors - 0.5
        return np.floor(out + 0.5).astype(np.int64) - self.patch // 2

    def fit(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(N, 2, ndim)`` of ``starts`` after the edge mode, and which are kept."""
        size, patch = np.asarray(self.out_shape, np.int64), self.patch
        starts = np.asarray(starts, dtype=np.int64).reshape(-1, len(size))
        keep = np.ones(len(starts), dtype=bool)
        if self.edge == "drop":
            keep = np.all((starts >= 0) & (starts + patch <= size), axis=1)
        elif self.edge == "shift":
            if np.any(size < patch):
                raise PlacementError(
                    f"edge='shift' needs the image ({tuple(size.tolist())} output px) to be at "
                    f"least one patch ({tuple(patch.tolist())} px) on every axis; use a smaller "
                    "patch size or edge='pad'/'partial'."
                )
            starts = np.clip(starts, 0, size - patch)
        elif self.edge == "pad":
            starts = np.clip(starts, 0, np.maximum(size - 1, 0))
        stops = starts + patch
        if self.edge == "partial":
            stops = np.minimum(stops, size)
            starts = np.maximum(starts, 0)
        return np.stack([starts, stops], axis=1), keep


def _result(placement, geometry, boxes_or_starts, features, notes, keep) -> PlacedPatches:
    boxes = np.asarray(boxes_or_starts, dtype=np.int64)
    if keep is None:
        boxes, keep = geometry.fit(boxes)
    dropped = int(len(keep) - np.count_nonzero(keep))
    if dropped:
        notes = (
            *notes,
            f"{dropped} patches crossed the image border and were dropped "
            "(edge='drop'); use edge='shift', 'pad' or 'partial' to keep them.",
        )
    features = {k: np.asarray(v)[keep] for k, v in features.items()}
    return PlacedPatches(
        placement=placement,
        shape=geometry.out_shape,
        patch_size=tuple(int(p) for p in geometry.patch),
        edge=geometry.edge,
        boxes=boxes[keep].reshape(-1, 2, len(geometry.out_shape)),
        features=features,
        notes=tuple(notes),
    )


def world_to_pixels(
    points: Any, scale: Sequence[float] | None = None, translate: Sequence[float] | None = None
) -> np.ndarray:
    """Points in world units (napari's ``data * scale + translate``) as pixel positions."""
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    ndim = pts.shape[1]
    s = np.ones(ndim) if scale is None else np.asarray(scale, dtype=np.float64)[-ndim:]
    t = np.zeros(ndim) if translate is None else np.asarray(translate, dtype=np.float64)[-ndim:]
    if np.any(s == 0):
        raise PlacementError(f"scale {tuple(s)} has a zero: give the image's pixel size.")
    return (pts - t) / s


def read_points_csv(path: Any, ndim: int, pixel_size: Sequence[float] | None = None) -> np.ndarray:
    """Points of a CSV file: one row per point, ``y,x`` (2D) or ``z,y,x`` (3D) columns, an
    optional header row. With ``pixel_size`` (per spatial axis) the values are world units
    and are divided by it; otherwise they are pixels."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PlacementError(f"cannot read the points file {path}: {err}.") from None
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a header
    values = []
    for number, row in enumerate(rows, start=1):
        if len(row) != ndim or not _numeric(row):
            axes = "y,x" if ndim == 2 else "z,y,x" if ndim == 3 else f"{ndim} numbers"
            raise PlacementError(
                f"{path} point {number} is {row!r}; each row must be {axes} (one column per "
                "spatial axis of the image, numbers only)."
            )
        values.append([float(c) for c in row])
    points = np.asarray(values, dtype=np.float64).reshape(-1, ndim)
    if pixel_size is not None:
        points = world_to_pixels(points, scale=pixel_size)
    return points


def _numeric(row: Sequence[str]) -> bool:
    try:
        return all(np.isfinite(float(c)) for c in row)
    except ValueError:
        return False


def _checked_points(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if points.ndim != 2 or (len(points) and points.shape[1] != len(shape)):
        raise PlacementError(
            f"points have {points.shape[-1] if points.ndim == 2 else '?'} coordinates, the "
            f"image has {len(shape)} spatial axes; give one coordinate per axis ({len(shape)})."
        )
    if len(points) == 0:
        raise PlacementError("there are no points: add points (or choose another placement).")
    outside = np.flatnonzero(np.any((points < -0.5) | (points >= np.asarray(shape) - 0.5), axis=1))
    if outside.size:
        p = tuple(round(float(v), 2) for v in points[outside[0]])
        raise PlacementError(
            f"{outside.size} of {len(points)} points lie outside the image {shape} (pixels), "
            f"e.g. point {int(outside[0])} at {p}; are they in world units? Convert them with "
            "the image's pixel size (scale) and translate."
        )
    return points


def _checked_labels(labels: Any, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if labels is None:
        raise PlacementError(
            f"the {kind!r} placement reads a label mask: give labels (a Labels layer, --mask)."
        )
    if tuple(labels.shape) != shape:
        raise PlacementError(
            f"labels shape {tuple(labels.shape)} does not match the image's spatial shape "
            f"{shape}; use labels drawn on this image."
        )
    array = np.asarray(labels)
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer)):
        raise PlacementError(f"labels must hold integers, these are {array.dtype}.")
    return array


def _patch(patch_size: Any, ndim: int) -> np.ndarray:
    values = [patch_size] * ndim if np.ndim(patch_size) == 0 else list(patch_size)
    if len(values) != ndim:
        raise PlacementError(f"patch_size has {len(values)} values; give one per axis ({ndim}).")
    patch = np.asarray([_whole(v, "patch_size", 1) for v in values], dtype=np.int64)
    return patch


def _points_tuple(points: Any) -> tuple[tuple[float, ...], ...]:
    if points is None:
        raise PlacementError("the 'points' placement needs points: an (N, ndim) array.")
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise PlacementError("points must be numbers: an (N, ndim) array.") from None
    if array.ndim != 2 or array.shape[1] < 1:
        raise PlacementError(f"points must be an (N, ndim) array, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise PlacementError("points hold NaN or infinite values; remove those points.")
    if len(array) > MAX_PLACED:
        raise PlacementError(f"{len(array):,} points is more than {MAX_PLACED:,}.")
    return tuple(map(tuple, array.tolist()))


def _whole(value: Any, name: str, low: int | None) -> int:
    number = value
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value):
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)):
        raise PlacementError(f"{name}={value!r}: give a whole number.")
    if low is not None and number < low:
        raise PlacementError(f"{name}={value!r}: give a whole number of at least {low}.")
    if name == "n" and number > MAX_PLACED:
        raise PlacementError(f"n={value!r} is more than {MAX_PLACED:,} patches.")
    return int(number)


__all__ = [
    "CENTRES",
    "FEATURE_COLUMNS",
    "PLACEMENT_KINDS",
    "Geometry",
    "PlacedPatches",
    "Placement",
    "PlacementError",
    "place",
    "read_points_csv",
    "world_to_pixels",
]
