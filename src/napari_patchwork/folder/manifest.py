"""``manifest.csv``: one row per patch file pair."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork.folder.errors import PatchFolderError
from napari_patchwork.folder.files import write_text_atomic
from napari_patchwork.folder.journal import PatchRecord
from napari_patchwork.folder.names import MANIFEST_FILE, spatial_axis_names


def manifest_columns(names: Sequence[str]) -> list[str]:
    """The manifest's column names for spatial axes ``names`` (e.g. ``("y", "x")``)."""
    return (
        ["index", "split", "image", "mask"]
        + box_columns(names)
        + box_columns(names, "out_")
        + ["foreground_fraction", "image_std", "array_index"]
    )


def block_columns(names: Sequence[str]) -> list[str]:
    """The block of a blocked split (``split_by="blocks"``): ``block_y, block_x``, the
    block's number per spatial axis (block ``(i, j)`` covers output pixels
    ``[i * block_size_y, (i + 1) * block_size_y)`` along y, and so on)."""
    return [f"block_{n}" for n in names]


def box_columns(names: Sequence[str], prefix: str = "") -> list[str]:
    """A box's manifest columns: ``y0, y1, x0, x1, valid_y1, valid_x1`` (with ``prefix``)."""
    return [f"{prefix}{n}{k}" for n in names for k in (0, 1)] + [
        f"{prefix}valid_{n}1" for n in names
    ]


