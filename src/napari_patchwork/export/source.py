"""Reading an export's image patches from numpy, dask or other array-like images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_patchwork._common import is_dask


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
