"""Patch-grid widget: shows the patch grid of an Image layer as a Shapes layer.

Thin GUI over :mod:`napari_patchwork.grid`; all numbers come from the core. A lazy
(dask) mask's foreground fractions are measured as a job of the widgets'
:class:`~napari_patchwork._widgets._jobs.JobRunner` (progress, *Cancel*, stopped when
the viewer closes).
"""

from typing import Any, NamedTuple, Optional

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_info

from napari_patchwork._common import is_dask, rescaled, run_steps
from napari_patchwork._layer_data import GRID_METADATA_KEY, full_resolution_data
from napari_patchwork._widgets._jobs import JobError, JobRunner
from napari_patchwork._widgets._layers import (
    EDGE_TOOLTIP,
    add_tooltips,
    fitting_labels,
    image_channel_axis,
    layer_choices,
)
from napari_patchwork._widgets.forms import ScrollingForm
from napari_patchwork._widgets.grid_display import (
    ONE_COLOUR,
    GridLayers,
    OutlineZoom,
    make_grid_layers,
    place_grid_layers,
)
from napari_patchwork._widgets.legend import show_legend
from napari_patchwork._widgets.placement_fields import PlacementFields
from napari_patchwork.grid import (
    EDGE_MODES,
    GridError,
    PatchGrid,
    foreground_fraction,
    foreground_fraction_steps,
    grid_features,
    make_grid,
    spatial_shape,
)
from napari_patchwork.placement import PlacedPatches, place

GRID_SUFFIX = " grid"
QUICK_GRID_PATCHES = 500
"""Grids of up to this many patches over an in-memory mask (or none) are drawn at once
in the GUI thread (a few hundredths of a second); larger ones are made in a worker."""


GRID_TOOLTIPS = {
    "image_combo": "The Image layer to cut into patches (its scale and translate are respected).",
    "mask_combo": "Optional Labels layer on the same pixels: each patch gets its "
    "foreground_fraction (share of non-zero pixels). The objects, balanced and random "
    "placements read their labels from it.",
    "patch_height": "Patch height in image pixels.",
    "patch_width": "Patch width in image pixels.",
    "edge": EDGE_TOOLTIP,
    "color_by": "The feature that colours the rectangles' edges (foreground_fraction needs a mask).",
    "show_button": "Draw (or redraw) the grid as the Shapes layer '<image> grid'.",
    "patch_depth": "3D images only. 0 = the whole depth in one patch.",
    "stride": "Step between patches in y and x. 0 = patch size (no overlap); "
    "smaller than the patch = overlapping patches.",
    "min_foreground": "With a mask: show only patches whose foreground fraction is at least this.",
    "cancel_button": "Stop measuring the mask and making the grid; no grid is drawn.",
}
"""Tooltips of the fields that have none where they are made."""


class _GridPlan(NamedTuple):
    """What "Show grid" draws: the checked form, before any pixel is read."""

    image: Any  # napari.layers.Image
    grid: PatchGrid
    mask: Any  # numpy/dask array of the mask layer (full resolution), or None
    mask_layer: Any  # napari.layers.Labels or None
    channel_axis: Optional[int]
    placed: Optional[PlacedPatches] = None  # the placement's patches (None: a regular grid)


