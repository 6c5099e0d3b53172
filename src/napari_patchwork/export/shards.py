"""Writing the zarr container (``fmt="zarr"``): kept patches gathered into whole shards, each
shard file written once (one ``writev`` of the patches' bytes per array), here on a writer
thread or as dask tasks; an interrupted export resumes at the last complete shard.

A kept patch's place in the arrays (``array_index``) is its rank among the kept patches in
grid order, so the manifest's rows and the arrays' first axis agree. Records are handed
back (and journalled) only once the shard holding their patches is complete on disk; a
record of a patch in a shard that an interruption left unwritten is never journalled, and
on resume the shard is written again whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork._common import is_dask
from napari_patchwork.export.patch import (
    PatchSettings,
    finish_patch,
    image_at_output_resolution,
    mask_at_output_resolution,
    screen_patch,
)
from napari_patchwork.export.plan import ExportPlan
from napari_patchwork.folder import PatchInfo, PatchRecord
from napari_patchwork.folder.journal import journal_records
from napari_patchwork.folder.zarr_arrays import (
    IMAGES_ARRAY,
    MASKS_ARRAY,
    PatchArray,
    ShardWriter,
    patch_arrays,
    shard_files_on_disk,
)

SHARDS_PER_DASK_COMPUTE = 4
"""With ``as_dask_tasks``, this many shard tasks are computed at once (in parallel)."""


@dataclass(frozen=True)
class ShardTarget:
    """Where and how the shards of an export are written (small and picklable)."""

    out: str
    image: PatchArray
    mask: PatchArray | None
    fsync: bool = False

    @property
    def shard_patches(self) -> int:
        return self.image.shard_patches

    def files(self, array_index: int) -> tuple[str, ...]:
        """The shard files (relative to the folder) that hold patch ``array_index``."""
        shard = int(array_index) // self.shard_patches
        arrays = (self.image,) if self.mask is None else (self.image, self.mask)
        return tuple(a.shard_file(shard) for a in arrays)

    def write(self, shard: int, images: Sequence[np.ndarray], masks: Sequence[Any]) -> None:
        """Write shard ``shard`` of the image array (and of the mask array) whole."""
        self.image.write_shard(self.out, shard, images, self.fsync)
        if self.mask is not None:
            self.mask.write_shard(self.out, shard, masks, self.fsync)

    def write_metadata(self) -> None:
        for array in (self.image, self.mask):
            if array is not None:
                array.write_metadata(self.out, self.fsync)

    def finish(self, n_kept: int) -> None:
        """Give the arrays their final length (the kept patches) and remove the shards past
        it that this export may have written (e.g. after the source changed)."""
        for array in (self.image, self.mask):
            if array is None:
                continue
            final = array.resized(n_kept)
            final.write_metadata(self.out, self.fsync)
            for shard in range(final.n_shards, array.n_shards):
                path = Path(self.out) / array.shard_file(shard)
                if path.is_file() and not path.is_symlink():
                    path.unlink()


def shard_target(out: Path, plan: ExportPlan) -> ShardTarget:
    """The arrays of ``plan``'s export, as long as its candidate patches while it runs."""
    image, mask = patch_arrays(plan.info, plan.n_patches)
    return ShardTarget(str(out), image, mask, plan.options.fsync)


ScreenedPatch = tuple[PatchInfo, PatchRecord | None, Any, Any]
"""``(info, rejection record or None, image patch, mask patch)`` at output resolution."""


WRITE_GROUP = 16
"""Patches handed to the shard writer at a time (a shard is written in such pieces)."""


def export_shards_here(
    screened: Iterable[ScreenedPatch],
    settings: PatchSettings,
    target: ShardTarget,
    first_slot: int,
    write_threads: int,
) -> Iterator[list[PatchRecord]]:
    """Write the kept patches of ``screened`` (in patch order) into shards, each shard
    file from its first patch to its index in one pass (:class:`ShardWriter`); yields the
    records of each shard (and the rejections before it) once it has its final name.

    With ``write_threads`` > 1 one writer thread appends :data:`WRITE_GROUP` patches at a
    time while this thread prepares the next ones (at most two groups wait), so memory
    holds a few groups, not a shard. Closing the generator waits for the writer and
    removes the unfinished shard's temporary files.
    """
    pool = ThreadPoolExecutor(1) if write_threads > 1 else None
    shard = _ShardInProgress(target, pool)
    done: deque[tuple[list[Future], list[PatchRecord]]] = deque()
    records: list[PatchRecord] = []
    slot = first_slot
    try:
        for info, rejected, image_patch, mask_patch in screened:
            record = rejected
            if record is None:
                record, image_patch, mask_patch = finish_patch(
                    image_patch, mask_patch, info, settings
                )
            if record.kept:
                record = PatchRecord(record.index, True, "", record.foreground_fraction,
                                     record.image_std, slot)  # fmt: skip
                shard.add(slot, image_patch, mask_patch)
                slot += 1
            records.append(record)
            if record.kept and slot % target.shard_patches == 0:
                done.append((shard.close(), records))
                records = []
            while done and (len(done) > 1 or all(f.done() for f in done[0][0])):
                yield _written(done.popleft())
        if shard.open:
            done.append((shard.close(), records))
            records = []
        while done:
            yield _written(done.popleft())
        if records:  # rejections after the last kept patch
            yield records
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        shard.discard()


