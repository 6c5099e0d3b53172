"""napari-patchwork: patch grids, pixel clustering and patch export.

Importing this package imports neither napari nor Qt: the computational core
(:mod:`napari_patchwork.grid`, ...) is plain numpy/dask.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-patchwork")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
