"""The access policy: named permissions, who owns what, and one decision function.

Every layer registers the permissions it checks (``catalog.entity.delete``,
``secret.read``, ...) with :func:`register_permission`. A decision depends on the
actor's role and on ownership: a user owns an entity when its owner is that user, or
a group the user belongs to directly or through the groups above it (User
``memberOf``, Group ``parent``/``children``). A plugin may override any decision
through the ``pavedroad_authorize`` hook. Every decision explains itself, so the CLI
(``pave can``) and the portal can show why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pavedroad.catalog.queries import CatalogReader
from pavedroad.catalog.refs import parse_ref
from pavedroad.core.errors import InputError


class Role(StrEnum):
    admin = "admin"
    member = "member"
    viewer = "viewer"


class Scope(StrEnum):
    """What a permission needs: any signed-in user (``read``), any member or admin,
    i.e. not a viewer (``member``), an owner of the entity, or an admin."""

    read = "read"
    member = "member"
    owner = "owner"
    admin = "admin"


@dataclass(frozen=True)
class Permission:
    name: str
    scope: Scope
    description: str


_PERMISSIONS: dict[str, Permission] = {}


def register_permission(name: str, scope: Scope, description: str) -> Permission:
    """Add a named permission (idempotent for the same definition)."""
    permission = Permission(name, scope, description)
    existing = _PERMISSIONS.get(name)
    if existing is not None and existing != permission:
        raise ValueError(f"permission {name} is already registered differently")
    _PERMISSIONS[name] = permission
    return permission


def _load_layers() -> None:
    """Every layer's plugin registers its permissions when it loads."""
    from pavedroad.core.plugins import plugin_manager

    plugin_manager()


def permissions() -> list[Permission]:
    _load_layers()
    return sorted(_PERMISSIONS.values(), key=lambda p: p.name)


def permission(name: str) -> Permission:
    _load_layers()
    try:
        return _PERMISSIONS[name]
    except KeyError:
        known = ", ".join(sorted(_PERMISSIONS))
        raise InputError(f"unknown permission {name!r}; known permissions: {known}") from None


register_permission("catalog.entity.read", Scope.read, "See an entity and its relations")
register_permission("catalog.entity.refresh", Scope.owner, "Re-read an entity's source now")
register_permission("catalog.entity.delete", Scope.owner, "Remove an entity from the catalog")
register_permission("catalog.location.create", Scope.member, "Register a location")
register_permission("catalog.location.delete", Scope.admin, "Unregister a location")
register_permission("identity.user.manage", Scope.admin, "Create users and change roles")
register_permission(
    "identity.service_token.manage", Scope.admin, "Create and revoke a group's service tokens"
)
register_permission("audit.read", Scope.admin, "Read and export the audit log")


@dataclass
class Actor:
    """Who is asking: a catalog user (or a local account without one) and a role, or
    a group's service token, which acts as a member of that group."""

    name: str
    role: Role
    user_ref: str | None = None
    group_ref: str | None = None


@dataclass
class Decision:
    allowed: bool
    permission: str
    actor: str
    entity: str | None
    reason: str
    owners: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def groups_of(reader: CatalogReader, user_ref: str) -> list[str]:
    """The groups a user belongs to: directly (``memberOf``) and every group above
    those (``childOf``), nearest first."""
    direct = [
        g["targetRef"]
        for g in reader.relations_of([user_ref]).get(user_ref, [])
        if g["type"] == "memberOf"
    ]
    return with_parent_groups(reader, direct)


def with_parent_groups(reader: CatalogReader, groups: list[str]) -> list[str]:
    """The groups and every group above them (``childOf``), nearest first."""
    found: list[str] = []
    frontier = groups
    while frontier:
        fresh = [g for g in dict.fromkeys(frontier) if g not in found]
        found.extend(fresh)
        parents = reader.relations_of(fresh)
        frontier = [
            r["targetRef"] for g in fresh for r in parents.get(g, []) if r["type"] == "childOf"
        ]
    return found


def owners_of(reader: CatalogReader, entity_ref: str) -> list[str]:
    return [
        r["targetRef"]
        for r in reader.relations_of([entity_ref]).get(entity_ref, [])
        if r["type"] == "ownedBy"
    ]


def decide(
    reader: CatalogReader, actor: Actor, permission_name: str, entity: str | None = None
) -> Decision:
    """Whether ``actor`` may do ``permission_name`` (to ``entity``), and why."""
    wanted = permission(permission_name)
    entity_ref = parse_ref(entity, "component").key if entity else None
    if wanted.scope is Scope.owner and entity_ref is None:
        raise InputError(f"{permission_name} applies to an entity: name one")
    decision = _decide(reader, actor, wanted, entity_ref)
    from pavedroad.core.plugins import plugin_manager

    for override in plugin_manager().hook.pavedroad_authorize(
        decision=decision, actor=actor, permission=wanted, entity_ref=entity_ref
    ):
        if override is not None:
            return override  # type: ignore[no-any-return]
    return decision


def _decide(
    reader: CatalogReader, actor: Actor, wanted: Permission, entity_ref: str | None
) -> Decision:
    def result(
        allowed: bool, reason: str, owners: list[str] | None = None, groups: list[str] | None = None
    ) -> Decision:
        return Decision(
            allowed, wanted.name, actor.name, entity_ref, reason, owners or [], groups or []
        )

    if actor.role is Role.admin:
        return result(True, f"{actor.name} is an admin; admins may do everything")
    if wanted.scope is Scope.read:
        return result(True, f"every signed-in user may {wanted.description.lower()}")
    if wanted.scope is Scope.admin:
        return result(
            False, f"{wanted.name} is for admins only and {actor.name} is a {actor.role.value}"
        )
    if actor.role is Role.viewer:
        return result(
            False,
            f"{actor.name} is a viewer; viewers cannot change anything",
            owners_of(reader, entity_ref) if entity_ref else [],
        )
    if wanted.scope is Scope.member:
        return result(True, f"every member may {wanted.description.lower()}")
    assert entity_ref is not None
    if reader.row_by_ref(entity_ref) is None:
        return result(False, f"there is no entity {entity_ref}")
    owners = owners_of(reader, entity_ref)
    groups = (
        groups_of(reader, actor.user_ref)
        if actor.user_ref
        else with_parent_groups(reader, [actor.group_ref])
        if actor.group_ref
        else []
    )
    mine = [o for o in owners if o == actor.user_ref or o in groups]
    if entity_ref == actor.user_ref or entity_ref in groups:
        mine.append(entity_ref)  # a user owns their own User; members own their group
    if mine:
        via = mine[0]
        how = (
            "directly"
            if via == actor.user_ref
            else f"as a member of {via}"
            if via != entity_ref
            else "as a member"
        )
        return result(True, f"{actor.name} owns {entity_ref} {how}", owners, groups)
    if entity_ref.startswith("group:") and not owners:
        return result(
            False,
            f"{wanted.name} needs membership of {entity_ref}; {actor.name} is not a member "
            "of it or of a team within it",
            owners,
            groups,
        )
    owned_by = ", ".join(owners) or "nobody"
    return result(
        False,
        f"{wanted.name} needs ownership of {entity_ref}, which is owned by "
        f"{owned_by}; {actor.name} is not a member of an owning group",
        owners,
        groups,
    )
