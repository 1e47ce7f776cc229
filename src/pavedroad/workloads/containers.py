"""What a runtime needs to start one container of a resolved workload: its environment
variables and its files on disk.

A container's file ``target`` (``/etc/app/config.yaml``) is written under the root the
runtime gives the container (``<root>/etc/app/config.yaml``): a process runtime has no
file system of its own to mount it in. Targets are contained in the root through the
platform's path helper, symlinks resolved; ``..`` is refused however it is spelled.
Each file is written whole (a temporary file renamed over the old one) with its mode.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from pavedroad.core.errors import PayloadTooLargeError
from pavedroad.core.paths import PathEscapeError, contained_path
from pavedroad.workloads.placeholders import MAX_FILE_BYTES, ResolvedFile, ResolvedWorkload


def environment_for(resolved: ResolvedWorkload, container: str) -> dict[str, str]:
    """The environment variables of one container of a resolved workload (secret ones
    included: :attr:`ResolvedContainer.secret_variables` names those to mask)."""
    return dict(resolved.container(container).variables)


def file_path(root: Path, target: str) -> Path:
    """Where a file ``target`` goes under ``root`` (``/etc/app.conf``: ``<root>/etc/app.conf``,
    a symlink there replaced, not followed). Raises
    :class:`~pavedroad.core.paths.PathEscapeError` for a target that would leave it."""
    relative = target.lstrip("/\\")
    parts = [part for part in re.split(r"[/\\]", relative) if part not in ("", ".")]
    if not parts or ".." in parts or "\x00" in target:
        raise PathEscapeError(f"file target {target!r} is not a path inside the container")
    # The folder is contained with symlinks resolved; the file itself is replaced, so a
    # symlink already at its place is never followed.
    return contained_path(root, "/".join(parts[:-1])) / parts[-1]


def write_files(resolved: ResolvedWorkload, container: str, root: Path) -> list[Path]:
    """Write the container's files under ``root`` (created if missing), each with its
    mode; returns their paths. Every target is checked before anything is written."""
    files = resolved.container(container).files
    root.mkdir(parents=True, exist_ok=True)
    planned: list[tuple[Path, ResolvedFile]] = []
    for file in files:
        if len(file.content) > MAX_FILE_BYTES:
            raise PayloadTooLargeError(
                f"file {file.target} is {len(file.content)} bytes, over the limit of "
                f"{MAX_FILE_BYTES}"
            )
        path = file_path(root, file.target)
        if path.is_dir():
            raise PathEscapeError(f"file target {file.target} is a directory under {root}")
        planned.append((path, file))
    for path, file in planned:
        _write(path, file.content, file.mode)
    return [path for path, _ in planned]


def _write(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)  # replaces a symlink itself, never what it points to
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
