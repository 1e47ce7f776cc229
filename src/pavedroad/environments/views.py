"""The portal's Environments pages: the matrix of components by environments
(``/environments``: what is live where, the newest deployment's status, URL and age, and
the actions the viewer may take, above every environment's rules), one environment
(``/environments/<name>``: its rules, what is live in it, its deployments), a deployment
(``/deployments/<id or number>``: its timeline of steps, the failure reason and log
tail, the approvals, and approve, reject or cancel) and a component's Deployments tab
(``/catalog/<ns>/<kind>/<name>/deployments``: per environment the live release, its URL
and the last lines its instances logged, the history, and a Deploy form).

Every page reads well without JavaScript: a deployment that is queued or running
refreshes itself every few seconds (one waiting for an approval waits for people, so
it does not). Actions are forms posting to routes with the permission-style names the
audit log records (``deployment.promote``, ``deployment.approve``, ...). Each checks
the permission the API checks (``deployment.create`` or ``deployment.approve`` on the
component, ``environment.manage``), asks :class:`DeploymentService`, and sends the
browser back to the page it came from with a notice, or shows the refusal on that page
with its status. Which actions a cell of the matrix offers is what
:func:`pavedroad.environments.api.matrix` says the viewer may do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from pavedroad.catalog.refs import EntityRef, parse_ref
from pavedroad.catalog.views import EntityTab, tab_entity
from pavedroad.core.errors import NotFoundError, ProblemError
from pavedroad.core.timeutil import as_utc
from pavedroad.environments.api import matrix
from pavedroad.environments.deployments import IN_PROGRESS, WAITING, DeploymentService, Requested
from pavedroad.environments.directory import Environment
from pavedroad.environments.models import (
    DEPLOYMENT_STEPS,
    DeploymentEventRow,
    DeploymentRow,
    LiveRow,
    ReleaseRow,
)
from pavedroad.identity.http import require
from pavedroad.identity.web import form_token, keep_form_token, safe_next
from pavedroad.pipelines.logview import duration_text
from pavedroad.pipelines.views import repo_url, run_url
from pavedroad.portal.navigation import NavItem, add_nav_item, navigation
from pavedroad.portal.templating import (
    add_template_directory,
    entity_url,
    render,
    templates,
)

router = APIRouter(include_in_schema=False)

TEMPLATES = Path(__file__).parent / "templates"
add_template_directory(TEMPLATES)
PAGES = (
    "environments/matrix.html",
    "environments/environment.html",
    "environments/deployment.html",
    "environments/tab.html",
)


def _is_environments_page(path: str, _query: Any) -> bool:
    return path.startswith(("/environments", "/deployments"))


# After "Pipelines" (imported above, so already in the list), before "Create" when the
# scaffolder's pages were mounted first, else before "Locations".
add_nav_item(
    NavItem("environments", "Environments", "/environments", "layers", _is_environments_page),
    before="create" if any(i.key == "create" for i in navigation()["main"]) else "locations",
)

NO_STORE = {"Cache-Control": "no-store"}
REFRESH_SECONDS = 3
ENVIRONMENT_HISTORY = 50
TAB_HISTORY = 10
TAB_READ = 300
LOG_LINES = 50
DEPLOYABLE_RELEASES = 30
MATRIX_PAGE = "/environments"

# Notices after a redirect; the URL names one, the text is ours.
NOTICES = {
    "promoted": "Promotion requested.",
    "rolled-back": "Rollback requested: the release live before goes live again, with the "
    "configuration and secret versions it ran with then.",
    "deployed": "Deployment requested.",
    "joined": "That was asked for already: this is the deployment doing it.",
    "already-live": "That release is live there already: this is the deployment that made it so.",
    "awaiting-approval": "Requested: it waits for an approval from an owner of the "
    "component other than you.",
    "approved": "Approved: the deployment is queued and runs next.",
    "approved-more": "Approved: it needs more approvals before it runs.",
    "rejected": "Rejected: the deployment will not run.",
    "cancelled": "Cancelled: the deployment will not run.",
    "environment-removed": "The environment is removed and everything that ran in it stopped.",
}

STEP_TITLES = {
    "request": "Requested",
    "approval": "Approval",
    "resolve": "Resolve the workload",
    "provision": "Provision its resources",
    "prepare": "Prepare the release",
    "start": "Start new instances",
    "ready": "Wait until they are ready",
    "switch": "Switch the route",
    "drain": "Drain the old instances",
    "live": "Live",
    "rollback": "Automatic rollback",
    "recover": "Recovered",
    "remove": "Removed",
}
KIND_TEXTS = {
    "deploy": "deploy",
    "auto": "automatic deploy",
    "rollback": "rollback",
    "preview": "preview deploy",
}

FormText = Annotated[str, Form(max_length=400)]
BackField = Annotated[str, Form(max_length=2000)]
CommentField = Annotated[str, Form(max_length=2000)]


def _service(request: Request) -> DeploymentService:
    return request.app.state.deployments  # type: ignore[no-any-return]


def _actor(request: Request) -> str:
    return getattr(request.state, "actor_name", None) or "anonymous"


def deployment_url(deployment_id: str) -> str:
    return f"/deployments/{quote(deployment_id, safe='')}"


def environment_url(name: str) -> str:
    return f"/environments/{quote(name, safe='')}"


def tab_url(component: str) -> str:
    """The component's Deployments tab."""
    return entity_url(component, "component") + "/deployments"


