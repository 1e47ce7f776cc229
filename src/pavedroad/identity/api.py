"""Identity API under ``/api/v1/identity``: who am I, accounts, tokens, service tokens,
permissions and explained decisions.

Changing accounts and service tokens is for admins (``identity.user.manage``,
``identity.service_token.manage``); everyone manages their own personal tokens and
password. Token secrets appear once, in the answer that creates them.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from pavedroad.core.errors import ForbiddenError, InputError
from pavedroad.identity.http import client_ip, require
from pavedroad.identity.policy import Actor, Role, permissions
from pavedroad.identity.service import AuthenticationError, IdentityService

router = APIRouter(prefix="/api/v1/identity", tags=["identity"])

ScopeName = Literal["read", "write", "admin"]


def identity(request: Request) -> IdentityService:
    return request.app.state.identity  # type: ignore[no-any-return]


Identity = Annotated[IdentityService, Depends(identity)]


def signed_in(request: Request) -> Actor:
    actor: Actor | None = request.state.actor
    if actor is None:
        raise AuthenticationError("not signed in: send a personal access token")
    return actor


Me = Annotated[Actor, Depends(signed_in)]


class NewAccount(BaseModel):
    name: str = Field(min_length=1, max_length=63)
    role: Role = Role.member
    password: str | None = Field(default=None, max_length=1024)


class AccountChange(BaseModel):
    role: Role


class PasswordChange(BaseModel):
    current: str | None = Field(default=None, max_length=1024)
    new: str = Field(min_length=1, max_length=1024)


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[ScopeName] = Field(min_length=1)
    expiresInDays: int | None = Field(default=90, ge=1, le=3650)  # None: never


class NewServiceToken(NewToken):
    group: str = Field(min_length=1, max_length=400)


def _lifetime(days: int | None) -> timedelta | None:
    return timedelta(days=days) if days else None


@router.get("/me", summary="Who this request is signed in as")
def get_me(request: Request, me: Me) -> dict[str, Any]:
    return {
        "name": me.name,
        "role": me.role.value,
        "userRef": me.user_ref,
        "groupRef": me.group_ref,
        "via": "session" if request.state.web_session else "token",
        "scopes": sorted(request.state.scopes),
    }


@router.put("/me/password", status_code=204, name="identity.password.change")
def change_my_password(request: Request, me: Me, body: PasswordChange) -> None:
    """Set your password; the current one is needed once you have one. Every portal
    session of yours ends."""
    if me.group_ref is not None:
        raise InputError("a service token has no password")
    request.state.audit_target = f"user:{me.name}"
    request.app.state.sessions.change_password(me.name, body.current, body.new, client_ip(request))


# -- accounts (admins) -----------------------------------------------------------------


@router.get("/users", summary="Every local account")
def list_users(request: Request, service: Identity) -> dict[str, Any]:
    require(request, "identity.user.manage")
    return {"items": service.accounts()}


@router.post("/users", status_code=201, name="identity.user.create")
def create_user(request: Request, service: Identity, body: NewAccount) -> dict[str, Any]:
    require(request, "identity.user.manage")
    request.state.audit_target = f"user:{body.name.lower()}"
    row = service.create_account(body.name, body.role, body.password)
    return next(a for a in service.accounts() if a["name"] == row.name)


@router.patch("/users/{name}", name="identity.user.update")
def update_user(
    request: Request, service: Identity, name: str, body: AccountChange
) -> dict[str, Any]:
    require(request, "identity.user.manage")
    request.state.audit_target = f"user:{name.lower()} role={body.role.value}"
    service.set_role(name, body.role)
    return next(a for a in service.accounts() if a["name"] == name.lower())


# -- personal tokens ---------------------------------------------------------------------


@router.get("/tokens", summary="Your personal access tokens (never their secrets)")
def list_tokens(service: Identity, me: Me) -> dict[str, Any]:
    return {"items": service.tokens(me.name)}


@router.post("/tokens", status_code=201, name="identity.token.create")
def create_token(request: Request, service: Identity, me: Me, body: NewToken) -> dict[str, Any]:
    """A token acting as you; the secret is in this answer only."""
    if me.group_ref is not None:
        raise ForbiddenError("a service token cannot create tokens")
    if "admin" in body.scopes and me.role is not Role.admin:
        raise ForbiddenError("only admins may create tokens with the admin scope")
    info, secret = service.create_token(
        me.name, body.name, list(body.scopes), _lifetime(body.expiresInDays)
    )
    request.state.audit_target = f"token:{info['id']}"
    return {**info, "secret": secret}


@router.delete("/tokens/{token_id}", status_code=204, name="identity.token.revoke")
def revoke_token(request: Request, service: Identity, me: Me, token_id: str) -> None:
    """Revoke one of your tokens (admins: any token, service tokens too)."""
    token = service.token(token_id)
    if token["group"] is not None:
        require(request, "identity.service_token.manage")
    elif token["account"] != me.name:
        require(request, "identity.user.manage")
    service.revoke_token(token_id)


# -- service tokens (admins) ---------------------------------------------------------------


@router.get("/service-tokens", summary="Service tokens of groups")
def list_service_tokens(
    request: Request,
    service: Identity,
    group: Annotated[str | None, Query(max_length=400)] = None,
) -> dict[str, Any]:
    require(request, "identity.service_token.manage")
    return {"items": service.service_tokens(group)}


@router.post("/service-tokens", status_code=201, name="identity.service_token.create")
def create_service_token(
    request: Request, service: Identity, me: Me, body: NewServiceToken
) -> dict[str, Any]:
    """A token that acts as a member of the group (it owns what the group owns)."""
    require(request, "identity.service_token.manage")
    info, secret = service.create_token(
        me.name, body.name, list(body.scopes), _lifetime(body.expiresInDays), group=body.group
    )
    request.state.audit_target = f"{info['group']} token:{info['id']}"
    return {**info, "secret": secret}


# -- decisions -------------------------------------------------------------------------


@router.get("/permissions", summary="Every named permission and who it is for")
def get_permissions() -> list[dict[str, str]]:
    return [
        {"name": p.name, "scope": p.scope.value, "description": p.description}
        for p in permissions()
    ]


@router.get("/can", summary="Whether a user may do something, and why")
def get_can(
    service: Identity,
    user: Annotated[str, Query(min_length=1, max_length=400)],
    permission: Annotated[str, Query(min_length=1, max_length=100)],
    entity: Annotated[str | None, Query(max_length=400)] = None,
) -> dict[str, Any]:
    return asdict(service.can(user, permission, entity))
