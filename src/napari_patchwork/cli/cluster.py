"""``napari-patchwork cluster``: k-means segmentation of images, with a model file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork.cli.common import (
    CLIError,
    add_common_options,
    expand_inputs,
    file_stem,
    iter_inputs,
    per_image_path,
    refuse_existing,
    scheduler,
    sigma_arg,
)
from napari_patchwork.cluster import DEFAULT_SAMPLE_SIZE

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Files for 8-bit grey or RGB pictures; other images are written as TIFF."""


def posterized_targets(args: argparse.Namespace, images: Sequence[Path]) -> list[Path | None]:
    """The ``--posterized`` file of each image (None without the option)."""
    from napari_patchwork.io import TIFF_SUFFIXES

    targets = [per_image_path(p, args.posterized, len(images), "--posterized") for p in images]
    for target in targets:
        name = "" if target is None else target.name.lower()
        if target is not None and not name.endswith(PICTURE_SUFFIXES + TIFF_SUFFIXES):
            raise CLIError(
                f"--posterized {target}: write the posterised image as .png or .jpg "
                "(8-bit grey or RGB) or .tif (any image)."
            )
    return targets


def check_picture_type(target: Path | None, image: Any, channel_axis: int | None) -> None:
    """A PNG/JPEG ``--posterized`` file holds 8-bit grey or RGB only: say so before clustering."""
    if target is None or target.suffix.lower() not in PICTURE_SUFFIXES:
        return
    channels = 1 if channel_axis is None else int(image.shape[channel_axis])
    n_spatial = len(image.shape) - (channel_axis is not None)
    if np.dtype(image.dtype) != np.uint8 or channels not in (1, 3) or n_spatial != 2:
        raise CLIError(
            f"--posterized {target}: PNG and JPEG hold 8-bit grey or RGB pictures, but this "
            f"image is {np.dtype(image.dtype)} with {channels} channel(s) and {n_spatial} "
            "spatial axes; use a .tif name."
        )


def cluster_features(args: argparse.Namespace):
    """The ``FeatureOptions`` of the ``cluster`` arguments, checked before any file is read
    (the channel axis is set per image)."""
    from napari_patchwork.cluster import FeatureOptions

    return FeatureOptions(
        channel_scaling=args.channel_scaling,
        spatial_weight=args.spatial_weight,
        sigma=args.sigma,
        sample_size=args.sample_size,
        random_state=args.seed,
        nan_pixels="background" if args.nan_background else "error",
    )


def refuse_same_file(
    labels: Sequence[Path], posterized: Sequence[Path | None], model_file: Sequence[Path]
) -> None:
    """Two outputs of ``cluster`` naming one file would lose one of them: refuse."""
    named: dict[Path, str] = {}
    outputs = [("-o", p) for p in labels] + [("--posterized", p) for p in posterized if p]
    for option, path in outputs + [("--save-model", p) for p in model_file]:
        other = named.setdefault(path.resolve(), option)
        if other != option:
            raise CLIError(
                f"{other} and {option} both name {path}: one output would replace the other; "
                "give each its own file name (e.g. model.json for --save-model)."
            )


def fit_or_apply(args: argparse.Namespace, image: Any, mask: Any, channel_axis: int | None,
                 model, features):  # fmt: skip
    """``(labels, model)``: ``model`` applied to ``image``, or a model fitted on it (None)."""
    from napari_patchwork.cluster import cluster_pixels

    if model is not None:
        labels = model.predict(
            image,
            channel_axis=channel_axis,
            mask=mask,
            nan_pixels=features.nan_pixels,
            allow_other_units=args.allow_other_units,
        )
        return labels, model
    result = cluster_pixels(
        image, args.k, features=features.replace(channel_axis=channel_axis), mask=mask
    )
    if args.save_model:
        result.model.save(args.save_model, overwrite=args.overwrite)
    return result.labels, result.model


def write_posterized(target: Path, labels: Any, model, image: Any, channel_axis: int | None,
                     overwrite: bool) -> None:  # fmt: skip
    """Every pixel replaced by its cluster centre, in the image's dtype (TIFF strip by strip
    for dask)."""
    from napari_patchwork.cluster import posterize
    from napari_patchwork.io import write_image

    picture = posterize(labels, model.centers_image, channel_axis=channel_axis, dtype=image.dtype)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_image(target, picture, overwrite=overwrite)


