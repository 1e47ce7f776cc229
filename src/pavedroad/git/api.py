"""Hosted repositories API under ``/api/v1/git``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pavedroad.git.service import GitService
from pavedroad.identity.http import require

router = APIRouter(prefix="/api/v1/git", tags=["git"])


def git_service(request: Request) -> GitService:
    return request.app.state.git  # type: ignore[no-any-return]


Git = Annotated[GitService, Depends(git_service)]


class NewRepo(BaseModel):
    owner: str = Field(min_length=1, max_length=400, description="a group or user name")
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    defaultBranch: str = Field(default="main", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


def _actor(request: Request) -> str:
    return getattr(request.state, "actor_name", None) or "anonymous"


@router.get("/repos", summary="Hosted repositories")
def list_repos(
    service: Git, owner: Annotated[str | None, Query(max_length=63)] = None
) -> dict[str, Any]:
    return {"items": service.repos(owner)}


@router.post("/repos", status_code=201, name="git.repo.create", summary="Create a repository")
def create_repo(request: Request, service: Git, body: NewRepo) -> dict[str, Any]:
    owner_ref = service.owner_ref(body.owner)
    request.state.audit_target = f"{owner_ref.split('/', 1)[1]}/{body.name}"
    require(request, "git.repo.create", owner_ref)
    return service.create(
        body.owner, body.name, _actor(request), body.description, body.defaultBranch
    )


@router.get("/repos/{owner}/{name}", summary="One repository")
def get_repo(service: Git, owner: str, name: str) -> dict[str, Any]:
    return service.describe(service.repo(owner, name))


@router.delete(
    "/repos/{owner}/{name}", status_code=204, name="git.repo.delete", summary="Delete it"
)
def delete_repo(request: Request, service: Git, owner: str, name: str) -> None:
    row = service.repo(owner, name)
    require(request, "git.repo.delete", row.owner_ref)
    service.delete(owner, name)


@router.get("/repos/{owner}/{name}/pushes", summary="Its recent pushes")
async def repo_pushes(
    service: Git, owner: str, name: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> dict[str, Any]:
    await run_in_threadpool(service.import_spool)  # what the hooks wrote just now
    row = await run_in_threadpool(service.repo, owner, name)
    return {"items": await run_in_threadpool(service.pushes, f"{row.owner}/{row.name}", limit)}
