"""The fitted model: centres and scaling, labelling of any image, JSON persistence."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import EllipsisType
from typing import Any

import numpy as np

from napari_patchwork._common import is_dask, run_steps
from napari_patchwork.cluster.blocks import block_slices, single_threaded
from napari_patchwork.cluster.errors import ClusterError
from napari_patchwork.cluster.features import Pixels, check_nan_pixels, prepare_pixels
from napari_patchwork.cluster.ids import ID_ORDER, labels_dtype
from napari_patchwork.cluster.model_file import (
    MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
    model_fields,
    read_model_json,
    write_json_atomic,
)
from napari_patchwork.cluster.scorer import Scorer, label_dask_block

UNITS_HINTS = {
    "uint8": "skimage.util.img_as_ubyte(image)",
    "uint16": "skimage.util.img_as_uint(image)",
    "int16": "skimage.util.img_as_int(image)",
    "float32": "skimage.util.img_as_float32(image)",
    "float64": "skimage.util.img_as_float64(image)",
}
"""How to convert an image to the dtype a model was fitted on (scikit-image's converters)."""


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, eq=False)
class ClusterModel:
    """A fitted clustering: everything needed to label other pixels the same way.

    Attributes
    ----------
    centers : ``(k, n_features)`` float32 cluster centres in the scaled feature
        space (channels first, then spatial features), row ``i`` is cluster id ``i + 1``.
    channel_offset, channel_scale : ``(n_channels,)`` float64; scaled channel
        feature = ``(value - offset) / scale`` (see the module docstring).
    channel_axis : the channel axis given for the fitted image (e.g. -1 for RGB, so the
        model also fits a stack of RGB frames), None for one channel.
    channel_scaling : ``"shared"`` or ``"per_channel"``.
    spatial_weight : weight of the position features (0 = colour only).
    spatial_axes : spatial axes whose position is a feature, as negative indices
        into the spatial shape (channel axis removed), e.g. ``(-2, -1)`` for y, x.
    spatial_length : the cluster spacing ``S`` in physical units that positions are divided by.
    scale : physical pixel size per spatial axis of the fitted image.
    sigma : Gaussian smoothing in physical units applied before clustering (0 = none).
    image_dtype : dtype name of the fitted image (e.g. ``"uint8"``); None if unknown
        (models saved before format version 2).
    value_range : lowest and highest channel value of the fitted pixels (after smoothing);
        None if unknown. With ``image_dtype``, :meth:`predict` refuses images in other
        units (another dtype, or values far outside this range) unless told otherwise.
    """

    centers: np.ndarray
    channel_offset: np.ndarray
    channel_scale: np.ndarray
    channel_axis: int | None = None
    channel_scaling: str = "shared"
    spatial_weight: float = 0.0
    spatial_axes: tuple[int, ...] = ()
    spatial_length: float = 1.0
    scale: tuple[float, ...] = (1.0, 1.0)
    sigma: float | tuple[float, ...] = 0.0
    image_dtype: str | None = None
    value_range: tuple[float, float] | None = None

    @property
    def n_clusters(self) -> int:
        return int(self.centers.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.channel_offset.shape[0])

    @property
    def labels_dtype(self) -> np.dtype:
        return labels_dtype(self.n_clusters)

    @property
    def centers_image(self) -> np.ndarray:
        """``(k, n_channels)`` float64 centres in image units (intensities); row ``i`` is
        id ``i + 1``."""
        channels = self.centers[:, : self.n_channels].astype(np.float64)
        return channels * self.channel_scale + self.channel_offset

    # --- features and assignment ---------------------------------------------------------

    def position_factors(self, scale: Sequence[float]) -> np.ndarray:
        """Feature per pixel index step along each of ``spatial_axes``."""
        return np.array(
            [self.spatial_weight * scale[a] / self.spatial_length for a in self.spatial_axes],
            dtype=np.float32,
        )

    def features(
        self,
        values: np.ndarray,
        coords: Sequence[np.ndarray | None] | None = None,
        scale: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Scaled float32 features ``(n, n_features)`` of ``n`` pixels.

        ``values`` is ``(n, n_channels)`` in image units; ``coords`` one array of
        ``n`` pixel indices per spatial axis (only those in ``spatial_axes`` are
        read; needed when ``spatial_weight`` > 0) and
        ``scale`` the pixel size per spatial axis (default: the fitted one).
        """
        n_channels = self.n_channels
        feats = np.empty((len(values), n_channels + len(self.spatial_axes)), dtype=np.float32)
        channel_feats = feats[:, :n_channels]
        np.subtract(
            values, self.channel_offset.astype(np.float32), out=channel_feats, casting="unsafe"
        )
        channel_feats *= (1.0 / self.channel_scale).astype(np.float32)
        if self.spatial_axes:
            if coords is None:
                raise ClusterError("this model uses pixel positions: pass coords with the values.")
            factors = self.position_factors(self.scale if scale is None else scale)
            for column, (axis, factor) in enumerate(
                zip(self.spatial_axes, factors), start=n_channels
            ):
                np.multiply(coords[axis], factor, out=feats[:, column], casting="unsafe")
        return feats

    def _scorer(
        self,
        scale: Sequence[float],
        dtype: np.dtype,
        nan_pixels: str = "error",
        check_range: bool = False,
    ) -> Scorer:
        """The nearest-centre computation for pixels of ``dtype`` with pixel size ``scale``;
        with ``check_range``, values outside :meth:`accepted_range` are an error."""
        limits = self.accepted_range() if check_range else None
        dtype = np.dtype(dtype)
        if limits is not None and dtype.kind in "biu":
            info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
            if limits[0] <= info.min and info.max <= limits[1]:
                limits = None  # no value of this dtype can be outside: no check needed
        return Scorer.from_model(self, scale, dtype, nan_pixels, limits)

    def accepted_range(self) -> tuple[float, float] | None:
        """Pixel values an image to label may have: the fitted range widened by its own
        width on both sides (None if the fitted range is unknown)."""
        if self.value_range is None:
            return None
        low, high = self.value_range
        margin = max(high - low, 1e-6 * max(abs(low), abs(high)), 1e-12)
        return low - margin, high + margin

    def check_units(self, dtype: Any) -> None:
        """ClusterError if an image of ``dtype`` is in other units than the fitted one."""
        if self.image_dtype is None or np.dtype(dtype).name == self.image_dtype:
            return
        low, high = self.value_range
        hint = UNITS_HINTS.get(
            self.image_dtype, f"image.astype('{self.image_dtype}') after rescaling it"
        )
        raise ClusterError(
            f"the model was fitted on a {self.image_dtype} image (values {low:g}..{high:g}) but "
            f"this image is {np.dtype(dtype).name}: its values are in other units, so the ids "
            f"would mean other colours. Convert the image first (e.g. {hint}, which maps the "
            f"dtype's full range), or pass allow_other_units=True (command line: "
            f"--allow-other-units) if its values are already in the model's units."
        )

    def _check_image(self, pixels: Pixels) -> None:
        if pixels.n_channels != self.n_channels:
            raise ClusterError(
                f"the model was fitted on {self.n_channels} channel(s) but the image has "
                f"{pixels.n_channels} along channel_axis={pixels.channel_axis}; "
                f"pass the channel_axis of the image (None for grayscale)."
            )
        ndim = len(pixels.spatial_shape)
        if any(a < -ndim for a in self.spatial_axes):
            raise ClusterError(
                f"the model uses positions along spatial axes {self.spatial_axes} but the image "
                f"has only {ndim} spatial axes."
            )

    def predict_steps(
        self,
        pixels: Pixels,
        n_threads: int | None = None,
        nan_pixels: str = "error",
        check_range: bool = False,
    ) -> Generator[float, None, Any]:
        """Label every pixel; yields the fraction of blocks done; returns the labels.

        numpy in, numpy out; dask in, lazy dask out (nothing yielded). NaN/inf pixels
        in the ROI raise or get 0, as ``nan_pixels`` says.
        Blocks run on ``n_threads`` threads (default: all CPUs), at most two per thread
        submitted ahead, so a caller that stops pulling progress (Cancel) stops the work
        after the blocks in flight. ``check_range``: values outside :meth:`accepted_range`
        raise (numpy: before anything is returned; dask: when their block is computed).
        """
        self._check_image(pixels)
        if pixels.lazy:
            return self._predict_lazy(pixels, nan_pixels, check_range)
        scorer = self._scorer(pixels.scale, pixels.values.dtype, nan_pixels, check_range)
        labels = np.zeros(pixels.spatial_shape, dtype=self.labels_dtype)
        blocks = list(block_slices(pixels.spatial_shape, scorer.block_pixels))

        def label(block: tuple[slice, ...]) -> None:
            roi = None if pixels.mask is None else pixels.mask[block]
            labels[block] = scorer.label_block(pixels.values[block], [s.start for s in block], roi)

        n_threads = n_threads or os.cpu_count() or 1
        waiting = iter(blocks)
        with single_threaded, ThreadPoolExecutor(max_workers=n_threads) as pool:
            in_flight = deque(pool.submit(label, b) for b in islice(waiting, 2 * n_threads))
            try:
                for done in range(1, len(blocks) + 1):
                    in_flight.popleft().result()
                    in_flight.extend(pool.submit(label, b) for b in islice(waiting, 1))
                    yield done / len(blocks)
            finally:  # closed (cancelled) or failed: drop the blocks not started
                for future in in_flight:
                    future.cancel()
        return labels

    def _predict_lazy(
        self, pixels: Pixels, nan_pixels: str = "error", check_range: bool = False
    ) -> Any:
        import dask.array as da

        values = pixels.values.rechunk({pixels.values.ndim - 1: -1})
        spatial_chunks = values.chunks[:-1]
        args = [values]
        if pixels.mask is not None:  # a trailing length-1 axis lines it up with the channel axis
            args.append(da.from_array(pixels.mask[..., None], chunks=(*spatial_chunks, (1,))))
        return da.map_blocks(
            label_dask_block,
            *args,
            scorer=self._scorer(pixels.scale, values.dtype, nan_pixels, check_range),
            dtype=self.labels_dtype,
            drop_axis=values.ndim - 1,
            chunks=spatial_chunks,
            meta=np.empty((0,) * len(spatial_chunks), dtype=self.labels_dtype),
        )

    def predict(
        self,
        image: Any,
        *,
        channel_axis: int | None | EllipsisType = ...,
        mask: Any = None,
        scale: Sequence[float] | float | None = None,
        max_channels: int = 64,
        nan_pixels: str = "error",
        allow_other_units: bool = False,
    ) -> Any:
        """Label ``image`` with this model: ids ``1..k`` (0 outside ``mask``), spatial shape.

        ``nan_pixels``: NaN/inf pixels in the ROI raise (``"error"``) or get 0
        (``"background"``); see the package docstring.

        An image in other units than the fitted one (another dtype, or ROI pixel values
        beyond :meth:`accepted_range`) is refused with a :class:`ClusterError` that says how
        to convert it, unless ``allow_other_units=True`` (for images already in the model's
        units, e.g. a float copy of the same 0..255 values). Models saved before format
        version 2 do not know their units and label anything.

        ``channel_axis`` defaults to the fitted image's. The model's smoothing and
        positions apply to the spatial axes it was fitted on, aligned from the last
        axis: a model fitted on 2D frames labels each frame of a stack exactly as it
        labels that frame alone. ``scale`` (physical pixel size per spatial axis)
        defaults to the fitted one (1 on extra leading axes). numpy in, numpy out;
        dask in, lazy dask out.
        """
        image = image if is_dask(image) else np.asarray(image)
        if not allow_other_units:
            self.check_units(image.dtype)
        channel_axis = self.channel_axis if channel_axis is ... else channel_axis
        n_spatial = image.ndim - (channel_axis is not None)
        fitted_sigma = (
            (self.sigma,) * len(self.scale) if np.ndim(self.sigma) == 0 else tuple(self.sigma)
        )
        pixels = prepare_pixels(
            image,
            channel_axis=channel_axis,
            scale=_trailing(self.scale, n_spatial, 1.0) if scale is None else scale,
            sigma=_trailing(fitted_sigma, n_spatial, 0.0),
            mask=mask,
            max_channels=max_channels,
        )
        nan_pixels = check_nan_pixels(nan_pixels)
        return run_steps(self.predict_steps(pixels, None, nan_pixels, not allow_other_units))

    # --- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible description (format tag included), the inverse of :meth:`from_dict`."""
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_FORMAT_VERSION,
            "id_order": ID_ORDER,
            "centers": self.centers.tolist(),
            "channel_offset": self.channel_offset.tolist(),
            "channel_scale": self.channel_scale.tolist(),
            "channel_axis": self.channel_axis,
            "channel_scaling": self.channel_scaling,
            "spatial_weight": self.spatial_weight,
            "spatial_axes": list(self.spatial_axes),
            "spatial_length": self.spatial_length,
            "scale": list(self.scale),
            "sigma": self.sigma if np.ndim(self.sigma) == 0 else list(self.sigma),
            "image_dtype": self.image_dtype,
            "value_range": None if self.value_range is None else list(self.value_range),
            "centers_image": self.centers_image.tolist(),  # for people reading the file
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterModel:
        """Rebuild a model from :meth:`to_dict` output (older format versions upgraded).

        Every field is checked (types, finite values, positive scales, 2..65,535 centres,
        consistent channel counts): :class:`ClusterError` naming the field otherwise.
        """
        return cls(**model_fields(data))

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the model as a small JSON file, atomically (a temporary file in the same
        folder, then renamed); an existing file is replaced only with ``overwrite=True``
        (FileExistsError otherwise). Returns the path."""
        return write_json_atomic(path, self.to_dict(), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClusterModel:
        """Read a model written by :meth:`save`; :class:`ClusterError` if the file is not
        a valid model (see :meth:`from_dict`) or cannot be read."""
        return cls.from_dict(read_model_json(path))


def _trailing(values: Sequence[float], n: int, fill: float) -> tuple[float, ...]:
    """The last ``n`` of ``values``, padded in front with ``fill`` if there are fewer."""
    values = tuple(values)
    return (fill,) * (n - len(values)) + values[max(0, len(values) - n) :]
