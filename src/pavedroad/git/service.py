"""Hosted repositories: bare repositories under ``$PAVEDROAD_HOME/git``, and the
record of every push.

Each repository has a ``post-receive`` hook that writes what a push changed to a
spool folder (``$PAVEDROAD_HOME/git/.spool``) before the push is acknowledged, with
nothing but the standard library. The platform turns spool entries into push events
(right after a push over HTTP, on a short interval, and at start), so a push made
while the platform was down is recorded when it comes back: no push is ever lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pavedroad.catalog.queries import CatalogReader
from pavedroad.catalog.validation import is_valid_object_name
from pavedroad.core import events
from pavedroad.core.db import Database
from pavedroad.core.errors import ConflictError, InputError, NotFoundError
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import isoformat, utcnow
from pavedroad.git.models import PushEventRow, RepoRow
from pavedroad.settings import Settings

log = logging.getLogger("pavedroad.git")

GIT_PUSHED = "GitPushed"
SPOOL = ".spool"
ZERO_SHA = "0" * 40

# The hook runs inside `git receive-pack`, once per push, with the updated refs on
# standard input. It only writes a file: fast, and it works when the platform is down.
HOOK = """#!{python}
# Written by Pavedroad: records this push for the platform (see docs/git.md).
import json, os, sys, time, uuid
updates = [line.split() for line in sys.stdin.read().splitlines() if line.strip()]
entry = {{
    "repository": {repository!r},
    "updates": [{{"before": u[0], "after": u[1], "ref": u[2]}} for u in updates],
    "pusher": os.environ.get("REMOTE_USER") or os.environ.get("USER") or "unknown",
    "at": time.time(),
}}
spool = {spool!r}
os.makedirs(spool, exist_ok=True)
name = "%d-%s" % (time.time_ns(), uuid.uuid4().hex)
staged = os.path.join(spool, name + ".tmp")
with open(staged, "w") as handle:
    json.dump(entry, handle)
    handle.flush()
    os.fsync(handle.fileno())
