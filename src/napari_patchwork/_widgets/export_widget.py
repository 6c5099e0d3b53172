"""Export-patches widget: every option of :func:`napari_patchwork.export.export_patches`.

Thin GUI over the core: the export is a job of the widgets'
:class:`~napari_patchwork._widgets._jobs.JobRunner` (progress after each patch; *Cancel*
stops it at the next patch, closes its files and write threads, and leaves a folder that
the same export resumes; so does closing the viewer). Messages go through napari
notifications.

The mask is a Labels layer or a Shapes layer of annotations; annotations are
painted into a mask in the worker, as the npe2 writer does
(:func:`napari_patchwork._layer_data.annotation_mask`: ids by the ``class`` feature
column, else 1). "downsample" / "pixel size" export at a lower resolution; patch
size and stride are then in output pixels. With a grid layer chosen, they follow the
grid at the chosen resolution (the grid's source-pixel sizes divided by the
downsampling), so the exported patches are the grid's rectangles; "only patches
selected in the grid" picks the export's patches that cover the selected rectangles.
"""

from typing import Any, Optional

import napari
import numpy as np
from napari.utils.notifications import show_info

from napari_patchwork._layer_data import (
    GRID_METADATA_KEY,
    annotation_mask,
    full_resolution_data,
    grid_placement,
    image_levels,
    is_grid_layer,
    selected_patches,
)
from napari_patchwork._reader import remember_reader_for
from napari_patchwork._widgets._jobs import JobError, JobRunner
from napari_patchwork._widgets._layers import (
    add_tooltips,
    fitting_labels,
    image_channel_axis,
    layer_choices,
)
from napari_patchwork._widgets.export_form import (
    EXPORT_TOOLTIPS,
    add_export_fields,
    parse_pixel_size,
    parse_sizes,
    parse_split,
    preview_text,
    single_value,
)
from napari_patchwork._widgets.forms import ScrollingForm
from napari_patchwork.export import (
    ExportError,
    ExportOptions,
    ExportProgress,
    ExportResult,
    indices_of_source_boxes,
    plan_export,
    run_export,
)
from napari_patchwork.export.plan import image_layout, layout_and_grid
from napari_patchwork.grid import (
    GridError,
    make_grid,
    spatial_shape,
)


def _grid_metadata(layer) -> dict | None:
    return None if layer is None else layer.metadata.get(GRID_METADATA_KEY)


COMPRESSION_CHOICES: dict[str, list[str]] = {
    "tiff": ["none", "zlib"],
    "ome-tiff": ["none", "zlib"],
    "zarr": ["none", "zstd"],
}
"""The compression choices of each format that has any."""


