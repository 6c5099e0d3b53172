"""Merge overlapping float32 predictions (3 channels) of a large image: ours vs tiler vs numpy.

The predictions are those of a SIZE x SIZE image cut into 512 px patches with 25 %
overlap (edge ``pad``: the grid tiler's ``Tiler(mode="constant")`` makes too), blended with
``hann`` (torchio's window, never zero at a patch edge) and ``gaussian`` (MONAI's,
sigma = 0.125 x patch). Every variant gets the same patches from the same function
(a fixed random patch plus the patch number, one array copy per call) and runs in its
own process, so its peak memory (``ru_maxrss`` from ``os.wait4``) is its own:

* ``numpy``: full-size float32 sum and weight buffers, one ``+=`` per patch, one divide
  (what users write; the result is in memory);
* ``tiler``: the-lay/tiler's ``Merger`` (``pip install tiler``; skipped when missing)
  with the same window (its own ``hann`` is zero at the tile edge, so ours is passed
  as an array), ``save_visits=False``;
* ``ours -> zarr``: :func:`napari_patchwork.merge.merge_lazy` stored block by block into an
  uncompressed zarr array (``dask.array.store``: each block written by its own task);
* ``ours -> TIFF``: :func:`napari_patchwork.merge.merge_lazy` written block by block to
  an uncompressed tiled TIFF (``napari_patchwork.io.write_image``), 2 threads;
* ``ours, blocks``: the same blocks computed and dropped (the merge alone).

Each variant also saves three probe regions; they must agree with numpy's.

    python benchmarks/bench_merge.py                 # 20,000 px (needs ~14 GB RAM for the peers)
    python benchmarks/bench_merge.py --size 6000     # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PATCH, STRIDE, CHANNELS = 512, 384, 3


def patch_boxes(size: int) -> np.ndarray:
    from napari_patchwork.grid import make_grid

    return make_grid((size, size), PATCH, STRIDE, "pad").boxes


class PatchSource:
    """Prediction of patch ``i``: a fixed random patch plus ``i % 7`` (one array copy)."""

    def __init__(self) -> None:
        self.base = np.random.default_rng(0).random((PATCH, PATCH, CHANNELS), dtype=np.float32)

    def __call__(self, i: int) -> np.ndarray:
        return self.base + np.float32(i % 7)


def window(mode: str) -> np.ndarray:
    from napari_patchwork.merge import patch_window

    return np.asarray(patch_window(mode, (PATCH, PATCH), dtype=np.float32))


def probes(size: int) -> list[tuple[slice, slice]]:
    edge = size - 64
    return [(slice(0, 64), slice(0, 64)), (slice(size // 2, size // 2 + 64),) * 2,
            (slice(edge, size), slice(edge, size))]  # fmt: skip


def run_numpy(size: int, mode: str) -> dict:
    source, w = PatchSource(), window(mode)
    sums = np.zeros((size, size, CHANNELS), np.float32)
    weights = np.zeros((size, size), np.float32)
    for i, (start, stop) in enumerate(patch_boxes(size)):
        stop = np.minimum(stop, size)
        region = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
        part = tuple(slice(0, int(b - a)) for a, b in zip(start, stop))
        sums[region] += source(i)[part] * w[part][..., None]
        weights[region] += w[part]
    sums /= weights[..., None]
    return {f"probe{k}": sums[p] for k, p in enumerate(probes(size))}


def run_tiler(size: int, mode: str) -> dict:
    from tiler import Merger, Tiler

    tiler = Tiler(
        data_shape=(size, size, CHANNELS),
        tile_shape=(PATCH, PATCH, CHANNELS),
        overlap=(PATCH - STRIDE) / PATCH,
        channel_dimension=2,
        mode="constant",
    )
    boxes = patch_boxes(size)
    assert len(tiler) == len(boxes) and all(
        np.array_equal(tiler.get_tile_bbox(i)[0], boxes[i, 0]) for i in (0, 1, len(boxes) - 1)
    ), "tiler's grid differs from ours"
    w = np.repeat(window(mode)[..., None], CHANNELS, axis=2)
    merger = Merger(tiler, window=w, save_visits=False)
    source = PatchSource()
    for i in range(len(tiler)):
        merger.add(i, source(i))
    out = merger.merge(unpad=True, dtype=np.float32)
    return {f"probe{k}": out[p] for k, p in enumerate(probes(size))}


def ours(size: int, mode: str):
    from napari_patchwork.merge import MergeOptions, PredictionLayout, merge_lazy

    boxes = patch_boxes(size)
    layout = PredictionLayout(2, CHANNELS, np.dtype(np.float32))
    options = MergeOptions(mode, dtype=np.float32)
    block = 4 * STRIDE  # 1536 px blocks: 28 MB of float32 RGB
    return merge_lazy((size, size), boxes, range(len(boxes)), PatchSource(), options, layout,
                      (block, block))  # fmt: skip


def run_ours_tiff(size: int, mode: str, out: str) -> dict:
    import tifffile

    from napari_patchwork.io import write_image

    write_image(out, ours(size, mode), compression=None, overwrite=True)
    with tifffile.TiffFile(out) as tif:
        store = tif.aszarr()
        import zarr

        array = zarr.open(store, mode="r")
        result = {f"probe{k}": np.asarray(array[p]) for k, p in enumerate(probes(size))}
        store.close()
    return result


def run_ours_zarr(size: int, mode: str, out: str) -> dict:
    import dask.array as da
    import zarr

    merged = ours(size, mode)
    target = zarr.create_array(store=out, shape=merged.shape, chunks=merged.chunksize,
                               dtype=merged.dtype, compressors=None, overwrite=True)  # fmt: skip
    da.store(merged, target, lock=False)  # each block written by its own task
    array = zarr.open_array(out, mode="r")
    return {"probes": lambda: {f"probe{k}": array[p] for k, p in enumerate(probes(size))}}


def run_ours_blocks(size: int, mode: str) -> dict:
    merged = ours(size, mode)
    y0 = 0
    for height in merged.chunks[0]:  # a chunk row at a time, as the TIFF writer does
        merged[y0 : y0 + height].compute()
        y0 += height
    return {
        "probes": lambda: {f"probe{k}": merged[p].compute() for k, p in enumerate(probes(size))}
    }


VARIANTS = {"numpy": run_numpy, "tiler": run_tiler, "ours -> zarr": run_ours_zarr,
            "ours -> TIFF": run_ours_tiff, "ours, blocks": run_ours_blocks}  # fmt: skip


def child(variant: str, size: int, mode: str, result: str, tiff: str) -> None:
    import dask.array  # noqa: F401  imports are not timed
    import tifffile  # noqa: F401
    import zarr  # noqa: F401

    import napari_patchwork.io  # noqa: F401
    import napari_patchwork.merge  # noqa: F401

    if variant == "tiler":
        import tiler  # noqa: F401
    window(mode)  # the window is cached per process: made before timing for every variant
    start = time.perf_counter()
    if variant == "ours -> TIFF":
        probe = VARIANTS[variant](size, mode, tiff)
    elif variant == "ours -> zarr":
        probe = VARIANTS[variant](size, mode, tiff.replace(".tif", ".zarr"))
    else:
        probe = VARIANTS[variant](size, mode)
    elapsed = time.perf_counter() - start
    if "probes" in probe:  # computed after timing
        probe = probe["probes"]()
    np.savez(result, seconds=elapsed, **probe)


def measure(variant: str, size: int, mode: str, workdir: Path) -> tuple[float, float, dict]:
    result = workdir / "result.npz"
    tiff = workdir / "merged.tif"
    args = [sys.executable, __file__, "--child", variant, "--size", str(size), "--mode", mode,
            "--result", str(result), "--tiff", str(tiff)]  # fmt: skip
    process = subprocess.Popen(args)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:  # e.g. -9: killed by the kernel for want of memory
        return float("nan"), usage.ru_maxrss / 1024, {"exit": process.returncode}
    with np.load(result) as data:
        out = {k: data[k] for k in data.files}
    result.unlink()
    if tiff.exists():
        tiff.unlink()
    shutil.rmtree(tiff.with_suffix(".zarr"), ignore_errors=True)
    return float(out.pop("seconds")), usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--mode", action="append", choices=["hann", "gaussian"])
    parser.add_argument("--workdir", default=None, help="folder for the TIFF (default: a temp dir)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--tiff", help=argparse.SUPPRESS)
    args = parser.parse_args()
    modes = args.mode or ["hann", "gaussian"]
    if args.child:
        child(args.child, args.size, modes[0], args.result, args.tiff)
        return
    try:
        import tiler  # noqa: F401

        variants = list(VARIANTS)
    except ImportError:
        print("tiler is not installed (pip install tiler): its Merger is skipped")
        variants = [v for v in VARIANTS if v != "tiler"]
    n = len(patch_boxes(args.size))
    print(f"{args.size} x {args.size} x {CHANNELS} float32, {n} patches of {PATCH} px, "
          f"stride {STRIDE} (25 % overlap)")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for mode in modes:
            rows = {v: measure(v, args.size, mode, Path(tmp)) for v in variants}
            peers = [rows[v][0] for v in variants if not v.startswith("ours")]
            fastest_peer = np.nanmin(peers) if not np.all(np.isnan(peers)) else np.nan
            reference = rows["numpy"][2]
            print(f"\n{mode}:")
            print(f"  {'variant':14s} {'time s':>8s} {'peak MB':>9s} {'vs fastest peer':>16s} "
                  f"{'max |diff| vs numpy':>20s}")  # fmt: skip
            for v, (seconds, peak, probe) in rows.items():
                if "exit" in probe:
                    print(f"  {v:14s} failed: exit {int(probe['exit'])} (-9: out of memory), "
                          f"peak {peak:.0f} MB")  # fmt: skip
                    continue
                if "exit" in reference:
                    diff = float("nan")
                else:
                    diff = max(float(np.abs(probe[k] - reference[k]).max()) for k in reference)
                print(f"  {v:14s} {seconds:8.1f} {peak:9.0f} {fastest_peer / seconds:15.2f}x "
                      f"{diff:20.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
