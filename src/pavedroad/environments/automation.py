"""What happens to environments by itself: automatic deploys and branch previews.

A reconciler reads the platform's events:

- ``ReleaseCreated`` (a pipeline's ``release/build``): the release deploys to every
  environment whose ``autoDeploy`` rules match its branch (``defaultBranch: true``: the
  repository's default branch). A release of another branch deploys to that branch's
  preview, ``preview-<branch slug>``, made from the environment with ``previews`` (its
  variables, runtime and owner) when the first release of the branch arrives.
- ``GitPushed``: a push to a branch extends its preview's life by the base's
  ``previews.ttl`` (72 h by default); deleting the branch removes the repository's
  component from the preview, and the preview once nothing is left in it.
- Previews past their time are removed with everything in them.

Each event is acted on once: automatic deployments carry the event's id as their
trigger key, and the rest is idempotent.
"""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select

from pavedroad.core.errors import ProblemError
from pavedroad.core.timeutil import utcnow
from pavedroad.environments.deployments import DeploymentService
from pavedroad.environments.directory import DEFAULT_PREVIEW_TTL, Environment, preview_name
from pavedroad.environments.releases import RELEASE_CREATED

log = logging.getLogger("pavedroad.environments")

LOOKBACK = timedelta(days=1)  # at start: events this recent are looked at again
REREAD = timedelta(minutes=2)  # ids from several processes may commit out of order
ZERO_SHA = "0" * 40
ACTOR = "platform"


class EnvironmentAutomation:
    def __init__(self, deployments: DeploymentService) -> None:
        self.deployments = deployments
        self.db = deployments.db
        self.settings = deployments.settings
        self._cursor: str | None = None

    def react(self) -> int:
        """Reconciler: act on new events, then remove expired previews. Returns the
        number of things done."""
        from pavedroad.core.events import EventRow
        from pavedroad.git.service import GIT_PUSHED

        statement = (
            select(EventRow)
            .where(EventRow.type.in_((RELEASE_CREATED, GIT_PUSHED)))
            .order_by(EventRow.id)
            .limit(200)
        )
        if self._cursor is None:
            statement = statement.where(EventRow.at >= utcnow() - LOOKBACK)
        else:
            statement = statement.where(
                or_(EventRow.id > self._cursor, EventRow.at >= utcnow() - REREAD)
            )
        with self.db.read_session() as session:
            rows = [
                (r.id, r.type, r.subject, json.loads(r.data)) for r in session.scalars(statement)
            ]
        done = 0
        for event_id, type_, subject, data in rows:
            try:
                if type_ == RELEASE_CREATED:
                    done += self.on_release(event_id, subject, data)
                else:
                    done += self.on_push(data)
            except Exception:  # one bad event must not hold up the others
                log.exception("could not act on event %s (%s)", event_id, type_)
            self._cursor = event_id
        done += self.remove_expired()
        return done

    # -- releases ----------------------------------------------------------------------

    def on_release(self, event_id: str, component: str, data: dict[str, Any]) -> int:
        release = self.deployments.releases.get(str(data.get("release")))
        branch = release.branch
        default = self._default_branch(release.repository)
        started = 0
        for env in self.deployments.environments.all():
            if env.source == "catalog" and env.auto_deploys(branch, default):
                started += self._deploy(event_id, release.component, env.name, release.id, "auto")
        base = self.deployments.environments.preview_base()
        if branch and default and branch != default and base is not None:
            preview = self.ensure_preview(base, branch)
            started += self._deploy(
                event_id, release.component, preview.name, release.id, "preview"
            )
        return started

    def _deploy(self, event_id: str, component: str, env: str, release: str, kind: str) -> int:
        try:
            requested = self.deployments.deploy(
                component, env, release, ACTOR, kind=kind, trigger_key=f"{event_id}:{env}"[:200]
            )
        except ProblemError as error:
            log.warning("no %s deploy of %s to %s: %s", kind, component, env, error.detail)
            return 0
        return int(requested.created)

    def ensure_preview(self, base: Environment, branch: str) -> Environment:
        name = preview_name(branch)
        ttl = base.preview_ttl or DEFAULT_PREVIEW_TTL
        existing = self.deployments.environments.find(name)
        if existing is not None:
            self.deployments.environments.extend(name, utcnow() + ttl)
            return existing
        spec: dict[str, Any] = {
            "type": "preview",
            "owner": base.owner,
            "runtime": base.runtime,
            "description": f"Preview of branch {branch[:200]} (from {base.name})",
            "variables": dict(base.variables),
        }
        try:
            return self.deployments.environments.create(
                name,
                spec,
                ACTOR,
                source="preview",
                base=base.name,
                branch=branch,
                expires_at=utcnow() + ttl,
            )
        except ProblemError:  # made by another process meanwhile
            return self.deployments.environments.get(name)

    # -- pushes ------------------------------------------------------------------------

    def on_push(self, data: dict[str, Any]) -> int:
        ref = str(data.get("ref") or "")
        if not ref.startswith("refs/heads/"):
            return 0
        branch = ref.removeprefix("refs/heads/")
        repository = str(data.get("repository") or "")
        previews = self.deployments.environments.previews_of_branch(branch)
        if not previews:
            return 0
        if data.get("after") not in (None, "", ZERO_SHA):
            for env in previews:
                base = self.deployments.environments.find(env.base or "")
                ttl = (base.preview_ttl if base else None) or DEFAULT_PREVIEW_TTL
                self.deployments.environments.extend(env.name, utcnow() + ttl)
            return 0
        if self._branch_exists(repository, branch):
            return 0  # deleted and pushed again since: the preview stays
        removed = 0
        for env in previews:
            for live in self.deployments.lives(environment=env.name):
                release = self.deployments.releases.get(live.release_id)
                if release.repository == repository:
                    removed += self.deployments.undeploy(
                        live.component, env.name, ACTOR, f"branch {branch} was deleted"
                    )
            if not self.deployments.lives(environment=env.name):
                self.deployments.remove_environment(env.name, ACTOR)
                removed += 1
        return removed

    def remove_expired(self) -> int:
        removed = 0
        for env in self.deployments.environments.expired():
            log.info("preview %s expired; removing it", env.name)
            self.deployments.remove_environment(env.name, ACTOR)
            removed += 1
        return removed

    # -- the repository ------------------------------------------------------------------

    def _default_branch(self, repository: str | None) -> str | None:
        if not repository or repository.count("/") != 1:
            return None
        from pavedroad.git.models import RepoRow

        owner, name = repository.split("/")
        with self.db.read_session() as session:
            row = session.scalar(
                select(RepoRow).where(RepoRow.owner == owner, RepoRow.name == name)
            )
        return row.default_branch if row is not None else None

    def _branch_exists(self, repository: str, branch: str) -> bool:
        if repository.count("/") != 1 or ".." in repository:
            return False
        owner, name = repository.split("/")
        bare = self.settings.home / "git" / owner / f"{name}.git"
        if not bare.is_dir():
            return False
        result = subprocess.run(
            ["git", "--git-dir", str(bare), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return result.returncode == 0
