"""Fixtures shared by the widget tests."""

import pytest


@pytest.fixture
def notifications():
    """napari notifications emitted during the test (errors included), in order."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)
