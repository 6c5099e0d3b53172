"""The zarr container export: exact round trips, whole shards, resume, overwrite, dask tasks."""

import json
import os

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from patch_folders import read_manifest, sample_pair

from napari_patchwork.export import ExportError, export_patches, iter_export
from napari_patchwork.folder import JOURNAL_FILE, read_patch_folder, verify_patch_folder
from napari_patchwork.folder import zarr_arrays as zarr_module
from napari_patchwork.folder.zarr_arrays import ShardWriter


def crop(array, row, names, channel_axis=None):
    """The patch of ``row`` cut from ``array`` (padding with 0 past the edge)."""
    box = [slice(int(row[f"{n}0"]), int(row[f"{n}1"])) for n in names]
    shape = [b.stop - b.start for b in box]
    if channel_axis is not None:
        axis = channel_axis % array.ndim
        box.insert(axis, slice(None))
        shape.insert(axis, array.shape[axis])
    out = np.zeros(shape, dtype=array.dtype)
    valid = array[tuple(box)]
    out[tuple(slice(0, s) for s in valid.shape)] = valid
    return out


def check_arrays(out, image, mask, channel_axis):
    """The arrays hold, row by row, the patches the manifest names; zarr reads the same."""
    patches = read_patch_folder(out)
    rows = read_manifest(out)
    names = patches.info.spatial_axes
    assert [r["array_index"] for r in rows] == [str(i) for i in range(len(rows))]
    images = zarr.open_array(out / "images.zarr", mode="r")
    assert images.shape == (len(rows), *patches.patch_shape(0, True)) if rows else True
    reader = patches.patches("images")
    for i, row in enumerate(rows):
        wanted = crop(image, row, names, channel_axis)
        assert reader[i].dtype == image.dtype and np.array_equal(reader[i], wanted)
        assert np.array_equal(images[i], wanted)
    if mask is not None:
        masks = patches.patches("masks")
        for i, row in enumerate(rows):
            assert masks[i].dtype == mask.dtype
            assert np.array_equal(masks[i], crop(mask, row, names))
    assert verify_patch_folder(out) == []
    return rows


def test_rgb_image_and_wide_labels_round_trip_exactly(tmp_path):
    image, mask = sample_pair()
    result = export_patches(
        tmp_path, image, mask, patch_size=16, edge="pad", channel_axis=-1, fmt="zarr"
    )
    rows = check_arrays(tmp_path, image, mask, -1)
    assert len(rows) == result.n_patches == 20
    assert sorted(os.listdir(tmp_path)) == [
        ".patchwork-journal.jsonl",
        "dataset.json",
        "images.zarr",
        "manifest.csv",
        "masks.zarr",
    ]
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["file_format"] == "zarr" and info["format_version"] == 3
    assert info["arrays"] == {"image": "images.zarr", "mask": "masks.zarr", "shard_patches": 20}
    patches = read_patch_folder(tmp_path)
    assert np.array_equal(patches.image(), image) and np.array_equal(patches.mask(), mask)
    assert patches.mask().dtype == np.int32  # 70000 kept


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_3d_channels_first_big_endian_float_and_bool_mask(tmp_path, compression):
    rng = np.random.default_rng(3)
    image = rng.standard_normal((2, 9, 12, 10)).astype(">f4")
    mask = rng.random((9, 12, 10)) > 0.5
    export_patches(
        tmp_path,
        image,
        mask,
        patch_size=(4, 5, 5),
        edge="shift",
        channel_axis=0,
        fmt="zarr",
        compression=compression,
    )
    check_arrays(tmp_path, image, mask, 0)
    patches = read_patch_folder(tmp_path)
    assert patches.image().dtype == np.dtype(">f4")
    assert np.array_equal(patches.image(), image) and np.array_equal(patches.mask(), mask)


