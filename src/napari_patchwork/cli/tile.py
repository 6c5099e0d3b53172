"""``napari-patchwork tile``: cut images (and masks) into patch folders."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_patchwork.cli.common import (
    CLIError,
    TqdmProgress,
    add_common_options,
    expand_inputs,
    file_stem,
    iter_inputs,
    per_image_path,
    refuse_existing,
    scheduler,
)
from napari_patchwork.cli.placement import add_placement_options, placement_of
from napari_patchwork.export import DEFAULT_WRITE_THREADS, FILE_FORMATS, FORMAT_ALIASES
from napari_patchwork.grid import EDGE_MODES


def patch_stem(args: argparse.Namespace, image_path: Path) -> str:
    """``--stem``, else the input's name made safe for file names (``slide 1 é.tif`` gives
    ``slide_1__``): letters, digits, ``.``, ``_`` and ``-`` only."""
    if args.stem is not None:
        return args.stem
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", file_stem(image_path))
    return stem if re.match(r"[A-Za-z0-9]", stem) else f"patch{stem}"


def check_scale(scale: Sequence[float] | None, n_spatial: int) -> None:
    """``--scale`` has one value per spatial axis of the image (nothing is cut off silently)."""
    if scale is not None and len(scale) != n_spatial:
        raise CLIError(
            f"--scale has {len(scale)} values, the image has {n_spatial} spatial axes; give "
            f"one pixel size per spatial axis, e.g. --scale {' '.join(['0.5'] * n_spatial)}."
        )


def export_options(args: argparse.Namespace, image_path: Path) -> dict[str, Any]:
    """``export_patches`` keywords from the ``tile`` arguments, for one input file."""
    from napari_patchwork.io import read_pixel_size

    scale, units = args.scale, args.units
    if scale is None:  # an OME-TIFF knows its pixel size
        scale, file_units = read_pixel_size(image_path) or (None, None)
        units = units or file_units
    return dict(
        patch_size=tuple(args.size) if len(args.size) > 1 else args.size[0],
        stride=None
        if args.stride is None
        else (tuple(args.stride) if len(args.stride) > 1 else args.stride[0]),
        edge=args.edge,
        fmt=args.format,  # the core knows the aliases (tif, ome-tif)
        compression=None if args.compression in (None, "none") else args.compression,
        min_foreground=args.min_foreground,
        only_foreground=args.only_foreground,
        downsample=args.downsample,
        pixel_size=args.pixel_size,
        scale=scale,
        units=units,
        split=tuple(args.split) if args.split else None,
        seed=args.seed,
        split_by=args.split_by,
        block_size=None
        if args.block_size is None
        else (tuple(args.block_size) if len(args.block_size) > 1 else args.block_size[0]),
        overwrite=args.overwrite,
        stem=patch_stem(args, image_path),
        image_name=file_stem(image_path),  # the layer's name when napari opens the folder
        write_threads=args.write_threads,
    )


def preview_targets(args: argparse.Namespace, images: Sequence[Path]) -> list[Path | None]:
    """The ``--preview`` file of each image (None without the option); checked before any work."""
    targets = [per_image_path(p, args.preview, len(images), "--preview") for p in images]
    for target in targets:
        if target is not None and target.suffix.lower() != ".png":
            raise CLIError(f"--preview {target}: the preview is a PNG picture; use a .png name.")
    refuse_existing(targets, args.overwrite)
    return targets


def write_tile_previews(
    folder: Path, image: Any, channel_axis: int | None, title: str, targets: Sequence[Path]
) -> list[Path]:
    """The patches of the export in ``folder`` drawn on a thumbnail of ``image`` (an array
    or its pyramid levels), written to each of ``targets`` (``folder/preview.png`` and
    ``--preview``, checked before)."""
    from napari_patchwork.io import write_image
    from napari_patchwork.preview import draw_patch_preview, folder_marks, render

    if not targets:
        return []
    marks = folder_marks(folder)
    figure = draw_patch_preview(
        image, marks.boxes, marks.kept, marks.split, channel_axis=channel_axis, title=title
    )
    pixels = render(figure)
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, pixels, overwrite=True)
    return list(targets)


def cmd_tile(args: argparse.Namespace) -> int:
    from napari_patchwork._reader import remember_reader_for
    from napari_patchwork.export import BatchResult, batch_image_splits, export_patches
    from napari_patchwork.io import read_pyramid
    from napari_patchwork.preview import PREVIEW_FILE
    from napari_patchwork.pyramid import Pyramid

    images = expand_inputs(args.images)
    previews = preview_targets(args, images)
    # split_by image: each image's split is drawn before any is read (all its patches go there)
    image_splits = batch_image_splits(len(images), args.split_by, args.split, args.seed)
    results = []
    with scheduler(args.scheduler) as client:
        for (image_path, image, mask, channel_axis), preview, image_split in zip(
            iter_inputs(args, images), previews, image_splits
        ):
            out = (
                Path(args.output) if len(images) == 1 else Path(args.output) / file_stem(image_path)
            )
            n_spatial = len(image.shape) - (channel_axis is not None)
            check_scale(args.scale, n_spatial)
            options = export_options(args, image_path)
            options["placement"] = placement_of(
                args, image_path, len(images), n_spatial, options["scale"]
            )
            progress = TqdmProgress(image_path.name, disable=args.quiet)
            pyramid = read_pyramid(image_path)  # a downsampled export reads a smaller level
            levels = (
                None if pyramid is None else Pyramid((image, *pyramid.levels[1:]), pyramid.claimed)
            )
            try:
                result = export_patches(
                    out,
                    levels or image,
                    mask,
                    channel_axis=channel_axis,
                    as_dask_tasks=client is not None,
                    progress=progress,
                    image_split=image_split,
                    **options,
                )
            finally:
                progress.close()
            results.append(result)
            targets = [out / PREVIEW_FILE] if not args.no_preview else []
            title = f"{image_path.name}, {' x '.join(map(str, args.size))} px patches"
            written = write_tile_previews(  # from a small pyramid level if the file has one
                out, image if levels is None else list(levels.levels), channel_axis, title,
                targets + ([preview] if preview else []),
            )  # fmt: skip
            if not args.quiet:
                shown = f"; preview: {', '.join(map(str, written))}" if written else ""
                print(f"{image_path}: {result.message}{shown}")
                for note in result.notes:  # what a placement could not place, pyramid levels
                    print(f"  {note}")
            if remember_reader_for(out) and not args.quiet:
                print(f"{out}: napari opens it with napari-patchwork (`napari {out}`)")
    if len(results) > 1 and args.split and not args.quiet:
        splits = tuple(s or "" for s in image_splits)
        print(f"all images: {BatchResult(tuple(results), splits).message}")
    return 0


def preview_arguments(tile: argparse.ArgumentParser) -> None:
    """``tile``'s picture options: ``--preview FILE.png`` and ``--no-preview``."""
    tile.add_argument(
        "--preview",
        metavar="FILE.png",
        help="also write the patch preview (a thumbnail of at most 2,000 px with every patch "
        "drawn: kept, filtered, split) to this file; with several images a pattern with {stem}",
    )
    tile.add_argument(
        "--no-preview",
        action="store_true",
        help="do not write preview.png into the patch folder (written by default)",
    )


