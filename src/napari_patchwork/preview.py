"""Pictures without napari: patch previews and overview figures.

* :func:`draw_patch_preview` / :func:`write_preview`: every patch drawn as a rectangle
  on the thumbnail, kept patches in one colour, filtered ones hatched in another, the
  split as a tint of the kept patches, and a legend below the picture.
* :func:`folder_marks`: the patches of an export folder (kept, filtered, split) for a preview.
* :func:`draw_overview`: several images, label images and patch grids side by side with
  titles (the demo's ``overview.png``).

Figures are ``matplotlib.figure.Figure`` objects on the Agg canvas: no pyplot state, no
GUI. :func:`render` turns one into an RGB array, which :func:`write_figure` writes. The
images in them are thumbnails (:mod:`napari_patchwork.thumbnail`), so a whole slide is never
in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork.thumbnail import (
    CLUSTER_COLORS,
    PREVIEW_MAX_SIDE,
    PreviewError,
    Thumbnail,
    display_pixels,
    label_colors,
    source_yx,
    thumbnail,
)

PREVIEW_FILE = "preview.png"
"""The preview written into every export folder."""
KEPT_COLOR = "#00e5ff"  # cyan: on white and on dark stain, with a dark halo around it
FILTERED_COLOR = "#ff9100"  # orange, hatched: told apart from cyan by colour-blind eyes too
HALO_COLOR = "#101010"
FILTERED_VEIL = (0.0, 0.0, 0.0, 0.3)  # filtered patches are dimmed, so they read at any size
SPLIT_TINTS = ("#ffea00", "#ff4081", "#76ff03", "#d500f9")
"""Fill colours of the 2nd, 3rd... split (the first split, e.g. train, is not tinted)."""
SPLIT_ALPHA = 0.3
_DPI = 100
_STRIP_PX = 44  # the legend strip below a preview
_MIN_SIDE = 800  # small images are drawn enlarged so that the legend stays readable


# -- patch marks -------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchMarks:
    """Patches to draw: ``boxes`` ``(N, 2, ndim)`` start/stop per spatial axis in source
    pixels (a grid's ``boxes``; the last two axes are y and x), ``kept`` ``(N,)`` bool,
    ``split`` the split name of each patch (``""`` for filtered ones) or None."""

    boxes: np.ndarray
    kept: np.ndarray
    split: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.ndim == 2 and boxes.shape[1] == 4:  # (y0, x0, y1, x1) rows
            boxes = boxes.reshape(-1, 2, 2)
        if boxes.ndim != 3 or boxes.shape[1] != 2 or boxes.shape[2] < 2:
            raise PreviewError(
                f"boxes must be (N, 2, ndim) start/stop per spatial axis, got shape {boxes.shape}."
            )
        kept = np.asarray(self.kept, dtype=bool).reshape(-1)
        if kept.shape[0] != boxes.shape[0]:
            raise PreviewError(f"{boxes.shape[0]} boxes but {kept.shape[0]} kept flags.")
        split = None if self.split is None else tuple(str(s) for s in self.split)
        if split is not None and len(split) != boxes.shape[0]:
            raise PreviewError(f"{boxes.shape[0]} boxes but {len(split)} split names.")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "kept", kept)
        object.__setattr__(self, "split", split)

    @property
    def split_names(self) -> list[str]:
        """Split names of kept patches: train, val, test first, others as they come."""
        if self.split is None:
            return []
        names = list(dict.fromkeys(s for s, k in zip(self.split, self.kept) if k and s))
        usual = ("train", "val", "test")
        return sorted(names, key=lambda n: usual.index(n) if n in usual else len(usual))

    def footprints(self) -> PatchMarks:
        """One mark per distinct y/x rectangle (3D patches of a stack share them): kept if
        any patch there is kept, with that patch's split."""
        yx = self.boxes[:, :, -2:]
        if self.boxes.shape[2] == 2:
            return self
        order = np.argsort(~self.kept, kind="stable")  # kept ones first: they win
        _, first = np.unique(yx[order].reshape(len(yx), 4), axis=0, return_index=True)
        chosen = np.sort(order[first])
        split = None if self.split is None else tuple(self.split[i] for i in chosen)
        return PatchMarks(yx[chosen], self.kept[chosen], split)


def folder_marks(folder: str | os.PathLike) -> PatchMarks:
    """The patches an export folder tried, in source pixels: kept (in its manifest, with
    their split) and filtered (the rest of its grid, or of its chosen indices)."""
    from napari_patchwork.folder import read_patch_folder

    patches = read_patch_folder(folder)
    grid = patches.grid
    factors = np.asarray(patches.factors, dtype=np.float64)
    candidates = patches.info.indices
    candidates = np.arange(grid.n_patches) if candidates is None else np.asarray(candidates)
    if patches.placed:  # the boxes of placed patches that filters left out are not recorded
        candidates = np.asarray(patches.indices)
    boxes = grid.boxes[candidates] * factors
    position = {int(index): row for index, row in zip(patches.indices, patches.rows)}
    kept = np.array([int(i) in position for i in candidates], dtype=bool)
    has_split = any(row.get("split") for row in patches.rows)
    split = (
        tuple(position[int(i)].get("split", "") if k else "" for i, k in zip(candidates, kept))
        if has_split
        else None
    )
    return PatchMarks(boxes, kept, split)


def line_width(marks: PatchMarks, pixels_per_source_px: float) -> tuple[float, bool]:
    """Outline width (figure px) and whether a dark halo fits, for patches drawn at
    ``pixels_per_source_px``: 2 px with a halo when patches are 24 px or more, else 1 px."""
    if not len(marks.boxes):
        return 2.0, True
    sizes = (marks.boxes[:, 1, -2:] - marks.boxes[:, 0, -2:]).min() * pixels_per_source_px
    return (2.0 if sizes >= 12 else 1.0), bool(sizes >= 24)


def draw_patches(ax: Any, marks: PatchMarks, line_px: float = 2.0, halo: bool = True) -> None:
    """Draw ``marks`` on ``ax`` (data coordinates = source pixels): filtered patches dimmed
    and hatched orange, kept ones cyan on top (a shared edge shows kept), splits after the
    first tinted, each line over a dark ``halo`` (readable on light and dark tissue)."""
    from matplotlib.collections import PolyCollection

    marks = marks.footprints()
    to_points = 72.0 / ax.figure.dpi
    for keep in (False, True):
        chosen = np.flatnonzero(marks.kept == keep)
        if not len(chosen):
            continue
        (y0, x0), (y1, x1) = marks.boxes[chosen, 0].T, marks.boxes[chosen, 1].T
        verts = np.stack([np.stack([x0, y0], -1), np.stack([x1, y0], -1),
                          np.stack([x1, y1], -1), np.stack([x0, y1], -1)], axis=1)  # fmt: skip
        faces = _split_faces(marks, chosen) if keep else [FILTERED_VEIL]
        colour = KEPT_COLOR if keep else FILTERED_COLOR
        if halo:
            ax.add_collection(
                PolyCollection(verts, facecolors=faces, edgecolors=HALO_COLOR,
                               linewidths=(line_px + 2) * to_points, antialiased=False)
            )  # fmt: skip
            faces = "none"
        ax.add_collection(
            PolyCollection(verts, facecolors=faces, edgecolors=colour, hatch=None if keep else "//",
                           linewidths=line_px * to_points, antialiased=False)
        )  # fmt: skip


def _split_faces(marks: PatchMarks, chosen: np.ndarray) -> Any:
    from matplotlib.colors import to_rgba

    names = marks.split_names
    if len(names) < 2 or marks.split is None:
        return "none"
    tints = {name: to_rgba(SPLIT_TINTS[(i - 1) % len(SPLIT_TINTS)], SPLIT_ALPHA)
             for i, name in enumerate(names) if i}  # fmt: skip
    return [tints.get(marks.split[i], (0, 0, 0, 0)) for i in chosen]


def legend_handles(marks: PatchMarks) -> list[Any]:
    """Legend entries for :func:`draw_patches`, with counts."""
    from matplotlib.patches import Patch

    n_kept = int(marks.kept.sum())
    handles = [Patch(facecolor="none", edgecolor=KEPT_COLOR, linewidth=2, label=f"kept: {n_kept}")]
    names = marks.split_names
    for i, name in enumerate(names if len(names) > 1 else []):
        count = sum(1 for s, k in zip(marks.split or (), marks.kept) if k and s == name)
        face = "none" if i == 0 else SPLIT_TINTS[(i - 1) % len(SPLIT_TINTS)]
        alpha = None if i == 0 else SPLIT_ALPHA
        handles.append(
            Patch(facecolor=face, alpha=alpha, edgecolor=KEPT_COLOR, label=f"{name}: {count}")
        )
    n_filtered = len(marks.kept) - n_kept
    if n_filtered:
        handles.append(
            Patch(facecolor=FILTERED_VEIL, edgecolor=FILTERED_COLOR, hatch="//", linewidth=2,
                  label=f"filtered out: {n_filtered}")
        )  # fmt: skip
    return handles


# -- figures -----------------------------------------------------------------------------
def _figure(width_px: float, height_px: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def render(fig: Any) -> np.ndarray:
    """The figure's pixels, ``(height, width, 3)`` uint8 (drawn on the Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def write_figure(path: str | os.PathLike, fig: Any, *, overwrite: bool = False) -> Path:
    """Write the rendered figure (PNG, or any type :func:`napari_patchwork.io.write_image`
    writes), atomically; an existing file is replaced only with ``overwrite``."""
    from napari_patchwork.io import write_image

    return write_image(path, render(fig), overwrite=overwrite)


def _show(ax: Any, thumb: Thumbnail, kind: str = "image") -> None:
    """Show a thumbnail in source-pixel coordinates: an image, instance labels (each id
    its own hue, 0 black) or cluster ids (:data:`CLUSTER_COLORS`, 0 black)."""
    if kind == "image":
        shown = display_pixels(thumb.pixels)
    elif kind in ("labels", "clusters"):
        shown = label_colors(thumb.pixels, kind)
    else:
        raise PreviewError(f"kind={kind!r}; use 'image', 'labels' or 'clusters'.")
    ax.imshow(shown, extent=thumb.extent, interpolation="nearest", cmap="gray",
              vmin=0, vmax=255 if shown.dtype == np.uint8 else 1)  # fmt: skip


def _patch_figure_size(image: Any, marks: PatchMarks, channel_axis: Any, max_side: int):
    """(thumbnail, zoom, canvas box in source px, strip px) so that the picture with its
    legend strip is at most ``max_side`` px on each side."""
    height, width = source_yx(image, channel_axis)
    boxes = marks.boxes[:, :, -2:]
    y0, x0 = (min(0.0, float(boxes[:, 0, i].min(initial=0))) for i in (0, 1))
    y1, x1 = (max(s, float(boxes[:, 1, i].max(initial=0))) for i, s in ((0, height), (1, width)))
    strip = _STRIP_PX if len(marks.boxes) else 0
    limit = max(1, max_side - strip)
    needed = max((x1 - x0) / max_side, (y1 - y0) / limit)  # source px per picture px
    thumb = thumbnail(image, max(1, int(max(height, width) / max(needed, 1e-9))), channel_axis)
    scale = max(thumb.scale)
    w_px, h_px = (x1 - x0) / scale, (y1 - y0) / scale
    zoom = min(math.ceil(_MIN_SIDE / max(w_px, h_px)), int(max_side / w_px), int(limit / h_px))
    zoom = max(1, zoom)
    return thumb, zoom, (y0, x0, y1, x1), strip


def draw_patch_preview(
    image: Any,
    boxes: Any,
    kept: Any,
    split: Sequence[str] | None = None,
    *,
    channel_axis: int | None = None,
    max_side: int = PREVIEW_MAX_SIDE,
    title: str | None = None,
) -> Any:
    """A figure of ``image`` (a thumbnail, see :func:`thumbnail`) with every patch drawn:
    ``boxes`` ``(N, 2, ndim)`` in source pixels, ``kept`` ``(N,)`` bool, ``split`` a name
    per patch or None. At most ``max_side`` px on each side, legend included; small
    images are enlarged (nearest neighbour) so that lines and legend stay readable."""
    marks = PatchMarks(boxes, kept, split)
    thumb, zoom, (y0, x0, y1, x1), strip = _patch_figure_size(image, marks, channel_axis, max_side)
    scale = max(thumb.scale) / zoom  # source px per picture px
    width, height = int((x1 - x0) / scale), int((y1 - y0) / scale)
    fig = _figure(width, height + strip)
    ax = fig.add_axes((0, strip / (height + strip), 1, height / (height + strip)))
    ax.set_axis_off()
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="#808080", zorder=0))
    _show(ax, thumb)
    line_px, halo = line_width(marks, 1 / scale)
    draw_patches(ax, marks, line_px, halo)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    if strip:
        handles = legend_handles(marks)
        label = title + "  " if title else ""
        anchor = (0.5, strip / 2 / (height + strip))
        fig.legend(handles=handles, loc="center", bbox_to_anchor=anchor, ncol=len(handles),
                   fontsize=9, frameon=False, title=label or None, title_fontsize=9,
                   borderaxespad=0.2)  # fmt: skip
    return fig


def write_preview(
    path: str | os.PathLike,
    image: Any,
    boxes: Any,
    kept: Any,
    split: Sequence[str] | None = None,
    *,
    channel_axis: int | None = None,
    max_side: int = PREVIEW_MAX_SIDE,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write :func:`draw_patch_preview` to ``path`` (PNG), atomically; an existing file is
    replaced only with ``overwrite``."""
    fig = draw_patch_preview(
        image, boxes, kept, split, channel_axis=channel_axis, max_side=max_side, title=title
    )
    return write_figure(path, fig, overwrite=overwrite)


@dataclass(frozen=True)
class Panel:
    """One picture of an overview: ``kind`` ``"image"``, ``"labels"`` (instance ids) or
    ``"clusters"`` (ids 1..k, with a legend), optionally with patches drawn on it."""

    title: str
    image: Any
    kind: str = "image"
    channel_axis: int | None = None
    marks: PatchMarks | None = None


def draw_overview(panels: Sequence[Panel], columns: int = 3, panel_px: int = 360) -> Any:
    """One figure with ``panels`` in rows of ``columns``, each about ``panel_px`` wide and
    titled; returns the Figure (axes in panel order)."""
    if not panels:
        raise PreviewError("an overview needs at least one panel.")
    columns = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // columns)
    heights = []
    for panel in panels:
        h, w = source_yx(panel.image, panel.channel_axis)
        heights.append(h / w)
    fig = _figure(columns * panel_px, rows * (max(heights) * panel_px + 40))
    fig.set_layout_engine("constrained")
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(rows, columns, i + 1)
        _draw_panel(ax, panel, panel_px)
    return fig


def _draw_panel(ax: Any, panel: Panel, panel_px: int) -> None:
    thumb = thumbnail(panel.image, 2 * panel_px, panel.channel_axis, labels=panel.kind != "image")
    _show(ax, thumb, panel.kind)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    height, width = thumb.source_shape
    if panel.kind == "clusters":
        from matplotlib.patches import Patch

        k = int(np.max(thumb.pixels, initial=0))
        handles = [Patch(color=CLUSTER_COLORS[(i - 1) % len(CLUSTER_COLORS)], label=str(i))
                   for i in range(1, k + 1)]  # fmt: skip
        ax.legend(handles=handles, loc="lower right", fontsize=7, ncol=k, title="id",
                  title_fontsize=7, handlelength=1, columnspacing=0.6, framealpha=0.85)  # fmt: skip
    if panel.marks is not None:
        line_px, halo = line_width(panel.marks, panel_px / max(height, width))
        draw_patches(ax, panel.marks, line_px, halo)
        ax.legend(handles=legend_handles(panel.marks), loc="lower right", fontsize=7,
                  framealpha=0.85)  # fmt: skip
        boxes = panel.marks.boxes[:, :, -2:]
        ax.set_xlim(
            min(0, boxes[:, 0, 1].min(initial=0)), max(width, boxes[:, 1, 1].max(initial=0))
        )
        ax.set_ylim(
            max(height, boxes[:, 1, 0].max(initial=0)), min(0, boxes[:, 0, 0].min(initial=0))
        )
