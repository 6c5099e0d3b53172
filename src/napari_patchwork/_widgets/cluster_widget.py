"""Cluster-segmentation widget: k-means on the pixels of an Image layer.

Thin GUI over :mod:`napari_patchwork.cluster`: the widget turns layers into core
arguments and results back into layers. Clustering and the k-choice scores run as jobs
of the widgets' :class:`~napari_patchwork._widgets._jobs.JobRunner`: progress bar,
*Cancel* at the next block of pixels (also when the viewer closes), errors as napari
notifications, never tracebacks.

Layers made (all on the image's pixel grid, with its scale and translate):

* ``"<image> clusters"``: Labels, ids 1..k by the core's documented order (1 =
  darkest centre), 0 outside the ROI; the parameters, seed included, and the model
  are in ``metadata["napari_patchwork.cluster"]``;
* ``"<image> posterised"`` (optional): Image, every pixel replaced by its centre;
* ``"<image> foreground"``: Labels 0/1 from the clusters chosen in the list.
"""

from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
)
from napari.utils.notifications import show_info

from napari_patchwork._common import rescaled
from napari_patchwork._layer_data import CLUSTERS_METADATA_KEY, full_resolution_data
from napari_patchwork._widgets._jobs import JobError, JobRunner
from napari_patchwork._widgets._layers import (
    add_tooltips,
    image_channel_axis,
    layer_choices,
    spatial_transform,
    update_or_add_layer,
)
from napari_patchwork._widgets.cluster_table import (
    TABLE_ROWS_SHOWN,
    centre_decimals,
    fill_table,
    format_centre,
    make_table,
)
from napari_patchwork._widgets.forms import ScrollingForm
from napari_patchwork.cluster import (
    CHANNEL_SCALINGS,
    ClusterError,
    ClusterResult,
    FeatureOptions,
    KScores,
    choose_k_steps,
    cluster_pixels_steps,
)
from napari_patchwork.cluster.fit import FIT_SHARE, READ_SHARE

METADATA_KEY = CLUSTERS_METADATA_KEY
FOREGROUND_METADATA_KEY = "napari_patchwork.foreground"
CLUSTERS_SUFFIX = " clusters"
POSTERISED_SUFFIX = " posterised"
FOREGROUND_SUFFIX = " foreground"
ELBOW_DOCK_NAME = "k scores (Patchwork)"


CLUSTER_TOOLTIPS = {
    "image_combo": "The Image layer whose pixels are clustered (RGB, grey or any number of channels).",
    "n_clusters": "k: how many clusters. Ids 1..k are numbered by brightness (1 = darkest centre).",
    "seed": "Random seed of the sampling and k-means; the same seed gives the same labels.",
    "posterise": "Also add '<image> posterised': every pixel replaced by its cluster centre.",
    "run_button": "Cluster the image in the background; the result is '<image> clusters'.",
    "cancel_button": "Stop the running job at its next step; no layer is changed.",
    "table": "Cluster centres (channel values), pixel counts and shares of the clustered pixels.",
    "foreground_select": "The clusters that make up the foreground (ctrl/shift-click to pick several).",
    "mask_button": "Make '<image> foreground' (0/1 Labels) from the chosen clusters, for the grid and the export.",
    "k_min": "Smallest k compared by the elbow plot.",
    "k_max": "Largest k compared by the elbow plot.",
    "elbow_button": "Score k min..k max on a sample (inertia, silhouette, Calinski-Harabasz, Davies-Bouldin).",
}
"""Tooltips of the fields that have none where they are made."""


CLUSTERING_SHARE = 0.9
"""Progress of a clustering job once the core has labelled every pixel; the pixel
counts and the posterised image take the rest."""


def cluster_phase(progress: float) -> str:
    """What a clustering job is doing at ``progress`` (see ``start_clustering``'s job)."""
    core = progress / CLUSTERING_SHARE  # the core's own progress (cluster_pixels_steps)
    if core < READ_SHARE:
        return "reading and smoothing the image..."
    if core < FIT_SHARE:
        return "fitting k-means on the sampled pixels..."
    if core < 1.0:
        return f"labelling every pixel ({(core - FIT_SHARE) / (1 - FIT_SHARE):.0%})..."
    return "counting pixels and posterising..."


