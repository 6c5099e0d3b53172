"""Running an export: the folder checked and prepared, patches read in batches and written on
threads or as dask tasks, the journal kept, the manifest and ``dataset.json`` written at the end."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork._common import is_dask, run_steps
from napari_patchwork.export.options import DEFAULT_WRITE_THREADS, ExportOptions
from napari_patchwork.export.patch import PatchSettings, export_patch, write_output_patch
from napari_patchwork.export.plan import ExportPlan, array_like, image_pyramid, plan_export
from napari_patchwork.export.result import ExportProgress, ExportResult
from napari_patchwork.export.resume import FolderLock, make_folder, prepare_folder
from napari_patchwork.export.shards import (
    ScreenedPatch,
    ShardTarget,
    export_shards_as_dask_tasks,
    export_shards_here,
    screened_patches,
    shard_target,
)
from napari_patchwork.export.source import ImageSource, read_regions
from napari_patchwork.export.split import assign_splits
from napari_patchwork.folder import (
    DATASET_FILE,
    JOURNAL_FILE,
    MANIFEST_FILE,
    PatchInfo,
    PatchRecord,
    block_columns,
    manifest_row,
    write_dataset_info,
    write_manifest,
)
from napari_patchwork.folder.names import CONTAINER_FORMATS

JOURNAL_FLUSH_SECONDS = 0.2
"""The export journal is flushed at least this often while patches are written."""


def export_patches(
    out_dir: str | os.PathLike,
    image: Any,
    mask: Any = None,
    options: ExportOptions | None = None,
    *,
    progress: Callable[[ExportProgress], Any] | None = None,
    **overrides: Any,
) -> ExportResult:
    """Write image (and mask) patches, ``manifest.csv`` and ``dataset.json`` to ``out_dir``.

    Parameters
    ----------
    out_dir : folder to create or resume (see :mod:`napari_patchwork.folder` on safety).
    image : numpy, dask or other array-like (zarr, memmap), channel axis included.
        Dask and other lazy arrays are read a batch of patch regions at a time
        (about ``read_batch_bytes``), never whole. Or a pyramid (a list of levels, level
        0 first, or a Pyramid): see :mod:`napari_patchwork.pyramid`.
    mask : integer labels with the image's spatial shape (source pixels), or None.
    patch_size, stride, edge, channel_axis : as :func:`napari_patchwork.grid.make_grid`
        (output pixels per spatial axis; RGB images use ``channel_axis=-1``).
    placement : a :class:`~napari_patchwork.placement.Placement` instead of the regular
        grid (None); it reads ``mask`` as labels (see :mod:`napari_patchwork.placement`).
    fmt : ``"tiff"``, ``"ome-tiff"``, ``"npy"`` or ``"png"`` (``"tif"`` and ``"ome-tif"``
        are accepted too).
    compression : None or ``"zlib"`` (TIFF, OME-TIFF; lossless).
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
        ``seed``. Overlapping patches (stride < patch) can share pixels across splits
        unless ``split_by="blocks"``.
    seed : the split's random seed (the same seed gives the same split).
    split_by : what is drawn into the splits: ``"patch"`` (default), ``"blocks"`` (of
        ``block_size``, with a buffer: :func:`~napari_patchwork.export.split.block_split`)
        or ``"image"`` (all to ``image_split``: :func:`~napari_patchwork.export.export_batch`).
    block_size : the blocks of ``split_by="blocks"`` in output pixels (like
        ``patch_size``): one value or one per spatial axis, at least the patch size.
    image_split : with ``split_by="image"``, the split of this image (a batch export
        draws it per image).
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
    read_batch_bytes : how many bytes of patch regions are read at once (one
        ``dask.compute`` per batch for dask input).
    as_dask_tasks : one dask task per patch (read, filter, write), so that under a
        ``dask.distributed`` Client the workers do the export (see :func:`iter_export`).
    options : an :class:`~napari_patchwork.export.options.ExportOptions`; the keyword
        arguments above build one (or change the given one), with the same names.
    progress : called with an :class:`ExportProgress` after each patch (each batch
        with ``as_dask_tasks``).

    Returns
    -------
    ExportResult
    """
    plan = plan_export(image, mask, ExportOptions.of(options, **overrides))
    return run_steps(run_export(out_dir, plan, image, mask), progress)


def iter_export(
    out_dir: str | os.PathLike,
    image: Any,
    mask: Any = None,
    options: ExportOptions | None = None,
    **overrides: Any,
) -> Generator[ExportProgress, None, ExportResult]:
    """:func:`export_patches` as a generator: plans the export (bad options raise here, before
    the first step) and returns :func:`run_export`'s generator."""
    plan = plan_export(image, mask, ExportOptions.of(options, **overrides))
    return run_export(out_dir, plan, image, mask)


