"""Fixtures shared by the tests: notifications of the widget tests, sample napari layers."""

import os
import tempfile

import numpy as np
import pytest

# napari's settings (the reader preferences the plugin and the command line store) go to a
# file of this test run, never to the user's own napari settings
os.environ.setdefault(
    "NAPARI_CONFIG", os.path.join(tempfile.mkdtemp(prefix="patchwork-napari-"), "settings.yaml")
)

SAMPLE_SCALE, SAMPLE_TRANSLATE = (0.5, 0.25), (10.0, -4.0)


@pytest.fixture
def notifications():
    """napari notifications emitted during the test (errors included), in order."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture
def sample_layers():
    """``sample_layers(shape=(120, 150))`` -> RGB Image ``"he"`` and Labels ``"nuclei"``
    (ids 3 and 900) of that spatial shape, both with scale (0.5, 0.25) and translate
    (10, -4)."""
    import napari

    def sample_layers(shape=(120, 150)):
        rng = np.random.default_rng(0)
        image = napari.layers.Image(
            rng.integers(0, 255, (*shape, 3), dtype=np.uint8),
            name="he",
            rgb=True,
            scale=SAMPLE_SCALE,
            translate=SAMPLE_TRANSLATE,
        )
        mask = np.zeros(shape, np.int32)
        mask[10:60, 20:90] = 3
        mask[70:110, 100:140] = 900
        labels = napari.layers.Labels(
            mask, name="nuclei", scale=SAMPLE_SCALE, translate=SAMPLE_TRANSLATE
        )
        return image, labels

    return sample_layers
