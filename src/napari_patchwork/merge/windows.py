"""Separable blending windows and centre distances of a patch, cached per patch shape."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from napari_patchwork.merge.options import DEFAULT_SIGMA_SCALE, MergeError

WINDOWS: tuple[str, ...] = ("constant", "gaussian", "hann")
MIN_WEIGHT = 1e-3
"""Gaussian weights are clamped to at least max(smallest weight, MIN_WEIGHT) (as MONAI does)."""


def window_1d(kind: str, n: int, sigma_scale: float = DEFAULT_SIGMA_SCALE) -> np.ndarray:
    """The 1-D window of ``n`` samples (float64).

    ``constant``: 1. ``gaussian``: exp(-x^2 / (2 sigma^2)) with x = k - (n - 1) / 2 and
    sigma = ``sigma_scale`` * n. ``hann``: 0.5 - 0.5 cos(2 pi (k + 1) / (n + 1)), which is
    never zero (torchio's Hann window), so pixels at a patch edge keep a weight.
    """
    if kind not in WINDOWS:
        raise MergeError(f"window {kind!r} is not known; choose one of {', '.join(WINDOWS)}.")
    k = np.arange(n, dtype=np.float64)
    if kind == "constant":
        return np.ones(n)
    if kind == "hann":
        return 0.5 - 0.5 * np.cos(2 * np.pi * (k + 1) / (n + 1))
    x = k - (n - 1) / 2.0
    return np.exp(-(x**2) / (2.0 * (sigma_scale * n) ** 2))


def patch_window(
    kind: str, shape: Sequence[int], sigma_scale: float = DEFAULT_SIGMA_SCALE, dtype: Any = None
) -> np.ndarray:
    """The N-D window of a patch of ``shape``: the outer product of :func:`window_1d` over
    the axes; ``gaussian`` then clamped to at least max(min w, :data:`MIN_WEIGHT`).
    Read-only (cached per shape)."""
    return _cached_window(
        kind, tuple(int(s) for s in shape), float(sigma_scale), str(np.dtype(dtype or np.float64))
    )


@lru_cache(maxsize=16)
def _cached_window(kind: str, shape: tuple[int, ...], sigma_scale: float, dtype: str):
    window = np.ones((), dtype=np.float64)
    for axis, n in enumerate(shape):
        w = window_1d(kind, n, sigma_scale)
        window = window[..., None] * w if axis else w
    if kind == "gaussian":
        window = np.maximum(window, max(float(window.min(initial=1.0)), MIN_WEIGHT))
    window = np.ascontiguousarray(window, dtype=dtype)
    window.flags.writeable = False
    return window


@lru_cache(maxsize=16)
def center_distance(shape: tuple[int, ...]) -> np.ndarray:
    """Chebyshev distance of every pixel of a patch of ``shape`` to its centre, in
    half-sizes (float32, read-only): 0 at the centre, about 1 at the edge."""
    distance = np.zeros((), dtype=np.float32)
    for axis, n in enumerate(shape):
        half = max(n / 2.0, 0.5)
        d = (np.abs(np.arange(n) - (n - 1) / 2.0) / half).astype(np.float32)
        distance = np.maximum(
            distance, d.reshape([-1 if k == axis else 1 for k in range(len(shape))])
        )
    distance = np.ascontiguousarray(np.broadcast_to(distance, shape))
    distance.flags.writeable = False
    return distance
