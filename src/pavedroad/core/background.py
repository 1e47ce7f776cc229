"""Background processing: reconcilers that run on a short interval, in a thread.

A reconciler may also name platform events that make it due at once (``wake_on``): the
pipeline triggers run as soon as this process records a push, not at their next round.

Each reconciler is idempotent and claims its work with leases in the database, so any
number of processes (``pave up``, ``pave worker`` replicas) can run them at once.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pavedroad.core.hookspecs import hookimpl

log = logging.getLogger("pavedroad.background")


@dataclass
class Reconciler:
    name: str
    run: Callable[[], object]
    interval_seconds: float = 2.0
    wake_on: tuple[str, ...] = ()  # event types that make it due at once


_RUNNERS: weakref.WeakSet[BackgroundRunner] = weakref.WeakSet()


def wake(event_type: str) -> None:
    """Make every reconciler of this process that waits for ``event_type`` due now."""
    for runner in list(_RUNNERS):
        runner.wake(event_type)


@hookimpl
def pavedroad_event(event: Any, db: Any) -> None:
    wake(str(getattr(event, "type", "")))


class BackgroundRunner:
    """Runs reconcilers in one daemon thread until stopped."""

    def __init__(self, reconcilers: list[Reconciler]) -> None:
        self.reconcilers = reconcilers
        self._stop = threading.Event()
        self._nudge = threading.Event()
        self._woken: set[int] = set()
        self._thread: threading.Thread | None = None
        _RUNNERS.add(self)

    def wake(self, event_type: str) -> None:
        woken = {id(r) for r in self.reconcilers if event_type in r.wake_on}
        if woken:
            self._woken |= woken
            self._nudge.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pavedroad-background", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._nudge.set()
        if self._thread:
            self._thread.join(timeout)

    def run_once(self) -> None:
        for reconciler in self.reconcilers:
            self._run(reconciler)

    @staticmethod
    def _run(reconciler: Reconciler) -> None:
        try:
            reconciler.run()
        except Exception:  # one failing reconciler must not stop the others
            log.exception("background task %s failed", reconciler.name)

    def _loop(self) -> None:
        """Each reconciler on its own interval; the loop wakes for the soonest one due."""
        due = {id(r): 0.0 for r in self.reconcilers}
        while not self._stop.is_set():
            now = time.monotonic()
            for reconciler in self.reconcilers:
                if now >= due[id(reconciler)]:
                    self._run(reconciler)
                    due[id(reconciler)] = time.monotonic() + reconciler.interval_seconds
            soonest = min(due.values(), default=time.monotonic() + 2.0)
            self._nudge.wait(max(0.05, soonest - time.monotonic()))
            self._nudge.clear()
            woken, self._woken = self._woken, set()
            for key in woken & due.keys():
                due[key] = 0.0