class ClusterWidget(ScrollingForm):
    """Cluster the pixels of an Image layer (k-means) into a Labels layer.

    Choose the image, an optional ROI (a Labels layer: non-zero = cluster), k,
    spatial weight, smoothing, channel scaling and seed; *Run*. The table lists the
    cluster centres and pixel counts; pick clusters in the list and *Make
    foreground mask* for a 0/1 Labels layer (e.g. for the patch grid's foreground
    filter or the export). *Elbow plot* compares k from k min to k max.
    """

    def __init__(self, viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__()
        self._viewer = viewer
        self.result: ClusterResult | None = None
        self.scores: KScores | None = None
        self._result_layer_name: str | None = None
        self._result_image = None  # the Image layer the result was computed from
        self._canvas = self._elbow_dock = None  # the k-scores plot and its dock

        self._make_fields()
        self._lay_out()
        self.jobs = JobRunner(
            self,
            title="Cluster segmentation",
            viewer=viewer,
            progress=self.progress,
            status=self.status,
            cancel_button=self.cancel_button,
            busy=[self.run_button, self.elbow_button, self.mask_button],
            on_idle=self._on_idle,
        )
        self.run_button.changed.connect(self._on_run)
        self.mask_button.changed.connect(self._on_make_mask)
        self.elbow_button.changed.connect(self._on_elbow)
        self.image_combo.changed.connect(self._on_image_changed)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.reset_choices)
        self.reset_choices()
        self._on_image_changed()

    # -- layer choices -------------------------------------------------------------

    def _make_fields(self) -> None:
        """The form's fields: what to cluster, how, and what to show."""
        self.image_combo = ComboBox(label="image", choices=self._image_choices)
        self.roi_combo = ComboBox(
            label="ROI (labels)",
            choices=self._labels_choices,
            nullable=True,
            tooltip="Optional: only non-zero pixels of this Labels layer are clustered; the rest gets 0.",
        )
        self.channels_first = CheckBox(
            text="first axis is channels",
            value=False,
            tooltip="For a non-RGB multichannel image: axis 0 holds the channels.",
        )
        self.n_clusters = SpinBox(label="clusters (k)", value=5, min=2, max=255)
        self.spatial_weight = FloatSpinBox(
            label="spatial weight",
            value=0.0,
            min=0.0,
            max=1000.0,
            step=0.1,
            tooltip="0 = colour only. Larger = more compact clusters (SLIC-like); positions "
            "use the layer's scale, so anisotropic pixels are handled.",
        )
        self.sigma = FloatSpinBox(
            label="smoothing sigma",
            value=0.0,
            min=0.0,
            max=1000.0,
            step=0.5,
            tooltip="Gaussian smoothing before clustering, in the layer's physical units (0 = none).",
        )
        self.channel_scaling = ComboBox(
            label="channel scaling",
            choices=list(CHANNEL_SCALINGS),
            value="shared",
            tooltip="shared: one scale for all channels (RGB, same units). "
            "per_channel: each channel standardised on its own (unrelated markers).",
        )
        self.seed = SpinBox(label="random seed", value=0, min=0, max=2**31 - 1)
        self.posterise = CheckBox(text="posterised image", value=False)
        self.nan_background = CheckBox(
            text="NaN pixels as background",
            value=False,
            tooltip="Off: NaN or infinite pixels in the ROI are an error. On: they are left out "
            "of the fit and labelled 0, like pixels outside the ROI.",
        )
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", value=0, min=0, max=100)
        self.table = make_table()
        self.foreground_select = Select(label="foreground clusters", choices=self._cluster_choices)
        self.mask_button = PushButton(text="Make foreground mask", enabled=False)
        self.k_min = SpinBox(label="k min", value=2, min=2, max=254)
        self.k_max = SpinBox(label="k max", value=10, min=3, max=255)
        self.elbow_button = PushButton(text="Elbow plot")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)

    def _lay_out(self) -> None:
        """The fields in the order users see them."""
        self.extend(
            [
                self.image_combo,
                self.roi_combo,
                self.channels_first,
                self.n_clusters,
                self.spatial_weight,
                self.sigma,
                self.channel_scaling,
                self.seed,
                self.posterise,
                self.nan_background,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.mask_button,
                self.k_min,
                self.k_max,
                self.elbow_button,
                self.status,
            ]
        )
        add_tooltips(self, CLUSTER_TOOLTIPS)
        # the table and the list span the dock's width (a label column leaves them too narrow)
        self.add_wide(
            self.foreground_select, "foreground clusters (pick one or more)", self.progress
        )
        self.add_wide(
            self.table, "clusters: centre (channel values), pixels, % of pixels", self.progress
        )

    def _image_choices(self, _widget=None) -> list:
        return layer_choices(self._viewer, "image")

    def _labels_choices(self, _widget=None) -> list:
        return layer_choices(self._viewer, "labels")

    def _cluster_choices(self, _widget=None) -> list:
        """(text, id) of the last result's clusters (a callable, so that resetting the
        layer choices when layers are added keeps them)."""
        if self.result is None:
            return []
        centres = self.result.centers
        decimals = centre_decimals(centres)
        return [(f"{i}: {format_centre(c, decimals)}", i) for i, c in enumerate(centres, start=1)]

    def _on_image_changed(self, _value=None) -> None:
        image = self.image_combo.value
        self.channels_first.visible = image is not None and not image.rgb

    # -- options ---------------------------------------------------------------------
    def _common_options(self) -> tuple[Any, FeatureOptions, Any]:
        """The selected image layer, the feature options (validated) and the ROI of both jobs."""
        image = self.image_combo.value
        if image is None:
            raise ClusterError(
                "no Image layer selected: add or open an image, then pick it under 'image'."
            )
        channel_axis = image_channel_axis(image, channels_first=self.channels_first.value)
        data = full_resolution_data(image)
        spatial = tuple(
            s
            for a, s in enumerate(data.shape)
            if channel_axis is None or a != channel_axis % data.ndim
        )
        roi_layer = self.roi_combo.value
        roi = None
        if roi_layer is not None:
            roi = full_resolution_data(roi_layer)
            if tuple(roi.shape) != spatial:
                raise ClusterError(
                    f"ROI '{roi_layer.name}' has shape {tuple(roi.shape)} but image '{image.name}' has "
                    f"spatial shape {spatial}; pick a Labels layer drawn on this image."
                )
        features = FeatureOptions(
            channel_axis=channel_axis,
            channel_scaling=self.channel_scaling.value,
            spatial_weight=float(self.spatial_weight.value),
            sigma=float(self.sigma.value),
            scale=spatial_transform(image, channel_axis)["scale"],
            random_state=int(self.seed.value),
            nan_pixels="background" if self.nan_background.value else "error",
        )
        return image, features, roi

    # -- running -------------------------------------------------------------------
    @property
    def worker(self):
        """The running job's worker, or None."""
        return self.jobs.worker

    @property
    def running(self) -> bool:
        return self.jobs.running

    def _on_run(self, _value=None) -> None:
        try:
            self.start_clustering()
        except (ValueError, JobError) as err:  # ClusterError: the message says what to change
            self.jobs.report_error(err)

    def start_clustering(self):
        """Cluster the selected image in a worker thread; returns the worker."""
        image, features, roi = self._common_options()
        data = full_resolution_data(image)
        n_clusters = int(self.n_clusters.value)
        layer_name = image.name

        posterise = bool(self.posterise.value)

        def job():
            """Clustering, then the pixel counts and the posterised image, all off the
            GUI thread (a dask image's too), with progress in every phase."""
            steps = cluster_pixels_steps(data, n_clusters, features, mask=roi)
            result = yield from rescaled(steps, 0.0, CLUSTERING_SHARE)
            counts = result.pixel_counts
            yield (1 + CLUSTERING_SHARE) / 2
            posterised = result.posterized() if posterise else None
            yield 1.0
            return result, counts, posterised

        def done(outcome: tuple[ClusterResult, np.ndarray, Any]):
            return self._show_result(layer_name, image, *outcome)

        return self.jobs.start(
            job(),
            done,
            message=f"clustering '{image.name}' into {n_clusters} clusters...",
            describe=lambda step: f"clustering '{image.name}': {cluster_phase(step)}",
            inputs=[image, self.roi_combo.value],
        )

    def _on_elbow(self, _value=None) -> None:
        try:
            self.start_elbow()
        except (ValueError, JobError) as err:
            self.jobs.report_error(err)

    def start_elbow(self):
        """Compute the k-choice scores for k min..k max in a worker thread; returns the worker."""
        image, features, roi = self._common_options()
        if self.k_max.value <= self.k_min.value:
            raise ClusterError(
                f"k max ({self.k_max.value}) must be larger than k min ({self.k_min.value})."
            )
        data = full_resolution_data(image)
        ks = range(int(self.k_min.value), int(self.k_max.value) + 1)

        return self.jobs.start(
            choose_k_steps(data, ks, features, mask=roi),
            self._show_scores,
            message=f"comparing k = {ks.start}..{ks.stop - 1} on a sample...",
            inputs=[image, self.roi_combo.value],
        )

    def cancel(self, _value=None) -> None:
        """Stop the running computation at its next progress step."""
        self.jobs.cancel()

    def _on_idle(self) -> None:
        self.mask_button.enabled = self.result is not None

    # -- results -> layers -----------------------------------------------------------
    def _show_result(
        self, image_name: str, image, result: ClusterResult, counts: np.ndarray, posterised
    ):
        """The result's layers, one per turn of the event loop (a generator the job
        runner drives), then the table and the status."""
        channel_axis = result.model.channel_axis
        transform = spatial_transform(image, channel_axis)
        metadata = {
            METADATA_KEY: {
                "image": image_name,
                "params": result.params,
                "model": result.model.to_dict(),
                "pixel_counts": counts.tolist(),
            }
        }
        labels_layer = update_or_add_layer(
            self._viewer,
            image_name + CLUSTERS_SUFFIX,
            "labels",
            data=result.labels,
            metadata=metadata,
            **transform,
        )
        if posterised is not None:
            yield
            update_or_add_layer(
                self._viewer,
                image_name + POSTERISED_SUFFIX,
                "image",
                data=posterised,
                rgb=image.rgb,
                metadata=metadata,
                **spatial_transform(image, None),  # same axes as the image, channels included
            )
        self.result = result
        self._result_layer_name = labels_layer.name
        self._result_image = image
        self._fill_table(result, counts, labels_layer)
        self.status.value = (
            f"{result.model.n_clusters} clusters in '{labels_layer.name}' "
            f"(fitted on {result.params['n_samples']:,} pixels, seed {result.params['random_state']})."
        )
        show_info(self.status.value)

    def _fill_table(self, result: ClusterResult, counts: np.ndarray, labels_layer) -> None:
        fill_table(self.table, result, counts, labels_layer)
        self.foreground_select.reset_choices()
        listed = self.foreground_select.native  # as many rows as the table shows
        shown = min(len(result.centers), TABLE_ROWS_SHOWN)
        listed.setFixedHeight(
            2 * listed.frameWidth() + sum(listed.sizeHintForRow(row) for row in range(shown))
        )

    def _on_make_mask(self, _value=None) -> None:
        try:
            self.make_foreground_mask()
        except (ValueError, JobError) as err:
            self.jobs.report_error(err)

    def make_foreground_mask(self):
        """Labels layer ``"<image> foreground"`` (0/1) from the clusters chosen in the list."""
        if self.result is None:
            raise ClusterError("run the clustering first, then choose the foreground clusters.")
        chosen = sorted(int(i) for i in self.foreground_select.value)
        if not chosen:
            raise ClusterError("choose one or more clusters in 'foreground clusters' first.")
        image = self._result_image
        mask = self.result.foreground(chosen)
        layer = update_or_add_layer(
            self._viewer,
            image.name + FOREGROUND_SUFFIX,
            "labels",
            data=mask,
            metadata={
                FOREGROUND_METADATA_KEY: {
                    "clusters_layer": self._result_layer_name,
                    "cluster_ids": chosen,
                }
            },
            **spatial_transform(image, self.result.model.channel_axis),
        )
        self.status.value = f"foreground = clusters {chosen} in '{layer.name}'."
        show_info(self.status.value)
        return layer

    def _show_scores(self, scores: KScores) -> None:
        self.scores = scores
        try:
            canvas = self._plot_canvas()
        except ImportError:
            self.jobs.report_error(
                ClusterError("the elbow plot needs matplotlib: pip install matplotlib")
            )
            return
        figure = canvas.figure
        figure.clear()
        panels = [
            ("inertia (elbow)", scores.inertia),
            ("silhouette (higher: better)", scores.silhouette),
            ("Calinski-Harabasz (higher: better)", scores.calinski_harabasz),
            ("Davies-Bouldin (lower: better)", scores.davies_bouldin),
        ]
        for index, (title, values) in enumerate(panels, start=1):
            axes = figure.add_subplot(2, 2, index)
            axes.plot(scores.k, values, marker="o")
            axes.set_title(title, fontsize=7)
            axes.set_xticks(scores.k)
            axes.tick_params(labelsize=7)
        figure.tight_layout()
        canvas.draw_idle()
        best = int(scores.k[np.argmax(scores.silhouette)])
        self.status.value = (
            f"k = {scores.k[0]}..{scores.k[-1]} scored on {scores.n_scored:,} pixels "
            f"(silhouette on {scores.n_silhouette:,}); best silhouette at k = {best}."
        )

    def _plot_canvas(self):
        """The matplotlib canvas of the k scores, in a dock of its own, made on first use.

        Its own dock (floating, beside the viewer) keeps the cluster form short; closing
        it deletes the canvas, and the next elbow plot makes a new one.
        """
        if self._canvas is None:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure

            canvas = FigureCanvasQTAgg(Figure(figsize=(4.8, 3.6)))
            canvas.setMinimumSize(320, 240)
            dock = self._viewer.window.add_dock_widget(
                canvas, name=ELBOW_DOCK_NAME, area="right", add_vertical_stretch=False
            )
            dock.setFloating(True)
            dock.resize(520, 420)
            canvas.destroyed.connect(self._forget_canvas)
            self._canvas, self._elbow_dock = canvas, dock
        self._elbow_dock.show()  # again, if the user closed it
        self._elbow_dock.raise_()
        return self._canvas

    def _forget_canvas(self, _object=None) -> None:
        self._canvas = self._elbow_dock = None