def test_filters_keep_rows_and_arrays_in_step(tmp_path, monkeypatch):
    monkeypatch.setattr(zarr_module, "SHARD_BYTES", 3 * (10 * 10 * 3 + 10 * 10 * 4))
    image, mask = sample_pair()
    image[:10] = 7  # blank patches in the first row
    result = export_patches(
        tmp_path,
        image,
        mask,
        patch_size=10,
        channel_axis=-1,
        fmt="zarr",
        min_foreground=0.05,
        min_std=1.0,
        split={"train": 0.5, "val": 0.5},
    )
    assert 0 < result.n_patches < result.n_candidates
    rows = check_arrays(tmp_path, image, mask, -1)
    assert {r["split"] for r in rows} == {"train", "val"}
    assert zarr.open_array(tmp_path / "masks.zarr").shape == (result.n_patches, 10, 10)
    shards = zarr_module.shard_files_on_disk(tmp_path, "images.zarr")
    assert len(shards) == -(-result.n_patches // 3)  # no shard past the kept patches


def test_bad_zarr_options_say_what_to_use(tmp_path):
    image, mask = sample_pair()
    with pytest.raises(ExportError, match="edge='pad', 'shift' or 'drop'"):
        export_patches(tmp_path, image, patch_size=16, channel_axis=-1, fmt="zarr", edge="partial")
    with pytest.raises(ExportError, match="zstd"):
        export_patches(
            tmp_path, image, patch_size=16, channel_axis=-1, fmt="zarr", compression="zlib"
        )
    with pytest.raises(ExportError, match="fmt='zarr'"):
        export_patches(tmp_path, image, patch_size=16, channel_axis=-1, compression="zstd")
    assert os.listdir(tmp_path) == []


class Crash(Exception):
    pass


def crash_on(monkeypatch, method, n):
    """ShardWriter.<method> fails on its ``n``-th call (the 1st is call 1; 0: never);
    returns the shards (array name, shard file) each call was for."""
    real = getattr(ShardWriter, method)
    calls = []

    def wrapper(self, *args, **kwargs):
        calls.append(self.file.path)
        if len(calls) == n:
            raise Crash
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ShardWriter, method, wrapper)
    return calls


SHARD_OF_4 = 4 * (8 * 8 * 3 + 8 * 8 * 4)


