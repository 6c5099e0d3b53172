"""Cluster segmentation: the classic full KMeans versus ``cluster_pixels``.

    python benchmarks/bench_cluster.py                   # 3 images, 5 seeds: about 2 min
    python benchmarks/bench_cluster.py --images ihc --seeds 2
    python benchmarks/bench_cluster.py --no-peers        # without MiniBatchKMeans, OpenCV, faiss

Test images are 2048 x 2048 RGB uint8 built from real photos bundled with
scikit-image (nothing is downloaded, no noise):

* ``ihc``: the immunohistochemistry photo (the package's sample), upscaled 4x (bilinear);
* ``astronaut``: scikit-image's astronaut photo, upscaled 4x (bilinear);
* ``mosaic``: ihc, astronaut, coffee and chelsea, each resized to 1024 x 1024, in a 2 x 2 grid.

For each image, in this one process:

* naive: ``KMeans(n_clusters=5, random_state=0).fit(pixels)`` on all pixels reshaped
  to ``(n, 3)``, then ``cluster_centers_[labels_]`` as the posterised image (kept as is:
  it is the reference);
* ours: ``cluster_pixels(image, 5, channel_axis=-1)`` (defaults: k-means on a
  50,000-pixel sample, best of 3 k-means++ runs on 5,000 of them refined on the
  sample, every pixel assigned in float32 blocks) and ``result.posterized()``.

Both produce labels and the posterised image. Printed: median, min and max time of
each over several runs, naive and ours interleaved so that both see the same load from
other processes (after a warm-up run of both on a small image, so imports are not
timed), the ratio of the medians, peak memory of both, and the adjusted Rand index
(ARI) between their labels.

Peak memory is measured twice, in separate runs from the timing: ``tracemalloc`` in
this process (peak of Python/numpy allocations during the call; scikit-learn's and
OpenMP's native buffers are not seen), and the resident-set high-water mark in a fresh
Python process per method (``VmHWM`` reset through ``/proc/self/clear_refs`` just
before the call, minus the resident set then; the image is loaded and both methods
warmed up on a small crop first). A fresh process is needed because memory freed by
an earlier run stays with the allocator and would hide part of the next peak.

ARI: k-means has many local optima of nearly equal inertia, so two *full* KMeans
runs with different seeds do not agree perfectly either. Besides ours (seed s) vs
naive (seed 0), the naive reference is compared with itself under other seeds: that
is the ceiling any faithful method can be held to. The k-means objective (inertia on
all pixels, raw RGB) of every labelling is printed relative to naive seed 0's: equal
or lower means that labelling is as good a k-means solution, whatever its ARI.

Peers (issue 13), in the same run and interleaved with ours, when installed (a note
is printed for each one that is not; none is a dependency of the package):

* scikit-learn ``MiniBatchKMeans(n_clusters=5, random_state=seed)`` on all pixels
  (``fit_predict``), centres as the posterised image;
* OpenCV ``cv2.kmeans`` as in OpenCV's colour-quantisation tutorial: float32 pixels,
  criteria ``(EPS + MAX_ITER, 10, 1.0)``, 10 attempts, ``KMEANS_RANDOM_CENTERS``
  (``cv2.setRNGSeed(seed)``), ``centers[labels]`` as the posterised image;
* faiss ``Kmeans(3, 5, niter=20, seed=seed)`` trained on the float32 pixels (faiss
  subsamples to 256 points per centroid itself), every pixel assigned with
  ``index.search``, centroids as the posterised image.

For each: median time, the ratio to ours, the k-means objective on all pixels relative
to the full fit's (naive seed 0), and the ARI against the full fit.

Targets (issue 4): ours >= 30x faster, ARI >= 0.95, ours' peak memory < 4x the
image's float32 bytes, and under 2 s for a 2048 x 2048 RGB image.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage import data, transform
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from napari_patchwork.cluster import cluster_pixels

SIZE = 2048
N_CLUSTERS = 5
IMAGES = ("ihc", "astronaut", "mosaic")


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an RGB uint8 photo to ``shape``, back to uint8."""
    out = transform.resize(image, shape, order=1, preserve_range=True, anti_aliasing=False)
    return np.rint(out).astype(np.uint8)


