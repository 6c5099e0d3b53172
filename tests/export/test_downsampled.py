"""Export at a chosen resolution, OME-TIFF and 'only annotated' (no napari, no Qt)."""

import csv
import json
import re

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_patchwork.export import ExportError, export_patches, iter_export
from napari_patchwork.folder import read_patch_folder, read_patches, verify_patch_folder
from napari_patchwork.resolution import downsample_mean, downsample_mode, downsampled_shape
from napari_patchwork.sample import sample_image, sample_mask
from napari_patchwork.stitch import stitch


def read_manifest(folder):
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def patch_files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for sub in ("images", "masks")
        if (folder / sub).exists()
        for p in sorted((folder / sub).iterdir())
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.tuples(st.integers(5, 70), st.integers(5, 70)),
    factor=st.integers(1, 4),
    patch=st.integers(3, 20),
    overlap=st.integers(0, 2),
    edge=st.sampled_from(["drop", "pad", "shift"]),
    seed=st.integers(0, 1000),
)
def test_stitch_at_output_resolution_equals_a_direct_downsample(
    tmp_path_factory, shape, factor, patch, overlap, edge, seed
):
    """Whatever the grid, the stitched folder is the whole-image reduction wherever covered."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, shape).astype(np.uint16) * 1000
    out = tmp_path_factory.mktemp("res")
    output_spatial = downsampled_shape(shape, (factor, factor))
    if min(output_spatial) < patch and edge != "pad":
        with pytest.raises(ValueError):
            export_patches(
                out, image, mask, patch_size=patch, channel_axis=-1, downsample=factor, edge=edge
            )
        return
    stride = max(patch - overlap, 1)
    export_patches(
        out,
        image,
        mask,
        patch_size=patch,
        stride=stride,
        edge=edge,
        channel_axis=-1,
        downsample=factor,
    )
    folder = read_patch_folder(out)
    covered = folder.coverage()
    assert covered.shape == output_spatial and covered.any()
    stitched_image, stitched_mask = read_patches(out)
    assert stitched_image.shape == (*output_spatial, 3) and stitched_image.dtype == np.uint8
    expected_image = downsample_mean(image, (factor, factor), channel_axis=-1)
    expected_mask = downsample_mode(mask, (factor, factor))
    np.testing.assert_array_equal(stitched_image[covered], expected_image[covered])
    np.testing.assert_array_equal(stitched_mask[covered], expected_mask[covered])
    assert set(np.unique(stitched_mask)) <= {0, 1000, 2000, 3000}  # ids never mixed


def test_manifest_and_dataset_record_both_boxes_and_the_pixel_size(tmp_path):
    image, mask = sample_image()[:250, :230], sample_mask()[:250, :230]
    result = export_patches(
        tmp_path / "out",
        image,
        mask,
        patch_size=32,
        edge="pad",
        channel_axis=-1,
        pixel_size=1.0,
        scale=(0.25, 0.25),
        translate=(5.0, 7.0),
        units="micrometer",
    )
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["downsample"] == [4, 4] and info["pixel_size"] == [1.0, 1.0]
    assert info["output_shape"] == [63, 58] and info["patch_size"] == [32, 32]
    assert info["units"] == ["micrometer", "micrometer"] and info["format_version"] == 2
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == result.n_patches == 4  # 2 x 2 patches of 32 output px cover 63 x 58
    last = rows[-1]
    assert [int(last[k]) for k in ("out_y0", "out_y1", "out_valid_y1")] == [32, 64, 63]
    assert [int(last[k]) for k in ("y0", "y1", "valid_y1")] == [128, 256, 250]
    assert [int(last[k]) for k in ("out_x0", "out_x1", "out_valid_x1")] == [32, 64, 58]
    assert [int(last[k]) for k in ("x0", "x1", "valid_x1")] == [128, 256, 230]
    assert last["image"] == "images/patch_3_y128_x128.tif"  # names give the source position
    assert tifffile.imread(tmp_path / "out" / last["image"]).shape == (32, 32, 3)
    # the same export asked as downsample=4 is the same export: it resumes, writes nothing
    again = export_patches(
        tmp_path / "out",
        image,
        mask,
        patch_size=32,
        edge="pad",
        channel_axis=-1,
        downsample=4,
        scale=(0.25, 0.25),
        translate=(5.0, 7.0),
        units="micrometer",
    )
    assert again.n_written == 0 and again.n_resumed == 4


def test_downsample_is_a_file_setting_and_resume_works(tmp_path):
    image, mask = sample_image(), sample_mask()
    options = {"patch_size": 64, "channel_axis": -1, "downsample": 2, "min_foreground": 0.05}
    reference = export_patches(tmp_path / "reference", image, mask, **options)
    steps = iter_export(tmp_path / "out", image, mask, **options)
    for _ in range(6):
        next(steps)
    steps.close()  # interrupted after 5 patches
    resumed = export_patches(tmp_path / "out", image, mask, **options)
    assert resumed.n_resumed > 0 and resumed.n_patches == reference.n_patches
    assert patch_files(tmp_path / "out") == patch_files(tmp_path / "reference")
    assert verify_patch_folder(tmp_path / "out") == []
    with pytest.raises(ExportError, match=r"downsample: \[2, 2\] there, \[4, 4\] now"):
        export_patches(tmp_path / "out", image, mask, **{**options, "downsample": 4})
    with pytest.raises(ExportError, match=r"downsample: \[2, 2\] there, \[1, 1\] now"):
        export_patches(tmp_path / "out", image, mask, **{**options, "downsample": None})
    replaced = export_patches(
        tmp_path / "out",
        image,
        mask,
        overwrite=True,
        **{**options, "downsample": 4, "patch_size": 32},
    )
    assert replaced.n_written == replaced.n_patches > 0
    assert verify_patch_folder(tmp_path / "out") == []
    assert all(
        tifffile.imread(tmp_path / "out" / r["image"]).shape == (32, 32, 3)
        for r in read_manifest(tmp_path / "out")
    )


def test_dask_input_and_dask_tasks_give_the_same_files(tmp_path):
    da = pytest.importorskip("dask.array")
    image, mask = sample_image(), sample_mask()
    options = {
        "patch_size": 48,
        "edge": "pad",
        "channel_axis": -1,
        "downsample": 3,
        "only_foreground": True,
    }
    export_patches(tmp_path / "numpy", image, mask, **options)
    export_patches(
        tmp_path / "dask",
        da.from_array(image, chunks=100),
        da.from_array(mask, chunks=100),
        read_batch_bytes=200_000,
        **options,
    )
    export_patches(tmp_path / "tasks", image, mask, as_dask_tasks=True, **options)
    assert patch_files(tmp_path / "numpy") == patch_files(tmp_path / "dask")
    assert patch_files(tmp_path / "numpy") == patch_files(tmp_path / "tasks")


def test_only_foreground_keeps_exactly_the_patches_with_a_label(tmp_path):
    mask = np.zeros((200, 200), np.uint8)
    mask[8:12, 148:152] = 2  # a 4 x 4 annotation in patch 1 (y 0..100, x 100..200)
    mask[190, 10] = 1  # one source pixel in patch 2: gone after a 4x mode
    image = np.full((200, 200), 9, np.uint16)
    full = export_patches(tmp_path / "full", image, mask, patch_size=100, only_foreground=True)
    assert [int(r["index"]) for r in full.rows] == [1, 2]
    low = export_patches(
        tmp_path / "low", image, mask, patch_size=25, downsample=4, only_foreground=True
    )
    assert [int(r["index"]) for r in low.rows] == [1]  # judged on the mask that is written
    assert low.n_rejected_foreground == 3
    assert float(low.rows[0]["foreground_fraction"]) == 1 / 625  # one 4x4 block of 2s
    with pytest.raises(ExportError, match="only_foreground .* needs a mask"):
        export_patches(tmp_path / "x", image, patch_size=25, only_foreground=True)


def test_bad_resolution_options_say_what_to_change(tmp_path):
    image = np.zeros((64, 64), np.uint8)
    with pytest.raises(ExportError, match="not both"):
        export_patches(
            tmp_path / "a", image, patch_size=8, downsample=2, pixel_size=1.0, scale=(0.5, 0.5)
        )
    with pytest.raises(ExportError, match="only lower the resolution"):
        export_patches(tmp_path / "a", image, patch_size=8, pixel_size=0.25, scale=(0.5, 0.5))
    with pytest.raises(ExportError, match="whole number"):
        export_patches(tmp_path / "a", image, patch_size=8, downsample=1.5)
    assert not (tmp_path / "a").exists()  # refused before any file was written


def ome_physical_sizes(path):
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        return tif.series[0].axes, dict(
            re.findall(r'(PhysicalSize\w+)="([^"]+)"', tif.ome_metadata)
        )


def test_ome_tiff_carries_the_output_pixel_size(tmp_path):
    image, mask = sample_image(), sample_mask()
    export_patches(
        tmp_path / "ome",
        image,
        mask,
        patch_size=64,
        channel_axis=-1,
        fmt="ome-tiff",
        downsample=2,
        scale=(0.25, 0.25),
        units="micrometer",
        compression="zlib",
    )
    rows = read_manifest(tmp_path / "ome")
    assert rows[0]["image"].endswith(".ome.tif") and len(rows) == 16
    axes, sizes = ome_physical_sizes(tmp_path / "ome" / rows[0]["image"])
    assert axes == "YXS"
    assert sizes == {
        "PhysicalSizeX": "0.5",
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": "0.5",
        "PhysicalSizeYUnit": "µm",
    }
    assert ome_physical_sizes(tmp_path / "ome" / rows[0]["mask"]) == ("YX", sizes)
    stitched_image, stitched_mask = read_patches(tmp_path / "ome")
    np.testing.assert_array_equal(stitched_image, downsample_mean(image, (2, 2), channel_axis=-1))
    np.testing.assert_array_equal(stitched_mask, downsample_mode(sample_mask(), (2, 2)))
    assert verify_patch_folder(tmp_path / "ome") == []
    # predictions named like the patches, as plain .tif, stitch back
    (tmp_path / "ome" / "pred").mkdir()
    for row in rows:
        name = row["image"].split("/")[-1].replace(".ome.tif", ".tif")
        tifffile.imwrite(tmp_path / "ome" / "pred" / name, np.full((64, 64), 0.5, np.float32))
    assert stitch(tmp_path / "ome", "pred").shape == (256, 256)
    # a channels-first 3D stack: C, Z, Y, X with the z pixel size too
    stack = np.random.default_rng(0).integers(0, 4000, (2, 4, 40, 40), dtype=np.uint16)
    export_patches(
        tmp_path / "stack",
        stack,
        patch_size=(4, 20, 20),
        channel_axis=0,
        fmt="ome-tiff",
        scale=(2.0, 0.3, 0.3),
        units=("micrometer",) * 3,
    )
    first = read_manifest(tmp_path / "stack")[0]["image"]
    axes, sizes = ome_physical_sizes(tmp_path / "stack" / first)
    assert axes == "CZYX" and sizes["PhysicalSizeZ"] == "2.0" and sizes["PhysicalSizeY"] == "0.3"
    np.testing.assert_array_equal(read_patches(tmp_path / "stack")[0], stack)


def test_ome_tiff_refusals(tmp_path):
    with pytest.raises(ExportError, match="OME-TIFF stores channels before y and x"):
        export_patches(
            tmp_path / "a",
            np.zeros((20, 20, 2), np.float32),
            patch_size=10,
            channel_axis=-1,
            fmt="ome-tiff",
        )
    with pytest.raises(ExportError, match="need y and x"):
        export_patches(tmp_path / "a", np.zeros(20, np.uint8), patch_size=10, fmt="ome-tiff")
    with pytest.raises(ExportError, match="no OME-TIFF equivalent"):
        export_patches(
            tmp_path / "a",
            np.zeros((20, 20), np.uint8),
            patch_size=10,
            fmt="ome-tiff",
            scale=(1, 1),
            units="parsec-ish",
        )
    # a changed pixel size changes the OME files: that export is not resumed
    export_patches(
        tmp_path / "b", np.zeros((20, 20), np.uint8), patch_size=10, fmt="ome-tiff", scale=(1, 1)
    )
    with pytest.raises(ExportError, match="ome_pixel_size"):
        export_patches(
            tmp_path / "b",
            np.zeros((20, 20), np.uint8),
            patch_size=10,
            fmt="ome-tiff",
            scale=(2, 2),
        )


def test_the_export_core_imports_no_gui():
    import subprocess
    import sys

    code = (
        "import sys, napari_patchwork.export, napari_patchwork.stitch, "
        "napari_patchwork.resolution, napari_patchwork._writer, napari_patchwork._reader\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