def _span(value: timedelta) -> str:
    """``72 h``, ``30 min``, ``14 d``: the way environments' rules are written."""
    seconds = int(value.total_seconds())
    if seconds >= 7 * 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    for size, unit in ((3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


# -- how releases, deployments and environments look ---------------------------------------


@dataclass(frozen=True)
class ReleaseView:
    id: str
    component: str
    digest: str
    commit: str | None
    branch: str | None
    repository: str | None
    run_id: str | None
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, release: Any) -> ReleaseView:
        """From a :class:`ReleaseRow` or a :class:`Release`: they share these fields."""
        return cls(
            id=release.id,
            component=release.component,
            digest=release.digest,
            commit=release.commit,
            branch=release.branch,
            repository=release.repository,
            run_id=release.run_id,
            created_by=release.created_by,
            created_at=as_utc(release.created_at),
        )

    @property
    def label(self) -> str:
        """What people recognise: the commit, else the bundle's digest (both are what
        ``pave deploy`` accepts as a release's prefix)."""
        return (self.commit or "")[:7] or self.digest.removeprefix("sha256:")[:12]

    @property
    def commit_url(self) -> str | None:
        base = repo_url(self.repository) if self.repository else None
        return f"{base}/commit/{quote(self.commit, safe='')}" if base and self.commit else None

    @property
    def run_url(self) -> str | None:
        return run_url(self.run_id) if self.run_id else None


def _releases(service: DeploymentService, ids: Iterable[str]) -> dict[str, ReleaseView]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    with service.db.read_session() as session:
        rows = session.scalars(select(ReleaseRow).where(ReleaseRow.id.in_(wanted)))
        return {row.id: ReleaseView.of(row) for row in rows}


@dataclass(frozen=True)
class DeploymentView:
    id: str
    number: int
    component: str
    environment: str
    kind: str
    status: str
    step: str | None
    requested_by: str
    reason: str | None
    service_url: str | None  # where it serves
    release_id: str
    release: ReleaseView | None
    previous_release_id: str | None
    promoted_from: str | None
    rollback_of: str | None
    instances: list[str]
    log_tail: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    approval_expires_at: datetime | None

    @classmethod
    def of(cls, row: DeploymentRow, releases: dict[str, ReleaseView]) -> DeploymentView:
        return cls(
            id=row.id,
            number=row.number,
            component=row.component,
            environment=row.environment,
            kind=row.kind,
            status=row.status,
            step=row.step,
            requested_by=row.requested_by,
            reason=row.reason,
            service_url=row.url,
            release_id=row.release_id,
            release=releases.get(row.release_id),
            previous_release_id=row.previous_release_id,
            promoted_from=row.promoted_from,
            rollback_of=row.rollback_of,
            instances=[str(i) for i in row.instances or []],
            log_tail=[str(line) for line in row.log_tail or []],
            created_at=as_utc(row.created_at),
            started_at=as_utc(row.started_at) if row.started_at else None,
            finished_at=as_utc(row.finished_at) if row.finished_at else None,
            approval_expires_at=(
                as_utc(row.approval_expires_at) if row.approval_expires_at else None
            ),
        )

    @property
    def url(self) -> str:
        return deployment_url(self.id)

    @property
    def label(self) -> str:
        return f"#{self.number}"

    @property
    def release_label(self) -> str:
        return self.release.label if self.release else self.release_id[:8]

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS

    @property
    def refreshing(self) -> bool:
        """Whether the page refreshes itself: it is moving (an approval waits for people)."""
        return self.status in ("queued", "running")

    @property
    def status_text(self) -> str:
        if self.status == "running" and self.step:
            return f"running · {self.step}"
        return self.status.replace("-", " ")

    @property
    def kind_text(self) -> str:
        if self.kind == "promote":
            return f"promotion from {self.promoted_from}" if self.promoted_from else "promotion"
        return KIND_TEXTS.get(self.kind, self.kind)

    @property
    def duration(self) -> str:
        return duration_text(self.started_at, self.finished_at)


def _deployment_views(
    service: DeploymentService, rows: Sequence[DeploymentRow]
) -> list[DeploymentView]:
    releases = _releases(service, (row.release_id for row in rows))
    return [DeploymentView.of(row, releases) for row in rows]


@dataclass(frozen=True)
class LiveView:
    component: str
    environment: str
    release_id: str
    release: ReleaseView | None
    deployment_id: str
    service_url: str | None
    instances: list[str]
    since: datetime

    @classmethod
    def of(cls, live: LiveRow, releases: dict[str, ReleaseView]) -> LiveView:
        return cls(
            component=live.component,
            environment=live.environment,
            release_id=live.release_id,
            release=releases.get(live.release_id),
            deployment_id=live.deployment_id,
            service_url=live.url,
            instances=[str(i) for i in live.instances or []],
            since=as_utc(live.since),
        )

    @property
    def deployment_url(self) -> str:
        return deployment_url(self.deployment_id)

    @property
    def release_label(self) -> str:
        return self.release.label if self.release else self.release_id[:8]


@dataclass(frozen=True)
class EnvironmentView:
    """An environment and its rules in words."""

    env: Environment
    live_count: int = 0

    @property
    def name(self) -> str:
        return self.env.name

    @property
    def title(self) -> str:
        return self.env.title or self.env.name

    @property
    def url(self) -> str:
        return environment_url(self.env.name)

    @property
    def approval_text(self) -> str | None:
        approval = self.env.approval
        if approval is None:
            return None
        count = "1 approval" if approval.approvals == 1 else f"{approval.approvals} approvals"
        return f"{count} from the component's owners, within {_span(approval.expires_after)}"

    @property
    def auto_deploy_texts(self) -> list[str]:
        texts = []
        for rule in self.env.auto_deploy:
            if rule.get("defaultBranch"):
                texts.append("releases of the default branch")
            if isinstance(rule.get("branch"), str):
                texts.append(f"releases of branches {rule['branch']}")
        return texts

    @property
    def previews_text(self) -> str | None:
        if self.env.preview_ttl is not None:
            return f"branch previews are made from it; each lasts {_span(self.env.preview_ttl)}"
        return None


# -- notices and errors ----------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    text: str
    deployment: DeploymentView | None = None


@dataclass(frozen=True)
class Failure:
    """A refusal or error shown on the page the action came from."""

    message: str
    status: int


def _notice(request: Request, service: DeploymentService) -> Notice | None:
    text = NOTICES.get(request.query_params.get("notice", ""))
    if text is None:
        return None
    number = request.query_params.get("deployment", "")
    deployment = None
    if number.isdigit() and len(number) < 12:
        with contextlib.suppress(NotFoundError):
            deployment = _deployment_views(service, [service.get(number)])[0]
    return Notice(text, deployment)


def _back_with_notice(back: str, notice: str, deployment: DeploymentRow | None) -> str:
    """``back`` (a path on this site) with the notice, replacing any earlier one."""
    parts = urlsplit(safe_next(back))
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("notice", "deployment")]
    query.append(("notice", notice))
    if deployment is not None:
        query.append(("deployment", str(deployment.number)))
    return f"{parts.path}?{urlencode(query)}"


