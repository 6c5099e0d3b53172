"""Blending windows: the peers' formulas, never zero, cached read-only."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.merge import MIN_WEIGHT, MergeError, center_distance, patch_window, window_1d


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 600))
def test_hann_is_torchio_hann_never_zero(n):
    # torch.hann_window(n + 2, periodic=False)[1:-1] == numpy's symmetric Hann of n + 2 points
    expected = np.hanning(n + 2)[1:-1]
    np.testing.assert_allclose(window_1d("hann", n), expected, atol=1e-15)
    assert window_1d("hann", n).min() > 0
    np.testing.assert_allclose(window_1d("hann", n), window_1d("hann", n)[::-1], atol=1e-15)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 600), st.floats(0.01, 2.0))
def test_gaussian_is_monai_importance_map(n, sigma_scale):
    x = np.arange(n) - (n - 1) / 2
    expected = np.exp(-(x**2) / (2 * (sigma_scale * n) ** 2))
    np.testing.assert_allclose(window_1d("gaussian", n, sigma_scale), expected, rtol=1e-12)
    two_d = patch_window("gaussian", (n, 3), sigma_scale)
    outer = np.outer(expected, np.exp(-((np.arange(3) - 1.0) ** 2) / (2 * (sigma_scale * 3) ** 2)))
    np.testing.assert_allclose(two_d, np.maximum(outer, max(outer.min(), MIN_WEIGHT)), rtol=1e-12)
    assert two_d.min() >= MIN_WEIGHT or two_d.min() == outer.min()


def test_windows_are_separable_cached_and_read_only():
    w = patch_window("hann", (4, 6, 5), dtype=np.float32)
    assert w.dtype == np.float32 and w.shape == (4, 6, 5) and not w.flags.writeable
    expected = np.einsum("i,j,k->ijk", *(window_1d("hann", n) for n in (4, 6, 5)))
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert patch_window("hann", (4, 6, 5), dtype=np.float32) is w
    assert np.all(patch_window("constant", (3, 2)) == 1)
    with pytest.raises(MergeError, match="choose one of constant, gaussian, hann"):
        window_1d("blackman", 4)


def test_center_distance_is_chebyshev_in_half_sizes():
    d = center_distance((4, 6))
    assert d.dtype == np.float32 and not d.flags.writeable
    assert d[1, 2] == d[2, 3] == pytest.approx(max(0.5 / 2, 0.5 / 3))
    assert d[0, 0] == pytest.approx(max(1.5 / 2, 2.5 / 3))
    assert center_distance((1,))[0] == 0
