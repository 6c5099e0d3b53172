"""The export widget's form: its fields and tooltips, the numbers typed into them, and the
preview line ("will write N patch pairs"). No Qt beyond magicgui's widgets."""

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from napari_patchwork._widgets._layers import EDGE_TOOLTIP
from napari_patchwork.export import FILE_FORMATS, PAD_MODES, ExportError, ExportPlan
from napari_patchwork.grid import EDGE_MODES, foreground_fraction

EXPORT_TOOLTIPS = {
    "image_combo": "The Image layer to export (multiscale layers: the full-resolution level).",
    "edge": EDGE_TOOLTIP,
    "pad_mode": "How padded pixels are filled: constant (pad value) or reflect (mirror the image).",
    "pad_value": "The value of padded image pixels with 'constant' (masks are padded with 0).",
    "fmt": "File format: tiff, ome-tiff (with the physical pixel size), npy, "
    "png (8/16-bit greyscale or RGB), or zarr (two sharded arrays, no file per patch).",
    "compression": "none (fastest), zlib for TIFF or zstd for zarr (lossless, smaller).",
    "only_selected": "Export only the patches whose rectangles are selected in the grid layer.",
    "relabel": "Renumber the instance labels of each mask patch 1..n (0 stays background).",
    "seed": "Seed of the train/val/test split: the same seed gives the same split.",
    "stem": "Start of every file name: <stem>_<index>_y<y0>_x<x0>.<ext>.",
    "out_dir": "The folder to write (new or empty; the same export in it resumes).",
    "export_button": "Check the settings, then write the patches in the background.",
    "cancel_button": "Stop after the current patch; exporting again with the same settings "
    "resumes.",
}
"""Tooltips of the fields that have none where they are made."""


def _parse_numbers(
    text: str, convert: Callable[[str], Any], what: str, expected: str
) -> list | None:
    """Numbers separated by commas or spaces; empty -> None; else an ExportError that says
    ``what`` is not ``expected``."""
    try:
        return [convert(v) for v in text.replace(",", " ").split()] or None
    except ValueError:
        raise ExportError(f"{what}: {text.strip()!r} is not {expected}.") from None


def parse_sizes(text: str, what: str) -> list[int] | None:
    """``"256"`` or ``"16, 256, 256"`` -> list of ints; empty -> None; else ExportError."""
    return _parse_numbers(text, int, what, "a whole number or a list like '256' or '16, 256, 256'")


def parse_split(text: str) -> list[float] | None:
    """``"0.8, 0.1, 0.1"`` -> fractions (train, val, test); empty -> None; else ExportError."""
    return _parse_numbers(text, float, "split", "a list of fractions like '0.8, 0.1, 0.1'")


def parse_pixel_size(text: str) -> list[float] | float | None:
    """``"0.5"`` or ``"2, 0.5, 0.5"`` -> float(s); empty -> None; else ExportError."""
    return single_value(
        _parse_numbers(text, float, "pixel size", "a number like '0.5' (in the image's units)")
    )


def preview_text(plan: ExportPlan, mask: Any) -> str:
    """ "will write N patch pairs (M skipped: why)" for a plan, before anything is written.

    The foreground filters are counted here for an in-memory mask at full resolution;
    otherwise they are applied while writing and the text says so. The blank filter
    (``min_std``) needs the image's pixels: it is always applied while writing.
    """
    options, n = plan.options, plan.n_patches
    what = "patches" if mask is None else "patch pairs"
    filtered = mask is not None and (options.min_foreground > 0 or options.only_foreground)
    why = (
        f"under min foreground {options.min_foreground:g}"
        if options.min_foreground > 0
        else "no foreground"
    )
    later = [] if options.min_std is None else [f"blank below std {options.min_std:g}"]
    if filtered and (not isinstance(mask, np.ndarray) or any(f != 1 for f in plan.layout.factors)):
        later.insert(0, why)
        filtered = False
    text = f"will write {n:,} {what}"
    if filtered:
        fractions = foreground_fraction(mask, plan.grid)[[p.index for p in plan.patches]]
        keep = fractions >= options.min_foreground
        if options.only_foreground:
            keep &= fractions > 0
        kept = int(keep.sum())
        text = f"will write {kept:,} {what} ({n - kept:,} skipped: {why})"
    if later:
        text = text.replace("will write", "will write at most", 1)
        text += f"; patches {' or '.join(later)} are skipped while writing"
    if plan.blocks is not None:
        blocks = plan.blocks
        text += (
            f"; split by {blocks.n_blocks:,} blocks, {blocks.n_buffer:,} patches left out as "
            "a buffer between splits"
        )
    return text + "."


def single_value(values: list | None) -> Any:
    """One number for a list of one (it then applies to every axis), else the list or None."""
    return values[0] if values is not None and len(values) == 1 else values


def add_export_fields(widget: Container) -> None:
    """The export form's fields, made and added to ``widget`` in the order users see them
    (``widget`` supplies the layer choices)."""
    _layer_fields(widget)
    _layout_fields(widget)
    _filter_fields(widget)
    _output_fields(widget)
    widget.extend(
        [
            widget.image_combo,
            widget.mask_combo,
            widget.grid_combo,
            widget.channels_first,
            widget.patch_size,
            widget.stride,
            widget.edge,
            widget.pad_mode,
            widget.pad_value,
            widget.fmt,
            widget.compression,
            widget.downsample,
            widget.pixel_size,
            widget.min_foreground,
            widget.only_annotated,
            widget.min_std,
            widget.only_selected,
            widget.relabel,
            widget.split,
            widget.seed,
            widget.split_by,
            widget.block_size,
            widget.stem,
            widget.out_dir,
            widget.overwrite,
            widget.preview,
            widget.progress,
            widget.export_button,
            widget.cancel_button,
            widget.status,
        ]
    )


