"""What the benchmarks share: a demo home with bob's token, free ports, waiting, and
the median / p90 / max they print. (Run as ``python bench/<name>.py``, so this folder
is on the import path.)"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo" / "catalog-info.yaml"

T = TypeVar("T")


def prepare(home: Path) -> str:
    """The demo organisation and bob's token (bob is a checkout-team member), made
    before the server starts."""
    from pavedroad.app import create_app
    from pavedroad.identity.policy import Role
    from pavedroad.settings import Settings

    app = create_app(Settings(home=home, database_url=f"sqlite:///{home / 'pavedroad.db'}"))
    try:
        app.state.catalog.register_location("file", str(DEMO))
        app.state.identity.create_account("bob", Role.member)
        return str(app.state.identity.create_token("bob", "bench", ["read", "write"])[1])
    finally:
        app.state.db.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, found: Callable[[], T | None], timeout: float, poll: float) -> T:
    """``found()`` once it is not None, looking every ``poll`` seconds; the benchmark
    ends saying what it waited for after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = found()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def parse_time(text: str | None) -> datetime:
    if not text:
        raise SystemExit("a timestamp the benchmark needs is missing")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_between(start: datetime | str | None, end: datetime | str | None) -> float:
    first = start if isinstance(start, datetime) else parse_time(start)
    last = end if isinstance(end, datetime) else parse_time(end)
    return (last - first).total_seconds()


@dataclass(frozen=True)
class Summary:
    count: int
    median: float
    p90: float
    maximum: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        ordered = sorted(values)
        if not ordered:
            return cls(0, float("nan"), float("nan"), float("nan"))
        p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
        return cls(len(ordered), statistics.median(ordered), p90, ordered[-1])

    def seconds(self, digits: int = 3) -> str:
        return (
            f"median {self.median:.{digits}f} s   p90 {self.p90:.{digits}f} s   "
            f"max {self.maximum:.{digits}f} s"
        )

    def milliseconds(self) -> str:
        return (
            f"median {self.median * 1000:.1f} ms   p90 {self.p90 * 1000:.1f} ms   "
            f"max {self.maximum * 1000:.1f} ms"
        )
