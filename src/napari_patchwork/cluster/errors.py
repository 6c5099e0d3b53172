"""The one error type of clustering."""

from __future__ import annotations


class ClusterError(ValueError):
    """Bad clustering input or parameters; the message says what to change."""
