"""One job runner for every long-running widget action (clustering, k scores, export, ...).

A job is a progress generator from the core (it yields progress, returns the result).
:class:`JobRunner` runs it in a napari ``thread_worker``:

* progress goes to the widget's progress bar (a fraction in [0, 1], or an object with
  ``done`` and ``total`` such as :class:`~napari_patchwork.export.ExportProgress`);
* the widget's run buttons are disabled while it runs, its *Cancel* button enabled;
* *Cancel* stops the job at its next yield (``worker.quit()``) and **closes** the
  generator in the worker thread (a direct connection to ``worker.finished``), so the
  core's ``finally`` blocks release files, thread pools and journals before the widget
  is idle again (the worker itself leaves a stopped generator suspended);
* removing a layer the job reads from the viewer stops it the same way (its result
  would have no layer to go with); closing the viewer removes every layer first, so
  a job stops as soon as the viewer starts closing;
* when the widget is deleted (the viewer closed) the job is stopped too and its
  callbacks are disconnected first (they would touch deleted Qt widgets);
* errors become a napari notification and the status line; an unexpected error other
  than a ``ValueError`` reaches the GUI as :class:`JobError`;
* work that must happen in the GUI thread after the job (adding layers) can be cut
  into turns: when ``on_done`` returns a generator, the runner runs it one step per
  turn of the event loop (each ``yield`` lets the viewer paint and take input), and
  the job counts as running until the generator is exhausted.
"""

from collections.abc import Callable, Generator, Sequence
from typing import Any, Optional, Union

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer


class JobError(Exception):
    """A job that cannot start (one is running) or failed unexpectedly in its thread."""


def progress_value(step: Any) -> tuple[int, int]:
    """``(value, maximum)`` for a progress bar from a yielded progress step."""
    if hasattr(step, "done") and hasattr(step, "total"):
        return int(step.done), max(int(step.total), 1)
    return round(1000 * min(max(float(step), 0.0), 1.0)), 1000


def _worker_steps(steps: Generator) -> Generator:
    """The worker's generator: the job's steps, a RuntimeError carried out as JobError
    (the worker takes a RuntimeError for a deleted worker: it would only warn)."""
    try:
        return (yield from steps)
    except RuntimeError as err:
        raise JobError(f"{type(err).__name__}: {err}") from err


