"""Projects made from templates, and how far each is behind its template.

A task that publishes a hosted repository records it here with the template version it
was made from. The repository's own ``.pavedroad/template.yaml`` on its default branch
is the truth afterwards (a merged template update changes it), so the version is read
again from there whenever someone asks how far behind a project is.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from pavedroad.core.db import Database
from pavedroad.core.errors import InputError, NotFoundError
from pavedroad.core.timeutil import isoformat, utcnow
from pavedroad.git.service import GitService
from pavedroad.scaffolder.models import ProjectRow
from pavedroad.scaffolder.platform import TemplateOrigin
from pavedroad.scaffolder.provenance import PROVENANCE_PATH, read_provenance
from pavedroad.scaffolder.versions import TemplateVersion, TemplateVersions
from pavedroad.settings import Settings

_CLONE_PATH = re.compile(r"/git/([^/]+)/([^/]+?)\.git$")


@dataclass(frozen=True)
class ProjectState:
    repository: str
    template_ref: str
    version: str
    behind: int  # versions of the template since this project's
    entity_ref: str | None

    def as_dict(self, latest: TemplateVersion | None) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "templateRef": self.template_ref,
            "version": self.version,
            "latestVersion": latest.version if latest else None,
            "behind": self.behind,
            "entityRef": self.entity_ref,
        }


class ProjectStore:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.git = GitService(db, settings)
        self.versions = TemplateVersions(db, settings)

    def record_from_task(
        self,
        task_id: str,
        steps_output: dict[str, dict[str, Any]],
        version: TemplateVersion,
        values: dict[str, Any],
    ) -> list[str]:
        """Record the hosted repositories a task published; returns them."""
        repositories: list[str] = []
        entity_ref = next(
            (
                str(output["entityRef"])
                for output in steps_output.values()
                if isinstance(output.get("entityRef"), str)
            ),
            None,
        )
        for output in steps_output.values():
            match = _CLONE_PATH.search(str(output.get("remoteUrl") or ""))
            if match:
                repositories.append(f"{match.group(1)}/{match.group(2)}")
        now = utcnow()
        with self.db.session() as session:
            for repository in repositories:
                session.merge(
                    ProjectRow(
                        repository=repository,
                        template_ref=version.template_ref,
                        version=version.version,
                        values=values,
                        entity_ref=entity_ref,
                        task_id=task_id,
                        created_at=now,
                        updated_at=now,
                    )
                )
        return repositories

    def get(self, repository: str) -> ProjectRow:
        with self.db.read_session() as session:
            row = session.get(ProjectRow, repository.lower())
        if row is None:
            raise NotFoundError(f"{repository} was not made from a template")
        return row

    def for_entity(self, entity_ref: str) -> ProjectRow | None:
        with self.db.read_session() as session:
            return session.scalar(
                select(ProjectRow).where(ProjectRow.entity_ref == entity_ref.lower()).limit(1)
            )

    def origin(self, repository: str) -> TemplateOrigin:
        """What the repository's default branch says about its template, now."""
        owner, _, name = repository.partition("/")
        repo = self.git.repo(owner, name)
        result = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.git.path(repo)),
                "show",
                f"refs/heads/{repo.default_branch}:{PROVENANCE_PATH}",
            ],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise InputError(
                f"{repository} has no {PROVENANCE_PATH} on {repo.default_branch}: it was not "
                "made from a template, or the file was removed"
            )
        return read_provenance(result.stdout)

    def refresh(self, repository: str) -> ProjectRow:
        """Read the template version again from the repository."""
        row = self.get(repository)
        try:
            origin = self.origin(repository)
        except (InputError, NotFoundError):
            return row
        if origin.version != row.version or origin.template_ref != row.template_ref:
            with self.db.session() as session:
                stored = session.get(ProjectRow, row.repository)
                if stored is not None:
                    stored.version = origin.version
                    stored.template_ref = origin.template_ref
                    stored.values = origin.values
                    stored.updated_at = utcnow()
                    row = stored
        return row

    def of_template(self, template_ref: str) -> list[dict[str, Any]]:
        """Every project made from the template, how far behind, most behind first."""
        with self.db.read_session() as session:
            repositories = list(
                session.scalars(
                    select(ProjectRow.repository).where(
                        ProjectRow.template_ref == template_ref.lower()
                    )
                )
            )
        latest = self.versions.latest(template_ref)
        states = [self.state(repository, latest) for repository in repositories]
        states.sort(key=lambda item: (-item["behind"], item["repository"]))
        return states

    def state(self, repository: str, latest: TemplateVersion | None = None) -> dict[str, Any]:
        row = self.refresh(repository)
        latest = latest or self.versions.latest(row.template_ref)
        current = self.versions.get(row.template_ref, row.version)
        behind = (latest.ordinal - current.ordinal) if latest and current else 0
        described = ProjectState(
            row.repository, row.template_ref, row.version, max(behind, 0), row.entity_ref
        ).as_dict(latest)
        described["updatedAt"] = isoformat(row.updated_at)
        return described
