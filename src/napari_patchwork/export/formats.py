"""Patch file formats: an encoder per format, the fixed-layout fast path, OME metadata."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np

from napari_patchwork.export.errors import ExportError
from napari_patchwork.folder import FILE_FORMATS, atomic_write, atomic_write_buffers

OME_LENGTH_UNITS: dict[str, str] = {
    "micrometer": "µm",
    "micron": "µm",
    "um": "µm",
    "µm": "µm",
    "nanometer": "nm",
    "nm": "nm",
    "millimeter": "mm",
    "mm": "mm",
    "centimeter": "cm",
    "cm": "cm",
    "meter": "m",
    "m": "m",
    "angstrom": "Å",
    "Å": "Å",
}
"""Length units (pint names as napari gives them, or OME symbols) -> OME ``UnitsLength``."""


UNKNOWN_UNITS = (None, "", "pixel", "px")


def _png_array(array: np.ndarray, what: str) -> np.ndarray:
    """The array as Pillow writes it to PNG, or ExportError (see the module notes)."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if what == "mask" and array.dtype not in (np.uint8, np.uint16):
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ExportError(
                f"a mask patch holds labels from {array.min()} to {array.max()}; PNG masks hold "
                "0..65535: use fmt='tiff' or 'npy', or relabel=True."
            )
        array = array.astype(np.uint16)
    return array


def _encoder(
    fmt: str,
    what: str,
    ndim: int,
    *,
    compression: str | None,
    rgb: bool,
    ome_metadata: Mapping[str, Any] | None,
) -> Callable[[BinaryIO, np.ndarray], None]:
    """``encode(fh, patch)`` that writes one patch file of format ``fmt``.

    ``what`` is ``"image"`` or ``"mask"``, ``ndim`` the patch's number of axes; PNG
    patches must already be what Pillow writes (:func:`_png_array`).
    """
    if fmt in ("tiff", "ome-tiff"):
        photometric = "rgb" if (what == "image" and rgb) else "minisblack"
        if fmt == "ome-tiff":
            metadata = dict(ome_metadata or {})
            if what == "mask" and "axes" in metadata:
                metadata["axes"] = metadata["axes"].replace("C", "").replace("S", "")
        else:
            # plain 2D and RGB pages read back in their shape without tifffile's shape
            # description, which costs more time than writing a 256 px patch
            plain = ndim <= 2 or (photometric == "rgb" and ndim == 3)
            metadata = None if plain else {}

        def encode(fh: BinaryIO, data: np.ndarray) -> None:
            import tifffile

            if fmt == "tiff" and data.ndim < 2:
                data = data.reshape(1, -1)  # TIFF pages are 2D: one row (stitch reshapes it back)
            tifffile.imwrite(
                fh,
                data,
                photometric=photometric,
                compression=compression,
                metadata=metadata,
                ome=fmt == "ome-tiff",
                software=False,
            )

        return encode
    if fmt == "npy":
        return lambda fh, data: np.save(fh, np.ascontiguousarray(data), allow_pickle=False)
    if fmt == "png":

        def encode_png(fh: BinaryIO, data: np.ndarray) -> None:
            import imageio.v3 as iio

            iio.imwrite(fh, data, extension=".png")

        return encode_png
    raise ExportError(f"fmt={fmt!r} is not known; choose one of {', '.join(FILE_FORMATS)}.")


_FIXED_LAYOUT_MAX_BYTES = 8 * 2**20  # bigger patches: the encoder's per-file cost does not matter


@functools.lru_cache(maxsize=16)
def _fixed_layout(
    fmt: str, what: str, shape: tuple[int, ...], dtype: str, rgb: bool
) -> tuple[bytes, bytes] | None:
    """The bytes an uncompressed TIFF or NPY encoder writes before and after the raw
    (C-order) data of any array of this shape and dtype, or None if that is not how it
    writes them.

    Found with the real encoder: an array of random bytes and one with every byte
    inverted must give ``header + array.tobytes() + trailer`` with the same header
    and trailer (the data starts at the first byte where the two files differ). So
    writing ``header``, the patch's own memory and ``trailer`` gives the file the
    encoder would write, without its per-file cost (about 0.1 ms of Python for
    tifffile, as long as writing a 256 px patch takes).
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if (
        fmt not in ("tiff", "npy")
        or np.dtype(dtype).kind not in "uif"
        or not 0 < nbytes <= _FIXED_LAYOUT_MAX_BYTES
    ):
        return None
    encode = _encoder(fmt, what, len(shape), compression=None, rgb=rgb, ome_metadata=None)
    random_bytes = np.frombuffer(np.random.default_rng(0).bytes(nbytes), dtype=np.uint8)
    probes = [b.view(dtype).reshape(shape) for b in (random_bytes, ~random_bytes)]
    files = []
    for probe in probes:
        buffer = io.BytesIO()
        encode(buffer, probe)
        files.append(buffer.getvalue())
    if len(files[0]) != len(files[1]) or len(files[0]) < nbytes:
        return None
    differ = np.frombuffer(files[0], np.uint8) != np.frombuffer(files[1], np.uint8)
    start = int(np.argmax(differ))  # where the data starts, as every data byte differs
    header, trailer = files[0][:start], files[0][start + nbytes :]
    if any(f != header + p.tobytes() + trailer for f, p in zip(files, probes)):
        return None
    return header, trailer


def write_patch(
    image_patch: np.ndarray,
    mask_patch: np.ndarray | None,
    image_path: str | os.PathLike,
    mask_path: str | os.PathLike | None,
    *,
    fmt: str = "tiff",
    compression: str | None = None,
    rgb: bool = False,
    fsync: bool = False,
    ome_metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write one image patch (and its mask patch) atomically in format ``fmt``.

    The arrays are written as given (padding and relabelling happen before, in
    :func:`export_patch`). ``rgb`` marks a channel-last RGB(A) uint8/uint16 image
    patch for TIFF. ``ome_metadata`` (``fmt="ome-tiff"``) is tifffile's OME
    ``metadata`` for the image patch: ``axes`` (e.g. ``"YXS"``, ``"CYX"``) and the
    ``PhysicalSize*`` entries; the mask gets the same without the channel axis.
    Uncompressed TIFF and NPY files are written as the encoder's header and trailer
    for the patch's shape and dtype around the patch's bytes (see
    :func:`_fixed_layout`): the same files, faster.
    Needs nothing but the arrays and paths, so a ``dask.distributed`` worker can run it.
    """
    for array, path, what in ((image_patch, image_path, "image"), (mask_patch, mask_path, "mask")):
        if array is None:
            continue
        layout = None
        if compression is None and array.dtype.isnative:
            layout = _fixed_layout(fmt, what, array.shape, array.dtype.str, rgb)
        if layout is not None:
            raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
            atomic_write_buffers(path, (layout[0], raw, layout[1]), fsync)
        else:
            if fmt == "png":
                array = _png_array(array, what)  # refuses unwritable data before a file is opened
            encode = _encoder(
                fmt, what, array.ndim, compression=compression, rgb=rgb, ome_metadata=ome_metadata
            )

            def write(fh, data=array, encode=encode):
                encode(fh, data)

            atomic_write(path, write, fsync)


