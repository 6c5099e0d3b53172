"""Reading and writing whole images for the command line (no napari, no Qt).

TIFF / OME-TIFF go through tifffile, lazily (a dask array over tifffile's zarr
store) when the file is large or when asked; PNG/JPEG/BMP/GIF through imageio;
``.npy`` through numpy (memory-mapped); ``.zarr`` folders through dask (an OME-Zarr
image: its level 0). :func:`read_pyramid` gives the levels of pyramidal TIFFs and OME-Zarr
images for exports at lower resolution and for thumbnails.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_patchwork._common import is_dask
from napari_patchwork.pyramid import Pyramid

LAZY_THRESHOLD_BYTES = 512 * 2**20
"""Files larger than this (512 MiB) are opened lazily as dask arrays by default."""

TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf")
IMAGEIO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message says why."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def read_image(path: str | os.PathLike, lazy: bool | None = None):
    """Read an image file as a numpy array, or a dask array when ``lazy``.

    ``lazy=None`` decides by size (:data:`LAZY_THRESHOLD_BYTES`). Lazy TIFFs are
    read through tifffile's zarr store, chunked like the file's tiles/strips, so
    nothing loads the whole image. Axis order is the file's (``yx``, ``yxc`` for
    RGB, ``zyx``...).
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder.")
    suffix = _suffix(path)
    if path.is_dir() and suffix != ".zarr":
        raise ImageReadError(
            f"{path} is a folder; give an image file (TIFF, PNG, JPEG, NPY or .zarr)."
        )
    if lazy is None:
        size = path.stat().st_size if path.is_file() else LAZY_THRESHOLD_BYTES + 1
        lazy = size > LAZY_THRESHOLD_BYTES
    image = _read(path, suffix, lazy)
    if 0 in tuple(image.shape):
        raise ImageReadError(
            f"{path}: the file holds no pixels (shape {tuple(image.shape)}); is it cut short?"
        )
    return image


def _read(path: Path, suffix: str, lazy: bool):
    """:func:`read_image` for one file type (errors that name the file)."""
    try:
        if suffix in TIFF_SUFFIXES:
            return _read_tiff(path, lazy)
        if suffix == ".npy":
            array = np.load(path, mmap_mode="r")
            if lazy:
                import dask.array as da

                return da.from_array(array, chunks="auto")
            return np.asarray(array)
        if suffix == ".zarr":
            import dask.array as da

            datasets = _multiscales(path)  # an OME-Zarr image: its level 0
            array = da.from_zarr(str(path if datasets is None else path / datasets[0]["path"]))
            return array if lazy else array.compute()
        if suffix in IMAGEIO_SUFFIXES:
            import imageio.v3 as iio

            return iio.imread(path)
    except ImageReadError:
        raise
    except Exception as err:  # a corrupt or unsupported file: say which and why
        raise ImageReadError(f"{path}: cannot read it as an image ({err}).") from err
    raise ImageReadError(
        f"{path}: unknown image type {suffix!r}; use TIFF/OME-TIFF, PNG, JPEG, NPY or a .zarr folder."
    )


LAZY_CHUNK_BYTES = 4 * 2**20
"""Largest dask chunk of a lazily read TIFF (whole multiples of its tiles, about square):
small enough that reading one patch decodes little more than the patch."""


def _read_tiff_block(path: str, contiguous: bool, block_info=None):
    """One dask block of a TIFF (level 0): only that region is read from the file."""
    import tifffile

    region = tuple(slice(a, b) for a, b in block_info[None]["array-location"])
    if contiguous:  # uncompressed, in one piece: memory-map and copy the region
        return np.array(tifffile.memmap(path, mode="r")[region])
    return tifffile.imread(path, selection=region, level=0)


def grow_chunks(
    shape: Sequence[int],
    unit: Sequence[int],
    itemsize: int,
    chunk_bytes: int = LAZY_CHUNK_BYTES,
) -> tuple[int, ...]:
    """Dask chunks for an array of ``shape``: ``unit`` (e.g. a file's tile) doubled axis by
    axis in turn while a chunk stays within ``chunk_bytes``, so chunks are whole multiples
    of the unit (but for the last one per axis)."""
    chunks = [max(1, min(u, s)) for u, s in zip(unit, shape)]
    grown = True
    while grown:
        grown = False
        for axis in range(len(shape)):
            bigger = min(shape[axis], chunks[axis] * 2)
            others = int(np.prod(chunks, dtype=np.int64)) // chunks[axis]
            if bigger > chunks[axis] and others * bigger * itemsize <= chunk_bytes:
                chunks[axis] = bigger
                grown = True
    return tuple(chunks)


