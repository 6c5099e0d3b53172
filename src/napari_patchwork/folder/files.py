"""Writing files atomically, and finding an export's patch files on disk."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_patchwork._common import atomic_write, temporary_name
from napari_patchwork.folder.names import (
    FILE_FORMATS,
    IMAGES_DIR,
    MASKS_DIR,
    is_temp,
    patch_name_pattern,
)


def atomic_write_buffers(
    path: str | os.PathLike, buffers: Sequence[Any], fsync: bool = False
) -> None:
    """:func:`atomic_write` of the concatenation of ``buffers`` (bytes-like objects such
    as contiguous numpy arrays), written with one ``writev`` system call where the
    platform has it, without Python's file objects."""
    file = AtomicFile(path, fsync)
    try:
        file.write(buffers)
        file.commit()
    except BaseException:
        file.discard()
        raise


class AtomicFile:
    """A file written in pieces under a temporary name beside ``path`` (see
    :func:`atomic_write`), given its name by :meth:`commit` or removed by :meth:`discard`.

    Made in one thread, it may be written and committed in another (one at a time).
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False) -> None:
        self.path, self.fsync = os.fspath(path), fsync
        self.tmp = temporary_name(path)
        self.fd: int | None = os.open(self.tmp, _NEW_FILE_FLAGS, 0o666)

    def write(self, buffers: Sequence[Any]) -> None:
        """Append ``buffers`` (bytes-like objects), with ``writev`` where there is one."""
        if self.fd is None:
            raise ValueError(f"{self.path} is already committed or discarded")
        _write_all(self.fd, buffers)

    def commit(self) -> None:
        """Flush (with ``fsync``), close and give the file its name."""
        if self.fd is None:
            raise ValueError(f"{self.path} is already committed or discarded")
        fd, self.fd = self.fd, None
        try:
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        """Close and remove the temporary file (nothing if committed already)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)


_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
_WRITEV = getattr(os, "writev", None)  # not on Windows


def _write_all(fd: int, buffers: Sequence[Any]) -> None:
    views = [memoryview(b) for b in buffers]
    if _WRITEV is not None:  # in groups of at most 1024 buffers (the usual IOV_MAX)
        for first in range(0, len(views), 1024):
            group = views[first : first + 1024]
            written = _WRITEV(fd, group)
            if written != sum(v.nbytes for v in group):  # a short write (rare): finish it
                _write_view(fd, memoryview(b"".join(group))[written:])
        return
    for view in views:
        _write_view(fd, view)


def _write_view(fd: int, view: memoryview) -> None:
    view = view.cast("B")
    while view.nbytes:
        view = view[os.write(fd, view) :]


def write_text_atomic(path: str | os.PathLike, text: str, fsync: bool = False) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), fsync)


def patch_files_on_disk(folder: Path, stem: str, file_format: str) -> list[str]:
    """Patch files (``images/<name>``, ``masks/<name>``) named like an export's with this
    ``stem`` and ``file_format``, and leftover temporary files."""
    pattern = patch_name_pattern(stem, FILE_FORMATS.get(file_format, ".tif"))
    found = []
    for sub in (IMAGES_DIR, MASKS_DIR):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder / sub):
                if entry.is_file() and (pattern.match(entry.name) or is_temp(entry.name)):
                    found.append(f"{sub}/{entry.name}")
    return found
