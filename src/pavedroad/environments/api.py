"""Environments API: ``/api/v1/environments``, ``/deployments``, ``/releases``,
``/approvals`` and ``/instances``."""

from __future__ import annotations

import asyncio
import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pavedroad.catalog.queries import CatalogReader
from pavedroad.catalog.refs import parse_ref
from pavedroad.core.errors import InputError, PayloadTooLargeError
from pavedroad.core.http import event_stream
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.environments.deployments import DeploymentService
from pavedroad.environments.models import DeploymentRow, LiveRow
from pavedroad.identity.http import require
from pavedroad.identity.policy import decide

router = APIRouter(prefix="/api/v1", tags=["environments"])

MAX_SCORE_BYTES = 256 * 1024
MAX_RELEASE_FILES = 20_000
STREAM_POLL_SECONDS = 0.5


def deployment_service(request: Request) -> DeploymentService:
    return request.app.state.deployments  # type: ignore[no-any-return]


Deployments = Annotated[DeploymentService, Depends(deployment_service)]


def _actor(request: Request) -> str:
    return getattr(request.state, "actor_name", None) or "anonymous"


def allowed(request: Request, permission_name: str, entity: str | None) -> bool:
    """Whether the caller may (for showing actions; the action itself checks again)."""
    actor = getattr(request.state, "actor", None)
    if actor is None:
        return not request.app.state.settings.auth.required
    with request.app.state.db.read_session() as session:
        return decide(CatalogReader(session), actor, permission_name, entity).allowed


# -- environments ------------------------------------------------------------------------


class EnvironmentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=63, examples=["load-test"])
    type: str = Field(default="development", examples=["development"])
    owner: str = Field(min_length=1, max_length=400, examples=["group:platform-team"])
    description: str = Field(default="", max_length=2000)
    promotesFrom: str | None = Field(default=None, max_length=63)
    approval: dict[str, Any] | None = None
    autoDeploy: list[dict[str, Any]] | None = None
    variables: dict[str, str | int | float | bool] = Field(default_factory=dict)


@router.get("/environments", summary="Every environment, with what is live in each")
def list_environments(service: Deployments) -> dict[str, Any]:
    lives = service.lives()
    items = []
    for env in service.environments.all():
        data = env.as_dict()
        data["live"] = [_live(live) for live in lives if live.environment == env.name]
        items.append(data)
    return {"items": items}


@router.get("/environments/matrix", summary="Components by environments: what is live where")
def environment_matrix(request: Request, service: Deployments) -> dict[str, Any]:
    return matrix(request, service)


def matrix(request: Request, service: DeploymentService) -> dict[str, Any]:
    """Each component with something deployed (or deploying), and per environment its
    live release, the newest deployment's status, URL, age, and what the caller may do."""
    envs = service.environments.all()
    lives = {(live.component, live.environment): live for live in service.lives()}
    latest: dict[tuple[str, str], DeploymentRow] = {}
    earlier: dict[tuple[str, str], bool] = {}  # a release before the live one went live
    for row in service.recent(limit=2000):
        latest.setdefault((row.component, row.environment), row)
        here = lives.get((row.component, row.environment))
        if row.status == "replaced" and here is not None and row.release_id != here.release_id:
            earlier[(row.component, row.environment)] = True
    components = sorted({c for c, _ in lives} | {c for c, _ in latest})
    now = utcnow()
    rows = []
    for component in components:
        may_deploy = allowed(request, "deployment.create", component)
        may_approve = allowed(request, "deployment.approve", component)
        cells = {}
        for env in envs:
            live = lives.get((component, env.name))
            last = latest.get((component, env.name))
            source_live = lives.get((component, env.promotes_from or ""))
            actions = []
            behind = source_live is not None and (
                live is None or live.release_id != source_live.release_id
            )
            if may_deploy and env.promotes_from and behind:
                actions.append("promote")
            if may_deploy and live is not None and earlier.get((component, env.name)):
                actions.append("rollback")
            if (
                may_approve
                and last is not None
                and last.status == "awaiting-approval"
                and last.requested_by != _actor(request)
            ):
                actions.append("approve")
            cells[env.name] = {
                "release": live.release_id if live else None,
                "url": live.url if live else None,
                "since": isoformat(live.since) if live else None,
                "ageSeconds": int((now - as_utc(live.since)).total_seconds()) if live else None,
                "deployment": (
                    {"id": last.id, "number": last.number, "status": last.status} if last else None
                ),
                "actions": actions,
            }
        rows.append({"component": component, "environments": cells})
    return {"environments": [e.as_dict() for e in envs], "components": rows}


@router.get("/environments/{name}", summary="One environment, what is live in it, its history")
def get_environment(service: Deployments, name: str) -> dict[str, Any]:
    env = service.environments.get(name)
    data = env.as_dict()
    data["live"] = [_live(live) for live in service.lives(environment=name)]
    data["deployments"] = [service.describe(d) for d in service.recent(environment=name)]
    return data


