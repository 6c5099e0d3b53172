"""Placing one patch per object: ``place(Placement(kind="objects"))`` versus the usual
``skimage.measure.regionprops`` loop, on the same instance mask, in the same run.

    python benchmarks/bench_placement.py                 # 100,000 objects on 4,000 x 4,000
    python benchmarks/bench_placement.py --objects 20000

The mask holds square objects of 4 x 4 px (label ids 1..N, in a shuffled order so ids
and positions are unrelated). Naive: ``regionprops(mask)`` and one ``r.centroid`` and
``r.area`` per object, then the same patch boxes (``round(centroid) - patch // 2``).
Ours: the placement (one sort of the foreground pixels, centroids by ``reduceat``).
Both must give the same boxes; printed: median of 3 runs each, interleaved, and the
ratio. Also timed: ``random`` (1,000 patches, no overlap cap, 20 % foreground) and
``balanced`` (1,000 per class, 3 classes) placements on the same mask.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from napari_patchwork.placement import Placement, place


def instance_mask(n_objects: int, side: int = 4, gap: int = 8, margin: int = 16) -> np.ndarray:
    """Objects on a regular lattice, ``margin`` px from the border (patches stay inside)."""
    per_row = int(np.ceil(np.sqrt(n_objects)))
    size = per_row * gap + 2 * margin
    mask = np.zeros((size, size), np.int32)
    ids = np.random.default_rng(0).permutation(n_objects) + 1
    cells = np.arange(n_objects)
    ys, xs = (cells // per_row) * gap + margin, (cells % per_row) * gap + margin
    for dy in range(side):
        for dx in range(side):
            mask[ys + dy, xs + dx] = ids
    return mask


def naive(mask: np.ndarray, patch: int) -> np.ndarray:
    from skimage.measure import regionprops

    starts = []
    for region in regionprops(mask):
        centre = np.floor(np.asarray(region.centroid) + 0.5).astype(np.int64)
        _ = region.area
        starts.append((region.label, *(centre - patch // 2)))
    starts.sort()
    return np.asarray(starts, dtype=np.int64)[:, 1:]


def ours(mask: np.ndarray, patch: int) -> np.ndarray:
    placed = place(Placement(kind="objects"), mask.shape, patch, "pad", labels=mask)
    return placed.boxes[:, 0]


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    mask = instance_mask(args.objects)
    print(f"mask {mask.shape[0]:,} x {mask.shape[1]:,}, {args.objects:,} objects of 4 x 4 px")
    ours(mask[:200, :200], 16), naive(mask[:200, :200], 16)  # warm-up (imports)
    times = {"naive": [], "ours": []}
    for _ in range(args.runs):
        t_naive, expected = timed(naive, mask, 16)
        t_ours, got = timed(ours, mask, 16)
        np.testing.assert_array_equal(got, expected)  # the same boxes
        times["naive"].append(t_naive)
        times["ours"].append(t_ours)
    median = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"objects: ours {median['ours']:.2f} s, regionprops loop {median['naive']:.2f} s "
        f"({median['naive'] / median['ours']:.1f}x faster), same boxes"
    )
    foreground = (mask > 0).astype(np.uint8)
    t, placed = timed(
        place, Placement(kind="random", n=1000, seed=0, min_foreground=0.2), mask.shape, 8,
        "drop", labels=foreground,
    )  # fmt: skip
    print(f"random: {placed.n_patches:,} patches with >= 20 % foreground in {t:.2f} s")
    classes = (mask % 3 + 1) * (mask > 0)
    t, placed = timed(
        place, Placement(kind="balanced", n=1000, seed=0), mask.shape, 16, "shift",
        labels=classes.astype(np.uint8),
    )  # fmt: skip
    print(f"balanced: {placed.n_patches:,} patches (1,000 per class, 3 classes) in {t:.2f} s")


if __name__ == "__main__":
    main()
