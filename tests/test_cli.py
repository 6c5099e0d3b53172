"""The command line, through subprocess: exit codes, messages, outputs."""

import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_patchwork.sample import sample_image, sample_mask


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "napari_patchwork.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_demo_tiles_the_sample_and_stitches_it_back(tmp_path):
    result = run("demo", tmp_path / "demo", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "16 patches" in result.stdout and "identical to the input" in result.stdout
    assert "clustered into k=4" in result.stdout and (tmp_path / "demo" / "clusters.tif").exists()
    assert "tiled where the darkest cluster covers" in result.stdout
    images = sorted((tmp_path / "demo" / "patches" / "images").iterdir())
    masks = sorted((tmp_path / "demo" / "patches" / "masks").iterdir())
    assert len(images) == len(masks) == 16
    assert images[1].name == "ihc_01_y0_x128.tif"
    assert tifffile.imread(images[1]).shape == (128, 128, 3)
    assert np.array_equal(tifffile.imread(masks[1]), sample_mask()[:128, 128:256])
    overview = iio.imread(tmp_path / "demo" / "overview.png")
    assert overview.shape == (800, 1080, 3)  # 3 x 2 panels of 360 px with titles
    assert len(np.unique(overview.reshape(-1, 3), axis=0)) > 5000  # photos, not a blank page
    for folder in ("patches", "patches-cluster1"):
        preview = iio.imread(tmp_path / "demo" / folder / "preview.png")
        assert preview.shape == (1024 + 44, 1024, 3)


def test_demo_overview_has_the_expected_panels(tmp_path):
    from napari_patchwork.cli.demo import demo_overview
    from napari_patchwork.cluster import cluster_pixels
    from napari_patchwork.export import export_patches

    image, mask = sample_image(), sample_mask()
    clusters = cluster_pixels(image, 4, channel_axis=-1, random_state=0)
    export_patches(tmp_path / "patches", image, mask, patch_size=128, channel_axis=-1)
    export_patches(tmp_path / "patches-cluster1", image, clusters.foreground([1]),
                   patch_size=128, channel_axis=-1, min_foreground=0.2)  # fmt: skip
    fig = demo_overview(tmp_path, clusters, 128)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 6
    for word, title in zip(["sample", "mask", "clusters", "posterised", "1. patches", "4. kept"],
                           titles):  # fmt: skip
        assert title.startswith(word), titles
    assert "152 nuclei" in titles[1] and "k = 4" in titles[2]


@pytest.fixture
def slide_files(tmp_path):
    image, mask = sample_image(), sample_mask()
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / f"{name}.tif", image, photometric="rgb")
        tifffile.imwrite(tmp_path / f"{name}_mask.tif", mask)
    return tmp_path


def test_tile_several_images_with_glob_and_mask_pattern_then_stitch(slide_files):
    d = slide_files
    result = run(
        "tile",
        d / "[ab].tif",
        "--mask",
        str(d / "{stem}_mask.tif"),
        "--size",
        "100",
        "--edge",
        "pad",
        "--min-foreground",
        "0.2",
        "--split",
        "0.5",
        "0.5",
        "-o",
        d / "out",
    )
    assert result.returncode == 0, result.stderr
    assert "a.tif" in result.stdout and "b.tif" in result.stdout
    for name in ("a", "b"):
        manifest = (d / "out" / name / "manifest.csv").read_text().splitlines()
        assert manifest[0].startswith("index,split,image,mask")
        assert 1 < len(manifest) - 1 < 36  # some of the 6 x 6 patches are under 20 % nuclei
    result = run("stitch", d / "out" / "a", "-o", d / "a_back.tif")
    assert result.returncode == 0, result.stderr
    back, back_mask = tifffile.imread(d / "a_back.tif"), tifffile.imread(d / "a_back_mask.tif")
    assert back.shape == (512, 512, 3) and back_mask.dtype == np.uint16
    kept = back_mask > 0  # patches under the threshold were not exported: compare where kept
    assert np.array_equal(back_mask[kept], sample_mask()[kept])


