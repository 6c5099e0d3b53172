"""Multiscale images (pyramids): which levels can be trusted, and which one to read.

GUI-free. A pyramid is a list of arrays, level 0 (full resolution) first: napari
multiscale data, the datasets of an OME-Zarr image, the levels of a pyramidal TIFF /
OME-TIFF / SVS (:func:`napari_patchwork.io.read_levels`). An export at ``downsample``
``f`` (see :mod:`napari_patchwork.resolution`) reads the coarsest level whose factor
``r`` divides ``f`` along every axis, and averages only the remaining ``f / r``.

A level is used only if its factor is certain (:func:`level_factors`): a whole number
per axis, the level's shape ``ceil`` or ``floor`` of level 0's over it (the two
conventions pyramid writers use), its channels those of level 0, and the factor agree
with the one the file claims (OME-Zarr's scale). Anything else leaves the level out,
with a note saying why, so a bad pyramid costs speed, never wrong pixels. A level's
last pixel along an axis where level 0's size is not a multiple of ``r`` covers fewer
source pixels (and writers fill it differently), so patches that reach it are read
from a finer level (:func:`level_for_region`).

What is equal: a level made by area-averaging level 0 gives, after the remaining
averaging, the mean of the same source pixels. Float images agree to float rounding;
integer images were rounded once when the level was made, so they agree within 1
(exactly when ``r == f``: the level pixel is the result).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Pyramid:
    """Levels of one image, level 0 first, and optionally the downsampling factor per
    array axis that each level claims (e.g. from OME-Zarr metadata; None: no claim)."""

    levels: tuple[Any, ...]
    claimed: tuple[tuple[float, ...] | None, ...] | None = None

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a pyramid needs at least one level (the full-resolution image).")
        if self.claimed is not None and len(self.claimed) != len(self.levels):
            raise ValueError(
                f"{len(self.claimed)} claimed factors for {len(self.levels)} pyramid levels."
            )

    @property
    def level0(self) -> Any:
        return self.levels[0]


def as_pyramid(image: Any) -> Pyramid | None:
    """``image`` as a :class:`Pyramid` if it is one (a Pyramid, or napari multiscale data: a
    list or tuple of arrays, level 0 first), else None."""
    if isinstance(image, Pyramid):
        return image
    if isinstance(image, (list, tuple)) and image and all(_is_array(a) for a in image):
        return Pyramid(tuple(image))
    return None


def _is_array(value: Any) -> bool:
    return all(hasattr(value, a) for a in ("shape", "dtype", "__getitem__"))


def level_factors(
    shape0: Sequence[int],
    shape: Sequence[int],
    channel_axis: int | None,
    claimed: Sequence[float] | None = None,
) -> tuple[tuple[int, ...] | None, str]:
    """The downsampling factor per spatial axis of a level of ``shape`` under level 0 of
    ``shape0``, and ``""``; or None and why the level cannot be used.

    The factor along an axis is the whole number ``r`` with ``shape == ceil(shape0 / r)``
    or ``floor(shape0 / r)``; when no such ``r`` exists, or two do (tiny levels), the
    level is left out. ``claimed`` (per array axis, e.g. OME-Zarr scales over level
    0's) must agree.
    """
    shape0, shape = [int(s) for s in shape0], [int(s) for s in shape]
    if channel_axis is not None:
        channel_axis %= len(shape0)
    if len(shape) != len(shape0):
        return None, f"it has {len(shape)} axes, level 0 has {len(shape0)}"
    if channel_axis is not None and shape[channel_axis] != shape0[channel_axis]:
        return None, f"it has {shape[channel_axis]} channels, level 0 {shape0[channel_axis]}"
    factors = []
    for axis, (s0, s) in enumerate(zip(shape0, shape)):
        if axis == channel_axis:
            continue
        fits = [
            r
            for r in {max(1, s0 // max(s, 1)), -(-s0 // max(s, 1))}
            if s >= 1 and s in (s0 // r, -(-s0 // r))
        ]
        if len(fits) != 1:
            why = "no" if not fits else "no single"
            return None, f"its size {s} along axis {axis} is {why} whole-number fraction of {s0}"
        factors.append(fits[0])
    if claimed is not None:
        claims = [c for axis, c in enumerate(claimed) if axis != channel_axis]
        if len(claims) != len(factors) or any(
            not np.isclose(c, r, rtol=1e-3) for c, r in zip(claims, factors)
        ):
            return None, (
                f"its metadata claims factors {[float(c) for c in claims]}, its shape gives "
                f"{factors}"
            )
    return tuple(factors), ""


@dataclass(frozen=True)
class LevelChoice:
    """Which levels an export reads: ``levels`` are ``(index, factors)`` pairs, coarsest
    first, each dividing the export's factors (level 0 always among them); ``notes`` say
    which levels were left out and why."""

    levels: tuple[tuple[int, tuple[int, ...]], ...]
    notes: tuple[str, ...]

    @property
    def best(self) -> tuple[int, tuple[int, ...]]:
        return self.levels[0]

    @property
    def description(self) -> str:
        """``"read from pyramid level 2 (4 x 4)"`` (nothing for level 0), then the notes."""
        index, factors = self.best
        text = "" if index == 0 else f"read from pyramid level {index} ({_x(factors)})"
        if self.notes:
            text = "; ".join(t for t in (text, *self.notes) if t)
        return text


def _x(values: Sequence[int]) -> str:
    return " x ".join(str(int(v)) for v in values)


def choose_levels(
    pyramid: Pyramid, channel_axis: int | None, factors: Sequence[int]
) -> LevelChoice | None:
    """The levels an export at ``factors`` (per spatial axis) reads, coarsest first; None
    for an image of one level or an export at full resolution (level 0 alone).

    A level qualifies when its factor is certain (:func:`level_factors`) and divides
    ``factors`` along every axis (so only whole blocks of its pixels are averaged).
    Levels whose factor is not certain are named in the notes.
    """
    if len(pyramid.levels) < 2 or all(f == 1 for f in factors):
        return None
    shape0 = tuple(pyramid.level0.shape)
    n_spatial = len(shape0) - (channel_axis is not None)
    usable: list[tuple[int, tuple[int, ...]]] = [(0, (1,) * n_spatial)]
    notes = []
    dtype0 = np.dtype(pyramid.level0.dtype)
    for index, level in enumerate(pyramid.levels[1:], start=1):
        claimed = None if pyramid.claimed is None else pyramid.claimed[index]
        level_f, why = level_factors(shape0, tuple(level.shape), channel_axis, claimed)
        if level_f is not None and np.dtype(level.dtype) != dtype0:
            level_f, why = None, f"its dtype is {np.dtype(level.dtype)}, level 0's {dtype0}"
        if level_f is None:
            notes.append(f"pyramid level {index} not used: {why}; level 0 read instead")
        elif all(f % r == 0 for f, r in zip(factors, level_f)):
            usable.append((index, level_f))
    usable.sort(key=lambda item: (-int(np.prod(item[1])), item[0]))
    return LevelChoice(tuple(usable), tuple(notes))


def level_for_region(
    choice: LevelChoice,
    pyramid: Pyramid,
    start: Sequence[int],
    stop: Sequence[int],
    channel_axis: int | None,
) -> tuple[int, tuple[int, ...]]:
    """The coarsest chosen level that holds the source region ``[start, stop)`` (spatial,
    level-0 pixels) as whole pixels: ``start`` and ``stop`` multiples of its factor ``r``,
    within the level's first ``floor(size0 / r)`` pixels (the ones that average ``r``
    source pixels each). Level 0 always does."""
    shape0 = [s for axis, s in enumerate(pyramid.level0.shape) if axis != channel_axis]
    for index, factors in choice.levels:
        shape = [s for axis, s in enumerate(pyramid.levels[index].shape) if axis != channel_axis]
        if all(
            a % r == 0 and b % r == 0 and b // r <= min(s, s0 // r)
            for a, b, r, s, s0 in zip(start, stop, factors, shape, shape0)
        ):
            return index, factors
    return 0, (1,) * len(start)


def level_region(
    start: Sequence[int],
    stop: Sequence[int],
    factors: Sequence[int],
    ndim: int,
    channel_axis: int | None,
) -> tuple[slice, ...]:
    """Slices of the source region ``[start, stop)`` (spatial, level-0 pixels) in a level
    of ``factors`` with ``ndim`` axes (channel axis whole)."""
    region = [slice(a // r, -(-b // r)) for a, b, r in zip(start, stop, factors)]
    if channel_axis is not None and ndim > len(region):
        region.insert(channel_axis, slice(None))
    return tuple(region)
