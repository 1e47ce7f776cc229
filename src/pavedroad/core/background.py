"""Background processing: reconcilers that run on a short interval, in a thread.

Each reconciler is idempotent and claims its work with leases in the database, so any
number of processes (``pave up``, ``pave worker`` replicas) can run them at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("pavedroad.background")


@dataclass
class Reconciler:
    name: str
    run: Callable[[], object]
    interval_seconds: float = 2.0


class BackgroundRunner:
    """Runs reconcilers in one daemon thread until stopped."""

    def __init__(self, reconcilers: list[Reconciler]) -> None:
        self.reconcilers = reconcilers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pavedroad-background", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
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
            self._stop.wait(max(0.05, soonest - time.monotonic()))
