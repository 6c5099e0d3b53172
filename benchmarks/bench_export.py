"""Benchmark patch export against the file system's floor, one numpy.save, and the peers.

    python benchmarks/bench_export.py [--size 4096] [--patch 256] [--repeats 5] [--dir DIR]
                                      [--synced] [--skip-memory]

1. Throughput. A ``size x size`` RGB uint8 image and a uint16 mask are exported as
   ``patch`` px patches to uncompressed TIFF and to NPY (with the default two writer
   threads, and with one), in the same run and the same folder as these references:

   * ``bare bytes``: the patches' bytes, already cut out, one bare file each (no format,
     no temporary name, no Python work): the floor of any one-file-per-patch export.
     The issue's target: TIFF and NPY export >= 0.60 of its throughput.
   * ``numpy.save``: the same bytes written with one ``numpy.save`` call per array
     (two files).
   * peers: ``patchify`` + a ``tifffile.imwrite`` loop, and ``tiler`` + the same loop
     (what a user would otherwise write; measured when installed, else skipped with a
     note). The issue's target: our export >= 2x as fast as each.
   * naive loops: one ``numpy.save`` / ``tifffile.imwrite`` per patch slice.

   Median (and best) of ``repeats`` runs each, runs interleaved, ``os.sync()`` before
   every timed run, a new folder for every run. "cached" stops the clock when the
   last write call returns (data may still be in the page cache); with ``--synced``
   a second table includes an ``os.sync()`` afterwards, i.e. until the bytes are on
   disk. Ratios are of the medians: ``floor x`` = bare bytes' time / this time
   (throughput relative to the floor), ``peer x`` = the peer's time / ours (speed-up).
   The zarr container (``fmt="zarr"``: two sharded arrays, not a file per patch) is held
   to one ``numpy.save`` per array instead: the issue's target is >= 0.70 of its
   throughput (``numpy.save x``).
2. Read-back. Every image and mask patch is read back in one random order, from the TIFF
   folder (a ``tifffile.imread`` loop, and our reader) and from the zarr folder (our
   reader, ``PatchFolder.patches``, and zarr-python's ``array[i]``). The issue's target:
   the TIFF folder >= 5x slower than ours on the zarr folder.
3. Memory. In a fresh subprocess the image and mask are opened from zarr stores with
   ``dask.array.from_zarr`` and exported to TIFF; its peak resident memory
   (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is compared with
   2 x (image + mask bytes) + 200 MB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FLOOR_TARGET = 0.60  # export throughput / bare bytes'
SAVE_TARGET = 0.70  # zarr export throughput / numpy.save's
READ_TARGET = 5.0  # random-order read-back: the TIFF folder's time / the zarr folder's
PEER_TARGET = 2.0  # peer's time / ours


def make_data(size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint16)
    mask[size // 8 : size // 2, size // 8 : size // 2] = 1
    mask[size // 2 :, size // 2 :] = rng.integers(
        0, 1000, size=(size - size // 2,) * 2, dtype=np.uint16
    )
    return image, mask


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(write, out: Path, sync: bool) -> tuple[float, float]:
    """Wall-clock and CPU seconds ``write(out)`` takes (plus an ``os.sync()`` if ``sync``),
    after an ``os.sync()``."""
    os.sync()
    cpu, start = cpu_seconds(), time.perf_counter()
    write(out)
    if sync:
        os.sync()
    return time.perf_counter() - start, cpu_seconds() - cpu


def baseline(folder: Path, image: np.ndarray, mask: np.ndarray) -> None:
    np.save(folder / "image.npy", image)
    np.save(folder / "mask.npy", mask)


def raw_files(folder: Path, pieces: list[tuple[str, np.ndarray]]) -> None:
    """The file-system floor of any one-file-per-patch export: bare bytes, no format, no rename."""
    for name, data in pieces:
        with open(folder / name, "wb") as fh:
            fh.write(data.data)


def naive_loop(folder: Path, image: np.ndarray, mask: np.ndarray, patch: int, fmt: str) -> None:
    """One plain numpy.save / tifffile.imwrite per patch slice, as a quick script would."""
    import tifffile

    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    size = image.shape[0]
    for y in range(0, size - patch + 1, patch):
        for x in range(0, size - patch + 1, patch):
            for kind, array in (("images", image), ("masks", mask)):
                data = array[y : y + patch, x : x + patch]
                if fmt == "npy":
                    np.save(folder / kind / f"p_y{y}_x{x}.npy", data)
                else:
                    rgb = "rgb" if data.ndim == 3 else "minisblack"
                    tifffile.imwrite(folder / kind / f"p_y{y}_x{x}.tif", data, photometric=rgb)


def patchify_loop(folder: Path, image: np.ndarray, mask: np.ndarray, patch: int) -> None:
    """The patchify recipe: cut both arrays into patch views, write each with tifffile."""
    import tifffile
    from patchify import patchify

    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    images = patchify(image, (patch, patch, image.shape[2]), step=patch)
    masks = patchify(mask, (patch, patch), step=patch)
    for i in range(images.shape[0]):
        for j in range(images.shape[1]):
            name = f"p_{i}_{j}.tif"
            tifffile.imwrite(folder / "images" / name, images[i, j, 0], photometric="rgb")
            tifffile.imwrite(folder / "masks" / name, masks[i, j], photometric="minisblack")


def tiler_loop(folder: Path, image: np.ndarray, mask: np.ndarray, patch: int) -> None:
    """The tiler recipe: one Tiler per array, iterate its tiles, write each with tifffile."""
    import tifffile
    from tiler import Tiler

    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    for kind, array, tile, channel, photometric in (
        ("images", image, (patch, patch, image.shape[2]), 2, "rgb"),
        ("masks", mask, (patch, patch), None, "minisblack"),
    ):
        tiler = Tiler(data_shape=array.shape, tile_shape=tile, channel_dimension=channel)
        for index, data in tiler.iterate(array):
            tifffile.imwrite(folder / kind / f"p_{index}.tif", data, photometric=photometric)


PEERS = {"patchify": patchify_loop, "tiler": tiler_loop}


def writers_for(image: np.ndarray, mask: np.ndarray, patch: int) -> dict:
    """Every variant timed: name -> ``write(out_folder)``."""
    from napari_patchwork.export import export_patches

    size = image.shape[0]
    pieces = [
        (f"{kind}_{y}_{x}", np.ascontiguousarray(array[y : y + patch, x : x + patch]))
        for y in range(0, size - patch + 1, patch)
        for x in range(0, size - patch + 1, patch)
        for kind, array in (("image", image), ("mask", mask))
    ]

    def export(fmt, threads, compression=None):
        return lambda out: export_patches(
            out / "p",
            image,
            mask,
            patch_size=patch,
            channel_axis=-1,
            fmt=fmt,
            compression=compression,
            write_threads=threads,
        )

    writers = {
        "bare bytes": lambda out: raw_files(out, pieces),
        "numpy.save": lambda out: baseline(out, image, mask),
        "tiff export": export("tiff", 2),
        "npy export": export("npy", 2),
        "tiff export, 1 thread": export("tiff", 1),
        "npy export, 1 thread": export("npy", 1),
        "zarr export": export("zarr", 2),
        "zarr export, 1 thread": export("zarr", 1),
        "zarr export, zstd": export("zarr", 2, "zstd"),
        "naive tiff loop": lambda out: naive_loop(out, image, mask, patch, "tiff"),
        "naive npy loop": lambda out: naive_loop(out, image, mask, patch, "npy"),
    }
    for peer, loop in PEERS.items():
        if importlib.util.find_spec(peer) is None:
            print(f"note: {peer} is not installed (pip install {peer}); its loop is skipped")
            continue
        writers[f"{peer} + tifffile"] = lambda out, loop=loop: loop(out, image, mask, patch)
    return writers


def report(label: str, runs: dict[str, list[tuple[float, float]]], nbytes: int) -> dict:
    """Print one table of medians and ratios; return ``{name: (floor x, {peer: peer x})}``."""
    times = {name: [wall for wall, _ in r] for name, r in runs.items()}
    cpu = {name: float(np.median([c for _, c in r])) for name, r in runs.items()}
    median = {name: float(np.median(t)) for name, t in times.items()}
    floor = median["bare bytes"]
    peers = [name for name in median if name.endswith("+ tifffile")]
    print(
        f"{label}: {nbytes / 1e6:.0f} MB; ms median / best; floor x = bare bytes' time / this "
        f"(target {FLOOR_TARGET} for exports); peer x = peer's time / this (target {PEER_TARGET}); "
        "cpu = median CPU time of the process (all threads): on a busy machine the wall-clock "
        "times wait for other processes, cpu ratios do not"
    )
    results = {}
    for name, t in times.items():
        line = (
            f"  {name:22s} {median[name] * 1e3:7.1f} / {min(t) * 1e3:7.1f} ms "
            f"({nbytes / median[name] / 1e6:5.0f} MB/s)  floor x {floor / median[name]:4.2f}"
            f"  numpy.save x {median['numpy.save'] / median[name]:4.2f}"
            f"  cpu {cpu[name] * 1e3:6.1f} ms (floor x {cpu['bare bytes'] / cpu[name]:4.2f})"
        )
        if name.startswith("zarr export"):  # one container, not a file per patch
            ratio = median["numpy.save"] / median[name]
            line += f" [{'ok' if ratio >= SAVE_TARGET else 'BELOW'} {SAVE_TARGET} of numpy.save]"
            results[name] = (ratio, {})
        elif "export" in name:
            ok = floor / median[name] >= FLOOR_TARGET
            line += f" [{'ok' if ok else 'BELOW'}]"
            speedups = {}
            for peer in peers:
                speedups[peer] = median[peer] / median[name]
                ok = speedups[peer] >= PEER_TARGET
                line += f"; {peer.split()[0]} x {speedups[peer]:4.2f} [{'ok' if ok else 'BELOW'}]"
            results[name] = (floor / median[name], speedups)
        print(line)
    return results


def throughput(
    work: Path, image: np.ndarray, mask: np.ndarray, patch: int, repeats: int, synced: bool
) -> dict:
    from napari_patchwork.export import export_patches

    nbytes = image.nbytes + mask.nbytes
    writers = writers_for(image, mask, patch)
    for fmt in ("tiff", "npy", "zarr"):  # warm up: imports and first-call costs are not timed
        export_patches(
            work / f"warm_{fmt}",
            image[:patch, :patch],
            mask[:patch, :patch],
            patch_size=patch,
            channel_axis=-1,
            fmt=fmt,
        )
    results = {}
    for sync in (False, True) if synced else (False,):
        label = "synced" if sync else "cached"
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in writers}
        for repeat in range(repeats):
            for name, write in writers.items():
                # a new folder each run; deleting files between runs would make the file system
                # discard blocks while the next run writes
                out = work / f"run_{label}_{name.replace(' ', '_').replace(',', '')}_{repeat}"
                out.mkdir()
                times[name].append(timed(write, out, sync))
        results[label] = report(label, times, nbytes)
    return results


def read_back(work: Path, image: np.ndarray, mask: np.ndarray, patch: int, repeats: int) -> dict:
    """Read every image and mask patch back in one random order: from the TIFF folder and
    from the zarr folder, each with a plain loop and with our reader (``PatchFolder.patches``,
    which checks every patch); median of ``repeats`` runs, runs interleaved."""
    import tifffile
    import zarr

    from napari_patchwork.export import export_patches
    from napari_patchwork.folder import read_patch_folder

    folders = {}
    for fmt in ("tiff", "zarr"):
        folders[fmt] = work / f"read_{fmt}"
        export_patches(folders[fmt], image, mask, patch_size=patch, channel_axis=-1, fmt=fmt)
    rows = read_patch_folder(folders["tiff"]).rows
    order = np.random.default_rng(0).permutation(len(rows)).tolist()
    tiff_files = [(folders["tiff"] / r["image"], folders["tiff"] / r["mask"]) for r in rows]

    def tifffile_loop():
        return [(tifffile.imread(a), tifffile.imread(b)) for a, b in (tiff_files[i] for i in order)]

    def ours(fmt):
        def read():
            folder = read_patch_folder(folders[fmt])  # the checks of dataset.json and arrays
            images, masks = folder.patches("images"), folder.patches("masks")
            return [(images[i], masks[i]) for i in order]

        return read

    def zarr_python():
        images = zarr.open_array(folders["zarr"] / "images.zarr", mode="r")
        masks = zarr.open_array(folders["zarr"] / "masks.zarr", mode="r")
        return [(images[i], masks[i]) for i in order]

    readers = {
        "tifffile loop, TIFF folder": tifffile_loop,
        "ours, TIFF folder": ours("tiff"),
        "ours, zarr folder": ours("zarr"),
        "zarr-python, zarr folder": zarr_python,
    }
    starts = [(int(rows[i]["y0"]), int(rows[i]["x0"])) for i in order]
    expected = [(image[y : y + patch, x : x + patch], mask[y : y + patch, x : x + patch])
                for y, x in starts]  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in readers}
    for name, read in readers.items():  # once untimed, checked: every reader reads the same
        got = read()
        assert all(
            np.array_equal(a, b) and np.array_equal(c, d) for (a, c), (b, d) in zip(got, expected)
        )
    for _ in range(repeats):
        for name, read in readers.items():
            start = time.perf_counter()
            read()
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    zarr_time = median["ours, zarr folder"]
    print(
        f"read back all {len(rows)} image + mask patches in one random order (page cache), "
        f"ms median / best; x = this time / ours on the zarr folder (target: the TIFF folder "
        f">= {READ_TARGET}x slower)"
    )
    for name, t in times.items():
        ratio = median[name] / zarr_time
        line = f"  {name:28s} {median[name] * 1e3:7.1f} / {min(t) * 1e3:7.1f} ms  x {ratio:5.2f}"
        if "TIFF folder" in name:
            line += f" [{'ok' if ratio >= READ_TARGET else 'BELOW'}]"
        print(line)
    return median


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


def measure_memory(folder: Path, patch: int, fmt: str = "tiff") -> None:
    """Export the zarr stores as dask arrays; print peak RSS and timings as JSON (child process)."""
    import resource

    import dask.array as da

    from napari_patchwork.export import export_patches

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    image, mask = da.from_zarr(str(folder / "image.zarr")), da.from_zarr(str(folder / "mask.zarr"))
    start = time.perf_counter()
    result = export_patches(
        folder / f"mem_{fmt}", image, mask, patch_size=patch, channel_axis=-1, fmt=fmt
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
    peaks = {}
    for fmt in ("tiff", "zarr"):
        done = subprocess.run(
            [sys.executable, __file__, "_measure", str(work), str(patch), fmt],
            check=True,
            capture_output=True,
            text=True,
        )
        stats = json.loads(done.stdout.strip().splitlines()[-1])
        nbytes = stats["nbytes"]
        limit_mb = 2 * nbytes / 2**20 + 200
        peaks[fmt] = peak_mb = stats["peak_kb"] / 1024  # ru_maxrss is in KiB on Linux
        print(
            f"memory: dask (zarr) input exported as {fmt}, {stats['patches']} patches in "
            f"{stats['seconds']:.1f} s; peak RSS {peak_mb:.0f} MB (after imports "
            f"{stats['before_kb'] / 1024:.0f} MB); image+mask {nbytes / 2**20:.0f} MB; limit "
            f"2 x data + 200 = {limit_mb:.0f} MB [{'ok' if peak_mb < limit_mb else 'ABOVE'}]"
        )
    return {"peak_mb": peaks, "limit_mb": limit_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="image height and width in px")
    parser.add_argument("--patch", type=int, default=256, help="patch size in px")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per variant (best and median shown)"
    )
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder to write in (default: a temp folder)"
    )
    parser.add_argument(
        "--skip-memory", action="store_true", help="skip the dask memory measurement"
    )
    parser.add_argument(
        "--synced", action="store_true", help="also time every variant until os.sync() returns"
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
        throughput(work, image, mask, args.patch, args.repeats, args.synced)
        read_back(work, image, mask, args.patch, args.repeats)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_prepare":
        prepare_stores(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_measure":
        measure_memory(Path(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:5])
    else:
        sys.exit(main())