def check_png(
    image_dtype: np.dtype, n_spatial: int, channels: int | None, channel_axis: int | None, ndim: int
) -> None:
    hint = "use fmt='tiff' or 'npy' (both keep any dtype exactly)"
    if n_spatial != 2:
        raise ExportError(
            f"PNG holds 2D images, these patches have {n_spatial} spatial axes; {hint}."
        )
    if channel_axis is not None and channel_axis != ndim - 1:
        raise ExportError(f"PNG needs the channel axis last, it is axis {channel_axis}; {hint}.")
    if image_dtype not in (np.uint8, np.uint16, np.bool_):
        raise ExportError(
            f"PNG holds uint8 or uint16 images, this image is {image_dtype}; {hint}, "
            "or convert the image to uint8/uint16 first."
        )
    if channels not in (None, 1, 2, 3, 4):
        raise ExportError(f"PNG holds 1 to 4 channels, this image has {channels}; {hint}.")
    if image_dtype == np.uint16 and channels not in (None, 1):
        raise ExportError(
            f"PNG (as written by Pillow) holds uint16 only as greyscale; this image has "
            f"{channels} uint16 channels; {hint}, or convert it to uint8."
        )


def ome_tiff_metadata(
    names: Sequence[str],
    channel_axis: int | None,
    rgb: bool,
    ndim: int,
    pixel_size: Sequence[float] | None,
    units: Sequence[str | None] | None,
) -> dict[str, Any]:
    """tifffile's OME ``metadata`` for the image patches (axes, physical pixel size)."""
    hint = "use fmt='tiff' or 'npy'"
    if len(names) < 2:
        raise ExportError(f"OME-TIFF patches need y and x, these have {len(names)} axis; {hint}.")
    if channel_axis is not None and not rgb and channel_axis > ndim - 3:
        raise ExportError(
            "OME-TIFF stores channels before y and x (or RGB(A) uint8/uint16 last); this "
            f"image has them on axis {channel_axis}; move the channel axis first, or {hint}."
        )
    spatial = iter(n.upper() for n in names)
    axes = "".join(
        ("S" if rgb else "C") if a == channel_axis else next(spatial) for a in range(ndim)
    )
    metadata: dict[str, Any] = {"axes": axes}
    if pixel_size is None:
        return metadata
    for i, name in enumerate(names):
        if name not in "zyx":
            continue  # OME has no physical size for t
        metadata[f"PhysicalSize{name.upper()}"] = float(pixel_size[i])
        unit = None if units is None else units[i]
        if unit in UNKNOWN_UNITS:
            continue
        if unit not in OME_LENGTH_UNITS:
            raise ExportError(
                f"unit {unit!r} has no OME-TIFF equivalent; use one of "
                f"{', '.join(sorted(set(OME_LENGTH_UNITS)))}, or units=None."
            )
        metadata[f"PhysicalSize{name.upper()}Unit"] = OME_LENGTH_UNITS[unit]
    return metadata


def check_writable(
    fmt: str,
    what: str,
    dtype: np.dtype,
    shape: Sequence[int],
    *,
    compression: str | None,
    rgb: bool,
    ome_metadata: Mapping[str, Any] | None,
) -> None:
    """Refuse, before any file is written, a dtype that format ``fmt`` cannot hold.

    Writes one tiny patch of ``shape`` (the patch's axes, at most 2 px along y/x) with the
    real encoder into memory; its failure becomes an :class:`ExportError` that says what
    to use instead.
    """
    if fmt == "png":
        return  # check_png and _png_array say what PNG holds
    if fmt == "zarr":
        return  # the zarr arrays hold every numeric dtype (stored little-endian, given back exact)
    probe = np.zeros(tuple(shape), dtype=dtype)
    encode = _encoder(
        fmt, what, probe.ndim, compression=compression, rgb=rgb, ome_metadata=ome_metadata
    )
    try:
        encode(io.BytesIO(), probe)
    except Exception as err:  # noqa: BLE001 - the encoder's refusal, whatever its type
        raise ExportError(
            f"{fmt} files cannot hold this {what}'s {np.dtype(dtype)} values ({err}); use "
            "fmt='npy' or 'tiff', or convert the data first."
        ) from None
