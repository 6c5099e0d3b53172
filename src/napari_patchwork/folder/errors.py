"""The error of a patch folder that cannot be read."""

from __future__ import annotations


class PatchFolderError(ValueError):
    """The folder cannot be read or stitched; the message says why and what to do."""
