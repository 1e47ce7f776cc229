"""The portal's Pipelines pages: the runs (``/pipelines``, filtered by repository,
branch and status), a run (``/pipelines/runs/<id>``: its job graph, a job's steps and
live log, test results, artifacts, the release it built, re-run and cancel), the
pipeline templates and who uses them (``/pipelines/templates``), an entity's CI tab
(``/catalog/<ns>/<kind>/<name>/ci``) and a status badge per repository and branch
(``/pipelines/badge/<owner>/<name>.svg``).

Every page reads well without JavaScript: a run that has not ended refreshes itself
every few seconds. With ``pipelines.js`` the selected job's log streams over the API's
server-sent events and statuses update in place. Logs keep the colours their programs
printed: SGR escape codes become spans with classes (:mod:`pavedroad.pipelines.logview`;
the script does the same for streamed text), never HTML from the log.

Re-run and cancel post to routes with the API's dotted names (``pipeline.run.rerun``,
``pipeline.run.cancel``) and need ``pipeline.run.start`` on the repository's owner, as
the API does. Reading needs a signed-in user, as every page does; so does the badge
(see :func:`badge`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select
from starlette.responses import FileResponse, RedirectResponse, Response

from pavedroad.catalog.queries import EntityQuery, parse_filters
from pavedroad.catalog.refs import EntityRef
from pavedroad.catalog.views import EntityTab, tab_entity
from pavedroad.core.errors import InputError, NotFoundError, ProblemError
from pavedroad.core.timeutil import as_utc
from pavedroad.environments.models import ReleaseRow
from pavedroad.identity.web import form_token, keep_form_token
from pavedroad.pipelines.api import require_on_runs
from pavedroad.pipelines.artifacts import ArtifactStore, find_artifact, run_artifacts
from pavedroad.pipelines.job_graph import JobGraph, layout_jobs
from pavedroad.pipelines.library import KIND as TEMPLATE_KIND
from pavedroad.pipelines.library import read_template
from pavedroad.pipelines.logview import MAX_LOG_CHARACTERS, duration_text, job_log
from pavedroad.pipelines.models import (
    FINISHED,
    RUN_STATUSES,
    JobRow,
    RunRow,
    StepRow,
    TestCaseRow,
)
from pavedroad.pipelines.runs import PIPELINE_FILE, PipelineService
from pavedroad.pipelines.spec import PipelineError
from pavedroad.portal.navigation import NavItem, add_nav_item, navigation
from pavedroad.portal.templating import (
    add_template_directory,
    entity_path,
    render,
    templates,
)

router = APIRouter(include_in_schema=False)

TEMPLATES = Path(__file__).parent / "templates"
add_template_directory(TEMPLATES)
PAGES = (
    "pipelines/runs.html",
    "pipelines/run.html",
    "pipelines/templates.html",
    "pipelines/ci.html",
)

# Before "Create", whichever of the two domains is mounted first ("Create" goes before
# "Locations" too).
add_nav_item(
    NavItem(
        "pipelines", "Pipelines", "/pipelines", "road", lambda p, _q: p.startswith("/pipelines")
    ),
    before="create" if any(i.key == "create" for i in navigation()["main"]) else "locations",
)

NO_STORE = {"Cache-Control": "no-store"}
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
CI_HISTORY = 20
CI_RUNS_READ = 300
TEMPLATE_RUNS_READ = 2000
REFRESH_SECONDS = 3
MAX_LISTED_CASES = 500
MAX_SHOWN_FAILURES = 200
FAILED_OUTCOMES = ("failed", "error")
RELEASE_STEP = "release/build"  # its output "release" names the release it made or found

# Notices after a redirect; the URL names one, the text is ours.
NOTICES = {
    "cancel-requested": "Cancel requested: running steps are stopped, waiting jobs will not start.",
    "rerun": "A new run of the same commit started.",
}


def _service(request: Request) -> PipelineService:
    return request.app.state.pipelines  # type: ignore[no-any-return]


# -- how runs look ---------------------------------------------------------------------------


def repo_url(repository: str) -> str | None:
    """The repository browser's page of a hosted repository (``owner/name``)."""
    owner, _, name = repository.partition("/")
    if not owner or not name or "/" in name or ":" in repository:
        return None
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def run_url(run_id: str) -> str:
    return f"/pipelines/runs/{quote(run_id, safe='')}"


