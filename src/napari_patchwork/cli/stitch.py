"""``napari-patchwork stitch``: a patch folder (or predictions) back into whole images."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_patchwork.cli.common import CLIError, file_stem
from napari_patchwork.merge import MERGE_MODES


def cmd_stitch(args: argparse.Namespace) -> int:
    from napari_patchwork.folder import read_patch_folder
    from napari_patchwork.io import write_image
    from napari_patchwork.stitch import stitch

    folder = read_patch_folder(args.folder)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    # lazily: write_image writes dask arrays a strip at a time, reading only those patches
    missing_ok = args.allow_missing
    mask = (
        None
        if args.predictions or not folder.has_mask
        else stitch(folder, "masks", allow_missing=missing_ok, lazy=True)
    )
    mask_out = None
    if mask is not None:
        mask_out = (
            Path(args.mask_output)
            if args.mask_output
            else out.with_name(file_stem(out) + "_mask" + "".join(out.suffixes))
        )
    for target in (out, mask_out):  # refuse before writing anything
        if target is not None and target.exists() and not args.overwrite:
            raise CLIError(f"{target} exists; choose another name or pass --overwrite.")
    if args.predictions:
        predictions = Path(args.predictions).absolute()  # relative to the current directory
        if not predictions.is_dir():
            raise CLIError(f"--predictions {args.predictions}: no such folder.")
        image = stitch(
            folder,
            predictions,
            merge=args.merge,
            argmax=args.argmax,
            allow_missing=missing_ok,
            lazy=True,
        )
    else:
        if args.merge != "center" or args.argmax:
            raise CLIError("--merge and --argmax apply to --predictions; add --predictions DIR.")
        image = stitch(folder, "images", allow_missing=missing_ok, lazy=True)
    write_image(out, image, overwrite=args.overwrite)
    written = [str(out)]
    if mask is not None:
        write_image(mask_out, mask, overwrite=args.overwrite)
        written.append(str(mask_out))
    if not args.quiet:
        print("stitched: " + ", ".join(written))
    return 0


def add_parser(sub) -> None:
    """The ``stitch`` command's options."""
    stitch = sub.add_parser("stitch", help="rebuild full images from a patch folder")
    stitch.add_argument(
        "folder", metavar="DIR", help="a folder written by 'tile' (with dataset.json)"
    )
    stitch.add_argument(
        "--predictions",
        metavar="DIR",
        help="a folder of model outputs named like the image patches (relative to the current "
        "directory): stitch those instead",
    )
    stitch.add_argument(
        "--merge",
        choices=MERGE_MODES,
        default="center",
        help="where patches overlap: center (nearest patch centre; default, label-safe), last, "
        "mean, gaussian or hann (weighted average, sigma = 0.125 x patch), max, or vote "
        "(majority label; integer predictions)",
    )
    stitch.add_argument(
        "--argmax",
        action="store_true",
        help="reduce the predictions' channel axis (class scores) to the index of the largest",
    )
    stitch.add_argument(
        "-o", "--output", required=True, metavar="OUT.tif", help="stitched image file"
    )
    stitch.add_argument(
        "--mask-output",
        metavar="FILE",
        help="stitched mask file (default: OUT_mask.tif next to OUT)",
    )
    stitch.add_argument(
        "--allow-missing",
        action="store_true",
        help="leave out patches whose file (or prediction) is missing: their pixels get 0 "
        "instead of an error",
    )
    stitch.add_argument("--overwrite", action="store_true", help="replace existing output files")
    stitch.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    stitch.set_defaults(func=cmd_stitch)