def manifest_boxes(
    rows: Sequence[dict[str, str]], names: Sequence[str], prefix: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Starts, stops and valid stops ``(N, ndim)`` of the manifest columns with ``prefix``."""

    def column(template: str) -> np.ndarray:
        values = [[_whole(r[template.format(n)]) for n in names] for r in rows]
        return np.array(values, dtype=np.int64).reshape(-1, len(names))

    return column(prefix + "{}0"), column(prefix + "{}1"), column(prefix + "valid_{}1")


@dataclass(frozen=True)
class PatchInfo:
    """Where one patch comes from and where it goes.

    ``start``/``stop`` are the patch box per spatial axis in source pixels (``stop``
    may pass the image in ``pad`` mode); ``valid_stop`` is the stop clipped to the
    image. ``out_start``/``out_stop``/``out_valid_stop`` are the same box in output
    pixels (the grid's box; the source box divided by the downsampling factors).
    ``image_file``/``mask_file`` are relative to the patch folder.
    """

    index: int
    start: tuple[int, ...]
    stop: tuple[int, ...]
    valid_stop: tuple[int, ...]
    out_start: tuple[int, ...]
    out_stop: tuple[int, ...]
    out_valid_stop: tuple[int, ...]
    image_file: str
    mask_file: str | None
    features: tuple[tuple[str, Any], ...] = ()
    """A placement's values for this patch, e.g. ``(("instance_id", 7), ("area", 310))``."""

    def region(self, ndim: int, channel_axis: int | None) -> tuple[slice, ...]:
        """Slices of the valid source region in an array of ``ndim`` axes (channel axis whole)."""
        region = list(map(slice, self.start, self.valid_stop))
        if channel_axis is not None and ndim > len(region):
            region.insert(channel_axis, slice(None))
        return tuple(region)

    def pad_width(self, ndim: int, channel_axis: int | None) -> list[tuple[int, int]]:
        """``numpy.pad`` widths that grow the valid output region to the full output box."""
        pads = iter((0, b - v) for b, v in zip(self.out_stop, self.out_valid_stop))
        return [(0, 0) if axis == channel_axis else next(pads) for axis in range(ndim)]

    @property
    def is_padded(self) -> bool:
        return self.out_stop != self.out_valid_stop


def manifest_row(
    info: PatchInfo, record: PatchRecord, split: str, block: Sequence[int] | None = None
) -> dict[str, Any]:
    """The manifest row of a kept patch (see :func:`manifest_columns`), with its
    :func:`block_columns` when a ``block`` is given."""
    names = spatial_axis_names(len(info.start))
    row: dict[str, Any] = {
        "index": record.index,
        "split": split,
        "image": info.image_file,
        "mask": info.mask_file or "",
    }
    for prefix, start, stop, valid in (
        ("", info.start, info.stop, info.valid_stop),
        ("out_", info.out_start, info.out_stop, info.out_valid_stop),
    ):
        for name, a, b in zip(names, start, stop):
            row[f"{prefix}{name}0"], row[f"{prefix}{name}1"] = a, b
        for name, v in zip(names, valid):
            row[f"{prefix}valid_{name}1"] = v
    row["foreground_fraction"] = (
        "" if record.foreground_fraction is None else f"{record.foreground_fraction:.6g}"
    )
    row["image_std"] = "" if record.image_std is None else f"{record.image_std:.6g}"
    # the patch's place in images.zarr/masks.zarr (fmt="zarr"); empty for patch files
    row["array_index"] = "" if record.array_index is None else record.array_index
    if block is not None:
        row.update(zip(block_columns(names), (int(b) for b in block)))
    row.update(info.features)
    return row


def write_manifest(
    folder: str | os.PathLike,
    rows: Iterable[dict[str, Any]],
    n_spatial: int,
    fsync: bool = False,
    extra: Sequence[str] = (),
) -> None:
    """Write ``manifest.csv`` atomically; ``extra`` columns (e.g. :func:`block_columns`)
    follow the standard ones."""
    buffer = io.StringIO()
    columns = manifest_columns(spatial_axis_names(n_spatial)) + list(extra)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    # the rows hold exactly these keys (manifest_row): plain lists, as csv.DictWriter would
    # write them without its per-row key checks
    writer.writerows([row[key] for key in columns] for row in rows)
    write_text_atomic(Path(folder) / MANIFEST_FILE, buffer.getvalue(), fsync)


@dataclass(frozen=True)
class ManifestBoxes:
    """The manifest's rows and their boxes, as :class:`~napari_patchwork.folder.read.PatchFolder`
    holds them (``(N,)`` indices, ``(N, ndim)`` int64 starts/stops/valid stops)."""

    rows: tuple[dict[str, str], ...]
    indices: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    valid_stops: np.ndarray
    out_starts: np.ndarray
    out_stops: np.ndarray
    out_valid_stops: np.ndarray


def read_manifest_rows(path: Path, names: Sequence[str], version: int) -> ManifestBoxes:
    """Read ``manifest.csv`` (boxes as whole numbers; PatchFolderError if it is damaged).

    Manifests of format version 1 have no output boxes: they equal the source boxes.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            required = manifest_columns(names)
            if version < 2:
                required = [c for c in required if not c.startswith("out_")]
            if version < 3:
                required = [c for c in required if c != "array_index"]
            missing = set(required) - columns
            if missing:
                raise PatchFolderError(f"{path} lacks the columns {sorted(missing)}.")
            rows = tuple(reader)
        indices = np.array([_whole(r["index"]) for r in rows], dtype=np.int64)
        starts, stops, valid = manifest_boxes(rows, names, "")
        prefix = "out_" if f"out_{names[0]}0" in columns else ""
        out_boxes = manifest_boxes(rows, names, prefix)
    except FileNotFoundError:
        raise PatchFolderError(
            f"{path.parent} has no {path.name}; run the export again to write it."
        ) from None
    except PatchFolderError:
        raise
    except (ValueError, KeyError, TypeError, csv.Error, UnicodeDecodeError) as err:
        raise PatchFolderError(f"{path} is damaged ({err}); export again.") from None
    return ManifestBoxes(rows, indices, starts, stops, valid, *out_boxes)


def _whole(text: str) -> int:
    """A manifest number: a whole number of at most 12 digits (no exponent, no fraction)."""
    if not isinstance(text, str) or not re.fullmatch(r"-?[0-9]{1,12}", text.strip()):
        raise ValueError(f"{text!r} is not a pixel position")
    return int(text)
