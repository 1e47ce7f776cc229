"""Template versions: what a template was when a project was made from it.

A template lives in a catalog location: a file on disk (its folder holds the skeletons)
or a file in a hosted repository. Each time a template is used, its folder is copied
into the template's *history*, a bare git repository under
``$PAVEDROAD_HOME/scaffolder/templates/<namespace>/<name>.git``, one commit per distinct
version. The version is the commit of the template's source repository or, for a plain
folder, git's hash of the folder's contents. So any version a project was made from can
be rendered again later (template updates), even after the source moved on.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from pavedroad.catalog.refs import parse_ref
from pavedroad.core.db import Database
from pavedroad.core.errors import InputError, NotFoundError
from pavedroad.core.ids import new_id
from pavedroad.core.paths import file_lock
from pavedroad.core.timeutil import utcnow
from pavedroad.scaffolder.models import TemplateVersionRow
from pavedroad.settings import Settings

MANAGED_BY = "backstage.io/managed-by-location"
GIT_TIMEOUT_SECONDS = 120
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Pavedroad",
    "GIT_AUTHOR_EMAIL": "pavedroad@localhost",
    "GIT_COMMITTER_NAME": "Pavedroad",
    "GIT_COMMITTER_EMAIL": "pavedroad@localhost",
}
# What git says when it cannot get memory (a task's memory limit applies to its git too).
_OUT_OF_MEMORY = re.compile(r"out of memory|cannot allocate memory", re.IGNORECASE)


class TemplateSourceError(InputError):
    title = "Template source unavailable"
    type_slug = "template-source"


class TemplateHistoryError(TemplateSourceError):
    """git could not record or read a version of the template."""


@dataclass(frozen=True)
class TemplateVersion:
    template_ref: str
    version: str
    ordinal: int
    entity: dict[str, Any]


def template_ref_of(entity: dict[str, Any]) -> str:
    metadata = entity.get("metadata") or {}
    return f"template:{metadata.get('namespace') or 'default'}/{metadata.get('name')}".lower()


class TemplateVersions:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.root = settings.home / "scaffolder" / "templates"

    # -- recording ---------------------------------------------------------------------

    def record(self, entity: dict[str, Any]) -> TemplateVersion:
        """Copy the template's folder, as it is now, into its history; the version."""
        ref = template_ref_of(entity)
        location = ((entity.get("metadata") or {}).get("annotations") or {}).get(MANAGED_BY, "")
        history = self._history(ref)
        with tempfile.TemporaryDirectory(prefix="pavedroad-template-") as scratch:
            folder, source_commit = self._materialise(location, Path(scratch))
            self._check_size(folder)
            tree = _index_tree(history, folder)
            version = source_commit or tree
            existing = self.get(ref, version)
            if existing is not None:
                return existing
            with file_lock(history / "pavedroad.lock"):  # one writer of the history at a time
                if _git_or_none(history, "rev-parse", "-q", "--verify", f"refs/versions/{version}"):
                    return self._insert(ref, version, entity, location)
                parent = _git_or_none(history, "rev-parse", "--verify", "-q", "refs/heads/main")
                args = ["commit-tree", tree, "-m", f"{ref} at {version}"]
                if parent:
                    args += ["-p", parent]
                commit = _git(history, *args).strip()
                _git(history, "update-ref", f"refs/versions/{version}", commit)
                _git(history, "update-ref", "refs/heads/main", commit)
        return self._insert(ref, version, entity, location)

    def _insert(
        self, ref: str, version: str, entity: dict[str, Any], location: str
    ) -> TemplateVersion:
        try:
            with self.db.session() as session:
                ordinal = (
                    session.scalar(
                        select(func.max(TemplateVersionRow.ordinal)).where(
                            TemplateVersionRow.template_ref == ref
                        )
                    )
                    or 0
                ) + 1
                session.add(
                    TemplateVersionRow(
                        id=new_id(),
                        template_ref=ref,
                        version=version,
                        ordinal=ordinal,
                        entity=entity,
                        source=location[:2000],
                        recorded_at=utcnow(),
                    )
                )
        except IntegrityError:
            pass  # recorded at the same moment by another task
        found = self.get(ref, version)
        assert found is not None
        return found

    # -- reading -----------------------------------------------------------------------

    def get(self, template_ref: str, version: str) -> TemplateVersion | None:
        with self.db.read_session() as session:
            row = session.scalar(
                select(TemplateVersionRow).where(
                    TemplateVersionRow.template_ref == template_ref.lower(),
                    TemplateVersionRow.version == version,
                )
            )
        return _version(row) if row else None

    def latest(self, template_ref: str) -> TemplateVersion | None:
        with self.db.read_session() as session:
            row = session.scalar(
                select(TemplateVersionRow)
                .where(TemplateVersionRow.template_ref == template_ref.lower())
                .order_by(TemplateVersionRow.ordinal.desc())
                .limit(1)
            )
        return _version(row) if row else None

    def history(self, template_ref: str) -> list[TemplateVersion]:
        with self.db.read_session() as session:
            rows = session.scalars(
                select(TemplateVersionRow)
                .where(TemplateVersionRow.template_ref == template_ref.lower())
                .order_by(TemplateVersionRow.ordinal.desc())
            )
            return [_version(row) for row in rows]

    def checkout(self, template_ref: str, version: str, target: Path) -> Path:
        """Write the template's folder at ``version`` into ``target`` (made here)."""
        history = self._history(template_ref, create=False)
        if _git_or_none(history, "rev-parse", "--verify", "-q", f"refs/versions/{version}") is None:
            raise NotFoundError(f"{template_ref} has no recorded version {version}")
        target.mkdir(parents=True, exist_ok=False, mode=0o700)
        with tempfile.TemporaryFile() as handle:
            _git_output(history, "archive", "--format=tar", f"refs/versions/{version}", into=handle)
            handle.seek(0)
            with tarfile.open(fileobj=handle) as tar:
                # the "tar" filter keeps symbolic links (the skeleton check refuses them
                # with a clear message) but never writes outside the target
                tar.extractall(target, filter="tar")
        return target

    # -- where templates come from -----------------------------------------------------

    def _history(self, template_ref: str, create: bool = True) -> Path:
        ref = parse_ref(template_ref, "template")
        path = self.root / ref.namespace / f"{ref.name}.git"
        if not path.is_dir():
            if not create:
                raise NotFoundError(f"{template_ref} has no recorded versions")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            subprocess.run(
                ["git", "init", "--quiet", "--bare", str(path)],
                capture_output=True,
                timeout=GIT_TIMEOUT_SECONDS,
                env=_env(),
                check=True,
            )
        return path

    def _materialise(self, location: str, scratch: Path) -> tuple[Path, str | None]:
        """The template's folder on disk, and the source commit if it has one."""
        kind, _, target = location.partition(":")
        if kind == "file":
            folder = Path(target).parent
            if not folder.is_dir():
                raise TemplateSourceError(f"the template's folder {folder} is gone")
            return folder, None
        if kind == "url":
            from pavedroad.git.catalog_reader import HostedRepoUrlReader

            reader = HostedRepoUrlReader(self.settings)
            if not reader.is_hosted(target):
                raise TemplateSourceError(
                    f"the template was read from {urlsplit(target).netloc or target}; "
                    "templates run from files or from hosted repositories"
                )
            file = reader.parse(target)
            repo = reader.repository_path(file)
            commit = reader.commit(repo, file)
            folder_path = str(PurePosixPath(file.path).parent)
            spec = commit if folder_path in ("", ".") else f"{commit}:{folder_path}"
            self._check_sizes(_tree_files(repo, spec))  # before a byte of it is read
            folder = scratch / "template"
            folder.mkdir()
            with tempfile.TemporaryFile() as handle:
                archive = subprocess.run(
                    ["git", "--git-dir", str(repo), "archive", "--format=tar", spec],
                    stdout=handle,
                    stderr=subprocess.PIPE,
                    timeout=GIT_TIMEOUT_SECONDS,
                    env=_env(),
                    check=False,
                )
                if archive.returncode != 0:
                    raise TemplateSourceError(
                        f"cannot read the template's folder from {file.repository}: "
                        + archive.stderr.decode(errors="replace").strip()
                    )
                handle.seek(0)
                with tarfile.open(fileobj=handle) as tar:
                    tar.extractall(folder, filter="tar")
            return folder, commit
        raise TemplateSourceError(
            f"the template's location {location[:200]!r} is neither a file nor a URL"
        )

    def _check_size(self, folder: Path) -> None:
        self._check_sizes(_folder_files(folder))

    def _check_sizes(self, sizes: Iterable[tuple[str, int]]) -> None:
        """Refuse a template whose files (``(path, bytes)``) are more than a task may write."""
        limits = self.settings.scaffolder
        files = total = 0
        for path, size in sizes:
            files += 1
            total += size
            if size > limits.max_file_bytes:
                raise TemplateSourceError(
                    f"the template's {path} is {size} bytes; a template file may have at "
                    f"most {limits.max_file_bytes} (scaffolder.max_file_bytes)"
                )
        if files > limits.max_workspace_files or total > limits.max_workspace_bytes:
            raise TemplateSourceError(
                f"the template's folder holds {files} files, {total} bytes: more than a task "
                "may write (scaffolder.max_workspace_files / max_workspace_bytes)"
            )


