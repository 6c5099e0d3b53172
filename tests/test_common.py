"""The shared helpers of _common.py that no other test reaches directly."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_patchwork._common import fraction


@given(st.floats(min_value=0.0, max_value=1.0))
def test_fractions_from_0_to_1_are_kept(value):
    assert fraction(value, "share") == value


@pytest.mark.parametrize("value", [-0.01, 1.5, math.nan, math.inf, "half", None])
def test_other_values_raise_the_callers_error_naming_the_field(value):
    class ShareError(ValueError):
        pass

    with pytest.raises(ShareError, match="share must be a fraction from 0 to 1"):
        fraction(value, "share", ShareError)
