"""The export's error."""


class ExportError(ValueError):
    """The export cannot run as asked; the message says what to change."""
