"""npe2 sample-data contribution: the bundled IHC image and its nuclei mask."""

from __future__ import annotations

from napari_patchwork.sample import sample_image, sample_mask


def make_sample_data() -> list[tuple]:
    """Layer data tuples: the RGB image and the nuclei labels."""
    return [
        (sample_image().copy(), {"name": "ihc", "rgb": True}, "image"),
        (sample_mask().copy(), {"name": "nuclei"}, "labels"),
    ]
