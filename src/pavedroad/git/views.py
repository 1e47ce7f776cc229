"""The portal's Repositories pages: the hosted repositories with a form to create one
(``/repos``), and a repository's files at a branch, tag or commit, its README, its
commits and one commit's changes (``/repos/<owner>/<name>/...``).

The ref is always a ``?ref=`` query parameter (so ``feature/x`` needs no escaping in
the path); a path inside the repository is the rest of the URL path. Pages only read
through :mod:`pavedroad.git.browse`, which checks every ref and path before git sees
it: a hostile one is a 400 page, an unknown one a 404 page. Creating and deleting post
to routes with dotted names (``git.repo.create``, ``git.repo.delete``), so the audit
log records them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from pavedroad.catalog.queries import MAX_LIMIT, CatalogReader, EntityQuery
from pavedroad.catalog.refs import EntityRef
from pavedroad.core.errors import ForbiddenError, InputError, NotFoundError, ProblemError
from pavedroad.git import browse
from pavedroad.git.service import GitService
from pavedroad.identity.http import require
from pavedroad.identity.policy import Actor, Role, groups_of, with_parent_groups
from pavedroad.identity.web import form_token, keep_form_token
from pavedroad.portal.navigation import NavItem, add_nav_item
from pavedroad.portal.templating import add_template_directory, render, templates

router = APIRouter(include_in_schema=False)

TEMPLATES = Path(__file__).parent / "templates"
add_template_directory(TEMPLATES)
PAGES = ("git/repos.html", "git/tree.html", "git/blob.html", "git/commits.html", "git/commit.html")

COMMITS_PER_PAGE = 30
MAX_PAGE = 10_000
RECENT_PUSHES = 10

add_nav_item(
    NavItem("repos", "Repositories", "/repos", "code", lambda path, _q: path.startswith("/repos")),
    before="locations",
)

# Notices after a redirect; the URL names one, the text is ours.
NOTICES = {
    "created": "Repository created. Clone it and push your first commit.",
    "deleted": "Repository deleted, with all its history.",
}

TextField = Annotated[str, Form(max_length=2000)]


# -- what a page is about ---------------------------------------------------------------------


@dataclass(frozen=True)
class RepoView:
    """A hosted repository as the pages show it (``path``: its bare repository, for
    the pages that read it)."""

    owner: str
    name: str
    owner_ref: str
    description: str
    clone_url: str
    created_by: str
    created_at: str
    path: Path | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def url(self) -> str:
        return f"/repos/{quote(self.owner, safe='')}/{quote(self.name, safe='')}"

    @property
    def git_dir(self) -> Path:
        assert self.path is not None, "a RepoView from a list has no path"
        return self.path

    @classmethod
    def of(cls, info: Mapping[str, Any], path: Path | None = None) -> RepoView:
        return cls(
            owner=info["owner"],
            name=info["name"],
            owner_ref=info["ownerRef"],
            description=info["description"] or "",
            clone_url=info["cloneUrl"],
            created_by=info["createdBy"],
            created_at=info["createdAt"] or "",
            path=path,
        )


@dataclass(frozen=True)
class Links:
    """URLs within one repository at one ref."""

    base: str
    ref: str

    def _query(self, **extra: Any) -> str:
        params = {"ref": self.ref, **{k: v for k, v in extra.items() if v not in (None, "")}}
        return "?" + urlencode(params)

    def home(self) -> str:
        return self.base + self._query()

    def tree(self, path: str = "") -> str:
        if not path:
            return self.home()
        return f"{self.base}/tree/{quote(path)}{self._query()}"

    def blob(self, path: str, view: str = "") -> str:
        return f"{self.base}/blob/{quote(path)}{self._query(view=view)}"

    def commits(self, page: int = 1) -> str:
        return f"{self.base}/commits{self._query(page=page if page > 1 else None)}"

    def commit(self, sha: str) -> str:
        return f"{self.base}/commit/{quote(sha, safe='')}"

    def at(self, ref: str) -> Links:
        return Links(self.base, ref)


@dataclass(frozen=True)
class Push:
    ref: str
    before: str
    after: str
    pusher: str
    at: datetime | None

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")

    @property
    def deleted(self) -> bool:
        return set(self.after) == {"0"}


def _service(request: Request) -> GitService:
    return request.app.state.git  # type: ignore[no-any-return]


def _pushes(service: GitService, repo: RepoView, limit: int) -> list[Push]:
    return [
        Push(
            p["ref"],
            p["before"],
            p["after"],
            p["pusher"],
            datetime.fromisoformat(p["at"].replace("Z", "+00:00")) if p["at"] else None,
        )
        for p in service.pushes(repo.full_name, limit)
    ]


def _respond(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    context["csrf_token"] = form_token(request)  # a visitor while access control is off has none
    response = render(request, name, context, status_code)
    return keep_form_token(request, response)


def _problem_page(request: Request, exc: ProblemError, back: tuple[str, str] | None) -> Response:
    if exc.status == 404:
        return render(
            request,
            "portal/not_found.html",
            {
                "title": "Not found",
                "message": exc.detail,
                "back": back or ("/repos", "All repositories"),
            },
            status_code=404,
        )
    from pavedroad.portal.views import error_page

    return error_page(request, exc.status, exc.title, exc.detail)


def _refusal(request: Request, permission: str, owner_ref: str) -> str | None:
    """Why the caller may not use this permission on the owner, or ``None``."""
    try:
        require(request, permission, owner_ref)
    except ForbiddenError as exc:
        return exc.detail
    return None


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


# -- the list and the new-repository form ------------------------------------------------------


def _all_groups(reader: CatalogReader) -> list[str]:
    query = EntityQuery(
        filter={"kind": "group"},
        limit=MAX_LIMIT,
        fields=["kind", "metadata.name", "metadata.namespace"],
        order=[("metadata.name", "asc")],
    )
    refs = []
    for item in reader.query(query).items:
        metadata = item.get("metadata") or {}
        if str(metadata.get("namespace", "default")).lower() == "default":
            refs.append(EntityRef.of(item).key)
    return refs


def owner_choices(request: Request) -> list[str]:
    """The owners the caller may create a repository for: their groups (with the groups
    above them) and their own User; an admin (or anyone while sign-in is off) any group."""
    actor: Actor | None = request.state.actor
    if actor is not None and actor.role is Role.viewer:
        return []
    with request.app.state.db.read_session() as session:
        reader = CatalogReader(session)
        if actor is None or actor.role is Role.admin:
            groups = _all_groups(reader)
        elif actor.user_ref:
            groups = groups_of(reader, actor.user_ref)
        elif actor.group_ref:
            groups = with_parent_groups(reader, [actor.group_ref])
        else:
            groups = []
        groups = [g for g in groups if g.startswith("group:default/")]
        user = actor.user_ref if actor is not None else None
        if user and user.startswith("user:default/") and reader.row_by_ref(user) is not None:
            groups.append(user)
    return groups


def _list_page(
    request: Request,
    *,
    error: str | None = None,
    status_code: int = 200,
    form: Mapping[str, str] | None = None,
) -> Response:
    service = _service(request)
    rows = [RepoView.of(info) for info in service.repos()]
    last_push = {repo.full_name: next(iter(_pushes(service, repo, 1)), None) for repo in rows}
    actor: Actor | None = request.state.actor
    context = {
        "title": "Repositories",
        "repos": rows,
        "last_push": last_push,
        "owners": owner_choices(request),
        "viewer": actor is not None and actor.role is Role.viewer,
        "error": error,
        "error_status": status_code if error else None,
        "form": form or {},
        "notice": None if error else _notice(request),
    }
    return _respond(request, "git/repos.html", context, status_code)


@router.get("/repos")
def repos_page(request: Request) -> Response:
    return _list_page(request)


@router.post("/repos", name="git.repo.create")
def create_repo(
    request: Request, owner: TextField = "", name: TextField = "", description: TextField = ""
) -> Response:
    service = _service(request)
    form = {"owner": owner, "name": name, "description": description}
    request.state.audit_target = f"{owner.strip()[:100]}/{name.strip()[:100]}"
    try:
        if not owner.strip():
            raise InputError("choose the group (or user) that owns the repository")
        owner_ref = service.owner_ref(owner)
        request.state.audit_target = f"{owner_ref.split('/', 1)[1]}/{name.strip()[:100]}"
        require(request, "git.repo.create", owner_ref)
        actor = getattr(request.state, "actor_name", None) or "anonymous"
        repo = service.create(owner_ref, name.strip(), actor, description.strip())
    except ProblemError as exc:
        return _list_page(request, error=exc.detail, status_code=exc.status, form=form)
    target = f"/repos/{quote(repo['owner'], safe='')}/{quote(repo['name'], safe='')}"
    return RedirectResponse(f"{target}?notice=created", status_code=303)


# -- one repository ---------------------------------------------------------------------------


def _repo(request: Request, owner: str, name: str) -> RepoView:
    service = _service(request)
    row = service.repo(owner, name)
    return RepoView.of(service.describe(row), service.path(row))


def _ref_param(ref: str | None) -> str | None:
    return ref if ref else None


def _page(
    request: Request, owner: str, name: str, build: Callable[[RepoView], Response]
) -> Response:
    """Run a page's builder; its 404s and 400s become pages, never tracebacks."""
    try:
        repo = _repo(request, owner, name)
    except ProblemError as exc:
        return _problem_page(request, exc, None)
    try:
        return build(repo)
    except ProblemError as exc:
        return _problem_page(request, exc, (repo.url, repo.full_name))


