"""Reconcilers run on their interval, and at once when an event they wait for happens
in this process."""

from __future__ import annotations

import threading
import time

from pavedroad.core.background import BackgroundRunner, Reconciler, wake
from pavedroad.core.events import Event
from pavedroad.core.plugins import plugin_manager
from pavedroad.core.timeutil import utcnow


def test_an_event_makes_a_waiting_reconciler_run_at_once() -> None:
    runs: list[float] = []
    other: list[float] = []
    ran = threading.Event()

    def record() -> None:
        runs.append(time.monotonic())
        ran.set()

    runner = BackgroundRunner(
        [
            Reconciler("pushes", record, interval_seconds=60.0, wake_on=("GitPushed",)),
            Reconciler("other", lambda: other.append(1), interval_seconds=60.0),
        ]
    )
    runner.start()
    try:
        assert ran.wait(5)
        ran.clear()
        wake("SecretRotated")  # not one it waits for
        assert not ran.wait(0.3)
        began = time.monotonic()
        # as the platform does after recording an event
        plugin_manager().hook.pavedroad_event(
            event=Event("1", utcnow(), "GitPushed", "x", {}), db=None
        )
        assert ran.wait(2), "the event did not wake the reconciler"
        assert runs[-1] - began < 1.0
        assert len(runs) == 2 and other == [1]  # the other one keeps its interval
    finally:
        runner.stop()
