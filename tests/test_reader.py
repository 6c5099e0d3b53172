"""The npe2 reader (File > Open Folder on a patch folder): as a function and in a real viewer."""

import json
import os

import npe2
import numpy as np
import pytest
import tifffile

from napari_patchwork._reader import PLUGIN_NAME, get_reader, remember_reader_for
from napari_patchwork._writer import SAVE_DIALOG_ADVICE, write_patch_folder
from napari_patchwork.export import ExportError, export_patches, iter_export
from napari_patchwork.folder import PatchFolderError, read_patch_folder
from napari_patchwork.sample import sample_image, sample_mask

MANIFEST = npe2.PluginManifest.from_distribution("napari-patchwork")
SCALE, TRANSLATE = (0.5, 0.25), (10.0, -4.0)  # the sample_layers fixture's (conftest.py)


def test_reader_returns_none_for_what_it_cannot_read(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "dataset.json").write_text(json.dumps({"format": "someone else's"}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset.json").write_text("{not json")
    (tmp_path / "file.tif").write_bytes(b"II*\0")
    for path in ("empty", "other", "broken", "file.tif", "missing", "other/dataset.json"):
        assert get_reader(str(tmp_path / path)) is None, path
    assert get_reader([str(tmp_path / "empty"), str(tmp_path / "other")]) is None
    assert get_reader(None) is None


def test_reader_on_an_interrupted_export_says_to_resume(tmp_path, sample_layers):
    image, labels = sample_layers()
    steps = iter_export(tmp_path / "out", image.data, labels.data, patch_size=40, channel_axis=-1)
    next(steps), next(steps)
    steps.close()
    reader = get_reader(str(tmp_path / "out"))
    assert reader is not None
    with pytest.raises(PatchFolderError, match="run the same export again"):
        reader(str(tmp_path / "out"))


def test_reader_layers_line_up_and_rebuild_the_data(tmp_path, sample_layers):
    image, labels = sample_layers()
    export_patches(
        tmp_path / "out",
        image.data,
        labels.data,
        patch_size=(40, 50),
        stride=(30, 50),
        channel_axis=-1,
        split=(0.5, 0.5),
        scale=SCALE,
        translate=TRANSLATE,
        image_name="he",
        mask_name="nuclei",
        min_foreground=0.01,
    )
    layers = get_reader(str(tmp_path / "out" / "dataset.json"))(
        str(tmp_path / "out" / "dataset.json")
    )
    assert [t for _, _, t in layers] == ["image", "labels", "shapes"]
    (img, img_meta, _), (mask, mask_meta, _), (rects, grid_meta, _) = layers
    covered = read_patch_folder(tmp_path / "out").coverage()[..., None]  # min_foreground drops some
    assert 0 < covered.mean() < 1
    np.testing.assert_array_equal(img, np.where(covered, image.data, 0))
    assert (
        img_meta["rgb"]
        and img_meta["scale"] == list(SCALE)
        and img_meta["translate"] == list(TRANSLATE)
    )
    assert mask.dtype == np.int32 and mask_meta["name"] == "nuclei"
    features = grid_meta["features"]
    assert set(features["split"]) == {"train", "val"}
    assert (features["foreground_fraction"] >= 0.01).all()
    assert grid_meta["metadata"]["napari_patchwork"]["patch_size"] == [40, 50]
    assert grid_meta["scale"] == list(SCALE)
    # the first patch's rectangle is on the pixel edges of box y 0..40, x 0..50
    first = rects[0]
    assert first.min(axis=0).tolist() == [-0.5, -0.5] and first.max(axis=0).tolist() == [39.5, 49.5]


def test_reader_lays_a_downsampled_folder_on_the_source(
    make_napari_viewer, npe2pm, tmp_path, sample_layers
):
    image, labels = sample_layers((120, 150))
    export_patches(
        tmp_path / "low",
        image.data,
        labels.data,
        patch_size=16,
        edge="pad",
        channel_axis=-1,
        downsample=4,
        scale=SCALE,
        translate=TRANSLATE,
    )
    layers = get_reader(str(tmp_path / "low"))(str(tmp_path / "low"))
    (img, img_meta, _), (mask, mask_meta, _), (_, grid_meta, _) = layers
    assert img.shape == (30, 38, 3) and mask.shape == (30, 38)
    expected_scale = [4 * s for s in SCALE]
    expected_translate = [t + 1.5 * s for t, s in zip(TRANSLATE, SCALE)]  # + (4 - 1) / 2 px
    for meta in (img_meta, mask_meta, grid_meta):
        np.testing.assert_allclose(meta["scale"], expected_scale)
        np.testing.assert_allclose(meta["translate"], expected_translate)
    # in napari, output pixel (j, i) lies on the centre of source pixels 4j..4j+3, 4i..4i+3
    npe2pm.register(MANIFEST)
    viewer = make_napari_viewer()
    viewer.add_layer(image)
    viewer.open(str(tmp_path / "low"), plugin="napari-patchwork")
    low = viewer.layers[1]  # after the source: the reader's image, labels and grid
    assert low is not image and low.data.shape == (30, 38, 3)
    for j, i in [(0, 0), (7, 11), (29, 36)]:
        centre = np.mean(
            [image.data_to_world((4 * j + a, 4 * i + b)) for a in range(4) for b in range(4)],
            axis=0,
        )
        np.testing.assert_allclose(low.data_to_world((j, i)), centre)
    # and its pixels are the 4 x 4 means of the source's
    np.testing.assert_array_equal(
        low.data[7, 11],
        np.round(image.data[28:32, 44:48].reshape(-1, 3).mean(axis=0)).astype(np.uint8),
    )


def test_reader_opens_a_large_folder_lazily(
    make_napari_viewer, npe2pm, tmp_path, monkeypatch, sample_layers
):
    """Above the size threshold the layers are dask arrays that read only the patches shown."""
    from napari_patchwork import stitch as stitch_module

    image, labels = sample_layers((120, 150))
    export_patches(
        tmp_path / "big",
        image.data,
        labels.data,
        patch_size=32,
        edge="pad",
        channel_axis=-1,
        fmt="npy",
        scale=SCALE,
        translate=TRANSLATE,
    )
    from napari_patchwork.folder import read as folder_read

    monkeypatch.setattr(folder_read, "LAZY_THRESHOLD_BYTES", 1000)
    monkeypatch.setattr(stitch_module, "LAZY_CHUNK_BYTES", 32 * 32 * 3)  # a block per patch
    reads = []
    real_read = stitch_module.read_patch_file
    monkeypatch.setattr(
        stitch_module,
        "read_patch_file",
        lambda path, *where: reads.append(path) or real_read(path, *where),
    )
    npe2pm.register(MANIFEST)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "big"), plugin="napari-patchwork")
    img, mask = viewer.layers["big"], viewer.layers["big mask"]
    assert type(img.data).__module__.startswith("dask") and img.rgb
    assert type(mask.data).__module__.startswith("dask")
    reads.clear()
    np.testing.assert_array_equal(np.asarray(img.data[40:60, 40:60]), image.data[40:60, 40:60])
    assert len(reads) == 1  # one 32 px patch holds that region
    np.testing.assert_array_equal(np.asarray(img.data), image.data)
    np.testing.assert_array_equal(np.asarray(mask.data), labels.data)


# -- opening without a 'Choose reader' dialog ------------------------------------------

BUILTINS = npe2.PluginManifest.from_distribution("napari")  # its reader takes any folder


@pytest.fixture
def viewer(make_napari_viewer, npe2pm):
    npe2pm.register(MANIFEST)
    npe2pm.register(BUILTINS)
    return make_napari_viewer()


def _readers(path) -> set:
    from napari.plugins import _npe2

    return set(_npe2.get_readers(str(path)))


def _refuse_reader_dialog(monkeypatch):
    """Make napari's 'Choose reader' dialog fail the test if it is ever shown."""
    from napari._qt.dialogs import qt_reader_dialog

    def fail(*args, **kwargs):
        raise AssertionError("napari asked which reader to use")

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "get_user_choices", fail)


