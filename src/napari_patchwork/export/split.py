"""Train/val/test splits of the kept patches: fractions checked, labels assigned by seed."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_patchwork._common import ints, per_axis
from napari_patchwork.export.errors import ExportError
from napari_patchwork.folder import PatchInfo

if TYPE_CHECKING:  # options.py imports this module
    from napari_patchwork.export.options import ExportOptions

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


SPLIT_BY: tuple[str, ...] = ("patch", "blocks", "image")
"""How patches are grouped before splits are drawn: each patch on its own, by spatial
block (:func:`block_split`), or by source image in a batch (:func:`image_splits`)."""


@dataclass(frozen=True)
class BlockSplit:
    """A blocked split of candidate patches (see :func:`block_split`).

    ``labels[i]`` is the split of candidate ``i`` (``""`` for the buffer), ``blocks[i]``
    its block per spatial axis, ``buffer[i]`` True where it is left out because it
    would overlap or touch a patch of another split; ``n_blocks`` the blocks holding
    candidates."""

    labels: tuple[str, ...]
    blocks: np.ndarray  # (N, ndim) int64
    buffer: np.ndarray  # (N,) bool
    n_blocks: int

    @property
    def n_buffer(self) -> int:
        return int(self.buffer.sum())


def patch_blocks(boxes: np.ndarray, block_size: Sequence[int]) -> np.ndarray:
    """The block of each patch: the block holding its centre pixel.

    ``boxes`` is ``(N, 2, ndim)`` (start, stop exclusive; the part inside the image),
    the centre pixel ``(start + stop - 1) // 2`` per axis, its block ``centre //
    block_size``. Returns ``(N, ndim)`` int64.
    """
    boxes = np.asarray(boxes, dtype=np.int64)
    centres = (boxes[:, 0] + boxes[:, 1] - 1) // 2
    return centres // np.asarray(block_size, dtype=np.int64)


def block_split(
    boxes: np.ndarray,
    block_size: Sequence[int],
    split: Mapping[str, float],
    seed: int = 0,
) -> BlockSplit:
    """Splits drawn per spatial block, with a buffer so that no two patches of different
    splits overlap or touch.

    Every patch belongs to the block of its centre (:func:`patch_blocks`); the blocks
    holding patches, in row-major order, get their splits from :func:`assign_splits`
    (counts of blocks as the fractions ask, seeded), and each patch its block's split.
    Then the buffer (:func:`leaking_patches`): splits are settled from the smallest
    fraction up (equal fractions: the later-named first), and a patch is left out
    when its box overlaps or touches (shares a pixel edge or corner: distance 0) a
    kept patch of a split settled before. So the largest split, usually train, gives
    up its border patches and the small ones keep theirs.

    Raises :class:`ExportError` if a block is smaller than a patch or if a split with
    a non-zero fraction would get no block.
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(len(boxes), 2, -1)
    block = np.asarray(block_size, dtype=np.int64)
    extent = (boxes[:, 1] - boxes[:, 0]).max(axis=0) if len(boxes) else block
    if np.any(block < extent):
        raise ExportError(
            f"block_size {block.tolist()} is smaller than the patches ({extent.tolist()} px): "
            f"give a block_size of at least the patch size, better several patches, e.g. "
            f"{(extent * 8).tolist()}."
        )
    blocks = patch_blocks(boxes, block)
    unique, which = np.unique(blocks, axis=0, return_inverse=True)
    names = [name for name, fraction in split.items() if fraction > 0]
    block_labels = assign_splits(len(unique), split, seed)
    empty = [name for name in names if name not in block_labels]
    if empty:
        raise ExportError(
            f"the patches lie in {len(unique)} block{'s' * (len(unique) != 1)} of "
            f"{block.tolist()} px, too few for the split {dict(split)}: "
            f"{', '.join(map(repr, empty))} would get none. Choose a smaller block_size "
            f"(at least the patch size, {extent.tolist()}), or fewer splits."
        )
    which = np.asarray(which).ravel()
    order = sorted(split, key=lambda name: (split[name], -list(split).index(name)))
    rank = np.array([order.index(label) for label in block_labels], dtype=np.int64)[which]
    buffer = leaking_patches(boxes, rank)
    named = np.array([*block_labels, ""], dtype=object)
    out_labels = tuple(named[np.where(buffer, len(block_labels), which)].tolist())
    return BlockSplit(out_labels, blocks, buffer, len(unique))


@dataclass(frozen=True)
class SplitBlocks:
    """A blocked split (``split_by="blocks"``) of the planned patches: ``split[index]`` and
    ``block[index]`` (block per spatial axis) of each patch left in the plan, ``n_buffer``
    candidates left out because they would overlap or touch a patch of another split."""

    block_size: tuple[int, ...]
    split: dict[int, str]
    block: dict[int, tuple[int, ...]]
    n_buffer: int
    n_blocks: int