def _page_at(request: Request, back: str, failure: Failure) -> Response:
    """The page a form came from, showing why its action was refused."""
    path = urlsplit(safe_next(back)).path
    parts = [unquote(part) for part in path.strip("/").split("/")]
    if len(parts) == 2 and parts[0] == "deployments":
        return _deployment_page(request, parts[1][:40], failure)
    if len(parts) == 2 and parts[0] == "environments":
        return _environment_page(request, parts[1][:63], failure)
    if len(parts) == 5 and parts[0] == "catalog" and parts[4] == "deployments":
        return _tab_page(request, parts[1], parts[2], parts[3], failure)
    return _matrix_page(request, failure)


def _respond(
    request: Request, name: str, context: dict[str, Any], failure: Failure | None = None
) -> Response:
    context["csrf_token"] = form_token(request)  # a visitor while access control is off has none
    context["error"] = failure.message if failure else None
    context["error_status"] = failure.status if failure else None
    response = render(request, name, context, failure.status if failure else 200)
    response.headers.update(NO_STORE)
    return keep_form_token(request, response)


def _not_found(request: Request, message: str) -> Response:
    return render(
        request,
        "portal/not_found.html",
        {"title": "Not found", "message": message, "back": (MATRIX_PAGE, "All environments")},
        status_code=404,
    )


