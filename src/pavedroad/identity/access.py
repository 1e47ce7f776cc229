"""What pages show about access to one entity: its owners and, for the viewer (and,
for admins, any other user), every permission that applies to an entity with the
policy's decision and its reason.

Permissions that apply to an entity are the owner-scoped ones and the read-scoped
``catalog.entity.*`` ones; a layer that registers an owner-scoped permission
(``secret.read``, ``deployment.promote``) appears on every entity page without a
change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pavedroad.catalog.queries import CatalogReader
from pavedroad.core.errors import NotFoundError
from pavedroad.identity.policy import (
    Actor,
    Decision,
    Permission,
    Role,
    Scope,
    decide,
    owners_of,
    permissions,
)
from pavedroad.identity.service import IdentityService

ENTITY_READ_PREFIX = "catalog.entity."
WHO_MAX = 400


def entity_permissions() -> list[Permission]:
    """The registered permissions that apply to one entity."""
    return [
        p
        for p in permissions()
        if p.scope is Scope.owner
        or (p.scope is Scope.read and p.name.startswith(ENTITY_READ_PREFIX))
    ]


@dataclass(frozen=True)
class DecisionRow:
    permission: Permission
    decision: Decision


@dataclass
class EntityAccess:
    """``enforced`` is false when access control is off (``auth.required: false``) and
    nobody is signed in: then anyone may do everything."""

    enforced: bool
    actor: Actor | None
    owners: list[str]
    rows: list[DecisionRow] = field(default_factory=list)
    can_check_others: bool = False
    who: str | None = None
    who_rows: list[DecisionRow] = field(default_factory=list)
    who_error: str | None = None

    def allows(self, permission_name: str) -> bool:
        """Whether the viewer may do this (so the page offers the action)."""
        if self.actor is None:
            return not self.enforced
        return any(r.decision.allowed for r in self.rows if r.permission.name == permission_name)


def entity_access(
    reader: CatalogReader,
    identity: IdentityService,
    actor: Actor | None,
    entity_ref: str,
    *,
    enforced: bool,
    who: str | None = None,
) -> EntityAccess:
    """The access panel of ``entity_ref`` as ``actor`` sees it; ``who`` (admins, or
    anyone while access control is off) names another user to check."""
    wanted = entity_permissions()
    access = EntityAccess(
        enforced=enforced or actor is not None,
        actor=actor,
        owners=owners_of(reader, entity_ref),
        rows=_decisions(reader, actor, wanted, entity_ref) if actor else [],
        can_check_others=actor.role is Role.admin if actor else not enforced,
    )
    who = (who or "").strip()[:WHO_MAX]
    if who and access.can_check_others:
        access.who = who
        try:
            other = identity.actor(who)
        except NotFoundError as exc:
            access.who_error = exc.detail
        else:
            access.who_rows = _decisions(reader, other, wanted, entity_ref)
    return access


def _decisions(
    reader: CatalogReader, actor: Actor, wanted: list[Permission], entity_ref: str
) -> list[DecisionRow]:
    return [DecisionRow(p, decide(reader, actor, p.name, entity_ref)) for p in wanted]