def test_stitch_everything_exact(slide_files):
    d = slide_files
    assert (
        run(
            "tile", d / "a.tif", "--mask", d / "a_mask.tif", "--size", "64", "-o", d / "t"
        ).returncode
        == 0
    )
    assert run("stitch", d / "t", "-o", d / "back.npy").returncode == 0
    assert np.array_equal(np.load(d / "back.npy"), sample_image())
    assert np.array_equal(np.load(d / "back_mask.npy"), sample_mask())


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["tile", "missing.tif", "--size", "64", "-o", "out"], "missing.tif: no such file", 2),
        (["tile", "nothing*.tif", "--size", "64", "-o", "out"], "no file matches", 2),
        (["tile", "a.tif", "--size", "0", "-o", "out"], "at least 1 pixel", 2),
        (["tile", "a.tif", "--size", "1000", "-o", "out"], "larger than the image", 2),
        (
            ["tile", "a.tif", "b.tif", "--mask", "a_mask.tif", "--size", "64", "-o", "out"],
            "use a pattern such as",
            2,
        ),
        (["tile", "a.tif", "--mask", "a.tif", "--size", "64", "-o", "out"], "mask", 2),
        (
            ["tile", "a.tif", "--size", "64", "--channel-axis", "x", "-o", "out"],
            "--channel-axis",
            2,
        ),
        (["tile", "broken.tif", "--size", "64", "-o", "out"], "cannot read it as an image", 1),
        (["stitch", "a_mask.tif", "-o", "x.tif"], "patch folder", 2),
    ],
)
def test_bad_input_one_line_message_and_exit_code(slide_files, args, message, code):
    (slide_files / "broken.tif").write_bytes(b"not a tiff at all")
    result = run(*args, cwd=slide_files)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-patchwork: error:"), result.stderr
    assert message in lines[0]


def test_existing_foreign_folder_is_not_overwritten(slide_files):
    d = slide_files
    (d / "busy").mkdir()
    (d / "busy" / "thesis.docx").write_text("precious")
    result = run("tile", d / "a.tif", "--size", "64", "-o", d / "busy")
    assert result.returncode == 2 and "overwrite" in result.stderr
    assert (d / "busy" / "thesis.docx").read_text() == "precious"


def test_help_explains_every_option():
    result = run("tile", "--help")
    assert result.returncode == 0
    for option in (
        "--mask",
        "--size",
        "--stride",
        "--edge",
        "--format",
        "--min-foreground",
        "--split",
        "--scheduler",
        "--overwrite",
        "--channel-axis",
        "--preview",
        "--no-preview",
    ):
        assert option in result.stdout
    assert "ome-tif" in result.stdout  # the format aliases are offered
    cluster = run("cluster", "--help")
    assert cluster.returncode == 0 and "--posterized" in cluster.stdout


def test_cluster_writes_labels_and_reapplies_a_saved_model(slide_files):
    d = slide_files
    result = run(
        "cluster", d / "a.tif", "-k", "4", "--save-model", d / "model.json", "-o", d / "labels.tif"
    )
    assert result.returncode == 0, result.stderr
    labels = tifffile.imread(d / "labels.tif")
    assert labels.shape == (512, 512) and labels.dtype == np.uint8
    assert sorted(np.unique(labels)) == [1, 2, 3, 4]
    again = run("cluster", d / "[ab].tif", "--model", d / "model.json", "-o", d / "applied")
    assert again.returncode == 0, again.stderr
    for name in ("a", "b"):  # b.tif is the same picture: same ids from the saved model
        assert np.array_equal(tifffile.imread(d / "applied" / f"{name}_clusters.tif"), labels)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "1"], "at least 2"),
        (["-k", "4", "--channel-axis", "5"], "channel"),
    ],
)
def test_cluster_bad_input(slide_files, args, message):
    result = run("cluster", "a.tif", *args, "-o", "x.tif", cwd=slide_files)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_tile_at_a_pixel_size_read_from_ome_tiff(tmp_path):
    image, mask = sample_image(), sample_mask()
    tifffile.imwrite(
        tmp_path / "scan.ome.tif",
        image,
        photometric="rgb",
        metadata={
            "axes": "YXS",
            "PhysicalSizeX": 0.25,
            "PhysicalSizeY": 0.25,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
        },
    )
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    result = run(
        "tile",
        tmp_path / "scan.ome.tif",
        "--mask",
        tmp_path / "mask.tif",
        "--size",
        "64",
        "--pixel-size",
        "0.5",
        "--format",
        "ome-tiff",
        "--only-foreground",
        "-o",
        tmp_path / "out",
    )
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "out" / "images").iterdir())
    assert len(files) == 16  # 512 px at 0.25 um = 256 px at 0.5 um = 4 x 4 patches of 64
    with tifffile.TiffFile(files[0]) as tif:
        assert tif.pages[0].shape == (64, 64, 3)
        assert 'PhysicalSizeX="0.5"' in tif.ome_metadata
    back = run("stitch", tmp_path / "out", "-o", tmp_path / "half.tif")
    assert back.returncode == 0, back.stderr
    half_mask = tifffile.imread(tmp_path / "half_mask.tif")
    assert half_mask.shape == (256, 256)
    assert set(np.unique(half_mask)) <= set(np.unique(mask))  # label ids never mixed

    wrong = run(
        "tile",
        tmp_path / "scan.ome.tif",
        "--size",
        "64",
        "--pixel-size",
        "0.3",
        "-o",
        tmp_path / "bad",
    )
    assert (
        wrong.returncode == 2
        and "use pixel_size=0.25 (downsample 1) or pixel_size=0.5" in wrong.stderr
    )


