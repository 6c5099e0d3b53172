"""Pyramid levels: factors checked, the right level chosen, regions mapped."""

import numpy as np
import pytest

from napari_patchwork.pyramid import (
    Pyramid,
    as_pyramid,
    choose_levels,
    level_factors,
    level_for_region,
    level_region,
)


def test_level_factors_accept_ceil_and_floor_sizes_and_refuse_the_rest():
    assert level_factors((1000, 1001, 3), (500, 501, 3), 2) == ((2, 2), "")  # ceil
    assert level_factors((1000, 1001, 3), (500, 500, 3), 2) == ((2, 2), "")  # floor
    assert level_factors((1000, 1001, 3), (500, 500, 3), -1) == ((2, 2), "")  # axis from the end
    assert level_factors((1000, 1000), (250, 125), None) == ((4, 8), "")
    assert level_factors((10, 1000), (10, 125), None) == ((1, 8), "")  # z not reduced
    factors, why = level_factors((1000, 1000), (400, 400), None)  # 2.5
    assert factors is None and "no whole-number fraction of 1000" in why
    factors, why = level_factors((1000, 1000, 3), (500, 500, 4), 2)
    assert factors is None and "4 channels" in why
    factors, why = level_factors((5, 5), (2, 2), None)  # 2 (floor) or 3 (ceil): unsure
    assert factors is None and "no single whole-number fraction" in why
    factors, why = level_factors((900, 900), (300, 300), None, claimed=(2.0, 2.0))
    assert factors is None and "claims factors [2.0, 2.0], its shape gives [3, 3]" in why
    assert level_factors((900, 900), (450, 450), None, claimed=(2.0, 2.0)) == ((2, 2), "")


def test_as_pyramid_takes_napari_multiscale_lists_only():
    a, b = np.zeros((8, 8)), np.zeros((4, 4))
    assert as_pyramid([a, b]).levels == (a, b)
    assert as_pyramid(a) is None and as_pyramid([[1, 2], [3, 4]]) is None
    assert as_pyramid(Pyramid((a,))).level0 is a
    with pytest.raises(ValueError, match="at least one level"):
        Pyramid(())


@pytest.mark.parametrize(
    "factor, level, level_factor",
    [(2, 1, 2), (3, 0, 1), (4, 2, 4), (6, 1, 2), (8, 3, 8), (16, 4, 16), (32, 4, 16)],
)
def test_the_coarsest_level_dividing_the_factor_is_chosen(factor, level, level_factor):
    levels = [np.zeros((1024 // 2**k, 1024 // 2**k, 3), np.uint8) for k in range(5)]
    choice = choose_levels(Pyramid(tuple(levels)), 2, (factor, factor))
    assert choice.best == (level, (level_factor, level_factor))
    assert choice.levels[-1] == (0, (1, 1)) and not choice.notes
    text = choice.description
    assert text == (
        "" if level == 0 else f"read from pyramid level {level} ({level_factor} x {level_factor})"
    )


def test_full_resolution_and_single_levels_need_no_choice():
    levels = (np.zeros((64, 64)), np.zeros((32, 32)))
    assert choose_levels(Pyramid(levels), None, (1, 1)) is None
    assert choose_levels(Pyramid(levels[:1]), None, (4, 4)) is None


def test_bad_levels_are_left_out_with_a_note():
    level0 = np.zeros((900, 900), np.uint16)
    pyramid = Pyramid(
        (level0, np.zeros((300, 300), np.uint16), np.zeros((360, 360), np.uint16),
         np.zeros((225, 225), np.uint8)),
        claimed=(None, (2.0, 2.0), None, None),
    )  # fmt: skip
    choice = choose_levels(pyramid, None, (4, 4))
    assert choice.best == (0, (1, 1))
    assert len(choice.notes) == 3
    assert "level 1 not used: its metadata claims factors [2.0, 2.0]" in choice.description
    assert "level 2 not used: its size 360 along axis 0 is no whole-number" in choice.description
    assert "level 3 not used: its dtype is uint8" in choice.description


def test_regions_that_reach_a_partial_level_pixel_use_a_finer_level():
    # 1001 px: level 1 (2x) has 501 px, its last covers one source pixel; level 2 (4x) 250
    levels = (np.zeros((1001, 1001)), np.zeros((501, 501)), np.zeros((250, 250)))
    pyramid = Pyramid(levels)
    choice = choose_levels(pyramid, None, (4, 4))
    assert [index for index, _ in choice.levels] == [2, 1, 0]
    assert level_for_region(choice, pyramid, (0, 0), (16, 16), None) == (2, (4, 4))
    assert level_for_region(choice, pyramid, (992, 0), (1000, 16), None) == (2, (4, 4))
    assert level_for_region(choice, pyramid, (996, 0), (1001, 16), None) == (0, (1, 1))
    assert level_for_region(choice, pyramid, (0, 0), (1002, 16), None) == (0, (1, 1))
    assert level_region((8, 16), (16, 32), (4, 4), 3, 2) == (slice(2, 4), slice(4, 8), slice(None))