@router.post(
    "/environments",
    status_code=201,
    name="environment.create",
    summary="Make an environment outside the catalog",
)
def create_environment(request: Request, service: Deployments, body: EnvironmentCreate) -> Any:
    require(request, "environment.manage")
    spec: dict[str, Any] = {
        "type": body.type,
        "owner": body.owner,
        "description": body.description,
        "runtime": "local",
        "variables": body.variables,
    }
    for key, value in (
        ("promotesFrom", body.promotesFrom),
        ("approval", body.approval),
        ("autoDeploy", body.autoDeploy),
    ):
        if value:
            spec[key] = value
    env = service.environments.create(body.name, spec, _actor(request))
    return env.as_dict()


@router.delete(
    "/environments/{name}",
    name="environment.delete",
    summary="Remove an environment and all that runs in it",
)
def delete_environment(request: Request, service: Deployments, name: str) -> dict[str, Any]:
    require(request, "environment.manage")
    removed = service.remove_environment(name, _actor(request))
    return {"name": name, "removed": removed}


# -- deployments -----------------------------------------------------------------------


class DeployRequest(BaseModel):
    component: str = Field(min_length=1, max_length=400, examples=["component:default/orders"])
    environment: str = Field(min_length=1, max_length=63, examples=["development"])
    release: str = Field(min_length=1, max_length=100, description="release id (or prefix)")


class PromoteRequest(BaseModel):
    component: str = Field(min_length=1, max_length=400)
    to: str = Field(min_length=1, max_length=63, examples=["production"])


class RollbackRequest(BaseModel):
    component: str = Field(min_length=1, max_length=400)
    environment: str = Field(min_length=1, max_length=63)
    to: str | None = Field(
        default=None, max_length=100, description="a release; default: the one before"
    )


class Decision(BaseModel):
    deployment: str = Field(min_length=1, max_length=40)
    decision: str = Field(default="approve", pattern="^(approve|reject)$")
    comment: str | None = Field(default=None, max_length=2000)


def _requested(response: Response, service: DeploymentService, requested: Any) -> dict[str, Any]:
    response.status_code = 201 if requested.created else 200
    data = service.describe(requested.deployment)
    data["joined"] = not requested.created
    return data


def _component(text: str) -> str:
    return parse_ref(text.strip(), "component").key


