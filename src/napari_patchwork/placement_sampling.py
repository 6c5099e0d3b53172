"""Where placed patches are centred: label instances (``objects``), class-balanced pixel
draws (``balanced``) and seeded random positions (``random``).

The workers of :func:`napari_patchwork.placement.place`; pure numpy/scipy, vectorised
over instances (100,000 objects are one sort of the foreground pixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_patchwork.placement import Geometry, Placement, PlacementError

RANDOM_TRIES_PER_PATCH = 50
"""``random``: candidate positions tried per requested patch before giving up."""


def object_centres(
    placement: Placement, labels: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[str, ...]]:
    """Centres (source pixels, ``(N, ndim)``) of the label instances, their features
    (``instance_id``, ``area``, and ``class`` for a semantic mask) and notes."""
    notes: list[str] = []
    classes = placement.classes
    if placement.connected:
        instances, class_of = connected_instances(labels, classes)
    else:
        instances, class_of = labels, None
    ids, area, centroid, low, high = instance_stats(
        instances, None if class_of is not None else classes
    )
    if classes is not None and class_of is None:
        missing = sorted(set(classes) - set(ids.tolist()))
        if missing:
            notes.append(f"instance ids {_short(missing)} are not in the labels.")
    if class_of is not None and classes is not None:
        found = set(class_of[ids].tolist()) if len(ids) else set()
        missing = sorted(set(classes) - found)
        if missing:
            notes.append(f"classes {_short(missing)} have no pixels in the labels.")
    if len(ids) == 0:
        raise PlacementError(
            "the labels hold no object"
            + (f" of the chosen ids/classes {_short(list(classes))}" if classes else "")
            + "; draw labels, or choose other classes."
        )
    centres = centroid if placement.centre == "centroid" else (low + high) / 2.0
    features = {"instance_id": ids, "area": area}
    if class_of is not None:
        features["class"] = class_of[ids]
    return centres, features, tuple(notes)


def connected_instances(
    labels: np.ndarray, classes: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray]:
    """A semantic mask as instances: each connected region (faces touching) of one non-zero
    value (of ``classes``, if given) gets its own id 1..N; returns the instance array and
    the class of each id (index 0 unused)."""
    from scipy import ndimage

    values = np.unique(labels) if classes is None else np.asarray(classes)
    values = values[values != 0]
    instances = np.zeros(labels.shape, dtype=np.int64)
    class_of = [0]
    for value in values.tolist():
        components, count = ndimage.label(labels == value)
        where = components > 0
        instances[where] = components[where] + (len(class_of) - 1)
        class_of.extend([value] * count)
    return instances, np.asarray(class_of, dtype=np.int64)


def instance_stats(
    instances: np.ndarray, keep_ids: tuple[int, ...] | None = None
) -> tuple[np.ndarray, ...]:
    """Per non-zero id (ascending): the id, its area (pixels), centroid, bounding-box low
    and high corner (inclusive), from one sort of the foreground pixels."""
    flat = np.asarray(instances).ravel()
    where = np.flatnonzero(flat)
    values = flat[where]
    if keep_ids is not None:
        chosen = np.isin(values, np.asarray(keep_ids, dtype=values.dtype))
        where, values = where[chosen], values[chosen]
    ndim = instances.ndim
    if values.size == 0:
        empty = np.zeros((0, ndim))
        return np.zeros(0, np.int64), np.zeros(0, np.int64), empty, empty, empty
    order = np.argsort(values, kind="stable")
    values, where = values[order], where[order]
    firsts = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1])
    ids = values[firsts].astype(np.int64)
    area = np.diff(np.append(firsts, len(values))).astype(np.int64)
    coords = np.unravel_index(where, instances.shape)
    centroid = np.stack(
        [np.add.reduceat(c.astype(np.float64), firsts) / area for c in coords], axis=1
    )
    low = np.stack([np.minimum.reduceat(c, firsts) for c in coords], axis=1).astype(np.float64)
    high = np.stack([np.maximum.reduceat(c, firsts) for c in coords], axis=1).astype(np.float64)
    return ids, area, centroid, low, high


def balanced_centres(
    placement: Placement, geometry: Geometry, labels: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[str, ...]]:
    """``n`` centres per class drawn among the class's pixels (seeded), each giving a
    patch no other class or draw has (no duplicates); notes for classes short of pixels."""
    rng = np.random.default_rng(placement.seed)
    classes = placement.classes
    if classes is None:
        classes = tuple(int(v) for v in np.unique(labels) if v != 0)
        if not classes:
            raise PlacementError("the labels are all 0: draw classes, or choose classes (e.g. 0).")
    flat = labels.ravel()
    taken: set[bytes] = set()
    centres, class_column, empty, short = [], [], [], []
    for value in classes:
        pixels = np.flatnonzero(flat == value)
        if pixels.size == 0:
            empty.append(value)
            continue
        chosen = _draw_distinct(pixels, placement.n, geometry, rng, taken, labels.shape)
        if len(chosen) < placement.n:
            short.append(f"class {value}: {len(chosen)}")
        centres.append(chosen)
        class_column.append(np.full(len(chosen), value, dtype=np.int64))
    notes = []
    if empty:
        notes.append(f"classes without pixels (no patches): {_short(empty)}.")
    if short:
        notes.append(f"fewer than {placement.n} distinct patches fit ({'; '.join(short)}).")
    if not centres:
        raise PlacementError(f"none of the classes {_short(list(classes))} has pixels.")
    ndim = labels.ndim
    all_centres = np.concatenate(centres).reshape(-1, ndim)
    return all_centres, {"class": np.concatenate(class_column)}, tuple(notes)


def _draw_distinct(pixels, n, geometry, rng, taken, shape) -> np.ndarray:
    """Up to ``n`` pixel positions among ``pixels`` (flat indices) in a seeded random order
    whose patches the edge mode keeps and no earlier draw has (``taken``, updated)."""
    first = min(pixels.size, 8 * n + 64)
    points, keys = _first_new(
        pixels[rng.choice(pixels.size, first, replace=False)], n, geometry, taken, shape
    )
    if len(points) < n and first < pixels.size:  # short of distinct patches: draw from all
        taken.difference_update(keys)
        points, keys = _first_new(pixels[rng.permutation(pixels.size)], n, geometry, taken, shape)
    taken.update(keys)
    return points


def _first_new(pixels, n, geometry, taken, shape) -> tuple[np.ndarray, list[bytes]]:
    points = np.stack(np.unravel_index(pixels, shape), axis=1).astype(np.float64)
    boxes, keep = geometry.fit(geometry.starts_of(points))
    chosen, keys = [], []
    seen = set(taken)
    for i in np.flatnonzero(keep).tolist():
        key = boxes[i].tobytes()
        if key not in seen:
            seen.add(key)
            keys.append(key)
            chosen.append(i)
            if len(chosen) == n:
                break
    return points[chosen].reshape(-1, len(shape)), keys


def random_starts(
    placement: Placement, geometry: Geometry, labels: Any
) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[str, ...]]:
    """``n`` distinct seeded random patch starts (output pixels) with at least
    ``min_foreground`` label foreground and at most ``max_overlap`` of their area shared
    with any other; fewer (with a note) if no more fit after many tries."""
    n, rng = placement.n, np.random.default_rng(placement.seed)
    size, patch = np.asarray(geometry.out_shape, np.int64), geometry.patch
    if np.any(size < patch) and geometry.edge in ("drop", "shift"):
        raise PlacementError(
            f"the image ({tuple(size.tolist())} output px) is smaller than a patch "
            f"({tuple(patch.tolist())}) on some axis; use a smaller patch or edge='pad'/'partial'."
        )
    high = np.maximum(size - patch + 1, 1)  # starts inside the image
    fg = None if placement.min_foreground <= 0 else np.flatnonzero(np.asarray(labels).ravel())
    if fg is not None and fg.size == 0:
        raise PlacementError(
            "the labels are all 0, so no patch has foreground; lower min_foreground."
        )
    accepted = np.zeros((n, len(size)), np.int64)
    count, tried, seen = 0, 0, set()
    limit = RANDOM_TRIES_PER_PATCH * n + 1000
    area = float(np.prod(patch))
    while count < n and tried < limit and len(seen) < np.prod(high, dtype=np.float64):
        batch = _random_batch(rng, max(64, 2 * (n - count)), high, fg, geometry, labels)
        for start in batch:
            tried += 1
            key = start.tobytes()
            if key in seen:
                continue
            seen.add(key)
            if placement.max_overlap < 1 and count:
                shared = np.prod(
                    np.clip(
                        np.minimum(start, accepted[:count])
                        + patch
                        - np.maximum(start, accepted[:count]),
                        0,
                        None,
                    ),
                    axis=1,
                )
                if shared.max() / area > placement.max_overlap:
                    continue
            if (
                fg is not None
                and _fraction(labels, start, patch, geometry) < placement.min_foreground
            ):
                continue
            accepted[count] = start
            count += 1
            if count == n:
                break
    notes = ()
    if count < n:
        notes = (
            f"placed {count} of {n} random patches: no more fit the foreground and overlap "
            f"limits after {tried:,} tries; lower min_foreground, raise max_overlap or ask "
            "for fewer.",
        )
    return accepted[:count], {}, notes


def _random_batch(rng, count, high, fg, geometry, labels) -> np.ndarray:
    if fg is None:
        return rng.integers(0, high, size=(count, len(high)), dtype=np.int64)
    pixels = fg[rng.integers(0, fg.size, size=count)]
    centres = np.stack(np.unravel_index(pixels, np.shape(labels)), axis=1)
    return np.clip(geometry.starts_of(centres), 0, high - 1)


def _fraction(labels, start, patch, geometry) -> float:
    low = start * geometry.factors
    high = np.minimum((start + patch) * geometry.factors, geometry.shape)
    region = labels[tuple(slice(a, b) for a, b in zip(low, high))]
    return np.count_nonzero(region) / max(region.size, 1)


def _short(values: list) -> str:
    text = ", ".join(str(v) for v in values[:10])
    return text + (f", ... ({len(values)} in all)" if len(values) > 10 else "")
