"""Small helpers every core module uses: dask checks, axes, per-axis values, progress steps.

Each helper takes the caller's error class (``error=``), so a bad value is reported as
the module's own error (``GridError``, ``ClusterError``, ``ExportError``...; all
``ValueError``) with the caller's parameter name. GUI-free; imports neither dask nor napari.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


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
