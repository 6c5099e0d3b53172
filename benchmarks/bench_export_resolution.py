"""Benchmark export at a lower resolution against full-resolution export, in the same run.

    python benchmarks/bench_export_resolution.py [--size 4096] [--patch 256] [--repeats 7]
        [--mask nuclei|noise] [--dir DIR]

A ``size x size`` RGB uint8 image and a uint16 label mask are exported as TIFF
patches of ``patch`` output pixels at full resolution and with ``downsample=2``
and ``4`` (so 1/4 and 1/16 of the patch files, but every source pixel is read and
reduced: area mean for the image, block mode for the mask). The image is the
bundled IHC sample tiled to ``size``; the mask is its nuclei labels tiled alike
(``--mask nuclei``, most blocks uniform) or random labels 0..999 (``--mask noise``,
every block mixed: the worst case for the mode). Runs are interleaved (1, 2, 4,
1, 2, 4, ...), each into a new folder after an ``os.sync()``; the clock stops when
the export returns. Printed: median seconds per mode and the ratio
median(downsampled) / median(full resolution). Target: ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_RATIO = 1.5
FACTORS = (1, 2, 4)


def make_data(size: int, mask_kind: str) -> tuple[np.ndarray, np.ndarray]:
    from napari_patchwork.sample import sample_image, sample_mask

    image, labels = sample_image(), sample_mask()
    reps = -(-size // image.shape[0])
    image = np.ascontiguousarray(np.tile(image, (reps, reps, 1))[:size, :size])
    if mask_kind == "noise":
        mask = np.random.default_rng(0).integers(0, 1000, (size, size), dtype=np.uint16)
    else:
        mask = np.ascontiguousarray(np.tile(labels, (reps, reps))[:size, :size])
    return image, mask


def export_seconds(out: Path, image: np.ndarray, mask: np.ndarray, patch: int, factor: int):
    from napari_patchwork.export import export_patches

    os.sync()
    start = time.perf_counter()
    result = export_patches(out, image, mask, patch_size=patch, channel_axis=-1, downsample=factor)
    return time.perf_counter() - start, result.n_patches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--mask", choices=("nuclei", "noise"), default="nuclei")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args()
    image, mask = make_data(args.size, args.mask)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        for factor in FACTORS:  # warm-up: imports and first calls are not timed
            export_seconds(
                work / f"warm_{factor}",
                image[:1024, :1024],
                mask[:1024, :1024],
                args.patch // 4,
                factor,
            )
        times: dict[int, list[float]] = {f: [] for f in FACTORS}
        counts = {}
        for repeat in range(args.repeats):
            for factor in FACTORS:
                seconds, counts[factor] = export_seconds(
                    work / f"run_{factor}_{repeat}", image, mask, args.patch, factor
                )
                times[factor].append(seconds)
    full = statistics.median(times[1])
    print(
        f"{args.size} x {args.size} RGB uint8 + uint16 {args.mask} mask, {args.patch} px "
        f"output patches, TIFF, median of {args.repeats} interleaved runs"
    )
    worst = 0.0
    for factor in FACTORS:
        median = statistics.median(times[factor])
        ratio = median / full
        spread = f"{min(times[factor]):.2f}..{max(times[factor]):.2f}"
        verdict = ""
        if factor > 1:
            worst = max(worst, ratio)
            verdict = f" [{'ok' if ratio <= TARGET_RATIO else 'ABOVE'} target {TARGET_RATIO}]"
        print(
            f"  downsample {factor}: {counts[factor]:4d} patches, median {median:.3f} s "
            f"(range {spread}), ratio to full resolution {ratio:.2f}{verdict}"
        )
    return 0 if worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
