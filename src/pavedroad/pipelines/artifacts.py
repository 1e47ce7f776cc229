"""The content-addressed store of artifacts, caches and release bundles.

Bytes are kept once, under their SHA-256: ``$PAVEDROAD_HOME/pipelines/store/sha256/ab/cdef…``
(the first two hex digits name a folder), read-only once written. Folders are stored as
gzipped tar archives built to be the same bytes for the same files: entries sorted by
name, times, owners and groups fixed, permissions reduced to 0644/0755, the gzip header
without a time or name. So the same folder always gets the same digest, and uploading it
twice stores it once.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from sqlalchemy import select

from pavedroad.core.db import Database
from pavedroad.core.errors import ConflictError, InputError, NotFoundError, PayloadTooLargeError
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import utcnow
from pavedroad.pipelines.models import ArtifactRow
from pavedroad.settings import Settings

DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_COPY_BYTES = 1024 * 1024
DEFAULT_MAX_BYTES = 4 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class Blob:
    """Bytes in the store: ``sha256:<hex>`` and their size."""

    digest: str
    size: int


class ArtifactStore:
    """Bytes by digest in a folder. One store may be shared by every worker of a machine
    (or, on a shared file system, of many): writes go to a temporary file renamed into
    place, so readers never see a partial blob."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes

    @classmethod
    def for_settings(cls, settings: Settings) -> ArtifactStore:
        pipelines = getattr(settings, "pipelines", None)
        max_bytes = getattr(pipelines, "artifact_max_bytes", DEFAULT_MAX_BYTES)
        return cls(settings.home / "pipelines" / "store", max_bytes=max_bytes)

    # -- reading -------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` is (or would be) kept."""
        match = DIGEST.fullmatch(digest)
        if match is None:
            raise InputError(f"{digest[:80]!r} is not a digest (sha256:<64 hex digits>)")
        hex_digest = match.group(1)
        return self.root / "sha256" / hex_digest[:2] / hex_digest[2:]

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        """The blob's bytes, for reading."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"the store has no blob {digest}") from None

    def extract(self, digest: str, destination: Path) -> list[str]:
        """Unpack an archive blob (:meth:`put_tree`) into ``destination``; returns the
        names written. tarfile's ``data`` filter refuses absolute names, ``..``, links
        that leave ``destination`` and device files."""
        destination.mkdir(parents=True, exist_ok=True)
        with self.open(digest) as handle, tarfile.open(fileobj=handle, mode="r:gz") as archive:
            members = archive.getmembers()
            archive.extractall(destination, members=members, filter="data")
        return [member.name for member in members]

    # -- writing -------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> Blob:
        with self._writer() as writer:
            writer.write(data)
        return writer.blob

    def put_file(self, path: Path) -> Blob:
        """A file's bytes as they are (not archived)."""
        with open(path, "rb") as source, self._writer() as writer:
            while chunk := source.read(_COPY_BYTES):
                writer.write(chunk)
        return writer.blob

    def put_tree(self, path: Path) -> Blob:
        """A folder (every file under it) or a single file, as a reproducible archive
        whose names are relative to the folder (or the file's own name)."""
        if path.is_dir() and not path.is_symlink():
            return self.put_files(path, _walk(path))
        return self.put_files(path.parent, [path.name])

    def put_files(self, root: Path, names: Iterable[str]) -> Blob:
        """The files ``names`` (relative to ``root``, ``/``-separated) as a reproducible
        archive. Folders in ``names`` are entries of their own (so empty ones are kept);
        symbolic links are stored as links; sockets, devices and missing files are left
        out."""
        with self._writer() as writer:
            write_archive(writer, root, names)
        return writer.blob

    def _writer(self) -> _BlobWriter:
        return _BlobWriter(self)


