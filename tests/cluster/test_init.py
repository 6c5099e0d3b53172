"""The cluster package: importing it pulls in no GUI."""

import subprocess
import sys

from hypothesis import HealthCheck, settings

from napari_patchwork.sample import sample_image

IHC = sample_image()  # (512, 512, 3) uint8, a real RGB photo
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_core_imports_neither_napari_nor_qt():
    code = (
        "import sys, napari_patchwork.cluster\n"
        "gui = [m for m in ('napari', 'qtpy', 'PyQt5') if m in sys.modules]\n"
        "assert not gui, gui\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