@dataclass(frozen=True)
class RunView:
    """A run as the lists and the run page show it."""

    id: str
    number: int
    repository: str
    name: str
    status: str
    branch: str | None
    ref: str
    commit: str
    event: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    entity_ref: str | None
    template: str | None
    template_version: int | None
    problems: list[dict[str, Any]]
    rerun_of: str | None
    cancel_requested: bool

    @classmethod
    def of(cls, row: RunRow) -> RunView:
        return cls(
            id=row.id,
            number=row.number,
            repository=row.repository,
            name=row.name,
            status=row.status,
            branch=row.branch,
            ref=row.ref,
            commit=row.commit,
            event=row.event,
            created_by=row.created_by,
            created_at=as_utc(row.created_at),
            started_at=as_utc(row.started_at) if row.started_at else None,
            finished_at=as_utc(row.finished_at) if row.finished_at else None,
            entity_ref=row.entity_ref,
            template=row.template_ref,
            template_version=row.template_version,
            problems=[p for p in row.problems or [] if isinstance(p, dict)],
            rerun_of=row.rerun_of,
            cancel_requested=bool(row.cancel_requested),
        )

    @property
    def url(self) -> str:
        return run_url(self.id)

    @property
    def label(self) -> str:
        return f"{self.repository}#{self.number}"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def short_commit(self) -> str:
        return self.commit[:7]

    @property
    def ref_name(self) -> str:
        return self.branch or self.ref.removeprefix("refs/tags/").removeprefix("refs/heads/")

    @property
    def repo_url(self) -> str | None:
        return repo_url(self.repository)

    @property
    def commit_url(self) -> str | None:
        base = self.repo_url
        return f"{base}/commit/{quote(self.commit, safe='')}" if base else None

    @property
    def duration(self) -> str:
        return duration_text(self.started_at, self.finished_at)

    @property
    def uses(self) -> str | None:
        return f"{self.template}@{self.template_version}" if self.template else None

    def problem_url(self, line: Any) -> str | None:
        """The pipeline file at the run's commit, at the problem's line."""
        base = self.repo_url
        if not base:
            return None
        anchor = f"#L{line}" if isinstance(line, int) and line > 0 else ""
        query = urlencode({"ref": self.commit})
        return f"{base}/blob/{quote(PIPELINE_FILE)}?{query}{anchor}"


# -- the runs list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilter:
    repository: str = ""
    branch: str = ""
    status: str = ""
    entity: str = ""
    limit: int = DEFAULT_LIMIT

    def params(self, **changes: Any) -> dict[str, Any]:
        values = {
            "repository": self.repository,
            "branch": self.branch,
            "status": self.status,
            "entity": self.entity,
            "limit": self.limit if self.limit != DEFAULT_LIMIT else "",
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value not in ("", None)}

    def href(self, **changes: Any) -> str:
        params = self.params(**changes)
        return "/pipelines" + (f"?{urlencode(params)}" if params else "")

    @property
    def active(self) -> bool:
        return bool(self.repository or self.branch or self.status or self.entity)


def _limit(text: str) -> int:
    return max(1, min(MAX_LIMIT, int(text))) if text.isdigit() else DEFAULT_LIMIT


def _repositories(service: PipelineService) -> list[tuple[str, str | None]]:
    """Every repository with runs, with the component its latest run was for."""
    with service.db.read_session() as session:
        latest = (
            select(RunRow.repository, func.max(RunRow.created_at).label("at"))
            .group_by(RunRow.repository)
            .subquery()
        )
        rows = session.execute(
            select(RunRow.repository, RunRow.entity_ref)
            .join(
                latest,
                (RunRow.repository == latest.c.repository) & (RunRow.created_at == latest.c.at),
            )
            .order_by(RunRow.repository)
            .limit(MAX_LIMIT)
        ).all()
    seen: dict[str, str | None] = {}
    for repository, entity_ref in rows:
        seen.setdefault(repository, entity_ref)
    return list(seen.items())


