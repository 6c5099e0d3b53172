"""The bundled sample: a real immunohistochemistry (IHC) image and a nuclei mask.

The image is scikit-image's ``immunohistochemistry`` picture (512 x 512 RGB uint8,
shipped inside the scikit-image wheel, so nothing is downloaded at run time). The
mask labels haematoxylin-stained nuclei: colour deconvolution (``rgb2hed``), Otsu
threshold, small objects removed, connected components labelled.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _sample() -> tuple[np.ndarray, np.ndarray]:
    from skimage import color, data, filters, measure

    image = data.immunohistochemistry()
    haematoxylin = color.rgb2hed(image)[..., 0]
    haematoxylin = filters.gaussian(haematoxylin, sigma=1.0)
    foreground = haematoxylin > filters.threshold_otsu(haematoxylin)
    labels = measure.label(foreground)
    small = np.bincount(labels.ravel()) < 32  # objects under 32 px are noise
    small[0] = False
    labels[small[labels]] = 0
    labels = measure.label(labels > 0).astype(np.uint16)
    image.setflags(write=False)
    labels.setflags(write=False)
    return image, labels


def sample_image() -> np.ndarray:
    """The sample RGB image, ``(512, 512, 3)`` uint8, ``yxc`` order (read-only)."""
    return _sample()[0]


def sample_mask() -> np.ndarray:
    """Nuclei instance labels for :func:`sample_image`, ``(512, 512)`` uint16, 0 = background."""
    return _sample()[1]