class GridWidget(ScrollingForm):
    """Choose an image (and mask), patch size, stride and edge mode; "Show grid".

    The grid is a Shapes layer named ``"<image> grid"`` with one rectangle per patch
    (per z-plane for 3D patches) in the image's world coordinates, features
    ``index``, ``row``, ``col`` (``z``) and ``foreground_fraction`` (with a mask).
    """

    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__()
        self._viewer = viewer
        self.image_combo = ComboBox(label="image", choices=self._image_choices)
        self.mask_combo = ComboBox(label="mask (labels)", choices=self._mask_choices, nullable=True)
        self.channels_first = CheckBox(
            text="first axis is channels",
            value=False,
            tooltip="For a non-RGB multichannel image: never cut axis 0.",
        )
        self.patch_height = SpinBox(label="patch height (px)", value=256, min=1, max=1_000_000)
        self.patch_width = SpinBox(label="patch width (px)", value=256, min=1, max=1_000_000)
        self.patch_depth = SpinBox(label="patch depth (z px)", value=0, min=0, max=1_000_000)
        self.stride = SpinBox(label="stride (px)", value=0, min=0, max=1_000_000)
        self.edge = ComboBox(label="edge", choices=list(EDGE_MODES), value="drop")
        self.min_foreground = FloatSpinBox(
            label="min foreground", value=0.0, min=0.0, max=1.0, step=0.05
        )
        self.color_by = ComboBox(
            label="colour by",
            choices=[ONE_COLOUR, "foreground_fraction", "row", "col", "index", "instance_id",
                     "area", "class"],
            value=ONE_COLOUR,
        )  # fmt: skip
        self.placement = PlacementFields(viewer)
        self.show_button = PushButton(text="Show grid")
        self.cancel_button = PushButton(text="Cancel")
        self.progress = ProgressBar(label="progress", value=0, min=0, max=1)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.legend = Label(label="colours", value="")
        self.legend.visible = False
        self.extend(
            [
                self.image_combo,
                self.mask_combo,
                *self.placement.widgets,
                self.channels_first,
                self.patch_height,
                self.patch_width,
                self.patch_depth,
                self.stride,
                self.edge,
                self.min_foreground,
                self.color_by,
                self.show_button,
                self.cancel_button,
                self.progress,
                self.status,
                self.legend,
            ]
        )
        add_tooltips(self, GRID_TOOLTIPS)
        self.jobs = JobRunner(
            self,
            title="Patch grid",
            viewer=viewer,
            progress=self.progress,
            status=self.status,
            cancel_button=self.cancel_button,
            busy=[self.show_button],
        )
        self.show_button.changed.connect(self._on_show)
        self.image_combo.changed.connect(self._on_image_changed)
        self.mask_combo.changed.connect(self._on_mask_changed)
        self.placement.kind.changed.connect(self._on_placement_changed)
        self._outline_zoom = OutlineZoom(viewer)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._on_layers_changed)
        self._on_layers_changed()
        self._on_image_changed()
        self._on_mask_changed()

    # -- layer choices -------------------------------------------------------------
    def _image_choices(self, _widget=None) -> list:
        return layer_choices(self._viewer, "image")

    def _mask_choices(self, _widget=None) -> list:
        return layer_choices(self._viewer, "labels")

    def _on_layers_changed(self, _event=None) -> None:
        self.reset_choices()
        if self.mask_combo.value is None:  # e.g. the cluster widget's foreground mask
            fitting = fitting_labels(self._viewer, self.image_combo.value, self._image_axis())
            if len(fitting) == 1:
                self.mask_combo.value = fitting[0]

    def _image_axis(self) -> Optional[int]:
        image = self.image_combo.value
        return None if image is None else self._channel_axis(image)

    def _on_image_changed(self, _value=None) -> None:
        image = self.image_combo.value
        is_volume = False
        if image is not None:
            shape = spatial_shape(full_resolution_data(image).shape, self._channel_axis(image))
            is_volume = len(shape) >= 3
        self.patch_depth.visible = is_volume
        self.channels_first.visible = image is not None and not image.rgb

    def _on_mask_changed(self, _value=None) -> None:
        """Colour by the foreground fraction with a mask; outlines only without one."""
        if self.mask_combo.value is not None:
            if self.color_by.value == ONE_COLOUR:
                self.color_by.value = "foreground_fraction"
        elif self.color_by.value == "foreground_fraction":
            self.color_by.value = ONE_COLOUR

    def _on_placement_changed(self, _value=None) -> None:
        """Placed patches have no stride (and no grid row or column)."""
        self.stride.visible = self.placement.kind.value == "grid"

    def _channel_axis(self, image) -> Optional[int]:
        return image_channel_axis(image, channels_first=self.channels_first.value)

    # -- actions ---------------------------------------------------------------------
    def patch_size_for(self, spatial_ndim: int) -> tuple[int, ...]:
        """Patch size per spatial axis from the spin boxes (depth 0 = whole extent)."""
        yx = (self.patch_height.value, self.patch_width.value)
        if spatial_ndim == 1:
            return (yx[1],)
        lead = () if spatial_ndim == 2 else (self.patch_depth.value,) * (spatial_ndim - 2)
        return lead + yx

    @property
    def worker(self):
        """The worker measuring a mask and making the grid's layers, while it runs (else None)."""
        return self.jobs.worker

    @property
    def running(self) -> bool:
        """A grid is being made or its layers added (see :class:`JobRunner`)."""
        return self.jobs.running

    def _on_show(self, _value=None) -> None:
        """Show the grid. A small grid over a numpy mask is drawn at once; otherwise the
        features and the layers are made in a worker (a mask's foreground with progress)
        and the layers added one per turn of the event loop."""
        try:
            if self.jobs.running:
                raise JobError("the grid is being measured; wait for it or cancel it.")
            plan = self._plan()
            if plan.grid.n_patches <= QUICK_GRID_PATCHES and not is_dask(plan.mask):
                self._finish(plan, _features(plan, plan.mask))
                return
            display = self._display(plan)
            measure = "measuring the foreground of" if plan.mask is not None else "laying out"
            self.jobs.start(
                _prepare(plan, display),
                self._place,
                message=f"{measure} {plan.grid.n_patches:,} patches...",
                cancelled="cancelled; the grid was not drawn.",
                inputs=[plan.image, plan.mask_layer],
            )
        except (ValueError, JobError) as err:  # GridError: the message says what to change
            self.jobs.report_error(err)

    def show_grid(self):
        """Compute the grid and add or replace the grid layer (in this thread); returns it."""
        plan = self._plan()
        return self._finish(plan, _features(plan, plan.mask))

    def _plan(self) -> "_GridPlan":
        """Validate the form and lay out the grid (fast: no pixel is read)."""
        image = self.image_combo.value
        if image is None:
            raise GridError(
                "no Image layer selected: add or open an image, then pick it under 'image'."
            )
        channel_axis = self._channel_axis(image)
        data = full_resolution_data(image)
        shape = spatial_shape(data.shape, channel_axis)
        patch = list(self.patch_size_for(len(shape)))
        if len(shape) >= 3:  # depth 0 = the whole extent of the leading axes
            patch[:-2] = [p if p > 0 else s for p, s in zip(patch[:-2], shape[:-2])]
        stride = None
        if self.stride.value > 0:
            stride = tuple(patch[:-2]) + (self.stride.value,) * min(2, len(shape))
        grid = make_grid(
            data.shape, tuple(patch), stride, self.edge.value, channel_axis=channel_axis
        )
        mask_layer = self.mask_combo.value
        mask = None if mask_layer is None else full_resolution_data(mask_layer)
        if mask is not None and tuple(mask.shape) != grid.shape:
            raise GridError(
                f"mask '{mask_layer.name}' has shape {tuple(mask.shape)} but image "
                f"'{image.name}' has spatial shape {grid.shape}; pick a mask drawn on this image."
            )
        placement = self.placement.placement(image, channel_axis, self.min_foreground.value)
        if placement is None:
            return _GridPlan(image, grid, mask, mask_layer, channel_axis)
        placed = place(placement, grid.shape, grid.patch_size, grid.edge, labels=mask)
        return _GridPlan(image, placed.grid(), mask, mask_layer, channel_axis, placed)

    def _display(self, plan: "_GridPlan") -> "_Display":
        """How the grid of ``plan`` is to be shown, read from the form (GUI thread)."""
        min_foreground = float(self.min_foreground.value) if plan.mask is not None else 0.0
        metadata = {
            "image_layer": plan.image.name,
            "mask_layer": None if plan.mask_layer is None else plan.mask_layer.name,
            "min_foreground": float(self.min_foreground.value),
            **_placement_metadata(plan.placed),
        }
        name = plan.image.name + GRID_SUFFIX
        return _Display(name, self.color_by.value, min_foreground, metadata)

    def _finish(self, plan: "_GridPlan", features: dict):
        """Add or replace the grid layer for ``plan`` with ``features`` (in this thread,
        at once); returns the layer."""
        keep, options = _layer_options(plan, self._display(plan), features)
        layer = run_steps(self._place(make_grid_layers(plan.image, plan, features, keep, options)))
        self.progress.value = self.progress.max  # drawn: 100 %, not the 0 % of before
        return layer

    def _place(self, made: GridLayers):
        """Put the made layers into the viewer, one per step; returns the grid layer."""
        layer = yield from place_grid_layers(self._viewer, made)
        self._outline_zoom.update()
        show_legend(self.legend, made.legend)
        summary = layer.metadata[GRID_METADATA_KEY]["summary"]
        self.status.value = summary
        show_info(summary)
        return layer


