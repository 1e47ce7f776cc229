"""Request records: what the router saw of every request it proxied.

The router calls :meth:`RequestRecorder.record` once per request, on its event loop, so
recording does as little as it can there: it updates the route's counters and latency
histogram, keeps the record in a bounded ring of recent requests and appends it to a
pending list. A daemon thread turns pending records into JSON lines every
:data:`FLUSH_INTERVAL` seconds and appends them, in one write, to
``$PAVEDROAD_HOME/runtime/requests/requests.jsonl``; the file is rotated by size
(``requests.jsonl.1`` is the newest rotated one). Writers on one host (several server
processes) take an exclusive lock around rotation and append.

Each line is one request::

    {"time": "2025-01-01T12:00:00.123456Z", "environment": "dev", "component": "orders",
     "method": "GET", "path": "/orders/42", "status": 200, "latency_ms": 1.84,
     "upstream": "127.0.0.1:20001"}

``upstream`` is null when no upstream was reached (no route, or none answering); the
path never carries the query string, which may hold credentials.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pavedroad.core.paths import file_lock

log = logging.getLogger("pavedroad.router.requests")

FLUSH_INTERVAL = 0.5
"""Seconds between two appends to the request log."""

LOG_NAME = "requests.jsonl"
MAX_PATH = 300  # characters of a path kept in a record

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds (seconds) of the latency histogram each route keeps; one more bucket
counts everything slower."""


_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_CLASS_OF = {status: f"{status // 100}xx" for status in range(100, 600)}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    environment: str
    component: str
    method: str
    path: str
    status: int
    latency: float  # seconds, from the request reaching the router to its last byte sent
    time: float  # when it ended, seconds since the epoch
    upstream: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "time": datetime.fromtimestamp(self.time, UTC).isoformat().replace("+00:00", "Z"),
            "environment": self.environment,
            "component": self.component,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "latency_ms": round(self.latency * 1000, 3),
            "upstream": self.upstream,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RequestRecord:
        when = datetime.fromisoformat(str(data["time"]).replace("Z", "+00:00"))
        upstream = data.get("upstream")
        return cls(
            environment=str(data["environment"]),
            component=str(data["component"]),
            method=str(data["method"]),
            path=str(data.get("path", "")),
            status=int(data["status"]),  # type: ignore[call-overload]
            latency=float(data["latency_ms"]) / 1000,  # type: ignore[arg-type]
            time=when.timestamp(),
            upstream=None if upstream is None else str(upstream),
        )


@dataclass(slots=True)
class RouteStats:
    """Counters of one route since this process started."""

    requests: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_CLASSES, 0))
    latency_sum: float = 0.0
    latency_max: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    @property
    def errors(self) -> int:
        """Responses with a 5xx status (the router's own 502/504 included)."""
        return self.by_class["5xx"]

    @property
    def mean_latency(self) -> float:
        return self.latency_sum / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float:
        """An estimate of the ``q`` quantile of latency (seconds): the upper bound of
        the histogram bucket it falls in (the maximum seen, for the last bucket)."""
        if not self.requests:
            return 0.0
        rank = q * self.requests
        seen = 0
        for index, count in enumerate(self.buckets):
            seen += count
            if seen >= rank and count:
                return (
                    min(LATENCY_BUCKETS[index], self.latency_max)
                    if index < len(LATENCY_BUCKETS)
                    else self.latency_max
                )
        return self.latency_max

    def copy(self) -> RouteStats:
        return RouteStats(
            self.requests,
            dict(self.by_class),
            self.latency_sum,
            self.latency_max,
            list(self.buckets),
        )


class RequestRecorder:
    """Per-route counters, the recent requests, and the request log under ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        recent: int = 1000,
        max_file_bytes: int = 50 * 1024 * 1024,
        files_kept: int = 5,
    ) -> None:
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        self.files_kept = files_kept
        self._recent: deque[RequestRecord] = deque(maxlen=recent)
        self._stats: dict[tuple[str, str], RouteStats] = {}
        self._pending: deque[RequestRecord] = deque()  # appended here, taken by the flusher
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._write_lock = threading.Lock()

    def record(
        self,
        environment: str,
        component: str,
        method: str,
        path: str,
        status: int,
        latency: float,
        upstream: str | None,
    ) -> None:
        """Count one request; cheap, and never raises on the caller."""
        record = RequestRecord(
            environment, component, method, path[:MAX_PATH], status, latency, time.time(), upstream
        )
        key = (environment, component)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = RouteStats()
        stats.requests += 1
        stats.by_class[_CLASS_OF.get(status, "5xx")] += 1
        stats.latency_sum += latency
        if latency > stats.latency_max:
            stats.latency_max = latency
        stats.buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
        self._recent.append(record)
        self._pending.append(record)
        if self._flusher is None:
            self._start_flusher()

    def recent(
        self, limit: int = 100, environment: str | None = None, component: str | None = None
    ) -> list[RequestRecord]:
        """The latest requests first, of one environment and/or component if given."""
        found: list[RequestRecord] = []
        for record in reversed(list(self._recent)):
            if environment is not None and record.environment != environment:
                continue
            if component is not None and record.component != component:
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found

    def stats(self) -> dict[tuple[str, str], RouteStats]:
        """A copy of every route's counters, by (environment, component)."""
        return {key: stats.copy() for key, stats in list(self._stats.items())}

    def flush(self) -> None:
        """Append the pending records to the request log now."""
        with self._write_lock:
            # deque.popleft and append are atomic: the event loop keeps appending meanwhile.
            pending = [self._pending.popleft() for _ in range(len(self._pending))]
            if pending:
                self._append(pending)

    def close(self) -> None:
        """Stop the flushing thread, after a last flush."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(5)
            self._flusher = None
        self.flush()

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_NAME

    def _start_flusher(self) -> None:
        self._stop.clear()
        self._flusher = threading.Thread(
            target=self._flush_loop, name="pavedroad-request-log", daemon=True
        )
        self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            try:
                self.flush()
            except Exception:  # a full disk must not stop the router; try again later
                log.exception("could not append to the request log in %s", self.directory)

    def _append(self, records: list[RequestRecord]) -> None:
        data = "".join(
            json.dumps(r.to_json(), separators=(",", ":")) + "\n" for r in records
        ).encode()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with file_lock(self.directory / ".lock"):
            self._rotate_if_full(len(data))
            descriptor = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, data)
            finally:
                os.close(descriptor)

    def _rotate_if_full(self, adding: int) -> None:
        try:
            size = self.log_path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + adding <= self.max_file_bytes:
            return
        oldest = self.directory / f"{LOG_NAME}.{self.files_kept - 1}"
        with contextlib.suppress(FileNotFoundError):
            oldest.unlink()
        for number in range(self.files_kept - 2, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(
                    self.directory / f"{LOG_NAME}.{number}",
                    self.directory / f"{LOG_NAME}.{number + 1}",
                )
        if self.files_kept > 1:
            os.replace(self.log_path, self.directory / f"{LOG_NAME}.1")
        else:
            self.log_path.unlink()


def read_request_log(directory: Path) -> Iterator[RequestRecord]:
    """Every request in the log under ``directory``, oldest first (rotated files
    first); lines that cannot be read (one cut short by a crash) are skipped."""
    rotated = sorted(
        (p for p in directory.glob(f"{LOG_NAME}.*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    for path in [*rotated, directory / LOG_NAME]:
        # A file rotated away meanwhile is skipped.
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
            for line in handle:
                try:
                    yield RequestRecord.from_json(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    continue