def _repo_context(
    request: Request, repo: RepoView, refs: browse.Refs, ref: str, commit: str, section: str
) -> dict[str, Any]:
    """What every page of a repository shows in its header."""
    known = {r.name for r in refs.branches} | {r.name for r in refs.tags}
    return {
        "repo": repo,
        "refs": refs,
        "ref": ref,
        "ref_label": ref[:10] if ref not in known and browse.is_commit_id(ref) else ref,
        "ref_is_known": ref in known,
        "commit_sha": commit,
        "links": Links(repo.url, ref),
        "section": section,
        "may_delete": _refusal(request, "git.repo.delete", repo.owner_ref) is None,
        "notice": _notice(request),
    }


def _breadcrumbs(links: Links, path: str) -> list[tuple[str, str]]:
    parts = path.split("/") if path else []
    return [(part, links.tree("/".join(parts[: i + 1]))) for i, part in enumerate(parts)]


def _tree_page(
    request: Request,
    repo: RepoView,
    ref: str | None,
    path: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    folder = browse.check_path(path)
    if ref is not None:
        browse.check_ref(ref)
    refs = browse.refs(repo.git_dir)
    service = _service(request)
    service.import_spool()  # what the hooks wrote just now
    pushes = _pushes(service, repo, RECENT_PUSHES)
    ref = ref or refs.default
    if ref is None:  # no commits yet
        if folder:
            raise NotFoundError(f"{repo.full_name} is empty: it has no {folder!r} yet")
        context = _repo_context(request, repo, refs, "", "", "code")
        context.update(
            {
                "title": repo.full_name,
                "empty": True,
                "pushes": pushes,
                "error": error,
                "error_status": status_code if error else None,
            }
        )
        return _respond(request, "git/tree.html", context, status_code)
    try:
        listing = browse.tree(repo.git_dir, ref, folder)
    except browse.NotATreeError:
        return RedirectResponse(Links(repo.url, ref).blob(folder), status_code=303)
    last = browse.commits(repo.git_dir, listing.commit, 1)
    context = _repo_context(request, repo, refs, ref, listing.commit, "code")
    context.update(
        {
            "title": f"{folder} · {repo.full_name}" if folder else repo.full_name,
            "empty": False,
            "tree": listing,
            "path": folder,
            "breadcrumbs": _breadcrumbs(context["links"], folder),
            "parent": context["links"].tree(folder.rpartition("/")[0]) if folder else None,
            "readme": browse.readme(repo.git_dir, listing.commit, folder),
            "last_commit": last[0] if last else None,
            "pushes": pushes if not folder else [],
            "error": error,
            "error_status": status_code if error else None,
        }
    )
    return _respond(request, "git/tree.html", context, status_code)


@router.get("/repos/{owner}/{name}")
def repo_page(request: Request, owner: str, name: str, ref: str | None = None) -> Response:
    return _page(request, owner, name, lambda repo: _tree_page(request, repo, _ref_param(ref), ""))


@router.get("/repos/{owner}/{name}/tree/{path:path}")
def tree_page(
    request: Request, owner: str, name: str, path: str, ref: str | None = None
) -> Response:
    return _page(
        request, owner, name, lambda repo: _tree_page(request, repo, _ref_param(ref), path)
    )


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


@router.get("/repos/{owner}/{name}/blob/{path:path}")
def blob_page(
    request: Request, owner: str, name: str, path: str, ref: str | None = None, view: str = ""
) -> Response:
    def build(repo: RepoView) -> Response:
        filepath = browse.check_path(path)
        if ref:
            browse.check_ref(ref)
        refs = browse.refs(repo.git_dir)
        current = _ref_param(ref) or refs.default
        if current is None or not filepath:
            raise NotFoundError(f"there is no file {filepath!r} in {repo.full_name}")
        try:
            content = browse.blob(repo.git_dir, current, filepath)
        except browse.NotABlobError:
            return RedirectResponse(Links(repo.url, current).tree(filepath), status_code=303)
        context = _repo_context(request, repo, refs, current, content.commit, "code")
        source = view == "source" or not content.is_markdown
        context.update(
            {
                "title": f"{filepath} · {repo.full_name}",
                "blob": content,
                "path": filepath,
                "breadcrumbs": _breadcrumbs(context["links"], filepath),
                "show_source": source,
                "lines": _lines(content.text) if source and not content.binary else [],
            }
        )
        return _respond(request, "git/blob.html", context)

    return _page(request, owner, name, build)


def _page_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InputError(f"the page must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


@router.get("/repos/{owner}/{name}/commits")
def commits_page(
    request: Request, owner: str, name: str, ref: str | None = None, page: str = "1"
) -> Response:
    def build(repo: RepoView) -> Response:
        number = _page_number(page[:6])
        if ref:
            browse.check_ref(ref)
        refs = browse.refs(repo.git_dir)
        current = _ref_param(ref) or refs.default
        found: list[browse.CommitSummary] = []
        sha = ""
        if current is not None:
            sha = browse.resolve(repo.git_dir, current)
            skip = (number - 1) * COMMITS_PER_PAGE
            found = browse.commits(repo.git_dir, sha, COMMITS_PER_PAGE + 1, skip)
        context = _repo_context(request, repo, refs, current or "", sha, "commits")
        context.update(
            {
                "title": f"Commits · {repo.full_name}",
                "commits": found[:COMMITS_PER_PAGE],
                "page": number,
                "has_next": len(found) > COMMITS_PER_PAGE,
            }
        )
        return _respond(request, "git/commits.html", context)

    return _page(request, owner, name, build)


@router.get("/repos/{owner}/{name}/commit/{sha}")
def commit_page(request: Request, owner: str, name: str, sha: str) -> Response:
    def build(repo: RepoView) -> Response:
        detail = browse.commit(repo.git_dir, sha)
        refs = browse.refs(repo.git_dir)
        context = _repo_context(request, repo, refs, detail.sha, detail.sha, "commits")
        context.update({"title": f"{detail.subject[:80]} · {repo.full_name}", "commit": detail})
        return _respond(request, "git/commit.html", context)

    return _page(request, owner, name, build)


@router.post("/repos/{owner}/{name}/delete", name="git.repo.delete")
def delete_repo(request: Request, owner: str, name: str, confirm: TextField = "") -> Response:
    request.state.audit_target = f"{owner[:63]}/{name[:100]}"
    try:
        repo = _repo(request, owner, name)
    except ProblemError as exc:
        return _problem_page(request, exc, None)
    try:
        require(request, "git.repo.delete", repo.owner_ref)
        if confirm.strip() not in (repo.name, repo.full_name):
            raise InputError(
                f"type the repository's name ({repo.name}) to confirm; nothing was deleted"
            )
        _service(request).delete(repo.owner, repo.name)
    except ProblemError as exc:
        refused = exc
    else:
        return RedirectResponse("/repos?notice=deleted", status_code=303)
    return _page(
        request,
        owner,
        name,
        lambda again: _tree_page(
            request, again, None, "", error=refused.detail, status_code=refused.status
        ),
    )


# -- for other pages ----------------------------------------------------------------------------


def owner_repositories(request: Request, ref: EntityRef) -> list[RepoView]:
    """The hosted repositories a Group or User owns (for its entity page); none for
    anonymous visitors where sign-in is required (the Repositories pages need it)."""
    if request.state.actor is None and request.app.state.settings.auth.required:
        return []
    service = _service(request)
    return [RepoView.of(info) for info in service.repos(ref.name) if info["ownerRef"] == ref.key]


def filesize(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


templates.env.filters["filesize"] = filesize
templates.env.globals["owner_repositories"] = owner_repositories
