"""Merge options and the layout of predictions (channel axis, channels, dtype)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_patchwork import _common

MERGE_MODES: tuple[str, ...] = ("center", "last", "mean", "gaussian", "hann", "max", "vote")
WINDOW_OF_MODE: dict[str, str] = {"mean": "constant", "gaussian": "gaussian", "hann": "hann"}
"""The window of each weighted merge mode."""
DEFAULT_SIGMA_SCALE = 0.125
"""Gaussian sigma as a fraction of the patch size (MONAI's default)."""


class MergeError(ValueError):
    """Bad merge options or predictions; the message says what to change."""


@dataclass(frozen=True)
class MergeOptions:
    """How predictions are merged (see the module notes).

    ``dtype`` is the merged dtype; default float64 for the weighted modes, the label
    dtype (uint8, or wider for > 256 channels) with ``argmax``, else the predictions'.
    """

    mode: str = "center"
    argmax: bool = False
    sigma_scale: float = DEFAULT_SIGMA_SCALE
    fill_value: float = 0
    dtype: Any = None

    def __post_init__(self) -> None:
        if self.mode not in MERGE_MODES:
            raise MergeError(
                f"merge={self.mode!r} is not known; choose one of {', '.join(MERGE_MODES)}."
            )
        if not (np.isfinite(self.sigma_scale) and self.sigma_scale > 0):
            raise MergeError(
                "sigma_scale must be a positive fraction of the patch size, "
                f"got {self.sigma_scale}."
            )
        if self.dtype is not None:
            try:
                object.__setattr__(self, "dtype", np.dtype(self.dtype))
            except TypeError:
                raise MergeError(f"dtype={self.dtype!r} is not a numpy dtype.") from None

    def replace(self, **changes: Any) -> MergeOptions:
        """A new validated copy with ``changes``."""
        return replace(self, **changes)

    @property
    def window(self) -> str | None:
        """The window of a weighted mode, None for the others."""
        return WINDOW_OF_MODE.get(self.mode)


def as_merge_options(merge: str | MergeOptions | None, **overrides: Any) -> MergeOptions:
    """``merge`` as :class:`MergeOptions` (a mode name, options, or None for the default)."""
    options = merge if isinstance(merge, MergeOptions) else MergeOptions(mode=merge or "center")
    return options.replace(**overrides) if overrides else options


@dataclass(frozen=True)
class PredictionLayout:
    """What every prediction looks like: the position of its channel axis (None: no
    channel axis; else 0 or -1 .. as given, normalised to the prediction's axes), the
    number of channels and the dtype."""

    channel_axis: int | None
    channels: int | None
    dtype: np.dtype

    @classmethod
    def of(
        cls, prediction: Any, patch_shape: Sequence[int], channel_axis: int | None | str = "auto"
    ) -> PredictionLayout:
        """The layout of one prediction over a patch of spatial ``patch_shape``.

        ``channel_axis="auto"``: none if the prediction has the patch's shape, else the
        last axis if that fits, else the first.
        """
        shape, patch = tuple(prediction.shape), tuple(int(p) for p in patch_shape)
        dtype = np.dtype(prediction.dtype)
        if channel_axis == "auto":
            if shape == patch:
                return cls(None, None, dtype)
            candidates = [len(shape) - 1, 0]
        elif channel_axis is None:
            candidates = []
        else:
            candidates = [_common.normalize_axis(channel_axis, len(shape), error=MergeError)]
        if len(shape) == len(patch) + 1:
            for axis in candidates:
                if shape[:axis] + shape[axis + 1 :] == patch:
                    return cls(axis, shape[axis], dtype)
        if channel_axis is None and shape == patch:
            return cls(None, None, dtype)
        raise MergeError(
            f"a prediction of shape {shape} does not fit the patch {patch}: it must have the "
            "patch's shape, optionally with one channel axis first or last."
        )

    def shape(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """The shape of a prediction (or merged array) over ``spatial``."""
        shape = [int(s) for s in spatial]
        if self.channel_axis is not None:
            shape.insert(self.channel_axis, int(self.channels))
        return tuple(shape)


def merged_dtype(options: MergeOptions, layout: PredictionLayout) -> np.dtype:
    """The dtype :func:`merge_region` returns."""
    if options.dtype is not None:
        return options.dtype
    if options.argmax:
        if layout.channels is None:
            raise MergeError("argmax needs predictions with a channel axis (one value per class).")
        return np.dtype(np.uint8 if layout.channels <= 256 else np.min_scalar_type(layout.channels))
    return np.dtype(np.float64) if options.window else layout.dtype


def merged_layout(options: MergeOptions, layout: PredictionLayout) -> PredictionLayout:
    """The layout of the merged array (no channel axis after ``argmax``)."""
    if options.argmax:
        return PredictionLayout(None, None, merged_dtype(options, layout))
    return replace(layout, dtype=merged_dtype(options, layout))


def check_options(options: MergeOptions, layout: PredictionLayout) -> None:
    """Raise :class:`MergeError` if ``options`` cannot merge predictions of ``layout``."""
    merged_dtype(options, layout)
    if options.mode == "vote" and not options.argmax:
        if layout.dtype.kind not in "iub":
            raise MergeError(
                f"merge='vote' takes integer label predictions, not {layout.dtype}; use "
                "argmax=True to vote class indices of scores, or a weighted mode for scores."
            )
        if layout.channel_axis is not None:
            raise MergeError(
                "merge='vote' takes one label per pixel; these predictions have a channel "
                "axis: use argmax=True to vote their arg-max class."
            )