@router.get("/pipelines")
def runs_page(
    request: Request,
    repository: Annotated[str, Query(max_length=200)] = "",
    branch: Annotated[str, Query(max_length=400)] = "",
    status: Annotated[str, Query(max_length=16)] = "",
    entity: Annotated[str, Query(max_length=400)] = "",
    limit: Annotated[str, Query(max_length=6)] = "",
) -> Response:
    service = _service(request)
    chosen = RunFilter(
        repository.strip(),
        branch.strip(),
        status if status in RUN_STATUSES else "",
        entity.strip().lower(),
        _limit(limit),
    )
    rows = service.runs(
        repository=chosen.repository or None,
        branch=chosen.branch or None,
        status=chosen.status or None,
        entity_ref=chosen.entity or None,
        limit=chosen.limit + 1,
    )
    runs = [RunView.of(row) for row in rows[: chosen.limit]]
    more = len(rows) > chosen.limit and chosen.limit < MAX_LIMIT
    context = {
        "title": "Pipelines",
        "runs": runs,
        "filter": chosen,
        "statuses": RUN_STATUSES,
        "repositories": _repositories(service),
        "more_href": chosen.href(limit=min(MAX_LIMIT, chosen.limit * 2)) if more else None,
    }
    return render(request, "pipelines/runs.html", context)


# -- a run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    id: str
    key: str
    name: str
    status: str
    needs: list[str]
    labels: list[str]
    attempt: int
    max_attempts: int
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    url: str

    @property
    def duration(self) -> str:
        if self.status in ("waiting", "queued", "skipped"):
            return ""
        return duration_text(self.started_at, self.finished_at)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def _job_view(run_id: str, job: JobRow) -> JobView:
    return JobView(
        id=job.id,
        key=job.key,
        name=job.name,
        status=job.status,
        needs=list(job.needs or []),
        labels=list(job.labels or []),
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        worker=job.worker,
        started_at=as_utc(job.started_at) if job.started_at else None,
        finished_at=as_utc(job.finished_at) if job.finished_at else None,
        error=job.error,
        url=f"{run_url(run_id)}?{urlencode({'job': job.id})}#job",
    )


def _job_order(run: RunRow) -> list[str]:
    pipeline = (run.pipeline or {}).get("pipeline") if isinstance(run.pipeline, dict) else None
    jobs = pipeline.get("jobs") if isinstance(pipeline, dict) else None
    return [str(key) for key in jobs] if isinstance(jobs, dict) else []


def _selected(jobs: Sequence[JobRow], wanted: str | None) -> JobRow | None:
    """The job whose log the page shows: the one asked for, else the first running,
    else the first that failed, else the first."""
    if wanted:
        for job in jobs:
            if job.id == wanted:
                return job
    for status in ("running", "failed"):
        for job in jobs:
            if job.status == status:
                return job
    return jobs[0] if jobs else None


@dataclass(frozen=True)
class TestCaseView:
    job: str
    suite: str
    classname: str
    name: str
    outcome: str
    seconds: float
    message: str | None


@dataclass
class TestResults:
    counts: dict[str, int]
    failures: list[TestCaseView]
    others: list[TestCaseView]
    more_failures: int = 0
    more_others: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failed(self) -> int:
        return sum(self.counts.get(outcome, 0) for outcome in FAILED_OUTCOMES)


