"""Reading an export's image patches: from numpy, dask or other array-like images, or from
the pyramid level that serves each patch (:mod:`napari_patchwork.pyramid`), reduced to
output pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_patchwork._common import is_dask
from napari_patchwork.export.patch import PatchSettings, image_at_output_resolution
from napari_patchwork.folder import PatchInfo
from napari_patchwork.pyramid import LevelChoice, Pyramid, level_for_region, level_region


def read_regions(array: Any, regions: Sequence[tuple[slice, ...]]) -> list[np.ndarray]:
    """Read several regions of a numpy, dask or other array-like (zarr, memmap) as numpy arrays.

    A dask array is read in one ``dask.compute`` call for all regions, so chunks
    that several regions share are computed once, and no other chunk is.
    """
    if isinstance(array, np.ndarray):
        return [array[r] for r in regions]
    if is_dask(array):
        import dask

        return [np.asarray(a) for a in dask.compute(*(array[r] for r in regions))]
    return [np.asarray(array[r]) for r in regions]


@dataclass(frozen=True)
class ImageSource:
    """Where an export reads its image patches: ``pyramid.levels[0]`` alone (``choice``
    None), or the levels ``choice`` names, each patch from the coarsest that holds its
    region as whole pixels; ``settings`` give the export's downsampling and channel axis."""

    pyramid: Pyramid
    choice: LevelChoice | None
    settings: PatchSettings

    @property
    def image(self) -> Any:
        """Level 0: the image the grid and the manifest refer to."""
        return self.pyramid.level0

    @property
    def read_factor(self) -> int:
        """Source pixels per pixel read, at the coarsest chosen level (1 without one)."""
        return 1 if self.choice is None else int(np.prod(self.choice.best[1]))

    def read_plan(self, info: PatchInfo) -> tuple[int, tuple[slice, ...], tuple[int, ...]]:
        """The level a patch is read from, its region there (valid part, channel axis
        whole) and the factors still to average."""
        ndim, axis, factors = (
            len(self.image.shape),
            self.settings.channel_axis,
            self.settings.factors,
        )
        if self.choice is None:
            return 0, info.region(ndim, axis), factors
        index, level_f = level_for_region(
            self.choice, self.pyramid, info.start, info.valid_stop, axis
        )
        region = level_region(info.start, info.valid_stop, level_f, ndim, axis)
        return index, region, tuple(f // r for f, r in zip(factors, level_f))

    def read(self, infos: Sequence[PatchInfo]) -> list[np.ndarray]:
        """The image patches of ``infos`` at output resolution (their valid part), each
        level read in one :func:`read_regions` call."""
        plans = [self.read_plan(info) for info in infos]
        out: list[Any] = [None] * len(plans)
        for index in sorted({plan[0] for plan in plans}):
            which = [k for k, plan in enumerate(plans) if plan[0] == index]
            regions = read_regions(self.pyramid.levels[index], [plans[k][1] for k in which])
            for k, region in zip(which, regions):
                out[k] = image_at_output_resolution(region, self.settings, plans[k][2])
        return out
