"""Path containment: the one place that turns input into a file path."""

from __future__ import annotations

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
