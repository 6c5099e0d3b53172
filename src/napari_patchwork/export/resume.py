"""The export's folder: locked against a second export, checked, an earlier export of ours
resumed or replaced, leftovers of ours removed, and nothing else touched.

Files count as ours only when our journal or manifest names them (or they are our
temporary files), so ``overwrite`` never deletes a user's file that merely looks like
a patch file.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from napari_patchwork.export.errors import ExportError, FolderInUseError
from napari_patchwork.export.plan import ExportPlan
from napari_patchwork.export.shards import resumed_records, shard_target
from napari_patchwork.folder import (
    DATASET_FILE,
    IMAGES_DIR,
    JOURNAL_FILE,
    MANIFEST_FILE,
    MASKS_DIR,
    PatchFolderError,
    PatchRecord,
    is_temp,
    journal_files,
    load_journal,
    read_dataset_info,
    read_manifest_rows,
    write_dataset_info,
)
from napari_patchwork.folder.names import CONTAINER_FORMATS
from napari_patchwork.folder.zarr_arrays import (
    IMAGES_ARRAY,
    MASKS_ARRAY,
    remove_arrays,
    temporary_shard_files,
)

ARRAYS = (IMAGES_ARRAY, MASKS_ARRAY)
LOCK_FILE = ".patchwork-export.lock"
_TOP_LEVEL_TEMP = re.compile(
    rf"^\.({re.escape(MANIFEST_FILE)}|{re.escape(DATASET_FILE)})\.\d+-\d+\.part$"
)


class FolderLock:
    """An exclusive lock on an export folder, held while an export writes into it.

    A second export into the same folder (another thread or process on this machine)
    fails at once with :class:`ExportError` instead of deleting the first one's files.
    """

    def __init__(self, out: Path) -> None:
        self.path = out / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): exports are not guarded
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise ExportError(
                    f"another export is writing into {self.path.parent} right now; wait for it "
                    "to finish (or cancel it), or export into another folder."
                ) from None
            # the holder before us may have removed the file after we opened it: lock anew
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                self.fd = fd
                return self
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            os.close(self.fd)
            self.fd = None


def make_folder(out: Path) -> None:
    """Create ``out`` (and its parents), or say which part of the path is in the way."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; choose a folder for the patches.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), out)
        raise ExportError(
            f"cannot make the folder {out}: {blocker} is a file; choose another folder."
        ) from None


def prepare_folder(out: Path, plan: ExportPlan) -> tuple[dict[int, PatchRecord], set[str]]:
    """Check and set up ``out`` (locked by the caller); return the records an interrupted
    run left, to resume, and the patch files earlier exports of ours named (the export
    removes those its manifest does not list when it finishes)."""
    overwrite = plan.options.overwrite
    container = plan.options.fmt in CONTAINER_FORMATS
    try:
        old = read_dataset_info(out)
    except PatchFolderError as err:
        if not overwrite:
            raise FolderInUseError(
                out, f"holds a damaged patch export ({err})", "pass overwrite=True to replace it."
            ) from None
        old = None
    resumed: dict[int, PatchRecord] = {}
    earlier: set[str] = set()
    if old is None:
        if _foreign_files(out) and not overwrite:
            raise FolderInUseError(
                out,
                "is not empty and holds no patch export of ours",
                "choose an empty or new folder, or pass overwrite=True to write into it (files "
                "of the same name are replaced, no other file is touched).",
            )
        # a journal without its dataset.json belongs to no export here: never resume from it
        with contextlib.suppress(FileNotFoundError):
            (out / JOURNAL_FILE).unlink()
    else:
        differences = old.differences(plan.info)
        if differences and not overwrite:
            raise FolderInUseError(
                out,
                f"holds a patch export with other settings ({'; '.join(differences)})",
                "choose another folder, or pass overwrite=True to replace that export.",
            )
        if overwrite:  # redo from scratch (also with the same settings: the source may differ)
            _remove(out, our_files(out))
            remove_arrays(out, ARRAYS)
            for name in (JOURNAL_FILE, MANIFEST_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
        elif container:
            resumed = resumed_records(out, plan, shard_target(out, plan))
        else:
            files = {p.index: (p.image_file, p.mask_file) for p in plan.patches}
            resumed = load_journal(out, files)
            earlier = our_files(out)
    _remove(out, temporary_files(out))
    write_dataset_info(out, plan.info, plan.options.fsync)
    if container:  # as long as the candidates while the export runs (cut when it ends)
        shard_target(out, plan).write_metadata()
        return resumed, earlier
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    if plan.info.mask is not None:
        (out / MASKS_DIR).mkdir(exist_ok=True)
    return resumed, earlier


def our_files(out: Path) -> set[str]:
    """Patch files an export of ours wrote here: named in its journal or its manifest."""
    files = journal_files(out)
    with contextlib.suppress(OSError, ValueError, PatchFolderError):
        info = read_dataset_info(out)
        if info is not None:
            rows = read_manifest_rows(out / MANIFEST_FILE, info.spatial_axes, info.format_version)
            files |= {row[k] for row in rows.rows for k in ("image", "mask") if row.get(k)}
    return {f for f in files if _is_patch_path(f)}


def temporary_files(out: Path) -> list[str]:
    """Our temporary files: of patches (``images/.<name>.<pid>-<thread>.part``), of shards
    (inside ``images.zarr``/``masks.zarr``) and of the manifest and ``dataset.json``, left
    by an interrupted export."""
    found = [
        entry.name
        for entry in os.scandir(out)
        if entry.is_file() and _TOP_LEVEL_TEMP.match(entry.name)
    ]
    for sub in (IMAGES_DIR, MASKS_DIR):
        with contextlib.suppress(FileNotFoundError):
            found += [f"{sub}/{e.name}" for e in os.scandir(out / sub) if is_temp(e.name)]
    return found + temporary_shard_files(out, ARRAYS)


def _is_patch_path(name: str) -> bool:
    """A path of the form ``images/<file>`` or ``masks/<file>``, nothing else."""
    parts = name.split("/")
    return (
        len(parts) == 2 and parts[0] in (IMAGES_DIR, MASKS_DIR) and parts[1] not in ("", ".", "..")
    )


def _remove(out: Path, names) -> None:
    for name in names:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            (out / name).unlink()


def _foreign_files(out: Path) -> bool:
    """Whether ``out`` holds anything but our lock file."""
    return any(entry.name != LOCK_FILE for entry in os.scandir(out))
