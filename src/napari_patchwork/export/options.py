"""Export options: defaults, allowed values and the export's error."""

from __future__ import annotations

COMPRESSIONS: tuple[str | None, ...] = (None, "zlib")


PAD_MODES: tuple[str, ...] = ("constant", "reflect", "symmetric", "edge")
"""``numpy.pad`` modes for ``edge="pad"``. Masks are padded with 0 in ``constant``
mode and with the image's mode otherwise (so labels stay aligned with the image)."""


DEFAULT_READ_BATCH_BYTES = 64 * 2**20


DEFAULT_WRITE_THREADS = 2


class ExportError(ValueError):
    """The export cannot run as asked; the message says what to change."""
