"""``tile``'s placement options: ``--place {grid,objects,points,random,balanced}``,
``--points FILE.csv``, ``-n N``, ``--classes ID ...`` (see :mod:`napari_patchwork.placement`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from napari_patchwork.cli.common import CLIError, per_image_path
from napari_patchwork.placement import (
    CENTRES,
    PLACEMENT_KINDS,
    Placement,
    PlacementError,
    read_points_csv,
)


def add_placement_options(tile: argparse.ArgumentParser) -> None:
    """The placement options of ``tile``."""
    group = tile.add_argument_group(
        "placement", "where patches go (default: a regular grid); --edge treats the border"
    )
    group.add_argument(
        "--place",
        choices=PLACEMENT_KINDS,
        default="grid",
        help="grid: regular grid; objects: one patch centred on each label instance of --mask; "
        "points: one centred on each point of --points; random: -n patches at seeded random "
        "positions; balanced: -n patches per class of --mask (centres drawn among its pixels)",
    )
    group.add_argument(
        "--points",
        metavar="FILE.csv",
        help="--place points: a CSV of y,x (or z,y,x) per row, header optional; with several "
        "images a pattern with {stem}",
    )
    group.add_argument(
        "--points-units",
        choices=("pixels", "world"),
        default="pixels",
        help="--points are pixels (default) or world units (divided by --scale / the "
        "OME-TIFF pixel size)",
    )
    group.add_argument(
        "-n",
        type=int,
        metavar="N",
        help="--place random: how many patches; balanced: how many per class",
    )
    group.add_argument(
        "--classes",
        type=int,
        nargs="+",
        metavar="ID",
        help="objects: only these instance ids (with --connected: these class values); "
        "balanced: these classes (default: every non-zero label)",
    )
    group.add_argument(
        "--connected",
        action="store_true",
        help="objects: --mask is a semantic mask (one value per class): each connected "
        "region of a value is one object (default: each label id is one object)",
    )
    group.add_argument(
        "--centre",
        choices=CENTRES,
        default="centroid",
        help="objects: centre patches on the centroid (default) or the bounding-box centre",
    )
    group.add_argument(
        "--max-overlap",
        type=float,
        default=1.0,
        metavar="FRACTION",
        help="random: the largest share of a patch another may cover (default 1: no cap; "
        "identical patches are never placed)",
    )


def placement_of(
    args: argparse.Namespace,
    image_path: Path,
    n_images: int,
    n_spatial: int,
    scale: Sequence[float] | None,
) -> Placement | None:
    """The :class:`Placement` the arguments ask for (None: the regular grid), for one image."""
    _check_combinations(args)
    if args.place == "grid":
        return None
    if args.place in ("objects", "balanced") and args.mask is None:
        raise CLIError(f"--place {args.place} reads the labels of --mask: give --mask FILE.")
    points = None
    if args.place == "points":
        path = per_image_path(image_path, args.points, n_images, "--points")
        world = args.points_units == "world"
        if world and scale is None:
            raise CLIError(
                "--points-units world needs the image's pixel size: give --scale (or use an "
                "OME-TIFF that records it)."
            )
        points = read_points_csv(path, n_spatial, pixel_size=scale if world else None)
    try:
        return Placement(
            kind=args.place,
            n=args.n,
            classes=args.classes,
            points=points,
            seed=args.seed,
            # random: draw until each patch has the foreground --min-foreground asks for
            min_foreground=args.min_foreground if args.place == "random" else 0.0,
            max_overlap=args.max_overlap,
            centre=args.centre,
            connected=args.connected,
        )
    except PlacementError as err:
        raise CLIError(_in_option_names(str(err))) from None


def _check_combinations(args: argparse.Namespace) -> None:
    place = args.place
    if place == "points" and args.points is None:
        raise CLIError("--place points needs --points FILE.csv (one y,x or z,y,x row per point).")
    if args.points is not None and place != "points":
        raise CLIError("--points is for --place points; add --place points or drop --points.")
    if place in ("random", "balanced") and args.n is None:
        what = "patches" if place == "random" else "patches per class"
        raise CLIError(f"--place {place} needs -n N, the number of {what}.")
    if args.n is not None and place not in ("random", "balanced"):
        raise CLIError("-n is for --place random or balanced.")
    if args.classes is not None and place not in ("objects", "balanced"):
        raise CLIError("--classes is for --place objects or balanced.")
    if args.connected and place != "objects":
        raise CLIError("--connected is for --place objects.")
    if args.max_overlap != 1.0 and place != "random":
        raise CLIError("--max-overlap is for --place random.")
    if place != "grid" and args.stride is not None:
        raise CLIError(f"--stride lays the regular grid; drop it with --place {place}.")


def _in_option_names(message: str) -> str:
    for name, option in (("max_overlap", "--max-overlap"), ("min_foreground", "--min-foreground")):
        message = message.replace(name, option)
    return message
