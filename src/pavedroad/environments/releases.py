"""Releases: immutable bundles of a component at a commit, with their Score workload.

A release is recorded once its bundle is in the artifact store. Its identity is the
bundle's digest: recording the same bytes for the same component again (a re-run, a
second pipeline on the same commit) finds the release made the first time, so a commit
built twice is one release, deployable and promotable as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pavedroad.core import events
from pavedroad.core.db import Database
from pavedroad.core.errors import InputError, NotFoundError
from pavedroad.core.ids import new_id
from pavedroad.core.safeyaml import YamlError, load_document
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.environments.models import ReleaseRow
from pavedroad.pipelines.artifacts import ArtifactStore, Blob
from pavedroad.workloads.problems import WorkloadError
from pavedroad.workloads.score import parse_workload

SCORE_API_VERSION = "score.dev/v1b1"
RELEASE_CREATED = "ReleaseCreated"
SOURCES = ("pipeline", "cli")
MAX_SCORE_BYTES = 256 * 1024


class ScoreError(InputError):
    title = "Invalid Score workload"
    type_slug = "invalid-score"


@dataclass(frozen=True)
class Release:
    id: str
    component: str
    digest: str
    size: int
    repository: str | None
    commit: str | None
    branch: str | None
    score: dict[str, Any] | None
    score_text: str | None
    source: str
    run_id: str | None
    created_by: str
    created_at: datetime

    @property
    def workload_name(self) -> str | None:
        metadata = (self.score or {}).get("metadata") or {}
        name = metadata.get("name")
        return name if isinstance(name, str) else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "component": self.component,
            "digest": self.digest,
            "size": self.size,
            "repository": self.repository,
            "commit": self.commit,
            "branch": self.branch,
            "workload": self.workload_name,
            "source": self.source,
            "runId": self.run_id,
            "createdBy": self.created_by,
            "createdAt": isoformat(self.created_at),
        }


def parse_score(text: str, source: str = "score.yaml") -> dict[str, Any]:
    """A Score workload file read with the platform's safe YAML loader and checked to be
    one (``apiVersion: score.dev/v1b1``), then checked whole by
    :func:`~pavedroad.workloads.score.parse_workload`; :class:`ScoreError` says what is
    wrong, every problem with its line."""
    if len(text.encode()) > MAX_SCORE_BYTES:
        raise ScoreError(f"{source} is larger than {MAX_SCORE_BYTES} bytes")
    try:
        data = load_document(text, source)
    except YamlError as error:
        raise ScoreError(error.detail) from None
    if not isinstance(data, dict):
        raise ScoreError(f"{source} must be a mapping (a Score workload), not {_kind(data)}")
    if data.get("apiVersion") != SCORE_API_VERSION:
        raise ScoreError(
            f"{source} must have apiVersion {SCORE_API_VERSION} (a Score workload), "
            f"not {data.get('apiVersion')!r}"
        )
    try:
        parse_workload(text, source)
    except WorkloadError as error:
        problems = [problem.as_dict() for problem in error.problems]
        raise ScoreError(error.detail, problems=problems) from None
    return data


class ReleaseStore:
    """Releases in the database, their bundles in the artifact store."""

    def __init__(self, db: Database, artifacts: ArtifactStore) -> None:
        self.db = db
        self.artifacts = artifacts

    def create_from_bundle(
        self,
        bundle: Blob,
        *,
        component: str,
        score_text: str,
        created_by: str,
        source: str = "pipeline",
        repository: str | None = None,
        commit: str | None = None,
        branch: str | None = None,
        run_id: str | None = None,
    ) -> tuple[Release, bool]:
        """The release of ``bundle`` (already in the artifact store) for ``component``,
        and whether it was created now (False: the same bundle was released before)."""
        if source not in SOURCES:
            raise InputError(f"a release's source is one of {', '.join(SOURCES)}")
        if not self.artifacts.exists(bundle.digest):
            raise NotFoundError(f"the bundle {bundle.digest} is not in the artifact store")
        component = component.lower()
        existing = self._find(component, bundle.digest)
        if existing is not None:
            return existing, False
        score = parse_score(score_text)
        row = ReleaseRow(
            id=new_id(),
            component=component,
            digest=bundle.digest,
            size=bundle.size,
            repository=repository,
            commit=commit,
            branch=branch,
            score=score,
            score_text=score_text,
            source=source,
            run_id=run_id,
            created_by=created_by,
            created_at=utcnow(),
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:  # made by another worker in the meantime
            existing = self._find(component, bundle.digest)
            if existing is None:
                raise
            return existing, False
        release = _release(row)
        events.emit(
            self.db,
            RELEASE_CREATED,
            component,
            {
                "release": release.id,
                "digest": release.digest,
                "commit": commit,
                "branch": branch,
                "run": run_id,
            },
        )
        return release, True

    def get(self, release_id: str) -> Release:
        with self.db.read_session() as session:
            row = session.get(ReleaseRow, release_id)
        if row is None:
            raise NotFoundError(f"there is no release {release_id[:80]}")
        return _release(row)

    def list(
        self, component: str | None = None, branch: str | None = None, limit: int = 50
    ) -> list[Release]:
        """Releases, newest first, optionally of one component and branch."""
        statement = select(ReleaseRow).order_by(ReleaseRow.created_at.desc(), ReleaseRow.id.desc())
        if component:
            statement = statement.where(ReleaseRow.component == component.lower())
        if branch:
            statement = statement.where(ReleaseRow.branch == branch)
        with self.db.read_session() as session:
            return [_release(row) for row in session.scalars(statement.limit(max(1, limit)))]

    def bundle_path(self, release: Release) -> Path:
        """Where the release's bundle (a ``.tar.gz``) is on this machine."""
        return self.artifacts.path(release.digest)

    def _find(self, component: str, digest: str) -> Release | None:
        with self.db.read_session() as session:
            row = session.scalar(
                select(ReleaseRow).where(
                    ReleaseRow.component == component, ReleaseRow.digest == digest
                )
            )
        return None if row is None else _release(row)


def _release(row: ReleaseRow) -> Release:
    return Release(
        id=row.id,
        component=row.component,
        digest=row.digest,
        size=row.size,
        repository=row.repository,
        commit=row.commit,
        branch=row.branch,
        score=row.score,
        score_text=row.score_text,
        source=row.source,
        run_id=row.run_id,
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
    )


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
