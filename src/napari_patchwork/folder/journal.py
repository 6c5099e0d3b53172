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
    """

    index: int
    kept: bool
    reason: str = ""
    foreground_fraction: float | None = None
    image_std: float | None = None

    def journal_line(self) -> str:
        """The record as one JSON line of the journal (``PatchRecord(**json.loads(line))``)."""
        return json.dumps(vars(self)) + "\n"  # fields are plain values: no deep copy needed


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
    try:
        with open(out / JOURNAL_FILE, encoding="utf-8") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        return records
    for line in lines:
        try:
            record = PatchRecord(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut short by the interruption
        if record.index not in files:
            continue
        image_file, mask_file = files[record.index]
        if record.kept and not (
            image_file in on_disk and (mask_file is None or mask_file in on_disk)
        ):
            continue
        records[record.index] = record
    return records
