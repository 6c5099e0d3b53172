"""What an export reports: progress while it runs, and the result it leaves on disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_patchwork.export.split import achieved_fractions, split_summary


@dataclass
class ExportProgress:
    """Progress of a running export: ``done`` of ``total`` patches decided."""

    done: int
    total: int
    written: int = 0
    resumed: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class ExportResult:
    """What an export left on disk.

    ``n_patches`` patches are in the manifest: ``n_written`` written by this run,
    ``n_resumed`` found complete from an interrupted earlier run. Of the
    ``n_candidates`` patches tried, ``n_rejected_foreground`` failed the mask filter
    (``foreground_rule`` says which: under ``min_foreground``, or no foreground with
    ``only_foreground``) and ``n_rejected_blank`` were under ``min_std``. A blocked
    split left ``n_buffer`` more out before they were tried: they would have overlapped
    or touched a patch of another split. ``split_counts`` counts the patches per split,
    ``split_fractions`` gives them as fractions of ``n_patches``.
    """

    out_dir: Path
    manifest_path: Path
    dataset_path: Path
    n_candidates: int
    n_patches: int
    n_written: int
    n_resumed: int
    n_rejected_foreground: int
    n_rejected_blank: int
    split_counts: dict[str, int]
    rows: tuple[dict[str, Any], ...] = field(repr=False)
    foreground_rule: str = "under min foreground"
    n_buffer: int = 0
    notes: tuple[str, ...] = ()
    """What a placement could not place (e.g. "placed 37 of 50 random patches: ..."), which
    pyramid level a downsampled export read and which levels it could not trust."""

    @property
    def split_fractions(self) -> dict[str, float]:
        """The achieved fractions: patches per split over all patches."""
        return achieved_fractions(self.split_counts)

    @property
    def message(self) -> str:
        """One sentence for users: how many patches, where, and why others were skipped
        (naming only the filters that were set)."""
        text = f"{self.n_patches} patch{'es' if self.n_patches != 1 else ''} in {self.out_dir}"
        details = []
        if self.n_resumed:
            details.append(
                f"{self.n_written} written now, {self.n_resumed} already there from an earlier run"
            )
        skipped = self.n_rejected_foreground + self.n_rejected_blank
        if skipped:
            reasons = [
                f"{n} {why}"
                for n, why in (
                    (self.n_rejected_foreground, self.foreground_rule),
                    (self.n_rejected_blank, "blank"),
                )
                if n
            ]
            details.append(f"{skipped} of {self.n_candidates} skipped: {', '.join(reasons)}")
        if self.n_buffer:
            details.append(f"{self.n_buffer} left out as a buffer between splits")
        if self.split_counts:
            details.append(split_summary(self.split_counts))
        return text + (f" ({'; '.join(details)})" if details else "")
