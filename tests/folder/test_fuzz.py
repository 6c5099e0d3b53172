"""Damaged and hostile patch folders: reading gives exactly the exported arrays or a
PatchFolderError, never another exception, and never opens a file outside the folder."""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_patchwork.export import export_patches
from napari_patchwork.folder import PatchFolderError, read_patch_folder, verify_patch_folder

FORMATS = ("tiff", "npy", "png")  # a file per patch
ALL_FORMATS = (*FORMATS, "zarr")
FUZZ = settings(
    max_examples=700,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_opened: list[str] = []
_watching = False


def _audit(event, args):
    if _watching and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def world():
    """Four exported folders (one per format) and a folder 'outside' them with secrets."""
    root = Path(tempfile.mkdtemp(prefix="patchwork-fuzz-"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (16, 24, 3), dtype=np.uint8)
    mask = rng.integers(0, 300, (16, 24), dtype=np.uint16)
    for fmt in ALL_FORMATS:
        export_patches(root / fmt, image, mask, patch_size=8, channel_axis=-1, fmt=fmt)
    outside = root / "outside"
    outside.mkdir()
    np.save(outside / "secret.npy", np.full((8, 8, 3), 7, np.uint8))
    (outside / "secret.tif").write_bytes((root / "tiff/images").iterdir().__next__().read_bytes())
    shutil.copytree(root / "zarr" / "images.zarr", outside / "images.zarr")  # a valid array
    yield {"root": root, "image": image, "mask": mask, "outside": outside}
    shutil.rmtree(root, ignore_errors=True)


def copy_of(world, fmt):
    target = Path(tempfile.mkdtemp(dir=world["root"])) / "folder"
    shutil.copytree(world["root"] / fmt, target)
    return target


def read_back(folder, world):
    """Read, stitch and verify; assert exact arrays or PatchFolderError, nothing outside."""
    global _watching
    _opened.clear()
    _watching = True
    try:
        patches = read_patch_folder(folder)
        image, mask = patches.image(), patches.mask()
        verify_patch_folder(folder)
    except PatchFolderError:
        image = None
    finally:
        _watching = False
    outside = os.path.realpath(world["outside"])
    leaked = [p for p in _opened if os.path.realpath(p).startswith(outside)]
    assert not leaked, leaked
    if image is not None:
        np.testing.assert_array_equal(image, world["image"])
        np.testing.assert_array_equal(mask, world["mask"])
        assert image.dtype == world["image"].dtype and mask.dtype == world["mask"].dtype


def hostile_values(outside: str):
    return st.one_of(
        st.sampled_from(
            [
                "",
                "-1",
                "0",
                "1e23",
                "999999999999",
                "100000000000000000000000",
                "x",
                "../outside/secret.npy",
                "images/../../outside/secret.npy",
                f"{outside}/secret.npy",
                "images/",
                "a" * 200_000,
            ]
        ),
        st.integers(-(2**40), 2**40).map(str),
        st.text(max_size=12),
    )


JSON_VALUES = st.one_of(
    st.sampled_from(
        [None, -1, 0, 1, 2, 1e308, float("nan"), "x", "|O", "foo", "<f8", [], {}, True, 10**30]
    ),
    st.lists(st.integers(-5, 10**7), max_size=5),
    st.integers(-(2**40), 2**40),
    st.text(max_size=8),
)
DATASET_KEYS = (
    "format_version",
    "complete",
    "axes",
    "spatial_axes",
    "channel_axis",
    "rgb",
    "patch_size",
    "stride",
    "edge",
    "pad_mode",
    "pad_value",
    "file_format",
    "compression",
    "stem",
    "relabel",
    "min_foreground",
    "only_foreground",
    "min_std",
    "indices",
    "split",
    "seed",
    "scale",
    "translate",
    "units",
    "downsample",
    "output_shape",
    "pixel_size",
    "n_grid_patches",
    "n_patches",
    "image",
    "mask",
    "image.shape",
    "image.dtype",
    "mask.shape",
    "mask.dtype",
)


@FUZZ
@given(fmt=st.sampled_from(ALL_FORMATS), data=st.data())
def test_mutated_manifest_cells(world, fmt, data):
    folder = copy_of(world, fmt)
    lines = (folder / "manifest.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = data.draw(st.integers(1, len(lines) - 1))
    column = data.draw(st.integers(0, len(header) - 1))
    cells = lines[row].split(",")
    cells[column] = (
        data.draw(hostile_values(str(world["outside"]))).replace(",", ";").replace("\n", " ")
    )
    lines[row] = ",".join(cells)
    if data.draw(st.booleans()):
        lines = lines[: data.draw(st.integers(1, len(lines)))]  # rows dropped, or header only
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    read_back(folder, world)


@FUZZ
@given(fmt=st.sampled_from(ALL_FORMATS), key=st.sampled_from(DATASET_KEYS), value=JSON_VALUES)
def test_mutated_dataset_json(world, fmt, key, value):
    folder = copy_of(world, fmt)
    info = json.loads((folder / "dataset.json").read_text())
    part, _, sub = key.partition(".")
    if sub:
        info[part][sub] = value
    else:
        info[part] = value
    (folder / "dataset.json").write_text(json.dumps(info))
    read_back(folder, world)


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    fmt=st.sampled_from(FORMATS),
    which=st.integers(0, 7),
    damage=st.sampled_from(
        ["truncate", "empty", "dtype", "shape", "link-out", "delete", "garbage"]
    ),
    keep=st.integers(0, 400),
)
def test_damaged_patch_files(world, fmt, which, damage, keep):
    folder = copy_of(world, fmt)
    files = sorted((folder / "images").iterdir()) + sorted((folder / "masks").iterdir())
    path = files[which % len(files)]
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: keep % max(len(raw), 1)])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(keep + 1))
    elif damage == "delete":
        path.unlink()
    elif damage in ("dtype", "shape"):
        array = np.full((8, 8, 3) if "images" in str(path) else (8, 8), 70000, np.uint32)
        if damage == "shape":
            array = np.zeros((5, 8), np.uint16)
        path.unlink()
        if fmt == "npy":
            np.save(path, array)
        else:
            import tifffile

            tifffile.imwrite(path, array)  # a TIFF under any patch name
    else:  # a link to a file outside the folder, of the right format
        path.unlink()
        secret = world["outside"] / ("secret.npy" if fmt == "npy" else "secret.tif")
        path.symlink_to(secret)
    read_back(folder, world)