class _ShardInProgress:
    """The shard being written (image and mask) and the patches not yet handed over."""

    def __init__(self, target: ShardTarget, pool: ThreadPoolExecutor | None) -> None:
        self.target, self.pool = target, pool
        self.writers: list[ShardWriter] = []
        self.images: list[np.ndarray] = []
        self.masks: list[Any] = []
        self.futures: list[Future] = []
        self.open = False

    def add(self, slot: int, image_patch: np.ndarray, mask_patch: Any) -> None:
        if not self.open:
            shard = slot // self.target.shard_patches
            arrays = [a for a in (self.target.image, self.target.mask) if a is not None]
            self.writers = [ShardWriter(self.target.out, a, shard, self.target.fsync)
                            for a in arrays]  # fmt: skip
            self.futures, self.open = [], True
        self.images.append(image_patch)
        self.masks.append(mask_patch)
        if len(self.images) >= WRITE_GROUP:
            self._hand_over()

    def close(self) -> list[Future]:
        """Hand over the rest and the closing of the shard; the futures of its work."""
        self._hand_over()
        self.futures.append(self._run(_close_all, self.writers))
        self.open = False
        return self.futures

    def discard(self) -> None:
        for writer in self.writers:
            writer.discard()

    def _hand_over(self) -> None:
        if not self.images:
            return
        groups = [self.images] if self.target.mask is None else [self.images, self.masks]
        self.futures.append(self._run(_add_all, self.writers, groups))
        self.images, self.masks = [], []
        waiting = [f for f in self.futures if not f.done()]
        if len(waiting) > 2:  # memory: at most two groups wait for the writer
            waiting[0].result()

    def _run(self, function: Callable, *args: Any) -> Future:
        if self.pool is not None:
            return self.pool.submit(function, *args)
        future: Future = Future()
        future.set_result(function(*args))
        return future


def _add_all(writers: Sequence[ShardWriter], groups: Sequence[Sequence[Any]]) -> None:
    for writer, patches in zip(writers, groups):
        writer.add(patches)


def _close_all(writers: Sequence[ShardWriter]) -> None:
    for writer in writers:
        writer.close()


def _written(item: tuple[list[Future], list[PatchRecord]]) -> list[PatchRecord]:
    futures, records = item
    for future in futures:
        future.result()
    return records


def export_shards_as_dask_tasks(
    image: Any,
    mask: Any,
    todo: Sequence[PatchInfo],
    settings: PatchSettings,
    target: ShardTarget,
    first_slot: int,
) -> Iterator[list[PatchRecord]]:
    """One dask task per shard: it reads its patches' regions, prepares them and writes the
    shard; :data:`SHARDS_PER_DASK_COMPUTE` shards are computed at once.

    With filters (``min_foreground``, ``only_foreground``, ``min_std``) which patches are
    kept is decided first, by one task per patch that reads what the filters need, so that
    every shard task knows its patches (their ``array_index``) in advance.
    """
    import dask

    image, mask = _lazy(image), None if mask is None else _lazy(mask)
    size = target.shard_patches
    filtered = settings.min_foreground > 0 or settings.only_foreground
    filtered = filtered or settings.min_std is not None
    decide = dask.delayed(decide_patch, pure=False)
    write = dask.delayed(write_shard_task, pure=False)
    group = size * SHARDS_PER_DASK_COMPUTE
    pending: list[PatchRecord | PatchInfo] = []  # in patch order; infos wait for their shard
    kept: list[PatchInfo] = []
    slot = first_slot
    for start in range(0, len(todo), group):
        candidates = todo[start : start + group]
        decided: Sequence[PatchRecord | None] = [None] * len(candidates)
        if filtered:
            need_image = settings.min_std is not None
            decided = dask.compute(
                *(
                    decide(
                        image[info.region(image.ndim, settings.channel_axis)]
                        if need_image
                        else None,
                        None if mask is None else mask[info.region(mask.ndim, None)],
                        info,
                        settings,
                    )
                    for info in candidates
                )
            )
        tasks = []
        last = start + len(candidates) >= len(todo)
        for info, record in zip(candidates, decided):
            if record is not None and not record.kept:
                pending.append(record)
                continue
            pending.append(info)
            kept.append(info)
            if len(kept) == size:
                tasks.append(_shard_task(write, image, mask, kept, settings, target, slot))
                slot, kept = slot + len(kept), []
        if last and kept:
            tasks.append(_shard_task(write, image, mask, kept, settings, target, slot))
            slot, kept = slot + len(kept), []
        if not tasks:
            continue
        done = {r.index: r for shard in dask.compute(*tasks) for r in shard}
        n_ready = max(i for i, p in enumerate(pending) if isinstance(p, PatchInfo)
                      and p.index in done) + 1  # fmt: skip
        yield [done[p.index] if isinstance(p, PatchInfo) else p for p in pending[:n_ready]]
        pending = pending[n_ready:]
    if pending:
        yield list(pending)  # rejections after the last kept patch


