"""Exporting several images at once, one patch folder each; ``split_by="image"`` puts every
patch of one image into one split (so no image is seen in training and in validation)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_patchwork.export.errors import ExportError
from napari_patchwork.export.options import ExportOptions
from napari_patchwork.export.result import ExportProgress, ExportResult
from napari_patchwork.export.split import (
    achieved_fractions,
    image_splits,
    normalize_split,
    split_summary,
)


@dataclass(frozen=True)
class BatchResult:
    """The results of a batch export, one per image, and the split over all of them."""

    results: tuple[ExportResult, ...]
    image_split: tuple[str, ...]  # the split of each image ("" unless split_by="image")

    @property
    def split_counts(self) -> dict[str, int]:
        """Patches per split over all images."""
        counts: dict[str, int] = {}
        for result in self.results:
            for name, n in result.split_counts.items():
                counts[name] = counts.get(name, 0) + n
        return counts

    @property
    def split_fractions(self) -> dict[str, float]:
        return achieved_fractions(self.split_counts)

    @property
    def message(self) -> str:
        n = sum(r.n_patches for r in self.results)
        text = f"{n} patches from {len(self.results)} images"
        return text + (f" ({split_summary(self.split_counts)})" if self.split_counts else "")


def batch_image_splits(n_images: int, split_by: str, split: Any, seed: int = 0) -> list[str | None]:
    """The ``image_split`` of each image of a batch: drawn per image with ``split_by="image"``
    (seeded; ``split`` as :class:`ExportOptions` takes it), else None (each export splits
    its own patches)."""
    if split_by != "image":
        return [None] * n_images
    return list(image_splits(n_images, normalize_split(split) or {}, seed))


def export_batch(
    out_dir: str | os.PathLike,
    inputs: Sequence[tuple[str, Any, Any]],
    options: ExportOptions | None = None,
    *,
    progress: Callable[[int, ExportProgress], Any] | None = None,
    **overrides: Any,
) -> BatchResult:
    """Export each ``(name, image, mask)`` of ``inputs`` to ``out_dir/name`` with the same
    options (see :func:`~napari_patchwork.export.export_patches`).

    With ``split_by="image"`` the images, not the patches, are assigned to the splits
    (counts of images as the fractions ask, seeded by ``seed``): all patches of one image
    are in its split. ``progress(i, state)`` gets the image's number and its progress.
    """
    from napari_patchwork.export.run import export_patches

    options = ExportOptions.of(options, **overrides)
    names = [str(name) for name, _, _ in inputs]
    if len(set(names)) != len(names):
        raise ExportError(f"the images' names repeat ({names}): give each image its own name.")
    splits = batch_image_splits(len(inputs), options.split_by, options.split, options.seed)
    results = []
    for i, ((name, image, mask), split) in enumerate(zip(inputs, splits)):
        step = None if progress is None else (lambda state, i=i: progress(i, state))
        results.append(
            export_patches(
                Path(out_dir) / name, image, mask, options.replace(image_split=split), progress=step
            )
        )
    return BatchResult(tuple(results), tuple(s or "" for s in splits))