class _Display(NamedTuple):
    """How a grid is shown (from the form, read in the GUI thread)."""

    name: str
    color_by: str
    min_foreground: float  # 0 without a mask
    metadata: dict


def _layer_options(plan: _GridPlan, display: _Display, features: dict):
    """``(keep, options)`` for :func:`make_grid_layers`: which patches are shown, and the
    layer's name, colouring and metadata (with the summary line)."""
    grid = plan.grid
    keep = np.ones(grid.n_patches, dtype=bool)
    if display.min_foreground > 0:
        keep = features["foreground_fraction"] >= display.min_foreground
    color_by = display.color_by
    if color_by not in features:
        color_by = ONE_COLOUR  # e.g. foreground_fraction without a mask: outlines only
    patch_size = " x ".join(map(str, grid.patch_size))
    if plan.placed is None:
        layout = f"grid {' x '.join(map(str, grid.grid_shape))}"
    else:
        layout = f"placed: {plan.placed.placement.kind}"
    summary = (
        f"{int(keep.sum()):,} of {grid.n_patches:,} patches shown ({layout}, patch {patch_size} px)"
    )
    if plan.placed is not None and plan.placed.notes:
        summary += ". " + " ".join(plan.placed.notes)
    metadata = {**display.metadata, "summary": summary}
    return keep, {"name": display.name, "color_by": color_by, "metadata": metadata}