def _refusal(request: Request, permission_name: str, entity: str | None) -> str | None:
    """Why the caller may not use this permission here, or None."""
    try:
        require(request, permission_name, entity)
    except ProblemError as exc:
        return exc.detail
    return None


# -- the matrix ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    environment: EnvironmentView
    live: LiveView | None
    latest: DeploymentView | None  # the newest deployment here, whatever its status
    actions: list[str]

    @property
    def promotes_from(self) -> str | None:
        return self.environment.env.promotes_from


@dataclass(frozen=True)
class MatrixRow:
    component: str
    cells: list[Cell]

    @property
    def url(self) -> str:
        return tab_url(self.component)


def _matrix_rows(
    request: Request, service: DeploymentService, environments: list[EnvironmentView]
) -> list[MatrixRow]:
    data = matrix(request, service)
    lives = {(live.component, live.environment): live for live in service.lives()}
    latest_ids = {
        cell["deployment"]["id"]
        for row in data["components"]
        for cell in row["environments"].values()
        if cell["deployment"]
    }
    with service.db.read_session() as session:
        latest_rows = list(
            session.scalars(select(DeploymentRow).where(DeploymentRow.id.in_(latest_ids)))
        )
    releases = _releases(
        service,
        [row.release_id for row in latest_rows] + [live.release_id for live in lives.values()],
    )
    latest = {row.id: DeploymentView.of(row, releases) for row in latest_rows}
    rows = []
    for row in data["components"]:
        component = row["component"]
        cells = []
        for env in environments:
            cell = row["environments"].get(env.name) or {}
            live = lives.get((component, env.name))
            newest = (cell.get("deployment") or {}).get("id")
            cells.append(
                Cell(
                    environment=env,
                    live=LiveView.of(live, releases) if live else None,
                    latest=latest.get(newest) if newest else None,
                    actions=list(cell.get("actions") or []),
                )
            )
        rows.append(MatrixRow(component, cells))
    return rows


def _environment_views(service: DeploymentService) -> list[EnvironmentView]:
    counts: dict[str, int] = {}
    for live in service.lives():
        counts[live.environment] = counts.get(live.environment, 0) + 1
    return [EnvironmentView(env, counts.get(env.name, 0)) for env in service.environments.all()]


def _matrix_page(request: Request, failure: Failure | None = None) -> Response:
    service = _service(request)
    environments = _environment_views(service)
    context = {
        "title": "Environments",
        "environments": environments,
        "rows": _matrix_rows(request, service, environments),
        "back": MATRIX_PAGE,
        "notice": None if failure else _notice(request, service),
    }
    return _respond(request, "environments/matrix.html", context, failure)


@router.get("/environments")
def matrix_page(request: Request) -> Response:
    return _matrix_page(request)


# -- one environment -------------------------------------------------------------------------