def _test_results(service: PipelineService, jobs: Sequence[JobRow]) -> TestResults | None:
    names = {job.id: job.name for job in jobs}
    if not names:
        return None
    with service.db.read_session() as session:
        counts = dict(
            session.execute(
                select(TestCaseRow.outcome, func.count())
                .where(TestCaseRow.job_id.in_(names))
                .group_by(TestCaseRow.outcome)
            ).all()
        )
        if not counts:
            return None

        def cases(bad: bool, limit: int) -> list[TestCaseView]:
            outcome = TestCaseRow.outcome.in_(FAILED_OUTCOMES)
            rows = session.scalars(
                select(TestCaseRow)
                .where(TestCaseRow.job_id.in_(names), outcome if bad else ~outcome)
                .order_by(TestCaseRow.job_id, TestCaseRow.id)
                .limit(limit)
            )
            return [
                TestCaseView(
                    names.get(row.job_id, ""),
                    row.suite,
                    row.classname,
                    row.name,
                    row.outcome,
                    row.seconds,
                    row.message,
                )
                for row in rows
            ]

        failures = cases(True, MAX_SHOWN_FAILURES)
        others = cases(False, MAX_LISTED_CASES)
    results = TestResults({str(k): int(v) for k, v in counts.items()}, failures, others)
    results.more_failures = max(0, results.failed - len(failures))
    results.more_others = max(0, results.total - results.failed - len(others))
    return results


@dataclass(frozen=True)
class ArtifactView:
    name: str
    size: int
    digest: str
    job: str
    created_at: datetime
    url: str


@dataclass(frozen=True)
class ReleaseView:
    id: str
    component: str
    digest: str
    size: int
    created_at: datetime
    first_run: str | None  # the run that built it first, when another run did


def _deployed(request: Request, releases: Sequence[ReleaseView]) -> dict[str, list[Any]]:
    """Where each release went (its deployments, newest first): the run shows the URLs
    its release went live at, a branch's preview among them."""
    service: Any = getattr(request.app.state, "deployments", None)
    found: dict[str, list[Any]] = {}
    for release in releases if service is not None else []:
        rows = service.recent(component=release.component, limit=200)
        found[release.id] = [row for row in rows if row.release_id == release.id]
    return found


def _releases(service: PipelineService, run_id: str, jobs: Sequence[JobRow]) -> list[ReleaseView]:
    """The releases the run's ``release/build`` steps made, or found made already from
    the same bytes (a re-run finds the release of the run it repeats)."""
    builds = {
        (job.id, step.get("index"))
        for job in jobs
        for step in (job.spec or {}).get("steps") or []
        if isinstance(step, dict) and str(step.get("uses") or "").split("@")[0] == RELEASE_STEP
    }
    with service.db.read_session() as session:
        steps = session.execute(
            select(StepRow.job_id, StepRow.index, StepRow.outputs).where(
                StepRow.job_id.in_({job_id for job_id, _ in builds})
            )
        )
        ids = {
            str(outputs["release"])
            for job_id, index, outputs in steps
            if (job_id, index) in builds and isinstance(outputs, dict) and outputs.get("release")
        }
        rows = session.scalars(
            select(ReleaseRow)
            .where((ReleaseRow.run_id == run_id) | ReleaseRow.id.in_(ids))
            .order_by(ReleaseRow.created_at)
        )
        return [
            ReleaseView(
                row.id,
                row.component,
                row.digest,
                row.size,
                as_utc(row.created_at),
                row.run_id if row.run_id and row.run_id != run_id else None,
            )
            for row in rows
        ]


def _refusal(request: Request, repository: str, entity_ref: str | None = None) -> str | None:
    """Why the caller may not start, cancel or re-run this repository's runs, or None."""
    from pavedroad.pipelines.api import require_on_runs

    try:
        require_on_runs(request, repository, entity_ref)
    except ProblemError as exc:
        return exc.detail
    return None


