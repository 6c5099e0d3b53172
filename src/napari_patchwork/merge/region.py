"""Merge the predictions that overlap one output region (the core of every merge)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from napari_patchwork.merge.options import (
    MergeError,
    MergeOptions,
    PredictionLayout,
    check_options,
    merged_dtype,
)
from napari_patchwork.merge.windows import center_distance, patch_window


def merge_region(
    region_start: Sequence[int],
    region_stop: Sequence[int],
    patches: Iterable[tuple[Any, Any]],
    options: MergeOptions,
    layout: PredictionLayout,
) -> np.ndarray:
    """Merge the predictions that overlap the spatial box ``region_start:region_stop``.

    ``patches`` yields ``(box, prediction)`` pairs in patch order: ``box`` is
    ``(start, stop)`` over the spatial axes (as in :attr:`PatchGrid.boxes`; it may pass
    the region or the image), ``prediction`` an array of ``layout.shape(stop - start)``.
    Pairs that miss the region are skipped. A pixel gets the same value whatever region
    it is merged in, so merging block by block equals merging at once.
    """
    start = np.asarray(region_start, dtype=np.int64)
    stop = np.asarray(region_stop, dtype=np.int64)
    check_options(options, layout)
    vote_labels = options.mode == "vote" and options.argmax
    channels = () if layout.channel_axis is None or vote_labels else (int(layout.channels),)
    shape = tuple(int(v) for v in stop - start)
    merger = _MERGERS[options.mode](shape, channels, options, layout)
    for order, (box, data) in enumerate(patches):
        box = np.asarray(box, dtype=np.int64)
        low, high = np.maximum(box[0], start), np.minimum(box[1], stop)
        if np.any(low >= high):
            continue
        data = np.asarray(data)
        patch_shape = tuple(int(v) for v in box[1] - box[0])
        if data.shape != layout.shape(patch_shape):
            raise MergeError(
                f"a prediction of shape {data.shape} does not fit its patch {patch_shape}; "
                f"expected {layout.shape(patch_shape)} like the first prediction."
            )
        if layout.channel_axis is not None:
            data = np.moveaxis(data, layout.channel_axis, -1)
            if vote_labels:
                data = np.argmax(data, axis=-1)
        take = tuple(slice(int(a), int(b)) for a, b in zip(low - box[0], high - box[0]))
        where = tuple(slice(int(a), int(b)) for a, b in zip(low - start, high - start))
        merger.add(where, take, patch_shape, data[take], order)
    out = merger.result()
    if channels and options.argmax:
        covered = merger.covered
        out = np.where(covered, np.argmax(out, axis=-1), options.fill_value)
    elif channels:
        out = np.moveaxis(out, -1, layout.channel_axis)
    return out.astype(merged_dtype(options, layout), copy=False)


class _Last:
    """``last``: later predictions overwrite earlier ones (also the base of the others)."""

    def __init__(self, shape, channels, options: MergeOptions, layout: PredictionLayout):
        self.options = options
        self.covered = np.zeros(shape, dtype=bool)
        dtype = layout.dtype if options.argmax or options.dtype is None else options.dtype
        self.out = np.full(shape + channels, options.fill_value, dtype=dtype)

    def add(self, where, take, patch_shape, data, order) -> None:
        self.out[where] = data
        self.covered[where] = True

    def result(self) -> np.ndarray:
        return self.out


class _Center(_Last):
    """``center``: the prediction of the patch whose centre is nearest (first on ties)."""

    def __init__(self, shape, channels, options, layout):
        super().__init__(shape, channels, options, layout)
        self.best = np.full(shape, np.inf, dtype=np.float32)

    def add(self, where, take, patch_shape, data, order) -> None:
        distance = center_distance(patch_shape)[take]
        best = self.best[where]
        nearer = distance < best
        best[nearer] = distance[nearer]
        self.out[where][nearer] = data[nearer]
        self.covered[where] |= nearer


class _Max(_Last):
    """``max``: the largest prediction per pixel and channel."""

    def add(self, where, take, patch_shape, data, order) -> None:
        out, covered = self.out[where], self.covered[where]
        if covered.all():
            np.maximum(out, data, out=out)
        else:
            if out.ndim > covered.ndim:
                covered = covered[..., None]
            out[...] = np.where(covered, np.maximum(out, data), data)
            self.covered[where] = True


class _Weighted:
    """``mean``, ``gaussian``, ``hann``: sum(w * p) / sum(w)."""

    def __init__(self, shape, channels, options: MergeOptions, layout: PredictionLayout):
        self.options = options
        target = merged_dtype(options, layout) if not options.argmax else np.dtype(np.float64)
        self.dtype = target if target.kind == "f" else np.dtype(np.float64)
        self.sums = np.zeros(shape + channels, dtype=self.dtype)
        self.weights = np.zeros(shape, dtype=self.dtype)
        self.scratch = np.empty(0, dtype=self.dtype)  # reused for w * p: no page faults

    def add(self, where, take, patch_shape, data, order) -> None:
        sums = self.sums[where]
        if self.options.window == "constant":
            sums += data
            self.weights[where] += 1
            return
        w = patch_window(self.options.window, patch_shape, self.options.sigma_scale, self.dtype)
        w = w[take]
        self.weights[where] += w
        if self.scratch.size < data.size:
            self.scratch = np.empty(data.size, dtype=self.dtype)
        product = self.scratch[: data.size].reshape(data.shape)
        np.multiply(data, w[..., None] if data.ndim > w.ndim else w, out=product)
        sums += product

    @property
    def covered(self) -> np.ndarray:
        return self.weights > 0

    def result(self) -> np.ndarray:
        uncovered = self.weights <= 0
        gaps = bool(uncovered.any())
        if gaps:  # 0 / 1 there, then the fill value
            self.weights[uncovered] = 1
        weights = self.weights[..., None] if self.sums.ndim > self.weights.ndim else self.weights
        self.sums /= weights
        if gaps:
            self.sums[uncovered] = self.options.fill_value
            self.weights[uncovered] = 0
        return self.sums


class _Vote:
    """``vote``: the most frequent label; ties to the label with the nearest centre.

    Keeps, per pixel, one slot per distinct label seen so far (a pixel has at most as
    many slots as patches covering it): label, count, nearest distance and the order of
    the patch at that distance.
    """

    def __init__(self, shape, channels, options: MergeOptions, layout: PredictionLayout):
        self.options, self.shape = options, shape
        self.label_dtype = np.dtype(np.intp) if options.argmax else layout.dtype
        self.used = np.zeros(shape, dtype=np.int32)
        self.slots: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, where, take, patch_shape, data, order) -> None:
        distance = center_distance(patch_shape)[take]
        used = self.used[where]
        pending = np.ones(data.shape, dtype=bool)
        for j, (labels, counts, best, first) in enumerate(self.slots):
            same = pending & (used > j) & (labels[where] == data)
            if not same.any():
                continue
            counts[where][same] += 1
            nearer = same & (distance < best[where])
            best[where][nearer] = distance[nearer]
            first[where][nearer] = order
            pending &= ~same
        if not pending.any():
            return
        new_slot = used[pending]
        while len(self.slots) <= int(new_slot.max()):
            self.slots.append(
                (
                    np.zeros(self.shape, self.label_dtype),
                    np.zeros(self.shape, np.int32),
                    np.full(self.shape, np.inf, np.float32),
                    np.zeros(self.shape, np.int64),
                )
            )
        for j in np.unique(new_slot).tolist():
            chosen = pending & (used == j)
            labels, counts, best, first = self.slots[j]
            labels[where][chosen] = data[chosen]
            counts[where][chosen] = 1
            best[where][chosen] = distance[chosen]
            first[where][chosen] = order
        used[pending] += 1

    @property
    def covered(self) -> np.ndarray:
        return self.used > 0

    def result(self) -> np.ndarray:
        out = np.full(self.shape, self.options.fill_value, dtype=self.label_dtype)
        top = np.zeros(self.shape, np.int32)
        near = np.full(self.shape, np.inf, np.float32)
        early = np.zeros(self.shape, np.int64)
        for labels, counts, best, first in self.slots:
            better = (counts > top) | (
                (counts == top) & ((best < near) | ((best == near) & (first < early)))
            )
            out[better], top[better] = labels[better], counts[better]
            near[better], early[better] = best[better], first[better]
        return out


_MERGERS: dict[str, Callable[..., Any]] = {
    "last": _Last,
    "center": _Center,
    "max": _Max,
    "mean": _Weighted,
    "gaussian": _Weighted,
    "hann": _Weighted,
    "vote": _Vote,
}
