"""Benchmark patch export: throughput against one plain numpy write, and peak memory for dask input.

    python benchmarks/bench_export.py [--size 4096] [--patch 256] [--repeats 3] [--dir DIR]

1. Throughput. A ``size x size`` RGB uint8 image and a uint16 mask are exported as
   ``patch`` px patches to uncompressed TIFF and to NPY, and the same bytes are
   written with one ``numpy.save`` call per array (the baseline), in the same run and
   the same folder. Best of ``repeats`` each, runs interleaved, ``os.sync()`` before
   every timed run. A third reference writes the same patches as bare bytes, one
   file each (no format, no temporary name): the file-system cost that any
   one-file-per-patch export pays. Two ratios (export MB/s / numpy.save MB/s) are printed:
   "cached" stops the clock when the last write call returns (data may still be in
   the page cache), "synced" includes an ``os.sync()`` afterwards, i.e. until the
   bytes are on disk. Target: ratio >= 0.70.
2. Memory. In a fresh subprocess the image and mask are opened from zarr stores with
   ``dask.array.from_zarr`` and exported to TIFF; its peak resident memory
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is compared with
   2 x (image + mask bytes) + 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_RATIO = 0.70


def make_data(size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint16)
    mask[size // 8 : size // 2, size // 8 : size // 2] = 1
    mask[size // 2 :, size // 2 :] = rng.integers(
        0, 1000, size=(size - size // 2,) * 2, dtype=np.uint16
    )
    return image, mask


def timed(write, out: Path, sync: bool) -> float:
    """Seconds ``write(out)`` takes (plus an ``os.sync()`` if ``sync``), after an ``os.sync()``."""
    os.sync()
    start = time.perf_counter()
    write(out)
    if sync:
        os.sync()
    return time.perf_counter() - start


def baseline(folder: Path, image: np.ndarray, mask: np.ndarray) -> None:
    np.save(folder / "image.npy", image)
    np.save(folder / "mask.npy", mask)


def raw_files(folder: Path, pieces: list[tuple[str, np.ndarray]]) -> None:
    """The file-system floor of any one-file-per-patch export: bare bytes, no format, no rename."""
    for name, data in pieces:
        with open(folder / name, "wb") as fh:
            fh.write(data.data)


def throughput(work: Path, image: np.ndarray, mask: np.ndarray, patch: int, repeats: int) -> dict:
    from napari_patchwork.export import export_patches

    nbytes = image.nbytes + mask.nbytes
    size = image.shape[0]
    pieces = [
        (f"{kind}_{y}_{x}", np.ascontiguousarray(array[y : y + patch, x : x + patch]))
        for y in range(0, size - patch + 1, patch)
        for x in range(0, size - patch + 1, patch)
        for kind, array in (("image", image), ("mask", mask))
    ]

    def export(fmt):
        return lambda out: export_patches(
            out / "p", image, mask, patch_size=patch, channel_axis=-1, fmt=fmt
        )

    writers = {
        "baseline": lambda out: baseline(out, image, mask),
        "raw files": lambda out: raw_files(out, pieces),
        "tiff": export("tiff"),
        "npy": export("npy"),
    }
    for fmt in ("tiff", "npy"):  # warm up: imports and first-call costs are not timed
        export_patches(
            work / f"warm_{fmt}",
            image[:patch, :patch],
            mask[:patch, :patch],
            patch_size=patch,
            channel_axis=-1,
            fmt=fmt,
        )
    results = {}
    for sync in (False, True):
        best = dict.fromkeys(writers, np.inf)
        for repeat in range(repeats):
            for name, write in writers.items():
                # a new folder each run; deleting files between runs would make the file system
                # discard blocks while the next run writes
                out = work / f"run_{'synced' if sync else 'cached'}_{name}_{repeat}"
                out.mkdir()
                best[name] = min(best[name], timed(write, out, sync))
        label = "synced" if sync else "cached"
        base_mbs = nbytes / best["baseline"] / 1e6
        print(
            f"{label}: numpy.save {best['baseline'] * 1e3:.1f} ms ({base_mbs:.0f} MB/s); "
            f"raw bytes, one file per patch {best['raw files'] * 1e3:.1f} ms "
            f"(ratio {best['baseline'] / best['raw files']:.2f}: the file-system floor)"
        )
        for fmt in ("tiff", "npy"):
            mbs = nbytes / best[fmt] / 1e6
            results[(label, fmt)] = mbs / base_mbs
            print(
                f"  {fmt:4s} export {best[fmt] * 1e3:7.1f} ms ({mbs:5.0f} MB/s): "
                f"ratio {mbs / base_mbs:4.2f} of numpy.save "
                f"[{'ok' if mbs / base_mbs >= TARGET_RATIO else 'BELOW'} target {TARGET_RATIO}], "
                f"{best['raw files'] / best[fmt]:4.2f} of raw files"
            )
    return results


def prepare_stores(folder: Path, size: int) -> None:
    """Write the benchmark image and mask as zarr stores (512 px chunks) in ``folder``."""
    import zarr

    image, mask = make_data(size)
    chunk = min(512, size)
    for name, data, chunks in (("image", image, (chunk, chunk, 3)), ("mask", mask, (chunk, chunk))):
        store = zarr.open_array(
            str(folder / f"{name}.zarr"),
            mode="w",
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
        )
        store[...] = data


def measure_memory(folder: Path, patch: int) -> None:
    """Export the zarr stores as dask arrays; print peak RSS and timings as JSON (child process)."""
    import resource

    import dask.array as da

    from napari_patchwork.export import export_patches

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image, mask = da.from_zarr(str(folder / "image.zarr")), da.from_zarr(str(folder / "mask.zarr"))
    start = time.perf_counter()
    result = export_patches(
        folder / "mem_out", image, mask, patch_size=patch, channel_axis=-1, fmt="tiff"
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "before_kb": before,
                "peak_kb": peak,
                "patches": result.n_patches,
                "seconds": seconds,
                "nbytes": int(image.nbytes + mask.nbytes),
            }
        )
    )


def memory(work: Path, size: int, patch: int) -> dict:
    """Peak RSS of a fresh process exporting dask-backed data.

    Runs before the parent allocates the benchmark arrays: Linux keeps ``ru_maxrss``
    across ``exec``, so a child forked from a big parent would report the parent's size.
    """
    subprocess.run([sys.executable, __file__, "_prepare", str(work), str(size)], check=True)
    done = subprocess.run(
        [sys.executable, __file__, "_measure", str(work), str(patch)],
        check=True,
        capture_output=True,
        text=True,
    )
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    nbytes = stats["nbytes"]
    limit_mb = 2 * nbytes / 2**20 + 200
    peak_mb = stats["peak_kb"] / 1024  # ru_maxrss is in KiB on Linux
    print(
        f"memory: dask (zarr) input, {stats['patches']} patches in {stats['seconds']:.1f} s; "
        f"peak RSS {peak_mb:.0f} MB (after imports {stats['before_kb'] / 1024:.0f} MB); image+mask "
        f"{nbytes / 2**20:.0f} MB; limit 2 x data + 200 = {limit_mb:.0f} MB "
        f"[{'ok' if peak_mb < limit_mb else 'ABOVE'}]"
    )
    return {"peak_mb": peak_mb, "limit_mb": limit_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="image height and width in px")
    parser.add_argument("--patch", type=int, default=256, help="patch size in px")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per variant (best is kept)"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder to write in (default: a temp folder)"
    )
    parser.add_argument(
        "--skip-memory", action="store_true", help="skip the dask memory measurement"
    )
    args = parser.parse_args(argv)
    print(
        f"{args.size} x {args.size} RGB uint8 + uint16 mask, {args.patch} px patches -> "
        f"{(args.size // args.patch) ** 2} pairs of files"
    )
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_export_") as tmp:
        work = Path(tmp)
        print(f"writing in {work}")
        if not args.skip_memory:
            memory(work, args.size, args.patch)
        image, mask = make_data(args.size)
        throughput(work, image, mask, args.patch, args.repeats)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_prepare":
        prepare_stores(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_measure":
        measure_memory(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(main())