def _shard_task(write, image, mask, infos, settings, target, first_slot):
    return write(
        [image[i.region(image.ndim, settings.channel_axis)] for i in infos],
        None if mask is None else [mask[i.region(mask.ndim, None)] for i in infos],
        list(infos),
        settings,
        target,
        first_slot,
    )


def _lazy(array: Any) -> Any:
    """A dask array of ``array`` (numpy and other array-likes wrapped), so a task ships only
    its regions."""
    import dask.array as da

    if is_dask(array):
        return array
    meta = np.empty((0,) * len(array.shape), dtype=array.dtype)
    return da.from_array(array, chunks="auto", meta=meta)


def decide_patch(
    image_region: np.ndarray | None,
    mask_region: np.ndarray | None,
    info: PatchInfo,
    settings: PatchSettings,
) -> PatchRecord:
    """Whether the filters keep a patch (its record; nothing is written). ``image_region``
    is needed only for ``min_std``."""
    mask_patch = mask_at_output_resolution(mask_region, settings)
    rejected = screen_patch(mask_patch, info, settings)
    if rejected is not None:
        return rejected
    if image_region is None:
        return PatchRecord(info.index, True)
    image_patch = image_at_output_resolution(image_region, settings)
    return finish_patch(image_patch, mask_patch, info, settings)[0]


def write_shard_task(
    image_regions: Sequence[np.ndarray],
    mask_regions: Sequence[np.ndarray] | None,
    infos: Sequence[PatchInfo],
    settings: PatchSettings,
    target: ShardTarget,
    first_slot: int,
) -> list[PatchRecord]:
    """Prepare the patches ``infos`` (all kept by the filters) and write them as the shard
    that starts at ``first_slot``; their records. Runs on a ``dask.distributed`` worker."""
    records, images, masks = [], [], []
    for k, info in enumerate(infos):
        mask_patch = mask_at_output_resolution(
            None if mask_regions is None else np.asarray(mask_regions[k]), settings
        )
        image_patch = image_at_output_resolution(np.asarray(image_regions[k]), settings)
        record, image_patch, mask_patch = finish_patch(image_patch, mask_patch, info, settings)
        if not record.kept:
            raise RuntimeError(
                f"patch {info.index} passed the filters, then not: the source changed during "
                "the export; export again with overwrite=True."
            )
        records.append(replace(record, array_index=first_slot + k))
        images.append(image_patch)
        masks.append(mask_patch)
    target.write(first_slot // target.shard_patches, images, masks)
    return records


def resumed_records(out: Path, plan: ExportPlan, target: ShardTarget) -> dict[int, PatchRecord]:
    """The records an interrupted zarr export left that stay valid: the longest run of
    journalled patches in grid order whose kept patches are numbered 0, 1, 2... and lie in
    shard files on disk; an unfinished export is cut back to its last complete shard (the
    shard after it is written again whole)."""
    by_index = {r.index: r for r in journal_records(out)}
    on_disk = shard_files_on_disk(out, IMAGES_ARRAY) | shard_files_on_disk(out, MASKS_ARRAY)
    prefix: list[PatchRecord] = []
    kept = 0
    for info in plan.patches:
        record = by_index.get(info.index)
        if record is None:
            break
        if record.kept:
            if record.array_index != kept or not set(target.files(kept)) <= on_disk:
                break
            kept += 1
        prefix.append(record)
    if len(prefix) < len(plan.patches):
        complete = kept // target.shard_patches * target.shard_patches
        cut = next(
            (i for i, r in enumerate(prefix) if r.kept and r.array_index >= complete), len(prefix)
        )
        prefix = prefix[:cut]
    return {r.index: r for r in prefix}


def screened_patches(
    batches: Iterable[Sequence[PatchInfo]],
    read_masks: Callable[[Sequence[PatchInfo]], list[Any]],
    read_images: Callable[[Sequence[PatchInfo]], list[np.ndarray]],
    settings: PatchSettings,
) -> Iterator[ScreenedPatch]:
    """Per batch: the mask regions read first, the image patches (``read_images`` gives
    them at output resolution) only of the patches the mask filters keep; ``(info,
    rejection or None, image patch, mask patch)`` per patch at output resolution, in
    patch order."""
    for batch in batches:
        masks = [mask_at_output_resolution(m, settings) for m in read_masks(batch)]
        decided = [screen_patch(m, p, settings) for p, m in zip(batch, masks)]
        images = iter(read_images([p for p, d in zip(batch, decided) if d is None]))
        for info, record, mask_patch in zip(batch, decided, masks):
            if record is not None:
                yield info, record, None, None
            else:
                yield info, None, next(images), mask_patch
