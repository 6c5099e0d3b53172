"""PatchReader: a folder's patches indexed like numpy, the same for zarr arrays and files."""

import pickle

import numpy as np
import pytest
from patch_folders import sample_pair

from napari_patchwork.export import export_patches
from napari_patchwork.folder import PatchFolderError, read_patch_folder


@pytest.fixture(params=["zarr", "tiff", "npy"])
def folder(request, tmp_path):
    image, mask = sample_pair()
    export_patches(tmp_path, image, mask, patch_size=16, edge="pad", channel_axis=-1,
                   fmt=request.param)  # fmt: skip
    return read_patch_folder(tmp_path), image, mask


def test_numpy_indexing_of_the_first_axis(folder):
    patches, image, mask = folder
    images, masks = patches.patches("images"), patches.patches("masks")
    assert len(images) == 20 and images.shape == (20, 16, 16, 3) and images.dtype == np.uint8
    assert masks.shape == (20, 16, 16) and masks.dtype == np.int32
    assert np.array_equal(images[0], image[:16, :16])
    assert np.array_equal(masks[-1][:12], mask[48:60, 64:80])  # padded below
    batch = images[[5, 0, 5]]
    assert batch.shape == (3, 16, 16, 3)
    assert np.array_equal(batch[1], images[0]) and np.array_equal(batch[0], batch[2])
    assert np.array_equal(images[2:4], np.stack([images[2], images[3]]))
    assert np.array_equal(images[np.array([1, 2])], images[1:3])
    assert images[5:5].shape == (0, 16, 16, 3)
    with pytest.raises(IndexError, match="20 patches"):
        images[20]
    with pytest.raises(IndexError, match="1-D list"):
        images[[[1]]]


def test_a_reader_pickles_for_loader_workers(folder):
    patches, _, _ = folder
    with patches.patches("images") as images:
        first = images[3]
        copy = pickle.loads(pickle.dumps(images))
    assert np.array_equal(copy[3], first)
    copy.close()


def test_no_mask_no_masks(tmp_path):
    image, _ = sample_pair()
    export_patches(tmp_path, image, patch_size=16, channel_axis=-1, fmt="zarr")
    patches = read_patch_folder(tmp_path)
    with pytest.raises(PatchFolderError, match="no mask"):
        patches.patches("masks")
    with pytest.raises(PatchFolderError, match="'images' or 'masks'"):
        patches.patches("labels")
