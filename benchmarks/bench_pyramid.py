"""Export at downsample 16 from a pyramidal 20,000 x 20,000 RGB TIFF: read from the pyramid
against averaging level 0, in the same run, with the same pixels.

    python benchmarks/bench_pyramid.py [--size 20000] [--downsample 16] [--workdir DIR]

Writes (once; kept in ``--workdir``, default ``/tmp/patchwork-bench``, for later runs) the
synthetic slide of ``bench_large.py`` as a tiled TIFF pyramid: level 0 plus levels 1/2,
1/4, 1/8 and 1/16 in sub-IFDs, each made by area-averaging level 0 with
:func:`napari_patchwork.resolution.downsample_mean` (integers rounded half to even, as
the export does). Then, each in a fresh process (wall time, peak resident memory):

* pyramid: ``export_patches`` of the file's levels (``io.read_pyramid``, level 0 a
  lazy dask array) at ``--downsample``, 256 px NPY patches;
* level 0: the same export of level 0 alone (lazy, read a batch of patch regions at a
  time through dask, averaged 16 x 16);
* the command line, ``napari-patchwork tile SLIDE --downsample 16`` (it reads the pyramid).

Prints the export times (inside the process, imports excluded), whole-process times and
peaks, the ratio, and whether every patch file of the two exports is equal (the largest
difference otherwise).
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_large import MEASURE, measured, padded_tiles  # noqa: E402  (numpy-free at import)

# No numpy at module level and no big work in this process: a child starts with its
# parent's peak RSS (ru_maxrss survives fork + exec), so the slide is written by a child.

EXPORT = """
import sys, time
from napari_patchwork.export import export_patches
from napari_patchwork.io import read_image, read_pyramid
from napari_patchwork.pyramid import Pyramid
slide, out, factor, use_pyramid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
image = read_image(slide, lazy=True)
if use_pyramid:
    image = Pyramid((image, *read_pyramid(slide).levels[1:]))
start = time.perf_counter()
result = export_patches(out, image, patch_size=256, edge="pad", downsample=factor,
                        channel_axis=-1, fmt="npy", overwrite=True)