def _run_page(
    request: Request,
    run_id: str,
    job_id: str | None = None,
    *,
    follow: bool = False,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    service = _service(request)
    try:
        row = service.run(run_id)
    except ProblemError as exc:
        return _problem_page(request, exc)
    run = RunView.of(row)
    jobs = service.jobs(run.id)

    def detail(job: JobRow) -> str:
        view = _job_view(run.id, job)
        return view.duration or {"waiting": "waiting", "queued": "queued"}.get(job.status, "")

    graph: JobGraph = layout_jobs(
        jobs, _job_order(row), url=lambda job: _job_view(run.id, job).url, detail=detail
    )
    position = {node.job_id: index for index, node in enumerate(graph.nodes)}
    jobs = sorted(jobs, key=lambda job: position.get(job.id, len(position)))
    chosen = _selected(jobs, job_id)
    for node in graph.nodes:
        node.selected = chosen is not None and node.job_id == chosen.id
    follow = follow or not job_id
    steps = service.steps(chosen.id) if chosen else []
    store = ArtifactStore.for_settings(service.settings)
    names = {job.id: job.name for job in jobs}
    artifacts = [
        ArtifactView(
            artifact.name,
            artifact.size,
            artifact.digest,
            names.get(artifact.job_id or "", ""),
            as_utc(artifact.created_at),
            f"{run.url}/artifacts/{quote(artifact.name, safe='')}",
        )
        for artifact in run_artifacts(service.db, run.id)
        if store.exists(artifact.digest)
    ]
    pipeline = row.pipeline if isinstance(row.pipeline, dict) else {}
    context = {
        "title": f"{run.label} · {run.name}",
        "run": run,
        "jobs": [_job_view(run.id, job) for job in jobs],
        "graph": graph,
        "job": _job_view(run.id, chosen) if chosen else None,
        "log": job_log(service, chosen, steps) if chosen else None,
        "follow": follow,
        "tests": _test_results(service, jobs),
        "artifacts": artifacts,
        "releases": (releases := _releases(service, run.id, jobs)),
        "deployed": _deployed(request, releases),
        "rerun_of": _rerun_of(service, run.rerun_of),
        "inputs": row.inputs or {},
        "added_jobs": [str(j) for j in pipeline.get("added_jobs") or []],
        "refusal": _refusal(request, run.repository, run.entity_ref),
        "refresh": REFRESH_SECONDS,
        "max_log_kib": MAX_LOG_CHARACTERS // 1024,
        "error": error,
        "error_status": status_code if error else None,
        "notice": None if error else NOTICES.get(request.query_params.get("notice", "")),
    }
    return _respond(request, "pipelines/run.html", context, status_code)


def _rerun_of(service: PipelineService, run_id: str | None) -> RunView | None:
    if not run_id:
        return None
    try:
        return RunView.of(service.run(run_id))
    except NotFoundError:
        return None


def _respond(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    context["csrf_token"] = form_token(request)  # a visitor while access control is off has none
    response = render(request, name, context, status_code)
    response.headers.update(NO_STORE)
    return keep_form_token(request, response)


def _problem_page(request: Request, exc: ProblemError) -> Response:
    if exc.status == 404:
        return render(
            request,
            "portal/not_found.html",
            {"title": "Not found", "message": exc.detail, "back": ("/pipelines", "All runs")},
            status_code=404,
        )
    from pavedroad.portal.views import error_page

    return error_page(request, exc.status, exc.title, exc.detail)


@router.get("/pipelines/runs/{run_id}")
def run_page(
    request: Request,
    run_id: str,
    job: Annotated[str, Query(max_length=40)] = "",
    follow: Annotated[str, Query(max_length=1)] = "",
) -> Response:
    return _run_page(request, run_id[:40], job or None, follow=follow == "1")


@router.post("/pipelines/runs/{run_id}/cancel", name="pipeline.run.cancel")
def cancel_run(request: Request, run_id: str) -> Response:
    run_id = run_id[:40]
    service = _service(request)
    try:
        run = service.run(run_id)
        request.state.audit_target = f"{run.repository}#{run.number}"
        require_on_runs(request, run.repository, run.entity_ref)
        service.cancel(run_id)
    except NotFoundError as exc:
        return _problem_page(request, exc)
    except ProblemError as exc:
        return _run_page(request, run_id, error=exc.detail, status_code=exc.status)
    return RedirectResponse(f"{run_url(run_id)}?notice=cancel-requested", status_code=303)


@router.post("/pipelines/runs/{run_id}/rerun", name="pipeline.run.rerun")
def rerun_run(request: Request, run_id: str) -> Response:
    run_id = run_id[:40]
    service = _service(request)
    actor = getattr(request.state, "actor_name", None) or "anonymous"
    try:
        run = service.run(run_id)
        request.state.audit_target = f"{run.repository}#{run.number}"
        require_on_runs(request, run.repository, run.entity_ref)
        new = service.rerun(run_id, actor)
    except NotFoundError as exc:
        return _problem_page(request, exc)
    except ProblemError as exc:
        return _run_page(request, run_id, error=exc.detail, status_code=exc.status)
    return RedirectResponse(f"{run_url(new.id)}?notice=rerun", status_code=303)


@router.get("/pipelines/runs/{run_id}/artifacts/{name}")
def download_artifact(request: Request, run_id: str, name: str) -> Response:
    """The artifact's archive (a ``.tar.gz`` of what was uploaded), as the store holds it."""
    service = _service(request)
    try:
        run = service.run(run_id[:40])
        artifact = find_artifact(service.db, run.id, name[:200])
        if artifact is None:
            raise NotFoundError(f"run {run.repository}#{run.number} has no artifact {name[:200]!r}")
        path = ArtifactStore.for_settings(service.settings).path(artifact.digest)
        if not path.is_file():
            raise NotFoundError(f"the artifact {artifact.name!r} is no longer in the store")
    except ProblemError as exc:
        return _problem_page(request, exc)
    return FileResponse(
        path,
        media_type="application/gzip",
        filename=f"{artifact.name}.tar.gz",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )


# -- templates and who uses them -------------------------------------------------------------


@dataclass(frozen=True)
class TemplateUser:
    """A repository whose latest run used a template version."""

    repository: str
    repo_url: str | None
    entity_ref: str | None
    run: RunView
    added_jobs: list[str]
    added_steps: list[str]

    @property
    def customised(self) -> bool:
        return bool(self.added_jobs or self.added_steps)


@dataclass
class TemplateVersionView:
    number: int
    description: str
    deprecated: str | None
    jobs: list[str]
    required_steps: list[str]
    users: list[TemplateUser] = field(default_factory=list)


@dataclass
class TemplateView:
    name: str
    title: str
    description: str
    owner: str | None
    url: str
    versions: list[TemplateVersionView]
    problems: list[str]
    unknown_versions: dict[int, list[TemplateUser]] = field(default_factory=dict)

    @property
    def users(self) -> int:
        return sum(len(v.users) for v in self.versions) + sum(
            len(users) for users in self.unknown_versions.values()
        )


def _added_steps(pipeline: Mapping[str, Any]) -> list[str]:
    added = []
    for item in pipeline.get("added_steps") or []:
        if not isinstance(item, Mapping):
            continue
        step = item.get("step") if isinstance(item.get("step"), Mapping) else {}
        assert isinstance(step, Mapping)
        first = str(step.get("run") or "").strip().splitlines()
        label = step.get("name") or step.get("uses") or (f"Run {first[0]}" if first else "a step")
        added.append(f"{label} ({item.get('position', '')} {item.get('job', '')})".strip())
    return added


def _template_users(service: PipelineService) -> dict[tuple[str, int], list[TemplateUser]]:
    """(template, version) → the repositories whose latest planned run used it."""
    with service.db.read_session() as session:
        rows = list(
            session.scalars(
                select(RunRow).order_by(RunRow.created_at.desc()).limit(TEMPLATE_RUNS_READ)
            )
        )
    seen: set[str] = set()
    users: dict[tuple[str, int], list[TemplateUser]] = {}
    for row in rows:
        if row.repository in seen or not isinstance(row.pipeline, dict):
            continue  # an invalid file says nothing about which template a service uses
        seen.add(row.repository)
        if not row.template_ref or row.template_version is None:
            continue
        pipeline = row.pipeline if isinstance(row.pipeline, dict) else {}
        users.setdefault((row.template_ref, row.template_version), []).append(
            TemplateUser(
                row.repository,
                repo_url(row.repository),
                row.entity_ref,
                RunView.of(row),
                [str(job) for job in pipeline.get("added_jobs") or []],
                _added_steps(pipeline),
            )
        )
    for found in users.values():
        found.sort(key=lambda user: user.repository)
    return users


def _template_view(entity: Mapping[str, Any]) -> TemplateView:
    metadata = entity.get("metadata") if isinstance(entity.get("metadata"), Mapping) else {}
    spec = entity.get("spec") if isinstance(entity.get("spec"), Mapping) else {}
    assert isinstance(metadata, Mapping) and isinstance(spec, Mapping)
    ref = EntityRef.of(dict(entity))
    versions: list[TemplateVersionView] = []
    problems: list[str] = []
    try:
        template = read_template(entity)
        for number in sorted(template.versions):
            definition = template.versions[number]
            versions.append(
                TemplateVersionView(
                    number,
                    definition.description,
                    definition.deprecated,
                    [job.name or job.id for job in definition.jobs.values()],
                    [f"{job}: {step.display_name}" for job, step in definition.required_steps()],
                )
            )
    except PipelineError as exc:
        problems = [str(problem) for problem in exc.problems]
    owner = spec.get("owner")
    return TemplateView(
        name=ref.name,
        title=str(metadata.get("title") or ref.name),
        description=str(metadata.get("description") or spec.get("description") or ""),
        owner=owner if isinstance(owner, str) else None,
        url=entity_path(ref.kind, ref.namespace, ref.name),
        versions=versions,
        problems=problems,
    )


@router.get("/pipelines/templates")
def templates_page(request: Request) -> Response:
    service = _service(request)
    query = EntityQuery(filter=parse_filters([f"kind={TEMPLATE_KIND.lower()}"]), limit=1000)
    with service.catalog.reader() as reader:
        entities = reader.query(query).items
    views = sorted((_template_view(e) for e in entities), key=lambda view: view.name.lower())
    users = _template_users(service)
    for view in views:
        numbers = {version.number for version in view.versions}
        for version in view.versions:
            version.users = users.get((view.name, version.number), [])
        view.unknown_versions = {
            number: found
            for (name, number), found in sorted(users.items())
            if name == view.name and number not in numbers
        }
    context = {"title": "Pipeline templates", "templates": views}
    return render(request, "pipelines/templates.html", context)


# -- an entity's CI tab ----------------------------------------------------------------------


@dataclass(frozen=True)
class BadgeSnippet:
    repository: str
    branch: str
    path: str  # on this site, for the preview
    markdown: str


def _place(request: Request, namespace: str, kind: str, name: str) -> EntityTab | Response:
    """The page's entity, or the page saying it is not in the catalog."""
    found = tab_entity(request, namespace, kind, name)
    return found if isinstance(found, Response) else EntityTab(*found, "ci")


def _default_branch(request: Request, repository: str) -> str | None:
    from pavedroad.git import browse

    owner, _, name = repository.partition("/")
    git = request.app.state.git
    with contextlib.suppress(ProblemError, OSError, ValueError):
        return browse.refs(git.path(git.repo(owner, name))).head
    return None


def _badge_snippets(
    request: Request, repositories: Iterable[str], runs: Sequence[RunView]
) -> list[BadgeSnippet]:
    public = request.app.state.settings.public_url
    snippets = []
    for repository in repositories:
        if repo_url(repository) is None:
            continue
        branch = _default_branch(request, repository) or next(
            (run.branch for run in runs if run.repository == repository and run.branch), "main"
        )
        path = badge_url(repository, branch)
        target = f"{public}/pipelines?{urlencode({'repository': repository, 'branch': branch})}"
        snippets.append(
            BadgeSnippet(repository, branch, path, f"[![pipeline]({public}{path})]({target})")
        )
    return snippets


def badge_url(repository: str, branch: str | None = None) -> str:
    owner, _, name = repository.partition("/")
    query = f"?{urlencode({'branch': branch})}" if branch else ""
    return f"/pipelines/badge/{quote(owner, safe='')}/{quote(name, safe='')}.svg{query}"


def _may_read(request: Request) -> bool:
    return request.state.actor is not None or not request.app.state.settings.auth.required


@router.get("/catalog/{namespace}/{kind}/{name}/ci")
def ci_page(request: Request, namespace: str, kind: str, name: str) -> Response:
    if not _may_read(request):  # anonymous catalog reading does not extend to pipelines
        from pavedroad.portal.views import error_page

        return error_page(request, 401, "Not signed in", "Sign in to see pipeline runs.")
    place = _place(request, namespace, kind, name)
    if isinstance(place, Response):
        return place
    rows = _service(request).runs(entity_ref=place.ref.key, limit=CI_RUNS_READ)
    runs = [RunView.of(row) for row in rows]
    latest: dict[str, RunView] = {}
    for run in runs:
        latest.setdefault(run.ref_name, run)
    repositories = list(dict.fromkeys(run.repository for run in runs))
    context = {
        "title": f"CI of {place.title}",
        "place": place,
        "branches": list(latest.values()),
        "history": runs[:CI_HISTORY],
        "more": len(runs) > CI_HISTORY,
        "all_runs": f"/pipelines?{urlencode({'entity': place.ref.key})}",
        "badges": _badge_snippets(request, repositories, runs),
    }
    return render(request, "pipelines/ci.html", context)


def latest_pipeline_run(request: Request, ref: EntityRef) -> RunView | None:
    """The entity's latest run, for its page's CI tab (``None``: none, or not for this
    viewer)."""
    if not _may_read(request):
        return None
    rows = _service(request).runs(entity_ref=ref.key, limit=1)
    return RunView.of(rows[0]) if rows else None


templates.env.globals["latest_pipeline_run"] = latest_pipeline_run


# -- the badge -------------------------------------------------------------------------------

BADGE_LABEL = "pipeline"
BADGE_MESSAGES = {
    "succeeded": ("passing", "#3fb950"),
    "failed": ("failing", "#e05d44"),
    "running": ("running", "#dfb317"),
    "queued": ("running", "#dfb317"),
    "cancelled": ("cancelled", "#9f9f9f"),
}
NO_RUNS = ("no runs", "#9f9f9f")
BADGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}
# Verdana 11px, as shields.io measures its badges: narrow and wide letters, else 7px.
_NARROW = frozenset("fijlrt.,:;'!|() ")
_WIDE = frozenset("mwMW")


def text_width(text: str) -> float:
    return sum(3.9 if c in _NARROW else 10.0 if c in _WIDE else 7.0 for c in text)


@router.get("/pipelines/badge/{owner}/{name}.svg")
def badge(
    request: Request,
    owner: str,
    name: str,
    branch: Annotated[str, Query(max_length=400)] = "",
) -> Response:
    """``pipeline | passing`` for the latest run of the branch (the repository's default
    branch when none is named). Like every page it needs a signed-in viewer: a badge
    shows in the portal (a README in the repository browser) and to signed-in browsers.
    The authentication middleware decides that before this runs; opening badges to
    anonymous readers (with ``auth.anonymous_read``) is a change to its prefixes."""
    repository = f"{owner[:100]}/{name[:200]}"
    chosen = branch.strip() or _default_branch(request, repository)
    service = _service(request)
    try:
        rows = service.runs(repository=repository, branch=chosen or None, limit=1)
    except InputError:
        rows = []
    message, colour = BADGE_MESSAGES.get(rows[0].status, NO_RUNS) if rows else NO_RUNS
    label_width = round(text_width(BADGE_LABEL) + 12)
    message_width = round(text_width(message) + 12)
    context = {
        "label": BADGE_LABEL,
        "message": message,
        "colour": colour,
        "label_width": label_width,
        "message_width": message_width,
        "width": label_width + message_width,
        "title": f"{repository}{f' on {chosen}' if chosen else ''}: {BADGE_LABEL} {message}",
    }
    body = templates.env.get_template("pipelines/badge.svg").render(context)
    return Response(body, media_type="image/svg+xml", headers=BADGE_HEADERS)