def _prepare(plan: _GridPlan, display: _Display):
    """The job making a grid's layers: yields progress (the foreground of a mask, then
    the layers), returns the made :class:`GridLayers`."""
    features = _features(plan)
    if plan.mask is not None:
        steps = foreground_fraction_steps(plan.mask, plan.grid)
        features["foreground_fraction"] = yield from rescaled(steps, 0.0, 0.9)
    yield 0.9
    keep, options = _layer_options(plan, display, features)
    made = make_grid_layers(plan.image, plan, features, keep, options)
    yield 1.0
    return made


def _features(plan: _GridPlan, mask: Any = None) -> dict:
    """The grid's features (:func:`grid_features`); placed patches have ``index`` and the
    placement's values (``instance_id``, ``area``, ``class``, ``point``) instead of a
    grid position."""
    if plan.placed is None:
        return grid_features(plan.grid, mask)
    features = {"index": np.arange(plan.grid.n_patches), **plan.placed.features}
    if mask is not None:
        features["foreground_fraction"] = foreground_fraction(mask, plan.grid)
    return features


def _placement_metadata(placed: Optional[PlacedPatches]) -> dict:
    """What the grid layer records of its placement, for the export to place the same
    patches: the placement (and its points, in image pixels)."""
    if placed is None:
        return {}
    placement = placed.placement
    return {
        "placement": placement.to_json(),
        "points": None if placement.points is None else placement.points_array().tolist(),
    }
