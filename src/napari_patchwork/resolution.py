"""Export at a lower resolution: integer block factors, area-averaged images, mode-reduced masks.

GUI-free (numpy only). A *factor* ``f`` along a spatial axis turns every block of
``f`` source pixels into one output pixel; an image of ``S`` pixels along that axis
becomes ``ceil(S / f)`` output pixels, the last block holding the ``S % f``
pixels left over (if any), so no source pixel is dropped.

Factors are whole numbers: then every output pixel is the exact average (or the
exact majority label) of a block of source pixels. Non-integer factors are
refused (see :func:`resolve_factors`).

Rules
-----
Images (:func:`downsample_mean`): each output pixel is the mean of its block
(area averaging), per channel; the dtype is kept.

* integer images: the exact mean rounded half to even (2.5 -> 2, 3.5 -> 4);
* bool images: the majority value, an exact tie gives False (half to even);
* float (and complex) images: the mean computed in float64, then cast to the dtype.

Masks (:func:`downsample_mode`): each output pixel is the most frequent label of
its block (the mode); ties go to the **lowest** label id. Labels are never mixed
or interpolated, so every output id occurs in its source block.

Transforms (:func:`downsampled_transform`): output pixel ``j`` covers source
pixels ``j*f .. j*f + f - 1``; its centre is source pixel ``j*f + (f - 1) / 2``.
So the output layer gets ``scale * f`` and ``translate + (f - 1) / 2 * scale``
to lie on top of the source image in napari (exact for every full block; the
short last block, if any, is drawn as a full one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FACTOR_TOLERANCE = 1e-3
"""A ``pixel_size / scale`` within this relative distance of a whole number counts as it
(recorded scales such as 0.2500001 are rounding noise); any other ratio is refused."""


class ResolutionError(ValueError):
    """The resolution options cannot be met; the message says what to change."""


def _per_axis(values: float | Sequence[float], n_spatial: int, name: str) -> list[float | None]:
    """One value per spatial axis: a single number applies to y and x (the last two
    axes); leading axes then get None (full resolution)."""
    if np.ndim(values) == 0:
        single = float(values)  # type: ignore[arg-type]
        return [None] * max(n_spatial - 2, 0) + [single] * min(n_spatial, 2)
    values = [float(v) for v in values]  # type: ignore[union-attr]
    if len(values) != n_spatial:
        raise ResolutionError(
            f"{name} has {len(values)} values; give one number (for y and x) or one per "
            f"spatial axis ({n_spatial})."
        )
    return values


def _whole(value: float, tolerance: float) -> int | None:
    nearest = round(value)
    return int(nearest) if nearest >= 1 and abs(value - nearest) <= tolerance * nearest else None


def resolve_factors(
    n_spatial: int,
    *,
    downsample: float | Sequence[float] | None = None,
    pixel_size: float | Sequence[float] | None = None,
    scale: Sequence[float] | None = None,
) -> tuple[int, ...]:
    """Integer downsampling factors per spatial axis from ``downsample`` or ``pixel_size``.

    Parameters
    ----------
    n_spatial : number of spatial axes.
    downsample : factor >= 1 (whole number), one for y and x or one per spatial axis.
        A single number leaves leading axes (z, t) at full resolution.
    pixel_size : target output pixel size in the layer's physical units (the units of
        ``scale``), one for y and x or one per spatial axis; needs ``scale``.
    scale : source pixel size per spatial axis (the image layer's scale).

    Returns ``(1,) * n_spatial`` when neither is given. Raises
    :class:`ResolutionError` if both are given, a factor is below 1 (that would
    upsample) or not a whole number.
    """
    if downsample is not None and pixel_size is not None:
        raise ResolutionError(
            "give downsample or pixel_size, not both (pixel_size / scale is the factor)."
        )
    if pixel_size is not None:
        if scale is None:
            raise ResolutionError(
                "pixel_size needs the image's pixel size (scale); pass scale, or give "
                "downsample instead."
            )
        scale = [float(s) for s in scale]
        if len(scale) != n_spatial:
            raise ResolutionError(
                f"scale has {len(scale)} values; give one per spatial axis ({n_spatial})."
            )
        if not all(np.isfinite(s) and s > 0 for s in scale):
            raise ResolutionError(
                f"scale {tuple(scale)} must be positive pixel sizes to convert pixel_size into a "
                "downsampling factor; fix the layer's scale or give downsample instead."
            )
        targets = _per_axis(pixel_size, n_spatial, "pixel_size")
        return tuple(
            1 if target is None else _pixel_size_factor(target, source, axis)
            for axis, (target, source) in enumerate(zip(targets, scale))
        )
    if downsample is None:
        return (1,) * n_spatial
    factors = []
    for value in _per_axis(downsample, n_spatial, "downsample"):
        if value is None:
            factors.append(1)
            continue
        factor = _whole(value, 0.0) if np.isfinite(value) else None
        if factor is None:
            raise ResolutionError(
                f"downsample={value:g}: give a whole number >= 1 (1 = full resolution, "
                "2 = half the pixels along y and x); other factors would mix pixels unevenly."
            )
        factors.append(factor)
    return tuple(factors)


def _pixel_size_factor(target: float, source: float, axis: int) -> int:
    """The whole downsampling factor that turns pixels of ``source`` into ``target``."""
    if not (np.isfinite(target) and target > 0):
        raise ResolutionError(f"pixel_size must be > 0, got {target}.")
    ratio = target / source
    if ratio < 1 - FACTOR_TOLERANCE:
        raise ResolutionError(
            f"pixel_size {target:g} is smaller than the image's pixel size "
            f"{source:g} on axis {axis}: exports can only lower the resolution; "
            f"use a pixel_size >= {source:g}."
        )
    factor = _whole(ratio, FACTOR_TOLERANCE)
    if factor is None:
        low = max(int(np.floor(ratio)), 1)
        raise ResolutionError(
            f"pixel_size {target:g} is {ratio:.4g} source pixels of {source:g} on axis "
            f"{axis}; only whole-number factors average exact pixel blocks: use "
            f"pixel_size={low * source:g} (downsample {low}) or "
            f"pixel_size={(low + 1) * source:g} (downsample {low + 1})."
        )
    return factor


def downsampled_shape(spatial_shape: Sequence[int], factors: Sequence[int]) -> tuple[int, ...]:
    """Output spatial shape: ``ceil(S / f)`` per axis (the last block may be short)."""
    return tuple(-(-int(s) // int(f)) for s, f in zip(spatial_shape, factors))


def downsampled_transform(
    scale: Sequence[float] | None, translate: Sequence[float] | None, factors: Sequence[int]
) -> tuple[list[float], list[float]]:
    """Layer ``scale``/``translate`` (spatial axes) of the output pixels, so they lie on the source.

    ``scale * f`` and ``translate + (f - 1) / 2 * scale``: each output pixel centre
    lies on the centre of its source block. Missing transforms are the identity.
    """
    n = len(factors)
    scale = [1.0] * n if scale is None else [float(s) for s in scale]
    translate = [0.0] * n if translate is None else [float(t) for t in translate]
    return (
        [s * f for s, f in zip(scale, factors)],
        [t + (f - 1) / 2 * s for t, s, f in zip(translate, scale, factors)],
    )


def _spatial_axes(ndim: int, channel_axis: int | None) -> list[int]:
    return [a for a in range(ndim) if a != channel_axis]


def _take(array: np.ndarray, axis: int, index: slice) -> np.ndarray:
    return array[(slice(None),) * axis + (index,)]


def _block_sums(
    array: np.ndarray, factors: Sequence[int], axes: Sequence[int], dtype
) -> np.ndarray:
    """Sums over blocks of ``factors`` along ``axes`` (short last blocks included), in ``dtype``.

    Adds the ``f`` strided views of each axis in turn: about 10x faster than a
    reshape-sum over several axes, and it handles the short last block.
    """
    out = array
    for axis, f in zip(axes, factors):
        if f == 1:
            continue
        n_blocks = -(-out.shape[axis] // f)
        acc = _take(out, axis, slice(0, None, f)).astype(dtype)  # a copy: always n_blocks long
        for k in range(1, f):
            part = _take(out, axis, slice(k, None, f))
            _take(acc, axis, slice(0, part.shape[axis]))[...] += part
        assert acc.shape[axis] == n_blocks
        out = acc
    return out if out is not array else array.astype(dtype)


def _block_counts(
    shape: Sequence[int], factors: Sequence[int], axes: Sequence[int], ndim: int
) -> np.ndarray | int:
    """Pixels per block, broadcastable to the block sums (an int when all blocks are full)."""
    if all(shape[a] % f == 0 for a, f in zip(axes, factors)):
        return int(np.prod(factors))
    counts = np.ones([1] * ndim, dtype=np.int64)
    for axis, f in zip(axes, factors):
        length = shape[axis]
        per_block = np.minimum(f, length - np.arange(-(-length // f)) * f)
        counts = counts * per_block.reshape([-1 if a == axis else 1 for a in range(ndim)])
    return counts


def _sum_dtype(dtype: np.dtype, block: int):
    """An accumulator that holds the sum of ``block`` values of ``dtype`` exactly."""
    if dtype.kind in "fc":
        return np.result_type(dtype, np.float64)
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    info = np.iinfo(dtype)
    largest = max(abs(int(info.min)), int(info.max)) * block * 2  # 2x: room for 2 * remainder
    for candidate in (np.int16, np.int32, np.int64):
        if largest <= np.iinfo(candidate).max:
            return candidate
    return object  # 64-bit integers: Python integers, exact but slow


def downsample_mean(
    array: np.ndarray, factors: Sequence[int], channel_axis: int | None = None
) -> np.ndarray:
    """Area-average ``array`` over blocks of ``factors`` (one per spatial axis); dtype kept.

    ``array`` has the spatial axes plus an optional channel axis (never averaged).
    Output spatial shape: :func:`downsampled_shape`. Rounding: see the module notes
    (integers half to even, bool majority with ties False, floats via float64).
    """
    array = np.asarray(array)
    factors = [int(f) for f in factors]
    axis = None if channel_axis is None else channel_axis % array.ndim
    axes = _spatial_axes(array.ndim, axis)
    if len(axes) != len(factors):
        raise ResolutionError(f"{len(factors)} factors for an array with {len(axes)} spatial axes.")
    if all(f == 1 for f in factors):
        return array
    dtype = array.dtype
    block = int(np.prod(factors))
    sums = _block_sums(array, factors, axes, _sum_dtype(dtype, block))
    counts = _block_counts(array.shape, factors, axes, array.ndim)
    if dtype.kind in "fc":
        return (sums / counts).astype(dtype)
    quotient = sums // counts
    twice_remainder = 2 * (sums - quotient * counts)
    round_up = (twice_remainder > counts) | ((twice_remainder == counts) & (quotient % 2 == 1))
    quotient += round_up
    if dtype == np.bool_:
        return quotient.astype(bool)
    return quotient.astype(dtype)


def _block_views(labels: np.ndarray, factors: Sequence[int]) -> tuple[list[np.ndarray], list]:
    """The ``prod(factors)`` members of every block as arrays of the output shape.

    Returns ``(values, valid)``: ``values[k]`` holds member ``k`` of each block (the
    block's first member where the short last block has no member ``k``), ``valid[k]``
    is None (every block has member ``k``) or a bool array.
    """
    out_shape = downsampled_shape(labels.shape, factors)
    values, valid = [], []
    for offsets in np.ndindex(*factors):
        view = labels[tuple(slice(o, None, f) for o, f in zip(offsets, factors))]
        if view.shape == out_shape:
            values.append(view)
            valid.append(None)
            continue
        first = labels[tuple(slice(0, None, f) for f in factors)]
        full = first.copy()
        full[tuple(slice(0, s) for s in view.shape)] = view
        present = np.zeros(out_shape, dtype=bool)
        present[tuple(slice(0, s) for s in view.shape)] = True
        values.append(full)
        valid.append(present)
    return values, valid


def downsample_mode(labels: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """The most frequent label of each block of ``factors`` (ties: lowest id); dtype kept.

    ``labels`` has only spatial axes, one factor each. Uniform blocks (the usual
    case) cost one comparison per block member; only mixed blocks are sorted and
    counted.
    """
    labels = np.asarray(labels)
    factors = [int(f) for f in factors]
    if labels.ndim != len(factors):
        raise ResolutionError(f"{len(factors)} factors for a mask with {labels.ndim} axes.")
    if all(f == 1 for f in factors):
        return labels
    values, valid = _block_views(labels, factors)
    out = values[0].copy()
    mixed = np.zeros(out.shape, dtype=bool)
    for member in values[1:]:  # a filled-in missing member equals the first: no false alarm
        mixed |= member != out
    where = np.flatnonzero(mixed)
    if not where.size:
        return out
    # the members of the mixed blocks, sorted: (block, n_mixed)
    members = np.sort(np.stack([np.take(v, where) for v in values], axis=1), axis=1)
    members = np.ascontiguousarray(members.T)
    # walk the sorted members: run = how many equal members end at member k; the
    # first run to reach the largest count is the lowest label with that count
    run = np.ones(where.size, dtype=np.int32)
    best_count, best_value = run.copy(), members[0].copy()
    filled = _filled_members(valid, where)
    if filled is not None:  # members missing from a short block were filled in with the
        first = np.take(values[0], where)  # block's first member: not counted for it
        best_count -= filled * (members[0] == first)
    for k in range(1, members.shape[0]):
        current = members[k]
        run = run * (current == members[k - 1]) + 1
        count = run if filled is None else run - filled * (current == first)
        better = count > best_count
        best_count = np.maximum(count, best_count)
        best_value[better] = current[better]
    out.flat[where] = best_value
    return out


def _filled_members(valid: list, where: np.ndarray) -> np.ndarray | None:
    """Per mixed block, how many members were filled in (None when no block is short)."""
    if all(present is None for present in valid):
        return None
    filled = np.zeros(where.size, dtype=np.int32)
    for present in valid:
        if present is not None:
            filled += ~np.take(present, where)
    return filled
