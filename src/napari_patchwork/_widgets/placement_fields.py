"""The Grid tab's placement fields: where patches go (grid, around objects, at the points of
a Points layer, at random, balanced by class), turned into a core
:class:`~napari_patchwork.placement.Placement`.

Only the fields of the chosen placement are shown. The Labels layer a placement reads is
the Grid tab's *mask (labels)*.
"""

from typing import Any, Optional

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

from napari_patchwork._widgets._layers import layer_choices, spatial_transform
from napari_patchwork.placement import (
    PLACEMENT_KINDS,
    Placement,
    PlacementError,
    world_to_pixels,
)

PLACEMENT_TOOLTIPS = {
    "kind": "Where patches go. grid: a regular grid. objects: one patch centred on each "
    "label of the mask. points: one centred on each point of a Points layer. random: N "
    "patches at seeded random positions. balanced: N patches per class of the mask.",
    "points_combo": "The Points layer whose points centre the patches (its world "
    "coordinates are mapped onto the image's pixels with both layers' scale and translate).",
    "n": "random: how many patches. balanced: how many patches per class.",
    "classes": "objects: only these label ids (or, for a semantic mask, these class "
    "values); balanced: these classes. Ids separated by spaces or commas; empty = all.",
    "connected": "objects: the mask is semantic (one value per class): each connected "
    "region of one value is an object. Off: each label id is one object (instance mask).",
    "seed": "random and balanced: the same seed gives the same patches.",
    "max_overlap": "random: the largest share of a patch that another patch may cover "
    "(1 = no cap; the same patch is never placed twice).",
}


class PlacementFields:
    """The placement widgets (added to a form by the caller) and the Placement they make."""

    def __init__(self, viewer: Any):
        self._viewer = viewer
        self.kind = ComboBox(label="placement", choices=list(PLACEMENT_KINDS), value="grid")
        self.points_combo = ComboBox(
            label="points layer", choices=self._points_choices, nullable=True
        )
        self.n = SpinBox(label="N", value=50, min=1, max=10_000_000)
        self.classes = LineEdit(label="classes (ids)", value="")
        self.connected = CheckBox(text="semantic mask", value=False)
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.max_overlap = FloatSpinBox(label="max overlap", value=1.0, min=0.0, max=1.0, step=0.05)
        for name, tip in PLACEMENT_TOOLTIPS.items():
            getattr(self, name).tooltip = tip
        self.kind.changed.connect(self._on_kind)
        self._on_kind()

    @property
    def widgets(self) -> list:
        return [
            self.kind,
            self.points_combo,
            self.n,
            self.classes,
            self.connected,
            self.seed,
            self.max_overlap,
        ]

    def _points_choices(self, _widget=None) -> list:
        return layer_choices(self._viewer, "points")

    def _on_kind(self, _value=None) -> None:
        kind = self.kind.value
        self.points_combo.visible = kind == "points"
        self.n.visible = self.seed.visible = kind in ("random", "balanced")
        self.classes.visible = kind in ("objects", "balanced")
        self.connected.visible = kind == "objects"
        self.max_overlap.visible = kind == "random"
        if kind == "points" and self.points_combo.value is None:
            self.points_combo.reset_choices()

    def placement(
        self, image: Any, channel_axis: Optional[int], min_foreground: float = 0.0
    ) -> Optional[Placement]:
        """The chosen :class:`Placement` for ``image`` (None: the regular grid)."""
        kind = self.kind.value
        if kind == "grid":
            return None
        points = self.points_in_pixels(image, channel_axis) if kind == "points" else None
        return Placement(
            kind=kind,
            n=self.n.value if kind in ("random", "balanced") else None,
            classes=self.class_ids() if kind in ("objects", "balanced") else None,
            points=points,
            seed=self.seed.value,
            min_foreground=min_foreground if kind == "random" else 0.0,
            max_overlap=self.max_overlap.value if kind == "random" else 1.0,
            connected=bool(self.connected.value) and kind == "objects",
        )

    def class_ids(self) -> Optional[tuple[int, ...]]:
        text = self.classes.value.replace(",", " ").split()
        if not text:
            return None
        try:
            return tuple(int(t) for t in text)
        except ValueError:
            raise PlacementError(
                f"classes {self.classes.value!r}: give label ids (whole numbers) separated by "
                "spaces or commas, or leave it empty for all."
            ) from None

    def points_in_pixels(self, image: Any, channel_axis: Optional[int]) -> np.ndarray:
        """The chosen Points layer's points as pixel positions of ``image``'s spatial axes."""
        layer = self.points_combo.value
        if layer is None:
            raise PlacementError(
                "the 'points' placement needs a Points layer: add one (Layers > New Points) "
                "and click points, then pick it under 'points layer'."
            )
        transform = spatial_transform(image, channel_axis)
        n = len(transform["scale"])
        data = np.asarray(layer.data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] < n:
            raise PlacementError(
                f"Points layer '{layer.name}' has {data.shape[-1]}-D points; the image has "
                f"{n} spatial axes."
            )
        world = data * np.asarray(layer.scale) + np.asarray(layer.translate)
        return world_to_pixels(world[:, -n:], transform["scale"], transform["translate"])
