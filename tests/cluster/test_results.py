"""Results: posterised images and foreground masks."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from napari_patchwork.cluster import (
    ClusterError,
    cluster_pixels,
    clusters_to_mask,
    posterize,
)
from napari_patchwork.sample import sample_image

IHC = sample_image()  # (512, 512, 3) uint8, a real RGB photo
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_posterize_uses_rounded_centres_and_zero_outside():
    labels = np.array([[0, 1], [2, 2]], dtype=np.uint8)
    centres = np.array([[10.4, 20.6, 30.5], [250.2, 260.0, -3.0]])
    out = posterize(labels, centres, channel_axis=-1, dtype=np.uint8)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [10, 21, 30])  # numpy rounds half to even
    np.testing.assert_array_equal(out[1, 0], [250, 255, 0])  # clipped to uint8


def test_foreground_mask_from_clusters():
    result = cluster_pixels(IHC, 5, channel_axis=-1)
    mask = clusters_to_mask(result.labels, [1, 3])
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask, np.isin(result.labels, [1, 3]))
    assert mask.sum() == result.pixel_counts[[0, 2]].sum()
    lazy = clusters_to_mask(da.from_array(result.labels, chunks=100), 2)
    np.testing.assert_array_equal(lazy.compute(), result.labels == 2)
    for bad, message in (([0], "outside the ROI"), ([], "no cluster chosen"), ([1.5], "integers")):
        with pytest.raises(ClusterError, match=message):
            clusters_to_mask(result.labels, bad)
    with pytest.raises(ClusterError, match="1..5"):
        result.foreground([6])
