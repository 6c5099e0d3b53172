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


def write_ome_zarr(path, levels, scales, version="0.4"):
    """An OME-Zarr image (zarr v2 for 0.4, v3 for 0.5) with these levels and scales."""
    import zarr

    group = zarr.open_group(path, mode="w", zarr_format=2 if version == "0.4" else 3)
    for i, level in enumerate(levels):
        group.create_array(str(i), data=level, chunks=(32,) * level.ndim)
    datasets = [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": list(s)}]}
        for i, s in enumerate(scales)
    ]
    multiscales = [{"version": version, "axes": [{"name": "y"}, {"name": "x"}],
                    "datasets": datasets}]  # fmt: skip
    if version == "0.4":
        group.attrs["multiscales"] = multiscales
    else:
        group.attrs["ome"] = {"version": version, "multiscales": multiscales}


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_images_read_level_0_and_their_pyramid_with_claimed_factors(tmp_path, version):
    from napari_patchwork.io import read_levels, read_pyramid

    level0 = np.arange(128 * 96, dtype=np.uint16).reshape(128, 96)
    levels = [level0, level0[::2, ::2].copy(), level0[::4, ::4].copy()]
    write_ome_zarr(tmp_path / "img.zarr", levels, [(0.5, 0.5), (1.0, 1.0), (2.0, 2.0)], version)
    assert np.array_equal(read_image(tmp_path / "img.zarr"), level0)
    pyramid = read_pyramid(tmp_path / "img.zarr")
    assert [tuple(a.shape) for a in pyramid.levels] == [(128, 96), (64, 48), (32, 24)]
    assert pyramid.claimed == ((1.0, 1.0), (2.0, 2.0), (4.0, 4.0))
    assert np.array_equal(pyramid.levels[2][:], levels[2])
    assert len(read_levels(tmp_path / "img.zarr")) == 3
    # a plain zarr array is no pyramid, and still an image
    import zarr

    zarr.create_array(tmp_path / "plain.zarr", data=level0, chunks=(32, 32))
    assert read_pyramid(tmp_path / "plain.zarr") is None
    assert np.array_equal(read_image(tmp_path / "plain.zarr"), level0)


def test_read_pyramid_of_a_tiff_and_of_flat_files(tmp_path):
    from napari_patchwork.io import read_pyramid

    with tifffile.TiffWriter(tmp_path / "p.tif") as tif:
        tif.write(np.zeros((256, 128), np.uint8), subifds=2, tile=(64, 64))
        tif.write(np.ones((128, 64), np.uint8), subfiletype=1, tile=(64, 64))
        tif.write(np.ones((64, 32), np.uint8), subfiletype=1, tile=(64, 64))
    pyramid = read_pyramid(tmp_path / "p.tif")
    assert [tuple(a.shape) for a in pyramid.levels] == [(256, 128), (128, 64), (64, 32)]
    assert pyramid.claimed is None
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((64, 64), np.uint8))
    assert read_pyramid(tmp_path / "flat.tif") is None and read_pyramid(tmp_path / "x.png") is None
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageReadError, match="bad.tif: cannot read its pyramid levels"):
        read_pyramid(tmp_path / "bad.tif")