def split_blocks(
    patches: Sequence[PatchInfo],
    block_size: int | Sequence[int],
    split: Mapping[str, float],
    seed: int,
    n_spatial: int,
) -> SplitBlocks:
    """The blocked split (:func:`block_split`) of an export's candidate ``patches``: blocks
    of ``block_size`` output pixels, patches placed by the centre of their part inside
    the image (output pixels)."""
    size = per_axis(block_size, n_spatial, "block_size", convert=int, error=ExportError)
    boxes = np.array([[p.out_start, p.out_valid_stop] for p in patches], dtype=np.int64).reshape(
        len(patches), 2, n_spatial
    )
    result = block_split(boxes, size, split, seed)
    kept = np.flatnonzero(~result.buffer).tolist()
    return SplitBlocks(
        block_size=size,
        split={patches[i].index: result.labels[i] for i in kept},
        block={patches[i].index: ints(result.blocks[i]) for i in kept},
        n_buffer=result.n_buffer,
        n_blocks=result.n_blocks,
    )


def split_groups(
    patches: tuple[PatchInfo, ...], options: ExportOptions, n_spatial: int
) -> tuple[tuple[PatchInfo, ...], SplitBlocks | None]:
    """The candidate ``patches`` an export with ``options`` tries, and its
    blocked split (``split_by="blocks"``: the buffer is left out), or None."""
    if options.split_by == "image" and options.image_split is None:
        raise ExportError(
            "split_by='image' puts every patch of one image into one split, drawn per image "
            "of a batch: use export_batch (or the command line with several images), or give "
            "this image's split as image_split."
        )
    if options.split_by != "blocks":
        return patches, None
    blocks = split_blocks(patches, options.block_size, options.split or {}, options.seed, n_spatial)
    return tuple(p for p in patches if p.index in blocks.split), blocks


def boxes_touch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` bool: box ``a[i]`` overlaps or touches box ``b[j]`` (their
    closed pixel sets are at distance 0: they share a pixel, an edge or a corner).
    Boxes are ``(N, 2, ndim)`` with exclusive stops."""
    a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
    return np.all((a[..., 0, :] <= b[..., 1, :]) & (b[..., 0, :] <= a[..., 1, :]), axis=-1)


def leaking_patches(boxes: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Which patches to leave out so that no two kept patches of different ranks (splits)
    overlap or touch: ranks are settled in increasing order, and a patch is left out
    when it touches a kept patch of a lower rank. ``(N,)`` bool.

    Boxes are bucketed in cells as large as the largest patch, so only patches sharing
    a cell are compared.
    """
    boxes = np.asarray(boxes, dtype=np.int64)
    rank = np.asarray(rank, dtype=np.int64)
    out = np.zeros(len(boxes), dtype=bool)
    if len(boxes) == 0 or len(np.unique(rank)) < 2:
        return out
    groups = _mixed_cells(boxes, rank)
    for r in np.unique(rank)[1:]:
        for group in groups:
            mine = group[(rank[group] == r) & ~out[group]]
            kept = group[(rank[group] < r) & ~out[group]]
            if len(mine) and len(kept):
                out[mine[boxes_touch(boxes[mine], boxes[kept]).any(axis=1)]] = True
    return out


def _mixed_cells(boxes: np.ndarray, rank: np.ndarray) -> list[np.ndarray]:
    """The patches of each cell that holds patches of more than one rank (cells of the
    largest patch's extent; a box spans at most 2 cells per axis, counting its stop as a
    point)."""
    ndim = boxes.shape[2]
    cell = max(int((boxes[:, 1] - boxes[:, 0]).max()), 1)
    low, high = boxes[:, 0] // cell, boxes[:, 1] // cell
    members, keys = [], []
    for offset in itertools.product((0, 1), repeat=ndim):
        cells = low + np.asarray(offset)
        inside = np.all(cells <= high, axis=1)
        members.append(np.flatnonzero(inside))
        keys.append(cells[inside])
    index = np.concatenate(members)
    cells = np.concatenate(keys)
    cells -= cells.min(axis=0)
    key = np.ravel_multi_index(tuple(cells.T), tuple(cells.max(axis=0) + 1))
    order = np.argsort(key, kind="stable")
    index, key = index[order], key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ranks = rank[index]
    mixed = np.minimum.reduceat(ranks, starts) != np.maximum.reduceat(ranks, starts)
    stops = np.r_[starts[1:], len(index)]
    return [index[a:b] for a, b, m in zip(starts, stops, mixed) if m]


def image_splits(n_images: int, split: Mapping[str, float], seed: int = 0) -> list[str]:
    """The split of each of ``n_images`` source images in a batch (``split_by="image"``):
    image counts as the fractions ask, seeded (:func:`assign_splits`). Raises
    :class:`ExportError` if a split with a non-zero fraction would get no image."""
    labels = assign_splits(n_images, split, seed)
    empty = [name for name, fraction in split.items() if fraction > 0 and name not in labels]
    if empty:
        raise ExportError(
            f"too few images ({n_images}) for the split {dict(split)} by image: "
            f"{', '.join(map(repr, empty))} would get none. Give more images, fewer splits, "
            "or split by 'patch' or 'blocks'."
        )
    return labels


def achieved_fractions(counts: Mapping[str, int]) -> dict[str, float]:
    """Patches per split over all patches (0 for every split when there are none)."""
    total = sum(counts.values())
    return {name: (n / total if total else 0.0) for name, n in counts.items()}


def split_summary(counts: Mapping[str, int]) -> str:
    """``"train 80 (0.80), val 20 (0.20)"``: patches per split and the achieved fractions."""
    fractions = achieved_fractions(counts)
    return ", ".join(f"{k} {v} ({fractions[k]:.2f})" for k, v in counts.items())
