"""Writing one step's log: output masked, timestamped and stored in batches, up to a cap.

Output arrives as bytes; it is decoded as UTF-8 (bad bytes become U+FFFD), every form of
every secret is masked (:mod:`pavedroad.secrets.masking`), and the text is written as
:class:`LogChunkRow` rows, one every quarter of a second or 64 KiB, each stamped with
the time its first byte arrived. Past the cap, output is still counted but dropped, and
one notice line at the end says how much.
"""

from __future__ import annotations

import codecs
import logging
import time
from collections.abc import Callable

from pavedroad.core.db import Database
from pavedroad.core.timeutil import utcnow
from pavedroad.pipelines.models import LogChunkRow
from pavedroad.secrets.masking import Masker

log = logging.getLogger("pavedroad.pipelines")

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
FLUSH_SECONDS = 0.25
BATCH_CHARACTERS = 64 * 1024
JOB_LOG_INDEX = -1  # the job's own lines (setting up, cleaning up) use this step index


def notice(text: str) -> str:
    """A line from the platform, in the form GitHub's runner writes its own."""
    return f"##[notice]{text}"


def error_line(text: str) -> str:
    return f"##[error]{text}"


def describe_size(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


class StepLog:
    """The log of one step of one job (``step_index`` -1: the job's own lines)."""

    def __init__(
        self,
        db: Database,
        job_id: str,
        step_index: int,
        masker: Masker,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.job_id = job_id
        self.step_index = step_index
        self.max_bytes = max_bytes
        self.log_bytes = 0  # everything the step wrote, kept or not
        self._clock = clock
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._masking = masker.stream()
        self._pending: list[str] = []
        self._pending_size = 0
        self._first_at = utcnow()
        self._last_flush = clock()
        self._noticed = False
        self._at_line_start = True

    @property
    def truncated(self) -> bool:
        return self.log_bytes > self.max_bytes

    def write(self, data: bytes) -> None:
        """Output of the step's process, in the order it arrived."""
        kept = max(0, min(len(data), self.max_bytes - self.log_bytes))
        self.log_bytes += len(data)
        if kept:
            self._add(self._masking.feed(self._decoder.decode(data[:kept])))
        self.tick()

    def line(self, text: str) -> None:
        """A line of the platform's own (a notice, an error), after the output so far.

        Written between the step's output and at its ends: text held back for masking
        is written out first, so a secret split around the line would not be masked.
        """
        self._end_stream()
        self._add(self._masking.masker.mask(text.rstrip("\n")) + "\n")

    def _end_stream(self) -> None:
        """Write out what masking held back, and end the output's last line, so the
        platform's own line that follows starts a line of its own."""
        rest = self._masking.feed(self._decoder.decode(b"", final=True)) + self._masking.flush()
        if rest:
            self._add(rest if rest.endswith("\n") else rest + "\n")
        elif not self._at_line_start:
            self._add("\n")

    def tick(self) -> None:
        """Store what is pending when a batch is due."""
        if self._pending and (
            self._pending_size >= BATCH_CHARACTERS
            or self._clock() - self._last_flush >= FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        self._last_flush = self._clock()
        if not self._pending:
            return
        text = "".join(self._pending).replace("\x00", "\ufffd")  # PostgreSQL text has no NUL
        at = self._first_at
        self._pending, self._pending_size = [], 0
        pieces = [
            text[start : start + BATCH_CHARACTERS]
            for start in range(0, len(text), BATCH_CHARACTERS)
        ]
        try:
            with self.db.session() as session:
                session.add_all(
                    LogChunkRow(job_id=self.job_id, step_index=self.step_index, at=at, text=piece)
                    for piece in pieces
                )
        except Exception:  # a log the database refused must not stop the step
            log.exception("could not store a log chunk of job %s", self.job_id)

    def close(self) -> None:
        """Store everything, with the notice of how much was cut if the cap was reached."""
        self._end_stream()
        if self.truncated and not self._noticed:
            self._noticed = True
            dropped = self.log_bytes - self.max_bytes
            self._add(
                notice(
                    f"The step's output was cut at {describe_size(self.max_bytes)}: "
                    f"{describe_size(dropped)} ({dropped} bytes) more were not kept "
                    f"({describe_size(self.log_bytes)} in all)"
                )
                + "\n"
            )
        self.flush()

    def _add(self, text: str) -> None:
        if not text:
            return
        if not self._pending:
            self._first_at = utcnow()
        self._pending.append(text)
        self._pending_size += len(text)
        self._at_line_start = text.endswith("\n")