@router.get("/deployments", summary="Deployments, newest first")
def list_deployments(
    service: Deployments,
    component: str | None = None,
    environment: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    rows = service.recent(component, environment, status, limit)
    return {"items": [service.describe(row) for row in rows]}


@router.post(
    "/deployments",
    name="deployment.create",
    summary="Deploy a release of a component to an environment",
)
def create_deployment(
    request: Request, response: Response, service: Deployments, body: DeployRequest
) -> dict[str, Any]:
    component = _component(body.component)
    require(request, "deployment.create", component)
    requested = service.deploy(component, body.environment, body.release, _actor(request))
    return _requested(response, service, requested)


@router.post(
    "/deployments/promote",
    name="deployment.promote",
    summary="Promote the release live where it comes from",
)
def promote(
    request: Request, response: Response, service: Deployments, body: PromoteRequest
) -> dict[str, Any]:
    component = _component(body.component)
    require(request, "deployment.create", component)
    return _requested(response, service, service.promote(component, body.to, _actor(request)))


@router.post(
    "/deployments/rollback",
    name="deployment.rollback",
    summary="Redeploy the previous (or a given) release",
)
def rollback(
    request: Request, response: Response, service: Deployments, body: RollbackRequest
) -> dict[str, Any]:
    component = _component(body.component)
    require(request, "deployment.create", component)
    requested = service.rollback(component, body.environment, _actor(request), to=body.to)
    return _requested(response, service, requested)


@router.get("/deployments/{deployment_id}", summary="A deployment with its timeline")
def get_deployment(service: Deployments, deployment_id: str) -> dict[str, Any]:
    return service.describe(service.get(deployment_id), full=True)


@router.post(
    "/deployments/{deployment_id}/cancel",
    name="deployment.cancel",
    summary="Cancel a waiting deployment",
)
def cancel_deployment(request: Request, service: Deployments, deployment_id: str) -> Any:
    row = service.get(deployment_id)
    require(request, "deployment.create", row.component)
    return service.describe(service.cancel(row.id, _actor(request)), full=True)


@router.get("/approvals", summary="Deployments waiting for an approval the caller may give")
def list_approvals(request: Request, service: Deployments) -> dict[str, Any]:
    waiting = service.recent(status="awaiting-approval", limit=500)
    me = _actor(request)
    items = []
    for row in waiting:
        data = service.describe(row)
        data["mayApprove"] = row.requested_by != me and allowed(
            request, "deployment.approve", row.component
        )
        items.append(data)
    return {"items": items}


@router.post(
    "/approvals",
    name="deployment.decide",
    summary="Approve or reject a deployment waiting for approval",
)
def decide_approval(request: Request, service: Deployments, body: Decision) -> dict[str, Any]:
    row = service.get(body.deployment)
    require(request, "deployment.approve", row.component)
    actor = _actor(request)
    if body.decision == "approve":
        decided = service.approve(row.id, actor, body.comment)
    else:
        decided = service.reject(row.id, actor, body.comment)
    return service.describe(decided, full=True)


# -- instances and logs ------------------------------------------------------------------


@router.get("/instances", summary="Running instances (pave ps)")
def list_instances(
    service: Deployments, component: str | None = None, environment: str | None = None
) -> dict[str, Any]:
    wanted = _component(component) if component else None
    return {"items": service.runtime.instances(wanted, environment)}


@router.get(
    "/environments/{environment}/components/{component}/logs",
    summary="The live instances' log lines; follow=true streams them as server-sent events",
)
async def component_logs(
    request: Request,
    service: Deployments,
    environment: str,
    component: str,
    tail: Annotated[int, Query(ge=0, le=10_000)] = 100,
    follow: bool = False,
) -> Any:
    ref = _component(component)
    live = await run_in_threadpool(service.live, ref, environment)
    if live is None:
        raise InputError(f"nothing of {ref} is live in {environment}")
    lines = await run_in_threadpool(service.runtime.logs, list(live.instances), tail)
    if not follow:
        return {"component": ref, "environment": environment, "lines": lines}
    return event_stream(_follow(request, service, list(live.instances), lines))


async def _follow(
    request: Request, service: DeploymentService, instances: list[str], first: list[str]
) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    for line in first:
        yield f"event: log\ndata: {json.dumps(line)}\n\n".encode()
    cursor = await run_in_threadpool(service.runtime.log_cursor, instances)
    began = time.monotonic()
    while time.monotonic() - began < 6 * 3600:
        if await request.is_disconnected():
            return
        lines, cursor = await run_in_threadpool(service.runtime.logs_since, instances, cursor)
        for line in lines:
            yield f"event: log\ndata: {json.dumps(line)}\n\n".encode()
        if not lines:
            await asyncio.sleep(STREAM_POLL_SECONDS)


# -- releases ----------------------------------------------------------------------------


@router.get("/releases", summary="Releases, newest first")
def list_releases(
    service: Deployments,
    component: str | None = None,
    branch: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    wanted = _component(component) if component else None
    releases = service.releases.list(component=wanted, branch=branch, limit=limit)
    return {"items": [r.as_dict() for r in releases]}


@router.get("/releases/{release_id}", summary="A release, with where it is live")
def get_release(service: Deployments, release_id: str) -> dict[str, Any]:
    release = service.releases.get(release_id)
    data = release.as_dict()
    data["score"] = release.score_text
    data["live"] = [
        _live(live)
        for live in service.lives(component=release.component)
        if live.release_id == release.id
    ]
    return data


@router.post(
    "/releases",
    status_code=201,
    name="release.create",
    summary="Make a release from an uploaded .tar.gz of a service's files (pave release create)",
)
async def create_release(
    request: Request, response: Response, service: Deployments, component: str
) -> Any:
    ref = _component(component)
    require(request, "release.create", ref)
    limit = request.app.state.settings.pipelines.artifact_max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"a release is at most {limit} bytes")
    with tempfile.TemporaryDirectory(prefix="pavedroad-release-") as folder:
        upload = Path(folder) / "upload.tar.gz"
        size = 0
        with upload.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"a release is at most {limit} bytes")
                handle.write(chunk)
        release, created = await run_in_threadpool(
            _release_from_upload, service, upload, Path(folder) / "files", ref, _actor(request)
        )
    data = release.as_dict()
    data["created"] = created
    response.status_code = 201 if created else 200  # the same files were released before
    return data


def _release_from_upload(
    service: DeploymentService, upload: Path, root: Path, component: str, actor: str
) -> Any:
    from pavedroad.pipelines.artifacts import _walk

    root.mkdir()
    try:
        with tarfile.open(upload, mode="r:gz") as archive:
            members = archive.getmembers()
            if len(members) > MAX_RELEASE_FILES:
                raise InputError(f"a release holds at most {MAX_RELEASE_FILES} files")
            archive.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise InputError(f"the upload is not a .tar.gz archive of files: {error}") from None
    score = root / "score.yaml"
    if not score.is_file() or score.is_symlink():
        raise InputError("the release has no score.yaml at its top (a Score workload)")
    if score.stat().st_size > MAX_SCORE_BYTES:
        raise InputError(f"score.yaml is larger than {MAX_SCORE_BYTES} bytes")
    score_text = score.read_text(encoding="utf-8", errors="replace")
    from pavedroad.workloads.problems import WorkloadError
    from pavedroad.workloads.resources import ResourceTypes
    from pavedroad.workloads.score import parse_workload

    workload = parse_workload(score_text, "score.yaml")  # line-numbered problems first
    problems = ResourceTypes.from_plugins().check(workload)  # unknown types, outputs
    if problems:
        raise WorkloadError(problems, workload.source)
    blob = service.releases.artifacts.put_files(root, sorted(_walk(root)))
    try:
        return service.releases.create_from_bundle(
            blob, component=component, score_text=score_text, created_by=actor, source="cli"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _live(live: LiveRow) -> dict[str, Any]:
    return {
        "component": live.component,
        "environment": live.environment,
        "release": live.release_id,
        "deployment": live.deployment_id,
        "instances": list(live.instances),
        "url": live.url,
        "since": isoformat(live.since),
    }