def test_outputs_are_never_replaced_without_overwrite(slide_files):
    d = slide_files
    (d / "labels.tif").write_bytes(b"an earlier result")
    result = run("cluster", d / "a.tif", "-k", "3", "-o", d / "labels.tif")
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (d / "labels.tif").read_bytes() == b"an earlier result"
    assert (
        run("cluster", d / "a.tif", "-k", "3", "--overwrite", "-o", d / "labels.tif").returncode
        == 0
    )
    assert tifffile.imread(d / "labels.tif").shape == (512, 512)

    assert run("tile", d / "a.tif", "--size", "128", "-o", d / "t").returncode == 0
    (d / "back.tif").write_bytes(b"keep me")
    result = run("stitch", d / "t", "-o", d / "back.tif")
    assert result.returncode == 2 and "exists" in result.stderr
    assert (d / "back.tif").read_bytes() == b"keep me"


def test_demo_refuses_a_used_folder(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    result = run("demo", tmp_path / "used")
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"


def test_cluster_posterized_is_the_model_centres_at_each_label(slide_files):
    d = slide_files
    result = run("cluster", d / "a.tif", "-k", "4", "--save-model", d / "m.json",
                 "--posterized", d / "poster.png", "-o", d / "labels.tif")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "posterised image to" in result.stdout
    from napari_patchwork.cluster import ClusterModel

    labels, poster = tifffile.imread(d / "labels.tif"), iio.imread(d / "poster.png")
    centres = np.clip(np.rint(ClusterModel.load(d / "m.json").centers_image), 0, 255)
    assert poster.shape == (512, 512, 3) and poster.dtype == np.uint8
    for i, centre in enumerate(centres, start=1):
        assert np.all(poster[labels == i] == centre.astype(np.uint8)), i

    grey = sample_image()[..., 0].astype(np.uint16) * 200  # 16-bit: TIFF, not PNG
    for name in ("g1", "g2"):
        tifffile.imwrite(d / f"{name}.tif", grey)
    refused = run(
        "cluster", d / "g1.tif", "-k", "3", "--posterized", d / "g.png", "-o", d / "g.tif"
    )
    assert refused.returncode == 2 and "use a .tif name" in refused.stderr
    assert not (d / "g.tif").exists()  # refused before writing labels
    poster_pattern = str(d / "post" / "{stem}_poster.tif")
    several = run("cluster", d / "g[12].tif", "-k", "3", "--save-model", d / "g.json",
                  "--posterized", poster_pattern, "-o", d / "gl")  # fmt: skip
    assert several.returncode == 0, several.stderr
    centres = ClusterModel.load(d / "g.json").centers_image[:, 0]
    for name in ("g1", "g2"):
        labels = tifffile.imread(d / "gl" / f"{name}_clusters.tif")
        poster = tifffile.imread(d / "post" / f"{name}_poster.tif")
        assert poster.dtype == np.uint16 and poster.shape == grey.shape
        assert np.array_equal(poster, np.rint(centres).astype(np.uint16)[labels - 1])


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["a.tif", "b.tif", "--posterized", "p.png", "-o", "out"],
            "--posterized 'posterized/{stem}.png'",
        ),
        (["a.tif", "--posterized", "p.bmp", "-o", "x.tif"], ".png or .jpg"),
    ],
)
def test_cluster_posterized_bad_names(slide_files, args, message):
    result = run("cluster", *args, cwd=slide_files)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_tile_writes_a_preview_of_kept_and_filtered_patches(slide_files):
    d = slide_files
    result = run("tile", d / "[ab].tif", "--mask", str(d / "{stem}_mask.tif"), "--size", "100",
                 "--edge", "pad", "--min-foreground", "0.2", "--split", "0.5", "0.5",
                 "--preview", str(d / "previews" / "{stem}.png"), "-o", d / "out")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "preview:" in result.stdout
    from napari_patchwork.preview import KEPT_COLOR, folder_marks

    kept_colour = np.rint(np.array(tuple(int(KEPT_COLOR[i : i + 2], 16) for i in (1, 3, 5))))
    for name in ("a", "b"):
        inside = iio.imread(d / "out" / name / "preview.png")
        extra = iio.imread(d / "previews" / f"{name}.png")
        assert np.array_equal(inside, extra) and max(inside.shape[:2]) <= 2000
        assert np.all(inside == kept_colour, axis=-1).sum() > 1000
        marks = folder_marks(d / "out" / name)
        assert 0 < marks.kept.sum() < 36 == len(marks.kept)
    again = run("tile", d / "a.tif", "--size", "100", "--preview", d / "previews" / "a.png",
                "-o", d / "out2")  # fmt: skip
    assert again.returncode == 2 and "--overwrite" in again.stderr and not (d / "out2").exists()
    bare = run("tile", d / "a.tif", "--size", "100", "--no-preview", "-o", d / "out3")
    assert bare.returncode == 0 and not (d / "out3" / "preview.png").exists()
    wrong = run("tile", d / "a.tif", "--size", "100", "--preview", d / "p.jpg", "-o", d / "o4")
    assert wrong.returncode == 2 and "use a .png name" in wrong.stderr


