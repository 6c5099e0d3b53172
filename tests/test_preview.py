"""Patch previews and overview figures (their content, not only their files)."""

import imageio.v3 as iio
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from napari_patchwork.export import export_patches
from napari_patchwork.grid import make_grid
from napari_patchwork.preview import (
    FILTERED_COLOR,
    KEPT_COLOR,
    Panel,
    PatchMarks,
    draw_overview,
    draw_patch_preview,
    folder_marks,
    render,
    write_preview,
)
from napari_patchwork.sample import sample_image, sample_mask
from napari_patchwork.thumbnail import PreviewError

KEPT = np.rint(np.array(to_rgb(KEPT_COLOR)) * 255).astype(np.uint8)
FILTERED = np.rint(np.array(to_rgb(FILTERED_COLOR)) * 255).astype(np.uint8)


# -- patch previews ------------------------------------------------------------------------
def _pixel(fig, x, y):
    """Row and column of the figure pixel at data point (x, y) of its image axes."""
    ax = fig.axes[0]
    px, py = ax.transData.transform((x, y))
    return int(fig.bbox.height - py), int(px)


def test_kept_patches_have_the_kept_colour_on_their_rectangle_border():
    image = sample_image()
    grid = make_grid(image.shape, 128, channel_axis=-1)
    kept = np.zeros(grid.n_patches, bool)
    kept[[5, 10]] = True  # inner patches: (128..256, 128..256) and (256..384, 256..384)
    fig = draw_patch_preview(image, grid.boxes, kept, channel_axis=-1)
    pixels = render(fig)
    assert pixels.shape[:2] == (1024 + 44, 1024)  # enlarged 2x (to >= 800 px), legend below
    for index in (5, 10):
        (y0, x0), (y1, x1) = grid.boxes[index]
        along = np.linspace(y0 + 8, y1 - 8, 9)
        for x in (x0, x1):  # left and right edges: the border pixel nearest the line
            for y in along:
                r, c = _pixel(fig, x, y)
                row = pixels[r, c - 2 : c + 2]
                assert any(np.array_equal(p, KEPT) for p in row), (index, x, y, row)
        for y in (y0, y1):
            for x in np.linspace(x0 + 8, x1 - 8, 9):
                r, c = _pixel(fig, x, y)
                column = pixels[r - 2 : r + 2, c]
                assert any(np.array_equal(p, KEPT) for p in column), (index, x, y, column)
        r, c = _pixel(fig, (x0 + x1) / 2, (y0 + y1) / 2)
        assert not np.any(np.all(pixels[r - 20 : r + 20, c - 20 : c + 20] == KEPT, axis=-1))
    # a filtered patch away from the kept ones: orange lines, no cyan
    (y0, x0), (y1, x1) = grid.boxes[15]
    (r0, c0), (r1, c1) = _pixel(fig, x0 + 4, y0 + 4), _pixel(fig, x1 - 4, y1 - 4)
    inside = pixels[r0:r1, c0:c1]
    assert np.all(inside == FILTERED, axis=-1).sum() > 500
    assert not np.any(np.all(inside == KEPT, axis=-1))


def test_preview_is_at_most_2000_px_with_its_legend(tmp_path):
    image = np.broadcast_to(np.uint16(300), (9000, 3001))
    grid = make_grid(image.shape, 512, edge="pad")
    kept = np.arange(grid.n_patches) % 2 == 0
    split = ["train" if i % 4 == 0 else ("val" if k else "") for i, k in enumerate(kept)]
    path = write_preview(tmp_path / "p.png", image, grid.boxes, kept, split, title="tall")
    picture = iio.imread(path)
    assert max(picture.shape[:2]) <= 2000 and picture.shape[0] > 1800
    with pytest.raises(FileExistsError):
        write_preview(path, image, grid.boxes, kept, split)
    small = write_preview(tmp_path / "s.png", image, grid.boxes, kept, max_side=300)
    assert max(iio.imread(small).shape[:2]) <= 300


def test_patch_marks_check_their_input_and_merge_3d_footprints():
    with pytest.raises(PreviewError, match=r"\(N, 2, ndim\)"):
        PatchMarks(np.zeros((3, 3)), [True] * 3)
    with pytest.raises(PreviewError, match="2 boxes but 3 kept"):
        PatchMarks(np.zeros((2, 2, 2)), [True] * 3)
    grid = make_grid((6, 40, 40), (2, 20, 20))  # 3 z-levels of 2 x 2 footprints
    kept = np.zeros(grid.n_patches, bool)
    kept[grid.n_patches - 1] = True  # only the last z-level's last footprint
    split = ["val" if k else "" for k in kept]
    marks = PatchMarks(grid.boxes, kept, split).footprints()
    assert marks.boxes.shape == (4, 2, 2) and marks.kept.tolist() == [False, False, False, True]
    assert marks.split == ("", "", "", "val")


def test_folder_marks_are_the_grid_with_the_manifest_kept_in_source_pixels(tmp_path):
    image, mask = sample_image(), sample_mask()
    result = export_patches(tmp_path / "p", image, mask, patch_size=64, downsample=2,
                            edge="pad", channel_axis=-1, min_foreground=0.25,
                            split=(0.5, 0.5), seed=1)  # fmt: skip
    marks = folder_marks(tmp_path / "p")
    source_grid = make_grid(image.shape, 128, edge="pad", channel_axis=-1)
    assert np.array_equal(marks.boxes, source_grid.boxes)
    assert marks.kept.sum() == result.n_patches == len(result.rows) < source_grid.n_patches
    for row in result.rows:
        assert marks.kept[row["index"]] and marks.split[row["index"]] == row["split"]
    assert all(s == "" for s, k in zip(marks.split, marks.kept) if not k)
    assert marks.split_names == ["train", "val"]


def test_overview_has_one_titled_panel_each():
    image, mask = sample_image(), sample_mask()
    grid = make_grid(image.shape, 128, channel_axis=-1)
    marks = PatchMarks(grid.boxes, np.arange(16) < 8)
    panels = [Panel("photo", image, channel_axis=-1), Panel("nuclei", mask, "labels"),
              Panel("ids", (mask > 0).astype(np.uint8) + 1, "clusters"),
              Panel("grid", image, channel_axis=-1, marks=marks)]  # fmt: skip
    fig = draw_overview(panels, columns=2, panel_px=200)
    assert [ax.get_title() for ax in fig.axes] == ["photo", "nuclei", "ids", "grid"]
    pixels = render(fig)
    assert pixels.shape[1] == 400 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000
    with pytest.raises(PreviewError, match="kind"):
        draw_overview([Panel("x", mask, "blobs")])


def test_pictures_use_no_pyplot_state():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from napari_patchwork.preview import draw_patch_preview, render\n"
        "render(draw_patch_preview(np.zeros((64, 64), np.uint8), [[[0, 0], [32, 32]]], [True]))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
