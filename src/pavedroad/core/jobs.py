"""The background job queue: huey, on SQLite in ``PAVEDROAD_HOME`` or on Redis at scale.

A domain registers a handler by name (``queue.register("scaffolder.run", run_task)``)
and enqueues work by that name with JSON-able arguments. Who runs it is configuration:
``pave up`` consumes the queue in threads of its own process; at scale, ``pave worker``
processes on any number of machines consume a shared Redis queue
(``PAVEDROAD_QUEUE_URL=redis://...``).

The queue carries only identifiers: the work itself (a scaffolder task, a pipeline job)
is persisted in the database before it is enqueued, and each handler claims it there, so
a message delivered twice does no harm and a message lost with a crashed worker is found
again by the owning domain's reconciler.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from typing import Any

from huey import RedisHuey, SqliteHuey
from huey.api import Huey, TaskWrapper
from huey.consumer import Consumer

from pavedroad.core.errors import ProblemError
from pavedroad.settings import Settings

log = logging.getLogger("pavedroad.jobs")

POLL_SECONDS = 0.2
"""How long an idle consumer waits between looks at an empty SQLite queue (at most)."""


def worker_name() -> str:
    """``host:pid``: who claims work in the database, so it can be told gone later."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_gone(worker: str | None) -> bool:
    """Whether ``worker`` (a :func:`worker_name`) ran on this host and its process has
    ended. A worker on another host is never known gone from here: its heartbeat tells."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class JobQueue:
    """Named handlers on one huey instance. ``name`` separates queues that share the
    storage (the pipeline jobs of each ``runs-on`` label wait on a queue of their own)."""

    def __init__(self, settings: Settings, name: str = "pavedroad") -> None:
        self.settings = settings
        self.name = name
        self.huey: Huey = _huey_for(settings, name)
        self._tasks: dict[str, TaskWrapper] = {}

    @property
    def url(self) -> str:
        return self.settings.queue_url or f"sqlite:///{self.settings.home / 'queue.db'}"

    def register(self, name: str, handler: Callable[..., Any]) -> None:
        if name in self._tasks:
            raise ValueError(f"the job {name!r} is registered twice")
        self._tasks[name] = self.huey.task(name=name)(handler)

    def enqueue(self, name: str, *args: Any, delay: float | None = None) -> None:
        """Queue ``name(*args)``; ``delay`` seconds from now if given."""
        task = self._tasks[name]
        if delay:
            task.schedule(args=args, delay=delay)
        else:
            task(*args)

    def pending(self) -> int:
        return int(self.huey.pending_count())

    def consumer(self, workers: int) -> EmbeddedConsumer:
        return EmbeddedConsumer(
            self.huey,
            workers=workers,
            worker_type="thread",
            periodic=False,
            initial_delay=0.05,
            backoff=1.5,
            max_delay=POLL_SECONDS,
            scheduler_interval=1,
            check_worker_health=True,
        )


class QueueSettingsError(ProblemError):
    """``queue_url`` names a queue this platform cannot use."""

    status = 500
    title = "Invalid queue settings"
    type_slug = "invalid-queue-settings"


REDIS_SCHEMES = ("redis", "rediss", "unix")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,19}")


def _huey_for(settings: Settings, name: str) -> Huey:
    if settings.queue_url:
        return _redis_huey(settings.queue_url, name)
    settings.ensure_home()
    return SqliteHuey(
        name, filename=str(settings.home / "queue.db"), results=False, utc=True, timeout=30
    )


def _redis_huey(url: str, name: str) -> Huey:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        # the scheme only: the rest of a URL may hold a password
        shown = f"{scheme}://…" if _SCHEME.fullmatch(scheme) else "a value without a scheme"
        raise QueueSettingsError(
            "queue_url (PAVEDROAD_QUEUE_URL) must be a redis://, rediss:// or unix:// URL "
            f"(or unset for the embedded queue in PAVEDROAD_HOME), not {shown}"
        )
    try:
        import redis  # noqa: F401  (huey's Redis storage needs it)
    except ImportError:
        raise QueueSettingsError(
            "queue_url is a Redis URL, but the redis package is not installed: "
            "pip install 'pavedroad[redis]'"
        ) from None
    return RedisHuey(name, url=url, results=False, utc=True)


class EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """huey's consumer, run in threads inside a process that owns its own signals
    (uvicorn in ``pave up``, the worker loop in ``pave worker``)."""

    def _set_signal_handlers(self) -> None:
        pass  # the host process handles SIGINT/SIGTERM and calls stop()

    def stop_and_wait(self, timeout: float = 10.0) -> None:
        self.shutdown_timeout = timeout
        self.stop(graceful=True)