@pytest.mark.parametrize(
    "alias, fmt, ext", [("tif", "tiff", ".tif"), ("ome-tif", "ome-tiff", ".ome.tif")]
)
def test_format_tif_and_ome_tif_are_aliases(slide_files, alias, fmt, ext):
    import json

    d = slide_files
    result = run("tile", d / "a.tif", "--size", "256", "--format", alias, "-o", d / alias)
    assert result.returncode == 0, result.stderr
    assert json.loads((d / alias / "dataset.json").read_text())["file_format"] == fmt
    files = sorted(p.name for p in (d / alias / "images").iterdir())
    assert len(files) == 4 and all(f.endswith(ext) for f in files)
    assert all(f.endswith(".ome.tif") == (fmt == "ome-tiff") for f in files)
    assert np.array_equal(
        tifffile.imread(d / alias / "images" / files[0]), sample_image()[:256, :256]
    )


def test_tile_preview_of_a_pyramid_reads_a_small_level(tmp_path):
    tiled = dict(photometric="rgb", tile=(256, 256), compression="zlib")
    with tifffile.TiffWriter(tmp_path / "slide.tif") as tif:  # levels of distinct greys
        tif.write(np.zeros((4096, 4096, 3), np.uint8), subifds=2, **tiled)
        tif.write(np.full((2048, 2048, 3), 200, np.uint8), subfiletype=1, **tiled)
        tif.write(np.full((1024, 1024, 3), 100, np.uint8), subfiletype=1, **tiled)
    tifffile.imwrite(tmp_path / "mask.tif", np.zeros((4096, 4096), np.uint8), compression="zlib")
    result = run("tile", tmp_path / "slide.tif", "--mask", tmp_path / "mask.tif", "--size", "512",
                 "--only-foreground", "-o", tmp_path / "out")  # fmt: skip
    assert result.returncode == 0, result.stderr
    preview = iio.imread(tmp_path / "out" / "preview.png")
    assert preview.shape == (1024 + 44, 1024, 3)  # the 2048 px level read at step 2
    inside = preview[:1024, :1024]
    values, counts = np.unique(inside.reshape(-1, 3), axis=0, return_counts=True)
    # all 64 patches filtered: level 1's grey 200 under a 30 % black veil, never level 0's black
    assert np.allclose(values[counts.argmax()], 200 * 0.7, atol=1.5)


