"""The portal's Create pages: the templates to create from (``/create``), a template's
form (``/create/templates/<namespace>/<name>``), a task with its live log and its
output (``/create/tasks/<id>``), and the entity page's "Template" box.

The form is generated on the server from the template's parameter pages
(:func:`pavedroad.scaffolder.template.fields`): one fieldset per page, every input
named by its answer's path (``name``, ``service.port``). It works without JavaScript:
"Review" shows the answers with a "Create" button, and the server turns the posted
strings into typed answers (:func:`read_answers`) by each field's type. With
``scaffolder.js`` the pages become a wizard whose "Next" checks the page through the
API. Secret answers are password inputs and are never written back into a page
except, on the review page, as the hidden inputs that carry them to "Create" (sent
with ``Cache-Control: no-store``).

Changes post to routes with the API's dotted names (``scaffolder.task.create``, ...),
so the audit log records them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from pavedroad.catalog.refs import EntityRef, parse_ref
from pavedroad.core.errors import ForbiddenError, InputError, ProblemError
from pavedroad.identity.http import require
from pavedroad.identity.policy import Actor, Role
from pavedroad.identity.web import form_token, keep_form_token
from pavedroad.portal.navigation import NavItem, add_nav_item
from pavedroad.portal.templating import (
    add_template_directory,
    entity_path,
    ref_label,
    render,
    safe_url,
    templates,
)
from pavedroad.scaffolder.api import describe_template
from pavedroad.scaffolder.form import (
    FormInput,
    attach_errors,
    form_defaults,
    page_views,
    read_answers,
    review_rows,
)
from pavedroad.scaffolder.projects import ProjectStore
from pavedroad.scaffolder.tasks import FINISHED, TaskService, TemplateParametersError
from pavedroad.scaffolder.template import (
    TemplateSpec,
    TemplateSpecError,
    fields,
    validate_parameters,
)
from pavedroad.scaffolder.versions import TemplateVersions

router = APIRouter(include_in_schema=False)

TEMPLATES = Path(__file__).parent / "templates"
add_template_directory(TEMPLATES)
PAGES = (
    "scaffolder/create.html",
    "scaffolder/template.html",
    "scaffolder/review.html",
    "scaffolder/task.html",
)

add_nav_item(
    NavItem("create", "Create", "/create", "plus", lambda path, _q: path.startswith("/create")),
    before="locations",
)

NO_STORE = {"Cache-Control": "no-store"}
RECENT_TASKS = 10
MAX_LOG_EVENTS = 5000

# Notices after a redirect; the URL names one, the text is ours.
NOTICES = {
    "cancel-requested": "Cancel requested: the task stops at its next check.",
    "retried": "A new task runs the template again with the same answers.",
    "update-started": "The update runs as a task: its branch is ready for review when it ends.",
}

TextField = Annotated[str, Form(max_length=400)]


# -- templates -----------------------------------------------------------------------------


def _service(request: Request) -> TaskService:
    return request.app.state.scaffolder  # type: ignore[no-any-return]


def _actor(request: Request) -> Actor | None:
    return getattr(request.state, "actor", None)


@dataclass(frozen=True)
class TemplateView:
    """A template as the pages show it; ``spec`` is ``None`` when it cannot run
    (``problems`` says why)."""

    ref: str
    namespace: str
    name: str
    title: str
    description: str
    tags: list[str]
    owner: str | None
    type: str | None
    entity: dict[str, Any]
    spec: TemplateSpec | None
    problems: list[str]

    @property
    def url(self) -> str:
        return template_url(self.namespace, self.name)

    @property
    def entity_url(self) -> str:
        return entity_path("template", self.namespace, self.name)


def template_url(namespace: str, name: str) -> str:
    return f"/create/templates/{quote(namespace, safe='')}/{quote(name, safe='')}"


def _template(request: Request, namespace: str, name: str) -> TemplateView:
    service = _service(request)
    ref = parse_ref(f"template:{namespace}/{name}", "template").key
    entity = service.template_entity(ref)
    described = describe_template(entity)
    spec: TemplateSpec | None = None
    problems: list[str] = []
    try:
        spec = service.template_spec(entity)
    except TemplateSpecError as exc:
        problems = exc.problems
    return TemplateView(
        ref=described["ref"].lower(),
        namespace=described["namespace"],
        name=described["name"],
        title=str(described["title"]),
        description=str(described["description"]),
        tags=[str(tag) for tag in described["tags"]],
        owner=described["owner"] if isinstance(described["owner"], str) else None,
        type=described["type"] if isinstance(described["type"], str) else None,
        entity=entity,
        spec=spec,
        problems=problems,
    )


def _respond(
    request: Request,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    context["csrf_token"] = form_token(request)  # a visitor while access control is off has none
    response = render(request, name, context, status_code)
    response.headers.update(headers or {})
    return keep_form_token(request, response)


def _problem_page(request: Request, exc: ProblemError) -> Response:
    if exc.status == 404:
        return render(
            request,
            "portal/not_found.html",
            {
                "title": "Not found",
                "message": exc.detail,
                "back": ("/create", "All templates"),
            },
            status_code=404,
        )
    from pavedroad.portal.views import error_page

    return error_page(request, exc.status, exc.title, exc.detail)


def _refusal(request: Request, permission: str, entity: str | None = None) -> str | None:
    """Why the caller may not use this permission, or ``None``."""
    try:
        require(request, permission, entity)
    except ForbiddenError as exc:
        return exc.detail
    return None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


# -- the list of templates -------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSummary:
    id: str
    template_title: str
    kind: str
    status: str
    created_at: datetime | None
    finished_at: datetime | None

    @property
    def url(self) -> str:
        return task_url(self.id)


def task_url(task_id: str) -> str:
    return f"/create/tasks/{quote(task_id, safe='')}"


def _search_text(item: Mapping[str, Any]) -> str:
    tags = " ".join(map(str, item["tags"]))
    return f"{item['name']} {item['title']} {item['description']} {tags}".lower()


def _list_href(q: str, tags: Sequence[str]) -> str:
    params = [("q", q)] if q else []
    params += [("tag", tag) for tag in tags]
    return "/create" + (f"?{urlencode(params)}" if params else "")


@router.get("/create")
def create_page(
    request: Request,
    q: Annotated[str, Query(max_length=200)] = "",
    tag: Annotated[list[str] | None, Query(max_length=100)] = None,
) -> Response:
    service = _service(request)
    every = [describe_template(entity) for entity in service.templates()]
    chosen = list(dict.fromkeys(tag or []))
    items = every
    if q.strip():
        needle = q.strip().lower()
        items = [item for item in items if needle in _search_text(item)]
    for wanted in chosen:
        items = [item for item in items if wanted in item["tags"]]
    counts: dict[str, int] = {}
    for item in every:
        for name in item["tags"]:
            counts[str(name)] = counts.get(str(name), 0) + 1
    tag_chips = [
        {
            "tag": name,
            "count": count,
            "selected": name in chosen,
            "href": _list_href(
                q, [t for t in chosen if t != name] if name in chosen else [*chosen, name]
            ),
        }
        for name, count in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    ]
    for item in items:
        item["url"] = template_url(item["namespace"], item["name"])
    titles = {item["ref"].lower(): str(item["title"]) for item in every}
    actor = _actor(request)
    recent = [
        TaskSummary(
            id=task["id"],
            template_title=titles.get(task["templateRef"], ref_label(task["templateRef"])),
            kind=task["kind"],
            status=task["status"],
            created_at=_when(task["createdAt"]),
            finished_at=_when(task["finishedAt"]),
        )
        for task in service.find(
            created_by=actor.name if actor else "anonymous", limit=RECENT_TASKS
        )
    ]
    context = {
        "title": "Create",
        "templates": items,
        "total": len(every),
        "q": q,
        "chosen_tags": [
            {"tag": t, "href": _list_href(q, [o for o in chosen if o != t])} for t in chosen
        ],
        "search_clear_href": _list_href("", chosen),
        "tag_chips": tag_chips,
        "recent": recent,
    }
    return _respond(request, "scaffolder/create.html", context)


# -- the form pages -------------------------------------------------------------------------


def _side_info(request: Request, template: TemplateView) -> dict[str, Any]:
    """Versions and the projects made from the template (recording its current version
    first, so how far behind each is stays true)."""
    service = _service(request)
    versions = TemplateVersions(service.db, service.settings)
    latest = None
    # an unreadable source leaves the page showing what was recorded before
    with contextlib.suppress(ProblemError, RuntimeError, OSError):
        latest = versions.record(template.entity)
    projects: list[dict[str, Any]] = []
    with contextlib.suppress(ProblemError):
        projects = ProjectStore(service.db, service.settings).of_template(template.ref)
    for project in projects:
        owner, _, name = str(project["repository"]).partition("/")
        project["url"] = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
    return {
        "versions": versions.history(template.ref),
        "latest_version": latest,
        "projects": projects,
    }


def _form_page(
    request: Request,
    template: TemplateView,
    answers: Mapping[str, Any],
    *,
    errors: Mapping[str, list[str]] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    pages = page_views(request, fields(template.spec), answers) if template.spec else []
    summary = attach_errors(pages, errors or {})
    context = {
        "title": template.title,
        "template": template,
        "pages": pages,
        "summary": summary,
        "error": error,
        "error_status": status_code if error else None,
        "refusal": _refusal(request, "scaffolder.task.create"),
        "validate_url": "/api/v1/scaffolder/templates/{}/{}/validate".format(
            quote(template.namespace, safe=""), quote(template.name, safe="")
        ),
        **_side_info(request, template),
    }
    return _respond(request, "scaffolder/template.html", context, status_code, NO_STORE)


@router.get("/create/templates/{namespace}/{name}")
def template_page(request: Request, namespace: str, name: str) -> Response:
    try:
        template = _template(request, namespace, name)
    except ProblemError as exc:
        return _problem_page(request, exc)
    answers = form_defaults(fields(template.spec)) if template.spec else {}
    return _form_page(request, template, answers)


def _review_page(
    request: Request, template: TemplateView, form: FormInput, answers: Mapping[str, Any]
) -> Response:
    assert template.spec is not None
    pages = page_views(request, fields(template.spec), answers)
    context = {
        "title": f"Review · {template.title}",
        "template": template,
        "sections": review_rows(pages, answers),
        "carried": form.carried(),
        "refusal": _refusal(request, "scaffolder.task.create"),
    }
    return _respond(request, "scaffolder/review.html", context, 200, NO_STORE)


@router.post("/create/templates/{namespace}/{name}", name="scaffolder.task.create")
async def submit_form(request: Request, namespace: str, name: str) -> Response:
    form = await request.form()
    pairs = [(key, value) for key, value in form.multi_items() if isinstance(value, str)]
    return await run_in_threadpool(_submit, request, namespace, name, FormInput(pairs))


def _submit(request: Request, namespace: str, name: str, form: FormInput) -> Response:
    """``action``: ``review`` (no-script path), ``edit`` (back from the review),
    ``create`` or ``dry-run``."""
    request.state.audit_target = f"template:{namespace[:100]}/{name[:200]}"
    try:
        template = _template(request, namespace, name)
    except ProblemError as exc:
        return _problem_page(request, exc)
    if template.spec is None:
        return _form_page(request, template, {})
    action = form.get("action") or "create"
    answers, problems = read_answers(fields(template.spec), form)
    if action == "edit":
        return _form_page(request, template, answers)
    if action == "review" or problems:
        errors = _merge(validate_parameters(template.spec, answers), problems)
        if errors:
            return _form_page(request, template, answers, errors=errors, status_code=422)
        if action == "review":
            return _review_page(request, template, form, answers)
    try:
        require(request, "scaffolder.task.create")
        task = _service(request).create(
            template.ref, answers, _actor(request), dry_run=action == "dry-run"
        )
    except TemplateParametersError as exc:
        errors = exc.extensions.get("errors") or {}
        return _form_page(request, template, answers, errors=errors, status_code=422)
    except ProblemError as exc:
        return _form_page(request, template, answers, error=exc.detail, status_code=exc.status)
    return RedirectResponse(task_url(task["id"]), status_code=303)


def _merge(*sources: Mapping[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for source in sources:
        for path, messages in source.items():
            known = merged.setdefault(path, [])
            known += [message for message in messages if message not in known]
    return merged


# -- a task ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepView:
    id: str
    name: str
    status: str  # pending, processing, completed, failed, skipped
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def duration(self) -> str:
        if self.started_at is None or self.finished_at is None:
            return ""
        seconds = (self.finished_at - self.started_at).total_seconds()
        return (
            f"{seconds:.1f} s"
            if seconds < 60
            else f"{int(seconds // 60)} min {int(seconds % 60)} s"
        )


@dataclass(frozen=True)
class LogLine:
    id: int
    at: datetime | None
    step: str | None
    message: str


@dataclass(frozen=True)
class OutputLinkView:
    title: str
    href: str | None
    text: str


@dataclass(frozen=True)
class TreeRow:
    depth: int
    name: str
    folder: bool
    path: str
    size: int | None = None
    content: str | None = None


def _steps(task: Mapping[str, Any], spec: TemplateSpec | None) -> list[StepView]:
    recorded = {str(state.get("id")): state for state in task.get("steps") or []}
    planned: list[tuple[str, str]] = []
    if spec is not None and task.get("kind") != "update":
        planned = [
            (step.id or f"step-{index + 1}", step.name or step.action)
            for index, step in enumerate(spec.steps)
        ]
    planned += [
        (key, str(state.get("name") or key))
        for key, state in recorded.items()
        if key not in {step_id for step_id, _ in planned}
    ]
    views = []
    for step_id, name in planned:
        state = recorded.get(step_id, {})
        views.append(
            StepView(
                id=step_id,
                name=str(state.get("name") or name),
                status=str(state.get("status") or "pending"),
                started_at=_when(state.get("startedAt")),
                finished_at=_when(state.get("finishedAt")),
            )
        )
    return views


def _link_href(url: Any) -> str | None:
    """A link the output may carry: a path on this site or a web URL."""
    if isinstance(url, str) and url.startswith("/") and not url.startswith(("//", "/\\")):
        return url if not any(ord(c) < 32 for c in url) else None
    return safe_url(url)


def _output_links(output: Mapping[str, Any]) -> list[OutputLinkView]:
    links = []
    for link in output.get("links") or []:
        if not isinstance(link, Mapping):
            continue
        href, text = None, ""
        if isinstance(link.get("url"), str):
            href, text = _link_href(link["url"]), link["url"]
        elif isinstance(link.get("entityRef"), str):
            try:
                ref = parse_ref(link["entityRef"], "component")
            except InputError:
                ref = None
            href = entity_path(ref.kind, ref.namespace, ref.name) if ref else None
            text = link["entityRef"]
        links.append(OutputLinkView(str(link.get("title") or text or "Link"), href, text))
    return links


def _file_tree(files: Any) -> list[TreeRow]:
    """A dry run's files as an indented tree: each folder once, before its files."""
    rows: list[TreeRow] = []
    seen: set[tuple[str, ...]] = set()
    entries = [f for f in files or [] if isinstance(f, Mapping) and isinstance(f.get("path"), str)]
    for entry in sorted(entries, key=lambda f: f["path"].split("/")):
        parts = entry["path"].split("/")
        for depth in range(len(parts) - 1):
            folder = tuple(parts[: depth + 1])
            if folder not in seen:
                seen.add(folder)
                rows.append(TreeRow(depth, parts[depth], True, "/".join(folder)))
        content = entry.get("content")
        size = entry.get("size")
        rows.append(
            TreeRow(
                len(parts) - 1,
                parts[-1],
                False,
                entry["path"],
                size if isinstance(size, int) else None,
                content if isinstance(content, str) else None,
            )
        )
    return rows


