"""Pixel-cluster segmentation: k-means on pixel features, fast and reproducible.

Pure numpy / scikit-learn / dask, no napari, no Qt.

How it works
------------
1. **Features.** Every pixel becomes a feature vector: its channel values
   (RGB, grayscale, or any number of channels on any ``channel_axis``),
   optionally Gaussian-smoothed (``sigma``), and optionally its position
   (``spatial_weight`` > 0, SLIC-like compactness).
2. **Scaling.** Channel values are centred on their mean and divided by a
   standard deviation, both measured on the fitted sample:

   * ``channel_scaling="shared"`` (default): one standard deviation for all
     channels (the root mean square of the per-channel ones). Distances keep the
     proportions of the raw values, so the clusters are those of plain k-means on
     the raw pixels (the classic colour clustering of RGB photos; z-scoring the
     channels of the bundled IHC photo instead changed the clusters: ARI 0.81).
   * ``channel_scaling="per_channel"``: each channel divided by its own standard
     deviation (z-score), for channels in unrelated units (fluorescence markers).

   Spatial features are pixel positions in physical units (``index * scale``,
   like SLIC's ``spacing``) divided by the expected cluster spacing
   ``S = (physical area or volume / n_clusters) ** (1 / ndim)`` and multiplied
   by ``spatial_weight``: with weight 1, moving one cluster spacing costs as much
   as one standard deviation of intensity.
3. **Fit on a sample.** scikit-learn :class:`~sklearn.cluster.KMeans` runs on a
   reproducible random sample of ``sample_size`` pixels from inside the ROI
   (``random_state`` seeds the sample and k-means), coarse to fine: the best of
   ``n_init`` k-means++ runs on 5,000 of them, refined by Lloyd on the whole sample.
4. **Assign every pixel** to its nearest centre, in blocks of at most 65,536
   pixels in float32 on a thread pool (one small matrix product and a running
   minimum per block), so memory stays close to the size of the labels; a dask
   image stays lazy (``map_blocks``).
5. **Stable ids.** Clusters are numbered 1..k by :data:`ID_ORDER`: ascending mean
   channel value of the centre in image units (1 = darkest). 0 is only used for
   pixels outside the ROI and for pixels with a NaN or infinite channel value. Labels
   are ``uint8`` for k <= 255, else ``uint16``.

**NaN and infinite pixels** (``nan_pixels``): by default (``"error"``) a NaN or
infinite pixel inside the ROI is bad input and raises :class:`ClusterError` saying how
to proceed: when it is drawn into the fitting sample, or when its block is labelled
(for numpy input, before anything is returned; for dask input, when that block is
computed: a lazy image cannot be checked without computing all of it). With
``nan_pixels="background"`` they are 'no data' instead, the same for numpy and dask:
left out of the fit and labelled 0, like pixels outside the ROI. An image or ROI whose
sampled pixels are all NaN/inf is refused either way.

The fitted :class:`ClusterModel` (centres, scaling, feature settings) saves to a
small JSON file and re-applies to other images with :meth:`ClusterModel.predict`,
giving the same ids for the same colours.

Options
-------
The options that make the features and pick the fitted pixels (channel axis, scaling,
spatial weight and axes, smoothing, pixel size, sample size, seed, NaN handling) are one
frozen :class:`FeatureOptions`, validated when it is made. ``cluster_pixels`` and
``choose_k`` take it as ``features=`` and/or its fields as keywords; the generator forms
``cluster_pixels_steps(image, k, features)`` and ``choose_k_steps(image, ks, features)``
take the object.

Modules
-------
* ``features``: :class:`FeatureOptions`; the image prepared for clustering (channel axis
  last, smoothing, ROI); spatial axes; sampling the pixels to fit on.
* ``fit``: the feature scaling measured on the sample, k-means, ids sorted by brightness;
  :func:`cluster_pixels`.
* ``model``: :class:`ClusterModel`: labelling any image, JSON save/load.
* ``scorer``: nearest-centre labelling of pixel blocks (one matrix product per block).
* ``results``: :class:`ClusterResult`, :func:`posterize`, :func:`clusters_to_mask`.
* ``choose_k``: :class:`KScores`, :func:`choose_k`.
* ``blocks``: block slices and the single-threaded native libraries; ``errors``:
  :class:`ClusterError`.
"""

from napari_patchwork.cluster.choose_k import KScores, choose_k, choose_k_steps
from napari_patchwork.cluster.errors import ClusterError
from napari_patchwork.cluster.features import (
    CHANNEL_SCALINGS,
    DEFAULT_SAMPLE_SIZE,
    NAN_PIXELS,
    ChannelScaling,
    FeatureOptions,
    NanPixels,
)
from napari_patchwork.cluster.fit import cluster_pixels, cluster_pixels_steps
from napari_patchwork.cluster.ids import ID_ORDER, MAX_CLUSTERS, labels_dtype
from napari_patchwork.cluster.model import ClusterModel
from napari_patchwork.cluster.model_file import MODEL_FORMAT, MODEL_FORMAT_VERSION
from napari_patchwork.cluster.results import ClusterResult, clusters_to_mask, posterize

__all__ = [
    "CHANNEL_SCALINGS",
    "DEFAULT_SAMPLE_SIZE",
    "ID_ORDER",
    "MAX_CLUSTERS",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "NAN_PIXELS",
    "ChannelScaling",
    "ClusterError",
    "ClusterModel",
    "ClusterResult",
    "FeatureOptions",
    "KScores",
    "NanPixels",
    "choose_k",
    "choose_k_steps",
    "cluster_pixels",
    "cluster_pixels_steps",
    "clusters_to_mask",
    "labels_dtype",
    "posterize",
]