def test_image(name: str) -> np.ndarray:
    """A ``(2048, 2048, 3)`` uint8 image made from a real photo (see the module docstring)."""
    if name == "ihc":
        return _resize(data.immunohistochemistry(), (SIZE, SIZE))
    if name == "astronaut":
        return _resize(data.astronaut(), (SIZE, SIZE))
    if name == "mosaic":
        half = (SIZE // 2, SIZE // 2)
        tiles = [
            _resize(photo, half)
            for photo in (
                data.immunohistochemistry(),
                data.astronaut(),
                data.coffee(),
                data.chelsea(),
            )
        ]
        return np.concatenate(
            [np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0
        )
    raise SystemExit(f"unknown image {name!r}; choose from {', '.join(IMAGES)}")


def naive(image: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The classic approach: KMeans on every pixel, centres as the posterised image."""
    pixels = image.reshape(-1, 3)
    kmeans = KMeans(n_clusters=N_CLUSTERS, random_state=seed).fit(pixels)
    posterised = kmeans.cluster_centers_[kmeans.labels_].reshape(image.shape)
    return kmeans.labels_, posterised


def ours(image: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    result = cluster_pixels(image, N_CLUSTERS, channel_axis=-1, random_state=seed)
    return result.labels, result.posterized()


def minibatch_kmeans(image: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import MiniBatchKMeans

    kmeans = MiniBatchKMeans(n_clusters=N_CLUSTERS, random_state=seed)
    labels = kmeans.fit_predict(image.reshape(-1, 3))
    return labels, kmeans.cluster_centers_[labels].reshape(image.shape)


def opencv_kmeans(image: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    cv2.setRNGSeed(seed)
    pixels = image.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1.0)
    _, labels, centers = cv2.kmeans(
        pixels, N_CLUSTERS, None, criteria, 10, cv2.KMEANS_RANDOM_CENTERS
    )
    labels = labels.ravel()
    return labels, np.uint8(centers)[labels].reshape(image.shape)


def faiss_kmeans(image: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    pixels = np.ascontiguousarray(image.reshape(-1, 3), dtype=np.float32)
    kmeans = faiss.Kmeans(3, N_CLUSTERS, niter=20, seed=seed, verbose=False)
    kmeans.train(pixels)
    _, nearest = kmeans.index.search(pixels, 1)
    labels = nearest.ravel()
    return labels, kmeans.centroids[labels].reshape(image.shape)


PEERS: dict[str, tuple[str, Callable]] = {
    "MiniBatchKMeans": ("sklearn", minibatch_kmeans),
    "OpenCV kmeans": ("cv2", opencv_kmeans),
    "faiss Kmeans": ("faiss", faiss_kmeans),
}
"""Name: (module that must be importable, function)."""


def installed_peers() -> dict[str, Callable]:
    """The peers whose library imports; a note for each one that does not."""
    import importlib

    found = {}
    for name, (module, run) in PEERS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            print(f"note: {name} skipped: {module} is not installed (pip install it to compare)")
            continue
        found[name] = run
    return found


def inertia(image: np.ndarray, labels: np.ndarray) -> float:
    """k-means objective of a labelling: squared distances of the pixels (raw RGB) to
    their cluster's mean, summed over all pixels (float64)."""
    pixels = image.reshape(-1, image.shape[-1]).astype(np.float64)
    labels = np.asarray(labels).ravel()
    counts = np.bincount(labels).astype(np.float64)
    used = counts > 0
    total = 0.0
    for channel in pixels.T:
        sums = np.bincount(labels, weights=channel)[used]
        squares = np.bincount(labels, weights=channel**2)[used]
        total += float(np.sum(squares - sums**2 / counts[used]))
    return total


def tracemalloc_peak(fn: Callable[[], object]) -> int:
    """Peak bytes allocated through Python's allocators during ``fn()``."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_peak_increase(fn: Callable[[], object]) -> int | None:
    """Resident-set high-water mark during ``fn()`` minus the resident set before (bytes).

    None where ``/proc/self/clear_refs`` cannot reset the high-water mark.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to the current RSS
        before = _status_kib("VmRSS")
        if _status_kib("VmHWM") > before + 1024:
            return None  # the reset did not take effect
    except (OSError, KeyError):
        return None
    fn()
    return (_status_kib("VmHWM") - before) * 1024


def rss_in_fresh_process(method: str, image: np.ndarray) -> int | None:
    """RSS peak increase of one ``method`` run ("naive" or "ours") in a new Python process.

    A fresh process does not reuse memory that an earlier run freed but the
    allocator kept, which would hide part of the peak.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.npy"
        np.save(path, image)
        command = [sys.executable, __file__, "--measure-rss", method, str(path)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    value = output.strip().splitlines()[-1]
    return None if value == "n/a" else int(value)


def _measure_rss_child(method: str, path: str) -> None:
    image = np.load(path)
    run = {"naive": naive, "ours": ours}[method]
    run(np.ascontiguousarray(image[:256, :256]))  # warm up: lazy imports, thread pools
    increase = rss_peak_increase(lambda: run(image))
    print("n/a" if increase is None else increase)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timings(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1e3
    return (
        f"median {np.median(ms):7.1f} ms (min {ms.min():.1f}, max {ms.max():.1f}, {len(ms)} runs)"
    )


def mib(n_bytes: int | None) -> str:
    return "n/a" if n_bytes is None else f"{n_bytes / 2**20:7.1f} MiB"


def bench(
    name: str, n_seeds: int, n_repeats: int, n_naive: int, peers: dict[str, Callable]
) -> dict[str, bool]:
    image = test_image(name)
    float32_bytes = image.size * 4
    print(f"\n== {name}: {image.shape} {image.dtype}, float32 size {mib(float32_bytes)}")

    naive_times, ours_times = [], []
    peer_times: dict[str, list[float]] = {peer: [] for peer in peers}
    for run in range(max(n_repeats, n_naive)):  # interleaved: all see the same machine load
        if run < n_naive:
            naive_times.append(timed(lambda: naive(image)))
            for peer, method in peers.items():
                peer_times[peer].append(timed(lambda: method(image)))
        if run < n_repeats:
            ours_times.append(timed(lambda: ours(image)))
    naive_time, ours_time = float(np.median(naive_times)), float(np.median(ours_times))
    print(f"time    naive {timings(naive_times)}\n        ours  {timings(ours_times)}")
    print(f"        ratio of the medians {naive_time / ours_time:5.1f}x")
    naive_labels, _ = naive(image)

    naive_mem = tracemalloc_peak(lambda: naive(image)), rss_in_fresh_process("naive", image)
    ours_mem = tracemalloc_peak(lambda: ours(image)), rss_in_fresh_process("ours", image)
    for label, (traced, rss) in (("naive", naive_mem), ("ours ", ours_mem)):
        rss_text = mib(rss) + ("" if rss is None else f" ({rss / float32_bytes:4.2f}x)")
        print(
            f"memory  {label} tracemalloc peak {mib(traced)} ({traced / float32_bytes:4.2f}x "
            f"float32 image)   RSS peak increase {rss_text}"
        )

    ours_labels = [ours(image, s)[0].ravel() for s in range(n_seeds)]
    naive_labels_other = [naive(image, s)[0] for s in range(1, n_seeds)]
    ours_ari = [adjusted_rand_score(naive_labels, labels) for labels in ours_labels]
    naive_ari = [adjusted_rand_score(naive_labels, labels) for labels in naive_labels_other]
    reference_inertia = inertia(image, naive_labels)

    def excess(labels) -> str:
        return f"{100 * (inertia(image, labels) / reference_inertia - 1):+.2f}%"

    print(
        f"ARI     ours seed 0..{n_seeds - 1} vs naive seed 0:  "
        + " ".join(f"{a:.3f}" for a in ours_ari)
        + f"   median {np.median(ours_ari):.3f}"
    )
    if naive_ari:
        print(
            f"        naive seed 1..{n_seeds - 1} vs naive seed 0: "
            + " ".join(f"{a:.3f}" for a in naive_ari)
            + f"   median {np.median(naive_ari):.3f}  (the reference's own reproducibility)"
        )
    print(
        "inertia (all pixels) vs naive seed 0: ours "
        + " ".join(excess(labels) for labels in ours_labels)
        + "   naive "
        + " ".join(excess(labels) for labels in naive_labels_other)
    )

    print_peers(image, naive_labels, ours_labels[0], naive_time, ours_time, peers, peer_times)

    worst_memory = max(m for m in ours_mem if m is not None)
    checks = {
        ">= 30x faster": naive_time / ours_time >= 30,
        "ARI >= 0.95 (seed 0)": ours_ari[0] >= 0.95,
        "peak memory < 4x float32 image": worst_memory < 4 * float32_bytes,
        "< 2 s": max(ours_times) < 2.0,
    }
    print("targets " + "   ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in checks.items()))
    return checks


def print_peers(
    image: np.ndarray,
    reference: np.ndarray,
    ours_labels: np.ndarray,
    naive_time: float,
    ours_time: float,
    peers: dict[str, Callable],
    peer_times: dict[str, list[float]],
) -> None:
    """One table: time, ratio to ours, objective vs the full fit, ARI vs the full fit (seed 0)."""
    reference_inertia = inertia(image, reference)
    rows = [("full KMeans (naive)", naive_time, reference), ("ours", ours_time, ours_labels)]
    rows += [(peer, float(np.median(peer_times[peer])), peers[peer](image)[0]) for peer in peers]
    print(
        "peers   method                 median time   time / ours   objective vs full   ARI vs full"
    )
    for label, seconds, labels in rows:
        objective = 100 * (inertia(image, labels) / reference_inertia - 1)
        ari = adjusted_rand_score(reference, np.asarray(labels).ravel())
        print(
            f"        {label:22s} {seconds * 1e3:8.1f} ms   {seconds / ours_time:9.1f}x"
            f"   {objective:+15.2f}%   {ari:11.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", default=",".join(IMAGES), help=f"comma-separated, from {', '.join(IMAGES)}"
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds for the ARI comparison (default 5)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of ours (default 7)")
    parser.add_argument(
        "--naive-repeats", type=int, default=3, help="timed runs of naive (default 3)"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="leave out MiniBatchKMeans, OpenCV and faiss"
    )
    parser.add_argument("--measure-rss", nargs=2, metavar=("METHOD", "NPY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_rss:  # the child process of rss_in_fresh_process
        _measure_rss_child(*args.measure_rss)
        return

    small = _resize(data.immunohistochemistry(), (256, 256))
    ours(small)  # warm up all: lazy imports, OpenMP and BLAS thread pools
    naive(small)
    peers = {} if args.no_peers else installed_peers()
    for method in peers.values():
        method(small)
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        "(other processes on the machine slow both methods down)"
    )
    for name in args.images.split(","):
        bench(
            name.strip(),
            max(1, args.seeds),
            max(1, args.repeats),
            max(1, args.naive_repeats),
            peers,
        )


if __name__ == "__main__":
    main()
