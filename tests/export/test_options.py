"""ExportOptions: checked once when made, normalised, replaced with checks."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_patchwork.export import ExportError, ExportOptions


@given(
    size=st.one_of(
        st.integers(1, 4096),
        st.tuples(st.integers(1, 512), st.integers(1, 512)),
        st.integers(1, 4096).map(float),
        st.integers(1, 4096).map(np.int64),
    )
)
def test_whole_patch_sizes_are_kept_as_ints(size):
    options = ExportOptions(patch_size=size)
    values = options.patch_size if isinstance(options.patch_size, tuple) else (options.patch_size,)
    assert all(type(v) is int for v in values)
    assert np.array_equal(np.asarray(values), np.ravel(np.asarray(size, dtype=np.int64)))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"patch_size": None}, "patch_size is missing"),
        ({"patch_size": 16.5}, "whole number"),
        ({"patch_size": 0}, "at least 1 pixel"),
        ({"patch_size": (1 << 20, 1 << 20)}, "smaller patch size"),
        ({"patch_size": "256"}, "whole number"),
        ({"stride": -1}, "at least 1 pixel"),
        ({"fmt": "jpeg"}, "not known"),
        ({"edge": "wrap"}, "edge='wrap' is not known"),
        ({"compression": "lzw"}, "not supported"),
        ({"fmt": "png", "compression": "zlib"}, "TIFF only"),
        ({"min_foreground": 1.5}, "fraction from 0 to 1"),
        ({"min_foreground": "a"}, "fraction from 0 to 1"),
        ({"min_std": -1}, "min_std"),
        ({"stem": "my patches"}, "no spaces"),
        ({"edge": "pad", "pad_mode": "wrap"}, "pad_mode"),
        ({"indices": []}, "no patch selected"),
        ({"indices": ["a"]}, "patch numbers"),
        ({"split": (0.5, 0.2)}, "add up to 1"),
        ({"seed": 1.5}, "seed"),
        ({"write_threads": 0}, "write_threads"),
        ({"read_batch_bytes": 0}, "read_batch_bytes"),
        ({"mask_class_ids": {"a": "x"}}, "mask_class_ids"),
    ],
)
def test_bad_options_are_refused_when_made(changes, message):
    with pytest.raises(ExportError, match=message):
        ExportOptions(**{"patch_size": 64, **changes})


def test_pad_mode_is_only_checked_for_padded_exports():
    assert ExportOptions(patch_size=8, pad_mode="anything").pad_mode == "anything"


def test_values_are_normalised():
    options = ExportOptions(
        patch_size=[32, 32],
        fmt="OME-TIF",
        split=(0.8, 0.2),
        indices=[5, 1, 5],
        scale=[0.5, 0.5],
        mask_class_ids={"tumour": np.int64(1)},
    )
    assert options.patch_size == (32, 32) and options.fmt == "ome-tiff"
    assert options.split == {"train": 0.8, "val": 0.2} and options.indices == (1, 5)
    assert options.scale == (0.5, 0.5) and options.mask_class_ids == {"tumour": 1}


def test_replace_checks_again_and_refuses_unknown_names():
    options = ExportOptions(patch_size=8)
    assert options.replace() is options
    assert options.replace(stride=4).stride == 4 and options.stride is None
    with pytest.raises(ExportError, match="min_foreground"):
        options.replace(min_foreground=2)
    with pytest.raises(ExportError, match=r"unknown export options \['strid'\]"):
        options.replace(strid=4)
    with pytest.raises(ExportError, match="unknown"):
        ExportOptions.of(None, patch_size=8, colour="red")
    assert ExportOptions.of(options, edge="pad").edge == "pad"
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.edge = "pad"


@pytest.mark.parametrize(
    "name, fmt", [("tif", "tiff"), ("ome-tif", "ome-tiff"), ("TIF", "tiff"), ("tiff", "tiff")]
)
def test_tif_and_ome_tif_are_other_names_of_tiff_and_ome_tiff(name, fmt):
    assert ExportOptions(patch_size=4, fmt=name).fmt == fmt