def _may_change(actor: Actor | None, task: Mapping[str, Any]) -> bool:
    return actor is None or actor.role is Role.admin or actor.name == task.get("createdBy")


def _task_page(
    request: Request, task_id: str, *, error: str | None = None, status_code: int = 200
) -> Response:
    service = _service(request)
    try:
        task = service.get(task_id)
    except ProblemError as exc:
        return _problem_page(request, exc)
    template: TemplateView | None = None
    ref = parse_ref(task["templateRef"], "template")
    with contextlib.suppress(ProblemError):  # the template left the catalog: the task stays
        template = _template(request, ref.namespace, ref.name)
    events = service.events(task_id, 0, MAX_LOG_EVENTS)
    log = [
        LogLine(
            event["id"],
            _when(event["at"]),
            event["step"],
            str((event["body"] or {}).get("message", "")),
        )
        for event in events
        if event["type"] == "log"
    ]
    output = task.get("output") or {}
    finished = task["status"] in FINISHED
    actor = _actor(request)
    context = {
        "title": f"{template.title if template else ref_label(task['templateRef'])} · task",
        "task": task,
        "template": template,
        "template_label": template.title if template else ref_label(task["templateRef"]),
        "steps": _steps(task, template.spec if template else None),
        "log": log,
        "last_event": events[-1]["id"] if events else 0,
        "finished": finished,
        "created_at": _when(task["createdAt"]),
        "started_at": _when(task["startedAt"]),
        "finished_at": _when(task["finishedAt"]),
        "links": _output_links(output),
        "texts": [t for t in output.get("text") or [] if isinstance(t, Mapping)],
        "tree": _file_tree(output.get("files")),
        "may_change": _may_change(actor, task),
        "error": error,
        "error_status": status_code if error else None,
        "notice": None if error else NOTICES.get(request.query_params.get("notice", "")),
    }
    return _respond(request, "scaffolder/task.html", context, status_code, NO_STORE)


