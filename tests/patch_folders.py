"""Helpers of the export, folder and stitch tests: sample data, reading a folder back."""

import csv
import json
import os
from pathlib import Path

import numpy as np

from napari_patchwork.folder import read_patch_folder, verify_patch_folder

DTYPES = [
    np.uint8,
    np.uint16,
    np.int16,
    np.int32,
    np.uint32,
    np.int64,
    np.float32,
    np.float64,
    np.bool_,
]


MASK_DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.int8, np.bool_]


def random_array(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


def files_in(folder: Path, sub: str) -> set[str]:
    return (
        {f"{sub}/{name}" for name in os.listdir(folder / sub)} if (folder / sub).exists() else set()
    )


def read_manifest(folder: Path) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def check_consistent(folder: Path, foreign: set[str] = frozenset()) -> list[dict]:
    """Manifest rows == patch files on disk (besides ``foreign`` files), dataset.json complete."""
    rows = read_manifest(folder)
    listed = {row[k] for row in rows for k in ("image", "mask") if row[k]}
    assert listed == (files_in(folder, "images") | files_in(folder, "masks")) - foreign
    assert verify_patch_folder(folder) == []
    info = json.loads((folder / "dataset.json").read_text())
    assert info["complete"] is True and info["n_patches"] == len(rows)
    return rows


def sample_pair(shape=(60, 80)):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)
    mask = np.zeros(shape, dtype=np.int32)
    mask[5:25, 10:30] = 7
    mask[30:50, 40:75] = 70000  # needs more than 16 bits
    return image, mask


def make_predictions(folder: Path, value_of, channels_first=False, ext=".npy"):
    """A predictions folder: for each image patch, an array from ``value_of(row, shape)``."""
    patches = read_patch_folder(folder)
    (folder / "predictions").mkdir()
    for row in patches.rows:
        shape = tuple(int(row[f"{n}1"]) - int(row[f"{n}0"]) for n in patches.info.spatial_axes)
        data = value_of(row, shape)
        if channels_first:
            data = np.stack([data, -data])
        name = Path(row["image"]).stem + ext
        if ext == ".npy":
            np.save(folder / "predictions" / name, data)
        else:
            import tifffile

            tifffile.imwrite(folder / "predictions" / name, data)