class _BlobWriter:
    """A file object that hashes what it is given into a temporary file, and moves it
    to its digest's place when closed without an error."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._hash = hashlib.sha256()
        self._size = 0
        self._file: IO[bytes] | None = None
        self.blob = Blob("", 0)

    def __enter__(self) -> _BlobWriter:
        incoming = self.store.root / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        self._file = tempfile.NamedTemporaryFile(dir=incoming, delete=False)
        return self

    def write(self, data: bytes) -> int:
        assert self._file is not None
        self._size += len(data)
        if self._size > self.store.max_bytes:
            raise PayloadTooLargeError(
                f"more than {self.store.max_bytes} bytes: over the store's limit for one "
                "artifact (pipelines.artifact_max_bytes)"
            )
        self._hash.update(data)
        self._file.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        assert self._file is not None
        temporary = Path(self._file.name)
        try:
            self._file.close()
            if kind is None:
                self.blob = Blob(f"sha256:{self._hash.hexdigest()}", self._size)
                final = self.store.path(self.blob.digest)
                if final.is_file():
                    return  # the same bytes are there already
                final.parent.mkdir(parents=True, exist_ok=True)
                temporary.chmod(0o444)
                os.replace(temporary, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


def write_archive(output: IO[bytes] | _BlobWriter, root: Path, names: Iterable[str]) -> None:
    """A reproducible ``.tar.gz`` of ``names`` under ``root`` written to ``output``."""
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=output, mtime=0) as compressed,  # type: ignore[arg-type]
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as archive,
    ):
        for name in names:
            _add(archive, root, name)


def _add(archive: tarfile.TarFile, root: Path, name: str) -> None:
    full = root / name
    try:
        info = os.lstat(full)
    except FileNotFoundError:
        return
    entry = tarfile.TarInfo(name)
    entry.mtime = 0
    entry.uid = entry.gid = 0
    entry.uname = entry.gname = ""
    if stat.S_ISLNK(info.st_mode):
        entry.type = tarfile.SYMTYPE
        entry.linkname = os.readlink(full)
        entry.mode = 0o777
        archive.addfile(entry)
    elif stat.S_ISDIR(info.st_mode):
        entry.type = tarfile.DIRTYPE
        entry.mode = 0o755
        archive.addfile(entry)
    elif stat.S_ISREG(info.st_mode):
        entry.mode = 0o755 if info.st_mode & 0o111 else 0o644
        with open(full, "rb") as handle:
            entry.size = os.fstat(handle.fileno()).st_size
            archive.addfile(entry, handle)


def _walk(folder: Path, prefix: str = "") -> Iterator[str]:
    """Every entry under ``folder``, depth first, sorted by name; links are not followed."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        name = f"{prefix}{entry.name}"
        yield name
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), name + "/")


# -- the artifacts of runs -------------------------------------------------------------


class ArtifactConflictError(ConflictError):
    title = "Artifact exists"
    type_slug = "artifact-exists"


def record_artifact(db: Database, run_id: str, job_id: str, name: str, blob: Blob) -> ArtifactRow:
    """Name ``blob`` as the run's artifact ``name``. A name belongs to the job that first
    uploaded it: the same job may upload it again (a retried attempt), another job of
    the run may not (two matrix jobs uploading one name would silently lose one)."""
    with db.session() as session:
        row = session.scalar(
            select(ArtifactRow).where(ArtifactRow.run_id == run_id, ArtifactRow.name == name)
        )
        if row is not None and row.job_id != job_id and row.digest != blob.digest:
            raise ArtifactConflictError(
                f"another job of this run uploaded an artifact named {name!r}: give each "
                "job's artifact its own name (e.g. with ${{ matrix.* }} in it)"
            )
        if row is None:
            row = ArtifactRow(id=new_id(), run_id=run_id, name=name)
            session.add(row)
        row.job_id = job_id
        row.digest = blob.digest
        row.size = blob.size
        row.created_at = utcnow()
    return row


def find_artifact(db: Database, run_id: str, name: str) -> ArtifactRow | None:
    with db.read_session() as session:
        return session.scalar(
            select(ArtifactRow).where(ArtifactRow.run_id == run_id, ArtifactRow.name == name)
        )


def run_artifacts(db: Database, run_id: str) -> list[ArtifactRow]:
    """The artifacts of a run, by name."""
    with db.read_session() as session:
        return list(
            session.scalars(
                select(ArtifactRow).where(ArtifactRow.run_id == run_id).order_by(ArtifactRow.name)
            )
        )
