"""Whole-image reading and writing for the command line."""

import numpy as np
import pytest
import tifffile

from napari_patchwork.io import ImageReadError, guess_channel_axis, read_image, write_image


@pytest.fixture(scope="module")
def rgb():
    return (np.random.default_rng(1).random((700, 900, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["tiled", "tiled-zlib", "contiguous", "strips-zlib"])
def test_lazy_tiff_reads_regions_exactly(tmp_path, rgb, kind):
    path = tmp_path / f"{kind}.tif"
    options = {
        "tiled": dict(tile=(128, 128)),
        "tiled-zlib": dict(tile=(128, 128), compression="zlib"),
        "contiguous": {},
        "strips-zlib": dict(compression="zlib", rowsperstrip=64),
    }[kind]
    tifffile.imwrite(path, rgb, photometric="rgb", **options)
    lazy = read_image(path, lazy=True)
    assert type(lazy).__module__.startswith("dask")
    assert lazy.shape == rgb.shape and lazy.dtype == rgb.dtype
    assert np.array_equal(lazy[650:700, 100:830].compute(), rgb[650:700, 100:830])
    assert np.array_equal(lazy.compute(), rgb)
    assert np.array_equal(read_image(path), rgb)  # small file: numpy by default
    assert isinstance(read_image(path), np.ndarray)


@pytest.mark.parametrize("suffix", [".tif", ".png", ".npy"])
def test_write_then_read_round_trip(tmp_path, rgb, suffix):
    path = write_image(tmp_path / f"x{suffix}", rgb)
    assert np.array_equal(read_image(path), rgb)
    assert [p.name for p in tmp_path.iterdir()] == [f"x{suffix}"]  # no temporary left


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "bad.tif").write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match="bad.tif: cannot read it as an image"):
        read_image(tmp_path / "bad.tif")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageReadError, match="unknown image type"):
        read_image(tmp_path / "notes.txt")


def test_guess_channel_axis():
    assert guess_channel_axis((10, 10, 3)) == -1
    assert guess_channel_axis((3, 10, 10)) is None
    assert guess_channel_axis((10, 10)) is None


def test_dask_array_written_as_tiff_strip_by_strip(tmp_path, rgb):
    da = pytest.importorskip("dask.array")
    strips = []

    def record(block, block_info=None):
        strips.append(block_info[None]["array-location"][0])
        return block

    lazy = da.from_array(rgb, chunks=(300, 450, 3)).map_blocks(record, dtype=rgb.dtype)
    path = write_image(tmp_path / "lazy.tif", lazy)
    assert np.array_equal(read_image(path), rgb)
    assert len(strips) == lazy.npartitions  # every chunk computed exactly once
    assert tifffile.TiffFile(path).pages[0].is_tiled


@pytest.mark.parametrize(
    "shape, chunks",
    [((5, 300, 280), (5, 128, 96)), ((2, 3, 70, 90), (1, 3, 32, 32)), ((300, 520), (64, 100))],
)
def test_dask_stacks_and_channels_first_are_written_page_by_page(tmp_path, shape, chunks):
    da = pytest.importorskip("dask.array")
    data = np.random.default_rng(0).integers(0, 60000, size=shape, dtype=np.uint16)
    path = write_image(tmp_path / "stack.tif", da.from_array(data, chunks=chunks))
    assert np.array_equal(tifffile.imread(path), data)


def test_read_levels_of_a_pyramid_tiff(tmp_path):
    from napari_patchwork.io import read_levels
    from napari_patchwork.thumbnail import thumbnail

    with tifffile.TiffWriter(tmp_path / "p.tif") as tif:
        tif.write(np.zeros((1024, 512), np.uint16), subifds=1, tile=(256, 256))
        tif.write(np.full((512, 256), 7, np.uint16), subfiletype=1, tile=(256, 256))
    levels = read_levels(tmp_path / "p.tif")
    assert [tuple(level.shape) for level in levels] == [(1024, 512), (512, 256)]
    assert np.all(thumbnail(levels, 300).pixels == 7)  # the small level, strided
    assert np.array_equal(levels[0][100:110, 5:9], np.zeros((10, 4), np.uint16))
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((64, 64), np.uint8))
    assert read_levels(tmp_path / "flat.tif") == [] and read_levels(tmp_path / "x.png") == []