def _environment_page(request: Request, name: str, failure: Failure | None = None) -> Response:
    service = _service(request)
    env = service.environments.find(name)
    if env is None:
        return _not_found(request, f"There is no environment {name!r}.")
    lives = service.lives(environment=env.name)
    rows = service.recent(environment=env.name, limit=ENVIRONMENT_HISTORY)
    releases = _releases(service, [live.release_id for live in lives])
    promotes_to = [e for e in service.environments.all() if e.promotes_from == env.name]
    context = {
        "title": f"{env.title or env.name} · Environments",
        "environment": EnvironmentView(env, len(lives)),
        "lives": [LiveView.of(live, releases) for live in lives],
        "deployments": _deployment_views(service, rows),
        "promotes_to": [EnvironmentView(e) for e in promotes_to],
        "may_remove": env.removable and _refusal(request, "environment.manage", None) is None,
        "back": environment_url(env.name),
        "notice": None if failure else _notice(request, service),
    }
    return _respond(request, "environments/environment.html", context, failure)


@router.get("/environments/{name}")
def environment_page(request: Request, name: str) -> Response:
    return _environment_page(request, name[:63])


# -- a deployment ----------------------------------------------------------------------------


@dataclass
class TimelineEntry:
    """A step of the deployment (begun and ended), or something that happened to it."""

    step: str
    status: str  # running, succeeded, failed, info, pending, interrupted
    message: str
    started_at: datetime | None
    ended_at: datetime | None = None

    @property
    def title(self) -> str:
        return STEP_TITLES.get(self.step, self.step)

    @property
    def duration(self) -> str:
        if self.status in ("info", "pending") or self.started_at is None:
            return ""
        if self.status == "interrupted":
            return ""
        return duration_text(self.started_at, self.ended_at)


def timeline(
    events: Sequence[DeploymentEventRow], deployment: DeploymentView
) -> list[TimelineEntry]:
    """The deployment's events as entries: a step's start and end are one entry; the
    steps it has still to take follow while it is in progress."""
    entries: list[TimelineEntry] = []
    open_steps: dict[str, TimelineEntry] = {}
    for event in events:
        at = as_utc(event.at)
        if event.status == "started":
            entry = TimelineEntry(event.step, "running", event.message, at)
            entries.append(entry)
            open_steps[event.step] = entry
        elif event.status in ("succeeded", "failed") and event.step in open_steps:
            entry = open_steps.pop(event.step)
            entry.status = event.status
            entry.ended_at = at
            entry.message = event.message or entry.message
        else:
            ended = at if event.status in ("succeeded", "failed") else None
            entries.append(TimelineEntry(event.step, event.status, event.message, at, ended))
    if not deployment.refreshing:
        for entry in open_steps.values():
            entry.status = "interrupted"  # its worker stopped; the recovery says so below
    if deployment.in_progress:
        seen = {entry.step for entry in entries}
        entries.extend(
            TimelineEntry(step, "pending", "", None)
            for step in (*DEPLOYMENT_STEPS, "live")
            if step not in seen
        )
    return entries


@dataclass(frozen=True)
class ApprovalView:
    approver: str
    decision: str
    comment: str | None
    at: datetime


@dataclass
class DeploymentActions:
    """What the viewer may do with a deployment, and why not when they may not."""

    approve: bool = False
    approve_refusal: str | None = None
    cancel: bool = False
    approvals_needed: int | None = None
    notes: list[str] = field(default_factory=list)


def _deployment_actions(
    request: Request, service: DeploymentService, deployment: DeploymentView
) -> DeploymentActions:
    actions = DeploymentActions()
    env = service.environments.find(deployment.environment)
    if env is not None and env.approval is not None:
        actions.approvals_needed = env.approval.approvals
    if deployment.status == "awaiting-approval":
        if deployment.requested_by == _actor(request):
            actions.approve_refusal = (
                f"You asked for this deployment: another owner of "
                f"{parse_ref(deployment.component).name} must approve it."
            )
        else:
            actions.approve_refusal = _refusal(request, "deployment.approve", deployment.component)
            actions.approve = actions.approve_refusal is None
    if deployment.status in WAITING:
        actions.cancel = _refusal(request, "deployment.create", deployment.component) is None
    return actions


