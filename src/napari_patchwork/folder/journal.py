"""The export journal: one JSON line per decided patch, so an interrupted export resumes."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from napari_patchwork.folder.names import IMAGES_DIR, JOURNAL_FILE, MASKS_DIR


@dataclass(frozen=True)
class PatchRecord:
    """The outcome for one patch: kept (files written) or why not.

    ``reason`` is ``""`` for kept patches, ``"foreground"`` (below
    ``min_foreground``) or ``"blank"`` (``image_std`` below ``min_std``).
    ``array_index`` is a kept patch's place in the zarr arrays (``fmt="zarr"``).
    """

    index: int
    kept: bool
    reason: str = ""
    foreground_fraction: float | None = None
    image_std: float | None = None
    array_index: int | None = None

    def journal_line(self, files: tuple[str, ...] = ()) -> str:
        """The record as one JSON line of the journal, with the ``files`` it wrote (relative
        to the folder): the journal is how an export knows which files are its own."""
        return json.dumps({**vars(self), "files": list(files)}) + "\n"


def _journal_lines(out: Path) -> list[dict]:
    """The journal's lines as dicts (a line cut short by an interruption is skipped)."""
    try:
        with open(out / JOURNAL_FILE, encoding="utf-8") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        return []
    parsed = []
    for line in lines:
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                parsed.append(value)
    return parsed


def journal_records(out: Path) -> list[PatchRecord]:
    """Every record of the journal, in the order written (lines not of ours are skipped)."""
    records = []
    for line in _journal_lines(out):
        line.pop("files", None)
        with contextlib.suppress(TypeError):
            records.append(PatchRecord(**line))
    return records


def journal_files(out: Path) -> set[str]:
    """Every file the journal says an export of this folder wrote (relative to ``out``)."""
    files: set[str] = set()
    for line in _journal_lines(out):
        names = line.get("files")
        if isinstance(names, list):
            files.update(n for n in names if isinstance(n, str))
    return files


def load_journal(out: Path, files: Mapping[int, tuple[str, str | None]]) -> dict[int, PatchRecord]:
    """Records of patches decided by an earlier run whose files are all on disk.

    ``files`` maps each patch index of this export to its image and mask file (None
    without a mask), relative to ``out``; journal lines of other patches are ignored.
    """
    on_disk = set()
    for sub in (IMAGES_DIR, MASKS_DIR):
        with contextlib.suppress(FileNotFoundError):
            on_disk.update(f"{sub}/{name}" for name in os.listdir(out / sub))
    records: dict[int, PatchRecord] = {}
    for line in _journal_lines(out):
        line.pop("files", None)
        try:
            record = PatchRecord(**line)
        except TypeError:
            continue  # not a line of ours
        if record.index not in files:
            continue
        image_file, mask_file = files[record.index]
        if record.kept and not (
            image_file in on_disk and (mask_file is None or mask_file in on_disk)
        ):
            continue
        records[record.index] = record
    return records
