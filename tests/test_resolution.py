"""Block reduction rules (no napari, no Qt): area mean for images, mode for masks, factors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.resolution import (
    ResolutionError,
    downsample_mean,
    downsample_mode,
    downsampled_shape,
    downsampled_transform,
    resolve_factors,
)


def blocks(shape, factors):
    """Slices of every block, by output index (the reference: one block at a time)."""
    out_shape = downsampled_shape(shape, factors)
    for index in np.ndindex(*out_shape):
        yield index, tuple(slice(i * f, (i + 1) * f) for i, f in zip(index, factors))


def reference_mode(labels, factors):
    out = np.zeros(downsampled_shape(labels.shape, factors), labels.dtype)
    for index, region in blocks(labels.shape, factors):
        values, counts = np.unique(labels[region], return_counts=True)
        out[index] = values[np.argmax(counts)]  # values ascending: the first max is the lowest
    return out


def reference_mean(image, factors):
    """Per block: exact mean as a fraction, rounded half to even (Python integers)."""
    out = np.zeros(downsampled_shape(image.shape[:-1], factors) + image.shape[-1:], image.dtype)
    for index, region in blocks(image.shape[:-1], factors):
        block = image[region].reshape(-1, image.shape[-1])
        for c in range(image.shape[-1]):
            total, n = sum(int(v) for v in block[:, c]), len(block)
            out[index + (c,)] = (
                round(total / n) if abs(total) < 2**52 else _round_fraction(total, n)
            )
    return out


def _round_fraction(total, n):
    q, r = divmod(total, n)
    return q + (2 * r > n or (2 * r == n and q % 2 == 1))


def test_checkerboard_2x():
    # 2 px squares: every 2x2 block is uniform, so the result is the 1 px checkerboard
    board = (np.indices((8, 12)).sum(axis=0) % 2).astype(np.uint8) * 200
    coarse = np.kron(board, np.ones((2, 2), np.uint8))
    np.testing.assert_array_equal(downsample_mean(coarse, (2, 2)), board)
    np.testing.assert_array_equal(downsample_mode(coarse.astype(np.uint16), (2, 2)), board)
    # 1 px squares: every block holds two 0s and two 255s, mean 127.5 -> 128 (half to even)
    fine = (np.indices((8, 12)).sum(axis=0) % 2).astype(np.uint8) * 255
    assert np.unique(downsample_mean(fine, (2, 2))).tolist() == [128]
    # ... and the labels 0 and 7 tie in every block: the lowest id wins, nothing in between
    labels = fine.astype(np.int32) // 255 * 7
    np.testing.assert_array_equal(downsample_mode(labels, (2, 2)), np.zeros((4, 6), np.int32))


def test_integer_rounding_is_half_to_even_and_dtype_kept():
    pairs = np.array([0, 1, 2, 3, -3, -4], dtype=np.int16)  # means 0.5, 2.5, -3.5
    got = downsample_mean(pairs, (2,))
    assert got.dtype == np.int16 and got.tolist() == [0, 2, -4]
    halves = np.array([1, 2, 3, 4, 5, 6, -1, -2], dtype=np.int8)
    assert downsample_mean(halves, (2,)).tolist() == [2, 4, 6, -2]  # 1.5 2 ... 3.5 4 5.5 6 -1.5 -2
    assert downsample_mean(np.array([True, False, True, True, False, False]), (2,)).tolist() == [
        False,
        True,
        False,
    ]
    floats = np.array([0.1, 0.2, 0.4], dtype=np.float32)
    got = downsample_mean(floats, (2,))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [0.15, 0.4], rtol=1e-6)  # the short last block: itself


def test_64_bit_integers_are_exact():
    big = np.iinfo(np.uint64).max
    image = np.array([big, big - 1, big - 2, big - 2], dtype=np.uint64)
    assert downsample_mean(image, (2,)).tolist() == [big - 1, big - 2]  # (2b - 1) / 2 -> even
    labels = np.array([big, big, 3, big], dtype=np.uint64)
    assert downsample_mode(labels, (4,)).tolist() == [big]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 13), st.integers(1, 13)),
    factors=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    n_labels=st.integers(1, 5),
    dtype=st.sampled_from([np.uint8, np.int16, np.uint16, np.int32, np.int64]),
    seed=st.integers(0, 2**16),
)
def test_mode_and_mean_match_the_block_by_block_reference(shape, factors, n_labels, dtype, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_labels, shape).astype(dtype) * 3
    got = downsample_mode(labels, factors)
    assert got.dtype == labels.dtype and got.shape == downsampled_shape(shape, factors)
    np.testing.assert_array_equal(got, reference_mode(labels, factors))
    # ids are never mixed: each output id occurs in its own source block
    for index, region in blocks(shape, factors):
        assert got[index] in labels[region]
    info = np.iinfo(dtype)
    image = rng.integers(info.min, info.max, (*shape, 2), dtype=dtype, endpoint=True)
    mean = downsample_mean(image, factors, channel_axis=-1)
    assert mean.dtype == image.dtype
    np.testing.assert_array_equal(mean, reference_mean(image, factors))


def test_channel_axis_anywhere_and_3d():
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 1000, (2, 5, 7, 9), dtype=np.uint16)  # c, z, y, x
    got = downsample_mean(volume, (1, 2, 3), channel_axis=0)
    assert got.shape == (2, 5, 4, 3)
    last = downsample_mean(np.moveaxis(volume, 0, -1), (1, 2, 3), channel_axis=-1)
    np.testing.assert_array_equal(np.moveaxis(last, -1, 0), got)
    np.testing.assert_array_equal(got[1, 2, 0, 0], round(volume[1, 2, 0:2, 0:3].mean()))
    with pytest.raises(ResolutionError, match="3 spatial axes"):
        downsample_mean(volume, (2, 2), channel_axis=0)


def test_resolve_factors_from_downsample_and_pixel_size():
    assert resolve_factors(2) == (1, 1)
    assert resolve_factors(2, downsample=4) == (4, 4)
    assert resolve_factors(3, downsample=2) == (1, 2, 2)  # one number: y and x only
    assert resolve_factors(3, downsample=(2, 2, 2)) == (2, 2, 2)
    assert resolve_factors(2, downsample=2.0) == (2, 2)
    assert resolve_factors(2, pixel_size=0.5, scale=(0.25, 0.25)) == (2, 2)
    assert resolve_factors(2, pixel_size=1.0, scale=(0.2500001, 0.25)) == (4, 4)  # float noise
    assert resolve_factors(3, pixel_size=0.5, scale=(2.0, 0.25, 0.25)) == (1, 2, 2)
    with pytest.raises(ResolutionError, match="not both"):
        resolve_factors(2, downsample=2, pixel_size=0.5, scale=(0.25, 0.25))
    with pytest.raises(ResolutionError, match="whole number"):
        resolve_factors(2, downsample=1.5)
    with pytest.raises(ResolutionError, match="whole number"):
        resolve_factors(2, downsample=0)
    with pytest.raises(ResolutionError, match="only lower the resolution"):
        resolve_factors(2, pixel_size=0.1, scale=(0.25, 0.25))
    with pytest.raises(ResolutionError, match=r"pixel_size=0\.5056 \(downsample 2\)"):
        resolve_factors(2, pixel_size=0.5, scale=(0.2528, 0.2528))
    with pytest.raises(ResolutionError, match="needs the image's pixel size"):
        resolve_factors(2, pixel_size=0.5)
    with pytest.raises(ResolutionError, match="one per spatial axis"):
        resolve_factors(3, downsample=(2, 2))


def test_transform_puts_output_pixel_centres_on_source_block_centres():
    scale, translate, factors = [0.25, 0.5], [10.0, -3.0], [4, 3]
    out_scale, out_translate = downsampled_transform(scale, translate, factors)
    assert out_scale == [1.0, 1.5]
    for axis in range(2):
        for j in range(5):
            centre = out_translate[axis] + j * out_scale[axis]
            members = [
                translate[axis] + (j * factors[axis] + k) * scale[axis]
                for k in range(factors[axis])
            ]
            assert centre == pytest.approx(np.mean(members))
    assert downsampled_transform(None, None, [2, 2]) == ([2.0, 2.0], [0.5, 0.5])


def test_zero_or_negative_scale_is_explained():
    from napari_patchwork.resolution import ResolutionError, resolve_factors

    for scale in [(0.0, 0.25), (-0.25, 0.25)]:
        with pytest.raises(ResolutionError, match="must be positive pixel sizes"):
            resolve_factors(2, pixel_size=0.5, scale=scale)