ZARR_KEYS = ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs",
             "zarr_format", "node_type")  # fmt: skip


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    array=st.sampled_from(["images.zarr", "masks.zarr"]),
    damage=st.sampled_from(
        ["truncate", "append", "index", "delete", "garbage", "link-out", "metadata",
         "array-file", "array-link"]  # fmt: skip
    ),
    keep=st.integers(0, 5000),
    key=st.sampled_from(ZARR_KEYS),
    value=JSON_VALUES,
)
def test_damaged_zarr_arrays(world, array, damage, keep, key, value):
    """Shards cut, extended, with a broken index, missing, random, linked out; metadata
    edited; an array replaced by a file or a link out: exact arrays or PatchFolderError."""
    folder = copy_of(world, "zarr")
    shard = next(p for p in sorted((folder / array).rglob("*")) if p.is_file() and p.name == "0")
    raw = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(raw[: keep % len(raw)])
    elif damage == "append":
        shard.write_bytes(raw + os.urandom(keep % 64 + 1))
    elif damage == "index":  # one byte of the index or its checksum (the last 16 * 6 + 4)
        content = bytearray(raw)
        content[-1 - keep % 100] ^= 1 + keep % 255
        shard.write_bytes(bytes(content))
    elif damage == "delete":
        shard.unlink()
    elif damage == "garbage":
        shard.write_bytes(os.urandom(keep + 1))
    elif damage == "link-out":
        shard.unlink()
        shard.symlink_to(next(p for p in (world["outside"] / "images.zarr").rglob("0")))
    elif damage == "metadata":
        path = folder / array / "zarr.json"
        metadata = json.loads(path.read_text())
        metadata[key] = value
        path.write_text(json.dumps(metadata))
    elif damage == "array-file":
        shutil.rmtree(folder / array)
        (folder / array).write_bytes(b"{}")
    else:
        shutil.rmtree(folder / array)
        (folder / array).symlink_to(world["outside"] / "images.zarr")
    read_back(folder, world)
