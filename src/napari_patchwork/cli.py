"""The ``napari-patchwork`` command line: the widgets' jobs without a GUI.

    napari-patchwork demo [OUT_DIR]
    napari-patchwork tile IMAGE... [--mask MASK] --size 256 [--preview FILE.png] -o DIR
    napari-patchwork cluster IMAGE... -k 5 [--posterized FILE.png] -o LABELS.tif
    napari-patchwork stitch DIR -o OUT.tif

Run ``napari-patchwork COMMAND --help`` for every option. Bad input ends with a
one-line message on stderr and exit code 2 (usage) or 1 (a file that cannot be
read or written). No napari, no Qt: this module imports only the core.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_patchwork import __version__
from napari_patchwork.cluster import DEFAULT_SAMPLE_SIZE
from napari_patchwork.export import DEFAULT_WRITE_THREADS, FILE_FORMATS, FORMAT_ALIASES
from napari_patchwork.grid import EDGE_MODES
from napari_patchwork.merge import MERGE_MODES

PROG = "napari-patchwork"


class CLIError(Exception):
    """A user error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


# -- helpers ---------------------------------------------------------------------------
def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Files named or matched by glob patterns (``'slides/*.tif'``), in order, without repeats."""
    paths: list[Path] = []
    for pattern in patterns:
        matches = (
            sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        )
        if not matches:
            raise CLIError(f"no file matches {pattern!r}.")
        for match in matches:
            path = Path(match)
            if not path.exists():
                raise CLIError(f"{path}: no such file.")
            if path not in paths:
                paths.append(path)
    return paths


def file_stem(path: Path) -> str:
    """``slide`` for ``slide.ome.tif``: the name up to its first dot."""
    return path.name.split(".")[0]


def per_image_path(image_path: Path, arg: str | None, n_images: int, option: str) -> Path | None:
    """The file of ``image_path`` named by ``option`` (``--mask``, ``--preview``...): the
    argument as given, or with ``{stem}`` filled in (needed with several images)."""
    if arg is None:
        return None
    if "{stem}" in arg:
        return Path(arg.format(stem=file_stem(image_path)))
    if n_images > 1:
        example = f"{option.strip('-')}/{{stem}}{Path(arg).suffix or '.tif'}"
        raise CLIError(
            f"several images but one {option}: use a pattern such as {option} '{example}'."
        )
    return Path(arg)


def mask_for(image_path: Path, mask_arg: str | None, n_images: int) -> Path | None:
    """The mask file of ``image_path``: ``--mask`` as given, or with ``{stem}`` filled in."""
    return per_image_path(image_path, mask_arg, n_images, "--mask")


def refuse_existing(targets: Sequence[Path | None], overwrite: bool) -> None:
    """Stop before any work if an output file exists and ``--overwrite`` was not given."""
    for target in targets:
        if target is not None and target.exists() and not overwrite:
            raise CLIError(f"{target} exists; choose another name or pass --overwrite.")


def channel_axis_arg(value: str | None, shape: tuple[int, ...]) -> int | None:
    """``--channel-axis``: 'auto' = -1 for (y, x, 3|4) RGB(A), 'none', or an integer."""
    from napari_patchwork.io import guess_channel_axis

    if value in (None, "auto"):
        return guess_channel_axis(shape)
    if value == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise CLIError(
            f"--channel-axis must be 'auto', 'none' or an integer, not {value!r}."
        ) from None


def sigma_arg(value: str) -> float:
    """``--sigma``: a finite number of pixels, 0 or more (the core checks it against the image)."""
    try:
        sigma = float(value)
    except ValueError:
        sigma = math.nan
    if not (math.isfinite(sigma) and sigma >= 0):
        raise argparse.ArgumentTypeError(
            f"must be a finite number of pixels, 0 or more (0 = no smoothing), not {value!r}"
        )
    return sigma


def load(path: Path, lazy: bool | None):
    from napari_patchwork.io import ImageReadError, read_image

    try:
        return read_image(path, lazy=lazy)
    except ImageReadError as err:
        raise CLIError(str(err), code=1) from err


class TqdmProgress:
    """An export ``progress`` callback (gets an ExportProgress) drawing a tqdm bar on stderr."""

    def __init__(self, description: str, disable: bool = False):
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI)
        self._bar = tqdm(
            desc=description, unit="patch", disable=True if disable else None, leave=False
        )

    def __call__(self, state) -> None:
        if self._bar.total != state.total:
            self._bar.total = state.total
        self._bar.update(state.done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def lazy_for(args: argparse.Namespace) -> bool | None:
    """``--lazy`` as given; with ``--scheduler`` and no ``--lazy`` flag, lazy (dask) inputs."""
    if args.lazy is None and args.scheduler:
        return True
    return args.lazy


@contextlib.contextmanager
def scheduler(address: str | None) -> Iterator[Any]:
    """A dask.distributed Client for ``--scheduler`` (dask's default while open), or None."""
    if address is None:
        yield None
        return
    try:
        from dask.distributed import Client
    except ImportError as err:
        raise CLIError("--scheduler needs dask.distributed: pip install distributed") from err
    try:
        client = Client(address, timeout="10s")
    except OSError as err:
        raise CLIError(f"cannot reach the dask scheduler at {address}: {err}", code=1) from err
    with client:
        yield client


def iter_inputs(
    args: argparse.Namespace, images: Sequence[Path]
) -> Iterator[tuple[Path, Any, Any, int | None]]:
    """``(path, image, mask or None, channel axis)`` for each input, read as ``--lazy`` says."""
    lazy = lazy_for(args)
    for image_path in images:
        image = load(image_path, lazy)
        mask_path = mask_for(image_path, args.mask, len(images))
        mask = None if mask_path is None else load(mask_path, lazy)
        yield image_path, image, mask, channel_axis_arg(args.channel_axis, tuple(image.shape))


# -- commands --------------------------------------------------------------------------
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
        overwrite=args.overwrite,
        stem=patch_stem(args, image_path),
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
    from napari_patchwork.export import export_patches
    from napari_patchwork.io import read_levels
    from napari_patchwork.preview import PREVIEW_FILE

    images = expand_inputs(args.images)
    previews = preview_targets(args, images)
    with scheduler(args.scheduler) as client:
        for (image_path, image, mask, channel_axis), preview in zip(
            iter_inputs(args, images), previews
        ):
            out = (
                Path(args.output) if len(images) == 1 else Path(args.output) / file_stem(image_path)
            )
            check_scale(args.scale, len(image.shape) - (channel_axis is not None))
            progress = TqdmProgress(image_path.name, disable=args.quiet)
            try:
                result = export_patches(
                    out,
                    image,
                    mask,
                    channel_axis=channel_axis,
                    as_dask_tasks=client is not None,
                    progress=progress,
                    **export_options(args, image_path),
                )
            finally:
                progress.close()
            targets = [out / PREVIEW_FILE] if not args.no_preview else []
            title = f"{image_path.name}, {' x '.join(map(str, args.size))} px patches"
            written = write_tile_previews(  # from a small pyramid level if the file has one
                out, read_levels(image_path) or image, channel_axis, title,
                targets + ([preview] if preview else []),
            )  # fmt: skip
            if not args.quiet:
                shown = f"; preview: {', '.join(map(str, written))}" if written else ""
                print(f"{image_path}: {result.message}{shown}")
    return 0


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


def cmd_stitch(args: argparse.Namespace) -> int:
    from napari_patchwork.folder import read_patch_folder
    from napari_patchwork.io import write_image
    from napari_patchwork.stitch import stitch

    folder = read_patch_folder(args.folder)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    # lazily: write_image writes dask arrays a strip at a time, reading only those patches
    mask = None if args.predictions else folder.mask(lazy=True)
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
        image = stitch(folder, predictions, merge=args.merge, argmax=args.argmax, lazy=True)
    else:
        if args.merge != "center" or args.argmax:
            raise CLIError("--merge and --argmax apply to --predictions; add --predictions DIR.")
        image = folder.image(lazy=True)
    write_image(out, image, overwrite=args.overwrite)
    written = [str(out)]
    if mask is not None:
        write_image(mask_out, mask, overwrite=args.overwrite)
        written.append(str(mask_out))
    if not args.quiet:
        print("stitched: " + ", ".join(written))
    return 0


def demo_tile(args: argparse.Namespace, folder: str, mask: Any, **options: Any):
    """One export of the demo (with its preview.png): the sample and ``mask``, 80/20 split."""
    from napari_patchwork.export import export_patches
    from napari_patchwork.preview import PREVIEW_FILE
    from napari_patchwork.sample import sample_image

    out = Path(args.output) / folder
    progress = TqdmProgress(folder, disable=args.quiet)
    try:
        result = export_patches(
            out,
            sample_image(),
            mask,
            patch_size=args.size,
            edge="pad",
            channel_axis=-1,
            fmt="tiff",
            split=(0.8, 0.2),
            seed=0,
            overwrite=args.overwrite,
            stem="ihc",
            progress=progress,
            **options,
        )
    finally:
        progress.close()
    title = f"{folder}, {args.size} px patches"
    write_tile_previews(out, sample_image(), -1, title, [out / PREVIEW_FILE])
    return result


def demo_overview(out: Path, clusters: Any, size: int) -> Any:
    """The demo in one figure: sample, mask, clusters, posterised image, and the patch grids
    of ``out/patches`` and ``out/patches-cluster1`` with their kept patches marked."""
    from napari_patchwork.preview import Panel, draw_overview, folder_marks
    from napari_patchwork.sample import sample_image, sample_mask

    image, mask = sample_image(), sample_mask()
    k = clusters.model.n_clusters
    tiled, by_cluster = folder_marks(out / "patches"), folder_marks(out / "patches-cluster1")
    panels = [
        Panel(f"sample: IHC photo {image.shape[0]} x {image.shape[1]} RGB", image, channel_axis=-1),
        Panel(f"mask: {int(mask.max())} nuclei (labels)", mask, "labels"),
        Panel(f"clusters: k = {k} (1 = darkest)", clusters.labels, "clusters"),
        Panel(
            "posterised: each pixel its cluster's centre", clusters.posterized(), channel_axis=-1
        ),
        Panel(f"1. patches, {size} px: split train/val", image, channel_axis=-1, marks=tiled),
        Panel(
            f"4. kept where cluster 1 covers >= 20%: {int(by_cluster.kept.sum())} of "
            f"{len(by_cluster.kept)}",
            image,
            channel_axis=-1,
            marks=by_cluster,
        ),
    ]
    return draw_overview(panels, columns=3)


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the bundled sample: tile image + mask, stitch back, cluster, tile by
    clusters, and an overview figure."""
    import time

    from napari_patchwork.cluster import cluster_pixels
    from napari_patchwork.folder import read_patch_folder
    from napari_patchwork.io import write_image
    from napari_patchwork.preview import write_figure
    from napari_patchwork.sample import sample_image, sample_mask

    out = Path(args.output)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise CLIError(
            f"{out} is not empty; choose a new folder or pass --overwrite to redo the demo there."
        )
    image, mask = sample_image(), sample_mask()
    print(
        f"sample: IHC image {image.shape} {image.dtype}, nuclei mask with {int(mask.max())} labels"
    )
    result = demo_tile(args, "patches", mask)
    print(f"1. tiled: {result.message}")
    back = read_patch_folder(out / "patches")
    exact = np.array_equal(back.image(), image) and np.array_equal(back.mask(), mask)
    same = "identical to the input, dtypes included" if exact else "DIFFERENT from the input"
    print(f"2. stitched back: {same}")

    start = time.perf_counter()
    clusters = cluster_pixels(image, args.k, channel_axis=-1, random_state=0)
    seconds = time.perf_counter() - start
    write_image(out / "clusters.tif", clusters.labels, overwrite=True)  # folder checked above
    write_image(out / "posterized.png", clusters.posterized(), overwrite=True)
    clusters.model.save(out / "cluster-model.json")
    sizes = ", ".join(f"{i}: {n:,}" for i, n in enumerate(clusters.pixel_counts, start=1))
    print(
        f"3. clustered into k={args.k} in {seconds:.2f} s (id 1 = darkest; pixels {sizes}): "
        f"{out / 'clusters.tif'}, {out / 'posterized.png'}, {out / 'cluster-model.json'}"
    )

    result = demo_tile(args, "patches-cluster1", clusters.foreground([1]), min_foreground=0.2)
    print(f"4. tiled where the darkest cluster covers >= 20%: {result.message}")
    write_figure(out / "overview.png", demo_overview(out, clusters, args.size), overwrite=True)
    print(f"5. overview figure: {out / 'overview.png'} (and preview.png in each patch folder)")
    return 0 if exact else 1


# -- parser ----------------------------------------------------------------------------
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Patch grids, pixel clustering and patch export, without a GUI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
        p.add_argument(
            "--lazy",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="read inputs lazily as dask arrays (default: only files over 512 MiB)",
        )
        p.add_argument(
            "--channel-axis",
            default="auto",
            metavar="AXIS",
            help="axis that holds channels and is never cut: 'auto' (last axis of a (y, x, 3|4) "
            "RGB image), 'none', or an integer (default: auto)",
        )
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="run on a dask.distributed scheduler, e.g. tcp://127.0.0.1:8786",
        )

    demo = sub.add_parser(
        "demo",
        help="on the bundled IHC sample: tile image + nuclei mask, stitch back, cluster, "
        "tile by the darkest cluster, draw an overview figure (overview.png)",
    )
    demo.add_argument(
        "output",
        nargs="?",
        default="patchwork-demo",
        help="output folder (default: patchwork-demo)",
    )
    demo.add_argument("--size", type=int, default=128, help="patch size in pixels (default: 128)")
    demo.add_argument(
        "-k", type=int, default=4, help="clusters for the segmentation step (default: 4)"
    )
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo output")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=cmd_demo)

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
        help="patch file format (ome-tiff carries the physical pixel size; "
        "tif and ome-tif are other names of tiff and ome-tiff)",
    )
    tile.add_argument(
        "--compression",
        choices=["zlib", "none"],
        default=None,
        help="TIFF compression (default: none)",
    )
    tile.add_argument(
        "--min-foreground",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="keep only patches whose mask has at least this fraction of non-zero pixels",
    )
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
        "block mode); --size is then in output pixels",
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
    tile.add_argument("--seed", type=int, default=0, help="random seed of the split (default: 0)")
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
    preview_arguments(tile)
    common(tile)
    tile.set_defaults(func=cmd_tile)

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
    common(cluster)
    cluster.set_defaults(func=cmd_cluster)

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
    stitch.add_argument("--overwrite", action="store_true", help="replace existing output files")
    stitch.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    stitch.set_defaults(func=cmd_stitch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.code
    except (ValueError, FileExistsError) as err:  # the core's errors say what to change
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
