"""The scratch folder one scaffolder task renders into.

Every path a template names goes through :meth:`Workspace.path`, so a hostile template
cannot write outside the folder (absolute paths, ``..``, control characters, symbolic
links that lead out) and cannot fill the disk (:class:`WorkspaceLimits`, checked before
anything is written). Files are written under a temporary name in the same folder and
renamed into place, so a refused or failed write never leaves half a file behind.
Actions change files only through this class, which keeps the running totals true.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pavedroad.core.errors import InputError
from pavedroad.core.paths import PathEscapeError, contained_path

MIB = 1024 * 1024

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_TEMP_PREFIX = ".pavedroad-write-"


class ActionError(InputError):
    """A scaffolder action cannot do what its step asks; the detail says why."""

    title = "Template action failed"
    type_slug = "scaffolder-action"


class UnsafePathError(ActionError):
    title = "Unsafe path in template"
    type_slug = "unsafe-path"


class WorkspaceLimitError(ActionError):
    status = 413
    title = "Workspace limit reached"
    type_slug = "workspace-limit"


@dataclass(frozen=True)
class WorkspaceLimits:
    """How much one task may write: files, bytes per file, bytes in all."""

    max_files: int = 10_000
    max_file_bytes: int = 10 * MIB
    max_total_bytes: int = 200 * MIB


def safe_relative(text: object, what: str = "path") -> PurePosixPath:
    """``text`` as a relative path with ``/`` separators, or :class:`UnsafePathError`.

    Refused: non-strings, control characters (NUL included), backslashes, absolute
    paths, drive letters and any ``..`` segment. ``""`` and ``"."`` mean the root.
    """
    if not isinstance(text, str):
        raise UnsafePathError(f"{what} must be a string, not {type(text).__name__}")
    if _CONTROL_CHARACTERS.search(text):
        raise UnsafePathError(f"{what} {text!r} contains a control character")
    if "\\" in text:
        raise UnsafePathError(f"{what} {text!r} contains a backslash; separate folders with /")
    pure = PurePosixPath(text)
    if pure.is_absolute() or _DRIVE.match(text):
        raise UnsafePathError(
            f"{what} {text!r} is absolute; paths in a template are relative to the workspace"
        )
    if ".." in pure.parts:
        raise UnsafePathError(f"{what} {text!r} contains '..'; it may not leave its folder")
    return pure


def glob_relative(root: Path, pattern: str) -> list[str]:
    """Paths under ``root`` (files and folders, dotfiles included) matching ``pattern``,
    relative, ``/``-separated and sorted; ``**`` matches any number of folders."""
    safe_relative(pattern, "glob")
    matches = glob.glob(pattern, root_dir=root, recursive=True, include_hidden=True)
    cleaned = {match.rstrip("/") for match in matches}
    cleaned.discard("")
    cleaned.discard(".")
    return sorted(cleaned)


class Workspace:
    """A scratch folder for one task, with its limits."""

    def __init__(self, root: Path, limits: WorkspaceLimits | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.limits = limits or WorkspaceLimits()
        self._files, self._bytes = _usage(self.root)

    # --- paths -----------------------------------------------------------------

    def path(self, relative: str) -> Path:
        """The file path for ``relative`` inside the workspace, or :class:`UnsafePathError`.

        The path is not resolved (a symbolic link in the last place is replaced, never
        written through), but it is refused if resolving it would leave the workspace.
        """
        pure = safe_relative(relative)
        try:
            contained_path(self.root, pure.as_posix())
        except PathEscapeError:
            raise UnsafePathError(
                f"path {relative!r} leads outside the workspace through a symbolic link"
            ) from None
        return self.root / pure

    def relative(self, path: Path) -> str:
        """``path`` (inside the workspace) as the ``/``-separated name a template uses."""
        return path.relative_to(self.root).as_posix()

    def exists(self, relative: str) -> bool:
        return os.path.lexists(self.path(relative))

    def is_dir(self, relative: str) -> bool:
        target = self.path(relative)
        return target.is_dir() and not target.is_symlink()

    def glob(self, pattern: str) -> list[str]:
        """Workspace paths (files and folders) matching ``pattern``, sorted."""
        return glob_relative(self.root, pattern)

    # --- reading -----------------------------------------------------------------

    def tree(self) -> list[tuple[str, int]]:
        """Every file as ``(relative path, size in bytes)``, sorted by path."""
        entries: list[tuple[str, int]] = []
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                info = os.lstat(os.path.join(folder, name))
                if stat.S_ISREG(info.st_mode):
                    entries.append((self.relative(Path(folder, name)), info.st_size))
        return sorted(entries)

    def read(self, relative: str) -> bytes:
        """The bytes of one file in the workspace (for dry-run output)."""
        target = self.path(relative)
        if not target.is_file():
            raise ActionError(f"{relative} is not a file in the workspace")
        return target.read_bytes()

    def load_source(self, source: Path, label: str) -> bytes:
        """The bytes of a file from outside the workspace (a template's skeleton), refused
        if it is a symbolic link or larger than one file may be."""
        try:
            fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as error:
            raise ActionError(f"cannot read {label}: {error.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ActionError(f"{label} is not a regular file")
            self._check_file_size(label, info.st_size)
            # read(n) allocates n bytes at once: ask for what the file holds, not the limit
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:  # it grew meanwhile
                data += handle.read(self.limits.max_file_bytes + 1 - len(data))
        self._check_file_size(label, len(data))
        return data

    # --- writing -----------------------------------------------------------------

    def mkdir(self, relative: str) -> Path:
        """Create a folder (and its parents); an existing folder is fine."""
        target = self.path(relative)
        _make_folder(target, relative)
        return target

    def write_bytes(
        self, relative: str, data: bytes, *, overwrite: bool = False, mode: int = 0o644
    ) -> Path:
        """Write one file whole, or raise and leave nothing behind.

        Refused if it exists and ``overwrite`` is false, is a folder, or would break a limit.
        """
        target = self.path(relative)
        previous = self._replaced_size(target, relative, overwrite)
        self._check_file_size(relative, len(data))
        self._check_totals(relative, len(data), previous)
        _make_folder(target.parent, relative)
        _write_atomically(target, data, mode, relative)
        self._files += 0 if previous is not None else 1
        self._bytes += len(data) - (previous or 0)
        return target

    def write_text(self, relative: str, text: str, *, overwrite: bool = False) -> Path:
        return self.write_bytes(relative, text.encode("utf-8"), overwrite=overwrite)

    def delete(self, relative: str) -> int:
        """Delete a file or a whole folder; returns how many files went."""
        target = self.path(relative)
        if target == self.root:
            raise ActionError("the workspace itself cannot be deleted")
        if not os.path.lexists(target):
            return 0
        return self._remove(target)[0]

    def rename(self, source_name: str, target_name: str, *, overwrite: bool = False) -> None:
        """Move a file or folder inside the workspace."""
        source, target = self.path(source_name), self.path(target_name)
        if self.root in (source, target):
            raise ActionError("the workspace itself cannot be renamed")
        if not os.path.lexists(source):
            raise ActionError(f"cannot rename {source_name}: it does not exist")
        if source == target:
            return
        if source in target.parents:
            raise ActionError(f"cannot move {source_name} into itself ({target_name})")
        if os.path.lexists(target):
            if not overwrite:
                raise ActionError(
                    f"cannot rename {source_name} to {target_name}: it already exists "
                    "(set overwrite: true to replace it)"
                )
            self._remove(target)
        _make_folder(target.parent, target_name)
        try:
            os.rename(source, target)
        except OSError as error:
            raise ActionError(
                f"cannot rename {source_name} to {target_name}: {error.strerror}"
            ) from None

    # --- accounting ----------------------------------------------------------------

    def _remove(self, target: Path) -> tuple[int, int]:
        files, size = _usage(target)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
        self._files -= files
        self._bytes -= size
        return files, size

    def _replaced_size(self, target: Path, relative: str, overwrite: bool) -> int | None:
        """The size of the file a write replaces, None if there is none."""
        if not os.path.lexists(target):
            return None
        if target.is_dir() and not target.is_symlink():
            raise ActionError(f"cannot write {relative}: a folder of that name exists")
        if not overwrite:
            raise ActionError(f"cannot write {relative}: the file already exists")
        info = os.lstat(target)
        return info.st_size if stat.S_ISREG(info.st_mode) else 0

    def _check_file_size(self, label: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise WorkspaceLimitError(
                f"{label} is larger than the {_describe_bytes(self.limits.max_file_bytes)} "
                "a file in a template task may have"
            )

    def _check_totals(self, relative: str, size: int, previous: int | None) -> None:
        if previous is None and self._files + 1 > self.limits.max_files:
            raise WorkspaceLimitError(
                f"cannot write {relative}: a template task may write at most "
                f"{self.limits.max_files} files"
            )
        if self._bytes - (previous or 0) + size > self.limits.max_total_bytes:
            raise WorkspaceLimitError(
                f"cannot write {relative}: a template task may write at most "
                f"{_describe_bytes(self.limits.max_total_bytes)} in all"
            )


def _usage(target: Path) -> tuple[int, int]:
    """Regular files and their bytes at or under ``target``, links not followed."""
    info = os.lstat(target) if os.path.lexists(target) else None
    if info is None:
        return 0, 0
    if not stat.S_ISDIR(info.st_mode):
        return (1, info.st_size) if stat.S_ISREG(info.st_mode) else (0, 0)
    files = size = 0
    for folder, _dirs, names in os.walk(target):
        for name in names:
            entry = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(entry.st_mode):
                files += 1
                size += entry.st_size
    return files, size


def _make_folder(folder: Path, label: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ActionError(f"cannot create the folder for {label}: a file is in the way") from None
    except OSError as error:
        raise ActionError(f"cannot create the folder for {label}: {error.strerror}") from None


def _write_atomically(target: Path, data: bytes, mode: int, label: str) -> None:
    try:
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=_TEMP_PREFIX)
    except OSError as error:
        raise ActionError(f"cannot write {label}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp_name, mode)  # mkstemp makes the file private (0600)
        os.replace(temp_name, target)
    except BaseException as error:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ActionError(f"cannot write {label}: {error.strerror}") from None
        raise


def _describe_bytes(size: int) -> str:
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    return f"{size} bytes"