def run_export(
    out_dir: str | os.PathLike, plan: ExportPlan, image: Any, mask: Any = None
) -> Generator[ExportProgress, None, ExportResult]:
    """Run a planned export: yields :class:`ExportProgress` after each patch.

    ``image`` and ``mask`` are the arrays ``plan`` was made for (nothing is checked
    again). Its return value (``StopIteration.value``, or ``result = yield from ...``)
    is the :class:`ExportResult`. Stopping early (``close()``, an exception) leaves a
    folder that a re-run with the same settings resumes.

    With ``as_dask_tasks`` every patch (read its region, filter, write its files)
    is one dask task, computed a batch at a time; progress then comes per batch.
    Under a ``dask.distributed`` Client (the default scheduler once created) the
    tasks run on the cluster's workers, which must see ``out_dir``; the journal,
    manifest and ``dataset.json`` are written here.

    Journal lines are buffered, and flushed once :data:`JOURNAL_FLUSH_SECONDS` have
    passed since the last flush (and when the run ends or stops: the file is closed). A
    line is only ever written after its patch's files are complete; a process killed
    outright loses at most the last fraction of a second of lines (those patches are
    written again on resume).
    """
    source = ImageSource(image_pyramid(image), plan.levels, plan.settings)
    mask = None if mask is None else array_like(mask, "mask")
    out = Path(out_dir)
    make_folder(out)
    with FolderLock(out):
        records, earlier_files = prepare_folder(out, plan)
        resumed = sum(r.kept for r in records.values())
        progress = ExportProgress(done=len(records), total=plan.n_patches, resumed=resumed)
        yield replace(progress)
        by_index = {p.index: p for p in plan.patches}
        todo = [p for p in plan.patches if p.index not in records]
        target = shard_target(out, plan) if plan.options.fmt in CONTAINER_FORMATS else None
        decisions = _decisions(out, plan, source, mask, todo, target, resumed)
        done, total, written = progress.done, progress.total, 0
        with (
            open(out / JOURNAL_FILE, "a", encoding="utf-8") as journal,
            contextlib.closing(decisions),
        ):
            flushed = time.monotonic()
            for decided in decisions:
                for record in decided:  # journalled with the files it wrote: they are ours
                    info = by_index[record.index]
                    files = (info.image_file, info.mask_file) if record.kept else ()
                    if target is not None and record.kept:  # the shard files that hold it
                        files = target.files(record.array_index)
                    journal.write(record.journal_line(tuple(f for f in files if f)))
                    records[record.index] = record
                    written += record.kept
                    done += 1
                    yield ExportProgress(done, total, written, resumed)
                if time.monotonic() - flushed > JOURNAL_FLUSH_SECONDS:
                    journal.flush()
                    flushed = time.monotonic()
        if target is not None:
            target.finish(sum(r.kept for r in records.values()))
        return finish_folder(out, plan, records, written, resumed, earlier_files)


def _decisions(
    out: Path,
    plan: ExportPlan,
    source: ImageSource,
    mask: Any,
    todo: list[PatchInfo],
    target: ShardTarget | None,
    first_slot: int,
) -> Generator[list[PatchRecord], None, None]:
    """The records of the patches ``todo``, batch by batch (shard by shard into the zarr
    arrays of ``target``), here or as dask tasks. A batch reads about
    ``read_batch_bytes``, the image counted at the pyramid level it reads."""
    options, settings, image = plan.options, plan.settings, source.image
    channels = 1 if settings.channel_axis is None else image.shape[settings.channel_axis]
    bytes_per_pixel = np.dtype(image.dtype).itemsize * channels / source.read_factor
    bytes_per_pixel += 0 if mask is None else np.dtype(mask.dtype).itemsize
    if target is not None and options.as_dask_tasks:  # reads level 0 (not the pyramid)
        return export_shards_as_dask_tasks(image, mask, todo, settings, target, first_slot)
    batches = _batches(todo, bytes_per_pixel, options.read_batch_bytes)
    if options.as_dask_tasks:
        return _export_batches_as_dask_tasks(source, mask, batches, settings, out)
    screened = _screened(source, mask, batches, settings)
    if target is not None:
        return export_shards_here(screened, settings, target, first_slot, options.write_threads)
    return _export_batches_here(screened, settings, out, options.write_threads)


def _screened(
    source: ImageSource, mask: Any, batches: Iterable[list[PatchInfo]], settings: PatchSettings
) -> Iterable[ScreenedPatch]:
    """:func:`screened_patches` of ``batches``, their regions read with :func:`read_regions`
    (one ``dask.compute`` per batch and array for dask input), the image's from the
    pyramid level that serves each patch."""

    def read_masks(batch: Sequence[PatchInfo]) -> list[Any]:
        if mask is None:
            return [None] * len(batch)
        return read_regions(mask, [p.region(len(mask.shape), None) for p in batch])

    def read_images(batch: Sequence[PatchInfo]) -> list[np.ndarray]:
        return source.read(batch)  # at output resolution

    return screened_patches(batches, read_masks, read_images, settings)