def _export(path):
    export_patches(
        path, sample_image()[:128, :128], sample_mask()[:128, :128], patch_size=64, channel_axis=-1
    )


def test_a_folder_saved_from_napari_opens_without_a_reader_dialog(viewer, tmp_path, monkeypatch):
    image = viewer.add_image(sample_image()[:128, :128], name="ihc", rgb=True)
    labels = viewer.add_labels(sample_mask()[:128, :128], name="nuclei")
    viewer.layers.selection = {image, labels}
    folder = tmp_path / "saved"
    viewer.layers.save(str(folder), selected=True, plugin=PLUGIN_NAME)
    # napari's builtin reader takes any folder too: without a preference it would ask
    assert {PLUGIN_NAME, "napari"} <= _readers(folder)
    viewer.layers.clear()
    _refuse_reader_dialog(monkeypatch)
    viewer.window._qt_viewer._qt_open([str(folder)], stack=False)  # File > Open Folder
    assert [layer.name for layer in viewer.layers] == ["ihc", "nuclei", "ihc grid"]
    viewer.layers.clear()
    viewer.open(str(folder), plugin=None)  # the preference, as File > Open Folder uses it
    assert [layer.name for layer in viewer.layers] == ["ihc", "nuclei", "ihc grid"]


def test_a_folder_from_the_command_line_asks_at_most_once(viewer, tmp_path):
    from napari.errors import MultipleReaderError

    folder = tmp_path / "from-cli"
    _export(folder)
    with pytest.raises(MultipleReaderError):  # napari's own rule: several readers, no choice
        viewer.open(str(folder), plugin=None)
    viewer.open(str(folder), plugin=PLUGIN_NAME)  # what choosing us in the dialog does
    viewer.layers.clear()
    viewer.open(str(folder), plugin=None)  # from now on: no question
    assert len(viewer.layers) == 3