def _folder_files(folder: Path) -> Iterator[tuple[str, int]]:
    """The regular files under ``folder`` (not in .git folders) with their sizes."""
    for directory, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            info = os.lstat(Path(directory, name))
            if stat.S_ISREG(info.st_mode):
                yield Path(directory, name).relative_to(folder).as_posix(), info.st_size


def _tree_files(repo: Path, spec: str) -> list[tuple[str, int]]:
    """The regular files of the git tree ``spec`` with their sizes, as git's object
    database records them (no file is read)."""
    listing = _git_output(repo, "ls-tree", "-r", "-l", "-z", spec).decode(errors="replace")
    files: list[tuple[str, int]] = []
    for entry in filter(None, listing.split("\0")):
        info, _, path = entry.partition("\t")
        mode, kind, _object, size = info.split()
        if kind == "blob" and mode in ("100644", "100755"):
            files.append((path, int(size)))
    return files


def _version(row: TemplateVersionRow) -> TemplateVersion:
    return TemplateVersion(row.template_ref, row.version, row.ordinal, row.entity)


def _env() -> dict[str, str]:
    return {**os.environ, **_GIT_ENV}


def _git_output(
    history: Path, *args: str, env: dict[str, str] | None = None, into: IO[bytes] | None = None
) -> bytes:
    """What ``git --git-dir history args`` writes (written ``into`` a file instead, if given);
    :class:`TemplateHistoryError` when it fails, :class:`MemoryError` when it (or starting
    it) runs out of memory."""
    command = next((arg for arg in args if not arg.startswith("-")), "")
    try:
        result = subprocess.run(
            ["git", "--git-dir", str(history), *args],
            stdout=into or subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=GIT_TIMEOUT_SECONDS,
            env=env or _env(),
            check=False,
        )
    except OSError as error:
        if error.errno == errno.ENOMEM:
            raise MemoryError(f"git {command}: {error.strerror}") from None
        raise
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        if _OUT_OF_MEMORY.search(message):
            raise MemoryError(f"git {command}: {message}")
        raise TemplateHistoryError(f"cannot keep the template's version: git {command}: {message}")
    return result.stdout or b""


def _git(history: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return _git_output(history, *args, env=env).decode()


def _git_or_none(history: Path, *args: str) -> str | None:
    try:
        return _git(history, *args).strip() or None
    except TemplateHistoryError:
        return None


def _index_tree(history: Path, folder: Path) -> str:
    """git's tree hash of ``folder`` (stored in ``history``), nested .git folders left out."""
    with tempfile.TemporaryDirectory(prefix="pavedroad-index-") as scratch:
        env = {**_env(), "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git(history, f"--work-tree={folder}", "add", "--all", "--force", ".", env=env)
        return _git(history, "write-tree", env=env).strip()