def finish_folder(
    out: Path,
    plan: ExportPlan,
    records: dict[int, PatchRecord],
    written: int,
    resumed: int,
    earlier_files: AbstractSet[str] = frozenset(),
) -> ExportResult:
    """Write the manifest, drop stale patch files (``earlier_files``, the files earlier
    exports of ours named, that the manifest does not list), mark the export complete."""
    options = plan.options
    ordered = [records[p.index] for p in plan.patches]
    kept = [r for r in ordered if r.kept]
    splits = _split_labels(plan, kept)
    by_index = {p.index: p for p in plan.patches}
    blocks = plan.blocks
    rows = [
        manifest_row(by_index[r.index], r, s, None if blocks is None else blocks.block[r.index])
        for r, s in zip(kept, splits)
    ]
    extra = [] if blocks is None else block_columns(plan.layout.names)
    extra += plan.feature_columns  # a placement's values
    write_manifest(out, rows, plan.grid.ndim, options.fsync, extra)
    listed = {row[key] for row in rows for key in ("image", "mask") if row[key]}
    # e.g. a patch dropped by a filter after the source changed
    for name in earlier_files - listed:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    split_counts = {name: splits.count(name) for name in (options.split or {})}
    written_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    n_buffer = 0 if blocks is None else blocks.n_buffer
    finished = plan.info.finished(len(kept), split_counts, written_at, n_buffer)
    write_dataset_info(out, finished, options.fsync)
    only = options.only_foreground and options.min_foreground == 0
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
        n_buffer=n_buffer,
        rows=tuple(rows),
        foreground_rule="without foreground" if only else "under min foreground",
        notes=plan.notes,
    )


def _split_labels(plan: ExportPlan, kept: Sequence[PatchRecord]) -> list[str]:
    """The split of each kept patch: drawn per patch, its block's, or its image's."""
    options = plan.options
    if plan.blocks is not None:
        return [plan.blocks.split[r.index] for r in kept]
    if options.split_by == "image":
        return [str(options.image_split)] * len(kept)
    return assign_splits(len(kept), options.split, options.seed)


def _batches(
    patches: Sequence[PatchInfo], bytes_per_pixel: float, budget: int
) -> Iterable[list[PatchInfo]]:
    """Consecutive patches whose regions together stay under ``budget`` bytes (>= 1 each)."""
    batch: list[PatchInfo] = []
    size = 0
    for info in patches:
        n = bytes_per_pixel * math.prod(b - a for a, b in zip(info.start, info.valid_stop))
        if batch and size + n > budget:
            yield batch
            batch, size = [], 0
        batch.append(info)
        size += n
    if batch:
        yield batch


def _export_batches_here(
    screened: Iterable[ScreenedPatch],
    settings: PatchSettings,
    out: Path,
    write_threads: int = DEFAULT_WRITE_THREADS,
) -> Iterable[list[PatchRecord]]:
    """Write the patch files of the ``screened`` patches in this process, yielding
    ``[record]`` after each patch.

    With ``write_threads`` > 1 the kept patches are written by that many threads (file
    creation and copying into the page cache release the GIL) while this thread prepares
    and reads the next ones; records still come in patch order. Closing the generator
    waits for the files being written and skips the patches not started, so every
    yielded record's files are complete.
    """
    pool = ThreadPoolExecutor(write_threads) if write_threads > 1 else None
    pending: deque[Future | PatchRecord] = deque()  # in patch order
    try:
        for info, record, image_patch, mask_patch in screened:
            if record is None:
                if pool is None:
                    record = write_output_patch(image_patch, mask_patch, info, settings, out)
                else:
                    record = pool.submit(
                        write_output_patch, image_patch, mask_patch, info, settings, out
                    )
            pending.append(record)
            # a few patches in flight per thread keep the threads busy, and memory small
            while len(pending) > 2 * write_threads or (pending and _is_done(pending[0])):
                yield [_record_of(pending.popleft())]
        while pending:
            yield [_record_of(pending.popleft())]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _is_done(item: Future | PatchRecord) -> bool:
    return not isinstance(item, Future) or item.done()


def _record_of(item: Future | PatchRecord) -> PatchRecord:
    return item.result() if isinstance(item, Future) else item


def _export_batches_as_dask_tasks(
    source: ImageSource,
    mask: Any,
    batches: Iterable[list[PatchInfo]],
    settings: PatchSettings,
    out: Path,
) -> Iterable[list[PatchRecord]]:
    """For each batch, one ``dask.compute`` of one :func:`export_patch` task per patch (its
    image region from the pyramid level that serves it).

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

    levels = [lazy(level) for level in source.pyramid.levels]
    mask = None if mask is None else lazy(mask)
    export_task = dask.delayed(export_patch, pure=False)
    for batch in batches:
        tasks = []
        for info in batch:
            level, region, factors = source.read_plan(info)
            tasks.append(
                export_task(
                    levels[level][region],
                    None if mask is None else mask[info.region(mask.ndim, None)],
                    info,
                    settings,
                    str(out),
                    factors,
                )
            )
        yield list(dask.compute(*tasks))
