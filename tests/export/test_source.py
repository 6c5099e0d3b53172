"""Exports read from pyramid levels: the same pixels as averaging level 0, boxes in level-0
pixels, the right level read, bad levels never trusted."""

import numpy as np
import pytest

from napari_patchwork.export import export_patches, plan_export
from napari_patchwork.pyramid import Pyramid
from napari_patchwork.resolution import downsample_mean


class Forbidden:
    """An array that must not be read (its shape and dtype may be asked)."""

    def __init__(self, array):
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key):
        raise AssertionError("level 0 was read")


def image_of(dtype, shape=(192, 160, 3), seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def averaged_pyramid(level0, factors=(2, 4, 8), channel_axis=-1):
    """Levels made by area-averaging level 0 (each from level 0: rounded once)."""
    return [level0] + [downsample_mean(level0, (f, f), channel_axis) for f in factors]


def patches(result, folder):
    return {row["image"]: np.load(folder / row["image"]) for row in result.rows}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("factor", [2, 4, 6, 8, 16])
def test_pyramid_gives_the_pixels_of_averaging_level_0(tmp_path, dtype, factor):
    level0 = image_of(dtype)
    levels = averaged_pyramid(level0)
    common = dict(patch_size=8, edge="pad", downsample=factor, channel_axis=-1, fmt="npy")
    plain = export_patches(tmp_path / "plain", level0, **common)
    pyramid = export_patches(tmp_path / "pyr", levels, **common)
    assert pyramid.rows == plain.rows  # boxes (level-0 and output pixels), names, order
    level = {2: 1, 4: 2, 6: 1, 8: 3, 16: 3}[factor]
    read_factor = {2: 2, 4: 4, 6: 2, 8: 8, 16: 8}[factor]
    assert f"read from pyramid level {level} ({read_factor} x {read_factor})" in pyramid.notes[0]
    a, b = patches(plain, tmp_path / "plain"), patches(pyramid, tmp_path / "pyr")
    for name in a:
        if np.dtype(dtype).kind == "f":  # the same means, summed in another order
            np.testing.assert_allclose(
                b[name], a[name], rtol=2e-6 if dtype == np.float32 else 1e-12
            )
        elif read_factor == factor:  # the level's pixels are the result: rounded the same way
            np.testing.assert_array_equal(b[name], a[name])
        else:  # the level was rounded once before the rest was averaged: within 1
            assert np.abs(b[name].astype(np.int64) - a[name].astype(np.int64)).max() <= 1


def test_a_level_that_serves_every_patch_is_the_only_one_read(tmp_path):
    level0 = image_of(np.uint8, (256, 256, 3))
    levels = averaged_pyramid(level0)
    plain = export_patches(tmp_path / "a", level0, patch_size=16, downsample=8, channel_axis=-1,
                           fmt="npy")  # fmt: skip
    guarded = [Forbidden(level0), Forbidden(levels[1]), Forbidden(levels[2]), levels[3]]
    result = export_patches(tmp_path / "b", guarded, patch_size=16, downsample=8,
                            channel_axis=-1, fmt="npy")  # fmt: skip
    assert result.rows == plain.rows and result.n_patches == 4
    a, b = patches(plain, tmp_path / "a"), patches(result, tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # as dask tasks too (the path a dask.distributed cluster takes)
    tasks = export_patches(tmp_path / "c", guarded, patch_size=16, downsample=8,
                           channel_axis=-1, fmt="npy", as_dask_tasks=True)  # fmt: skip
    c = patches(tasks, tmp_path / "c")
    assert tasks.rows == plain.rows and all(np.array_equal(a[k], c[k]) for k in a)


def test_edge_pixels_of_a_level_are_never_trusted(tmp_path):
    # 1001 px is not a multiple of 2 or 4: the levels' last pixels cover fewer source
    # pixels; a writer that filled them with white must not show through
    level0 = image_of(np.uint16, (101, 1001), seed=3)
    levels = [level0] + [downsample_mean(level0, (1, f), None) for f in (2, 4)]
    for level in levels[1:]:
        level[:, -1] = 65535
    common = dict(patch_size=(5, 25), edge="pad", downsample=(1, 4), fmt="npy")
    plain = export_patches(tmp_path / "a", level0, **common)
    result = export_patches(tmp_path / "b", levels, **common)
    a, b = patches(plain, tmp_path / "a"), patches(result, tmp_path / "b")
    assert result.rows == plain.rows
    for name in a:
        assert np.abs(b[name].astype(np.int64) - a[name].astype(np.int64)).max() <= 1
    last = [r["image"] for r in plain.rows if r["valid_x1"] == 1001]
    assert last and all(np.array_equal(a[k], b[k]) for k in last)  # read from level 0


@pytest.mark.parametrize(
    "make_level, claimed, why",
    [
        (lambda img: img[::3, ::3], (2.0, 2.0, 1.0), "metadata claims factors [2.0, 2.0]"),
        (lambda img: img[::3, ::3], None, None),  # factor 3 does not divide 4: unused
        (lambda img: img[: int(len(img) / 2.5), : int(img.shape[1] / 2.5)], None, "whole-number"),
        (lambda img: img[::2, ::2, :2], None, "2 channels"),
    ],
)
def test_bad_pyramid_levels_never_give_wrong_pixels(tmp_path, make_level, claimed, why):
    level0 = image_of(np.uint8, (96, 96, 3), seed=1)
    bad = np.ascontiguousarray(make_level(level0))
    pyramid = Pyramid((level0, bad), None if claimed is None else (None, claimed))
    common = dict(patch_size=8, downsample=4, channel_axis=-1, fmt="npy")
    plain = export_patches(tmp_path / "a", level0, **common)
    result = export_patches(tmp_path / "b", pyramid, **common)
    a, b = patches(plain, tmp_path / "a"), patches(result, tmp_path / "b")
    assert result.rows == plain.rows and all(np.array_equal(a[k], b[k]) for k in a)
    if why is None:
        assert result.notes == ()
    else:
        assert "pyramid level 1 not used" in result.notes[0] and why in result.notes[0]


def test_full_resolution_exports_read_level_0_and_say_nothing(tmp_path):
    levels = averaged_pyramid(image_of(np.uint8, (64, 64, 3)))
    from napari_patchwork.export import ExportOptions

    options = ExportOptions(patch_size=16, channel_axis=-1, fmt="npy")
    assert plan_export(levels, None, options).levels is None
    assert plan_export(levels, None, options.replace(downsample=2)).levels.best == (1, (2, 2))
    result = export_patches(tmp_path / "a", levels, options=options)
    assert result.notes == () and result.n_patches == 16


def test_placed_patches_with_a_blocked_split_read_from_the_pyramid(tmp_path):
    from napari_patchwork.placement import Placement

    level0 = image_of(np.uint8, (256, 256, 3), seed=5)
    placement = Placement(kind="random", n=40, seed=3)
    common = dict(patch_size=8, downsample=4, channel_axis=-1, fmt="npy", placement=placement,
                  split=(0.5, 0.5), split_by="blocks", block_size=16)  # fmt: skip
    plain = export_patches(tmp_path / "a", level0, **common)
    result = export_patches(tmp_path / "b", averaged_pyramid(level0), **common)
    assert result.rows == plain.rows and result.n_buffer == plain.n_buffer
    assert "read from pyramid level 2 (4 x 4)" in result.notes
    a, b = patches(plain, tmp_path / "a"), patches(result, tmp_path / "b")
    assert a and all(np.array_equal(a[k], b[k]) for k in a)
    assert {r["split"] for r in result.rows} == {"train", "val"}
