"""Scaffolder API under ``/api/v1/scaffolder``: templates, tasks and their live logs,
template updates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from pavedroad.catalog.refs import parse_ref
from pavedroad.core.http import event_stream, resume_point
from pavedroad.identity.http import require
from pavedroad.scaffolder.projects import ProjectStore
from pavedroad.scaffolder.tasks import FINISHED, TaskService
from pavedroad.scaffolder.template import validate_parameters
from pavedroad.scaffolder.versions import TemplateVersions

router = APIRouter(prefix="/api/v1/scaffolder", tags=["scaffolder"])

STREAM_POLL_SECONDS = 0.25
STREAM_KEEPALIVE_SECONDS = 15.0
STREAM_MAX_SECONDS = 3600.0


def task_service(request: Request) -> TaskService:
    return request.app.state.scaffolder  # type: ignore[no-any-return]


Tasks = Annotated[TaskService, Depends(task_service)]


class NewTask(BaseModel):
    templateRef: str = Field(min_length=1, max_length=400, examples=["template:default/x"])
    values: dict[str, Any] = Field(default_factory=dict, description="the form's answers")
    dryRun: bool = Field(default=False, description="render into a scratch workspace only")


class Retry(BaseModel):
    secrets: dict[str, Any] = Field(
        default_factory=dict, description="the secret answers again (they are never kept)"
    )


class NewUpdate(BaseModel):
    entityRef: str | None = Field(default=None, max_length=400)
    repository: str | None = Field(default=None, max_length=200, examples=["team/service"])
    secrets: dict[str, Any] = Field(default_factory=dict)


class Answers(BaseModel):
    values: dict[str, Any] = Field(default_factory=dict)


def _actor(request: Request) -> Any:
    return getattr(request.state, "actor", None)


def _template_ref(namespace: str, name: str) -> str:
    return parse_ref(f"template:{namespace}/{name}", "template").key


def describe_template(entity: dict[str, Any]) -> dict[str, Any]:
    metadata = entity.get("metadata") or {}
    spec = entity.get("spec") or {}
    return {
        "ref": f"template:{metadata.get('namespace') or 'default'}/{metadata.get('name')}",
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace") or "default",
        "title": metadata.get("title") or metadata.get("name"),
        "description": metadata.get("description") or "",
        "tags": metadata.get("tags") or [],
        "owner": spec.get("owner"),
        "type": spec.get("type"),
    }


def parameter_schema(service: TaskService, entity: dict[str, Any]) -> dict[str, Any]:
    """Backstage's parameter-schema shape: the form's pages with their JSON Schemas."""
    spec = service.template_spec(entity)
    return {
        "title": spec.title or spec.name,
        "description": spec.description or "",
        "steps": [
            {
                "title": page.get("title") or f"Step {index + 1}",
                "description": page.get("description") or "",
                "schema": page,
            }
            for index, page in enumerate(spec.pages)
        ],
    }


@router.get("/templates", summary="Templates to create from")
def list_templates(
    service: Tasks,
    q: Annotated[str, Query(max_length=200)] = "",
    tag: Annotated[list[str] | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    items = [describe_template(entity) for entity in service.templates()]
    if q:
        needle = q.lower()
        items = [
            item
            for item in items
            if needle in f"{item['name']} {item['title']} {item['description']}".lower()
        ]
    for wanted in tag or []:
        items = [item for item in items if wanted in item["tags"]]
    return {"items": items}


@router.get("/templates/{namespace}/{name}", summary="One template: its form and versions")
def get_template(service: Tasks, request: Request, namespace: str, name: str) -> dict[str, Any]:
    entity = service.template_entity(_template_ref(namespace, name))
    versions = TemplateVersions(service.db, service.settings)
    described = describe_template(entity)
    described["parameters"] = parameter_schema(service, entity)
    described["versions"] = [
        {"version": v.version, "ordinal": v.ordinal} for v in versions.history(described["ref"])
    ]
    return described


@router.get(
    "/templates/{namespace}/{name}/parameter-schema",
    summary="The template's form as JSON Schemas (Backstage's shape)",
)
def get_parameter_schema(service: Tasks, namespace: str, name: str) -> dict[str, Any]:
    return parameter_schema(service, service.template_entity(_template_ref(namespace, name)))


@router.post(
    "/templates/{namespace}/{name}/validate",
    summary="Check answers against the template's form; per-field errors",
)
def validate_answers(service: Tasks, namespace: str, name: str, body: Answers) -> dict[str, Any]:
    spec = service.template_spec(service.template_entity(_template_ref(namespace, name)))
    return {"errors": validate_parameters(spec, body.values)}


@router.get(
    "/templates/{namespace}/{name}/projects",
    summary="Projects made from the template, and how far behind each is",
)
def template_projects(service: Tasks, namespace: str, name: str) -> dict[str, Any]:
    ref = _template_ref(namespace, name)
    entity = service.template_entity(ref)
    latest = TemplateVersions(service.db, service.settings).record(entity)
    projects = ProjectStore(service.db, service.settings).of_template(ref)
    return {"latestVersion": latest.version, "items": projects}


@router.get("/actions", summary="The actions templates may use, with their input schemas")
def list_actions(service: Tasks) -> dict[str, Any]:
    return {
        "items": [
            {
                "id": action.id,
                "description": action.description,
                "schema": {"input": action.input_schema, "output": action.output_schema},
            }
            for action in service.registry
        ]
    }


@router.post("/tasks", status_code=201, name="scaffolder.task.create", summary="Run a template")
def create_task(request: Request, service: Tasks, body: NewTask) -> dict[str, Any]:
    request.state.audit_target = body.templateRef[:400]
    require(request, "scaffolder.task.create")
    return service.create(body.templateRef, body.values, _actor(request), dry_run=body.dryRun)


@router.get("/tasks", summary="Tasks, newest first")
def list_tasks(
    request: Request,
    service: Tasks,
    createdBy: Annotated[str | None, Query(max_length=400, description="'me' or a name")] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    templateRef: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    if createdBy == "me":
        actor = _actor(request)
        createdBy = actor.name if actor else "anonymous"
    return {
        "items": service.find(
            created_by=createdBy, status=status, template_ref=templateRef, limit=limit
        )
    }


@router.get("/tasks/{task_id}", summary="One task: status, steps, output")
def get_task(service: Tasks, task_id: str) -> dict[str, Any]:
    return service.get(task_id)


@router.get("/tasks/{task_id}/events", summary="The task's log, after an event id")
def task_events(
    service: Tasks,
    task_id: str,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    service.row(task_id)
    return {"items": service.events(task_id, after, limit)}


@router.get(
    "/tasks/{task_id}/eventstream",
    summary="The task's log as server-sent events; resume with after= or Last-Event-ID",
)
async def task_event_stream(
    request: Request,
    service: Tasks,
    task_id: str,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    await run_in_threadpool(service.row, task_id)
    return event_stream(_stream(request, service, task_id, resume_point(after, last_event_id)))


async def _stream(
    request: Request, service: TaskService, task_id: str, after: int
) -> AsyncIterator[bytes]:
    began = last_sent = time.monotonic()
    yield b"retry: 1000\n\n"
    while time.monotonic() - began < STREAM_MAX_SECONDS:
        events = await run_in_threadpool(service.events, task_id, after, 500)
        for event in events:
            after = event["id"]
            data = json.dumps(event, separators=(",", ":"))
            yield f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n".encode()
            last_sent = time.monotonic()
            if event["type"] == "completion":
                return
        if not events:
            if await request.is_disconnected():
                return
            status = (await run_in_threadpool(service.row, task_id)).status
            if status in FINISHED and not await run_in_threadpool(
                service.events, task_id, after, 1
            ):
                return
            if time.monotonic() - last_sent > STREAM_KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(STREAM_POLL_SECONDS)


@router.post("/tasks/{task_id}/cancel", name="scaffolder.task.cancel", summary="Cancel a task")
def cancel_task(request: Request, service: Tasks, task_id: str) -> dict[str, Any]:
    request.state.audit_target = task_id[:40]
    return service.cancel(task_id, _actor(request))


@router.post(
    "/tasks/{task_id}/retry",
    status_code=201,
    name="scaffolder.task.retry",
    summary="Run an ended task again (a new task)",
)
def retry_task(request: Request, service: Tasks, task_id: str, body: Retry) -> dict[str, Any]:
    request.state.audit_target = task_id[:40]
    require(request, "scaffolder.task.create")
    return service.retry(task_id, _actor(request), body.secrets)


@router.post(
    "/updates",
    status_code=201,
    name="scaffolder.project.update",
    summary="Bring a project up to its template's newest version (a task)",
)
def create_update(request: Request, service: Tasks, body: NewUpdate) -> dict[str, Any]:
    request.state.audit_target = (body.repository or body.entityRef or "")[:400]
    return service.start_update(
        _actor(request),
        repository=body.repository,
        entity_ref=body.entityRef,
        secrets=body.secrets,
    )
