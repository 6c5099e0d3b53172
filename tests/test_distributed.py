"""dask.distributed: a LocalCluster (2 worker processes, loopback) gives the single-process result."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile

distributed = pytest.importorskip("distributed")

from napari_patchwork.export import export_patches  # noqa: E402
from napari_patchwork.io import read_image  # noqa: E402
from napari_patchwork.sample import sample_image, sample_mask  # noqa: E402
from napari_patchwork.stitch import read_patch_folder  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as local_cluster:
        yield local_cluster


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slide")
    image = np.tile(sample_image(), (2, 2, 1))  # 1024 x 1024 RGB, tiled TIFF as on a scanner
    mask = np.tile(sample_mask(), (2, 2))
    tifffile.imwrite(folder / "slide.tif", image, tile=(128, 128), photometric="rgb")
    tifffile.imwrite(folder / "slide_mask.tif", mask, tile=(128, 128))
    return folder, image, mask


def folder_files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("dataset.json",) and not p.name.startswith(".")
    }


def test_export_on_the_cluster_equals_single_process(cluster, slide, tmp_path):
    folder, image, mask = slide
    options = dict(
        patch_size=200, edge="pad", channel_axis=-1, min_foreground=0.1, split=(0.8, 0.2), seed=3
    )
    single = export_patches(tmp_path / "single", image, mask, **options)
    lazy_image = read_image(folder / "slide.tif", lazy=True)
    lazy_mask = read_image(folder / "slide_mask.tif", lazy=True)
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as tasks:
        distributed_result = export_patches(
            tmp_path / "cluster", lazy_image, lazy_mask, as_dask_tasks=True, **options
        )
    # every patch was read, filtered and written by a task on the two worker processes
    export_tasks = [t for t in tasks.data if "export_patch" in str(t["key"])]
    assert len(export_tasks) == single.n_candidates
    assert len({t["worker"] for t in export_tasks}) == 2
    assert distributed_result.n_patches == single.n_patches > 0
    assert folder_files(tmp_path / "cluster") == folder_files(tmp_path / "single")
    back = read_patch_folder(tmp_path / "cluster")
    kept = back.coverage() > 0
    assert np.array_equal(back.image()[kept], image[kept])


def test_cluster_prediction_on_the_cluster_equals_single_process(cluster, slide):
    from napari_patchwork.cluster import cluster_pixels

    folder, image, _ = slide
    local = cluster_pixels(image, 4, channel_axis=-1, random_state=0)
    lazy_image = read_image(folder / "slide.tif", lazy=True)
    with distributed.Client(cluster):
        lazy = local.model.predict(lazy_image)
        assert type(lazy).__module__.startswith("dask")
        labels = lazy.compute()
    assert np.array_equal(labels, local.labels)


def test_cli_scheduler_option(cluster, slide, tmp_path):
    folder, image, mask = slide

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "napari_patchwork.cli", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    tile = [
        "tile",
        folder / "slide.tif",
        "--mask",
        folder / "slide_mask.tif",
        "--size",
        "256",
        "-q",
    ]
    assert cli(*tile, "-o", tmp_path / "single").returncode == 0
    result = cli(*tile, "--scheduler", cluster.scheduler_address, "-o", tmp_path / "dist")
    assert result.returncode == 0, result.stderr
    assert folder_files(tmp_path / "dist") == folder_files(tmp_path / "single")

    clus = ["cluster", folder / "slide.tif", "-k", "3", "-q"]
    assert cli(*clus, "-o", tmp_path / "single.tif").returncode == 0
    result = cli(*clus, "--scheduler", cluster.scheduler_address, "-o", tmp_path / "dist.tif")
    assert result.returncode == 0, result.stderr
    assert np.array_equal(
        tifffile.imread(tmp_path / "dist.tif"), tifffile.imread(tmp_path / "single.tif")
    )


def test_unreachable_scheduler_is_one_line(tmp_path, slide):
    folder, _, _ = slide
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_patchwork.cli",
            "tile",
            str(folder / "slide.tif"),
            "--size",
            "256",
            "--scheduler",
            "tcp://127.0.0.1:1",
            "-o",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("napari-patchwork: error: cannot reach")
    )


def test_zarr_export_on_the_cluster_writes_whole_shards_on_the_workers(
    cluster, slide, tmp_path, monkeypatch
):
    from napari_patchwork.folder import zarr_arrays

    folder, image, mask = slide
    patch_bytes = 200 * 200 * (3 + mask.dtype.itemsize)
    monkeypatch.setattr(zarr_arrays, "SHARD_BYTES", 4 * patch_bytes)  # 4 patches a shard
    options = dict(patch_size=200, edge="pad", channel_axis=-1, min_foreground=0.1, fmt="zarr")
    single = export_patches(tmp_path / "single", image, mask, **options)
    lazy_image = read_image(folder / "slide.tif", lazy=True)
    lazy_mask = read_image(folder / "slide_mask.tif", lazy=True)
    with distributed.Client(cluster) as client, distributed.get_task_stream(client) as tasks:
        result = export_patches(
            tmp_path / "cluster", lazy_image, lazy_mask, as_dask_tasks=True, **options
        )
    shard_tasks = [t for t in tasks.data if "write_shard_task" in str(t["key"])]
    assert len(shard_tasks) == -(-single.n_patches // 4) > 2  # one task per shard
    assert len({t["worker"] for t in tasks.data}) == 2
    assert result.rows == single.rows
    # the same files, byte for byte: shards written whole on the workers = shards streamed here
    assert folder_files(tmp_path / "cluster") == folder_files(tmp_path / "single")
    back = read_patch_folder(tmp_path / "cluster")
    kept = back.coverage() > 0
    assert np.array_equal(back.mask()[kept], mask[kept])
