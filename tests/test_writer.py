"""The npe2 writer (File > Save Selected Layers): as functions, through npe2 and a real viewer."""

import json

import napari
import npe2
import numpy as np
import pytest

from napari_patchwork._layer_data import grid_layer_data
from napari_patchwork._writer import DEFAULT_PATCH_SIZE, write_patch_folder, writer_request
from napari_patchwork.export import ExportError
from napari_patchwork.folder import read_patches
from napari_patchwork.grid import grid_features, make_grid

MANIFEST = npe2.PluginManifest.from_distribution("napari-patchwork")
SCALE, TRANSLATE = (0.5, 0.25), (10.0, -4.0)  # the sample_layers fixture's (conftest.py)


def grid_layer(image, patch=(40, 50), keep=None):
    grid = make_grid(image.data.shape, patch, channel_axis=-1)
    data, kwargs = grid_layer_data(
        grid,
        grid_features(grid),
        keep,
        scale=SCALE,
        translate=TRANSLATE,
        channel_axis=-1,
        name="he grid",
        metadata={"image_layer": image.name},
    )
    return napari.layers.Shapes(data, **kwargs), grid


def test_writer_uses_the_grid_layer_and_its_remaining_patches(tmp_path, sample_layers):
    image, labels = sample_layers()
    keep = np.ones(9, bool)
    keep[[0, 4]] = False  # the user removed two rectangles from the grid
    shapes, _ = grid_layer(image, keep=keep)
    tuples = [layer.as_layer_data_tuple() for layer in (image, labels, shapes)]
    options = writer_request(tuples).options
    assert options.patch_size == (40, 50) and options.edge == "drop" and options.channel_axis == -1
    assert options.indices == (1, 2, 3, 5, 6, 7, 8)
    written = write_patch_folder(str(tmp_path / "out"), tuples)
    assert written == [str(tmp_path / "out")]
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["image"]["name"] == "he" and info["mask"]["name"] == "nuclei"
    assert info["scale"] == list(SCALE) and info["translate"] == list(TRANSLATE)
    assert info["n_patches"] == 7 and info["patch_size"] == [40, 50]


def test_writer_default_without_grid_exports_the_whole_image(tmp_path, sample_layers):
    image, labels = sample_layers((300, 270))
    write_patch_folder(
        str(tmp_path / "out"), [image.as_layer_data_tuple(), labels.as_layer_data_tuple()]
    )
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["patch_size"] == [DEFAULT_PATCH_SIZE] * 2 and info["edge"] == "pad"
    stitched_image, stitched_mask = read_patches(tmp_path / "out")
    np.testing.assert_array_equal(stitched_image, image.data)
    np.testing.assert_array_equal(stitched_mask, labels.data)
    volume = napari.layers.Image(np.zeros((5, 40, 300), np.uint16)).as_layer_data_tuple()
    assert writer_request([volume]).options.patch_size == (
        5,
        DEFAULT_PATCH_SIZE,
        DEFAULT_PATCH_SIZE,
    )


def test_writer_refuses_a_wrong_grid_or_two_masks(tmp_path, sample_layers):
    image, labels = sample_layers()
    drawing = napari.layers.Shapes(
        [np.array([[0, 0], [10, 10], [0, 10]])], shape_type="polygon", name="ROIs"
    )
    # a Shapes layer that is not a grid is annotations, i.e. a mask: not two masks at once
    with pytest.raises(ExportError, match="optionally with one mask"):
        writer_request([t.as_layer_data_tuple() for t in (image, labels, drawing)])
    other, _ = sample_layers((60, 60))
    shapes, _ = grid_layer(other, patch=(20, 20))
    with pytest.raises(ExportError, match="made for an image of size"):
        writer_request([image.as_layer_data_tuple(), shapes.as_layer_data_tuple()])
    with pytest.raises(ExportError, match="one Image layer"):
        writer_request([labels.as_layer_data_tuple()])


def test_writer_and_reader_through_npe2(npe2pm, tmp_path, sample_layers):
    npe2pm.register(MANIFEST)
    image, labels = sample_layers()
    shapes, _ = grid_layer(image)
    path = tmp_path / "via_npe2"
    written = npe2.write(str(path), [image, labels, shapes], plugin_name="napari-patchwork")
    assert written == [str(path)]
    layer_data = npe2.read([str(path)], stack=False, plugin_name="napari-patchwork")
    assert [t for _, _, t in layer_data] == ["image", "labels", "shapes"]
    np.testing.assert_array_equal(layer_data[0][0][:120, :150], image.data)


