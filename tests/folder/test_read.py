"""Reading a patch folder."""

import pytest
from patch_folders import sample_pair

from napari_patchwork.export import (
    export_patches,
)
from napari_patchwork.folder import PatchFolderError, read_patch_folder


def test_read_patch_folder_refuses_foreign_and_damaged_folders(tmp_path):
    with pytest.raises(PatchFolderError, match="not a patch folder"):
        read_patch_folder(tmp_path)
    image, mask = sample_pair()
    out = tmp_path / "out"
    export_patches(out, image, mask, patch_size=20, channel_axis=-1)
    lines = (out / "manifest.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",0,20,0,20,", ",0,20,0,21,")
    (out / "manifest.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PatchFolderError, match="does not match the grid"):
        read_patch_folder(out)
