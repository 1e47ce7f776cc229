"""Where pipeline jobs wait: one queue per ``runs-on`` label, and one for jobs without.

A job waits on the queue of its first label (:func:`pavedroad.pipelines.runs.queue_name`);
a process runs consumers for ``jobs-any`` and for each label in ``pipelines.labels``. A
worker claims a job in the database before it runs it, so a message delivered twice runs
nothing twice. The handler is told the labels of the queues this process consumes, so a
job that needs labels this worker lacks goes back to its queue for another.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from pavedroad.core.jobs import EmbeddedConsumer, JobQueue
from pavedroad.pipelines.runs import JOB, queue_name
from pavedroad.settings import Settings

# handler(job id, labels of the queues consumed here, or None before any consumer)
JobHandler = Callable[[str, Collection[str] | None], None]


class JobQueues:
    def __init__(self, settings: Settings, handler: JobHandler) -> None:
        self.settings = settings
        self.handler = handler
        self.labels: frozenset[str] | None = None  # set by consumers()
        self._queues: dict[str, JobQueue] = {}

    def __call__(self, name: str) -> JobQueue:
        """The queue ``name`` (``jobs-any``, ``jobs-<label>``), made on first use."""
        if name not in self._queues:
            queue = JobQueue(self.settings, name=f"pavedroad-{name}")
            queue.register(JOB, self._handle)
            self._queues[name] = queue
        return self._queues[name]

    def _handle(self, job_id: str) -> None:
        self.handler(job_id, self.labels)

    def names(self, labels: list[str]) -> list[str]:
        return [queue_name([])] + [queue_name([label]) for label in sorted(set(labels))]

    def consumers(self, labels: list[str], workers: int) -> list[EmbeddedConsumer]:
        """Consumers for the jobs this process takes: those without labels and those of
        each of its labels, ``workers`` threads each. The jobs they hand over are run
        only if they need no label beyond ``labels``."""
        self.labels = frozenset(labels)
        if workers <= 0:
            return []
        return [self(name).consumer(workers) for name in self.names(labels)]