def _layer_fields(widget: Container) -> None:
    """What to export: image, mask and grid layers."""
    widget.image_combo = ComboBox(label="image", choices=widget._image_choices)
    widget.mask_combo = ComboBox(
        label="mask",
        choices=widget._mask_choices,
        nullable=True,
        tooltip="A Labels layer, or a Shapes layer of annotations (painted into a mask: "
        "label ids by its 'class' feature column, else 1).",
    )
    widget.grid_combo = ComboBox(
        label="grid",
        choices=widget._grid_choices,
        nullable=True,
        tooltip="A patch grid layer: its patch size, stride and edge mode are used.",
    )
    widget.channels_first = CheckBox(
        text="first axis is channels",
        value=False,
        tooltip="For a non-RGB multichannel image: never cut axis 0.",
    )


def _layout_fields(widget: Container) -> None:
    """How patches are cut and written: sizes, edges, padding, format, resolution."""
    widget.patch_size = LineEdit(
        label="patch size (px)",
        value="256",
        tooltip="In output pixels (after any downsampling): one number for all spatial axes, "
        "or one per axis in array order, e.g. '16, 256, 256'.",
    )
    widget.stride = LineEdit(
        label="stride (px)",
        value="",
        tooltip="Step between patches in output pixels, like the patch size. "
        "Empty = patch size (no overlap).",
    )
    widget.edge = ComboBox(label="edge", choices=list(EDGE_MODES), value="drop")
    widget.pad_mode = ComboBox(label="pad with", choices=list(PAD_MODES), value="constant")
    widget.pad_value = FloatSpinBox(label="pad value", value=0, min=-1e12, max=1e12)
    widget.fmt = ComboBox(label="format", choices=list(FILE_FORMATS), value="tiff")
    widget.compression = ComboBox(label="compression", choices=["none", "zlib"], value="none")


def _filter_fields(widget: Container) -> None:
    """Which patches are kept."""
    widget.min_foreground = FloatSpinBox(
        label="min foreground",
        value=0.0,
        min=0.0,
        max=1.0,
        step=0.05,
        tooltip="Keep patches whose mask foreground fraction is at least this.",
    )
    widget.min_std = FloatSpinBox(
        label="min std dev",
        value=0.0,
        min=0.0,
        max=1e12,
        step=1.0,
        tooltip="Drop patches whose largest per-channel standard deviation is below this "
        "(intensity units). 0 = keep blank patches.",
    )
    widget.only_annotated = CheckBox(
        text="only annotated patches",
        value=False,
        tooltip="Keep only patches whose mask has any foreground (non-zero) pixel.",
    )
    widget.downsample = SpinBox(
        label="downsample",
        value=1,
        min=1,
        max=256,
        tooltip="Export at 1/factor of the resolution along y and x (1 = full resolution): "
        "images area-averaged, masks by the most frequent label of each block.",
    )
    widget.pixel_size = LineEdit(
        label="pixel size",
        value="",
        tooltip="Instead of downsample: the output pixel size in the image's units "
        "(a whole multiple of its pixel size). Empty = use downsample.",
    )


def _output_fields(widget: Container) -> None:
    """Selection, split, names, folder, and the run's controls."""
    widget.only_selected = CheckBox(text="only patches selected in the grid", value=False)
    widget.relabel = CheckBox(text="relabel instances 1..n per patch", value=False)
    widget.split = LineEdit(
        label="split",
        value="",
        tooltip="Fractions for train, val, test, e.g. '0.8, 0.1, 0.1'. Empty = no split.",
    )
    widget.seed = SpinBox(label="split seed", value=0, min=0, max=2**31 - 1)
    widget.split_by = ComboBox(
        label="split by",
        choices=["patch", "blocks"],
        value="patch",
        tooltip="patch: each patch drawn on its own (overlapping or neighbouring patches can "
        "land in different splits). blocks: square blocks of 'block size' are drawn, each "
        "patch goes with the block of its centre, and patches that would overlap or touch a "
        "patch of another split are left out (leak-free validation).",
    )
    widget.block_size = LineEdit(
        label="block size",
        value="",
        tooltip="Block size of 'split by: blocks' in output pixels (like the patch size): one "
        "value, or one per axis. At least the patch size, better several patches.",
    )
    widget.stem = LineEdit(label="file name stem", value="patch")
    widget.out_dir = FileEdit(label="folder", mode="d")
    widget.overwrite = CheckBox(
        text="overwrite",
        value=False,
        tooltip="Write into a non-empty folder, or redo an export in it from scratch "
        "(also one with the same settings, e.g. after editing the image or mask).",
    )
    widget.progress = ProgressBar(label="progress", value=0, min=0, max=1)
    widget.preview = Label(value="", tooltip="What the export will write, before it runs.")
    widget.preview.native.setWordWrap(True)
    widget.export_button = PushButton(text="Export")
    widget.cancel_button = PushButton(text="Cancel", enabled=False)
    widget.status = Label(value="")
