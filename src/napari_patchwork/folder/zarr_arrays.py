"""The zarr container of a patch folder: ``images.zarr`` and ``masks.zarr``, one zarr v3 array
each of shape ``(n_patches, *patch_shape)``, one chunk per patch, many patches per shard file.

The shard files are written and read here, without zarr's per-chunk machinery: a shard is
the chunks' bytes one after the other, then the index (``(offset, nbytes)`` per chunk as
little-endian uint64, ``2**64 - 1`` for a missing chunk) and its CRC-32C, as the zarr v3
``sharding_indexed`` codec lays it out (``index_location: end``). Uncompressed chunks are
the patch's raw little-endian bytes, so a shard is one ``writev`` of the patches' own
memory; ``compression="zstd"`` compresses each chunk as zarr's ``zstd`` codec does. Any
zarr v3 reader opens the arrays (``zarr.open_array(folder / "images.zarr")``); the tests
check both directions against zarr itself.

Every shard file is written under a temporary name and renamed, so a shard with its final
name is complete. Nothing read is believed: ``zarr.json`` must be exactly the metadata
``dataset.json`` implies (:meth:`PatchArray.check`), a shard's index must pass its
checksum and point inside the file, and every chunk must decode to exactly one patch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_patchwork.folder.errors import PatchFolderError
from napari_patchwork.folder.files import AtomicFile, write_text_atomic
from napari_patchwork.folder.names import is_temp
from napari_patchwork.folder.patch_files import inside

if TYPE_CHECKING:
    from napari_patchwork.folder.dataset import DatasetInfo

IMAGES_ARRAY = "images.zarr"
MASKS_ARRAY = "masks.zarr"
ZARR_COMPRESSIONS: tuple[str | None, ...] = (None, "zstd")
"""Chunk compression of the zarr container: none (fastest to write and read) or zstd."""
ZSTD_LEVEL = 1
SHARD_BYTES = 64 * 2**20
"""About this many bytes of image and mask patches share one shard file of each array."""
MAX_SHARD_PATCHES = 16_384
METADATA_FILE = "zarr.json"
_MISSING = 2**64 - 1
_SHARD_KEY = re.compile(r"^c(/[0-9]+)+$")


def shard_patches(patch_bytes: int, n_patches: int) -> int:
    """Patches per shard: about :data:`SHARD_BYTES` of image and mask bytes (``patch_bytes``
    per patch), at most the export's ``n_patches``, at least 1."""
    return max(1, min(SHARD_BYTES // max(patch_bytes, 1), MAX_SHARD_PATCHES, n_patches))


def zarr_data_type(dtype: Any) -> str:
    """The zarr v3 ``data_type`` of a numpy dtype (``uint8``, ``float32``, ``bool``...)."""
    return np.dtype(dtype).newbyteorder("=").name


@dataclass(frozen=True)
class PatchArray:
    """One array of the container as ``dataset.json`` describes it.

    ``patch_shape`` is one patch (channels included for images), ``dtype`` the folder's
    dtype (patches are stored little-endian and given back in this dtype),
    ``shard_patches`` the patches per shard file, ``compression`` None or ``"zstd"``.
    """

    name: str
    n_patches: int
    patch_shape: tuple[int, ...]
    dtype: np.dtype
    shard_patches: int
    compression: str | None = None

    @property
    def stored_dtype(self) -> np.dtype:
        return np.dtype(self.dtype).newbyteorder("<")

    @property
    def chunk_bytes(self) -> int:
        return int(np.prod(self.patch_shape, dtype=np.int64)) * self.stored_dtype.itemsize

    @property
    def n_shards(self) -> int:
        return -(-self.n_patches // self.shard_patches)

    def resized(self, n_patches: int) -> PatchArray:
        return PatchArray(
            self.name,
            n_patches,
            self.patch_shape,
            self.dtype,
            self.shard_patches,
            self.compression,
        )

    def metadata(self) -> dict[str, Any]:
        """The array's ``zarr.json`` (as zarr 3 writes it for these settings)."""
        fill: Any = False if self.dtype.kind == "b" else (0.0 if self.dtype.kind == "f" else 0)
        data_codec: dict[str, Any] = {"name": "bytes"}
        if self.stored_dtype.itemsize > 1:
            data_codec["configuration"] = {"endian": "little"}
        codecs = [data_codec]
        if self.compression == "zstd":
            codecs.append(
                {"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}}
            )
        sharding = {
            "chunk_shape": [1, *self.patch_shape],
            "codecs": codecs,
            "index_codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "crc32c"},
            ],
            "index_location": "end",
        }
        return {
            "shape": [self.n_patches, *self.patch_shape],
            "data_type": zarr_data_type(self.dtype),
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": [self.shard_patches, *self.patch_shape]},
            },
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill,
            "codecs": [{"name": "sharding_indexed", "configuration": sharding}],
            "attributes": {},
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": [],
        }

    def shard_key(self, shard: int) -> str:
        """The shard file of shard number ``shard``, relative to the array's folder."""
        return "/".join(["c", str(int(shard))] + ["0"] * len(self.patch_shape))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - small frozen keys; asked once per patch
    def shard_file(self, shard: int) -> str:
        """The shard file relative to the patch folder (``images.zarr/c/3/0/0/0``)."""
        return f"{self.name}/{self.shard_key(shard)}"

    # -- writing ------------------------------------------------------------------------
    def write_metadata(self, folder: str | os.PathLike, fsync: bool = False) -> None:
        """Create the array's folder (if needed) and write its ``zarr.json`` atomically."""
        path = Path(folder) / self.name
        path.mkdir(exist_ok=True)
        text = json.dumps(self.metadata(), indent=2) + "\n"
        write_text_atomic(path / METADATA_FILE, text, fsync)

    def write_shard(
        self,
        folder: str | os.PathLike,
        shard: int,
        patches: Sequence[np.ndarray],
        fsync: bool = False,
    ) -> None:
        """Write shard ``shard`` whole: ``patches`` are its first ``len(patches)`` patches
        (the rest of the shard stays empty), each of :attr:`patch_shape`."""
        writer = ShardWriter(folder, self, shard, fsync)
        try:
            writer.add(patches)
            writer.close()
        except BaseException:
            writer.discard()
            raise

    def encoded(self, patch: np.ndarray) -> np.ndarray:
        """One patch as its chunk's bytes (raw little-endian, or zstd-compressed)."""
        if tuple(patch.shape) != self.patch_shape:
            raise ValueError(f"patch of shape {patch.shape}, the array's are {self.patch_shape}")
        raw = np.ascontiguousarray(patch, dtype=self.stored_dtype).reshape(-1).view(np.uint8)
        if self.compression == "zstd":
            from numcodecs import Zstd

            return np.frombuffer(Zstd(level=ZSTD_LEVEL).encode(raw), dtype=np.uint8)
        return raw

    # -- reading ------------------------------------------------------------------------
    def check(self, folder: str | os.PathLike) -> None:
        """The array's folder is inside ``folder`` and its ``zarr.json`` is exactly this
        array's metadata; else :class:`PatchFolderError` saying what differs."""
        where = Path(folder) / self.name
        path = inside(Path(folder), f"{self.name}/{METADATA_FILE}", f"{self.name}")
        inside(Path(folder), self.name, self.name)
        try:
            with open(path, encoding="utf-8") as fh:
                found = json.load(fh)
        except FileNotFoundError:
            raise PatchFolderError(
                f"{where} is missing (or has no {METADATA_FILE}); the folder is incomplete: "
                "export again."
            ) from None
        except (OSError, ValueError) as err:
            raise PatchFolderError(
                f"{where}/{METADATA_FILE} cannot be read ({err}); export again."
            ) from None
        wanted = self.metadata()
        if not isinstance(found, dict):
            raise PatchFolderError(f"{where}/{METADATA_FILE} is not zarr array metadata.")
        for key in sorted(set(wanted) | set(found)):
            if found.get(key) != wanted.get(key):
                raise PatchFolderError(
                    f"{where}: {key} is {_short(found.get(key))}, dataset.json implies "
                    f"{_short(wanted.get(key))} (the array was replaced or edited); export again."
                )

    def read(self, folder: str | os.PathLike, index: int) -> np.ndarray:
        """Patch ``index`` (the manifest's ``array_index``), checked, in the folder's dtype
        (:class:`ShardReader` reads many faster)."""
        reader = ShardReader(folder, self)
        try:
            return reader.read(index)
        finally:
            reader.close()


class ShardWriter:
    """One shard file written from its first patch on, in pieces (:meth:`add`), under a
    temporary name; :meth:`close` appends the index and gives the file its name (a shard
    with its final name is complete), :meth:`discard` removes it. Patches are written
    once, in order, and never read back. Made in one thread, it may be written and closed
    in another."""

    def __init__(
        self, folder: str | os.PathLike, array: PatchArray, shard: int, fsync: bool = False
    ) -> None:
        self.array = array
        path = Path(folder) / array.name / array.shard_key(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = AtomicFile(path, fsync)
        self.sizes: list[int] = []

    def add(self, patches: Sequence[np.ndarray]) -> None:
        """Append the next patches of the shard (each of the array's patch shape)."""
        if len(self.sizes) + len(patches) > self.array.shard_patches:
            raise ValueError(f"a shard holds at most {self.array.shard_patches} patches")
        chunks = [self.array.encoded(p) for p in patches]
        self.file.write(chunks)
        self.sizes += [c.nbytes for c in chunks]

    def close(self) -> None:
        """Append the index (and its checksum) and give the shard its name."""
        if not self.sizes:
            raise ValueError("a shard holds at least one patch")
        index = np.full((self.array.shard_patches, 2), _MISSING, dtype="<u8")
        sizes = np.array(self.sizes, dtype=np.uint64)
        index[: len(sizes), 1] = sizes
        index[: len(sizes), 0] = np.cumsum(sizes) - sizes
        index_bytes = index.tobytes()
        self.file.write([index_bytes, _crc32c(index_bytes).to_bytes(4, "little")])
        self.file.commit()

    def discard(self) -> None:
        """Remove the unfinished shard's temporary file (nothing once closed)."""
        self.file.discard()


class ShardReader:
    """Reads patches of one :class:`PatchArray`, keeping the last :attr:`MAX_OPEN` shard
    files open with their checked index (one ``pread`` per patch after that).

    Picklable (a copy opens its own files), so data loader workers can share one.
    """

    MAX_OPEN = 32

    def __init__(self, folder: str | os.PathLike, array: PatchArray) -> None:
        self.folder, self.array = os.fspath(folder), array
        self._open: OrderedDict[int, tuple[int, np.ndarray, int]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "array": self.array}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["array"])

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        """Close the open shard files (reading again reopens them)."""
        while self._open:
            os.close(self._open.popitem()[1][0])

    def read(self, index: int) -> np.ndarray:
        """Patch ``index`` of the array, checked, in the folder's dtype."""
        array = self.array
        if not 0 <= index < array.n_patches:
            raise PatchFolderError(
                f"{array.name} has no patch {index} (it holds {array.n_patches})."
            )
        shard, position = divmod(int(index), array.shard_patches)
        fd, table, _ = self._shard(shard)
        offset, nbytes = table[position].tolist()
        if offset == _MISSING and nbytes == _MISSING:
            raise PatchFolderError(f"{self._where(index)} is not in its shard; export again.")
        data = os.pread(fd, nbytes, offset)
        if array.compression is not None:
            data = self._decompressed(data, index)
        stored = np.frombuffer(data, dtype=array.stored_dtype).reshape(array.patch_shape)
        return stored.astype(array.dtype) if stored.dtype != array.dtype else stored

    def _where(self, index: int) -> str:
        shard = int(index) // self.array.shard_patches
        return f"{Path(self.folder) / self.array.shard_file(shard)} (patch {index})"

    def _shard(self, shard: int) -> tuple[int, np.ndarray, int]:
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        name = self.array.shard_file(shard)
        where = f"{Path(self.folder) / name}"
        inside(Path(self.folder), name, where)  # a link out is never even opened
        fd = open_inside(self.folder, name, where)
        try:
            entry = (fd, self._index(fd, where), 0)
        except BaseException:
            os.close(fd)
            raise
        self._open[shard] = entry
        if len(self._open) > self.MAX_OPEN:
            os.close(self._open.popitem(last=False)[1][0])
        return entry

    def _index(self, fd: int, where: str) -> np.ndarray:
        """The shard's ``(offset, nbytes)`` table, checked: checksum, chunks inside the
        file, uncompressed chunks exactly one patch long."""
        array = self.array
        size = os.fstat(fd).st_size
        index_bytes = 16 * array.shard_patches
        end = size - index_bytes - 4
        if end < 0:
            raise PatchFolderError(f"{where} is cut short ({size} bytes); export again.")
        tail = os.pread(fd, index_bytes + 4, end)
        if _crc32c(tail[:-4]) != int.from_bytes(tail[-4:], "little"):
            raise PatchFolderError(f"{where}: the shard index fails its checksum; export again.")
        table = np.frombuffer(tail[:-4], dtype="<u8").reshape(-1, 2)
        present = ~((table[:, 0] == _MISSING) & (table[:, 1] == _MISSING))
        offsets, sizes = table[present, 0], table[present, 1]
        bad = (offsets > end) | (sizes > end - np.minimum(offsets, end))
        if array.compression is None:
            bad |= sizes != array.chunk_bytes
        if bad.any():
            raise PatchFolderError(f"{where}: the shard index is damaged; export again.")
        return table

    def _decompressed(self, data: bytes, index: int) -> bytes:
        from numcodecs import Zstd

        try:
            data = Zstd().decode(data)
        except Exception as err:  # noqa: BLE001 - any decoder failure is damage
            raise PatchFolderError(
                f"{self._where(index)} cannot be decompressed ({err}); export again."
            ) from None
        if len(data) != self.array.chunk_bytes:
            raise PatchFolderError(
                f"{self._where(index)} holds {len(data)} bytes, not one patch; export again."
            )
        return bytes(data)


@dataclass(frozen=True)
class ArrayPatch:
    """One patch of an array (``index`` along its first axis): a picklable source that a
    lazy stitch's block reads."""

    folder: str
    array: PatchArray
    index: int

    def read(self) -> np.ndarray:
        return self.array.read(self.folder, self.index)


def patch_arrays(
    info: DatasetInfo, n_patches: int | None = None
) -> tuple[PatchArray, PatchArray | None]:
    """The image and mask (None without a mask) arrays of a zarr export, from its
    ``dataset.json`` (checked by its schema); ``n_patches`` defaults to its ``n_patches``."""
    n = int(info.n_patches if n_patches is None else n_patches)
    shard = int(info.arrays["shard_patches"])
    spatial = tuple(int(s) for s in info.patch_size)
    shape = list(spatial)
    if info.channel_axis is not None:
        shape.insert(info.channel_axis, int(info.image.shape[info.channel_axis]))
    compression = info.compression
    image = PatchArray(
        IMAGES_ARRAY, n, tuple(shape), np.dtype(info.image.dtype), shard, compression
    )
    if info.mask is None:
        return image, None
    mask = PatchArray(MASKS_ARRAY, n, spatial, np.dtype(info.mask.dtype), shard, compression)
    return image, mask


def open_inside(folder: str | os.PathLike, name: str, where: str) -> int:
    """A read-only descriptor of the regular file ``folder/name`` if the file opened lies
    inside ``folder`` (checked on the open file itself: no link leads out), else
    :class:`PatchFolderError`."""
    path = os.path.join(folder, name)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise PatchFolderError(f"{where} is missing; export again.") from None
    except OSError as err:  # a link as the last part (ELOOP), a folder, no permission
        raise PatchFolderError(
            f"{where} cannot be opened as a file inside the folder ({err.strerror}); export again."
        ) from None
    try:
        proc = f"/proc/self/fd/{fd}"
        real = os.readlink(proc) if os.path.exists(proc) else os.path.realpath(path)
        root = _real_folder(os.fspath(folder))
        if os.path.commonpath([root, real]) != root or not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PatchFolderError(
                f"{where} points outside {folder} or is not a file; patch folders hold their "
                "own files: copy the folder again, or export again."
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


@functools.lru_cache(maxsize=64)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def remove_arrays(folder: str | os.PathLike, names: Sequence[str]) -> None:
    """Remove the arrays ``names`` of ``folder``: their ``zarr.json``, shard files and our
    temporary files, then their folders if that left them empty (nothing else is touched;
    a link in their place is removed, not followed)."""
    for name in names:
        path = Path(folder) / name
        if path.is_symlink():
            path.unlink()
            continue
        if not path.is_dir():
            continue
        for root, dirs, files in os.walk(path, topdown=False):
            relative = Path(root).relative_to(path).as_posix()
            for file in files:
                key = file if relative == "." else f"{relative}/{file}"
                if key == METADATA_FILE or _SHARD_KEY.match(key) or is_temp(file):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(root, file))
            for sub in dirs:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(root, sub))  # only if empty
        with contextlib.suppress(OSError):
            path.rmdir()


def temporary_shard_files(folder: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """Our temporary files inside the arrays ``names`` (left by an interrupted export),
    relative to ``folder``."""
    found = []
    for name in names:
        path = Path(folder) / name
        if path.is_symlink() or not path.is_dir():
            continue
        for root, _, files in os.walk(path):
            found += [(Path(root) / f).relative_to(folder).as_posix() for f in files if is_temp(f)]
    return found


def shard_files_on_disk(folder: str | os.PathLike, name: str) -> set[str]:
    """The shard files of array ``name`` (relative to ``folder``), without following links."""
    path = Path(folder) / name
    if path.is_symlink() or not path.is_dir():
        return set()
    found = set()
    for root, _, files in os.walk(path):
        relative = Path(root).relative_to(path).as_posix()
        for file in files:
            key = f"{relative}/{file}"
            if _SHARD_KEY.match(key):
                found.add(f"{name}/{key}")
    return found


def _crc32c(data: bytes) -> int:
    import google_crc32c

    return int(google_crc32c.value(data))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
