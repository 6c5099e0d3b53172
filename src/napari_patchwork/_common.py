"""Small helpers every core module uses: dask checks, axes, per-axis values, progress steps,
atomic file writes.

Each helper takes the caller's error class (``error=``), so a bad value is reported as
the module's own error (``GridError``, ``ClusterError``, ``ExportError``...; all
``ValueError``) with the caller's parameter name. GUI-free; imports neither dask nor napari.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any, BinaryIO, TypeVar

import numpy as np

T = TypeVar("T")
TEMP_SUFFIX = ".part"
"""Suffix of the temporary files of :func:`atomic_write`."""


def is_dask(array: Any) -> bool:
    """True for a dask array (without importing dask: no dask array exists before it is)."""
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(array, dask_array.Array)


def normalize_axis(
    axis: Any, ndim: int, what: str = "channel_axis", error: type[Exception] = ValueError
) -> int:
    """``axis`` as a non-negative index into ``ndim`` axes, or ``error`` saying what to give."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise error(f"{what} must be an integer axis index or None, got {axis!r}.")
    if not -ndim <= axis < ndim:
        raise error(
            f"{what}={axis} does not exist for an array with {ndim} axes; "
            f"use a value from {-ndim} to {ndim - 1}, or None for no channel axis."
        )
    return int(axis) % ndim


def per_axis(
    value: Any,
    n_axes: int,
    name: str,
    *,
    convert: Callable[[Any], T] = float,  # type: ignore[assignment]
    error: type[Exception] = ValueError,
) -> tuple[T, ...]:
    """One converted value per spatial axis: a single number applies to every axis, a
    sequence must have ``n_axes`` entries."""
    if np.ndim(value) == 0:
        return (convert(value),) * n_axes
    values = tuple(convert(v) for v in value)
    if len(values) != n_axes:
        raise error(
            f"{name} has {len(values)} values but the image has {n_axes} spatial axes "
            "(channel axis excluded); give one value per spatial axis or a single number."
        )
    return values


def ints(values: Iterable[Any]) -> tuple[int, ...]:
    """A tuple of Python ints (from numpy integers, e.g. for JSON and messages)."""
    return tuple(int(v) for v in values)


def fraction(value: Any, name: str, error: type[Exception] = ValueError) -> float:
    """``value`` as a float from 0 to 1, or ``error`` saying so (NaN and non-numbers too)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise error(f"{name} must be a fraction from 0 to 1, got {value!r}.")
    return number


def run_steps(steps: Generator[T, None, Any], on_step: Callable[[T], Any] | None = None) -> Any:
    """Exhaust a progress generator, passing each step to ``on_step``; return its return value."""
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            return stop.value
        if on_step is not None:
            on_step(step)


def rescaled(
    steps: Generator[float, None, Any], start: float, stop: float
) -> Generator[float, None, Any]:
    """Forward the progress of ``steps`` (fractions in [0, 1]) mapped onto [start, stop];
    returns what ``steps`` returns. Closing this closes ``steps``."""
    try:
        while True:
            try:
                fraction = next(steps)
            except StopIteration as done:
                return done.value
            yield start + (stop - start) * fraction
    finally:
        steps.close()


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[BinaryIO], None],
    fsync: bool = False,
    *,
    replace: bool = True,
) -> None:
    """Write ``path`` through a temporary file in the same folder, then give it its name.

    A file with the final name is therefore always complete. The temporary file
    (``.<name>.<pid>-<thread>.part``) is removed if ``write`` fails; its name holds the
    process and thread id, so writers of the same file never share it. With
    ``replace=False`` an existing ``path`` is never replaced, even one that another
    process creates meanwhile (FileExistsError; atomic where hard links work).
    """
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, os.fspath(path))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # after os.replace there is nothing left to remove


def temporary_name(path: str | os.PathLike) -> str:
    """``.<name>.<pid>-<thread>.part`` beside ``path``: never shared by two writers."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}-{threading.get_ident()}{TEMP_SUFFIX}")


def _link_new(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path`` only if no file has it."""
    message = f"{path} exists; choose another name or pass overwrite=True."
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(message) from None
    except OSError:  # no hard links on this file system: check just before the rename
        if os.path.exists(path):
            raise FileExistsError(message) from None
        os.replace(tmp, path)