class ExportWidget(ScrollingForm):
    """Export image (+ mask) patches to a folder of files with a manifest.

    Patch size, stride, edge mode and channel axis are taken from the chosen grid
    layer (made by the *Patch grid* widget) when one is picked; "only selected
    patches" exports the patches whose rectangles are selected in that layer.
    """

    def __init__(self, viewer: "napari.viewer.Viewer"):
        super().__init__()
        self._viewer = viewer
        self.last_result: ExportResult | None = None
        add_export_fields(self)
        add_tooltips(self, EXPORT_TOOLTIPS)
        self.jobs = JobRunner(
            self,
            title="Export patches",
            viewer=viewer,
            progress=self.progress,
            status=self.status,
            cancel_button=self.cancel_button,
            busy=[self.export_button],
        )
        self.export_button.changed.connect(self._on_export)
        self.grid_combo.changed.connect(self._on_grid_changed)
        self.downsample.changed.connect(self._fit_sizes_to_grid)
        self.pixel_size.changed.connect(self._fit_sizes_to_grid)
        self.image_combo.changed.connect(self._on_image_changed)
        self.edge.changed.connect(self._update_visibility)
        self.fmt.changed.connect(self._update_visibility)
        self.split_by.changed.connect(self._update_visibility)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._on_layers_changed)
        for field in (
            self.image_combo,
            self.mask_combo,
            self.grid_combo,
            self.channels_first,
            self.patch_size,
            self.stride,
            self.edge,
            self.downsample,
            self.pixel_size,
            self.min_foreground,
            self.only_annotated,
            self.min_std,
            self.only_selected,
            self.split,
            self.seed,
            self.split_by,
            self.block_size,
        ):
            field.changed.connect(self.update_preview)
        self._on_layers_changed()

    # -- layer choices -------------------------------------------------------------
    def _image_choices(self, _widget=None) -> list:
        return layer_choices(self._viewer, "image")

    def _mask_choices(self, _widget=None) -> list:
        return [
            layer
            for layer in layer_choices(self._viewer, "labels")
            + layer_choices(self._viewer, "shapes")
            if not is_grid_layer({"metadata": layer.metadata})
        ]

    def _grid_choices(self, _widget=None) -> list:
        layers = layer_choices(self._viewer, "shapes") + layer_choices(self._viewer, "labels")
        return [layer for layer in layers if _grid_metadata(layer)]

    def _on_layers_changed(self, _event=None) -> None:
        grid_before = self.grid_combo.value
        self.reset_choices()
        if grid_before is None and self.grid_combo.value is None:
            self._pick_grid_for_image()
        if self.mask_combo.value is None:
            self._pick_mask_for_image()
        self._on_image_changed()
        self.update_preview()

    def _fitting_labels(self) -> list:
        """The Labels layers with the chosen image's spatial shape."""
        image = self.image_combo.value
        channels_first = self.channels_first.value
        axis = None if image is None else image_channel_axis(image, channels_first)
        return fitting_labels(self._viewer, image, axis)

    def _pick_mask_for_image(self) -> None:
        """Pre-select the mask when exactly one Labels layer fits the image (e.g. the
        cluster widget's foreground mask)."""
        fitting = self._fitting_labels()
        if len(fitting) == 1:
            self.mask_combo.value = fitting[0]

    def _pick_grid_for_image(self) -> None:
        image = self.image_combo.value
        grids = self._grid_choices()
        matching = [
            g
            for g in grids
            if image is not None and _grid_metadata(g).get("image_layer") == image.name
        ]
        if matching:
            self.grid_combo.value = matching[0]

    def _on_image_changed(self, _value=None) -> None:
        image = self.image_combo.value
        mask = self.mask_combo.value
        if isinstance(mask, napari.layers.Labels) and mask not in self._fitting_labels():
            self.mask_combo.value = None  # drawn on another image
            self._pick_mask_for_image()
        self.channels_first.visible = image is not None and not image.rgb
        if image is not None:
            sizes = ", ".join(f"{s:g}" for s in image.scale[-2:])
            self.pixel_size.native.setPlaceholderText(f"image: {sizes} {image.units[-1]}")
        self._update_visibility()

    def _on_grid_changed(self, _value=None) -> None:
        """Take patch size, stride, edge and channel axis from the grid layer's metadata."""
        meta = _grid_metadata(self.grid_combo.value)
        self.only_selected.enabled = meta is not None
        if meta is None:
            self.only_selected.value = False
            return
        self.edge.value = meta.get("edge", "drop")
        self.channels_first.value = meta.get("channel_axis") == 0
        image_name = meta.get("image_layer")
        if (
            image_name in self._viewer.layers
            and self._viewer.layers[image_name] in self._image_choices()
        ):
            self.image_combo.value = self._viewer.layers[image_name]
        # the grid's foreground filter: its mask and min foreground (the user may change them)
        mask_name = meta.get("mask_layer")
        if mask_name in self._viewer.layers and self._viewer.layers[mask_name] in (
            self._mask_choices()
        ):
            self.mask_combo.value = self._viewer.layers[mask_name]
        if mask_name is not None:
            self.min_foreground.value = float(meta.get("min_foreground") or 0.0)
        self._fit_sizes_to_grid()

    def _factors(self, patch_size: Any) -> list[int]:
        """Downsampling factor per spatial axis of the form's resolution, as an export of
        ``patch_size`` will resolve it (ExportError if invalid)."""
        image = self.image_combo.value
        if image is None:
            raise ExportError("no Image layer: open or add an image, then pick it under 'image'.")
        data = full_resolution_data(image)
        options = ExportOptions(
            patch_size=tuple(int(v) for v in patch_size),
            channel_axis=image_channel_axis(image, channels_first=self.channels_first.value),
            **self._resolution(image, data),
        )
        return list(image_layout(data, options).factors)

    def _resolution(self, image, data) -> dict[str, Any]:
        """The form's resolution and the image's transform, as export options."""
        downsample = int(self.downsample.value)
        scale, translate = list(image.scale), list(image.translate)
        n_spatial = len(
            spatial_shape(data.shape, image_channel_axis(image, self.channels_first.value))
        )
        return {
            "downsample": None if downsample == 1 else downsample,
            "pixel_size": parse_pixel_size(self.pixel_size.value),
            "scale": scale if len(scale) in (n_spatial, len(data.shape)) else None,
            "translate": translate if len(translate) in (n_spatial, len(data.shape)) else None,
            "units": [str(u) for u in image.units],
        }

    def _fit_sizes_to_grid(self, _value=None) -> None:
        """Patch size and stride: the chosen grid's, divided by the downsampling.

        Left as they are while the resolution is invalid or does not divide the grid's
        sizes (an export of the selected patches then says what to change).
        """
        meta = _grid_metadata(self.grid_combo.value)
        if meta is None:
            return
        patch = np.asarray(meta["patch_size"], dtype=np.int64)
        stride = np.asarray(meta.get("stride") or meta["patch_size"], dtype=np.int64)
        try:
            factors = np.asarray(self._factors(patch), dtype=np.int64)
        except ExportError:
            return
        if np.any(patch % factors) or np.any(stride % factors):
            return
        patch, stride = patch // factors, stride // factors
        self.patch_size.value = ", ".join(str(v) for v in patch)
        self.stride.value = (
            "" if np.array_equal(stride, patch) else ", ".join(str(v) for v in stride)
        )

    def _update_visibility(self, _value=None) -> None:
        padded = self.edge.value == "pad"
        self.pad_mode.visible = padded
        self.pad_value.visible = padded
        choices = COMPRESSION_CHOICES.get(self.fmt.value)
        self.compression.visible = choices is not None
        if choices is not None and list(self.compression.choices) != choices:
            value = self.compression.value
            self.compression.choices = choices
            self.compression.value = value if value in choices else "none"
        self.block_size.visible = self.split_by.value == "blocks"

    # -- options -------------------------------------------------------------------
    def selected_indices(self) -> list[int]:
        """Patch indices (of the grid layer's grid) of the patches selected in it."""
        grid = self.grid_combo.value
        if grid is None or not _grid_metadata(grid):
            raise ExportError(
                "'only selected patches' needs a grid layer made by the Patch grid widget."
            )
        selected = selected_patches(
            grid.metadata, grid.features, getattr(grid, "selected_data", ())
        )
        if not len(selected):
            how = (
                "Ctrl+click patches"
                if _grid_metadata(grid).get("kind") == "labels"
                else ("select rectangles (select tool)")
            )
            raise ExportError(
                f"no patch is selected in '{grid.name}'; {how} "
                "or untick 'only patches selected in the grid'."
            )
        return [int(i) for i in selected]

    def selected_export_indices(self, image: Any, options: ExportOptions) -> list[int]:
        """The export's patch indices that cover the rectangles selected in the grid layer."""
        selected = self.selected_indices()  # says what to do without a grid or a selection
        grid_layer = self.grid_combo.value
        meta = _grid_metadata(grid_layer) or {}
        grid_shape = tuple(meta.get("shape", ()))  # spatial
        layout, export = layout_and_grid(image, options, self.placement_labels())
        if options.placed:  # the same placement numbers the same patches
            if export.n_patches != int(meta.get("n_patches", -1)):
                raise ExportError(
                    f"at this resolution the placement gives {export.n_patches} patches, the "
                    f"grid '{grid_layer.name}' {meta.get('n_patches')}: export the selected "
                    "patches at downsample 1, or all of them."
                )
            return selected
        if grid_shape != layout.source_shape:
            raise ExportError(
                f"the grid '{grid_layer.name}' was made for an image of {grid_shape} px, this "
                f"one has {layout.source_shape} px: pick its grid, or make a new one with the "
                "Patch grid widget."
            )
        try:
            grid = make_grid(
                grid_shape, meta["patch_size"], meta.get("stride"), meta.get("edge", "drop")
            )
        except (GridError, KeyError) as err:
            raise ExportError(f"the grid layer '{grid_layer.name}' is damaged: {err}") from None
        return indices_of_source_boxes(
            grid.boxes[selected], export, layout.factors, layout.source_shape
        )

    def export_request(self, need_folder: bool = True) -> tuple[str, Any, Any, ExportOptions]:
        """``(out_dir, image, mask, options)`` from the form (ExportError if incomplete).

        An annotation Shapes layer is painted into the mask here (lazily when large). The
        image of a multiscale layer is its levels (a Pyramid): a downsampled export reads
        the coarsest level that serves it.
        """
        image = self.image_combo.value
        if image is None:
            raise ExportError("no Image layer: open or add an image, then pick it under 'image'.")
        out_dir = str(self.out_dir.value).strip()
        if need_folder and out_dir in ("", "."):
            raise ExportError("choose the folder to export to under 'folder'.")
        channel_axis = image_channel_axis(image, channels_first=self.channels_first.value)
        data = full_resolution_data(image)
        patch = parse_sizes(self.patch_size.value, "patch size")
        if patch is None:
            raise ExportError("patch size is empty: give a size in pixels, e.g. 256.")
        mask, class_ids = self._mask(image, data, channel_axis)
        mask_layer = self.mask_combo.value
        options = ExportOptions(
            patch_size=single_value(patch),
            stride=single_value(parse_sizes(self.stride.value, "stride")),
            edge=self.edge.value,
            channel_axis=channel_axis,
            fmt=self.fmt.value,
            compression=None if self.compression.value == "none" else self.compression.value,
            min_foreground=float(self.min_foreground.value),
            only_foreground=bool(self.only_annotated.value),
            min_std=float(self.min_std.value) if self.min_std.value > 0 else None,
            split=parse_split(self.split.value),
            seed=int(self.seed.value),
            split_by=self.split_by.value,
            block_size=single_value(parse_sizes(self.block_size.value, "block size"))
            if self.split_by.value == "blocks"
            else None,
            pad_mode=self.pad_mode.value,
            pad_value=self.pad_value.value,
            relabel=bool(self.relabel.value),
            overwrite=bool(self.overwrite.value),
            stem=self.stem.value.strip(),
            image_name=image.name,
            mask_name=None if mask_layer is None else mask_layer.name,
            mask_class_ids=class_ids,
            **self._resolution(image, data),
        )
        grid_layer = self.grid_combo.value
        placement = None if grid_layer is None else grid_placement(grid_layer.metadata)
        if placement is not None:  # a placed grid exports exactly its patches
            options = options.replace(placement=placement)
        if self.only_selected.value:
            try:
                indices = self.selected_export_indices(data, options)
            except GridError as err:  # the export's own layout is invalid
                raise ExportError(str(err)) from None
            options = options.replace(indices=indices)
        return out_dir, image_levels(image) or data, mask, options

    def placement_labels(self) -> Any:
        """The labels the chosen grid's placement read (its mask layer), or None (then the
        export's mask)."""
        name = (_grid_metadata(self.grid_combo.value) or {}).get("mask_layer")
        if name is None or name not in self._viewer.layers:
            return None
        return full_resolution_data(self._viewer.layers[name])

    def _mask(self, image, data, channel_axis) -> tuple[Any, Optional[dict]]:
        """The chosen mask's array (annotations painted) and its class ids (or None)."""
        mask_layer = self.mask_combo.value
        if isinstance(mask_layer, napari.layers.Shapes):
            painted = annotation_mask(
                *mask_layer.as_layer_data_tuple()[:2],
                spatial_shape(data.shape, channel_axis),
                list(image.scale),
                list(image.translate),
            )
            return painted.labels, painted.class_ids or None
        if mask_layer is None:
            return None, None
        mask = full_resolution_data(mask_layer)
        if isinstance(mask, np.ndarray):
            mask = mask.copy()  # painting during the export must not change what is written
        return mask, None

    def update_preview(self, _value: Any = None) -> str:
        """Show what the export will write (or why it cannot run yet); returns the text."""
        if not hasattr(self, "preview"):  # still being built
            return ""
        try:
            _out, image, mask, options = self.export_request(need_folder=False)
            plan = plan_export(image, mask, options, labels=self.placement_labels())
        except ValueError as err:  # ExportError, GridError
            text = f"cannot export yet: {err}"
        else:
            text = preview_text(plan, mask)
        self.preview.value = text
        return text

    # -- running -------------------------------------------------------------------
    @property
    def worker(self):
        """The running export's worker, or None."""
        return self.jobs.worker

    @property
    def running(self) -> bool:
        return self.jobs.running

    def _on_export(self, _value=None) -> None:
        try:
            self.start_export()
        except (ValueError, JobError) as err:  # ExportError, GridError: says what to change
            self.jobs.report_error(err)

    def start_export(self):
        """Plan the export from the form (checked once, here), then run the plan in a
        worker thread; returns the worker."""
        if self.running:
            raise JobError("an export is already running; wait for it or cancel it.")
        out_dir, image, mask, options = self.export_request()
        # before any file is touched
        plan = plan_export(image, mask, options, labels=self.placement_labels())
        return self.jobs.start(
            run_export(out_dir, plan, image, mask),
            self._on_done,
            message=f"exporting {plan.n_patches:,} patches...",
            describe=lambda step: f"{step.done} / {step.total} patches",
            cancelled=_cancelled_message,
            inputs=[self.image_combo.value, self.mask_combo.value],
        )

    def cancel(self, _value=None) -> None:
        """Stop the running export after the current patch."""
        self.jobs.cancel()

    def _on_done(self, result: ExportResult) -> None:
        self.last_result = result
        remember_reader_for(result.out_dir)  # File > Open Folder on it never asks for a reader
        text = result.message + "".join(f". {note}" for note in result.notes)  # not placed
        self.status.value = f"exported {text}"
        show_info(f"Exported {text}")


def _cancelled_message(step: Optional[ExportProgress]) -> str:
    done = "" if step is None else f" after {step.done} of {step.total} patches"
    return f"cancelled{done}; export again with the same settings to resume."