class JobRunner:
    """Runs one job at a time for a widget (a magicgui ``Container``).

    ``title`` starts the notifications ("Export", "Cluster segmentation"...);
    ``busy`` are the widgets disabled while a job runs (the run buttons);
    ``on_idle`` is called (in the GUI thread) after every job, e.g. to re-enable a
    button that depends on the result.
    """

    def __init__(
        self,
        widget: Any,
        *,
        title: str,
        progress: Any,
        status: Any,
        cancel_button: Any,
        busy: Sequence[Any] = (),
        on_idle: Optional[Callable[[], None]] = None,
        viewer: Any = None,
    ):
        self.title = title
        self.progress = progress
        self.status = status
        self.cancel_button = cancel_button
        self.busy = list(busy)
        self.on_idle = on_idle
        self.worker = None
        self.last_step: Any = None
        self._callbacks: list = []  # (signal, slot) pairs of the running worker
        self._inputs: list = []  # the layers the running job reads
        self._stop_reason: Optional[str] = None
        self._finishing: Optional[Generator] = None  # on_done's GUI steps, one per turn
        self._layer_events = None if viewer is None else viewer.layers.events.removed
        self.cancel_button.enabled = False
        self.cancel_button.changed.connect(self.cancel)
        widget.native.destroyed.connect(self.close)

    @property
    def running(self) -> bool:
        """A job runs, or its GUI steps after it (see the module) are not all done."""
        return self.worker is not None or self._finishing is not None

    def start(
        self,
        steps: Generator,
        on_done: Callable[[Any], None],
        *,
        message: str,
        cancelled: Union[str, Callable[[Any], str]] = "cancelled; nothing was changed.",
        describe: Optional[Callable[[Any], str]] = None,
        inputs: Sequence[Any] = (),
    ):
        """Run the progress generator ``steps``; ``on_done(result)`` in the GUI thread.

        ``message`` is the status while it runs, ``describe(step)`` (optional) the status
        after each step; ``cancelled`` the status after a cancel (or a function of the
        last step). Removing one of the layers ``inputs`` from the viewer (the runner
        was given) cancels the job. Returns the worker. Raises :class:`JobError` if a job is running
        (``steps`` is then closed unstarted).
        """
        if self.running:
            steps.close()
            raise JobError("a job is already running; wait for it or cancel it.")
        self.last_step = None
        self._stop_reason = None
        worker = thread_worker(_worker_steps, start_thread=False, ignore_errors=True)(steps)
        # first, and in the worker thread: the job's cleanup runs before anyone hears
        # that the worker finished (also when the widget is gone)
        worker.finished.connect(steps.close, Qt.ConnectionType.DirectConnection)

        def on_progress(step: Any) -> None:
            self.last_step = step
            value, maximum = progress_value(step)
            if self.progress.max != maximum:
                self.progress.value = 0  # a maximum below the value would be refused
                self.progress.max = maximum
            self.progress.value = value
            if describe is not None:
                self.status.value = describe(step)

        def on_returned(result: Any) -> None:
            self.progress.value = self.progress.max
            finishing = on_done(result)
            if isinstance(finishing, Generator):
                self._finishing = finishing
                QTimer.singleShot(0, self._finish_step)

        def on_aborted() -> None:
            text = cancelled(self.last_step) if callable(cancelled) else cancelled
            if self._stop_reason is not None:
                text = f"{self._stop_reason}: {text}"
            self.status.value = text
            show_info(f"{self.title}: {text}")

        self._callbacks = [
            (worker.yielded, on_progress),
            (worker.returned, on_returned),
            (worker.errored, self.report_error),
            (worker.aborted, on_aborted),
            (worker.finished, self._on_finished),
        ]
        for signal, slot in self._callbacks:
            signal.connect(slot)
        self.worker = worker
        self._watch([layer for layer in inputs if layer is not None])
        for button in self.busy:
            button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self.status.value = message
        worker.start()
        return worker

    def cancel(self, _value: Any = None) -> None:
        """Stop the running job at its next progress step (its generator is then closed)."""
        if self.worker is not None and not self.worker.abort_requested:
            self.status.value = "cancelling..."
            self.worker.quit()

    def close(self, _object: Any = None) -> None:
        """The widget is gone (e.g. the viewer closed): drop the job's callbacks, stop it."""
        if self._finishing is not None:
            self._finishing.close()
            self._finishing = None
        if self.worker is not None:
            for signal, slot in self._callbacks:
                signal.disconnect(slot)
            self._callbacks = []
            self._watch([])
            self.worker.quit()
            self.worker = None

    def _watch(self, layers: list) -> None:
        """Cancel the running job when one of ``layers`` leaves the viewer ([] = stop)."""
        if self._layer_events is None:
            return
        if self._inputs:
            self._layer_events.disconnect(self._on_layer_removed)
        self._inputs = layers
        if layers:
            self._layer_events.connect(self._on_layer_removed)

    def _on_layer_removed(self, event: Any) -> None:
        if any(event.value is layer for layer in self._inputs) and self.worker is not None:
            self._stop_reason = f"layer '{event.value.name}' was removed"
            self.cancel()

    def report_error(self, err: BaseException) -> None:
        """An error as the status line and a notification (a ValueError's message says
        what to change)."""
        self.status.value = f"error: {err}"
        show_error(f"{self.title}: {err}")

    def _finish_step(self) -> None:
        """One GUI step of the finished job; the next one in the next turn of the loop."""
        if self._finishing is None:  # closed meanwhile
            return
        try:
            next(self._finishing)
        except StopIteration:
            self._finishing = None
        except Exception as err:  # noqa: BLE001 - the job must end; the error is shown
            self._finishing = None
            if not isinstance(err, (ValueError, JobError)):
                err = JobError(f"{type(err).__name__}: {err}")
            self.report_error(err)
        if self._finishing is not None:
            QTimer.singleShot(0, self._finish_step)
        elif self.worker is None:
            self._on_idle()

    def _on_finished(self) -> None:
        self._watch([])
        self.worker = None
        self._callbacks = []
        if self._finishing is None:
            self._on_idle()

    def _on_idle(self) -> None:
        for button in self.busy:
            button.enabled = True
        self.cancel_button.enabled = False
        if self.on_idle is not None:
            self.on_idle()
