"""The zarr container's shard files: the same bytes zarr writes and reads, checked on reading."""

import json
import os
import pickle

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from patch_folders import random_array

from napari_patchwork.folder import PatchFolderError
from napari_patchwork.folder.zarr_arrays import (
    PatchArray,
    ShardReader,
    remove_arrays,
    shard_files_on_disk,
    shard_patches,
)

DTYPES = ["|u1", "<u2", ">u2", "<i4", ">f4", "<f8", "|b1", "<i8", "<f2"]


def write_all(folder, array, data):
    array.write_metadata(folder)
    size = array.shard_patches
    for shard in range(array.n_shards):
        array.write_shard(folder, shard, list(data[shard * size : (shard + 1) * size]))


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    n=st.integers(1, 9),
    shard=st.integers(1, 5),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    compression=st.sampled_from([None, "zstd"]),
    seed=st.integers(0, 2**16),
)
def test_ours_and_zarrs_shards_read_back_the_same_both_ways(
    tmp_path_factory, dtype, n, shard, shape, compression, seed
):
    folder = tmp_path_factory.mktemp("z")
    native = np.dtype(dtype).newbyteorder("=")
    data = random_array(np.random.default_rng(seed), (n, *shape), native).astype(dtype)
    array = PatchArray("images.zarr", n, shape, np.dtype(dtype), shard, compression)
    write_all(folder, array, data)
    opened = zarr.open_array(folder / "images.zarr", mode="r")
    np.testing.assert_array_equal(opened[:], data)  # zarr reads our shards
    reader = ShardReader(folder, array)
    for i in np.random.default_rng(seed).permutation(n):  # any order
        patch = reader.read(int(i))
        assert patch.dtype == data.dtype and np.array_equal(patch, data[i])
    reader.close()

    other = tmp_path_factory.mktemp("zarr-written")
    written = zarr.create_array(
        other / "images.zarr",
        shape=(n, *shape),
        chunks=(1, *shape),
        shards=(shard, *shape),
        dtype=np.dtype(dtype).newbyteorder("="),
        compressors=None if compression is None else zarr.codecs.ZstdCodec(level=1),
        fill_value=0,
        config={"write_empty_chunks": True},  # ours never leave a patch out
    )
    written[:] = data
    array.check(other)  # zarr's metadata is what we write
    assert all(np.array_equal(array.read(other, i), data[i]) for i in range(n))


def test_a_partial_last_shard_and_the_arrays_length(tmp_path):
    data = np.arange(7 * 2 * 3, dtype=np.uint16).reshape(7, 2, 3)
    array = PatchArray("masks.zarr", 7, (2, 3), np.dtype(np.uint16), 3)
    write_all(tmp_path, array, data)
    assert shard_files_on_disk(tmp_path, "masks.zarr") == {
        "masks.zarr/c/0/0/0",
        "masks.zarr/c/1/0/0",
        "masks.zarr/c/2/0/0",
    }
    assert zarr.open_array(tmp_path / "masks.zarr").shape == (7, 2, 3)
    with pytest.raises(PatchFolderError, match="no patch 7"):
        array.read(tmp_path, 7)


def test_shard_size_follows_the_patch_bytes():
    assert shard_patches(256 * 256 * 3 + 256 * 256 * 2, 10_000) == 204  # 64 MiB of pairs
    assert shard_patches(10, 10_000_000) == 16_384
    assert shard_patches(2**30, 5) == 1
    assert shard_patches(100, 3) == 3


