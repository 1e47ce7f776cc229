"""Secrets API under ``/api/v1/secrets``.

A secret is addressed by its name and its scope, given as query parameters:
``entity`` (an entity ref) and/or ``environment`` (an environment name); neither means
a global secret. Reading a value and every change need ownership of the scope's entity
(the environment's entity for an environment's secrets; admins for global ones). Lists
and histories are metadata only and open to every signed-in user.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from pavedroad.core import audit
from pavedroad.core.errors import InputError, NotFoundError
from pavedroad.identity.http import client_ip, require
from pavedroad.secrets.generate import Generator
from pavedroad.secrets.scopes import NAME_RULE, SecretScope
from pavedroad.secrets.service import SecretStore, Write

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"])

EntityParam = Annotated[
    str | None, Query(max_length=400, description="the entity ref the secret belongs to")
]
EnvironmentParam = Annotated[
    str | None, Query(max_length=63, description="the environment the secret belongs to")
]
Rotation = Annotated[str | None, Field(default=None, max_length=20, examples=["30d"])]


def store(request: Request) -> SecretStore:
    return request.app.state.secrets  # type: ignore[no-any-return]


Store = Annotated[SecretStore, Depends(store)]


def scope_of(entity: EntityParam = None, environment: EnvironmentParam = None) -> SecretScope:
    return SecretScope.parse(entity, environment)


Scope = Annotated[SecretScope, Depends(scope_of)]


class SetValue(BaseModel):
    value: str = Field(description="at most 64 KiB")
    expectedVersion: int | None = Field(default=None, ge=0, description="0: must not exist")
    rotateEvery: Rotation = None


class GenerateValue(BaseModel):
    length: int = Field(default=32, ge=8, le=4096)
    alphabet: str = Field(default="alphanumeric", min_length=1, max_length=200)
    bytes: int | None = Field(default=None, ge=8, le=4096)
    encoding: Literal["hex", "base64", "base64url"] = "base64url"
    expectedVersion: int | None = Field(default=None, ge=0)
    rotateEvery: Rotation = None


class Rollback(BaseModel):
    version: int = Field(ge=1)
    expectedVersion: int | None = Field(default=None, ge=0)


def allow(request: Request, scope: SecretScope, reading: bool) -> None:
    """The scope's entity must exist, and the caller may read or change its secrets."""
    target = scope.target
    if target is None:
        require(request, "secret.global.read" if reading else "secret.global.write")
        return
    with request.app.state.catalog.reader() as reader:
        if reader.row_by_ref(target) is None:
            raise NotFoundError(f"there is no {target} in the catalog to keep secrets for")
    require(request, "secret.read" if reading else "secret.write", target)


def actor_name(request: Request) -> str:
    return getattr(request.state, "actor_name", None) or "anonymous"


def read_event(request: Request) -> audit.AuditEvent:
    """The ``secret.read`` event the store records before it returns a value (the
    store fills in the target)."""
    return audit.AuditEvent(
        actor=actor_name(request),
        action="secret.read",
        target="",
        outcome="success",
        status=200,
        source_ip=client_ip(request),
        request_id=getattr(request.state, "request_id", None),
    )


def _changing(request: Request, scope: SecretScope, name: str) -> Write:
    request.state.audit_target = f"{scope.label}/{name}"[:2000]
    allow(request, scope, reading=False)
    return Write(actor_name(request))


@router.get("", summary="Secrets of a scope (metadata only, never values)")
def list_secrets(
    service: Store,
    entity: EntityParam = None,
    environment: EnvironmentParam = None,
    includeDeleted: bool = False,
) -> dict[str, Any]:
    scope = SecretScope.parse(entity, environment)
    return {
        "items": service.find(
            scope.entity_ref if entity is not None else None,
            scope.environment if environment is not None else None,
            include_deleted=includeDeleted,
        )
    }


@router.put("/{name}", name="secret.set", summary="Set a value (a new version)")
def set_secret(
    request: Request, service: Store, scope: Scope, name: str, body: SetValue
) -> dict[str, Any]:
    write = _changing(request, scope, name)
    return service.set(
        scope,
        name,
        body.value,
        Write(write.actor, body.expectedVersion),
        body.rotateEvery,
    )


@router.post("/{name}/generate", name="secret.generate", summary="Generate a value")
def generate_secret(
    request: Request, service: Store, scope: Scope, name: str, body: GenerateValue
) -> dict[str, Any]:
    write = _changing(request, scope, name)
    generator = Generator(body.length, body.alphabet, body.bytes, body.encoding)
    return service.generate(
        scope, name, generator, Write(write.actor, body.expectedVersion), body.rotateEvery
    )


@router.get("/{name}", summary="A secret's metadata")
def get_secret(service: Store, scope: Scope, name: str) -> dict[str, Any]:
    return service.metadata(scope, name)


@router.get(
    "/{name}/value",
    name="secret.read",  # a refusal is recorded under this name; a read by the store
    summary="Read the value (recorded in the audit log)",
)
def reveal_secret(
    request: Request,
    service: Store,
    scope: Scope,
    name: str,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    request.state.audit_target = f"{scope.label}/{name}"[:2000]
    allow(request, scope, reading=True)
    value, meta = service.reveal(scope, name, version, read_event(request))
    return {**meta, "version": version or meta["version"], "value": value}


@router.get("/{name}/versions", summary="Every kept version (metadata only)")
def secret_history(service: Store, scope: Scope, name: str) -> dict[str, Any]:
    return {"items": service.history(scope, name)}


@router.post("/{name}/rollback", name="secret.rollback", summary="A new version with an old value")
def rollback_secret(
    request: Request, service: Store, scope: Scope, name: str, body: Rollback
) -> dict[str, Any]:
    write = _changing(request, scope, name)
    return service.rollback(scope, name, body.version, Write(write.actor, body.expectedVersion))


@router.post("/{name}/rotate", name="secret.rotate", summary="Generate a new value now")
def rotate_secret(request: Request, service: Store, scope: Scope, name: str) -> dict[str, Any]:
    write = _changing(request, scope, name)
    return service.rotate(scope, name, write.actor)


@router.delete("/{name}", name="secret.delete", summary="Soft delete (restore brings it back)")
def delete_secret(request: Request, service: Store, scope: Scope, name: str) -> dict[str, Any]:
    _changing(request, scope, name)
    return service.delete(scope, name)


@router.post("/{name}/restore", name="secret.restore", summary="Undo a delete")
def restore_secret(request: Request, service: Store, scope: Scope, name: str) -> dict[str, Any]:
    _changing(request, scope, name)
    return service.restore(scope, name)


@router.api_route("/{path:path}", methods=["GET", "PUT", "POST", "DELETE"], include_in_schema=False)
def not_a_secret_name(path: str) -> None:
    """A name with ``/`` in it (``a/b``, ``../x``) reaches no route above: say why."""
    raise InputError(
        f"{path[:120]!r} is not a valid secret name: names cannot contain '/' (use {NAME_RULE})"
    )
