"""The plugin as napari sees it: manifest registered with npe2, widgets opened from the menu."""

import npe2
import pytest

MANIFEST = npe2.PluginManifest.from_distribution("napari-patchwork")
WIDGET_NAMES = [w.display_name for w in MANIFEST.contributions.widgets]


@pytest.fixture
def plugin_viewer(make_napari_viewer, npe2pm):
    npe2pm.register(MANIFEST)
    return make_napari_viewer()


@pytest.mark.parametrize("widget_name", WIDGET_NAMES)
def test_every_widget_opens_from_the_plugins_menu(plugin_viewer, widget_name):
    dock, widget = plugin_viewer.window.add_plugin_dock_widget("napari-patchwork", widget_name)
    assert dock.name and widget is not None
    titles = {title for title, _ in _plugins_menu_items(plugin_viewer)}
    # in a submenu under its own name, or (the only widget) "<name> (<plugin display name>)"
    assert titles & {widget_name, f"{widget_name} ({MANIFEST.display_name})"}, titles


def _plugins_menu_items(viewer):
    """(title, command id) of the plugin's items in the Plugins menu (a plugin with one
    widget gets an item there, one with several a submenu)."""
    from napari._app_model import get_app_model

    app = get_app_model()
    menus = [app.menus.get_menu("napari/plugins")]
    if "napari/plugins/napari-patchwork" in app.menus:
        menus.append(app.menus.get_menu("napari/plugins/napari-patchwork"))
    for menu in menus:
        for item in menu:
            command = getattr(item, "command", None)
            if command is not None and command.id.startswith("napari-patchwork"):
                yield command.title, command.id


def test_sample_data_opens(plugin_viewer):
    plugin_viewer.open_sample("napari-patchwork", "ihc")
    names = [layer.name for layer in plugin_viewer.layers]
    assert names == ["ihc", "nuclei"]
    assert plugin_viewer.layers["ihc"].rgb
    assert plugin_viewer.layers["nuclei"].data.max() > 10


def test_reader_is_offered_for_patch_folders_only(npe2pm, tmp_path):
    npe2pm.register(MANIFEST)
    (tmp_path / "folder").mkdir()

    def ours(path):
        return any(
            r.command.startswith("napari-patchwork.")
            for r in npe2pm.iter_compatible_readers(str(path))
        )

    assert ours(tmp_path / "folder")
    assert ours(tmp_path / "folder" / "dataset.json")
    assert not ours(tmp_path / "slide.tif")  # napari's own readers are not competed with
    assert not ours(tmp_path / "notes.json")