def _deployment_page(
    request: Request, deployment_id: str, failure: Failure | None = None
) -> Response:
    service = _service(request)
    try:
        row = service.get(deployment_id)
    except NotFoundError as exc:
        return _not_found(request, exc.detail)
    deployment = _deployment_views(service, [row])[0]
    previous = None
    if deployment.previous_release_id:
        previous = _releases(service, [deployment.previous_release_id]).get(
            deployment.previous_release_id
        )
    rollback_of = None
    if deployment.rollback_of:
        with contextlib.suppress(NotFoundError):
            rollback_of = _deployment_views(service, [service.get(deployment.rollback_of)])[0]
    live_row = service.live(deployment.component, deployment.environment)
    live = None
    if live_row is not None:
        live = LiveView.of(live_row, _releases(service, [live_row.release_id]))
    context = {
        "title": f"Deployment {deployment.label} · {parse_ref(deployment.component).name} "
        f"to {deployment.environment}",
        "deployment": deployment,
        "timeline": timeline(service.timeline(deployment.id), deployment),
        "approvals": [
            ApprovalView(a.approver, a.decision, a.comment, as_utc(a.at))
            for a in service.approvals(deployment.id)
        ],
        "actions": _deployment_actions(request, service, deployment),
        "previous_release": previous,
        "rollback_of": rollback_of,
        "serving": live is not None and live.deployment_id == deployment.id,
        "live": live,
        "component_url": tab_url(deployment.component),
        "refresh": REFRESH_SECONDS,
        "back": deployment.url,
        "notice": None if failure else _notice(request, service),
    }
    return _respond(request, "environments/deployment.html", context, failure)


@router.get("/deployments/{deployment_id}")
def deployment_page(request: Request, deployment_id: str) -> Response:
    return _deployment_page(request, deployment_id[:40])


# -- a component's Deployments tab -----------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentPlace:
    """The component in one environment: what is live, its logs, its deployments."""

    environment: EnvironmentView
    live: LiveView | None
    history: list[DeploymentView]
    log_lines: list[str] | None  # None: the runtime could not read them


def _log_tail(service: DeploymentService, live: LiveRow) -> list[str] | None:
    if not live.instances:
        return []
    try:
        lines = service.runtime.logs(list(live.instances), LOG_LINES)
    except (ProblemError, OSError, ValueError):
        return None
    return [str(line) for line in lines][-LOG_LINES:]


def _tab_page(
    request: Request, namespace: str, kind: str, name: str, failure: Failure | None = None
) -> Response:
    if request.state.actor is None and request.app.state.settings.auth.required:
        from pavedroad.portal.views import error_page

        return error_page(request, 401, "Not signed in", "Sign in to see deployments.")
    found = tab_entity(request, namespace, kind, name)
    if isinstance(found, Response):
        return found
    place = EntityTab(*found, "deployments")
    service = _service(request)
    component = place.ref.key
    lives = {live.environment: live for live in service.lives(component=component)}
    rows = service.recent(component=component, limit=TAB_READ)
    history = _deployment_views(service, rows)
    releases = _releases(service, [live.release_id for live in lives.values()])
    environments = _environment_views(service)
    places = []
    for env in environments:
        live = lives.get(env.name)
        mine = [d for d in history if d.environment == env.name][:TAB_HISTORY]
        if live is None and not mine:
            continue
        places.append(
            EnvironmentPlace(
                env,
                LiveView.of(live, releases) if live else None,
                mine,
                _log_tail(service, live) if live else None,
            )
        )
    refusal = _refusal(request, "deployment.create", component)
    context = {
        "title": f"Deployments of {place.title}",
        "place": place,
        "component": component,
        "places": places,
        "environments": environments,
        "releases": (
            [
                ReleaseView.of(r)
                for r in service.releases.list(component=component, limit=DEPLOYABLE_RELEASES)
            ]
            if refusal is None
            else []
        ),
        "deploy_refusal": refusal,
        "log_lines": LOG_LINES,
        "back": place.url,
        "notice": None if failure else _notice(request, service),
    }
    return _respond(request, "environments/tab.html", context, failure)


@router.get("/catalog/{namespace}/{kind}/{name}/deployments")
def deployments_tab(request: Request, namespace: str, kind: str, name: str) -> Response:
    return _tab_page(request, namespace, kind, name)


def live_environments(request: Request, ref: EntityRef) -> int:
    """In how many environments the component is live, for its page's Deployments tab
    (0 also when the viewer may not see deployments)."""
    service = getattr(request.app.state, "deployments", None)
    if service is None or (
        request.state.actor is None and request.app.state.settings.auth.required
    ):
        return 0
    return len(service.lives(component=ref.key))