def test_resume_after_a_crash_mid_shard_rewrites_that_shard(tmp_path, monkeypatch):
    monkeypatch.setattr(zarr_module, "SHARD_BYTES", SHARD_OF_4)
    image, mask = sample_pair()
    # shard 0: image and mask written and closed; shard 1: the image's patches written,
    # then writing the mask's fails
    crash_on(monkeypatch, "add", 4)
    with pytest.raises(Crash):
        export_patches(tmp_path, image, mask, patch_size=8, channel_axis=-1, fmt="zarr",
                       write_threads=1)  # fmt: skip
    journal = [json.loads(line) for line in (tmp_path / JOURNAL_FILE).read_text().splitlines()]
    assert [j["array_index"] for j in journal] == [0, 1, 2, 3]  # shard 0 only
    assert journal[0]["files"] == ["images.zarr/c/0/0/0/0", "masks.zarr/c/0/0/0"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]  # removed
    assert zarr_module.shard_files_on_disk(tmp_path, "images.zarr") == {"images.zarr/c/0/0/0/0"}
    monkeypatch.undo()
    monkeypatch.setattr(zarr_module, "SHARD_BYTES", SHARD_OF_4)
    closed = crash_on(monkeypatch, "close", 0)
    result = export_patches(tmp_path, image, mask, patch_size=8, channel_axis=-1, fmt="zarr")
    assert result.n_resumed == 4 and result.n_written == result.n_patches - 4
    assert len(closed) == 2 * (-(-result.n_patches // 4) - 1)  # shard 0 was not written again
    assert not any("/c/0/" in path for path in closed)
    check_arrays(tmp_path, image, mask, -1)


def test_a_journal_cut_inside_a_shard_resumes_from_that_shard(tmp_path, monkeypatch):
    monkeypatch.setattr(zarr_module, "SHARD_BYTES", SHARD_OF_4)
    image, mask = sample_pair()
    steps = iter_export(tmp_path, image, mask, patch_size=8, channel_axis=-1, fmt="zarr")
    for progress in steps:
        if progress.done >= 8:
            break
    steps.close()
    assert not list(tmp_path.rglob("*.part"))  # the shard being written was removed
    lines = (tmp_path / JOURNAL_FILE).read_text().splitlines(keepends=True)
    assert len(lines) == 8
    (tmp_path / JOURNAL_FILE).write_text("".join(lines[:6]) + lines[6][:10])  # killed mid-write
    closed = crash_on(monkeypatch, "close", 0)
    result = export_patches(tmp_path, image, mask, patch_size=8, channel_axis=-1, fmt="zarr")
    assert result.n_resumed == 4  # shard 1 (patches 4..7) is written again whole
    assert len(closed) == 2 * (-(-result.n_patches // 4) - 1)
    assert sum("/c/1/" in path for path in closed) == 2
    check_arrays(tmp_path, image, mask, -1)


def test_leftover_temporary_shards_are_removed_on_resume(tmp_path):
    image, mask = sample_pair()
    steps = iter_export(tmp_path, image, mask, patch_size=16, channel_axis=-1, fmt="zarr")
    next(steps)
    steps.close()
    leftover = tmp_path / "images.zarr" / "c" / "0" / "0" / "0" / ".0.123-456.part"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a shard")
    export_patches(tmp_path, image, mask, patch_size=16, channel_axis=-1, fmt="zarr")
    assert not leftover.exists()
    check_arrays(tmp_path, image, mask, -1)


def test_foreign_arrays_are_refused_and_overwrite_removes_only_ours(tmp_path):
    image, mask = sample_pair()
    zarr.create_array(tmp_path / "images.zarr", shape=(3,), dtype="u1")
    with pytest.raises(ExportError, match="not empty"):
        export_patches(tmp_path, image, mask, patch_size=16, channel_axis=-1, fmt="zarr")
    export_patches(tmp_path, image, mask, patch_size=16, channel_axis=-1, fmt="zarr",
                   overwrite=True)  # fmt: skip
    check_arrays(tmp_path, image, mask, -1)
    (tmp_path / "images.zarr" / "notes.txt").write_text("mine")
    (tmp_path / "thesis.txt").write_text("mine too")
    with pytest.raises(ExportError, match="other settings"):
        export_patches(tmp_path, image, mask, patch_size=20, channel_axis=-1, fmt="tiff")
    export_patches(tmp_path, image, mask, patch_size=20, channel_axis=-1, fmt="tiff",
                   overwrite=True)  # fmt: skip
    assert not (tmp_path / "masks.zarr").exists()
    assert sorted(os.listdir(tmp_path / "images.zarr")) == ["notes.txt"]  # only ours went
    assert (tmp_path / "thesis.txt").read_text() == "mine too"
    assert verify_patch_folder(tmp_path) == []


def test_rerunning_a_finished_export_changes_only_the_manifest(tmp_path):
    image, mask = sample_pair()
    export_patches(tmp_path, image, mask, patch_size=16, channel_axis=-1, fmt="zarr")
    shard = tmp_path / "images.zarr" / "c" / "0" / "0" / "0" / "0"
    before = shard.stat().st_mtime_ns
    result = export_patches(
        tmp_path, image, mask, patch_size=16, channel_axis=-1, fmt="zarr", split=(0.5, 0.5)
    )
    assert result.n_written == 0 and shard.stat().st_mtime_ns == before
    check_arrays(tmp_path, image, mask, -1)


@pytest.mark.parametrize("filters", [{}, {"min_foreground": 0.05, "min_std": 1.0}])
def test_dask_tasks_write_the_same_arrays(tmp_path, monkeypatch, filters):
    import dask.array as da

    monkeypatch.setattr(zarr_module, "SHARD_BYTES", 3 * (10 * 10 * 3 + 10 * 10 * 4))
    image, mask = sample_pair()
    image[:10] = 7
    here = export_patches(tmp_path / "here", image, mask, patch_size=10, channel_axis=-1,
                          fmt="zarr", **filters)  # fmt: skip
    tasks = export_patches(
        tmp_path / "tasks",
        da.from_array(image, chunks=(25, 25, 3)),
        da.from_array(mask, chunks=25),
        patch_size=10,
        channel_axis=-1,
        fmt="zarr",
        as_dask_tasks=True,
        **filters,
    )
    assert tasks.rows == here.rows
    check_arrays(tmp_path / "tasks", image, mask, -1)
    for name in ("images.zarr", "masks.zarr"):
        a = zarr.open_array(tmp_path / "here" / name)[:]
        assert np.array_equal(a, zarr.open_array(tmp_path / "tasks" / name)[:])


@settings(max_examples=25, deadline=None)
@given(
    shard=st.integers(1, 7),
    patch=st.integers(3, 12),
    threshold=st.sampled_from([0.0, 0.2, 0.6]),
    threads=st.sampled_from([1, 2]),
    seed=st.integers(0, 1000),
)
def test_any_shard_size_and_filter_reads_back_the_source(
    tmp_path_factory, shard, patch, threshold, threads, seed
):
    """Whatever patches the filter keeps and however they fall into shards, row i of the
    manifest is patch i of the arrays and holds exactly its region of the source."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 2**16, (23, 19), dtype=np.uint16)
    mask = (rng.random((23, 19)) < rng.random()).astype(np.uint8)
    out = tmp_path_factory.mktemp("prop")
    old = zarr_module.SHARD_BYTES
    zarr_module.SHARD_BYTES = shard * patch * patch * 3
    try:
        export_patches(out, image, mask, patch_size=patch, edge="pad", fmt="zarr",
                       min_foreground=threshold, write_threads=threads)  # fmt: skip
    finally:
        zarr_module.SHARD_BYTES = old
    rows = check_arrays(out, image, mask, None)
    fractions = [float(r["foreground_fraction"]) for r in rows]
    assert all(f >= threshold for f in fractions)
