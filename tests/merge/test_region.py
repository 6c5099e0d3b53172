"""merge_region: every mode rebuilds agreeing predictions; the blending, max and vote rules."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.grid import make_grid
from napari_patchwork.merge import (
    MERGE_MODES,
    MergeError,
    MergeOptions,
    PredictionLayout,
    merge_region,
    patch_window,
)


@st.composite
def layouts(draw, max_ndim=3):
    """A spatial shape, a grid over it (overlapping or not) and a channel position."""
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.integers(1, 14 if ndim < 3 else 7)) for _ in range(ndim))
    patch = tuple(draw(st.integers(1, 8)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, p)) for p in patch)
    edge = draw(st.sampled_from(["pad", "partial"] + (["shift"] if all(
        s >= p for s, p in zip(shape, patch)) else [])))  # fmt: skip
    channel = draw(st.sampled_from([None, 0, -1]))
    channels = None if channel is None else draw(st.integers(1, 3))
    return make_grid(shape, patch, stride, edge), channel, channels


def crops(global_array, grid, channel, rng):
    """The crop of ``global_array`` (channels last) under each box, channel axis moved to
    ``channel``; pixels past the image (pad mode) hold random garbage."""
    pairs = []
    for start, stop in grid.boxes:
        shape = tuple(int(b - a) for a, b in zip(start, stop))
        data = rng.integers(-99, 99, shape + global_array.shape[grid.ndim :]).astype(
            global_array.dtype
        )
        inside = tuple(slice(int(a), int(min(b, s))) for a, b, s in zip(start, stop, grid.shape))
        data[tuple(slice(0, s.stop - s.start) for s in inside)] = global_array[inside]
        if channel is not None:
            data = np.moveaxis(data, -1, channel)
        pairs.append(((start, stop), data))
    return pairs


def with_channel(array, channel):
    return array if channel is None else np.moveaxis(array, -1, channel)


@settings(max_examples=150, deadline=None)
@given(layouts(), st.sampled_from(MERGE_MODES), st.integers(0, 2**32 - 1))
def test_crops_of_one_array_merge_back_to_it_in_every_mode(case, mode, seed):
    grid, channel, channels = case
    rng = np.random.default_rng(seed)
    if mode == "vote":
        channel = channels = None  # labels: one per pixel
    dtype = np.int16 if mode == "vote" or seed % 2 else np.float32
    full = rng.integers(-50, 50, grid.shape + (() if channel is None else (channels,)))
    full = (full if dtype == np.int16 else full + rng.random(full.shape)).astype(dtype)
    pairs = crops(full, grid, channel, rng)
    layout = PredictionLayout.of(pairs[0][1], np.subtract(*grid.boxes[0][::-1]), channel)
    merged = merge_region((0,) * grid.ndim, grid.shape, iter(pairs), MergeOptions(mode), layout)
    expected = with_channel(full, channel)
    assert merged.shape == expected.shape
    if mode in ("mean", "gaussian", "hann"):
        assert merged.dtype == np.float64
        np.testing.assert_allclose(merged, expected, rtol=1e-6, atol=1e-5)
    else:
        assert merged.dtype == dtype
        np.testing.assert_array_equal(merged, expected)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(0, 30),
)
def test_two_overlapping_constant_patches_average_under_mean(a, b, size, shift, extra):
    size_b = size + extra
    shift = min(shift, size - 1)  # b starts inside a: they overlap
    width = max(size, shift + size_b)
    boxes = [((0,), (size,)), ((shift,), (shift + size_b,))]
    pairs = [(boxes[0], np.full(size, a, np.float32)), (boxes[1], np.full(size_b, b, np.float32))]
    layout = PredictionLayout.of(pairs[0][1], (size,))
    merged = merge_region((0,), (width,), pairs, MergeOptions("mean"), layout)
    overlap = slice(shift, size)
    np.testing.assert_allclose(merged[overlap], (np.float64(a) + np.float64(b)) / 2, rtol=1e-12)
    np.testing.assert_array_equal(merged[:shift], a)
    np.testing.assert_array_equal(merged[size:], b)


@settings(max_examples=150, deadline=None)
@given(layouts(max_ndim=2), st.sampled_from(["mean", "gaussian", "hann"]),
       st.floats(0.01, 2.0))  # fmt: skip
def test_weights_are_never_zero_inside_the_image(case, mode, sigma):
    grid, _, _ = case
    ones = [(box, np.ones(tuple(np.subtract(box[1], box[0])), np.float32)) for box in grid.boxes]
    options = MergeOptions(mode, sigma_scale=sigma, fill_value=np.nan)
    merged = merge_region((0,) * grid.ndim, grid.shape, ones, options, PredictionLayout(
        None, None, np.dtype(np.float32)))  # fmt: skip
    # every pixel covered (pad/shift/partial grids cover the image) got a positive weight
    np.testing.assert_allclose(merged, 1.0, rtol=1e-12)
    for start, stop in grid.boxes:
        assert np.all(patch_window(MergeOptions(mode).window, np.subtract(stop, start),
                                   sigma) > 0)  # fmt: skip


def brute_force_vote(grid, labels, y):
    """The winner at pixel ``y`` (a tuple): most votes, then nearest centre, then first patch."""
    votes = {}
    for order, ((start, stop), data) in enumerate(zip(grid.boxes, labels)):
        if all(a <= p < b for p, a, b in zip(y, start, stop)):
            distance = max(abs(p - (a + b - 1) / 2) / max((b - a) / 2, 0.5)
                           for p, a, b in zip(y, start, stop))  # fmt: skip
            label = int(data[tuple(p - a for p, a in zip(y, start))])
            count, best = votes.get(label, (0, (np.inf, 0)))
            votes[label] = (count + 1, min(best, (np.float32(distance), order)))
    return min(votes, key=lambda lab: (-votes[lab][0], votes[lab][1])), set(votes)


@settings(max_examples=150, deadline=None)
@given(layouts(max_ndim=2), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_vote_picks_the_majority_ties_to_the_nearest_centre_and_never_invents(case, k, seed):
    grid = case[0]
    rng = np.random.default_rng(seed)
    labels = [rng.integers(0, k, tuple(np.subtract(stop, start))).astype(np.uint8) * 7
              for start, stop in grid.boxes]  # fmt: skip
    layout = PredictionLayout.of(labels[0], np.subtract(grid.boxes[0, 1], grid.boxes[0, 0]))
    merged = merge_region((0,) * grid.ndim, grid.shape, zip(grid.boxes, labels),
                          MergeOptions("vote", fill_value=255), layout)  # fmt: skip
    assert merged.dtype == np.uint8
    for y in np.ndindex(*grid.shape):
        winner, offered = brute_force_vote(grid, labels, y)
        assert merged[y] in offered  # never a label that no covering patch gives
        assert merged[y] == winner, y


def test_vote_with_argmax_votes_each_patch_class_and_center_breaks_ties():
    # three 4 px patches on 6 px; class scores channel-first
    boxes = [((0,), (4,)), ((1,), (5,)), ((2,), (6,))]
    classes = [np.array([2, 2, 2, 2]), np.array([1, 1, 1, 1]), np.array([1, 1, 0, 0])]
    scores = [np.eye(3, dtype=np.float32)[c].T for c in classes]  # (3, 4)
    layout = PredictionLayout.of(scores[0], (4,))
    assert layout.channel_axis == 0 and layout.channels == 3
    merged = merge_region((0,), (6,), zip(boxes, scores), MergeOptions("vote", argmax=True), layout)
    # distances |p - centre| / 2 with centres 1.5, 2.5, 3.5. pixel 1: 2 (0.25) vs 1 (0.75),
    # a tie -> 2. pixels 2, 3: class 1 has two votes. pixel 4: 1 (0.75) vs 0 (0.25) -> 0.
    assert merged.dtype == np.uint8
    assert merged.tolist() == [2, 2, 1, 1, 0, 0]


def test_max_and_argmax_and_fill():
    boxes = [((0, 0), (2, 2)), ((0, 1), (2, 3))]
    a = np.array([[[1, 5], [2, 0]], [[0, 0], [9, 1]]], np.float32)  # (y, x, c=2)
    b = np.array([[[3, 3], [1, 8]], [[1, 1], [1, 1]]], np.float32)
    layout = PredictionLayout.of(a, (2, 2), channel_axis=-1)
    merged = merge_region((0, 0), (3, 3), zip(boxes, [a, b]), MergeOptions("max", fill_value=-1),
                          layout)  # fmt: skip
    assert merged[0, 1].tolist() == [3, 3] and merged[1, 1].tolist() == [9, 1]
    assert merged[0, 2].tolist() == [1, 8] and merged[2].tolist() == [[-1, -1]] * 3
    labels = merge_region((0, 0), (3, 3), zip(boxes, [a, b]),
                          MergeOptions("max", argmax=True, fill_value=7), layout)  # fmt: skip
    assert labels.dtype == np.uint8
    assert labels.tolist() == [[1, 0, 1], [0, 0, 0], [7, 7, 7]]


def test_merging_region_by_region_equals_merging_at_once():
    rng = np.random.default_rng(1)
    grid = make_grid((23, 19), 7, 4, "pad")
    pairs = [(box, rng.random((7, 7, 2))) for box in grid.boxes]
    layout = PredictionLayout.of(pairs[0][1], (7, 7))
    for mode in MERGE_MODES:
        if mode == "vote":
            continue
        whole = merge_region((0, 0), (23, 19), pairs, MergeOptions(mode), layout)
        for y0, y1, x0, x1 in ((0, 5, 0, 19), (5, 23, 3, 11), (17, 18, 18, 19)):
            part = merge_region((y0, x0), (y1, x1), pairs, MergeOptions(mode), layout)
            np.testing.assert_array_equal(part, whole[y0:y1, x0:x1])


def test_bad_input_says_what_to_change():
    layout = PredictionLayout(None, None, np.dtype(np.float32))
    with pytest.raises(MergeError, match="choose one of center, last, mean"):
        MergeOptions("average")
    with pytest.raises(MergeError, match="positive fraction"):
        MergeOptions("gaussian", sigma_scale=0)
    with pytest.raises(MergeError, match="integer label predictions.*argmax=True"):
        merge_region((0,), (4,), [], MergeOptions("vote"), layout)
    with pytest.raises(MergeError, match="argmax needs predictions with a channel axis"):
        merge_region((0,), (4,), [], MergeOptions("mean", argmax=True), layout)
    with pytest.raises(MergeError, match=r"shape \(3,\) does not fit its patch \(4,\)"):
        merge_region((0,), (4,), [(((0,), (4,)), np.zeros(3))], MergeOptions("mean"), layout)
    with pytest.raises(MergeError, match="optionally with one channel axis first or last"):
        PredictionLayout.of(np.zeros((5, 4, 4)), (4, 3))
