"""Running an export: the round trip, names, filters, threads, dask input (no napari, no Qt)."""

import json
import re
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patch_folders import (
    DTYPES,
    MASK_DTYPES,
    check_consistent,
    random_array,
    read_manifest,
    sample_pair,
)

from napari_patchwork.export import (
    ExportError,
    export_patches,
    iter_export,
)
from napari_patchwork.export import patch as patch_module
from napari_patchwork.export import run as run_module
from napari_patchwork.folder import (
    JOURNAL_FILE,
    read_patch_file,
    read_patch_folder,
    read_patches,
)
from napari_patchwork.grid import EDGE_MODES, make_grid
from napari_patchwork.stitch import stitch


@st.composite
def export_cases(draw):
    n_spatial = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 14 if n_spatial < 3 else 7)) for _ in range(n_spatial)]
    edge = draw(st.sampled_from(EDGE_MODES))
    patch, stride = [], []
    for size in shape:
        low = max(1, size // 3)
        high = size if edge in ("drop", "shift") else size + 3
        p = draw(st.integers(low, max(low, high)))
        if edge in ("drop", "shift"):
            p = min(p, size)
        patch.append(p)
        stride.append(draw(st.integers(max(1, p // 2), p + 2)))
    channel = draw(st.sampled_from([None, "last", "first"]))
    n_channels = draw(st.integers(1, 4))
    full_shape = list(shape)
    channel_axis = None
    if channel == "last":
        full_shape.append(n_channels)
        channel_axis = -1
    elif channel == "first":
        full_shape.insert(0, n_channels)
        channel_axis = 0
    return {
        "shape": tuple(full_shape),
        "spatial": tuple(shape),
        "channel_axis": channel_axis,
        "patch_size": patch,
        "stride": draw(st.sampled_from([None, stride])),
        "edge": edge,
        "dtype": draw(st.sampled_from(DTYPES)),
        "mask_dtype": draw(st.sampled_from([None, *MASK_DTYPES])),
        "fmt": draw(st.sampled_from(["tiff", "npy"])),
        "compression": draw(st.sampled_from([None, "zlib"])),
        "pad_mode": draw(st.sampled_from(["constant", "reflect", "edge"])),
        "subset": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=export_cases())
def test_export_then_stitch_is_exact(case):
    """Random shapes, dtypes, patch sizes, strides, edge modes: stitched == source, dtype too."""
    rng = np.random.default_rng(case["seed"])
    image = random_array(rng, case["shape"], case["dtype"])
    mask = (
        None
        if case["mask_dtype"] is None
        else random_array(rng, case["spatial"], case["mask_dtype"])
    )
    grid = make_grid(
        case["shape"],
        case["patch_size"],
        case["stride"],
        case["edge"],
        channel_axis=case["channel_axis"],
    )
    indices = None
    if case["subset"] and grid.n_patches > 1:
        indices = rng.choice(grid.n_patches, size=grid.n_patches // 2, replace=False)
    compression = case["compression"] if case["fmt"] == "tiff" else None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "patches"
        result = export_patches(
            out,
            image,
            mask,
            patch_size=case["patch_size"],
            stride=case["stride"],
            edge=case["edge"],
            channel_axis=case["channel_axis"],
            fmt=case["fmt"],
            compression=compression,
            pad_mode=case["pad_mode"],
            pad_value=1,
            indices=indices,
        )
        rows = check_consistent(out)
        expected_indices = np.arange(grid.n_patches) if indices is None else np.sort(indices)
        assert (
            [int(r["index"]) for r in rows]
            == expected_indices.tolist()
            == [r["index"] for r in result.rows]
        )
        stitched_image, stitched_mask = read_patches(out)
        covered = read_patch_folder(out).coverage()
        image_covered = (
            covered
            if case["channel_axis"] is None
            else np.expand_dims(covered, case["channel_axis"])
        )
        assert stitched_image.dtype == image.dtype and stitched_image.shape == image.shape
        np.testing.assert_array_equal(
            stitched_image, np.where(image_covered, image, np.zeros_like(image))
        )
        if mask is not None:
            assert stitched_mask.dtype == mask.dtype
            np.testing.assert_array_equal(
                stitched_mask, np.where(covered, mask, np.zeros_like(mask))
            )
        else:
            assert stitched_mask is None
        # lazily, in blocks of one stride: patches that overlap blocks are cut correctly
        for source, eager in (("images", stitched_image), ("masks", stitched_mask)):
            if eager is not None:
                lazy = stitch(out, source, merge="center", chunk_bytes=1, lazy=True)
                assert lazy.dtype == eager.dtype and lazy.shape == eager.shape
                np.testing.assert_array_equal(lazy.compute(), eager)
        no_gaps = case["stride"] is None or all(
            s <= p for s, p in zip(case["stride"], case["patch_size"])
        )
        if indices is None and case["edge"] != "drop" and no_gaps:
            assert covered.all()
        # every patch file has the full patch shape (padding included) and the source dtype
        first = rows[0]
        patch = read_patch_file(out / first["image"])
        assert patch.dtype == image.dtype
        names = json.loads((out / "dataset.json").read_text())["spatial_axes"]
        box = [int(first[f"{n}1"]) - int(first[f"{n}0"]) for n in names]
        channel = None if case["channel_axis"] is None else case["channel_axis"] % image.ndim
        if case["fmt"] == "tiff" and image.ndim == 1:
            box = [1, *box]  # TIFF stores a 1D patch as one row
        assert [s for axis, s in enumerate(patch.shape) if axis != channel] == box


def test_every_export_option_is_a_field_of_export_options(tmp_path):
    """One options object: export_patches documents each field, and refuses unknown names."""
    import dataclasses

    from napari_patchwork.export import ExportOptions

    names = {f.name for f in dataclasses.fields(ExportOptions)}
    documented = set(re.findall(r"^    (\w+)", export_patches.__doc__, re.MULTILINE))
    documented |= {
        n
        for line in re.findall(r"^    ([\w, ]+) :", export_patches.__doc__, re.M)
        for n in line.replace(" ", "").split(",")
    }
    assert names - documented == set()
    image = np.zeros((8, 8), np.uint8)
    with pytest.raises(ExportError, match=r"unknown export options \['patchsize'\]"):
        export_patches(tmp_path / "out", image, patch_size=4, patchsize=4)
    options = ExportOptions(patch_size=4, fmt="tif")
    assert options.fmt == "tiff" and options.replace(stride=2).stride == 2
    assert export_patches(tmp_path / "out", image, options=options, stride=2).n_patches == 9


def test_file_names_manifest_and_dataset(tmp_path):
    image, mask = sample_pair()
    result = export_patches(
        tmp_path / "out",
        image,
        mask,
        patch_size=20,
        edge="drop",
        channel_axis=-1,
        image_name="he",
        mask_name="nuclei",
        scale=(0.5, 0.5),
        translate=(10, 20),
    )
    out = tmp_path / "out"
    rows = check_consistent(out)
    assert result.n_patches == len(rows) == 12
    assert (
        rows[0]["image"] == "images/patch_00_y0_x0.tif"
        and rows[0]["mask"] == "masks/patch_00_y0_x0.tif"
    )
    assert rows[5]["image"] == "images/patch_05_y20_x20.tif"
    assert (rows[5]["y0"], rows[5]["y1"], rows[5]["x0"], rows[5]["x1"]) == ("20", "40", "20", "40")
    assert float(rows[0]["foreground_fraction"]) == pytest.approx(
        np.count_nonzero(mask[:20, :20]) / 400
    )
    info = json.loads((out / "dataset.json").read_text())
    assert info["image"] == {"shape": [60, 80, 3], "dtype": "|u1", "name": "he"}
    assert info["mask"]["dtype"] == np.dtype(np.int32).str and info["mask"]["name"] == "nuclei"
    assert info["axes"] == "yxc" and info["patch_size"] == [20, 20] and info["stride"] == [20, 20]
    assert info["edge"] == "drop" and info["scale"] == [0.5, 0.5] and info["translate"] == [10, 20]
    assert info["plugin_version"] and info["rgb"] is True
    assert "12 patches in" in result.message


def test_3d_names_include_z(tmp_path):
    volume = np.arange(6 * 8 * 8, dtype=np.uint16).reshape(6, 8, 8)
    export_patches(tmp_path / "v", volume, patch_size=(3, 4, 4), fmt="npy")
    rows = read_manifest(tmp_path / "v")
    assert rows[-1]["image"] == "images/patch_7_z3_y4_x4.npy"
    assert {"z0", "z1", "valid_z1"} <= set(rows[0])
    np.testing.assert_array_equal(read_patches(tmp_path / "v")[0], volume)


def test_filters_foreground_blank_and_indices(tmp_path):
    image, mask = sample_pair()
    image[40:60, 0:20] = (200, 120, 90)  # a uniformly coloured, blank patch (index 8)
    result = export_patches(
        tmp_path / "fg", image, mask, patch_size=20, channel_axis=-1, min_foreground=0.1
    )
    fractions = [
        np.count_nonzero(mask[y : y + 20, x : x + 20]) / 400
        for y in (0, 20, 40)
        for x in (0, 20, 40, 60)
    ]
    expected = [i for i, f in enumerate(fractions) if f >= 0.1]
    assert [r["index"] for r in result.rows] == expected
    assert result.n_rejected_foreground == 12 - len(expected)
    check_consistent(tmp_path / "fg")

    result = export_patches(tmp_path / "blank", image, patch_size=20, channel_axis=-1, min_std=1.0)
    assert [r["index"] for r in result.rows] == [i for i in range(12) if i != 8]
    assert result.n_rejected_blank == 1 and float(result.rows[0]["image_std"]) > 1.0

    result = export_patches(
        tmp_path / "some", image, mask, patch_size=20, channel_axis=-1, indices=[7, 3, 3]
    )
    assert [r["index"] for r in result.rows] == [3, 7]
    assert json.loads((tmp_path / "some" / "dataset.json").read_text())["indices"] == [3, 7]


class ShapeDtypeOnly:
    """The least array-like the export accepts: ``shape``, ``dtype`` and indexing (no ``ndim``)."""

    def __init__(self, data):
        self._data, self.shape, self.dtype = data, data.shape, data.dtype

    def __getitem__(self, key):
        return self._data[key]


@pytest.mark.parametrize("as_dask_tasks", [False, True])
def test_array_likes_without_ndim_are_exported(tmp_path, as_dask_tasks):
    if as_dask_tasks:
        pytest.importorskip("dask.array")
    image, mask = sample_pair((40, 40))
    export_patches(
        tmp_path / "out",
        ShapeDtypeOnly(image),
        ShapeDtypeOnly(mask),
        patch_size=16,
        edge="pad",
        channel_axis=-1,
        as_dask_tasks=as_dask_tasks,
    )
    stitched_image, stitched_mask = read_patches(tmp_path / "out")
    np.testing.assert_array_equal(stitched_image, image)
    np.testing.assert_array_equal(stitched_mask, mask)


@pytest.mark.parametrize(
    "options",
    [
        dict(fmt="tiff", min_foreground=0.05, split=(0.6, 0.4)),
        dict(fmt="npy", edge="pad", pad_mode="reflect", relabel=True, min_std=20.0),
        dict(fmt="png", stride=15, edge="shift"),
        dict(fmt="tiff", compression="zlib", edge="partial"),
    ],
)
def test_writer_threads_write_the_same_folder(tmp_path, monkeypatch, options):
    image, mask = sample_pair()
    mask = (mask > 0).astype(np.uint16) * 3  # PNG masks hold 16 bits
    image[:20, :20] = 9  # a blank patch for min_std
    writers = set()
    real_write = patch_module.write_patch

    def recording_write(*args, **kwargs):
        writers.add(threading.current_thread().name)
        real_write(*args, **kwargs)

    monkeypatch.setattr(patch_module, "write_patch", recording_write)
    folders = {}
    for threads in (1, 3):
        writers.clear()
        folders[threads] = tmp_path / f"threads_{threads}"
        export_patches(
            folders[threads],
            image,
            mask,
            patch_size=20,
            channel_axis=-1,
            write_threads=threads,
            **options,
        )
        assert (threading.main_thread().name in writers) == (threads == 1)
    files = {
        threads: {
            f.relative_to(folder): f.read_bytes()
            for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != "dataset.json"  # which holds the time of the export
        }
        for threads, folder in folders.items()
    }
    assert len(files[1]) > 3 and files[1] == files[3]


@pytest.mark.parametrize("write_threads", [0, 1.5, True, "2"])
def test_write_threads_must_be_a_whole_number(tmp_path, write_threads):
    image, mask = sample_pair()
    with pytest.raises(ExportError, match="write_threads"):
        export_patches(tmp_path, image, mask, patch_size=20, write_threads=write_threads)


class RecordingArray:
    """An array-like that records every region dask reads from it."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list[int] = []

    def __getitem__(self, key):
        block = self.data[key]
        self.reads.append(block.size)
        return block


def test_dask_input_is_read_a_batch_at_a_time_never_whole(tmp_path):
    da = pytest.importorskip("dask.array")
    import dask

    image_np, mask_np = sample_pair((64, 96))
    recorder_image, recorder_mask = RecordingArray(image_np), RecordingArray(mask_np)
    image = da.from_array(recorder_image, chunks=(16, 16, 3))
    mask = da.from_array(recorder_mask, chunks=(16, 16))
    computes = []

    class CountComputes(dask.callbacks.Callback):
        def _start(self, dsk):
            computes.append((sum(recorder_image.reads), sum(recorder_mask.reads)))

    with CountComputes():
        result = export_patches(
            tmp_path / "out",
            image,
            mask,
            patch_size=16,
            channel_axis=-1,
            read_batch_bytes=4 * 16 * 16 * (3 + 4),
        )
    assert result.n_patches == 24
    # every source pixel is read exactly once, in many small computes (4 patches per batch)
    assert sum(recorder_image.reads) == image_np.size and sum(recorder_mask.reads) == mask_np.size
    assert max(recorder_image.reads) <= 16 * 16 * 3
    reads_per_compute = np.diff(np.array(computes + [(image_np.size, mask_np.size)]).sum(axis=1))
    assert len(computes) >= 2 * 24 // 4 and reads_per_compute.max() <= 4 * 16 * 16 * 4
    stitched_image, stitched_mask = read_patches(tmp_path / "out")
    np.testing.assert_array_equal(stitched_image, image_np)
    np.testing.assert_array_equal(stitched_mask, mask_np)


def test_dask_skips_reading_image_patches_the_mask_filters_out(tmp_path):
    da = pytest.importorskip("dask.array")
    image_np, mask_np = sample_pair((40, 40))
    mask_np[:] = 0
    mask_np[:20, :20] = 1
    recorder = RecordingArray(image_np)
    image = da.from_array(recorder, chunks=(20, 20, 3))
    result = export_patches(
        tmp_path / "out",
        image,
        da.from_array(mask_np, chunks=20),
        patch_size=20,
        channel_axis=-1,
        min_foreground=0.5,
    )
    assert result.n_patches == 1 and sum(recorder.reads) == 20 * 20 * 3


@pytest.mark.parametrize("write_threads", [1, 2])
def test_journal_lines_reach_the_file_while_the_export_runs(tmp_path, monkeypatch, write_threads):
    """Lines are flushed as the export goes (here after every patch), never before the files
    they name are complete, so a process killed outright resumes from them."""
    monkeypatch.setattr(run_module, "JOURNAL_FLUSH_SECONDS", 0.0)
    image, mask = sample_pair()
    out = tmp_path / "out"
    steps = iter_export(
        out, image, mask, patch_size=20, channel_axis=-1, write_threads=write_threads
    )
    for step in steps:
        if step.done == 5:
            break
    # read while the export is suspended, its journal file still open
    lines = [json.loads(line) for line in (out / JOURNAL_FILE).read_text().splitlines()]
    assert 4 <= len(lines) <= 5
    assert [line["index"] for line in lines] == list(range(len(lines)))
    export_patches(tmp_path / "ref", image, mask, patch_size=20, channel_axis=-1)
    for line in lines:
        assert len(line["files"]) == 2
        for name in line["files"]:
            assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    steps.close()
    assert len((out / JOURNAL_FILE).read_text().splitlines()) == 5
