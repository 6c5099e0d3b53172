"""``manifest.csv``: one row per patch file pair."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def manifest_columns(names: Sequence[str]) -> list[str]:
    """The manifest's column names for spatial axes ``names`` (e.g. ``("y", "x")``)."""
    return (
        ["index", "split", "image", "mask"]
        + box_columns(names)
        + box_columns(names, "out_")
        + ["foreground_fraction", "image_std"]
    )


def box_columns(names: Sequence[str], prefix: str = "") -> list[str]:
    """A box's manifest columns: ``y0, y1, x0, x1, valid_y1, valid_x1`` (with ``prefix``)."""
    return [f"{prefix}{n}{k}" for n in names for k in (0, 1)] + [
        f"{prefix}valid_{n}1" for n in names
    ]


def manifest_boxes(
    rows: Sequence[dict[str, str]], names: Sequence[str], prefix: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Starts, stops and valid stops ``(N, ndim)`` of the manifest columns with ``prefix``."""

    def column(template: str) -> np.ndarray:
        values = [[int(r[template.format(n)]) for n in names] for r in rows]
        return np.array(values, dtype=np.int64).reshape(-1, len(names))

    return column(prefix + "{}0"), column(prefix + "{}1"), column(prefix + "valid_{}1")
