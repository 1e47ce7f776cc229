"""Pipelines API under ``/api/v1/pipelines``: validate a file, start, follow, cancel and
re-run runs, read job logs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from pavedroad.core.errors import NotFoundError
from pavedroad.core.http import event_stream, resume_point
from pavedroad.identity.http import require
from pavedroad.pipelines.library import load_pipeline_file
from pavedroad.pipelines.models import FINISHED, JobRow, LogChunkRow
from pavedroad.pipelines.runs import PipelineService
from pavedroad.pipelines.spec import PipelineError

router = APIRouter(prefix="/api/v1/pipelines", tags=["pipelines"])

STREAM_POLL_SECONDS = 0.25
STREAM_KEEPALIVE_SECONDS = 15.0
STREAM_MAX_SECONDS = 6 * 3600.0
MAX_FILE_CHARS = 256 * 1024


def pipeline_service(request: Request) -> PipelineService:
    return request.app.state.pipelines  # type: ignore[no-any-return]


Pipelines = Annotated[PipelineService, Depends(pipeline_service)]


class PipelineFile(BaseModel):
    text: str = Field(max_length=MAX_FILE_CHARS, description="the pipeline file's contents")
    source: str = Field(default=".pavedroad/pipeline.yaml", max_length=400)


class ManualRun(BaseModel):
    repository: str = Field(min_length=3, max_length=200, examples=["checkout-team/orders"])
    ref: str = Field(default="main", min_length=1, max_length=400)
    inputs: dict[str, Any] = Field(default_factory=dict)


def _actor_name(request: Request) -> str:
    return getattr(request.state, "actor_name", None) or "anonymous"


def require_on_runs(request: Request, repository: str, entity_ref: str | None = None) -> None:
    """Refuse unless the caller may start, cancel and re-run ``repository``'s runs: an
    owner of the hosted repository, or, for a mirrored one (GitHub, GitLab), an owner of
    its component; a mirrored repository without a component is the admins' alone."""
    from pavedroad.git.mirrors import is_mirrored

    if not is_mirrored(repository):
        owner, _, name = repository.partition("/")
        require(request, "pipeline.run.start", request.app.state.git.repo(owner, name).owner_ref)
    elif entity_ref:
        require(request, "pipeline.run.start", entity_ref)
    else:
        require(request, "audit.read")  # an admin's permission: nobody else owns these runs


def _require_on_repository(request: Request, repository: str) -> None:
    require_on_runs(request, repository)


@router.post("/validate", summary="Check a pipeline file; every problem with its line")
def validate(service: Pipelines, body: PipelineFile) -> dict[str, Any]:
    try:
        resolved = load_pipeline_file(
            body.text, service.template_library(), body.source, known_step=service.known_step
        )
    except PipelineError as exc:
        return {"valid": False, "problems": [p.as_dict() for p in exc.problems]}
    pipeline = resolved.pipeline
    return {
        "valid": True,
        "problems": [],
        "name": pipeline.name,
        "uses": resolved.uses,
        "deprecated": resolved.deprecated,
        "jobs": [
            {"id": job.id, "name": job.name or job.id, "needs": job.needs, "steps": len(job.steps)}
            for job in pipeline.jobs.values()
        ],
    }


