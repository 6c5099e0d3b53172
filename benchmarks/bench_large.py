"""Tile and cluster a 20,000 x 20,000 RGB image stored on disk, without loading it.

    python benchmarks/bench_large.py [--size 20000] [--workdir DIR] [--keep]

Writes a synthetic whole-slide-like image (the bundled IHC picture, flipped and
tinted tile by tile) as a tiled TIFF (256 px tiles, uncompressed: 1.2 GB raw for
20,000 x 20,000 x 3 uint8), then runs, each in a fresh process whose peak resident
memory (ru_maxrss) is measured:

* ``napari-patchwork tile SLIDE --size 256 --edge pad --format npy`` (lazy read,
  6,241 patches written);
* ``napari-patchwork stitch PATCHES -o stitched.tif`` (patches read block by
  block, written strip by strip; three regions are then compared with the slide);
* ``napari-patchwork cluster SLIDE -k 5`` (fit on a 200k-pixel sample, labels
  predicted chunk by chunk and written as a tiled TIFF strip by strip);
* the naive reference for memory: ``tifffile.imread`` of the whole file.

Target: every step of ours under 1.5 GB peak, i.e. nothing loads the whole image.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# No numpy (or anything big) at module level: a child process starts with its parent's
# peak RSS (Linux keeps ru_maxrss across fork + exec), so the parent must stay small.

TILE = 256
LIMIT_MB = 1536

MEASURE = """
import resource, runpy, sys, time
start = time.perf_counter()
sys.argv = sys.argv[1:]
code = 0
try:
    if sys.argv[0].endswith(".py"):
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    code = stop.code or 0
print(f"@@ {time.perf_counter() - start:.2f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} {code}",
      file=sys.stderr)
"""


def padded_tiles(source, tile: int = 256):
    """The ``tile`` x ``tile`` tiles of a square (y, x, channels) array, in row order,
    zero-padded at the right and bottom edges: what ``tifffile`` writes as a tiled page."""
    import numpy as np

    size = source.shape[0]
    for ty in range(0, size, tile):
        for tx in range(0, size, tile):
            piece = source[ty : ty + tile, tx : tx + tile]
            pad = [(0, tile - piece.shape[0]), (0, tile - piece.shape[1]), (0, 0)]
            yield np.pad(piece, pad)


def make_slide(path: Path, size: int) -> None:
    """A size x size RGB tiled TIFF, written tile by tile (never whole in memory)."""
    import numpy as np
    import tifffile

    from napari_patchwork.sample import sample_image

    base = sample_image()
    rng = np.random.default_rng(0)

    def tiles():
        for ty in range(0, size, TILE):
            for tx in range(0, size, TILE):
                y, x = (ty // TILE * 97) % (512 - TILE), (tx // TILE * 61) % (512 - TILE)
                piece = base[y : y + TILE, x : x + TILE]
                if rng.random() < 0.5:
                    piece = piece[::-1]
                tint = rng.integers(-12, 12, size=3)
                yield np.clip(piece.astype(np.int16) + tint, 0, 255).astype(np.uint8)

    tifffile.imwrite(
        path,
        tiles(),
        shape=(size, size, 3),
        dtype=np.uint8,
        tile=(TILE, TILE),
        photometric="rgb",
        bigtiff=True,
    )


def measured(*args: str) -> tuple[float, float, int]:
    """Run ``python -m MODULE ARGS`` in a fresh process; wall time (s), peak RSS (MB), exit code."""
    result = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True)
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("@@ ")]
    if not line:
        raise RuntimeError(result.stderr)
    seconds, peak, code = line[-1].split()[1:]
    if int(code) != 0:
        raise RuntimeError(result.stderr)
    return float(seconds), float(peak), int(code)


def same_regions(first: Path, second: Path, size: int) -> bool:
    """Whether three 300 px regions (corner, middle, far edge) of two TIFFs are equal."""
    import numpy as np
    import tifffile

    regions = [(0, 0), (size // 2 - 150, size // 2 - 150), (size - 300, size - 300)]
    for y, x in regions:
        pieces = [
            tifffile.imread(path, selection=(slice(y, y + 300), slice(x, x + 300), slice(None)))
            for path in (first, second)
        ]
        if not np.array_equal(*pieces):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the slide and outputs")
    parser.add_argument("--make-slide", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--naive-read", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_slide:
        return make_slide(args.make_slide, args.size)
    if args.naive_read:
        import tifffile

        return print(f"read {tifffile.imread(args.naive_read).nbytes / 2**20:.0f} MB")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="patchwork-large-"))
    work.mkdir(parents=True, exist_ok=True)
    slide = work / f"slide_{args.size}.tif"
    try:
        if not slide.exists():
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, __file__, "--size", str(args.size), "--make-slide", str(slide)],
                check=True,
            )
            print(
                f"wrote {slide} ({slide.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - start:.0f} s"
            )
        raw_mb = args.size * args.size * 3 / 2**20
        print(
            f"image: {args.size:,} x {args.size:,} x 3 uint8 = {raw_mb:,.0f} MB raw; limit {LIMIT_MB} MB peak"
        )
        shutil.rmtree(work / "patches", ignore_errors=True)
        steps = {
            "tile (256 px, npy)": [
                "napari_patchwork.cli",
                "tile",
                str(slide),
                "--size",
                "256",
                "--edge",
                "pad",
                "--format",
                "npy",
                "-q",
                "-o",
                str(work / "patches"),
            ],
            "stitch back": [
                "napari_patchwork.cli",
                "stitch",
                str(work / "patches"),
                "--overwrite",
                "-q",
                "-o",
                str(work / "stitched.tif"),
            ],
            "cluster (k=5)": [
                "napari_patchwork.cli",
                "cluster",
                str(slide),
                "-k",
                "5",
                "-q",
                "-o",
                str(work / "clusters.tif"),
            ],
        }
        for name, command in steps.items():
            seconds, peak, _ = measured(*command)
            verdict = "ok" if peak < LIMIT_MB else "OVER"
            print(f"ours  {name:22s} {seconds:7.1f} s  peak {peak:7.0f} MB  [{verdict}]")
        n = len(list((work / "patches" / "images").iterdir()))
        print(
            f"      patches written: {n:,}; stitched regions equal the slide: "
            f"{same_regions(slide, work / 'stitched.tif', args.size)}"
        )
        seconds, peak, _ = measured(__file__, "--naive-read", str(slide))
        print(f"naive tifffile.imread of the whole image: {seconds:5.1f} s  peak {peak:7.0f} MB")
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
