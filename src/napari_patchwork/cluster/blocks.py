"""Work in blocks: C-order block slices, and native libraries held to one thread while we
parallelise over blocks ourselves."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

MAX_BLOCK_PIXELS = 1 << 16

# --------------------------------------------------------------------------- native threads


class _SingleThreaded:
    """Context manager: BLAS and OpenMP libraries run single-threaded while any user is inside.

    We parallelise over blocks ourselves, and k-means runs on a sample small enough
    for one core. Measured on a 2-core machine with one core busy elsewhere: the
    same k-means fit took 17 ms single-threaded and 120-300 ms with two OpenMP
    threads; spinning OpenBLAS threads slowed block products 10x (re-measured for the
    whole 2048 x 2048 RGB benchmark on a loaded 2-core machine: median 51 ms with this
    limit, 82 ms without). Re-entrant and shared between threads: the original limits
    come back when the last user leaves. ``threadpoolctl.threadpool_limits`` alone does
    not do that: dask runs :func:`label_dask_block` in several threads at once, and the
    first to leave would restore the limits while the others still run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._limiter: Any = None
        self._controller: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                if self._controller is None:
                    from threadpoolctl import ThreadpoolController

                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=1)
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


single_threaded = _SingleThreaded()


def block_slices(shape: Sequence[int], max_pixels: int) -> Iterator[tuple[slice, ...]]:
    """C-order blocks of at most ``max_pixels`` pixels covering an array of ``shape``.

    Trailing axes are taken whole while they fit, the next axis is cut into runs,
    leading axes are stepped one index at a time.
    """
    inner = 1
    for split in range(len(shape) - 1, -1, -1):
        if inner * shape[split] > max_pixels:
            break
        inner *= shape[split]
    else:
        yield tuple(slice(0, n) for n in shape)
        return
    step = max(1, max_pixels // inner)
    whole = tuple(slice(0, n) for n in shape[split + 1 :])
    for lead in np.ndindex(*shape[:split]):
        head = tuple(slice(i, i + 1) for i in lead)
        for start in range(0, shape[split], step):
            yield (*head, slice(start, min(start + step, shape[split])), *whole)
