"""What the commands share: errors, inputs, options, progress, the scheduler."""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

PROG = "napari-patchwork"


class CLIError(Exception):
    """A user error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


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


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options of the commands that read images: --quiet, --lazy, --channel-axis, --scheduler."""
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
