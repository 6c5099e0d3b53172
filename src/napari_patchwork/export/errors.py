"""The export's error."""


class ExportError(ValueError):
    """The export cannot run as asked; the message says what to change."""


class FolderInUseError(ExportError):
    """The output folder holds other files or another export, and overwriting was not asked.

    ``folder`` is the folder; ``advice`` the end of the message that says what to do
    from Python (callers with other controls, e.g. napari's Save dialog, replace it).
    """

    def __init__(self, folder, problem: str, advice: str):
        super().__init__(f"{folder} {problem}; {advice}")
        self.folder = folder
        self.problem = problem
