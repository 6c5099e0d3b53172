"""Large images stay lazy: nothing computes the whole array.

The image here is a dask array of a 40,000 x 40,000 x 3 slide (4.8 GB if computed)
whose blocks are made on demand; a block outside the allowed region raises, so
computing the whole array raises.
"""

import dask.array as da
import numpy as np
import pytest

from napari_patchwork.export import export_patches
from napari_patchwork.folder import read_patch_file, read_patch_folder
from napari_patchwork.grid import make_grid

SIZE, CHUNK = 40_000, 2_000


class BlockGuard:
    """Makes blocks from their position; raises for blocks outside ``allowed``."""

    def __init__(self):
        self.allowed: set[tuple[int, int]] | None = set()
        self.computed: list[tuple[int, int]] = []

    def __call__(self, block_info=None):
        info = block_info[None]
        key = tuple(info["chunk-location"][:2])
        if self.allowed is not None and key not in self.allowed:
            raise AssertionError(f"block {key} computed: the whole array is being read")
        self.computed.append(key)
        (y0, y1), (x0, x1) = info["array-location"][:2]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        value = ((yy // 97 + xx // 89) % 7 * 30).astype(np.uint8)
        return np.stack([value, 255 - value, value // 2], axis=-1)


@pytest.fixture
def huge():
    guard = BlockGuard()
    image = da.map_blocks(
        guard,
        chunks=((CHUNK,) * (SIZE // CHUNK),) * 2 + ((3,),),
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
    )
    return image, guard


def blocks_of(box):
    (y0, x0), (y1, x1) = box
    return {
        (by, bx)
        for by in range(y0 // CHUNK, (y1 - 1) // CHUNK + 1)
        for bx in range(x0 // CHUNK, (x1 - 1) // CHUNK + 1)
    }


def test_full_compute_raises(huge):
    image, _ = huge
    with pytest.raises(AssertionError, match="whole array"):
        image.sum().compute()


def test_grid_needs_only_the_shape(huge):
    image, guard = huge
    grid = make_grid(image.shape, 512, edge="pad", channel_axis=-1)
    assert grid.n_patches == 79 * 79 and guard.computed == []


def test_export_reads_only_the_chosen_patches(huge, tmp_path):
    image, guard = huge
    grid = make_grid(image.shape, 512, channel_axis=-1)
    chosen = [0, 1234, grid.n_patches - 1]
    guard.allowed = set().union(*(blocks_of(grid.boxes[i]) for i in chosen))
    result = export_patches(
        tmp_path / "out", image, patch_size=512, channel_axis=-1, indices=chosen
    )
    assert result.n_patches == 3
    assert set(guard.computed) <= guard.allowed
    folder = read_patch_folder(tmp_path / "out")  # (not stitched: that would be 4.8 GB)
    assert folder.indices.tolist() == chosen
    for i, row in zip(chosen, folder.rows):
        patch = read_patch_file(tmp_path / "out" / row["image"])
        assert np.array_equal(patch, image[grid.slices(i)].compute())


def test_cluster_prediction_stays_lazy_and_computes_only_what_is_asked(huge):
    from napari_patchwork.cluster import cluster_pixels

    image, guard = huge
    guard.allowed = {(0, 0), (0, 1), (1, 0), (1, 1), (5, 7)}
    small = image[:4000, :4000].compute()  # fit on blocks (0..1, 0..1) only
    model = cluster_pixels(small, 4, channel_axis=-1).model
    guard.computed.clear()
    labels = model.predict(image)
    assert isinstance(labels, da.Array) and labels.shape == (SIZE, SIZE)
    assert guard.computed == []  # building the prediction computes nothing
    corner = labels[10_000:12_000, 14_000:16_000].compute()
    assert set(guard.computed) == {(5, 7)}
    assert np.array_equal(corner, model.predict(image[10_000:12_000, 14_000:16_000].compute()))
