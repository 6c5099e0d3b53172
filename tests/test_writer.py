"""The npe2 writer (no viewer)."""

import numpy as np
import pytest

from napari_patchwork.export import (
    ExportError,
)


def test_writer_with_an_emptied_grid_says_what_to_do(tmp_path):
    from napari_patchwork._writer import write_patch_folder

    image = np.zeros((32, 32), np.uint8)
    grid_meta = {
        "name": "grid",
        "features": {"index": np.array([], np.int64)},
        "metadata": {
            "napari_patchwork": {
                "patch_size": [16, 16],
                "stride": [16, 16],
                "edge": "drop",
                "n_patches": 4,
            }
        },
    }
    with pytest.raises(ExportError, match="no rectangle left"):
        write_patch_folder(
            str(tmp_path / "o"), [(image, {"name": "img"}, "image"), ([], grid_meta, "shapes")]
        )
