"""The leak-free (blocked) split's buffer on whole-slide grids, against comparing all pairs.

    python benchmarks/bench_split.py

``block_split`` (256 px patches, 4,096 px blocks, train/val/test 0.8/0.1/0.1) on grids
of a 99,072 x 99,072 slide with stride 256 (touching patches) and 128 (overlapping), and
on a 12,288 x 12,288 image, where it is checked against the plain rule applied to all
pairs of patches (numpy, in chunks): the same buffer, and the time of each.
"""

import time

import numpy as np

from napari_patchwork.export import assign_splits, block_split
from napari_patchwork.grid import make_grid

SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1}


def all_pairs_buffer(boxes: np.ndarray, rank: np.ndarray, chunk: int = 512) -> np.ndarray:
    """The buffer rule with every pair compared: ranks in increasing order, a patch is left
    out when it touches a kept patch of a lower rank."""
    out = np.zeros(len(boxes), dtype=bool)
    for r in np.unique(rank)[1:]:
        mine, kept = np.flatnonzero(rank == r), boxes[(rank < r) & ~out]
        for start in range(0, len(mine), chunk):
            part = mine[start : start + chunk]
            a = boxes[part][:, None]
            touch = np.all((a[..., 0, :] <= kept[None, :, 1]) & (kept[None, :, 0] <= a[..., 1, :]),
                           axis=-1)  # fmt: skip
            out[part] = touch.any(axis=1)
    return out


def ranks(boxes: np.ndarray, block: int) -> np.ndarray:
    centres = (boxes[:, 0] + boxes[:, 1] - 1) // 2
    _, which = np.unique(centres // block, axis=0, return_inverse=True)
    labels = np.array(assign_splits(int(which.max()) + 1, SPLIT, 0))[np.ravel(which)]
    order = sorted(SPLIT, key=lambda n: (SPLIT[n], -list(SPLIT).index(n)))
    return np.array([order.index(s) for s in labels])


def main() -> None:
    print(f"{'image':>16} {'stride':>6} {'patches':>8} {'buffer':>7} {'ours s':>7} {'pairs s':>8}")
    for size, stride, naive in ((12_288, 256, True), (12_288, 128, True), (99_072, 256, False),
                                (99_072, 128, False)):  # fmt: skip
        boxes = make_grid((size, size), 256, stride).boxes
        start = time.perf_counter()
        result = block_split(boxes, 4096, SPLIT, seed=0)
        ours = time.perf_counter() - start
        pairs = ""
        if naive:
            start = time.perf_counter()
            reference = all_pairs_buffer(boxes, ranks(boxes, 4096))
            pairs = f"{time.perf_counter() - start:8.2f}"
            assert np.array_equal(reference, result.buffer), "the buffers differ"
        print(f"{size:>7,} x {size:<7,} {stride:6d} {len(boxes):8,} {result.n_buffer:7,} "
              f"{ours:7.2f} {pairs:>8}")  # fmt: skip
    print("buffers equal to the all-pairs rule where it was run")


if __name__ == "__main__":
    main()