def _read_tiff(path: Path, lazy: bool):
    """A TIFF as numpy, or lazily as dask, chunk by chunk.

    Blocks hold only the file's path, so the array can be sent to dask.distributed
    workers (which must see the same file system). Tiled/compressed files are read
    per region through tifffile's zarr store, so a block decodes only its tiles;
    uncompressed contiguous files are memory-mapped.
    """
    import tifffile

    if not lazy:
        return tifffile.imread(path, level=0)
    import dask.array as da
    import zarr

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        contiguous = series.dataoffset is not None
    with tifffile.imread(path, aszarr=True, level=0) as store:
        array = zarr.open(store, mode="r")
        shape, dtype, tile = array.shape, array.dtype, array.chunks
    unit = (1,) * len(shape) if contiguous else tile
    if contiguous:  # start from one channel-complete pixel
        unit = tuple(s if i == len(shape) - 1 and s <= 4 else 1 for i, s in enumerate(shape))
    chunks = grow_chunks(shape, unit, dtype.itemsize)
    return da.map_blocks(
        _read_tiff_block,
        str(path),
        contiguous,
        chunks=da.core.normalize_chunks(chunks, shape),
        dtype=dtype,
        meta=np.empty((0,) * len(shape), dtype=dtype),
    )


def read_levels(path: str | os.PathLike) -> list:
    """The pyramid levels of a TIFF or OME-Zarr image, largest first, as zarr arrays that
    read only the region asked for (pictures of a slide read a small level); ``[]`` for
    other files and for images of one level."""
    pyramid = read_pyramid(path)
    return [] if pyramid is None else list(pyramid.levels)


def read_pyramid(path: str | os.PathLike) -> Pyramid | None:
    """The pyramid of a pyramidal TIFF / OME-TIFF / SVS (tifffile's series levels) or of an
    OME-Zarr image (its multiscales datasets, with the scale factors its metadata claims),
    levels as zarr arrays; None for other files and for images of one level."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".zarr":
        return _ome_zarr_pyramid(path)
    if suffix not in TIFF_SUFFIXES:
        return None
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            n_levels = len(tif.series[0].levels)
        if n_levels < 2:
            return None
        return Pyramid(
            tuple(
                zarr.open(tifffile.imread(path, aszarr=True, level=i), mode="r")
                for i in range(n_levels)
            )
        )
    except Exception as err:  # a corrupt or unsupported file: say which and why
        raise ImageReadError(f"{path}: cannot read its pyramid levels ({err}).") from err


def _multiscales(path: Path) -> list | None:
    """The ``multiscales`` datasets of an OME-Zarr image (0.4 or 0.5), or None."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # an array, or no zarr at all: not an OME-Zarr image
        return None
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        return None
    datasets = multiscales[0].get("datasets") if isinstance(multiscales[0], dict) else None
    if not isinstance(datasets, list) or not datasets:
        raise ImageReadError(f"{path}: its OME-Zarr multiscales metadata lists no datasets.")
    return datasets


def _dataset_scale(dataset: dict) -> list[float] | None:
    for transform in dataset.get("coordinateTransformations") or ():
        if isinstance(transform, dict) and transform.get("type") == "scale":
            return [float(v) for v in transform.get("scale", ())]
    return None


def _ome_zarr_pyramid(path: Path) -> Pyramid | None:
    """An OME-Zarr image's levels and the factors its scales claim (over level 0's)."""
    import zarr

    datasets = _multiscales(path)
    if datasets is None or len(datasets) < 2:
        return None
    try:
        levels = tuple(zarr.open_array(str(path / d["path"]), mode="r") for d in datasets)
    except Exception as err:
        raise ImageReadError(f"{path}: cannot read its OME-Zarr levels ({err}).") from err
    scales = [_dataset_scale(d) for d in datasets]
    base = scales[0]
    claimed = tuple(
        None
        if base is None or s is None or len(s) != len(base) or 0 in base
        else tuple(v / b for v, b in zip(s, base))
        for s in scales
    )
    return Pyramid(levels, claimed)


