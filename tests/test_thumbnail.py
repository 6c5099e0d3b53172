"""Thumbnails: size bound, block means, pyramid levels, lazy slides read only where sampled."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.grid import make_grid
from napari_patchwork.preview import draw_patch_preview, render
from napari_patchwork.sample import sample_image
from napari_patchwork.thumbnail import PreviewError, block_mean, display_pixels, thumbnail


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 3000),
    width=st.integers(1, 3000),
    max_side=st.integers(1, 900),
    rgb=st.booleans(),
)
def test_thumbnail_is_at_most_max_side_and_covers_the_image(height, width, max_side, rgb):
    shape = (height, width, 3) if rgb else (height, width)
    image = np.broadcast_to(np.uint8(7), shape)  # no memory, any size
    thumb = thumbnail(image, max_side, channel_axis=-1 if rgb else None)
    assert max(thumb.pixels.shape[:2]) <= max_side
    assert thumb.pixels.shape[2:] == shape[2:] and thumb.pixels.dtype == np.uint8
    assert thumb.source_shape == (height, width)
    for n, px, scale in zip((height, width), thumb.pixels.shape, thumb.scale):
        assert px * scale == pytest.approx(n)  # the thumbnail spans the whole image
    assert np.all(thumb.pixels == 7)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.integers(0, 65535), min_size=1, max_size=23 * 17).map(np.array),
    width=st.integers(1, 17),
    factor=st.integers(1, 6),
)
def test_block_mean_averages_the_pixels_of_each_block(data, width, factor):
    height = max(1, len(data) // width)
    plane = np.resize(data, (height, width)).astype(np.uint16)
    got = block_mean(plane, factor)
    assert got.shape == (-(-height // factor), -(-width // factor)) and got.dtype == np.uint16
    for r in range(got.shape[0]):
        for c in range(got.shape[1]):
            block = plane[r * factor : (r + 1) * factor, c * factor : (c + 1) * factor]
            assert got[r, c] == np.rint(block.mean())  # edge blocks: the pixels they have


def test_thumbnail_of_an_rgb_photo_is_its_block_mean():
    image = sample_image()
    thumb = thumbnail(image, 100, channel_axis=-1)
    assert thumb.pixels.shape == (86, 86, 3) and thumb.scale == pytest.approx((512 / 86,) * 2)
    expected = image[:510].reshape(85, 6, 512, 3)[:, :, :510].reshape(85, 6, 85, 6, 3)
    assert np.array_equal(thumb.pixels[:85, :85], np.rint(expected.mean(axis=(1, 3))))


def test_thumbnail_channels_first_and_stacks_show_the_middle_plane():
    stack = np.zeros((2, 5, 40, 60), np.float32)  # c, z, y, x
    stack[1, 2] = 3.0
    thumb = thumbnail(stack, 30, channel_axis=0)
    assert thumb.pixels.shape == (20, 30, 2) and thumb.source_shape == (40, 60)
    assert np.all(thumb.pixels[..., 1] == 3.0) and np.all(thumb.pixels[..., 0] == 0)


def test_thumbnail_of_labels_samples_ids_never_averages_them():
    labels = np.zeros((100, 100), np.uint16)
    labels[::2] = 7  # a block mean would make 3 or 4, an id that does not exist
    thumb = thumbnail(labels, 10, labels=True)
    assert set(np.unique(thumb.pixels)) <= {0, 7}


class StridedSource:
    """A 40,000 x 40,000 x 3 slide read through ``__getitem__`` like a tiled file.

    Pixel values are a function of their position. Serving more than ``budget`` pixels
    in all raises: reading the whole array (1.6 G pixels) is impossible."""

    shape = (40_000, 40_000, 3)
    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, budget=5_000_000):
        self.budget, self.served = budget, 0

    def __getitem__(self, key):
        yy, xx = (np.arange(*k.indices(n)) for k, n in zip(key[:2], self.shape))
        self.served += len(yy) * len(xx)
        if self.served > self.budget:
            raise AssertionError(f"{self.served:,} pixels read: the whole array is being read")
        value = ((yy[:, None] // 1000 + xx[None, :] // 1000) % 2 * 200).astype(np.uint8)
        return np.stack([value, 255 - value, value // 2], axis=-1)[..., key[2]]


def test_lazy_40k_slide_makes_a_preview_without_reading_the_whole_array():
    source = StridedSource()
    image = da.from_array(source, chunks=(2000, 2000, 3), asarray=False)
    with pytest.raises(AssertionError, match="whole array"):
        image.sum().compute()
    source.served = 0
    grid = make_grid(image.shape, 4096, edge="pad", channel_axis=-1)
    kept = np.arange(grid.n_patches) % 3 != 0
    fig = draw_patch_preview(image, grid.boxes, kept, channel_axis=-1)
    pixels = render(fig)
    assert max(pixels.shape[:2]) <= 2000
    assert source.served <= 2000 * 2000  # one sampled pixel per block of 21 x 21
    source.served = 0
    thumb = thumbnail(image, 2000, channel_axis=-1)
    assert thumb.pixels.shape == (2000, 2000, 3) and thumb.scale == (20.0, 20.0)
    squares = np.arange(2000) * 20 // 1000
    expected = ((squares[:, None] + squares[None, :]) % 2 * 200).astype(np.uint8)
    assert np.array_equal(thumb.pixels[..., 0], expected)


def test_thumbnail_reads_the_smallest_pyramid_level_that_is_large_enough():
    class Unreadable:
        def __init__(self, shape):
            self.shape, self.dtype, self.ndim = shape, np.dtype(np.uint8), len(shape)

        def __getitem__(self, key):
            raise AssertionError("a large level was read")

    small = np.full((2500, 1250, 3), 9, np.uint8)
    levels = [Unreadable((40_000, 20_000, 3)), Unreadable((10_000, 5_000, 3)), small]
    thumb = thumbnail(levels, 2000, channel_axis=-1)
    assert thumb.source_shape == (40_000, 20_000)
    assert thumb.pixels.shape == (1250, 625, 3) and thumb.scale == (32.0, 32.0)
    assert np.all(thumb.pixels == 9)
    with pytest.raises(PreviewError, match="empty list"):
        thumbnail([], 100)


def test_display_pixels_stretches_other_dtypes_and_colours_two_channels():
    grey = np.linspace(0, 4000, 100, dtype=np.float32).reshape(10, 10)
    shown = display_pixels(grey)
    assert shown.min() == 0 and shown.max() == 1
    two = np.stack([grey, 4000 - grey], axis=-1).astype(np.uint16)
    shown = display_pixels(two)
    assert shown.shape == (10, 10, 3) and np.all(shown[..., 2] == 0)
    assert (
        display_pixels(sample_image()) is not None
        and display_pixels(sample_image()).dtype == np.uint8
    )
