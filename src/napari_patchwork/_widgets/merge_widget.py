"""Merge-predictions widget: model outputs for the patches of a patch folder, merged into one
layer that lies on the stitched image.

Thin GUI over :func:`napari_patchwork._reader.prediction_layer_data` (which calls
:func:`napari_patchwork.stitch.stitch`).
"""

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, PushButton
from napari.utils.notifications import show_error, show_info

from napari_patchwork._reader import PREDICTIONS_DIR, prediction_layer_data
from napari_patchwork._widgets._layers import update_or_add_layer
from napari_patchwork._widgets.forms import ScrollingForm
from napari_patchwork.folder import PatchFolderError, is_patch_folder
from napari_patchwork.merge import MERGE_MODES, MergeError

AUTO = "auto"
"""Merge choice: ``center`` for integer (label) predictions, ``gaussian`` for scores."""


class MergeWidget(ScrollingForm):
    """Pick a patch folder and a folder of predictions named like its image patches, a merge
    mode and optionally arg-max over channels; **Merge** adds (or updates) the layer
    ``"<image> predictions"``: Labels for integer results, Image for float ones."""

    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__()
        self.viewer = viewer
        self.folder_edit = FileEdit(
            mode="d",
            label="patch folder",
            tooltip="A folder written by the export (with dataset.json and manifest.csv).",
        )
        self.predictions_edit = FileEdit(
            mode="d",
            label="predictions",
            tooltip="Model outputs named like the image patches (TIFF, PNG or NPY); "
            "default: the patch folder's 'predictions' sub-folder.",
        )
        self.merge_combo = ComboBox(choices=(AUTO,) + MERGE_MODES, value=AUTO, label="merge")
        self.merge_combo.tooltip = (
            "where patches overlap: auto = center for labels, gaussian for scores; "
            "center = nearest patch centre; mean/gaussian/hann = weighted average; "
            "max; vote = majority label (integer predictions)"
        )
        self.argmax_check = CheckBox(
            text="arg-max over channels",
            tooltip="Class scores to labels: each pixel gets the index of its largest channel.",
        )
        self.run_button = PushButton(
            text="Merge", tooltip="Merge the predictions into one layer on the stitched image."
        )
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # long messages wrap instead of widening the form
        self.extend(
            [
                self.folder_edit,
                self.predictions_edit,
                self.merge_combo,
                self.argmax_check,
                self.run_button,
                self.status,
            ]
        )
        self.folder_edit.changed.connect(self._folder_changed)
        self.run_button.changed.connect(self.run)

    def _folder_changed(self, *_):
        """Default the predictions to the folder's ``predictions`` sub-folder if it exists."""
        beside = Path(self.folder_edit.value) / PREDICTIONS_DIR
        if beside.is_dir():
            self.predictions_edit.value = beside

    def run(self, *_):
        """Merge the predictions and add or update their layer."""
        folder, predictions = Path(self.folder_edit.value), Path(self.predictions_edit.value)
        if not is_patch_folder(folder):
            return self._fail(f"{folder} is not a patch folder of napari-patchwork.")
        mode = None if self.merge_combo.value == AUTO else self.merge_combo.value
        try:
            data, meta, layer_type = prediction_layer_data(
                folder, predictions, merge=mode, argmax=self.argmax_check.value
            )
        except (PatchFolderError, MergeError) as err:
            return self._fail(str(err))
        layer = update_or_add_layer(self.viewer, meta.pop("name"), layer_type, data=data, **meta)
        merge = meta["metadata"]["napari_patchwork"]["merge"]
        message = f"{layer.name}: {layer_type}, {data.dtype}, merged with {merge}"
        self.status.value = message
        show_info(message)
        return layer

    def _fail(self, message: str) -> None:
        self.status.value = message
        show_error(message)