def add_parser(sub) -> None:
    """The ``tile`` command's options."""
    tile = sub.add_parser(
        "tile", help="cut images (and masks) into patches and write them with a manifest"
    )
    tile.add_argument("images", nargs="+", metavar="IMAGE", help="image files or glob patterns")
    tile.add_argument(
        "--mask",
        metavar="MASK",
        help="label/mask file; with several images a pattern "
        "with {stem}, e.g. 'masks/{stem}_mask.tif'",
    )
    tile.add_argument(
        "--size",
        type=int,
        nargs="+",
        required=True,
        metavar="PX",
        help="patch size in pixels: one value for all spatial axes or one per axis (z y x)",
    )
    tile.add_argument(
        "--stride",
        type=int,
        nargs="+",
        metavar="PX",
        help="step between patches (default: the patch size, no overlap)",
    )
    tile.add_argument(
        "--edge",
        choices=EDGE_MODES,
        default="drop",
        help="last patch at the edge: drop it, pad it, shift it inward, or clip it (partial)",
    )
    tile.add_argument(
        "--format",
        choices=[*FILE_FORMATS, *FORMAT_ALIASES],
        default="tiff",
        help="patch file format (ome-tiff carries the physical pixel size; zarr writes two "
        "sharded zarr arrays instead of a file per patch; "
        "tif and ome-tif are other names of tiff and ome-tiff)",
    )
    tile.add_argument(
        "--compression",
        choices=["zlib", "zstd", "none"],
        default=None,
        help="zlib for TIFF, zstd for zarr (default: none)",
    )
    tile.add_argument(
        "--min-foreground",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="keep only patches whose mask has at least this fraction of non-zero pixels",
    )
    _add_output_options(tile)
    add_placement_options(tile)
    preview_arguments(tile)
    add_common_options(tile)
    tile.set_defaults(func=cmd_tile)


