"""Merge overlapping patch predictions into one array, one output region at a time.

GUI-free (no napari, no Qt). A *prediction* is an array over one patch box (the box's
spatial shape, optionally with one channel axis); :func:`merge_region` merges the
predictions that overlap one output region, so an eager merge is one region (the
whole image) and a lazy merge (:func:`merge_lazy`) one region per dask block. Weights
are made per patch shape and sliced to the region: there is never a full-size weight
buffer.

Merge modes (:data:`MERGE_MODES`), where patches overlap:

* ``center``: the patch whose centre is nearest (Chebyshev distance relative to the
  patch size; the first patch on ties). Label-safe; the default for labels.
* ``last``: later patches overwrite earlier ones.
* ``mean``, ``gaussian``, ``hann``: sum(w * p) / sum(w) with the separable window
  :func:`window_1d` (``constant``, ``gaussian``, ``hann``) of each patch, so where
  predictions agree the result equals them (up to float rounding).
* ``max``: the largest value (per channel).
* ``vote``: the label most patches give the pixel; ties go to the label of the patch
  whose centre is nearest (then the first such patch). Integer predictions only (or
  any predictions with ``argmax``: each patch votes its arg-max channel); never gives a
  label that no covering patch gives.

With ``argmax`` the merged channels are reduced to the index of the largest one (for
``vote``: before voting). Pixels that no patch covers get ``fill_value``.
"""

from napari_patchwork.merge.lazy import (
    MergeGraph,
    merge_chunks,
    merge_graph,
    merge_lazy,
    overlapping,
)
from napari_patchwork.merge.options import (
    DEFAULT_SIGMA_SCALE,
    MERGE_MODES,
    WINDOW_OF_MODE,
    MergeError,
    MergeOptions,
    PredictionLayout,
    as_merge_options,
    check_options,
    merged_dtype,
    merged_layout,
)
from napari_patchwork.merge.predict import PREDICT_EDGES, overlap_stride, predict_tiled
from napari_patchwork.merge.region import merge_region
from napari_patchwork.merge.windows import (
    MIN_WEIGHT,
    WINDOWS,
    center_distance,
    patch_window,
    window_1d,
)

__all__ = [
    "DEFAULT_SIGMA_SCALE",
    "MERGE_MODES",
    "MIN_WEIGHT",
    "WINDOWS",
    "WINDOW_OF_MODE",
    "MergeError",
    "MergeGraph",
    "MergeOptions",
    "PREDICT_EDGES",
    "PredictionLayout",
    "as_merge_options",
    "center_distance",
    "check_options",
    "merge_chunks",
    "merge_graph",
    "merge_lazy",
    "merge_region",
    "merged_dtype",
    "merged_layout",
    "overlapping",
    "overlap_stride",
    "patch_window",
    "predict_tiled",
    "window_1d",
]
