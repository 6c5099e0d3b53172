"""The widgets' job runner on a real headless viewer, with small jobs of its own."""

import time

import numpy as np
import pytest
from magicgui.widgets import Container, Label, ProgressBar, PushButton

from napari_patchwork._widgets._jobs import JobError, JobRunner, progress_value


class Job:
    """A progress generator that records how far it got and whether it was closed."""

    def __init__(self, n_steps=5, delay=0.0, fail_at=None, error=RuntimeError):
        self.n_steps, self.delay, self.fail_at, self.error = n_steps, delay, fail_at, error
        self.advanced, self.closed = 0, False

    def __call__(self):
        try:
            for i in range(self.n_steps):
                if i == self.fail_at:
                    raise self.error("disk full")
                time.sleep(self.delay)
                self.advanced += 1
                yield (i + 1) / self.n_steps
            return "result"
        finally:
            self.closed = True


@pytest.fixture
def runner_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = Container()
    run, cancel = PushButton(text="Run"), PushButton(text="Cancel")
    widget.extend([run, cancel, ProgressBar(max=1), Label()])
    idle = []
    runner = JobRunner(
        widget,
        title="Test job",
        progress=widget[2],
        status=widget[3],
        cancel_button=cancel,
        busy=[run],
        on_idle=lambda: idle.append(True),
        viewer=viewer,
    )
    viewer.window.add_dock_widget(widget)
    return viewer, widget, runner, idle


def test_progress_result_and_buttons(runner_widget, qtbot):
    _viewer, widget, runner, idle = runner_widget
    run, cancel, progress, status = widget
    results = []
    job = Job()
    runner.start(job(), results.append, message="working...")
    assert runner.running and not run.enabled and cancel.enabled
    assert status.value == "working..."
    with pytest.raises(JobError, match="already running"):
        runner.start(Job()(), results.append, message="again")
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert results == ["result"] and job.closed and idle == [True]
    assert run.enabled and not cancel.enabled
    assert progress.value == progress.max == 1000


def test_cancel_stops_at_the_next_step_and_closes_the_job(runner_widget, qtbot, notifications):
    _viewer, widget, runner, _idle = runner_widget
    run, cancel, _progress, status = widget
    job, results = Job(n_steps=50, delay=0.05), []
    runner.start(job(), results.append, message="working...", cancelled=lambda s: f"at {s}")
    runner.worker.yielded.connect(lambda _step: cancel.native.click())
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert job.closed and job.advanced <= 3 and results == []  # closed before idle
    assert status.value.startswith("at 0.0") and run.enabled
    assert any("Test job: at" in str(n.message) for n in notifications)


def test_errors_become_notifications(runner_widget, qtbot, notifications):
    _viewer, widget, runner, idle = runner_widget
    for error in (RuntimeError, ValueError):  # RuntimeError: carried out as JobError
        job = Job(fail_at=2, error=error)
        runner.start(job(), lambda _result: None, message="working...")
        qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
        assert job.closed and widget[3].value.startswith("error:")
        assert "disk full" in str(notifications[-1].message)
        assert str(notifications[-1].message).startswith("Test job: ")
    assert idle == [True, True] and widget[0].enabled


def test_closing_the_viewer_stops_and_closes_the_job(runner_widget, qtbot):
    viewer, _widget, runner, idle = runner_widget
    job = Job(n_steps=50, delay=0.05)
    worker = runner.start(job(), lambda _result: None, message="working...")
    qtbot.waitUntil(lambda: job.advanced >= 2, timeout=10_000)
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    qtbot.waitUntil(lambda: job.closed, timeout=5_000)
    assert job.advanced <= 4 and idle == []  # the widget's callbacks were dropped


def test_removing_an_input_layer_cancels_the_job(runner_widget, qtbot):
    viewer, widget, runner, _idle = runner_widget
    image, other = viewer.add_image(np.zeros((8, 8)), name="in"), viewer.add_image(np.zeros((4, 4)))
    job = Job(n_steps=50, delay=0.05)
    runner.start(job(), lambda _result: None, message="working...", inputs=[image, None])
    qtbot.waitUntil(lambda: job.advanced >= 1, timeout=10_000)
    viewer.layers.remove(other)  # not an input: the job goes on
    qtbot.wait(100)
    assert runner.running
    viewer.layers.remove(image)
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert job.closed and job.advanced < 50
    assert widget[3].value.startswith("layer 'in' was removed: cancelled")


@pytest.mark.parametrize(
    "step, expected",
    [(0.25, (250, 1000)), (1.5, (1000, 1000)), (-1, (0, 1000))],
)
def test_progress_value_of_fractions(step, expected):
    assert progress_value(step) == expected


def test_progress_value_of_done_and_total():
    from napari_patchwork.export import ExportProgress

    assert progress_value(ExportProgress(done=3, total=7)) == (3, 7)
    assert progress_value(ExportProgress(done=0, total=0)) == (0, 1)


def test_gui_steps_after_the_job_run_one_per_turn_and_errors_end_the_job(
    runner_widget, qtbot, notifications
):
    from qtpy.QtCore import QTimer

    _viewer, widget, runner, idle = runner_widget
    run = widget[0]
    ticks, seen = [0], []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))  # one per loop turn
    timer.start(0)

    def gui_steps(result, fail=False):
        for step in range(3):
            seen.append((result, step, ticks[0]))
            if fail and step == 1:
                raise KeyError("layer gone")
            yield

    runner.start(Job(n_steps=2)(), gui_steps, message="working...")
    qtbot.waitUntil(lambda: len(seen) == 3 and not runner.running, timeout=10_000)
    assert [step for _result, step, _tick in seen] == [0, 1, 2]
    assert seen[0][2] < seen[1][2] < seen[2][2]  # the event loop turned between the steps
    assert run.enabled and idle == [True]
    seen.clear()
    runner.start(Job(n_steps=2)(), lambda r: gui_steps(r, fail=True), message="working...")
    assert runner.running and not run.enabled
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    timer.stop()
    assert len(seen) == 2 and run.enabled and idle == [True, True]  # no step after the error
    assert "KeyError" in str(notifications[-1].message) and widget[3].value.startswith("error:")