@router.get("/create/tasks/{task_id}")
def task_page(request: Request, task_id: str) -> Response:
    return _task_page(request, task_id[:40])


@router.post("/create/tasks/{task_id}/cancel", name="scaffolder.task.cancel")
def cancel_task(request: Request, task_id: str) -> Response:
    request.state.audit_target = task_id[:40]
    try:
        _service(request).cancel(task_id[:40], _actor(request))
    except ProblemError as exc:
        return _task_page(request, task_id[:40], error=exc.detail, status_code=exc.status)
    return RedirectResponse(f"{task_url(task_id[:40])}?notice=cancel-requested", status_code=303)


@router.post("/create/tasks/{task_id}/retry", name="scaffolder.task.retry")
async def retry_task(request: Request, task_id: str) -> Response:
    form = await request.form()
    secrets = {
        key.removeprefix("secret:"): value
        for key, value in form.multi_items()
        if key.startswith("secret:") and isinstance(value, str) and value
    }
    return await run_in_threadpool(_retry, request, task_id[:40], secrets)


def _retry(request: Request, task_id: str, secrets: dict[str, str]) -> Response:
    request.state.audit_target = task_id
    try:
        require(request, "scaffolder.task.create")
        task = _service(request).retry(task_id, _actor(request), secrets)
    except ProblemError as exc:
        return _task_page(request, task_id, error=exc.detail, status_code=exc.status)
    return RedirectResponse(f"{task_url(task['id'])}?notice=retried", status_code=303)


