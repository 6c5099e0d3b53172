"""Packaging: the manifest, and that importing the core pulls in no GUI."""

import pkgutil
import subprocess
import sys


def core_modules() -> list[str]:
    """Every module of the package but the widgets (found on disk, so new modules are covered)."""
    import napari_patchwork

    names = ["napari_patchwork"]
    for info in pkgutil.walk_packages(napari_patchwork.__path__, "napari_patchwork."):
        if not info.name.startswith("napari_patchwork._widgets") and not info.name.endswith(
            ".__main__"
        ):
            names.append(info.name)
    return names


def test_core_modules_are_found():
    found = core_modules()
    for name in ("napari_patchwork.folder", "napari_patchwork.export.run", "napari_patchwork.cli"):
        assert name in found


def test_importing_core_imports_no_qt_or_napari():
    # one process imports every core module; it then must hold no GUI module
    code = (
        f"import importlib, sys\nfor name in {core_modules()!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_manifest_is_valid_and_found_through_the_entry_point():
    from importlib.resources import files

    import npe2

    manifest = npe2.PluginManifest.from_distribution("napari-patchwork")
    assert manifest.name == "napari-patchwork"
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {"Patch tools"}  # one dock, the forms as its tabs
    packaged = files("napari_patchwork") / "napari.yaml"
    assert packaged.is_file()
    # every command points at an importable callable
    for command in manifest.contributions.commands:
        module, _, attr = command.python_name.partition(":")
        mod = __import__(module, fromlist=[attr])
        assert callable(getattr(mod, attr)), command.python_name


def test_npe2_validate_passes():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-patchwork"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_one_manifest_file():
    """The package's napari.yaml is the top-level file (a symlink), never a second copy."""
    from importlib.resources import files
    from pathlib import Path

    packaged = Path(str(files("napari_patchwork") / "napari.yaml"))
    top_level = Path(__file__).resolve().parents[1] / "napari.yaml"
    assert packaged.resolve() == top_level.resolve()


def test_code_stays_readable():
    """Files of a few hundred lines, functions that fit on a screen, options objects instead
    of long signatures, and no module reaching into another's private names."""
    import ast
    from pathlib import Path

    import napari_patchwork

    root = Path(napari_patchwork.__file__).parent
    problems = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(root)
        if source.count("\n") > 520:
            problems.append(f"{name}: {source.count(chr(10))} lines (at most ~500)")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                args = node.args
                n_params = len(args.posonlyargs + args.args + args.kwonlyargs)
                n_params -= bool(args.args) and args.args[0].arg in ("self", "cls")
                if length > 90:
                    problems.append(f"{name}:{node.lineno} {node.name}: {length} lines")
                if n_params > 12:
                    problems.append(f"{name}:{node.lineno} {node.name}: {n_params} parameters")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "napari_patchwork"
            ):
                private = [
                    a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"
                ]
                if private and node.module != "napari_patchwork":
                    problems.append(f"{name}: imports {private} from {node.module}")
    assert not problems, "\n".join(problems)
