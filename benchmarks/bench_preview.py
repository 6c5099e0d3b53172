"""Thumbnail and patch preview of a 20,000 x 20,000 RGB slide on disk, against the naive way.

    python benchmarks/bench_preview.py [--size 20000] [--workdir DIR] [--keep]

Writes the synthetic slide of ``bench_large.py`` (256 px tiles, uncompressed), once flat
and once as a pyramid (levels 1/4 and 1/16 in sub-IFDs), then measures, each in a fresh
process (wall time, peak resident memory):

* ours, flat: ``thumbnail`` of the lazily read slide (2,000 px: one sampled pixel per
  10 x 10 block, block by block), then the whole preview: thumbnail, figure of its 256 px
  grid (6,241 patches), rendering (imports of dask and matplotlib included);
* ours, pyramid: the same from the pyramid (reads the 5,000 px level only);
* naive: ``tifffile.imread`` of the whole slide, then every n-th pixel (2,000 px): the
  cheapest way that loads the slide (an anti-aliased ``skimage`` resize would need the
  slide in float64, 9.6 GB);
* ``napari-patchwork tile`` with and without ``--no-preview``: what the preview adds.

Prints the ratios against the naive run measured in the same run.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_large import make_slide, measured, padded_tiles  # noqa: E402  (numpy-free at import)

OURS = """
import sys
import numpy as np
from napari_patchwork.grid import make_grid
from napari_patchwork.io import read_image, read_levels
from napari_patchwork.preview import draw_patch_preview, render
slide, pyramid = sys.argv[1], sys.argv[2] == "pyramid"
image = read_levels(slide) if pyramid else read_image(slide, lazy=True)
shape = (image[0] if pyramid else image).shape
grid = make_grid(shape, 256, edge="pad", channel_axis=-1)
kept = np.arange(grid.n_patches) % 3 != 0
pixels = render(draw_patch_preview(image, grid.boxes, kept, channel_axis=-1))
print(pixels.shape)
"""

THUMB = """
import sys
from napari_patchwork.io import read_image, read_levels
from napari_patchwork.thumbnail import thumbnail
slide, pyramid = sys.argv[1], sys.argv[2] == "pyramid"
image = read_levels(slide) if pyramid else read_image(slide, lazy=True)
print(thumbnail(image, 2000, channel_axis=-1).pixels.shape)
"""

NAIVE = """
import math, sys
import numpy as np
import tifffile
image = tifffile.imread(sys.argv[1])
step = math.ceil(max(image.shape[:2]) / 2000)
print(np.ascontiguousarray(image[::step, ::step]).shape)
"""


def make_pyramid(flat: Path, path: Path) -> None:
    """``flat`` with levels of 1/4 and 1/16 (block means), tile by tile, never whole."""
    import numpy as np
    import tifffile
    import zarr

    from napari_patchwork.thumbnail import block_mean

    source = zarr.open(tifffile.imread(flat, aszarr=True), mode="r")
    size = source.shape[0]

    level1 = np.concatenate([block_mean(source[y : y + 4000], 4) for y in range(0, size, 4000)])
    options = dict(tile=(256, 256), photometric="rgb")
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            padded_tiles(source), shape=source.shape, dtype=source.dtype, subifds=2, **options
        )
        tif.write(level1, subfiletype=1, **options)
        tif.write(block_mean(level1, 4), subfiletype=1, **options)


def run_script(work: Path, name: str, code: str, *args: str) -> tuple[float, float]:
    script = work / f"{name}.py"
    script.write_text(code)
    seconds, peak, _ = measured(str(script), *args)
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the slides and outputs")
    parser.add_argument("--make", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:  # in a child process: the parent's peak memory must stay small
        flat, pyramid = args.make
        if not flat.exists():
            make_slide(flat, args.size)
        return make_pyramid(flat, pyramid)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="patchwork-preview-"))
    work.mkdir(parents=True, exist_ok=True)
    flat, pyramid = work / f"slide_{args.size}.tif", work / f"pyramid_{args.size}.tif"
    try:
        start = time.perf_counter()
        if not pyramid.exists():
            subprocess.run([sys.executable, __file__, "--size", str(args.size), "--make",
                            str(flat), str(pyramid)], check=True)  # fmt: skip
        print(f"slides written in {time.perf_counter() - start:.0f} s: {flat.name}, {pyramid.name}")
        naive_s, naive_mb = run_script(work, "naive", NAIVE, str(flat))
        print(f"naive imread + subsample  {naive_s:6.1f} s  peak {naive_mb:6.0f} MB")
        for kind, path in (("flat", flat), ("pyramid", pyramid)):
            s, mb = run_script(work, "thumb", THUMB, str(path), kind)
            print(f"ours, {kind:8s} thumbnail   {s:6.1f} s  peak {mb:6.0f} MB   "
                  f"time {s / naive_s:.2f}x, memory {mb / naive_mb:.2f}x of naive")  # fmt: skip
            s, mb = run_script(work, "ours", OURS, str(path), kind)
            print(
                f"ours, {kind:8s} whole preview (6,241 patches drawn) {s:6.1f} s  peak {mb:6.0f} MB"
            )
        times = {}
        for label, extra in (("without preview", ["--no-preview"]), ("with preview", [])):
            shutil.rmtree(work / "patches", ignore_errors=True)
            command = ["napari_patchwork.cli", "tile", str(flat), "--size", "256", "--edge", "pad",
                       "--format", "npy", "-q", "-o", str(work / "patches"), *extra]  # fmt: skip
            times[label], mb, _ = measured(*command)
            print(f"tile (256 px, npy) {label:16s} {times[label]:6.1f} s  peak {mb:6.0f} MB")
        added = times["with preview"] - times["without preview"]
        print(f"the preview adds {added:.1f} s to tile "
              f"({times['with preview'] / times['without preview']:.2f}x)")  # fmt: skip
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