print(f"## {time.perf_counter() - start:.3f} {result.n_patches}")
print(result.message + "".join(f"; {note}" for note in result.notes))
"""


def make_pyramid(flat: Path, path: Path, factors=(2, 4, 8, 16)) -> None:
    """``flat`` with levels of 1/2, 1/4, 1/8, 1/16, each the area average of level 0 (made
    strip by strip; level 0 copied tile by tile, never whole in memory)."""
    import numpy as np
    import tifffile
    import zarr

    from napari_patchwork.resolution import downsample_mean

    source = zarr.open(tifffile.imread(flat, aszarr=True), mode="r")
    size = source.shape[0]
    strip = 1024  # a multiple of every factor
    levels = {f: [] for f in factors}
    for y in range(0, size, strip):
        rows = np.asarray(source[y : y + strip])
        for f in factors:
            levels[f].append(downsample_mean(rows, (f, f), channel_axis=2))
    levels = {f: np.concatenate(parts) for f, parts in levels.items()}

    options = dict(tile=(256, 256), photometric="rgb")
    part = path.with_suffix(".part")
    with tifffile.TiffWriter(part, bigtiff=True) as tif:
        tif.write(
            padded_tiles(source),
            shape=source.shape,
            dtype=source.dtype,
            subifds=len(factors),
            **options,
        )
        for f in factors:
            tif.write(levels[f], subfiletype=1, **options)
    part.rename(path)


def compare(first: Path, second: Path) -> tuple[int, int, int]:
    """(patch files compared, files that differ, largest absolute difference)."""
    import numpy as np

    names = sorted(p.name for p in (first / "images").iterdir())
    if names != sorted(p.name for p in (second / "images").iterdir()):
        raise RuntimeError("the two exports wrote different patch files")
    differ, largest = 0, 0
    for name in names:
        a = np.load(first / "images" / name).astype(np.int64)
        b = np.load(second / "images" / name).astype(np.int64)
        d = int(np.abs(a - b).max()) if a.shape == b.shape else 10**9
        differ += d != 0
        largest = max(largest, d)
    return len(names), differ, largest


def export_run(work: Path, slide: Path, out: Path, factor: int, pyramid: bool):
    """One export in a fresh process: (export s, patches, process s, peak MB, message)."""
    script = work / "export.py"
    script.write_text(EXPORT)
    args = [str(script), str(slide), str(out), str(factor), "1" if pyramid else "0"]
    result = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True)
    marks = [ln for ln in result.stderr.splitlines() if ln.startswith("@@ ")]
    if result.returncode or not marks or marks[-1].split()[3] != "0":
        raise RuntimeError(result.stderr)
    lines = result.stdout.splitlines()
    seconds, n = next(ln for ln in lines if ln.startswith("## ")).split()[1:]
    wall, peak = marks[-1].split()[1:3]
    return float(seconds), int(n), float(wall), float(peak), lines[-1]


def write_slides(flat: Path, slide: Path, size: int) -> None:
    """The flat slide and its pyramid, each written once, in a child process."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
        "from bench_large import make_slide; from bench_pyramid import make_pyramid; "
        "flat, slide, size = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]); "
        "flat.exists() or make_slide(flat, size); make_pyramid(flat, slide)"
    )
    here = str(Path(__file__).parent)
    subprocess.run([sys.executable, "-c", code, here, str(flat), str(slide), str(size)],
                   check=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--downsample", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/patchwork-bench"))
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    flat = work / f"slide_{args.size}.tif"
    slide = work / f"pyramid_{args.size}.tif"
    if not slide.exists():
        print(f"writing {slide} (once; kept for the next runs) ...", flush=True)
        write_slides(flat, slide, args.size)
    rows = []
    for name, pyramid in (("pyramid", True), ("level 0", False)):
        out = work / f"out_{name.replace(' ', '')}"
        shutil.rmtree(out, ignore_errors=True)
        rows.append((name, out, *export_run(work, slide, out, args.downsample, pyramid)))
    cli_out = work / "out_cli"
    shutil.rmtree(cli_out, ignore_errors=True)
    cli = measured(
        "napari_patchwork.cli", "tile", str(slide), "--size", "256", "--edge", "pad",
        "--downsample", str(args.downsample), "--format", "npy", "--stem", "patch",
        "--no-preview", "--quiet",
        "-o", str(cli_out),
    )  # fmt: skip
    print(f"\n{args.size:,} x {args.size:,} RGB pyramid, export at downsample {args.downsample}")
    print(f"{'':10} {'export s':>9} {'patches':>8} {'process s':>10} {'peak MB':>8}")
    for name, _out, seconds, n, wall, peak, _message in rows:
        print(f"{name:10} {seconds:9.2f} {n:8d} {wall:10.2f} {peak:8.0f}")
    print(f"{'CLI tile':10} {'':9} {'':8} {cli[0]:10.2f} {cli[1]:8.0f}")
    (_, pyr_out, pyr_s, *_), (_, lv0_out, lv0_s, *_) = rows
    print(f"pyramid export: {rows[0][-1]}")
    print(f"pyramid vs level 0: {lv0_s / pyr_s:.1f}x faster (export), "
          f"{rows[1][4] / rows[0][4]:.1f}x (whole process)")  # fmt: skip
    n, differ, largest = compare(pyr_out, lv0_out)
    same = "equal" if differ == 0 else f"{differ} differ, largest difference {largest}"
    print(f"pixels: {n} patch files compared, {same}")
    n_cli, differ_cli, largest_cli = compare(cli_out, lv0_out)
    same = "equal to" if differ_cli == 0 else f"largest difference {largest_cli} from"
    print(f"CLI: {n_cli} patch files, {same} level 0's")


if __name__ == "__main__":
    main()