def test_a_folder_tiled_on_the_command_line_opens_without_a_reader_dialog(
    viewer, tmp_path, capsys, monkeypatch
):
    from napari_patchwork.cli import main

    source = tmp_path / "ihc.tif"
    tifffile.imwrite(source, sample_image()[:96, :96])
    folder = tmp_path / "tiles"
    assert main(["tile", str(source), "-o", str(folder), "--size", "32", "--no-preview"]) == 0
    assert "napari opens it with napari-patchwork" in capsys.readouterr().out
    assert {PLUGIN_NAME, "napari"} <= _readers(folder)  # two readers, and no question:
    _refuse_reader_dialog(monkeypatch)
    # File > Open Folder, and `napari FOLDER` in a shell (napari's __main__ calls _qt_open)
    viewer.window._qt_viewer._qt_open([str(folder)], stack=False)
    assert [layer.name for layer in viewer.layers] == ["ihc", "ihc grid"]
    np.testing.assert_array_equal(viewer.layers["ihc"].data, sample_image()[:96, :96])
    viewer.layers.clear()
    viewer.open(str(folder), plugin=None)  # Python: plugin=None follows the preference
    assert [layer.name for layer in viewer.layers] == ["ihc", "ihc grid"]


def test_the_users_own_reader_choice_is_kept(viewer, tmp_path):
    from napari.settings import get_settings

    folder = tmp_path / "mine"
    _export(folder)
    key = os.path.realpath(folder) + os.sep
    get_settings().plugins.extension2reader = {key: "napari"}
    assert not remember_reader_for(folder)
    assert get_settings().plugins.extension2reader[key] == "napari"