templates.env.globals["live_environments"] = live_environments


# -- actions ---------------------------------------------------------------------------------


def _component(text: str) -> str:
    return parse_ref(text.strip(), "component").key


def _requested(
    request: Request,
    back: str,
    notice: str,
    action: Callable[[], Requested | DeploymentRow],
) -> Response:
    """Run the action; back to the page with its notice, or the page with the refusal."""
    try:
        outcome = action()
    except ProblemError as exc:
        return _page_at(request, back, Failure(exc.detail, exc.status))
    if isinstance(outcome, Requested):
        row = outcome.deployment
        if not outcome.created:
            notice = "already-live" if row.status == "live" else "joined"
        elif row.status == "awaiting-approval":
            notice = "awaiting-approval"
    else:
        row = outcome
        if notice == "approved" and row.status == "awaiting-approval":
            notice = "approved-more"
    return RedirectResponse(_back_with_notice(back, notice, row), status_code=303)


@router.post("/environments/{name}/promote", name="deployment.promote")
def promote(
    request: Request, name: str, component: FormText, back: BackField = MATRIX_PAGE
) -> Response:
    def act() -> Requested:
        ref = _component(component)
        request.state.audit_target = f"{ref} to {name[:63]}"
        require(request, "deployment.create", ref)
        return _service(request).promote(ref, name[:63], _actor(request))

    return _requested(request, back, "promoted", act)


@router.post("/environments/{name}/rollback", name="deployment.rollback")
def rollback(
    request: Request, name: str, component: FormText, back: BackField = MATRIX_PAGE
) -> Response:
    def act() -> Requested:
        ref = _component(component)
        request.state.audit_target = f"{ref} in {name[:63]}"
        require(request, "deployment.create", ref)
        return _service(request).rollback(ref, name[:63], _actor(request))

    return _requested(request, back, "rolled-back", act)


@router.post("/deployments", name="deployment.create")
def deploy(
    request: Request,
    component: FormText,
    environment: FormText,
    release: FormText,
    back: BackField = MATRIX_PAGE,
) -> Response:
    def act() -> Requested:
        ref = _component(component)
        request.state.audit_target = f"{ref} to {environment[:63]}"
        require(request, "deployment.create", ref)
        return _service(request).deploy(ref, environment[:63], release.strip(), _actor(request))

    return _requested(request, back, "deployed", act)


def _decision(
    request: Request, deployment_id: str, back: str, decide: str, comment: str
) -> Response:
    service = _service(request)

    def act() -> DeploymentRow:
        row = service.get(deployment_id[:40])
        request.state.audit_target = f"deployment #{row.number}"
        actor = _actor(request)
        if decide == "cancel":
            require(request, "deployment.create", row.component)
            return service.cancel(row.id, actor)
        require(request, "deployment.approve", row.component)
        if decide == "approve":
            return service.approve(row.id, actor, comment.strip() or None)
        return service.reject(row.id, actor, comment.strip() or None)

    notice = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}[decide]
    return _requested(request, back or deployment_url(deployment_id[:40]), notice, act)


@router.post("/deployments/{deployment_id}/approve", name="deployment.approve")
def approve(
    request: Request, deployment_id: str, back: BackField = "", comment: CommentField = ""
) -> Response:
    return _decision(request, deployment_id, back, "approve", comment)


@router.post("/deployments/{deployment_id}/reject", name="deployment.reject")
def reject(
    request: Request, deployment_id: str, back: BackField = "", comment: CommentField = ""
) -> Response:
    return _decision(request, deployment_id, back, "reject", comment)


@router.post("/deployments/{deployment_id}/cancel", name="deployment.cancel")
def cancel(request: Request, deployment_id: str, back: BackField = "") -> Response:
    return _decision(request, deployment_id, back, "cancel", "")


@router.post("/environments/{name}/delete", name="environment.delete")
def delete_environment(request: Request, name: str) -> Response:
    name = name[:63]
    request.state.audit_target = f"environment {name}"
    try:
        require(request, "environment.manage")
        _service(request).remove_environment(name, _actor(request))
    except ProblemError as exc:
        return _environment_page(request, name, Failure(exc.detail, exc.status))
    return RedirectResponse(f"{MATRIX_PAGE}?notice=environment-removed", status_code=303)