os.replace(staged, os.path.join(spool, name + ".json"))
"""


@dataclass(frozen=True)
class Push:
    """One ref updated by one push."""

    repository: str  # "owner/name" for hosted repositories, else the repository URL
    ref: str
    before: str
    after: str
    pusher: str
    source: str
    delivery: str
    at: datetime


class GitService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.root = settings.home / "git"
        self.spool = self.root / SPOOL
        self.public_url = settings.public_url

    # -- repositories ------------------------------------------------------------------

    def create(
        self, owner: str, name: str, actor: str, description: str = "", default_branch: str = "main"
    ) -> dict[str, Any]:
        owner_ref = self.owner_ref(owner)
        if not is_valid_object_name(name) or name.endswith(".git"):
            raise InputError(
                f"{name[:80]!r} is not a valid repository name: letters, digits and -_. "
                "between them, at most 63 characters, not ending in .git"
            )
        owner_name = owner_ref.split("/", 1)[1]
        path = self.root / owner_name / f"{name}.git"
        if path.exists():
            raise ConflictError(f"the repository {owner_name}/{name} exists already")
        row = RepoRow(
            id=new_id(),
            owner=owner_name,
            name=name,
            owner_ref=owner_ref,
            description=description[:2000],
            default_branch=default_branch,
            created_by=actor,
            created_at=utcnow(),
        )
        try:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                self._init(path, row)
        except IntegrityError:
            raise ConflictError(f"the repository {owner_name}/{name} exists already") from None
        except Exception:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return self.describe(row)

    def _init(self, path: Path, row: RepoRow) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        git("init", "--quiet", "--bare", f"--initial-branch={row.default_branch}", str(path))
        git("config", "http.receivepack", "true", cwd=path)
        git("config", "receive.denyNonFastForwards", "false", cwd=path)
        (path / "description").write_text((row.description or f"{row.owner}/{row.name}") + "\n")
        hook = path / "hooks" / "post-receive"
        hook.write_text(
            HOOK.format(
                python=sys.executable,
                repository=f"{row.owner}/{row.name}",
                spool=str(self.spool),
            )
        )
        hook.chmod(0o755)

    def owner_ref(self, owner: str) -> str:
        """The Group (or else User) entity an owner name means."""
        text = owner.strip().lower()
        candidates = [text] if ":" in text else [f"group:default/{text}", f"user:default/{text}"]
        with self.db.read_session() as session:
            reader = CatalogReader(session)
            for candidate in candidates:
                if reader.row_by_ref(candidate) is not None and candidate.startswith(
                    ("group:default/", "user:default/")
                ):
                    return candidate
        raise NotFoundError(
            f"{owner[:80]!r} is not a group or user in the catalog (default namespace): "
            "a repository belongs to one"
        )

    def repos(self, owner: str | None = None) -> list[dict[str, Any]]:
        statement = select(RepoRow).order_by(RepoRow.owner, RepoRow.name)
        if owner:
            statement = statement.where(RepoRow.owner == owner.lower())
        with self.db.read_session() as session:
            return [self.describe(row) for row in session.scalars(statement)]

    def repo(self, owner: str, name: str) -> RepoRow:
        name = name.removesuffix(".git")
        with self.db.read_session() as session:
            row = session.scalar(
                select(RepoRow).where(RepoRow.owner == owner.lower(), RepoRow.name == name)
            )
        if row is None:
            raise NotFoundError(f"there is no repository {owner}/{name}")
        return row

    def path(self, row: RepoRow) -> Path:
        return self.root / row.owner / f"{row.name}.git"

    def delete(self, owner: str, name: str) -> None:
        row = self.repo(owner, name)
        with self.db.session() as session:
            session.delete(session.get(RepoRow, row.id))
        shutil.rmtree(self.path(row), ignore_errors=True)

    def describe(self, row: RepoRow) -> dict[str, Any]:
        return {
            "id": row.id,
            "owner": row.owner,
            "name": row.name,
            "ownerRef": row.owner_ref,
            "description": row.description,
            "defaultBranch": row.default_branch,
            "cloneUrl": f"{self.public_url}/git/{row.owner}/{row.name}.git",
            "createdBy": row.created_by,
            "createdAt": isoformat(row.created_at),
        }

    # -- pushes ------------------------------------------------------------------------------

    def import_spool(self) -> int:
        """Record every push the hooks spooled; returns how many ref updates."""
        if not self.spool.is_dir():
            return 0
        recorded = 0
        for entry in sorted(self.spool.glob("*.json")):
            try:
                data = json.loads(entry.read_text())
                owner, _, name = str(data["repository"]).partition("/")
                at = datetime.fromtimestamp(float(data["at"]), tz=utcnow().tzinfo)
                pushes = [
                    Push(
                        f"{owner}/{name}",
                        str(update["ref"]),
                        str(update["before"]),
                        str(update["after"]),
                        str(data.get("pusher") or "unknown")[:400],
                        "hosted",
                        f"hosted:{entry.stem}:{index}",
                        at,
                    )
                    for index, update in enumerate(data["updates"])
                ]
            except FileNotFoundError:
                continue  # another process imported it meanwhile
            except (OSError, ValueError, KeyError, TypeError):
                log.exception("unreadable push spool entry %s; moved aside", entry)
                with contextlib.suppress(FileNotFoundError):
                    entry.rename(entry.with_suffix(".bad"))
                continue
            recorded += self.record(pushes)
            entry.unlink(missing_ok=True)
        return recorded

    def record(self, pushes: list[Push]) -> int:
        """Store push events (each delivery once) and announce the new ones."""
        fresh: list[Push] = []
        for push in pushes:
            repo_id = self._repo_id(push.repository) if push.source == "hosted" else None
            try:
                with self.db.session() as session:
                    session.add(
                        PushEventRow(
                            id=new_id(),
                            repo_id=repo_id,
                            repository=push.repository,
                            ref=push.ref,
                            before=push.before,
                            after=push.after,
                            pusher=push.pusher,
                            source=push.source,
                            delivery=push.delivery,
                            at=push.at,
                        )
                    )
            except IntegrityError:  # recorded already (a redelivered webhook, a re-read spool)
                continue
            fresh.append(push)
        for push in fresh:
            events.emit(
                self.db,
                GIT_PUSHED,
                push.repository,
                {
                    "repository": push.repository,
                    "ref": push.ref,
                    "before": push.before,
                    "after": push.after,
                    "pusher": push.pusher,
                    "source": push.source,
                },
            )
        return len(fresh)

    def _repo_id(self, repository: str) -> str | None:
        owner, _, name = repository.partition("/")
        with self.db.read_session() as session:
            return session.scalar(
                select(RepoRow.id).where(RepoRow.owner == owner, RepoRow.name == name)
            )

    def pushes(self, repository: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        statement = select(PushEventRow).order_by(PushEventRow.at.desc()).limit(limit)
        if repository:
            statement = statement.where(PushEventRow.repository == repository)
        with self.db.read_session() as session:
            return [
                {
                    "repository": row.repository,
                    "ref": row.ref,
                    "before": row.before,
                    "after": row.after,
                    "pusher": row.pusher,
                    "source": row.source,
                    "at": isoformat(row.at),
                }
                for row in session.scalars(statement)
            ]


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
    """Run git; its error output becomes the exception's message."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        timeout=120,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")