def cmd_cluster(args: argparse.Namespace) -> int:
    """Fit one model (on the first image, unless --model gives one), label every image with it."""
    from napari_patchwork.cluster import ClusterModel
    from napari_patchwork.io import write_image

    features = cluster_features(args)
    images = expand_inputs(args.images)
    out = Path(args.output)
    if len(images) > 1 and out.suffix:
        raise CLIError("several images: give an output folder with -o, not a file name.")
    targets = [out] if len(images) == 1 else [out / f"{file_stem(p)}_clusters.tif" for p in images]
    posterized = posterized_targets(args, images)
    model_file = [Path(args.save_model)] if args.save_model else []
    refuse_existing(targets + posterized + model_file, args.overwrite)  # before any work
    refuse_same_file(targets, posterized, model_file)
    model = ClusterModel.load(args.model) if args.model else None
    with scheduler(args.scheduler):
        for (image_path, image, mask, channel_axis), target, picture in zip(
            iter_inputs(args, images), targets, posterized
        ):
            check_picture_type(picture, image, channel_axis)
            labels, model = fit_or_apply(args, image, mask, channel_axis, model, features)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, labels, overwrite=args.overwrite)  # dask: strip by strip
            if picture is not None:
                write_posterized(picture, labels, model, image, channel_axis, args.overwrite)
            if not args.quiet:
                also = f" and the posterised image to {picture}" if picture else ""
                print(f"{image_path}: cluster labels written to {target}{also}")
    return 0


def add_parser(sub) -> None:
    """The ``cluster`` command's options."""
    cluster = sub.add_parser(
        "cluster",
        help="KMeans segmentation of pixels into a label image",
        description="KMeans on pixel colours (ids 1..k sorted by brightness, 1 = darkest). With "
        "several images one model is fitted on the first and applied to all, so the same colours "
        "get the same ids in every file.",
    )
    cluster.add_argument("images", nargs="+", metavar="IMAGE", help="image files or glob patterns")
    cluster.add_argument("-k", type=int, default=5, help="number of clusters (default: 5)")
    cluster.add_argument(
        "--channel-scaling",
        choices=["shared", "per_channel"],
        default="shared",
        help="'shared' (colour images, default) or 'per_channel' (z-score each "
        "channel: fluorescence markers in unrelated units)",
    )
    cluster.add_argument(
        "--spatial-weight",
        type=float,
        default=0.0,
        help="weight of pixel position against colour (SLIC-like compactness; default 0)",
    )
    cluster.add_argument(
        "--sigma",
        type=sigma_arg,
        default=0.0,
        help="Gaussian smoothing in pixels (default 0; at most the image size and "
        "256 pixels: wider smoothing takes minutes, downsample instead)",
    )
    cluster.add_argument(
        "--mask",
        metavar="MASK",
        help="region of interest (non-zero pixels); with several images a pattern with {stem}",
    )
    cluster.add_argument(
        "--sample-size",
        type=int,
        default=DEFAULT_SAMPLE_SIZE,
        help=f"pixels sampled to fit the model (default {DEFAULT_SAMPLE_SIZE})",
    )
    cluster.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    cluster.add_argument(
        "--nan-background",
        action="store_true",
        help="label NaN/infinite pixels 0 and leave them out of the fit "
        "(default: they are an error)",
    )
    cluster.add_argument(
        "--save-model",
        metavar="MODEL.json",
        help="save the fitted model (centres, scaling, settings) to re-apply it later",
    )
    cluster.add_argument(
        "--model", metavar="FILE", help="apply a saved model instead of fitting one"
    )
    cluster.add_argument(
        "--posterized",
        metavar="FILE",
        help="also write the posterised image (every pixel its cluster centre, in the image's "
        "dtype): .png or .jpg for 8-bit grey or RGB, else .tif; with several images a pattern "
        "with {stem}, e.g. 'posterized/{stem}.png'",
    )
    cluster.add_argument(
        "--allow-other-units",
        action="store_true",
        help="label images whose dtype or value range differ from the image the model was "
        "fitted on (default: refused, as the same ids would mean other colours); for images "
        "whose values are already in the model's units",
    )
    cluster.add_argument("--overwrite", action="store_true", help="replace existing output files")
    cluster.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="LABELS.tif",
        help="output label image (a folder when several images)",
    )
    add_common_options(cluster)
    cluster.set_defaults(func=cmd_cluster)