def test_save_selected_layers_then_open_in_a_viewer(
    make_napari_viewer, npe2pm, tmp_path, sample_layers
):
    """What File > Save Selected Layers (choosing our writer) and File > Open Folder do."""
    npe2pm.register(MANIFEST)
    viewer = make_napari_viewer()
    image, labels = sample_layers()
    shapes, _ = grid_layer(image, patch=(30, 30))
    for layer in (image, labels, shapes):
        viewer.add_layer(layer)
    viewer.layers.selection = {image, labels, shapes}
    # the entry users pick under "Files of type" in the Save Selected Layers dialog
    from napari.plugins import _npe2

    filters, writers = _npe2.file_extensions_string_for_layers([image, labels, shapes])
    assert "Patchwork Patch folder (napari-patchwork) (*.*)" in filters.split(";;")
    assert any(w.command == "napari-patchwork.write_patches" for w in writers)
    path = tmp_path / "saved"
    assert viewer.layers.save(str(path), selected=True, plugin="napari-patchwork") == [str(path)]
    assert len(list((path / "images").iterdir())) == 20  # 4 x 5 patches of 30 px

    other = make_napari_viewer()
    other.open(str(path), plugin="napari-patchwork")
    assert [layer.name for layer in other.layers] == ["he", "nuclei", "he grid"]
    np.testing.assert_array_equal(other.layers["he"].data, image.data)
    np.testing.assert_array_equal(other.layers["nuclei"].data, labels.data)
    assert other.layers["nuclei"].data.dtype == labels.data.dtype
    grid = other.layers["he grid"]
    assert len(grid.data) == 20
    np.testing.assert_allclose(grid.scale, SCALE)
    np.testing.assert_allclose(grid.translate, TRANSLATE)
    np.testing.assert_allclose(other.layers["he"].scale, SCALE)
    # the opened grid can be saved again as a patch folder
    other.layers.selection = set(other.layers)
    again = tmp_path / "again"
    other.layers.save(str(again), selected=True, plugin="napari-patchwork")
    assert (again / "manifest.csv").read_text() == (path / "manifest.csv").read_text()


def annotation_layer(**kwargs):
    """Rectangles in world coordinates over the sample layers (SCALE, TRANSLATE).

    ``tumour`` covers image pixels y 20..39, x 16..35; ``stroma`` y 80..99, x 60..79.
    """

    def box(y0, y1, x0, x1):  # image pixel range -> world rectangle on the pixel edges
        wy = [TRANSLATE[0] + SCALE[0] * (v - 0.5) for v in (y0, y1 + 1)]
        wx = [TRANSLATE[1] + SCALE[1] * (v - 0.5) for v in (x0, x1 + 1)]
        return np.array([[wy[0], wx[0]], [wy[0], wx[1]], [wy[1], wx[1]], [wy[1], wx[0]]])

    return napari.layers.Shapes(
        [box(20, 39, 16, 35), box(80, 99, 60, 79)],
        shape_type="rectangle",
        name="regions",
        **kwargs,
    )


def test_writer_paints_an_annotation_layer_as_the_mask(tmp_path, sample_layers):
    image, _ = sample_layers()
    shapes, _ = grid_layer(image, patch=(40, 50))
    annotations = annotation_layer(features={"class": ["tumour", "stroma"]})
    tuples = [layer.as_layer_data_tuple() for layer in (image, annotations, shapes)]
    request = writer_request(tuples)
    assert request.options.mask_name == "regions" and request.options.patch_size == (40, 50)
    expected = np.zeros((120, 150), np.uint8)
    expected[20:40, 16:36] = 1
    expected[80:100, 60:80] = 2
    np.testing.assert_array_equal(request.mask, expected)
    write_patch_folder(str(tmp_path / "out"), tuples)
    info = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert info["mask"]["class_ids"] == {"tumour": 1, "stroma": 2}
    assert info["mask"]["name"] == "regions"
    np.testing.assert_array_equal(read_patches(tmp_path / "out")[1], expected[:120, :150])
    # without a 'class' column every shape is 1, and no class table is recorded
    plain = annotation_layer()
    request = writer_request([image.as_layer_data_tuple(), plain.as_layer_data_tuple()])
    np.testing.assert_array_equal(request.mask, expected > 0)
    assert request.options.mask_class_ids is None
    with pytest.raises(ExportError, match="one mask"):
        writer_request([t.as_layer_data_tuple() for t in (image, plain, annotations)])