@router.get("/runs", summary="Runs, newest first")
def list_runs(
    service: Pipelines,
    repository: Annotated[str | None, Query(max_length=200)] = None,
    branch: Annotated[str | None, Query(max_length=400)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    entity: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    runs = service.runs(
        repository=repository, branch=branch, status=status, entity_ref=entity, limit=limit
    )
    return {"items": [service.describe(run) for run in runs]}


@router.post("/runs", status_code=201, name="pipeline.run.start", summary="Start a run by hand")
def start_run(request: Request, service: Pipelines, body: ManualRun) -> dict[str, Any]:
    request.state.audit_target = f"{body.repository}@{body.ref}"[:400]
    _require_on_repository(request, body.repository)
    run = service.start_manual(body.repository, body.ref, _actor_name(request), body.inputs)
    return service.describe(run, with_jobs=True)


@router.get("/runs/{run_id}", summary="One run with its jobs and steps")
def get_run(service: Pipelines, run_id: str) -> dict[str, Any]:
    return service.describe(service.run(run_id), with_jobs=True)


@router.post("/runs/{run_id}/cancel", name="pipeline.run.cancel", summary="Cancel a run")
def cancel_run(request: Request, service: Pipelines, run_id: str) -> dict[str, Any]:
    run = service.run(run_id)
    request.state.audit_target = f"{run.repository}#{run.number}"
    require_on_runs(request, run.repository, run.entity_ref)
    return service.describe(service.cancel(run_id), with_jobs=True)


@router.post(
    "/runs/{run_id}/rerun", status_code=201, name="pipeline.run.rerun", summary="Run it again"
)
def rerun(request: Request, service: Pipelines, run_id: str) -> dict[str, Any]:
    run = service.run(run_id)
    request.state.audit_target = f"{run.repository}#{run.number}"
    require_on_runs(request, run.repository, run.entity_ref)
    return service.describe(service.rerun(run_id, _actor_name(request)), with_jobs=True)


def _job(service: PipelineService, job_id: str) -> JobRow:
    with service.db.read_session() as session:
        job = session.get(JobRow, job_id)
    if job is None:
        raise NotFoundError(f"there is no pipeline job {job_id[:40]}")
    return job


def _chunks(service: PipelineService, job_id: str, after: int, limit: int) -> list[dict]:
    from pavedroad.core.timeutil import isoformat

    with service.db.read_session() as session:
        rows = session.scalars(
            select(LogChunkRow)
            .where(LogChunkRow.job_id == job_id, LogChunkRow.id > after)
            .order_by(LogChunkRow.id)
            .limit(limit)
        )
        return [
            {"id": row.id, "step": row.step_index, "at": isoformat(row.at), "text": row.text}
            for row in rows
        ]


@router.get("/jobs/{job_id}/log", summary="A job's log after a chunk id (JSON)")
def job_log(
    service: Pipelines,
    job_id: str,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    job = _job(service, job_id)
    return {"status": job.status, "items": _chunks(service, job_id, after, limit)}


@router.get("/jobs/{job_id}/log.txt", summary="A job's whole log as text")
def job_log_text(service: Pipelines, job_id: str) -> PlainTextResponse:
    _job(service, job_id)
    parts: list[str] = []
    after = 0
    while True:
        chunks = _chunks(service, job_id, after, 5000)
        if not chunks:
            break
        parts.extend(chunk["text"] for chunk in chunks)
        after = chunks[-1]["id"]
    return PlainTextResponse(
        "".join(parts),
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}.log"'},
    )


@router.get(
    "/jobs/{job_id}/logstream",
    summary="A job's log as server-sent events; resume with after= or Last-Event-ID",
)
async def job_log_stream(
    request: Request,
    service: Pipelines,
    job_id: str,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    await run_in_threadpool(_job, service, job_id)
    return event_stream(_stream(request, service, job_id, resume_point(after, last_event_id)))


async def _stream(
    request: Request, service: PipelineService, job_id: str, after: int
) -> AsyncIterator[bytes]:
    began = last_sent = time.monotonic()
    yield b"retry: 1000\n\n"
    while time.monotonic() - began < STREAM_MAX_SECONDS:
        chunks = await run_in_threadpool(_chunks, service, job_id, after, 500)
        for chunk in chunks:
            after = chunk["id"]
            data = json.dumps(chunk, separators=(",", ":"))
            yield f"id: {chunk['id']}\nevent: log\ndata: {data}\n\n".encode()
            last_sent = time.monotonic()
        if chunks:
            continue
        job = await run_in_threadpool(_job, service, job_id)
        if job.status in FINISHED:
            final = json.dumps({"status": job.status, "error": job.error})
            yield f"event: end\ndata: {final}\n\n".encode()
            return
        if await request.is_disconnected():
            return
        if time.monotonic() - last_sent > STREAM_KEEPALIVE_SECONDS:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(STREAM_POLL_SECONDS)


class PipelineExport(PipelineFile):
    format: str = Field(
        default="github-actions", max_length=40, description="what to export to: github-actions"
    )


@router.post("/export", summary="The resolved pipeline as another CI system's workflow file")
def export(service: Pipelines, body: PipelineExport) -> dict[str, Any]:
    """A pipeline file (one that uses a template is resolved against the catalog's
    templates first) as a GitHub Actions workflow: ``content`` is the file's text and
    ``filename`` where GitHub expects it. An invalid file is a problem with every
    problem at its line."""
    from pavedroad.pipelines.export import check_format, export_pipeline

    check_format(body.format)
    library = service.template_library()
    resolved = load_pipeline_file(body.text, library, body.source, known_step=service.known_step)
    template = (
        library.find(resolved.template, resolved.template_version or 0)
        if resolved.template
        else None
    )
    exported = export_pipeline(
        resolved, body.format, template_inputs=template.inputs if template else ()
    )
    return {
        "format": body.format,
        "uses": resolved.uses,
        "filename": exported.filename,
        "content": exported.content,
    }


@router.get("/runs/{run_id}/artifacts", summary="The run's artifacts")
def list_artifacts(service: Pipelines, run_id: str) -> dict[str, Any]:
    from pavedroad.core.timeutil import isoformat
    from pavedroad.pipelines.artifacts import run_artifacts

    service.run(run_id)
    return {
        "items": [
            {
                "name": row.name,
                "digest": row.digest,
                "size": row.size,
                "jobId": row.job_id,
                "createdAt": isoformat(row.created_at),
            }
            for row in run_artifacts(service.db, run_id)
        ]
    }


@router.get(
    "/runs/{run_id}/artifacts/{name}",
    summary="Download an artifact (a .tar.gz of what the job uploaded)",
)
def download_artifact(service: Pipelines, run_id: str, name: str) -> StreamingResponse:
    from pavedroad.pipelines.artifacts import ArtifactStore, find_artifact

    run = service.run(run_id)
    row = find_artifact(service.db, run_id, name)
    if row is None:
        raise NotFoundError(f"run {run.number} has no artifact named {name[:200]!r}")
    handle = ArtifactStore.for_settings(service.settings).open(row.digest)

    def chunks() -> Any:
        with handle:
            while block := handle.read(1024 * 1024):
                yield block

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in row.name)[:100]
    return StreamingResponse(
        chunks(),
        media_type="application/gzip",
        headers={
            "Content-Disposition": f'attachment; filename="{safe}.tar.gz"',
            "Content-Length": str(row.size),
            "X-Content-Digest": row.digest,
        },
    )


@router.get("/jobs/{job_id}/tests", summary="The test results a job recorded")
def job_tests(service: Pipelines, job_id: str) -> dict[str, Any]:
    from pavedroad.pipelines.models import TestCaseRow

    _job(service, job_id)
    with service.db.read_session() as session:
        rows = list(
            session.scalars(
                select(TestCaseRow).where(TestCaseRow.job_id == job_id).order_by(TestCaseRow.id)
            )
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    return {
        "counts": counts,
        "items": [
            {
                "suite": row.suite,
                "classname": row.classname,
                "name": row.name,
                "outcome": row.outcome,
                "seconds": row.seconds,
                "message": row.message,
            }
            for row in rows
        ],
    }
