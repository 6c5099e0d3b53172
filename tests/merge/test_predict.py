"""predict_tiled: tiled inference with a Python function on numpy and dask images."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_patchwork.merge import MERGE_MODES, MergeError, MergeOptions, predict_tiled


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.integers(3, 40), st.integers(3, 40)),
    st.integers(2, 16),
    st.sampled_from([0.0, 0.25, 0.5, 3]),
    st.sampled_from(MERGE_MODES),
    st.sampled_from(["shift", "pad", "partial"]),
    st.sampled_from([None, 1, 3]),
    st.integers(0, 2**32 - 1),
)
def test_identity_returns_the_image_numpy_and_dask(shape, patch, overlap, mode, edge, batch, seed):
    if edge == "shift":
        patch = min(patch, *shape)
    if isinstance(overlap, int):
        overlap = min(overlap, patch - 1)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 200, shape + (2,)).astype(np.uint8)
    channel_axis = -1
    if mode == "vote":  # labels: one per pixel
        image, channel_axis = image[..., 0], None
    seen = []

    def identity(x):
        seen.append(x.shape)
        return x

    options = dict(
        overlap=overlap, merge=mode, batch_size=batch, channel_axis=channel_axis, edge=edge
    )
    merged = predict_tiled(image, identity, patch, **options)
    if mode in ("mean", "gaussian", "hann"):
        np.testing.assert_allclose(merged, image, rtol=1e-12, atol=1e-9)
    if mode not in ("mean", "gaussian", "hann"):
        np.testing.assert_array_equal(merged, image)
        assert merged.dtype == np.uint8
    if batch is not None:
        assert all(s[0] <= batch for s in seen)
    lazy = predict_tiled(da.from_array(image, chunks=7), identity, patch,
                         chunk_bytes=200, **options)  # fmt: skip
    assert lazy.shape == merged.shape and lazy.dtype == merged.dtype
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), merged)


def test_channels_appear_from_a_greyscale_image_and_argmax_reduces_them():
    image = np.linspace(0, 1, 50 * 60).reshape(50, 60)
    two_class = predict_tiled(image, lambda p: np.stack([1 - p, p]), 16, merge="hann")
    assert two_class.shape == (2, 50, 60) and two_class.dtype == np.float64
    np.testing.assert_allclose(two_class[1], image, atol=1e-12)
    labels = predict_tiled(image, lambda p: np.stack([1 - p, p], axis=-1), 16,
                           merge=MergeOptions("gaussian", argmax=True))  # fmt: skip
    assert labels.shape == (50, 60) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, (image > 0.5).astype(np.uint8))
    # default: gaussian for float outputs, center for labels
    ints = predict_tiled(image, lambda p: (p > 0.5).astype(np.int32), 16)
    assert ints.dtype == np.int32
    np.testing.assert_array_equal(ints, image > 0.5)


def test_each_patch_is_predicted_once_lazily():
    image = da.from_array(np.arange(64 * 64, dtype=np.float32).reshape(64, 64), chunks=(20, 20))
    calls = []

    def fn(batch):
        calls.append(len(batch))
        return batch * 2

    merged = predict_tiled(image, fn, 16, overlap=4, batch_size=5, merge="mean", chunk_bytes=1)
    assert calls == [1]  # the probe that learns the output layout
    out = merged.compute(scheduler="sync")
    np.testing.assert_allclose(out, image.compute() * 2)
    n_patches = 25  # (64 - 16) / 12 + 1 = 5 per axis
    assert sum(calls[1:]) == n_patches and max(calls) == 5


def test_bad_input_says_what_to_change():
    image = np.zeros((20, 20))
    with pytest.raises(MergeError, match="fraction in"):
        predict_tiled(image, lambda p: p, 8, overlap=1.5)
    with pytest.raises(MergeError, match="use 0 to 7"):
        predict_tiled(image, lambda p: p, 8, overlap=8)
    with pytest.raises(MergeError, match="edge='drop'"):
        predict_tiled(image, lambda p: p, 8, edge="drop")
    with pytest.raises(MergeError, match="edge='pad'"):
        predict_tiled(np.zeros((5, 20)), lambda p: p, 8)
    with pytest.raises(MergeError, match="one prediction per patch"):
        predict_tiled(image, lambda b: b[0], 8, batch_size=2)
    with pytest.raises(MergeError, match="does not fit the patch"):
        predict_tiled(image, lambda p: p[:4], 8)
    with pytest.raises(MergeError, match="positive integer"):
        predict_tiled(image, lambda p: p, 8, batch_size=0)


def test_distributed_equals_local():
    """On a LocalCluster (2 worker processes, loopback) the lazy result equals the numpy one;
    the patch batches and the merged blocks run on the workers."""
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(5)
    image = rng.random((300, 280, 3)).astype(np.float32)
    local = predict_tiled(image, np.negative, 64, merge="gaussian", channel_axis=-1, batch_size=4)
    chunked = da.from_array(image, chunks=(100, 100, 3))
    lazy = predict_tiled(chunked, np.negative, 64, merge="gaussian", channel_axis=-1,
                         batch_size=4, chunk_bytes=2**18)  # fmt: skip
    assert lazy.numblocks[0] > 1
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, worker_dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        with distributed.get_task_stream(client) as tasks:
            result = lazy.compute()
    np.testing.assert_array_equal(result, local)
    names = [str(t["key"]) for t in tasks.data]
    assert any("predict-" in k for k in names) and any("merge-" in k for k in names)
    assert len({t["worker"] for t in tasks.data}) == 2