def test_save_image_annotations_and_grid_through_the_viewer(
    make_napari_viewer, npe2pm, tmp_path, sample_layers
):
    npe2pm.register(MANIFEST)
    viewer = make_napari_viewer()
    image, _ = sample_layers()
    shapes, _ = grid_layer(image, patch=(40, 50))
    annotations = annotation_layer(features={"class": ["tumour", "stroma"]})
    for layer in (image, annotations, shapes):
        viewer.add_layer(layer)
    from napari.plugins import _npe2

    _, writers = _npe2.file_extensions_string_for_layers([image, annotations, shapes])
    assert any(w.command == "napari-patchwork.write_patches" for w in writers)
    viewer.layers.selection = {image, annotations, shapes}
    path = tmp_path / "saved"
    assert viewer.layers.save(str(path), selected=True, plugin="napari-patchwork") == [str(path)]
    mask = read_patches(path)[1]
    assert (mask == 1).sum() == 400 and (mask == 2).sum() == 400


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


def test_writer_exports_the_patches_of_a_placed_grid(tmp_path, sample_layers):
    """A grid layer of placed patches (objects of the mask) is saved as exactly those."""
    from napari_patchwork.folder import read_patch_folder
    from napari_patchwork.placement import Placement, place

    image, labels = sample_layers()
    placement = Placement(kind="objects")
    placed = place(placement, labels.data.shape, 32, "shift", labels=labels.data)
    data, kwargs = grid_layer_data(
        placed.grid(),
        {"index": np.arange(placed.n_patches), **placed.features},
        scale=SCALE,
        translate=TRANSLATE,
        channel_axis=-1,
        name="he grid",
        metadata={"image_layer": "he", "placement": placement.to_json(), "points": None},
    )
    shapes = napari.layers.Shapes(data, **kwargs)
    tuples = [layer.as_layer_data_tuple() for layer in (image, labels, shapes)]
    assert writer_request(tuples).options.placement == placement
    write_patch_folder(str(tmp_path / "out"), tuples)
    patches = read_patch_folder(tmp_path / "out")
    np.testing.assert_array_equal(patches.out_starts, placed.boxes[:, 0])
    assert patches.column("instance_id") == ["3", "900"]


def test_the_zarr_writer_through_npe2_then_read_back(npe2pm, tmp_path, sample_layers):
    import zarr

    npe2pm.register(MANIFEST)
    image, labels = sample_layers()
    shapes, grid = grid_layer(image)
    path = tmp_path / "arrays"
    written = npe2.write(
        str(path),
        [image, labels, shapes],
        plugin_name="napari-patchwork.write_patches_zarr",
    )
    assert written == [str(path)]
    arrays = zarr.open_array(path / "images.zarr", mode="r")
    assert arrays.shape == (grid.n_patches, 40, 50, 3) and not (path / "images").exists()
    layer_data = npe2.read([str(path)], stack=False, plugin_name="napari-patchwork")
    assert [t for _, _, t in layer_data] == ["image", "labels", "shapes"]
    np.testing.assert_array_equal(layer_data[0][0][:120, :150], image.data)
    np.testing.assert_array_equal(layer_data[1][0][:120, :150], labels.data)


def test_writer_passes_a_multiscale_image_as_its_levels(tmp_path):
    from napari_patchwork.pyramid import Pyramid

    level0 = np.arange(300 * 200, dtype=np.uint16).reshape(300, 200)
    layer = napari.layers.Image([level0, level0[::2, ::2]], multiscale=True, name="pyr")
    request = writer_request([layer.as_layer_data_tuple()])
    assert isinstance(request.image, Pyramid) and len(request.image.levels) == 2
    assert request.image.level0.shape == (300, 200)
    write_patch_folder(str(tmp_path / "out"), [layer.as_layer_data_tuple()])
    image, _ = read_patches(tmp_path / "out")
    assert np.array_equal(image, level0)  # padded 256 px patches at full resolution: level 0
