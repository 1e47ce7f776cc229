"""Path containment: the one place that turns input into a file path; and the lock
file that lets one process of the host at a time work on a path."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from pavedroad.core.errors import InputError


class PathEscapeError(InputError):
    title = "Path outside its root"
    type_slug = "path-escape"


def contained_path(root: Path, relative: str | Path) -> Path:
    """``root / relative`` with symlinks resolved, refused if it leaves ``root``."""
    if "\x00" in str(relative):
        raise PathEscapeError("path contains a NUL character")
    base = root.resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise PathEscapeError(f"{relative} points outside {root}")
    return candidate


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (made if missing; its folder must
    exist) until the block ends: one holder at a time among every process of the host."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
