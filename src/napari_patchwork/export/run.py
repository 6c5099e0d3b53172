"""Running an export: the folder checked and prepared, patches read in batches and written on
threads or as dask tasks, the journal kept, the manifest written at the end."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork._common import is_dask, run_steps
from napari_patchwork.export.options import (
    DEFAULT_READ_BATCH_BYTES,
    DEFAULT_WRITE_THREADS,
    ExportError,
)
from napari_patchwork.export.patch import (
    PatchInfo,
    PatchSettings,
    export_patch,
    image_at_output_resolution,
    mask_at_output_resolution,
    screen_patch,
    write_output_patch,
)
from napari_patchwork.export.plan import ExportPlan, array_like, plan_export
from napari_patchwork.export.split import assign_splits
from napari_patchwork.folder import (
    DATASET_FILE,
    IMAGES_DIR,
    JOURNAL_FILE,
    MANIFEST_FILE,
    MASKS_DIR,
    PatchRecord,
    is_temp,
    load_journal,
    manifest_columns,
    patch_files_on_disk,
    read_dataset_json,
    settings_differences,
    spatial_axis_names,
    write_text_atomic,
)


@dataclass
class ExportProgress:
    """Progress of a running export: ``done`` of ``total`` patches decided."""

    done: int
    total: int
    written: int = 0
    resumed: int = 0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class ExportResult:
    """What an export left on disk.

    ``n_patches`` patches are in the manifest: ``n_written`` written by this run,
    ``n_resumed`` found complete from an interrupted earlier run. Of the
    ``n_candidates`` patches tried, ``n_rejected_foreground`` were under
    ``min_foreground`` and ``n_rejected_blank`` under ``min_std``.
    """

    out_dir: Path
    manifest_path: Path
    dataset_path: Path
    n_candidates: int
    n_patches: int
    n_written: int
    n_resumed: int
    n_rejected_foreground: int
    n_rejected_blank: int
    split_counts: dict[str, int]
    rows: tuple[dict[str, Any], ...] = field(repr=False)

    @property
    def message(self) -> str:
        """One sentence for users: how many patches, where."""
        text = f"{self.n_patches} patch{'es' if self.n_patches != 1 else ''} in {self.out_dir}"
        details = []
        if self.n_resumed:
            details.append(
                f"{self.n_written} written now, {self.n_resumed} already there from an earlier run"
            )
        skipped = self.n_rejected_foreground + self.n_rejected_blank
        if skipped:
            details.append(
                f"{skipped} of {self.n_candidates} skipped: "
                f"{self.n_rejected_foreground} under min foreground, {self.n_rejected_blank} blank"
            )
        if self.split_counts:
            details.append(", ".join(f"{k} {v}" for k, v in self.split_counts.items()))
        return text + (f" ({'; '.join(details)})" if details else "")


def read_regions(array: Any, regions: Sequence[tuple[slice, ...]]) -> list[np.ndarray]:
    """Read several regions of a numpy, dask or other array-like (zarr, memmap) as numpy arrays.

    A dask array is read in one ``dask.compute`` call for all regions, so chunks
    that several regions share are computed once, and no other chunk is.
    """
    if isinstance(array, np.ndarray):
        return [array[r] for r in regions]
    if is_dask(array):
        import dask

        return [np.asarray(a) for a in dask.compute(*(array[r] for r in regions))]
    return [np.asarray(array[r]) for r in regions]


def _prepare_folder(out: Path, plan: ExportPlan, overwrite: bool) -> dict[int, PatchRecord]:
    """Check and set up ``out``; return the records an interrupted run left (to resume)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; choose a folder for the patches.")
    out.mkdir(parents=True, exist_ok=True)
    old = read_dataset_json(out)
    resumed: dict[int, PatchRecord] = {}
    if old is None:
        if any(os.scandir(out)) and not overwrite:
            raise ExportError(
                f"{out} is not empty and holds no patch export of ours; choose an empty or new "
                "folder, or pass overwrite=True to write into it (files of the same name are "
                "replaced)."
            )
        # a journal without its dataset.json belongs to no export here: never resume from it
        with contextlib.suppress(FileNotFoundError):
            (out / JOURNAL_FILE).unlink()
    else:
        differences = settings_differences(old, plan.dataset)
        if differences and not overwrite:
            raise ExportError(
                f"{out} holds a patch export with other settings ({'; '.join(differences)}); "
                "choose another folder, or pass overwrite=True to replace that export."
            )
        # overwrite: remove that export (also with the same settings: the source may have
        # changed) and leave other files alone; else resume it
        for name in patch_files_on_disk(out, old):
            if overwrite or is_temp(name):
                (out / name).unlink()
        if overwrite:
            for name in (JOURNAL_FILE, MANIFEST_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
        else:
            resumed = load_journal(
                out, {p.index: (p.image_file, p.mask_file) for p in plan.patches}
            )
    (out / IMAGES_DIR).mkdir(exist_ok=True)
    if plan.patches and plan.patches[0].mask_file is not None:
        (out / MASKS_DIR).mkdir(exist_ok=True)
    write_text_atomic(
        out / DATASET_FILE, json.dumps(plan.dataset, indent=2) + "\n", plan.settings.fsync
    )
    return resumed


def _manifest_rows(
    plan: ExportPlan, kept: list[PatchRecord], splits: list[str]
) -> list[dict[str, Any]]:
    by_index = {p.index: p for p in plan.patches}
    names = spatial_axis_names(plan.grid.ndim)
    rows = []
    for record, split_name in zip(kept, splits):
        info = by_index[record.index]
        row: dict[str, Any] = {
            "index": record.index,
            "split": split_name,
            "image": info.image_file,
            "mask": info.mask_file or "",
        }
        for name, a, b in zip(names, info.start, info.stop):
            row[f"{name}0"], row[f"{name}1"] = a, b
        for name, v in zip(names, info.valid_stop):
            row[f"valid_{name}1"] = v
        for name, a, b in zip(names, info.out_start, info.out_stop):
            row[f"out_{name}0"], row[f"out_{name}1"] = a, b
        for name, v in zip(names, info.out_valid_stop):
            row[f"out_valid_{name}1"] = v
        row["foreground_fraction"] = (
            "" if record.foreground_fraction is None else f"{record.foreground_fraction:.6g}"
        )
        row["image_std"] = "" if record.image_std is None else f"{record.image_std:.6g}"
        rows.append(row)
    return rows


def _finish(
    out: Path, plan: ExportPlan, records: dict[int, PatchRecord], written: int, resumed: int
) -> ExportResult:
    """Write the manifest, drop stale patch files, mark the export complete."""
    ordered = [records[p.index] for p in plan.patches]
    kept = [r for r in ordered if r.kept]
    splits = assign_splits(len(kept), plan.split, plan.seed)
    rows = _manifest_rows(plan, kept, splits)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=manifest_columns(spatial_axis_names(plan.grid.ndim)), lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / MANIFEST_FILE, buffer.getvalue(), plan.settings.fsync)
    listed = {row[key] for row in rows for key in ("image", "mask") if row[key]}
    for name in patch_files_on_disk(out, plan.dataset):
        if name not in listed:  # e.g. a patch dropped by a filter after the source changed
            (out / name).unlink()
    split_counts = {name: splits.count(name) for name in (plan.split or {})}
    dataset = {
        **plan.dataset,
        "complete": True,
        "n_patches": len(kept),
        "split_counts": split_counts,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_text_atomic(out / DATASET_FILE, json.dumps(dataset, indent=2) + "\n", plan.settings.fsync)
    return ExportResult(
        out_dir=out,
        manifest_path=out / MANIFEST_FILE,
        dataset_path=out / DATASET_FILE,
        n_candidates=len(ordered),
        n_patches=len(kept),
        n_written=written,
        n_resumed=resumed,
        n_rejected_foreground=sum(r.reason == "foreground" for r in ordered),
        n_rejected_blank=sum(r.reason == "blank" for r in ordered),
        split_counts=split_counts,
        rows=tuple(rows),
    )


def _batches(
    patches: Sequence[PatchInfo], bytes_per_pixel: int, budget: int
) -> Iterable[list[PatchInfo]]:
    """Consecutive patches whose regions together stay under ``budget`` bytes (>= 1 each)."""
    batch: list[PatchInfo] = []
    size = 0
    for info in patches:
        n = bytes_per_pixel * int(np.prod([b - a for a, b in zip(info.start, info.valid_stop)]))
        if batch and size + n > budget:
            yield batch
            batch, size = [], 0
        batch.append(info)
        size += n
    if batch:
        yield batch


def _export_batches_here(
    image: Any,
    mask: Any,
    batches: Iterable[list[PatchInfo]],
    settings: PatchSettings,
    out: Path,
    write_threads: int = DEFAULT_WRITE_THREADS,
) -> Iterable[list[PatchRecord]]:
    """Export in this process, yielding ``[record]`` after each patch.

    Per batch, the mask regions are read (and reduced to output pixels) first;
    image regions are read (one ``dask.compute`` for dask input) only for patches
    the mask filters keep. With ``write_threads`` > 1 the kept patches are written
    by that many threads (file creation and copying into the page cache release the
    GIL) while this thread prepares and reads the next ones; records still come in
    patch order. Closing the generator waits for the files being written and skips
    the patches not started, so every yielded record's files are complete.
    """
    channel_axis = settings.channel_axis
    pool = ThreadPoolExecutor(write_threads) if write_threads > 1 else None
    pending: deque[Future | PatchRecord] = deque()  # in patch order
    try:
        for batch in batches:
            masks = (
                [None] * len(batch)
                if mask is None
                else [
                    mask_at_output_resolution(region, settings)
                    for region in read_regions(
                        mask, [p.region(len(mask.shape), None) for p in batch]
                    )
                ]
            )
            decided = {p.index: screen_patch(m, p, settings) for p, m in zip(batch, masks)}
            to_read = [p for p in batch if decided[p.index] is None]
            images = iter(
                read_regions(image, [p.region(len(image.shape), channel_axis) for p in to_read])
            )
            for info, mask_patch in zip(batch, masks):
                record = decided[info.index]
                if record is None:
                    image_patch = image_at_output_resolution(next(images), settings)
                    if pool is None:
                        record = write_output_patch(image_patch, mask_patch, info, settings, out)
                    else:
                        record = pool.submit(
                            write_output_patch, image_patch, mask_patch, info, settings, out
                        )
                pending.append(record)
                # a few patches in flight per thread keep the threads busy, and memory small
                while len(pending) > 2 * write_threads or (
                    pending and not isinstance(pending[0], Future)
                ):
                    yield [_record_of(pending.popleft())]
        while pending:
            yield [_record_of(pending.popleft())]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _record_of(item: Future | PatchRecord) -> PatchRecord:
    return item.result() if isinstance(item, Future) else item


def _export_batches_as_dask_tasks(
    image: Any, mask: Any, batches: Iterable[list[PatchInfo]], settings: PatchSettings, out: Path
) -> Iterable[list[PatchRecord]]:
    """For each batch, one ``dask.compute`` of one :func:`export_patch` task per patch.

    Numpy inputs are wrapped as dask arrays first, so a task ships only its region.
    """
    import dask
    import dask.array as da

    def lazy(array: Any) -> Any:
        if is_dask(array):
            return array
        # meta: dask then needs nothing but shape, dtype and indexing (no ndim)
        meta = np.empty((0,) * len(array.shape), dtype=array.dtype)
        return da.from_array(array, chunks="auto", meta=meta)

    image = lazy(image)
    mask = None if mask is None else lazy(mask)
    export_task = dask.delayed(export_patch, pure=False)
    for batch in batches:
        tasks = [
            export_task(
                image[info.region(image.ndim, settings.channel_axis)],
                None if mask is None else mask[info.region(mask.ndim, None)],
                info,
                settings,
                str(out),
            )
            for info in batch
        ]
        yield list(dask.compute(*tasks))


def iter_export(
    out_dir: str | os.PathLike,
    image: Any,
    mask: Any = None,
    *,
    overwrite: bool = False,
    read_batch_bytes: int = DEFAULT_READ_BATCH_BYTES,
    write_threads: int = DEFAULT_WRITE_THREADS,
    as_dask_tasks: bool = False,
    **options: Any,
) -> Generator[ExportProgress, None, ExportResult]:
    """:func:`export_patches` as a generator: yields :class:`ExportProgress` after each patch.

    Its return value (``StopIteration.value``, or ``result = yield from ...``) is the
    :class:`ExportResult`. Stopping early (``close()``, an exception) leaves a
    folder that a re-run with the same settings resumes.

    With ``as_dask_tasks`` every patch (read its region, filter, write its files)
    is one dask task, computed a batch at a time; progress then comes per batch.
    Under a ``dask.distributed`` Client (the default scheduler once created) the
    tasks run on the cluster's workers, which must see ``out_dir``; the journal,
    manifest and ``dataset.json`` are written here.
    """
    if (
        isinstance(write_threads, bool)
        or not isinstance(write_threads, (int, np.integer))
        or write_threads < 1
    ):
        raise ExportError(
            f"write_threads={write_threads!r}: give a whole number of threads >= 1 "
            "(1 writes in the calling thread)."
        )
    plan = plan_export(image, mask, **options)
    image = array_like(image, "image")
    mask = None if mask is None else array_like(mask, "mask")
    out = Path(out_dir)
    records = _prepare_folder(out, plan, overwrite)
    resumed = sum(r.kept for r in records.values())
    todo = [p for p in plan.patches if p.index not in records]
    progress = ExportProgress(done=len(records), total=len(plan.patches), resumed=resumed)
    yield replace(progress)
    channel_axis = plan.settings.channel_axis
    bytes_per_pixel = np.dtype(image.dtype).itemsize * (
        1 if channel_axis is None else image.shape[channel_axis]
    )
    bytes_per_pixel += 0 if mask is None else np.dtype(mask.dtype).itemsize
    batches = _batches(todo, bytes_per_pixel, read_batch_bytes)
    if as_dask_tasks:
        decisions = _export_batches_as_dask_tasks(image, mask, batches, plan.settings, out)
    else:
        decisions = _export_batches_here(
            image, mask, batches, plan.settings, out, int(write_threads)
        )
    with open(out / JOURNAL_FILE, "a", encoding="utf-8") as journal, contextlib.closing(decisions):
        for decided in decisions:
            for record in decided:
                journal.write(record.journal_line())
                records[record.index] = record
                progress.written += record.kept
            journal.flush()
            progress.done += len(decided)
            yield replace(progress)
    return _finish(out, plan, records, progress.written, resumed)


def export_patches(
    out_dir: str | os.PathLike,
    image: Any,
    mask: Any = None,
    *,
    patch_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    edge: str = "drop",
    channel_axis: int | None = None,
    fmt: str = "tiff",
    compression: str | None = None,
    min_foreground: float = 0.0,
    min_std: float | None = None,
    indices: Iterable[int] | None = None,
    split: Mapping[str, float] | Sequence[float] | None = None,
    seed: int = 0,
    pad_mode: str = "constant",
    pad_value: float = 0,
    relabel: bool = False,
    overwrite: bool = False,
    stem: str = "patch",
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    image_name: str | None = None,
    mask_name: str | None = None,
    fsync: bool = False,
    downsample: float | Sequence[float] | None = None,
    pixel_size: float | Sequence[float] | None = None,
    units: str | Sequence[str | None] | None = None,
    only_foreground: bool = False,
    mask_class_ids: Mapping[str, int] | None = None,
    read_batch_bytes: int = DEFAULT_READ_BATCH_BYTES,
    write_threads: int = DEFAULT_WRITE_THREADS,
    as_dask_tasks: bool = False,
    progress: Callable[[ExportProgress], Any] | None = None,
) -> ExportResult:
    """Write image (and mask) patches, ``manifest.csv`` and ``dataset.json`` to ``out_dir``.

    Parameters
    ----------
    out_dir : folder to create or resume (see the module notes on safety).
    image : numpy, dask or other array-like (zarr, memmap), channel axis included.
        Dask and other lazy arrays are read a batch of patch regions at a time
        (about ``read_batch_bytes``), never whole.
    mask : integer labels with the image's spatial shape (source pixels), or None.
    patch_size, stride, edge, channel_axis : as :func:`napari_patchwork.grid.make_grid`
        (output pixels per spatial axis; RGB images use ``channel_axis=-1``).
    fmt : ``"tiff"``, ``"ome-tiff"``, ``"npy"`` or ``"png"``; compression: None or
        ``"zlib"`` (TIFF, OME-TIFF).
    downsample : export at lower resolution: a whole-number factor >= 1, one for y
        and x (leading axes such as z stay at full resolution) or one per spatial
        axis. Images are area-averaged, masks take the mode of each block (see
        :mod:`napari_patchwork.resolution`).
    pixel_size : instead of ``downsample``: the output pixel size in the units of
        ``scale`` (e.g. 0.5 for 0.5 µm/px from a 0.25 µm/px scan); must be a
        whole multiple of the scale (within 0.1%).
    units : the layer's length unit(s), e.g. ``"micrometer"`` (recorded; written
        into OME-TIFF files).
    min_foreground : keep patches whose mask foreground fraction (output pixels) is
        >= this (0..1).
    only_foreground : keep only patches whose mask has any foreground (a non-zero
        pixel at output resolution), e.g. the annotated patches of a mask made from
        annotations.
    mask_class_ids : class name -> label id of the mask (recorded in ``dataset.json``,
        e.g. for a mask rasterised from class-named annotations).
    min_std : drop near-blank patches whose largest per-channel standard deviation
        (intensity units, valid output pixels) is below this; None keeps them.
    indices : only these patch indices of the grid (e.g. the selected grid shapes).
    split : fractions per split, ``{"train": 0.8, "val": 0.2}`` or ``(0.8, 0.1, 0.1)``
        (train/val/test); assigned to the kept patches by :func:`assign_splits` with
        ``seed``. Overlapping patches (stride < patch) can share pixels across splits.
    pad_mode, pad_value : how ``edge="pad"`` fills the part past the image (see
        :data:`PAD_MODES`); the valid region is in the manifest.
    relabel : renumber the mask instances of each patch 1..n (the stitched mask then
        holds per-patch ids, not the source labels).
    overwrite : write into a foreign non-empty folder, or redo an export of ours from
        scratch (whatever its settings; e.g. after the image or mask changed).
    stem : file name prefix.
    scale, translate : the image layer's, per spatial axis (recorded for the reader;
        ``scale`` also gives ``pixel_size`` its meaning).
    image_name, mask_name : layer names (recorded).
    fsync : flush every file to disk before renaming it (slower; power-loss safe).
    write_threads : threads that write patch files while the next patches are read
        and prepared (1: all in the calling thread). Two are faster on a 2-core
        machine, up to 1.5x where the memory is slow to hand out page-cache pages
        (see ``benchmarks/bench_export.py``).
    as_dask_tasks : one dask task per patch (read, filter, write), so that under a
        ``dask.distributed`` Client the workers do the export (see :func:`iter_export`).
    progress : called with an :class:`ExportProgress` after each patch (each batch
        with ``as_dask_tasks``).

    Returns
    -------
    ExportResult
    """
    # the first statement, so it holds exactly the parameters above: they go on to
    # iter_export and plan_export by name, without a second list to keep in step
    arguments = dict(locals())
    on_progress = arguments.pop("progress")
    return run_steps(iter_export(**arguments), on_progress)
