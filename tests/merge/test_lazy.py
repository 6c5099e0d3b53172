"""merge_lazy: dask blocks hold only their own sources and equal the eager merge."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.grid import make_grid
from napari_patchwork.merge import (
    MERGE_MODES,
    MergeOptions,
    PredictionLayout,
    merge_chunks,
    merge_lazy,
    merge_region,
    overlapping,
)


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.integers(1, 30), st.integers(1, 30)),
    st.integers(2, 9),
    st.integers(1, 9),
    st.sampled_from(MERGE_MODES),
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    st.integers(0, 2**32 - 1),
)
def test_lazy_equals_eager(shape, patch, stride, mode, chunks, seed):
    stride = min(stride, patch)
    grid = make_grid(shape, patch, stride, "pad")
    rng = np.random.default_rng(seed)
    if mode == "vote":
        predictions = [rng.integers(0, 3, (patch, patch)).astype(np.int32) for _ in grid.boxes]
    else:
        predictions = [rng.random((2, patch, patch)).astype(np.float32) for _ in grid.boxes]
    layout = PredictionLayout.of(predictions[0], (patch, patch))
    options = MergeOptions(mode, argmax=bool(seed % 2) and mode != "vote")
    read_log = []

    def read(i):
        read_log.append(i)
        return predictions[i]

    lazy = merge_lazy(shape, grid.boxes, range(grid.n_patches), read, options, layout, chunks)
    eager = merge_region((0, 0), shape, zip(grid.boxes, predictions), options, layout)
    assert lazy.shape == eager.shape and lazy.dtype == eager.dtype
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), eager)
    # each block read only the patches that overlap it
    expected = 0
    for y0 in range(0, shape[0], chunks[0]):
        for x0 in range(0, shape[1], chunks[1]):
            stop = (min(y0 + chunks[0], shape[0]), min(x0 + chunks[1], shape[1]))
            expected += len(overlapping(grid.boxes, (y0, x0), stop))
    assert len(read_log) == expected


def test_block_tasks_hold_only_their_sources_and_chunks_follow_the_stride():
    grid = make_grid((64, 64), 16, 16, "drop")
    layout = PredictionLayout(None, None, np.dtype(np.float32))
    chunks = merge_chunks((64, 64), (16, 16), layout, 32 * 32 * 4)
    assert chunks == (32, 32)
    lazy = merge_lazy((64, 64), grid.boxes, [f"p{i}.npy" for i in range(16)], np.load,
                      MergeOptions("hann"), layout, chunks)  # fmt: skip
    assert lazy.numblocks == (2, 2)
    tasks = dict(lazy.__dask_graph__())
    first = str(tasks[(lazy.name, 0, 0)])
    assert "p0.npy" in first and "p5.npy" in first and "p2.npy" not in first