@pytest.fixture
def written(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (5, 4, 4, 3), dtype=np.uint8)
    array = PatchArray("images.zarr", 5, (4, 4, 3), np.dtype(np.uint8), 2)
    write_all(tmp_path, array, data)
    return tmp_path, array, data


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(shape=[6, 4, 4, 3]), "shape is"),
        (lambda m: m.update(data_type="uint16"), "data_type is"),
        (lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[4, 4, 4, 3]), "chunk_grid"),
        (lambda m: m["codecs"][0]["configuration"].update(chunk_shape=[2, 4, 4, 3]), "codecs is"),
        (lambda m: m.update(fill_value=3), "fill_value"),
        (lambda m: m.update(extra=1), "extra is"),
    ],
)
def test_edited_metadata_is_refused_naming_the_key(written, change, message):
    folder, array, _ = written
    path = folder / "images.zarr" / "zarr.json"
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))
    with pytest.raises(PatchFolderError, match=message):
        array.check(folder)


def test_missing_or_unreadable_metadata_is_refused(written):
    folder, array, _ = written
    (folder / "images.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(PatchFolderError, match="cannot be read"):
        array.check(folder)
    (folder / "images.zarr" / "zarr.json").unlink()
    with pytest.raises(PatchFolderError, match="missing"):
        array.check(folder)


def test_damaged_shards_are_refused(written):
    folder, array, data = written
    shard = folder / "images.zarr" / "c" / "0" / "0" / "0" / "0"
    content = bytearray(shard.read_bytes())
    content[-10] ^= 0xFF  # inside the index
    shard.write_bytes(bytes(content))
    with pytest.raises(PatchFolderError, match="checksum"):
        array.read(folder, 0)
    shard.write_bytes(bytes(content[:20]))
    with pytest.raises(PatchFolderError, match="cut short"):
        array.read(folder, 1)
    shard.unlink()
    with pytest.raises(PatchFolderError, match="missing"):
        array.read(folder, 0)
    assert np.array_equal(array.read(folder, 2), data[2])  # the other shard is fine


def test_an_index_pointing_past_the_data_is_refused(written):
    folder, array, _ = written
    import google_crc32c

    shard = folder / "images.zarr" / "c" / "1" / "0" / "0" / "0"
    content = shard.read_bytes()
    table = np.frombuffer(content[-36:-4], dtype="<u8").copy().reshape(2, 2)
    table[0, 0] = 10**9
    index = table.tobytes()
    crc = int(google_crc32c.value(index)).to_bytes(4, "little")
    shard.write_bytes(content[:-36] + index + crc)
    with pytest.raises(PatchFolderError, match="index is damaged"):
        array.read(folder, 2)


def test_a_link_out_of_the_folder_is_refused(written, tmp_path_factory):
    folder, array, data = written
    outside = tmp_path_factory.mktemp("elsewhere")
    write_all(outside, array, data)
    shard = folder / "images.zarr" / "c" / "0" / "0" / "0" / "0"
    shard.unlink()
    os.symlink(outside / "images.zarr" / "c" / "0" / "0" / "0" / "0", shard)
    with pytest.raises(PatchFolderError, match="inside the folder|outside"):
        array.read(folder, 0)
    # a linked folder on the way out
    os.rename(folder / "images.zarr" / "c", folder / "c-moved")
    os.symlink(outside / "images.zarr" / "c", folder / "images.zarr" / "c")
    with pytest.raises(PatchFolderError, match="outside"):
        array.read(folder, 2)


def test_a_reader_pickles_and_reopens(written):
    folder, array, data = written
    reader = ShardReader(folder, array)
    reader.read(0)
    copy = pickle.loads(pickle.dumps(reader))
    assert np.array_equal(copy.read(4), data[4])
    reader.close(), copy.close()


def test_remove_arrays_removes_only_ours(written):
    folder, array, _ = written
    (folder / "images.zarr" / "notes.txt").write_text("mine")
    (folder / "images.zarr" / "c" / "keep.txt").write_text("mine too")
    remove_arrays(folder, ["images.zarr", "masks.zarr"])
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "images.zarr/c/keep.txt",
        "images.zarr/notes.txt",
    ]
    os.remove(folder / "images.zarr" / "notes.txt")
    os.remove(folder / "images.zarr" / "c" / "keep.txt")
    remove_arrays(folder, ["images.zarr"])
    assert not (folder / "images.zarr").exists()
