"""Cluster ids: how many there may be, the order that numbers them 1..k, their dtype."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_patchwork.cluster.errors import ClusterError

MAX_CLUSTERS = int(np.iinfo(np.uint16).max)

ID_ORDER = (
    "ascending mean channel value of the centre in image units (1 = darkest); "
    "ties (within 1e-4 standard deviations) broken by the channel values in channel order, "
    "then by position"
)
"""The documented rule that numbers clusters 1..k."""


def check_n_clusters(n_clusters: Any) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ClusterError(f"n_clusters must be an integer, got {n_clusters!r}.")
    if n_clusters < 2:
        raise ClusterError(f"n_clusters={n_clusters}: clustering needs at least 2 clusters.")
    if n_clusters > MAX_CLUSTERS:
        raise ClusterError(f"n_clusters={n_clusters} is too many; use at most {MAX_CLUSTERS}.")
    return int(n_clusters)


def labels_dtype(n_clusters: int) -> np.dtype:
    """``uint8`` for up to 255 clusters, else ``uint16`` (0 is kept for 'outside the ROI')."""
    return np.dtype(np.uint8) if n_clusters <= np.iinfo(np.uint8).max else np.dtype(np.uint16)
