"""A job's log as the run page shows it: per step, with the colours its programs printed.

Log chunks (:class:`~pavedroad.pipelines.models.LogChunkRow`) become :class:`Segment`
runs of text with classes, which the template writes as spans: SGR escape codes (bold,
the 16 foreground colours, resets) become classes, other escape sequences are dropped,
every line starts with the time of the chunk it arrived in, and the platform's own
``##[error]`` / ``##[notice]`` lines are marked. Nothing from a log is ever HTML.
``portal/static/pipelines.js`` does the same for the text that streams in later, from
the state the page ends in (:meth:`AnsiRenderer.state`), so both must change together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from pavedroad.core.timeutil import as_utc, utcnow
from pavedroad.pipelines.models import FINISHED, JobRow, LogChunkRow, StepRow
from pavedroad.pipelines.runs import PipelineService
from pavedroad.pipelines.steplog import JOB_LOG_INDEX

MAX_LOG_CHARACTERS = 2 * 1024 * 1024  # rendered into the page; the rest streams or downloads


def duration_text(start: datetime | None, end: datetime | None) -> str:
    """``4.2 s``, ``38 s``, ``2 min 5 s``, ``1 h 3 min``; up to now while it runs."""
    if start is None:
        return ""
    seconds = max(0.0, (as_utc(end or utcnow()) - as_utc(start)).total_seconds())
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# CSI sequences (ESC [ parameters final), of which SGR ("m") sets colours; OSC (window
# titles, links), character-set choices (tput's ESC ( B) and the one-letter ones are
# dropped.
_ESCAPE = re.compile(
    r"\x1b(?:\[([0-9;?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78DEHMc])"
)
_MARKS = (("##[error]", "error"), ("##[warning]", "warning"), ("##[notice]", "notice"))
_NEWLINES = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Segment:
    """A run of log text with the classes it shows with (``""``: plain)."""

    text: str
    classes: str = ""


@dataclass
class AnsiRenderer:
    """Turns a step's log, chunk by chunk, into :class:`Segment` runs: SGR codes (bold,
    the 16 foreground colours, resets) become classes, other escape sequences are
    dropped, every line starts with the time of the chunk it arrived in, and the
    platform's own ``##[error]`` / ``##[notice]`` lines are marked. The state carries
    over from chunk to chunk, as colours do in a terminal; pipelines.js continues from
    it (:meth:`state`)."""

    bold: bool = False
    colour: int | None = None
    line_start: bool = True
    line_class: str = ""
    segments: list[Segment] = field(default_factory=list)
    _pending: str = ""

    def feed(self, text: str, time: str) -> None:
        text = self._pending + text
        self._pending = ""
        matches = list(_ESCAPE.finditer(text))
        escape = text.rfind("\x1b")
        partial = not matches or matches[-1].end() <= escape  # it starts no whole sequence
        if escape != -1 and len(text) - escape < 16 and partial:
            text, self._pending = text[:escape], text[escape:]  # the rest is in the next chunk
        position = 0
        for match in matches:
            self._text(text[position : match.start()], time)
            if match.group(2) == "m":
                self._sgr(match.group(1))
            position = match.end()
        self._text(text[position:], time)

    def state(self) -> dict[str, str]:
        return {
            "bold": "1" if self.bold else "",
            "colour": str(self.colour or ""),
            "line-start": "1" if self.line_start else "",
            "line-class": self.line_class,
        }

    def _sgr(self, params: str) -> None:
        for part in params.split(";") if params else ["0"]:
            code = int(part) if part.isdigit() else -1
            if code == 0:
                self.bold, self.colour = False, None
            elif code == 1:
                self.bold = True
            elif code == 22:
                self.bold = False
            elif 30 <= code <= 37 or 90 <= code <= 97:
                self.colour = code
            elif code == 39:
                self.colour = None

    def _classes(self) -> str:
        names = [self.line_class] if self.line_class else []
        if self.bold:
            names.append("ansi-bold")
        if self.colour is not None:
            names.append(f"ansi-{self.colour}")
        return " ".join(names)

    def _text(self, text: str, time: str) -> None:
        text = text.replace("\x1b", "")  # a lone escape that starts no sequence
        for index, piece in enumerate(_NEWLINES.split(text)):
            if index:
                self.segments.append(Segment("\n"))
                self.line_start, self.line_class = True, ""
            if not piece:
                continue
            if self.line_start:
                self.segments.append(Segment(time, "log-time"))
                self.segments.append(Segment(" "))
                self.line_start = False
                for marker, kind in _MARKS:
                    if piece.startswith(marker):
                        self.line_class = f"log-{kind}"
                        self.segments.append(Segment(kind, f"log-mark log-mark-{kind}"))
                        self.segments.append(Segment(" "))
                        piece = piece[len(marker) :]
                        break
            if piece:
                self.segments.append(Segment(piece, self._classes()))


@dataclass
class LogSection:
    """One step's part of a job's log (or the job's own lines before and after)."""

    key: str  # "setup", "step-<index>", "complete"
    index: int
    title: str
    status: str | None = None
    duration: str = ""
    exit_code: int | None = None
    truncated: bool = False
    log_bytes: int = 0
    renderer: AnsiRenderer = field(default_factory=AnsiRenderer)

    @property
    def segments(self) -> list[Segment]:
        return self.renderer.segments

    @property
    def has_log(self) -> bool:
        return bool(self.renderer.segments)

    @property
    def open(self) -> bool:
        return self.status in ("running", "failed") or (self.key == "complete" and self.has_log)


@dataclass
class JobLog:
    sections: list[LogSection]
    last_chunk: int
    omitted: bool  # the page holds only the start of a very long log


def job_log(service: PipelineService, job: JobRow, steps: Sequence[StepRow]) -> JobLog:
    setup = LogSection("setup", JOB_LOG_INDEX, "Set up job")
    complete = LogSection("complete", JOB_LOG_INDEX, "Complete job")
    ended = job.status in FINISHED
    by_index = {
        step.index: LogSection(
            f"step-{step.index}",
            step.index,
            step.name,
            # a job cancelled or skipped before it started leaves its steps "waiting"
            "not-run" if ended and step.status == "waiting" else step.status,
            duration_text(step.started_at, step.finished_at)
            if step.status not in ("waiting", "skipped") and step.started_at
            else "",
            step.exit_code,
            step.truncated,
            step.log_bytes,
        )
        for step in steps
    }
    shown = 0
    omitted = False
    with service.db.read_session() as session:
        newest = session.scalar(
            select(func.max(LogChunkRow.id)).where(LogChunkRow.job_id == job.id)
        )
        last = int(newest or 0)
        # Up to the last chunk now: the live log resumes after it, so none shows twice.
        chunks = session.execute(
            select(LogChunkRow.id, LogChunkRow.step_index, LogChunkRow.at, LogChunkRow.text)
            .where(LogChunkRow.job_id == job.id, LogChunkRow.id <= last)
            .order_by(LogChunkRow.id)
        )
        for _id, index, at, text in chunks:
            if shown + len(text) > MAX_LOG_CHARACTERS:
                omitted = True
                break
            shown += len(text)
            time = as_utc(at).strftime("%H:%M:%S")
            if index == JOB_LOG_INDEX:
                section = complete if any(s.has_log for s in by_index.values()) else setup
            else:
                section = by_index.get(index) or by_index.setdefault(
                    index, LogSection(f"step-{index}", index, f"Step {index + 1}")
                )
            section.renderer.feed(text, time)
    ordered = [setup, *(by_index[index] for index in sorted(by_index)), complete]
    return JobLog(ordered, last, omitted)
