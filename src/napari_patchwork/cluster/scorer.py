"""Nearest-centre labelling of raw pixel blocks: one float32 matrix product per block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from napari_patchwork.cluster.blocks import MAX_BLOCK_PIXELS, block_slices, single_threaded
from napari_patchwork.cluster.errors import ClusterError
from napari_patchwork.cluster.features import nan_error

if TYPE_CHECKING:
    from napari_patchwork.cluster.model import ClusterModel


_SCORE_BYTES_PER_BLOCK = 1 << 21
"""Bytes of float32 distances per block: sets the block size for large k."""


def label_dask_block(
    values: np.ndarray,
    roi: np.ndarray | None = None,
    *,
    scorer: Scorer,
    block_info: dict | None = None,
) -> np.ndarray:
    """``map_blocks`` body: label one dask block (NaN/inf pixels get 0).

    ``values`` is ``(*block_shape, n_channels)``, ``roi`` ``(*block_shape, 1)``.
    """
    origin = (
        [start for start, _ in block_info[0]["array-location"][:-1]]
        if block_info
        else [0] * (values.ndim - 1)
    )
    labels = np.empty(values.shape[:-1], dtype=scorer.labels_dtype)
    with single_threaded:
        for block in block_slices(labels.shape, scorer.block_pixels):
            start = [o + s.start for o, s in zip(origin, block)]
            labels[block] = scorer.label_block(
                values[block], start, None if roi is None else roi[block][..., 0]
            )
    return labels


_FLOAT32_EXACT = tuple(
    np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.float16, np.float32)
)


@dataclass(frozen=True, eq=False)
class Scorer:
    """Nearest centre for raw pixel values, as one float32 matrix product per block.

    For scaled features ``f`` the nearest centre minimises ``|f - c|^2 - |f|^2 =
    |c|^2 - 2 c.f``, which is linear in the raw values ``x`` and pixel indices ``r``:
    ``score_j = bias_j + channel_weights[j].x + position_weights[j].r``. Raw values of
    dtypes exact in float32 (8/16-bit, float32) go straight into the product; wider
    dtypes are centred on the channel offset in float64 first, to keep precision.
    """

    channel_weights: np.ndarray  # (k, n_channels) float32
    bias: np.ndarray  # (k,) float32
    position_weights: np.ndarray  # (k, len(spatial_axes)) float32
    spatial_axes: tuple[int, ...]
    centre_first: np.ndarray | None  # (n_channels,) float64 offset subtracted before the product
    labels_dtype: np.dtype
    nan_pixels: str = "error"  # see NAN_PIXELS
    value_limits: tuple[float, float] | None = None  # pixel values outside: an error

    @classmethod
    def from_model(
        cls,
        model: ClusterModel,
        scale: Sequence[float],
        dtype: np.dtype,
        nan_pixels: str = "error",
        value_limits: tuple[float, float] | None = None,
    ) -> Scorer:
        centers = model.centers.astype(np.float64)
        n_channels = model.n_channels
        channel_centers = centers[:, :n_channels] / model.channel_scale  # per raw unit
        exact = np.dtype(dtype) in _FLOAT32_EXACT
        bias = np.einsum("ij,ij->i", centers, centers)
        if exact:
            bias += 2 * channel_centers @ model.channel_offset
        return cls(
            channel_weights=(-2 * channel_centers).astype(np.float32),
            bias=bias.astype(np.float32),
            position_weights=(-2 * centers[:, n_channels:] * model.position_factors(scale)).astype(
                np.float32
            ),
            spatial_axes=model.spatial_axes,
            centre_first=None if exact else model.channel_offset,
            labels_dtype=model.labels_dtype,
            nan_pixels=nan_pixels,
            value_limits=value_limits,
        )

    @property
    def block_pixels(self) -> int:
        """Pixels per block: ~2 MiB of float32 scores, at most 65536 pixels."""
        n_clusters = len(self.bias)
        return int(np.clip(_SCORE_BYTES_PER_BLOCK // (4 * n_clusters), 1024, MAX_BLOCK_PIXELS))

    def label_block(
        self, values: np.ndarray, origin: Sequence[int], roi: np.ndarray | None
    ) -> np.ndarray:
        """Ids (0 outside ``roi`` and for NaN/inf pixels) of a block ``(*block_shape,
        n_channels)`` whose first pixel is at ``origin``."""
        block_shape = values.shape[:-1]
        raw = values.reshape(-1, values.shape[-1])
        if self.value_limits is not None:
            self._check_values(raw, origin, roi)
        if self.centre_first is not None:
            raw = (raw - self.centre_first).astype(np.float32)
        else:
            raw = raw.astype(np.float32, copy=False)
        scores = self.channel_weights @ raw.T  # (k, n)
        scores += self.bias[:, None]
        if self.spatial_axes:
            ndim = len(block_shape)
            grid = scores.reshape(-1, *block_shape)
            for weights, axis in zip(self.position_weights.T, self.spatial_axes):
                axis %= ndim
                along = np.arange(origin[axis], origin[axis] + block_shape[axis], dtype=np.float32)
                shape = [-1 if a == axis + 1 else 1 for a in range(ndim + 1)]
                grid += weights.reshape(-1, *[1] * ndim) * along.reshape(shape)
        ids, best = _argmin_plus_one(scores, self.labels_dtype)
        if not np.issubdtype(values.dtype, np.integer):
            finite = np.isfinite(best)  # a NaN/inf channel makes every score NaN/inf
            if not finite.all():
                bad = ~finite if roi is None else ~finite & roi.ravel()
                if self.nan_pixels == "error" and bad.any():
                    raise nan_error(int(bad.sum()), f"in the block at {tuple(origin)}")
                ids[~finite] = 0
        if roi is not None:
            ids[~roi.ravel()] = 0
        return ids.reshape(block_shape)

    def _check_values(self, raw: np.ndarray, origin: Sequence[int], roi: np.ndarray | None) -> None:
        """ClusterError if a finite value of a ROI pixel is outside ``value_limits``."""
        low, high = self.value_limits
        if np.fmin.reduce(raw, axis=None) >= low and np.fmax.reduce(raw, axis=None) <= high:
            return  # the usual case: two reductions (NaN ignored; all NaN looks below)
        with np.errstate(invalid="ignore"):
            outside = ((raw < low) | (raw > high)) & np.isfinite(raw)
        outside = outside.any(axis=1)
        if roi is not None:
            outside &= roi.ravel()
        if outside.any():
            seen = raw[outside]
            raise ClusterError(
                f"{int(outside.sum()):,} pixel(s) in the block at {tuple(origin)} have values "
                f"({seen.min():g}..{seen.max():g}) far outside those the model was fitted on "
                f"(accepted {low:g}..{high:g}): the image is probably in other units (e.g. "
                f"16-bit instead of 12-bit, 0..255 instead of 0..1), so the ids would mean "
                f"other colours. Rescale the image to the model's range, or pass "
                f"allow_other_units=True (command line: --allow-other-units) to label it anyway."
            )


def _argmin_plus_one(scores: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Row index + 1 of the minimum of each column of ``scores`` (k, n), and the minimum.

    A running minimum over the k rows, with ufuncs only (they release the GIL, so
    blocks run in parallel): a row that beats the best so far has a larger index
    than any id assigned so far, so ``ids = max(ids, better * (row + 1))``. About
    twice as fast as ``argmin(axis=0)`` on image data. NaN scores propagate to the
    minimum (so NaN pixels can be found); ties go to the lower index like ``argmin``.
    """
    n = scores.shape[1]
    best = scores[0].copy()
    ids = np.ones(n, dtype=dtype)
    better = np.empty(n, dtype=bool)
    candidate = np.empty(n, dtype=dtype)
    for row in range(1, scores.shape[0]):
        np.less(scores[row], best, out=better)
        np.multiply(better, dtype.type(row + 1), out=candidate)
        np.maximum(ids, candidate, out=ids)
        np.minimum(best, scores[row], out=best)
    return ids, best