def test_cluster_model_file_is_never_lost(slide_files):
    d = slide_files
    same = run("cluster", d / "a.tif", "-k", "3", "--save-model", d / "x.tif", "-o", d / "x.tif")
    assert same.returncode == 2 and "-o and --save-model both name" in same.stderr
    assert not (d / "x.tif").exists()
    (d / "model.json").write_text("an earlier model")
    kept = run(
        "cluster", d / "a.tif", "-k", "3", "--save-model", d / "model.json", "-o", d / "l.tif"
    )
    assert kept.returncode == 2 and "--overwrite" in kept.stderr
    assert (d / "model.json").read_text() == "an earlier model"
    replaced = run(
        "cluster",
        d / "a.tif",
        "-k",
        "3",
        "--save-model",
        d / "model.json",
        "--overwrite",
        "-o",
        d / "l.tif",
    )
    assert replaced.returncode == 0, replaced.stderr
    assert '"napari-patchwork/cluster-model"' in (d / "model.json").read_text()
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []  # no temporary file


def test_cluster_refuses_another_dtype_unless_allowed(slide_files):
    d = slide_files
    assert (
        run(
            "cluster", d / "a.tif", "-k", "3", "--save-model", d / "m.json", "-o", d / "l.tif"
        ).returncode
        == 0
    )
    tifffile.imwrite(d / "float.tif", sample_image().astype(np.float32) / 255, photometric="rgb")
    refused = run("cluster", d / "float.tif", "--model", d / "m.json", "-o", d / "f.tif")
    assert refused.returncode == 2 and "fitted on a uint8 image" in refused.stderr
    assert "--allow-other-units" in refused.stderr and not (d / "f.tif").exists()
    tifffile.imwrite(d / "same.tif", sample_image().astype(np.float32), photometric="rgb")
    allowed = run(
        "cluster", d / "same.tif", "--model", d / "m.json", "--allow-other-units", "-o", d / "s.tif"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert np.array_equal(tifffile.imread(d / "s.tif"), tifffile.imread(d / "l.tif"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sigma", "1e6"], "more than the image's 512 pixels"),
        (["--sigma", "-1"], "--sigma: must be a finite number of pixels"),
        (["--sigma", "nan"], "--sigma: must be a finite number of pixels"),
    ],
)
def test_cluster_sigma_limits_say_why(slide_files, args, message):
    result = run("cluster", "a.tif", "-k", "3", *args, "-o", "x.tif", cwd=slide_files)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (slide_files / "x.tif").exists()


def test_cluster_huge_float_pixels_get_a_clear_message(tmp_path):
    image = np.random.default_rng(0).choice([-1e300, 1e300], size=(32, 32))
    tifffile.imwrite(tmp_path / "huge.tif", image)
    result = run("cluster", tmp_path / "huge.tif", "-k", "2", "-o", tmp_path / "l.tif")
    assert result.returncode == 2 and "too large to cluster" in result.stderr, result.stderr
    assert "contains NaN" not in result.stderr


def test_inputs_with_spaces_and_accents_are_tiled_with_a_safe_or_chosen_stem(tmp_path):
    image = np.zeros((40, 40), np.uint8)
    source = tmp_path / "slide 1 é.tif"
    tifffile.imwrite(source, image)
    assert run("tile", source, "--size", "20", "-o", tmp_path / "a").returncode == 0
    assert (
        sorted(p.name for p in (tmp_path / "a" / "images").iterdir())[0] == "slide_1___0_y0_x0.tif"
    )
    assert run("tile", source, "--size", "20", "--stem", "s1", "-o", tmp_path / "b").returncode == 0
    assert sorted(p.name for p in (tmp_path / "b" / "images").iterdir())[0] == "s1_0_y0_x0.tif"


def test_scale_must_have_one_value_per_spatial_axis(tmp_path):
    source = tmp_path / "rgb.tif"
    tifffile.imwrite(source, np.zeros((40, 40, 3), np.uint8), photometric="rgb")
    result = run("tile", source, "--size", "20", "--scale", "1", "1", "1", "-o", tmp_path / "o")
    assert (
        result.returncode == 2
        and "--scale has 3 values, the image has 2 spatial axes" in result.stderr
    )


def test_a_file_without_pixels_is_named(tmp_path):
    source = tmp_path / "empty.npy"
    np.save(source, np.zeros((0, 5), np.uint8))
    result = run("tile", str(source), "--size", "20", "-o", str(tmp_path / "o"))
    assert result.returncode == 1 and "empty.npy: the file holds no pixels" in result.stderr


def test_stitch_predictions_with_a_merge_mode_and_argmax(tmp_path):
    from napari_patchwork.export import export_patches
    from napari_patchwork.folder import read_patch_folder
    from napari_patchwork.stitch import stitch

    labels = (np.arange(60)[:, None] // 20 + np.arange(50)[None, :] // 25).astype(np.uint8)
    export_patches(tmp_path / "p", np.zeros((60, 50), np.uint8), patch_size=20, stride=15,
                   edge="shift")  # fmt: skip
    (tmp_path / "scores").mkdir()  # beside the patch folder, given relative to the cwd
    for row in read_patch_folder(tmp_path / "p").rows:
        y0, x0 = int(row["y0"]), int(row["x0"])
        one_hot = np.eye(4, dtype=np.float32)[labels[y0 : y0 + 20, x0 : x0 + 20]]
        np.save(tmp_path / "scores" / (row["image"].split("/")[-1][: -len(".tif")] + ".npy"),
                np.moveaxis(one_hot, -1, 0))  # fmt: skip
    result = run("stitch", "p", "--predictions", "scores", "--merge", "hann", "-o", "hann.tif",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    merged = tifffile.imread(tmp_path / "hann.tif")
    assert merged.shape == (4, 60, 50) and merged.dtype == np.float64
    np.testing.assert_array_equal(merged, stitch(tmp_path / "p", tmp_path / "scores", merge="hann"))
    result = run("stitch", "p", "--predictions", "scores", "--merge", "vote", "--argmax",
                 "-o", "labels.tif", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "labels.tif"), labels)
    # bad input: one line, exit 2
    for args, message in (
        (["--predictions", "nowhere"], "--predictions nowhere: no such folder"),
        (["--merge", "vote"], "--merge and --argmax apply to --predictions"),
        (["--predictions", "scores", "--merge", "vote"], "integer label predictions"),
    ):
        result = run("stitch", "p", *args, "-o", "x.tif", cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_stitch_allow_missing_leaves_out_missing_predictions(tmp_path):
    image = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40)
    source = tmp_path / "img.tif"
    tifffile.imwrite(source, image)
    assert (
        run("tile", source, "--size", "20", "--format", "npy", "-o", tmp_path / "p").returncode == 0
    )
    predictions = tmp_path / "preds"
    predictions.mkdir()
    names = sorted(p.name for p in (tmp_path / "p" / "images").iterdir())
    for name in names[1:]:  # the first patch has no prediction
        np.save(predictions / name, np.ones((20, 20), np.float32))
    refused = run("stitch", tmp_path / "p", "--predictions", predictions, "-o", tmp_path / "a.tif")
    assert refused.returncode == 2 and "--allow-missing" in refused.stderr
    done = run(
        "stitch", tmp_path / "p", "--predictions", predictions, "--allow-missing",
        "-o", tmp_path / "b.tif",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    merged = tifffile.imread(tmp_path / "b.tif")
    assert merged[:20, :20].max() == 0 and merged[20:, 20:].min() == 1


def test_tile_format_zarr_writes_sharded_arrays_and_stitch_reads_them(slide_files):
    import zarr

    d = slide_files
    tiled = run("tile", d / "a.tif", "--size", "128", "--edge", "pad", "--format", "zarr",
                "--compression", "zstd", "-o", d / "z")  # fmt: skip
    assert tiled.returncode == 0, tiled.stderr
    images = zarr.open_array(d / "z" / "images.zarr", mode="r")
    assert images.shape == (16, 128, 128, 3) and images.dtype == np.uint8
    assert np.array_equal(images[5], sample_image()[128:256, 128:256])
    assert not (d / "z" / "images").exists()
    stitched = run("stitch", d / "z", "-o", d / "z.tif")
    assert stitched.returncode == 0, stitched.stderr
    assert np.array_equal(tifffile.imread(d / "z.tif"), sample_image())
    partial = run("tile", d / "a.tif", "--size", "100", "--edge", "partial", "--format", "zarr",
                  "-o", d / "p")  # fmt: skip
    assert partial.returncode == 2 and "edge='pad', 'shift' or 'drop'" in partial.stderr


def test_tile_split_by_blocks_and_by_image(slide_files):
    import csv

    d = slide_files
    result = run(
        "tile", d / "a.tif", "--size", "32", "--stride", "16", "--split", "0.75", "0.25",
        "--split-by", "blocks", "--block-size", "128", "--seed", "1", "--no-preview",
        "-o", d / "blocks",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(d / "blocks" / "manifest.csv")))
    counts = {s: sum(r["split"] == s for r in rows) for s in ("train", "val")}
    assert counts["train"] > counts["val"] > 0 and len(rows) < 31 * 31  # a buffer
    assert {(int(r["block_y"]), int(r["block_x"])) for r in rows} <= {
        (y, x) for y in range(4) for x in range(4)
    }
    buffer = 31 * 31 - len(rows)
    assert f"{buffer} left out as a buffer between splits" in result.stdout
    assert f"val {counts['val']} ({counts['val'] / len(rows):.2f})" in result.stdout
    result = run(
        "tile", d / "[ab].tif", "--size", "64", "--split", "0.5", "0.5", "--split-by", "image",
        "--no-preview", "-o", d / "images",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    splits = [
        {r["split"] for r in csv.DictReader(open(d / "images" / name / "manifest.csv"))}
        for name in ("a", "b")
    ]
    assert sorted(map(tuple, splits)) == [("train",), ("val",)]  # each image whole, one each
    assert "all images: 128 patches from 2 images (train 64 (0.50), val 64 (0.50))" in (
        result.stdout
    )
    for args, message in (
        (["--split-by", "blocks"], "split_by='blocks' needs block_size"),
        (["--split-by", "blocks", "--block-size", "16"], "smaller than the patches"),
        (["--split-by", "image"], "too few images (1)"),
    ):
        result = run("tile", d / "a.tif", "--size", "32", "--split", "0.5", "0.5", *args,
                     "-o", d / "bad")  # fmt: skip
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_tile_reads_a_pyramid_tiff_at_a_downsample(tmp_path):
    from napari_patchwork.resolution import downsample_mean

    level0 = (np.random.default_rng(4).random((512, 384, 3)) * 255).astype(np.uint8)
    options = dict(tile=(64, 64), photometric="rgb")
    with tifffile.TiffWriter(tmp_path / "pyr.tif") as tif:
        tif.write(level0, subifds=2, **options)
        for f in (2, 4):
            tif.write(downsample_mean(level0, (f, f), 2), subfiletype=1, **options)
    tifffile.imwrite(tmp_path / "flat.tif", level0, photometric="rgb", tile=(64, 64))
    outputs = {}
    for name in ("pyr", "flat"):
        result = run("tile", tmp_path / f"{name}.tif", "--size", "32", "--downsample", "4",
                     "--format", "npy", "--stem", "p", "--no-preview",
                     "-o", tmp_path / name / "out")  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs[name] = result.stdout
    assert "read from pyramid level 2 (4 x 4)" in outputs["pyr"]
    assert "pyramid" not in outputs["flat"].replace(str(tmp_path), "")
    names = sorted(p.name for p in (tmp_path / "flat" / "out" / "images").iterdir())
    assert len(names) == 4 * 3
    for name in names:  # the level's pixels are the averages of level 0: the same files
        a = np.load(tmp_path / "flat" / "out" / "images" / name)
        b = np.load(tmp_path / "pyr" / "out" / "images" / name)
        assert np.array_equal(a, b)
    manifests = [(tmp_path / n / "out" / "manifest.csv").read_text() for n in ("pyr", "flat")]
    assert manifests[0] == manifests[1]  # boxes in level-0 pixels
    # an OME-Zarr whose level 1 claims a factor of 2 while its shape says 3: level 0 is read
    import zarr

    group = zarr.open_group(tmp_path / "bad.zarr", mode="w", zarr_format=2)
    for i, level in enumerate([level0, level0[::3, ::3]]):
        group.create_array(str(i), data=np.ascontiguousarray(level), chunks=(64, 64, 3))
    group.attrs["multiscales"] = [{"version": "0.4", "datasets": [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [s, s, 1]}]}
        for i, s in enumerate((1.0, 2.0))
    ]}]  # fmt: skip
    result = run("tile", tmp_path / "bad.zarr", "--size", "32", "--downsample", "4",
                 "--format", "npy", "--stem", "p", "--no-preview",
                 "-o", tmp_path / "bad" / "out")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pyramid level 1 not used: its metadata claims factors [2.0, 2.0], its shape " in (
        result.stdout
    )
    for name in names:
        a = np.load(tmp_path / "flat" / "out" / "images" / name)
        assert np.array_equal(a, np.load(tmp_path / "bad" / "out" / "images" / name))