def test_writer_refusal_gives_advice_for_the_save_dialog(tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    layer_data = [(sample_image()[:64, :64], {"name": "ihc", "rgb": True}, "image")]
    with pytest.raises(ExportError) as err:
        write_patch_folder(str(folder), layer_data)
    assert SAVE_DIALOG_ADVICE in str(err.value)
    assert "overwrite=True" not in str(err.value)
    assert (folder / "notes.txt").read_text() == "mine" and len(os.listdir(folder)) == 1


def folder_with_predictions(tmp_path, sample_layers, value_of, name="predictions"):
    """A patch folder of the sample (overlapping 16 px patches, scale/translate recorded) and a
    predictions folder inside it; ``value_of(mask_crop)`` gives each patch's prediction."""
    image, labels = sample_layers((50, 60))
    out = tmp_path / "out"
    export_patches(out, image.data, labels.data, patch_size=16, stride=12, edge="pad",
                   channel_axis=-1, scale=SCALE, translate=TRANSLATE)  # fmt: skip
    (out / name).mkdir()
    for row in read_patch_folder(out).rows:
        mask = np.load(out / row["mask"]) if row["mask"].endswith(".npy") else None
        if mask is None:
            import tifffile

            mask = tifffile.imread(out / row["mask"])
        np.save(out / name / (row["image"].split("/")[-1].rsplit(".", 1)[0] + ".npy"),
                value_of(mask))  # fmt: skip
    return out, labels


def test_reader_shows_a_predictions_folder_merged_on_the_image(
    make_napari_viewer, npe2pm, tmp_path, sample_layers
):
    from napari_patchwork.stitch import stitch

    out, labels = folder_with_predictions(
        tmp_path,
        sample_layers,
        lambda m: np.stack([(m == 0), (m == 3), (m == 900)]).astype(np.float32),
    )
    layers = get_reader(str(out))(str(out))
    names = [meta["name"] for _, meta, _ in layers]
    assert len(names) == 4 and names[2] == "out predictions" and names[3] == "out grid"
    data, meta, layer_type = layers[2]
    assert layer_type == "image" and data.shape == (3, 50, 60) and data.dtype == np.float64
    assert meta["rgb"] is False and meta["metadata"]["napari_patchwork"]["merge"] == "gaussian"
    np.testing.assert_allclose(meta["scale"], (1.0,) + SCALE)
    np.testing.assert_allclose(meta["translate"], (0.0,) + TRANSLATE)
    np.testing.assert_array_equal(data, stitch(out, "predictions", merge="gaussian"))
    np.testing.assert_allclose(data[1], labels.data == 3, atol=1e-12)
    # through a real viewer: the predictions lie on the mask
    npe2pm.register(MANIFEST)
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-patchwork")
    shown, mask = viewer.layers["out predictions"], viewer.layers[names[1]]
    for y, x in [(0, 0), (20, 30), (49, 59)]:
        np.testing.assert_allclose(shown.data_to_world((1, y, x))[1:], mask.data_to_world((y, x)))


def test_reader_shows_integer_predictions_as_labels_and_survives_bad_ones(tmp_path, sample_layers):
    out, labels = folder_with_predictions(
        tmp_path, sample_layers, lambda m: (m > 0).astype(np.uint8)
    )
    layers = get_reader(str(out))(str(out))
    data, meta, layer_type = layers[2]
    assert layer_type == "labels" and data.dtype == np.uint8
    assert meta["metadata"]["napari_patchwork"]["merge"] == "center"
    np.testing.assert_array_equal(data, labels.data > 0)
    # a prediction of the wrong shape: a warning, and the folder still opens
    bad = sorted((out / "predictions").iterdir())[0]
    np.save(bad, np.zeros((3, 3), np.uint8))
    with pytest.warns(UserWarning, match="predictions not shown.*does not fit the patch"):
        layers = get_reader(str(out))(str(out))
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels", "shapes"]


def test_reader_shows_placed_patches_with_their_values(tmp_path, sample_layers):
    from napari_patchwork.placement import Placement

    image, labels = sample_layers()
    export_patches(tmp_path / "out", image.data, labels.data, patch_size=16, edge="shift",
                   channel_axis=-1, placement=Placement(kind="objects"))  # fmt: skip
    layers = get_reader(str(tmp_path / "out"))(str(tmp_path / "out"))
    rects, grid_meta, kind = layers[-1]
    assert kind == "shapes" and len(rects) == 2
    assert list(grid_meta["features"]["instance_id"]) == [3, 900]
    assert list(grid_meta["features"]["area"]) == [3500, 1600]
    # the rectangle of instance 3 (rows 10..59, cols 20..89) is centred on its centroid
    low = rects[0].min(axis=0) + 0.5
    np.testing.assert_array_equal(low + 8, [35, 55])


def test_a_zarr_folder_opens_in_a_viewer_like_patch_files(
    make_napari_viewer, npe2pm, tmp_path, sample_layers, monkeypatch
):
    from napari_patchwork.folder import read_patch_folder as read_folder

    image, labels = sample_layers()
    export_patches(tmp_path / "z", image.data, labels.data, patch_size=(40, 50), edge="pad",
                   channel_axis=-1, fmt="zarr", scale=SCALE, translate=TRANSLATE,
                   image_name="he", mask_name="nuclei", min_foreground=0.01)  # fmt: skip
    npe2pm.register(MANIFEST)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "z"), plugin="napari-patchwork")
    assert [layer.name for layer in viewer.layers] == ["he", "nuclei", "he grid"]
    covered = read_folder(tmp_path / "z").coverage()
    np.testing.assert_array_equal(viewer.layers["he"].data[covered], image.data[covered])
    np.testing.assert_array_equal(viewer.layers["nuclei"].data[covered], labels.data[covered])
    np.testing.assert_allclose(viewer.layers["nuclei"].scale, SCALE)
    # above the lazy threshold it opens as dask arrays (blocks read their patches from the shards)
    from napari_patchwork.folder import read as read_module

    monkeypatch.setattr(read_module, "LAZY_THRESHOLD_BYTES", 1000)
    viewer.layers.clear()
    viewer.open(str(tmp_path / "z"), plugin="napari-patchwork")
    lazy = viewer.layers["he"].data
    assert hasattr(lazy, "dask") and not isinstance(lazy, np.ndarray)
    np.testing.assert_array_equal(np.asarray(lazy)[covered], image.data[covered])