# -- template updates, and the entity page's Template box --------------------------------------


@router.post("/create/updates", name="scaffolder.project.update")
def update_project(request: Request, entity_ref: TextField = "") -> Response:
    request.state.audit_target = entity_ref[:400] or "update"
    try:
        task = _service(request).start_update(_actor(request), entity_ref=entity_ref or None)
    except ProblemError as exc:
        from pavedroad.portal.views import error_page

        return error_page(request, exc.status, "The update could not start", exc.detail)
    return RedirectResponse(f"{task_url(task['id'])}?notice=update-started", status_code=303)


@dataclass(frozen=True)
class ProjectInfo:
    """What the entity page says about the template an entity was made from."""

    repository: str
    repo_url: str
    template_ref: str
    template_title: str
    template_url: str  # its entity page
    create_url: str
    version: str
    latest_version: str | None
    behind: int
    refusal: str | None  # why the viewer may not update it, or None


def template_project(request: Request, ref: EntityRef) -> ProjectInfo | None:
    """The template the entity was made from (for its page), or ``None``."""
    if request.state.actor is None and request.app.state.settings.auth.required:
        return None
    service = _service(request)
    projects = ProjectStore(service.db, service.settings)
    row = projects.for_entity(ref.key)
    if row is None:
        return None
    try:
        state = projects.state(row.repository)
    except (ProblemError, OSError):
        state = {"templateRef": row.template_ref, "version": row.version, "behind": 0}
    template_ref = parse_ref(str(state["templateRef"]), "template")
    title = template_ref.name
    with service.catalog.reader() as reader:
        if reader.row_by_ref(template_ref.key) is not None:
            metadata = reader.get_by_ref(template_ref.key).get("metadata") or {}
            title = str(metadata.get("title") or title)
    owner, _, name = row.repository.partition("/")
    try:
        owner_ref = request.app.state.git.repo(owner, name).owner_ref
        refusal = _refusal(request, "git.repo.push", owner_ref)
    except ProblemError as exc:
        refusal = exc.detail
    return ProjectInfo(
        repository=row.repository,
        repo_url=f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}",
        template_ref=template_ref.key,
        template_title=title,
        template_url=entity_path("template", template_ref.namespace, template_ref.name),
        create_url=template_url(template_ref.namespace, template_ref.name),
        version=str(state["version"]),
        latest_version=state.get("latestVersion"),
        behind=int(state.get("behind") or 0),
        refusal=refusal,
    )


def _create_url(ref: EntityRef) -> str:
    return template_url(ref.namespace, ref.name)


templates.env.globals["template_project"] = template_project
templates.env.globals["template_create_url"] = _create_url