def read_pixel_size(path: str | os.PathLike) -> tuple[tuple[float, ...], str | None] | None:
    """Physical pixel size of an OME-TIFF, ``((z,) y, x)`` in its units, and the unit; else None."""
    path = Path(path)
    if _suffix(path) not in TIFF_SUFFIXES:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
    except Exception:  # not readable as TIFF: read_image reports it
        return None
    if not xml:
        return None
    from xml.etree import ElementTree

    pixels = next(
        (el for el in ElementTree.fromstring(xml).iter() if el.tag.endswith("Pixels")), None
    )
    if (
        pixels is None
        or "PhysicalSizeX" not in pixels.attrib
        or "PhysicalSizeY" not in pixels.attrib
    ):
        return None
    sizes = [float(pixels.attrib["PhysicalSizeY"]), float(pixels.attrib["PhysicalSizeX"])]
    if "PhysicalSizeZ" in pixels.attrib and int(pixels.attrib.get("SizeZ", "1")) > 1:
        sizes.insert(0, float(pixels.attrib["PhysicalSizeZ"]))
    unit = pixels.attrib.get("PhysicalSizeXUnit", "µm")
    return tuple(sizes), {"µm": "micrometer", "nm": "nanometer", "mm": "millimeter"}.get(unit, unit)


def guess_channel_axis(shape: tuple[int, ...]) -> int | None:
    """-1 for ``(y, x, 3|4)`` RGB(A) arrays, else None (documented CLI default)."""
    if len(shape) == 3 and shape[-1] in (3, 4):
        return -1
    return None


WRITE_TILE = 256
"""Tile size (px) of TIFFs written from dask arrays."""


def _dask_tiles(array, tile: int, rgb: bool):
    """Tiles of a dask array in TIFF order: page by page over the axes before y and x
    (none for an RGB(A) ``(y, x, 3|4)`` array), each page as :func:`_page_tiles`."""
    leading = array.shape[: array.ndim - (3 if rgb else 2)]
    for index in np.ndindex(*leading):
        yield from _page_tiles(array[index], tile)


def _page_tiles(array, tile: int):
    """Tiles of a 2D (or 2D + trailing channel) dask array in TIFF order.

    Computes one chunk row at a time (each chunk of the page exactly once) and keeps
    the rows left over below the last whole tile row for the next one, so memory
    stays at about one chunk row.
    """
    height, width = array.shape[:2]
    pending = None
    y0 = 0
    for rows in array.chunks[0]:
        block = np.asarray(array[y0 : y0 + rows].compute())
        y0 += rows
        pending = block if pending is None or not len(pending) else np.concatenate([pending, block])
        del block
        whole = pending.shape[0] // tile * tile if y0 < height else pending.shape[0]
        for ty in range(0, whole, tile):
            for tx in range(0, width, tile):
                piece = pending[ty : ty + tile, tx : tx + tile]
                if piece.shape[:2] != (tile, tile):
                    pad = [(0, tile - piece.shape[0]), (0, tile - piece.shape[1])]
                    piece = np.pad(piece, pad + [(0, 0)] * (piece.ndim - 2))
                yield piece
        pending = pending[whole:].copy()  # the rows left over, not a view that keeps the strip


def write_image(
    path: str | os.PathLike, array, *, compression: str | None = "zlib", overwrite: bool = False
) -> Path:
    """Write a whole array: TIFF (tifffile, BigTIFF when large), PNG/JPEG (imageio) or NPY.

    A dask array written as TIFF is computed and written a strip of 256 px tiles
    at a time (never whole), page by page for axes before y and x. Writes to a temporary name in the same folder and
    renames it, so an interrupted write never leaves a half file under the final name.
    An existing ``path`` is replaced only with ``overwrite`` (else FileExistsError).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; choose another name or allow overwriting (--overwrite)."
        )
    suffix = _suffix(path)
    tmp = path.with_name(f".{path.name}.part")
    lazy_tiff = is_dask(array) and suffix in TIFF_SUFFIXES and array.ndim >= 2
    if not lazy_tiff:
        array = np.asarray(array)
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            nbytes = int(np.prod(array.shape)) * np.dtype(array.dtype).itemsize
            options = dict(
                compression=compression,
                bigtiff=nbytes > 2**31,
                photometric="rgb" if guess_channel_axis(array.shape) == -1 else "minisblack",
            )
            if lazy_tiff:
                tifffile.imwrite(
                    tmp,
                    _dask_tiles(array, WRITE_TILE, rgb=options["photometric"] == "rgb"),
                    shape=array.shape,
                    dtype=array.dtype,
                    tile=(WRITE_TILE, WRITE_TILE),
                    **options,
                )
            else:
                tifffile.imwrite(tmp, array, **options)
        elif suffix == ".npy":
            with open(tmp, "wb") as handle:
                np.save(handle, array)
        elif suffix in IMAGEIO_SUFFIXES:
            import imageio.v3 as iio

            iio.imwrite(tmp, array, extension=suffix)
        else:
            raise ImageReadError(f"{path}: unknown output type {suffix!r}; use .tif, .png or .npy.")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
