"""Where releases can run: the environments declared in the catalog (``Environment``
entities, ``pavedroad.dev/v1alpha1``) and those made at run time (a branch's preview,
``pave env create``), read as one list of :class:`Environment`.

An environment's spec says how releases get there::

    spec:
      type: production            # development, staging, production, preview
      owner: group:platform-team
      runtime: local              # the process runtime on this host
      promotesFrom: staging       # a release must have been live there first
      approval: {approvals: 1, expiresAfter: 24h}   # from the component's team, not the requester
      autoDeploy: [{defaultBranch: true}]           # or [{branch: "release/*"}]
      previews: {ttl: 72h}        # the base of branch previews
      variables: {LOG_LEVEL: warning}
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from pavedroad.catalog.processing import EntityValidationError
from pavedroad.catalog.queries import EntityQuery, parse_filters
from pavedroad.catalog.service import CatalogService
from pavedroad.core.db import Database
from pavedroad.core.errors import ConflictError, InputError, NotFoundError
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.environments.models import EnvironmentRow

TYPES = ("development", "staging", "production", "preview")
RUNTIMES = ("local",)
DEFAULT_PREVIEW_TTL = timedelta(hours=72)
DEFAULT_APPROVAL_EXPIRY = timedelta(hours=24)
PREVIEW_PREFIX = "preview-"
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str) -> timedelta:
    """``30m``, ``72h``, ``7d``."""
    match = _DURATION.match(str(text).strip())
    if not match:
        raise InputError(f"{what} must be a duration such as 30m, 72h or 7d, not {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InputError(
            f"{name[:80]!r} is not an environment name: lowercase letters, digits and '-', "
            "at most 63, starting and ending with a letter or digit"
        )
    return name


def preview_name(branch: str) -> str:
    """``preview-<slug>``: the branch as a DNS label (lowercase ASCII letters, digits and
    '-'), cut to fit 63 characters with a short hash when it had to be changed or cut, so
    two branches never share a preview by accident."""
    import hashlib

    ascii_text = unicodedata.normalize("NFKD", branch).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-") or "branch"
    room = 63 - len(PREVIEW_PREFIX)
    if slug == branch and len(slug) <= room:
        return PREVIEW_PREFIX + slug
    digest = hashlib.sha256(branch.encode()).hexdigest()[:6]
    slug = slug[: room - len(digest) - 1].strip("-")
    return f"{PREVIEW_PREFIX}{slug}-{digest}"


@dataclass(frozen=True)
class ApprovalPolicy:
    approvals: int
    expires_after: timedelta


@dataclass(frozen=True)
class Environment:
    name: str
    type: str
    owner: str
    title: str = ""
    description: str = ""
    runtime: str = "local"
    promotes_from: str | None = None
    approval: ApprovalPolicy | None = None
    auto_deploy: tuple[dict[str, Any], ...] = ()
    preview_ttl: timedelta | None = None  # set on the base of previews
    variables: dict[str, str] = field(default_factory=dict)
    source: str = "catalog"  # catalog, preview, api
    base: str | None = None
    branch: str | None = None
    expires_at: datetime | None = None
    created_by: str | None = None

    @property
    def ref(self) -> str:
        return f"environment:default/{self.name}"

    @property
    def removable(self) -> bool:
        return self.source != "catalog"

    def auto_deploys(self, branch: str | None, default_branch: str | None) -> bool:
        """Whether a release built from ``branch`` goes live here by itself."""
        from pavedroad.pipelines.runs import glob_match

        if branch is None:
            return False
        for rule in self.auto_deploy:
            if rule.get("defaultBranch") and default_branch and branch == default_branch:
                return True
            if isinstance(rule.get("branch"), str) and glob_match(rule["branch"], branch):
                return True
        return False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "title": self.title or self.name,
            "type": self.type,
            "owner": self.owner,
            "description": self.description,
            "runtime": self.runtime,
            "promotesFrom": self.promotes_from,
            "approval": (
                {
                    "approvals": self.approval.approvals,
                    "expiresAfterSeconds": int(self.approval.expires_after.total_seconds()),
                }
                if self.approval
                else None
            ),
            "autoDeploy": list(self.auto_deploy),
            "previewTtlSeconds": (
                int(self.preview_ttl.total_seconds()) if self.preview_ttl else None
            ),
            "variables": self.variables,
            "source": self.source,
            "base": self.base,
            "branch": self.branch,
            "expiresAt": isoformat(self.expires_at) if self.expires_at else None,
            "createdBy": self.created_by,
        }


def from_spec(
    name: str, spec: dict[str, Any], *, title: str = "", source: str = "catalog", **extra: Any
) -> Environment:
    """An :class:`Environment` from an entity's (already schema-checked) spec."""
    approval = spec.get("approval")
    previews = spec.get("previews")
    return Environment(
        name=name,
        type=str(spec.get("type") or "development"),
        owner=str(spec.get("owner") or ""),
        title=title,
        description=str(spec.get("description") or ""),
        runtime=str(spec.get("runtime") or "local"),
        promotes_from=spec.get("promotesFrom") or None,
        approval=(
            ApprovalPolicy(
                approvals=int(approval.get("approvals") or 1),
                expires_after=(
                    parse_duration(approval["expiresAfter"], "approval.expiresAfter")
                    if approval.get("expiresAfter")
                    else DEFAULT_APPROVAL_EXPIRY
                ),
            )
            if isinstance(approval, dict)
            else None
        ),
        auto_deploy=tuple(r for r in spec.get("autoDeploy") or [] if isinstance(r, dict)),
        preview_ttl=(
            parse_duration(previews.get("ttl") or "72h", "previews.ttl")
            if isinstance(previews, dict)
            else None
        ),
        variables={
            str(k): _text(v) for k, v in (spec.get("variables") or {}).items() if v is not None
        },
        source=source,
        **extra,
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class EnvironmentDirectory:
    """Every environment, by name: the catalog's and the run-time ones."""

    def __init__(self, db: Database, catalog: CatalogService) -> None:
        self.db = db
        self.catalog = catalog

    def all(self) -> list[Environment]:
        found = {env.name: env for env in self._declared()}
        for row in self._rows():
            found.setdefault(row.name, _from_row(row))
        order = {kind: index for index, kind in enumerate(TYPES)}
        return sorted(found.values(), key=lambda e: (order.get(e.type, 9), e.name))

    def get(self, name: str) -> Environment:
        for env in self.all():
            if env.name == name:
                return env
        raise NotFoundError(f"there is no environment {name[:80]!r}")

    def find(self, name: str) -> Environment | None:
        try:
            return self.get(name)
        except NotFoundError:
            return None

    def preview_base(self) -> Environment | None:
        """The environment previews are made from: the first with ``previews``."""
        return next((e for e in self.all() if e.preview_ttl and e.source == "catalog"), None)

    def create(
        self,
        name: str,
        spec: dict[str, Any],
        actor: str,
        *,
        source: str = "api",
        base: str | None = None,
        branch: str | None = None,
        expires_at: datetime | None = None,
    ) -> Environment:
        """A run-time environment (checked against the Environment kind's schema)."""
        from pavedroad.catalog.kinds import PLATFORM_VERSION

        check_name(name)
        entity = {
            "apiVersion": PLATFORM_VERSION,
            "kind": "Environment",
            "metadata": {"name": name},
            "spec": spec,
        }
        try:
            self.catalog.validate_entity(entity)
        except EntityValidationError as error:
            raise InputError(f"environment {name}: {error.detail}") from None
        if self.find(name) is not None:
            raise ConflictError(f"environment {name} exists")
        if spec.get("promotesFrom") and self.find(spec["promotesFrom"]) is None:
            raise InputError(f"promotesFrom names no environment: {spec['promotesFrom']!r}")
        row = EnvironmentRow(
            name=name,
            type=str(spec["type"]),
            spec=spec,
            base=base,
            branch=branch,
            source=source,
            created_by=actor,
            created_at=utcnow(),
            expires_at=expires_at,
        )
        with self.db.session() as session:
            if session.get(EnvironmentRow, name) is not None:
                raise ConflictError(f"environment {name} exists")
            session.add(row)
        return _from_row(row)

    def extend(self, name: str, expires_at: datetime) -> None:
        with self.db.session() as session:
            row = session.get(EnvironmentRow, name, with_for_update=True)
            if row is not None and (row.expires_at is None or as_utc(row.expires_at) < expires_at):
                row.expires_at = expires_at

    def forget(self, name: str) -> None:
        """Drop a run-time environment's record (what ran in it is stopped first)."""
        with self.db.session() as session:
            row = session.get(EnvironmentRow, name)
            if row is not None:
                session.delete(row)

    def expired(self, now: datetime | None = None) -> list[Environment]:
        now = now or utcnow()
        return [
            e
            for e in (_from_row(r) for r in self._rows())
            if e.expires_at is not None and e.expires_at <= now
        ]

    def previews_of_branch(self, branch: str) -> list[Environment]:
        return [_from_row(r) for r in self._rows() if r.source == "preview" and r.branch == branch]

    def _declared(self) -> list[Environment]:
        query = EntityQuery(filter=parse_filters(["kind=environment"]), limit=1000)
        with self.catalog.reader() as reader:
            items = reader.query(query).items
        found = []
        for entity in items:
            metadata = entity.get("metadata") or {}
            spec = entity.get("spec") or {}
            try:
                found.append(
                    from_spec(
                        str(metadata.get("name")), spec, title=str(metadata.get("title") or "")
                    )
                )
            except InputError:
                continue  # the schema let through what the reader cannot use: leave it out
        return found

    def _rows(self) -> list[EnvironmentRow]:
        with self.db.read_session() as session:
            return list(session.scalars(select(EnvironmentRow).order_by(EnvironmentRow.name)))


def _from_row(row: EnvironmentRow) -> Environment:
    return from_spec(
        row.name,
        row.spec,
        source=row.source,
        base=row.base,
        branch=row.branch,
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        created_by=row.created_by,
    )
