"""Train/val/test splits of the kept patches: fractions checked, labels assigned by seed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from napari_patchwork.export.errors import ExportError

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
"""Split names used when ``split`` is given as a sequence of fractions."""


def normalize_split(split: Mapping[str, float] | Sequence[float] | None) -> dict[str, float] | None:
    """Check split fractions; a sequence is named ``train``, ``val``, ``test`` in order."""
    if split is None or len(split) == 0:
        return None
    if isinstance(split, Mapping):
        named = {str(k): float(v) for k, v in split.items()}
    else:
        values = [float(v) for v in split]
        if len(values) > len(SPLIT_NAMES):
            raise ExportError(
                f"split has {len(values)} fractions; give at most 3 (train, val, test) "
                "or a mapping such as {'train': 0.7, 'val': 0.2, 'test': 0.1}."
            )
        named = dict(zip(SPLIT_NAMES, values))
    for name, value in named.items():
        if not name or "," in name or not np.isfinite(value) or value < 0:
            raise ExportError(
                f"split {name!r}: {value} is not a valid fraction (0 to 1, name without commas)."
            )
    total = sum(named.values())
    if abs(total - 1.0) > 1e-6:
        raise ExportError(
            f"split fractions must add up to 1, they add up to {total:g}: e.g. (0.8, 0.1, 0.1)."
        )
    return named


def assign_splits(n: int, split: Mapping[str, float] | None, seed: int = 0) -> list[str]:
    """Deterministic split labels for ``n`` patches (in patch order).

    Counts follow the fractions exactly up to rounding (largest remainder, ties in
    the order of the split names); which patch gets which label is a permutation
    drawn from ``numpy.random.default_rng(seed)``. Without a split all labels are "".
    """
    if not split:
        return [""] * n
    names = list(split)
    exact = np.array([split[name] for name in names], dtype=np.float64) * n
    counts = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    for k in np.argsort(-remainder, kind="stable")[: n - int(counts.sum())]:
        counts[k] += 1
    labels = np.repeat(np.array(names, dtype=object), counts)
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=object)
    out[order] = labels
    return [str(v) for v in out]
