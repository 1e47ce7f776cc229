"""Identity API under ``/api/v1/identity``: permissions and explained decisions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from pavedroad.identity.policy import permissions
from pavedroad.identity.service import IdentityService

router = APIRouter(prefix="/api/v1/identity", tags=["identity"])


def identity(request: Request) -> IdentityService:
    return request.app.state.identity  # type: ignore[no-any-return]


Identity = Annotated[IdentityService, Depends(identity)]


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


@router.get("/me", summary="Who this request is signed in as")
def get_me(request: Request) -> dict[str, Any]:
    from pavedroad.identity.service import AuthenticationError

    actor = request.state.actor
    if actor is None:
        raise AuthenticationError("not signed in: send a personal access token")
    return {
        "name": actor.name,
        "role": actor.role.value,
        "userRef": actor.user_ref,
        "scopes": sorted(request.state.scopes),
    }