def _add_output_options(tile: argparse.ArgumentParser) -> None:
    """``tile``'s options for what is kept and how it is written."""
    tile.add_argument(
        "--only-foreground",
        action="store_true",
        help="keep only patches whose mask has any non-zero pixel (e.g. annotated ones)",
    )
    tile.add_argument(
        "--downsample",
        type=int,
        metavar="FACTOR",
        help="export at 1/FACTOR resolution along y and x (images: block mean, masks: "
        "block mode); --size is then in output pixels. A pyramidal TIFF / OME-TIFF / SVS or "
        "OME-Zarr is read at its coarsest level that divides FACTOR",
    )
    tile.add_argument(
        "--pixel-size",
        type=float,
        metavar="SIZE",
        help="export at this pixel size (same units as --scale; a whole multiple of it)",
    )
    tile.add_argument(
        "--scale",
        type=float,
        nargs="+",
        metavar="SIZE",
        help="the input's pixel size per spatial axis, e.g. --scale 0.25 0.25 (um/px); "
        "default: read from OME-TIFF metadata, else 1",
    )
    tile.add_argument(
        "--units", default=None, help="units of --scale, e.g. micrometer (recorded, OME-TIFF)"
    )
    tile.add_argument(
        "--stem",
        default=None,
        help="file name prefix of the patches (letters, digits, '.', '_', '-'); default: the "
        "input's name, other characters replaced by '_'",
    )
    tile.add_argument(
        "--split",
        type=float,
        nargs="+",
        metavar="FRACTION",
        help="train/val(/test) fractions, e.g. --split 0.8 0.1 0.1 (deterministic with --seed)",
    )
    tile.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed of the split and of --place random/balanced (default: 0)",
    )
    tile.add_argument(
        "--split-by",
        choices=("patch", "blocks", "image"),
        default="patch",
        help="what is assigned to the splits: each patch (default), spatial blocks of "
        "--block-size (patches that would overlap or touch a patch of another split are left "
        "out as a buffer), or whole images (several images: each image in one split)",
    )
    tile.add_argument(
        "--block-size",
        type=int,
        nargs="+",
        metavar="PX",
        help="block size of --split-by blocks, in output pixels (like --size): one value or "
        "one per spatial axis; at least the patch size, better several patches",
    )
    tile.add_argument(
        "--overwrite", action="store_true", help="write into a folder that is not empty"
    )
    tile.add_argument(
        "--write-threads",
        type=int,
        default=DEFAULT_WRITE_THREADS,
        metavar="N",
        help=f"threads writing patch files (default: {DEFAULT_WRITE_THREADS}; "
        "ignored with --scheduler)",
    )
    tile.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="output folder (one sub-folder per image when several)",
    )
