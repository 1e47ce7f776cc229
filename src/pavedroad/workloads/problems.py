"""What is wrong with a Score workload, and where.

A :class:`Problem` has the same shape as a pipeline file's (line, column, path, message),
so the API and the portal show both alike. Paths name the place in the file the way a
reader would look for it: ``containers.main.image``, ``service.ports.web.port``,
``containers.main.files["/etc/app.conf"].content``, ``containers.main.args[2]``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pavedroad.core.errors import InputError

PathPart = str | int
At = tuple[PathPart, ...]  # where something is in a document: keys and list indexes

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a Score file; line and column are 1-based (0 when the workload
    did not come from a file, or the problem concerns the file as a whole)."""

    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.line}: " if self.line else ""
        return f"{where}{self.path + ': ' if self.path else ''}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class WorkloadError(InputError):
    """A Score workload that cannot be used; ``problems`` holds every problem, by line,
    and the detail lists them one a line (``score.yaml:12: containers.main.image: required``)."""

    title = "Invalid Score workload"
    type_slug = "invalid-score"

    def __init__(self, problems: Iterable[Problem], source: str = "score.yaml") -> None:
        self.problems = sorted(set(problems))
        self.source = source
        lines = [
            f"{source}:{problem}" if problem.line else f"{source}: {problem}"
            for problem in self.problems
        ]
        super().__init__(
            "\n".join(lines) or f"{source}: invalid Score workload",
            source=source,
            problems=[problem.as_dict() for problem in self.problems],
        )


def format_path(parts: Sequence[PathPart]) -> str:
    """``("containers", "main", "args", 2)`` → ``containers.main.args[2]``; keys that are
    not plain words are quoted: ``files["/etc/app.conf"]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            quoted = part.replace("\\", "\\\\").replace('"', '\\"')
            text += f'["{quoted}"]'
    return text
