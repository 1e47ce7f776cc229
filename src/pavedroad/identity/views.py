"""The identity pages of the portal: a user's settings and personal access tokens
(``/settings``), accounts and service tokens for admins (``/admin``) and the audit log
(``/audit``).

A new token's secret is shown once, in the answer to the form that made it, and is
never put in a URL or kept; pages that can show one are sent with ``Cache-Control:
no-store``. Every form here posts to a route with a dotted name, so the audit log
records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from pavedroad.catalog.queries import MAX_LIMIT, CatalogReader, EntityQuery
from pavedroad.catalog.refs import parse_ref
from pavedroad.core import audit
from pavedroad.core.errors import (
    ForbiddenError,
    InputError,
    NotFoundError,
    ProblemError,
)
from pavedroad.core.timeutil import utcnow
from pavedroad.identity.http import client_ip, require
from pavedroad.identity.policy import Actor, Role, groups_of
from pavedroad.identity.service import (
    MIN_PASSWORD_LENGTH,
    SCOPES,
    IdentityService,
)
from pavedroad.identity.sessions import SessionService
from pavedroad.identity.web import form_token, keep_form_token
from pavedroad.portal.templating import add_template_directory, render

router = APIRouter(include_in_schema=False)

TEMPLATES = Path(__file__).parent / "templates"
add_template_directory(TEMPLATES)
PAGES = ("identity/settings.html", "identity/admin.html", "identity/audit.html")

EXPIRY_CHOICES: dict[str, tuple[str, timedelta | None]] = {
    "7": ("7 days", timedelta(days=7)),
    "30": ("30 days", timedelta(days=30)),
    "90": ("90 days", timedelta(days=90)),
    "never": ("Never", None),
}
DEFAULT_EXPIRY = "30"
AUDIT_PAGE_SIZE = 50
AUDIT_EXPORT_LIMIT = 10_000
AUDIT_OUTCOMES = ("success", "failure", "denied")
NO_STORE = {"Cache-Control": "no-store"}

# Notices after a redirect; the URL names one, the text is ours.
NOTICES = {
    "token-revoked": "Token revoked: it no longer works.",
    "password-changed": "Password changed. Your other sessions were signed out.",
    "user-created": "User created.",
    "role-changed": "Role changed.",
    "service-token-revoked": "Service token revoked: it no longer works.",
}

TextField = Annotated[str, Form(max_length=1024)]
ScopeField = Annotated[list[str] | None, Form()]


@dataclass(frozen=True)
class TokenView:
    """A token as the tables show it (never its secret)."""

    id: str
    name: str
    account: str
    group: str | None
    scopes: list[str]
    created_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: dict[str, Any]) -> TokenView:
        return cls(
            id=info["id"],
            name=info["name"],
            account=info["account"],
            group=info["group"],
            scopes=list(info["scopes"]),
            created_at=_when(info["createdAt"]),
            expires_at=_when(info["expiresAt"]),
            last_used_at=_when(info["lastUsedAt"]),
            revoked_at=_when(info["revokedAt"]),
        )

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"


@dataclass(frozen=True)
class NewToken:
    token: TokenView
    secret: str


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _identity(request: Request) -> IdentityService:
    return request.app.state.identity  # type: ignore[no-any-return]


def _sessions(request: Request) -> SessionService:
    return request.app.state.sessions  # type: ignore[no-any-return]


def _error(request: Request, status: int, title: str, message: str) -> Response:
    from pavedroad.portal.views import error_page

    return error_page(request, status, title, message)


def _refusal(request: Request, permission_name: str) -> str | None:
    """Why the caller may not use this permission, or ``None`` when they may."""
    try:
        require(request, permission_name)
    except ForbiddenError as exc:
        return exc.detail
    return None


def _with_headers(response: Response) -> Response:
    response.headers.update(NO_STORE)
    return response


def _expiry(choice: str) -> timedelta | None:
    if choice not in EXPIRY_CHOICES:
        raise InputError(f"choose an expiry: {', '.join(EXPIRY_CHOICES)}")
    return EXPIRY_CHOICES[choice][1]


def _scopes(chosen: list[str] | None, allowed: tuple[str, ...]) -> list[str]:
    scopes = list(dict.fromkeys(chosen or []))
    if not scopes:
        raise InputError("choose at least one scope")
    if not set(scopes) <= set(allowed):
        raise ForbiddenError(f"you may give a token the scopes {', '.join(allowed)}")
    return scopes


def _scope_choices(actor: Actor | None) -> tuple[str, ...]:
    """Only admins may make admin-scope tokens (the scope would grant them nothing
    else, but offering it would mislead)."""
    if actor is None or actor.role is Role.admin:
        return SCOPES
    return tuple(s for s in SCOPES if s != "admin")


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


# -- settings: the signed-in user's account, tokens and password ----------------------------


def _account_holder(request: Request) -> Actor | Response:
    """The signed-in user, or the page saying why there are no settings to show."""
    actor: Actor | None = request.state.actor
    if actor is None:
        return _error(
            request,
            401,
            "Not signed in",
            "Settings belong to a signed-in user. Sign in to manage your tokens and password.",
        )
    if actor.group_ref is not None:
        return _error(
            request,
            403,
            "Not a user",
            "This request comes with a group's service token; settings belong to users.",
        )
    return actor


def _account(identity: IdentityService, name: str) -> dict[str, Any] | None:
    return next((a for a in identity.accounts() if a["name"] == name.lower()), None)


def _settings_page(
    request: Request,
    actor: Actor,
    *,
    error: str | None = None,
    error_form: str | None = None,
    status_code: int = 200,
    new_token: NewToken | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    identity = _identity(request)
    groups: list[str] = []
    if actor.user_ref:
        with request.app.state.db.read_session() as session:
            groups = groups_of(CatalogReader(session), actor.user_ref)
    tokens = [TokenView.of(t) for t in identity.tokens(actor.name)]
    tokens.sort(key=lambda t: (t.status != "active", -(t.created_at or utcnow()).timestamp()))
    context = {
        "title": "Settings",
        "actor": actor,
        "account": _account(identity, actor.name),
        "groups": groups,
        "tokens": tokens,
        "scope_choices": _scope_choices(actor),
        "expiry_choices": EXPIRY_CHOICES,
        "default_expiry": DEFAULT_EXPIRY,
        "min_password_length": MIN_PASSWORD_LENGTH,
        "new_token": new_token,
        "error": error,
        "error_form": error_form,
        "form": form or {},
        "notice": None if error or new_token else _notice(request),
    }
    return _with_headers(render(request, "identity/settings.html", context, status_code))


@router.get("/settings")
def settings_page(request: Request) -> Response:
    actor = _account_holder(request)
    if isinstance(actor, Response):
        return actor
    return _settings_page(request, actor)


@router.post("/settings/tokens", name="identity.token.create")
def create_personal_token(
    request: Request,
    name: TextField = "",
    scopes: ScopeField = None,
    expiry: TextField = DEFAULT_EXPIRY,
) -> Response:
    actor = _account_holder(request)
    if isinstance(actor, Response):
        return actor
    request.state.audit_target = f"token {name.strip()[:100]!r} of user:{actor.name}"
    try:
        info, secret = _identity(request).create_token(
            actor.name,
            name,
            _scopes(scopes, _scope_choices(actor)),
            _expiry(expiry),
        )
    except ProblemError as exc:
        form = {"name": name, "scopes": scopes or [], "expiry": expiry}
        return _settings_page(
            request,
            actor,
            error=exc.detail,
            error_form="token",
            status_code=exc.status,
            form=form,
        )
    request.state.audit_target = f"token:{info['id']}"
    return _settings_page(request, actor, new_token=NewToken(TokenView.of(info), secret))


@router.post("/settings/tokens/{token_id}/revoke", name="identity.token.revoke")
def revoke_personal_token(request: Request, token_id: str) -> Response:
    actor = _account_holder(request)
    if isinstance(actor, Response):
        return actor
    request.state.audit_target = f"token:{token_id[:64]}"
    identity = _identity(request)
    try:
        info = identity.token(token_id)
    except NotFoundError:
        info = None
    # Someone else's token is "not found" too: its existence is not this user's business.
    if info is None or info["group"] is not None or info["account"] != actor.name.lower():
        return _error(request, 404, "Not found", "You have no token with that id.")
    identity.revoke_token(token_id)
    return RedirectResponse("/settings?notice=token-revoked", status_code=303)


@router.post("/settings/password", name="identity.password.change")
def change_password(
    request: Request,
    current_password: TextField = "",
    new_password: TextField = "",
    confirm_password: TextField = "",
) -> Response:
    actor = _account_holder(request)
    if isinstance(actor, Response):
        return actor
    request.state.audit_target = f"user:{actor.name}"
    try:
        _set_password(request, actor, current_password, new_password, confirm_password)
    except ProblemError as exc:
        return _settings_page(
            request, actor, error=exc.detail, error_form="password", status_code=exc.status
        )
    # A changed password ended every session of the account, this one too; the user
    # goes on in a fresh session rather than being sent to sign in again.
    if request.state.web_session is None:
        return RedirectResponse("/settings?notice=password-changed", status_code=303)
    from pavedroad.identity.web import begin_session

    return begin_session(request, actor.name, "password", "/settings?notice=password-changed")


def _set_password(request: Request, actor: Actor, current: str, new: str, confirm: str) -> None:
    identity = _identity(request)
    account = _account(identity, actor.name)
    if account is None:
        raise NotFoundError(
            f"{actor.name} has no local account, so no password to change; "
            "an admin can create one on the Administration page"
        )
    if len(new) < MIN_PASSWORD_LENGTH:
        raise InputError(f"the new password needs at least {MIN_PASSWORD_LENGTH} characters")
    if new != confirm:
        raise InputError("the new password and its confirmation differ; type them again")
    _sessions(request).change_password(actor.name, current, new, client_ip(request))


# -- administration: accounts and service tokens -----------------------------------------------


@dataclass(frozen=True)
class AdminAccess:
    users: str | None  # why the caller may not manage users, or None
    service_tokens: str | None

    @property
    def refused(self) -> str | None:
        if self.users and self.service_tokens:
            return self.users
        return None


def _admin_access(request: Request) -> AdminAccess:
    return AdminAccess(
        users=_refusal(request, "identity.user.manage"),
        service_tokens=_refusal(request, "identity.service_token.manage"),
    )


def _groups(request: Request) -> list[tuple[str, str]]:
    """Every Group in the catalog: (ref, label), for the service-token form."""
    query = EntityQuery(
        filter={"kind": "group"},
        limit=MAX_LIMIT,
        fields=["kind", "metadata.name", "metadata.namespace"],
        order=[("metadata.name", "asc")],
    )
    with request.app.state.catalog.reader() as reader:
        items = reader.query(query).items
    groups = []
    for item in items:
        metadata = item.get("metadata") or {}
        ref = parse_ref(f"group:{metadata.get('namespace', 'default')}/{metadata.get('name')}")
        groups.append((ref.key, ref.display("group")))
    return groups


def _admin_page(
    request: Request,
    access: AdminAccess,
    *,
    error: str | None = None,
    error_form: str | None = None,
    status_code: int = 200,
    new_token: NewToken | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    identity = _identity(request)
    accounts = (
        [{**a, "created": _when(a["createdAt"])} for a in identity.accounts()]
        if access.users is None
        else []
    )
    tokens = (
        [TokenView.of(t) for t in identity.service_tokens()]
        if access.service_tokens is None
        else []
    )
    tokens.sort(key=lambda t: (t.status != "active", t.group or "", t.name.lower()))
    actor: Actor | None = request.state.actor
    context = {
        "title": "Administration",
        "access": access,
        "accounts": accounts,
        "roles": [r.value for r in Role],
        "me": actor.name if actor else None,
        "tokens": tokens,
        "groups": _groups(request) if access.service_tokens is None else [],
        "scope_choices": SCOPES,
        "expiry_choices": EXPIRY_CHOICES,
        "default_expiry": DEFAULT_EXPIRY,
        "new_token": new_token,
        "error": error,
        "error_form": error_form,
        "form": form or {},
        "notice": None if error or new_token else _notice(request),
        "csrf_token": form_token(request),  # a visitor while access control is off has none
    }
    response = render(request, "identity/admin.html", context, status_code)
    return _with_headers(keep_form_token(request, response))


def _admin_refusal(request: Request, reason: str | None) -> Response | None:
    return _error(request, 403, "Not allowed", reason) if reason else None


@router.get("/admin")
def admin_page(request: Request) -> Response:
    access = _admin_access(request)
    if access.refused:
        return _error(request, 403, "Not allowed", access.refused)
    return _admin_page(request, access)


@router.post("/admin/users", name="identity.user.create")
def create_user(
    request: Request,
    name: TextField = "",
    role: TextField = Role.member.value,
    password: TextField = "",
) -> Response:
    access = _admin_access(request)
    request.state.audit_target = f"user:{name.strip().lower()[:100]}"
    if refused := _admin_refusal(request, access.users):
        return refused
    try:
        _identity(request).create_account(name.strip(), _role(role), password or None)
    except ProblemError as exc:
        form = {"name": name, "role": role}
        return _admin_page(
            request, access, error=exc.detail, error_form="user", status_code=exc.status, form=form
        )
    return RedirectResponse("/admin?notice=user-created", status_code=303)


@router.post("/admin/users/{name}/role", name="identity.user.update")
def change_role(request: Request, name: str, role: TextField = "") -> Response:
    access = _admin_access(request)
    request.state.audit_target = f"user:{name.lower()[:100]} role={role[:20]}"
    if refused := _admin_refusal(request, access.users):
        return refused
    actor: Actor | None = request.state.actor
    try:
        if actor is not None and actor.name == name.lower():
            raise InputError(
                "you cannot change your own role (an admin could lock everyone out); "
                "ask another admin"
            )
        _identity(request).set_role(name, _role(role))
    except ProblemError as exc:
        return _admin_page(
            request, access, error=exc.detail, error_form="users", status_code=exc.status
        )
    return RedirectResponse("/admin?notice=role-changed", status_code=303)


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InputError(f"a role is one of {', '.join(r.value for r in Role)}") from None


@router.post("/admin/service-tokens", name="identity.service_token.create")
def create_service_token(
    request: Request,
    group: TextField = "",
    name: TextField = "",
    scopes: ScopeField = None,
    expiry: TextField = DEFAULT_EXPIRY,
) -> Response:
    access = _admin_access(request)
    request.state.audit_target = f"service token {name.strip()[:100]!r} of {group[:200]}"
    if refused := _admin_refusal(request, access.service_tokens):
        return refused
    actor: Actor | None = request.state.actor
    try:
        if not group:
            raise InputError("choose the group the token acts for")
        info, secret = _identity(request).create_token(
            actor.name if actor else "anonymous",
            name,
            _scopes(scopes, SCOPES),
            _expiry(expiry),
            group=group,
        )
    except ProblemError as exc:
        form = {"group": group, "name": name, "scopes": scopes or [], "expiry": expiry}
        return _admin_page(
            request,
            access,
            error=exc.detail,
            error_form="service-token",
            status_code=exc.status,
            form=form,
        )
    request.state.audit_target = f"{info['group']} token:{info['id']}"
    return _admin_page(request, access, new_token=NewToken(TokenView.of(info), secret))


@router.post("/admin/service-tokens/{token_id}/revoke", name="identity.token.revoke")
def revoke_service_token(request: Request, token_id: str) -> Response:
    access = _admin_access(request)
    request.state.audit_target = f"token:{token_id[:64]}"
    if refused := _admin_refusal(request, access.service_tokens):
        return refused
    identity = _identity(request)
    try:
        info = identity.token(token_id)
    except NotFoundError:
        info = None
    if info is None or info["group"] is None:
        return _error(request, 404, "Not found", "There is no service token with that id.")
    identity.revoke_token(token_id)
    request.state.audit_target = f"{info['group']} token:{token_id}"
    return RedirectResponse("/admin?notice=service-token-revoked", status_code=303)


# -- the audit log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    actor: str
    action: str
    outcome: str

    @classmethod
    def from_request(cls, request: Request) -> AuditFilter:
        params = request.query_params
        outcome = params.get("outcome", "")
        return cls(
            actor=params.get("actor", "").strip()[:400],
            action=params.get("action", "").strip()[:100],
            outcome=outcome if outcome in AUDIT_OUTCOMES else "",
        )

    def params(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in vars(self).items() if v]

    def href(self, path: str, *extra: tuple[str, str]) -> str:
        query = urlencode([*self.params(), *extra])
        return path + (f"?{query}" if query else "")


@router.get("/audit")
def audit_page(request: Request) -> Response:
    if reason := _refusal(request, "audit.read"):
        return _error(request, 403, "Not allowed", reason)
    chosen = AuditFilter.from_request(request)
    before = request.query_params.get("before", "")[:64] or None
    notice = None
    try:
        events = _audit_events(request, chosen, before)
    except NotFoundError:
        notice = "That page link no longer works, so this is the newest page."
        before = None
        events = _audit_events(request, chosen, None)
    older = None
    if len(events) > AUDIT_PAGE_SIZE:
        events = events[:AUDIT_PAGE_SIZE]
        older = chosen.href("/audit", ("before", events[-1]["id"]))
    export = chosen.href("/api/v1/audit", ("format", "jsonl"), ("limit", str(AUDIT_EXPORT_LIMIT)))
    return render(
        request,
        "identity/audit.html",
        {
            "title": "Audit log",
            "filter": chosen,
            "outcomes": AUDIT_OUTCOMES,
            "events": [{**e, "when": _when(e["at"])} for e in events],
            "older": older,
            "newest": chosen.href("/audit") if before else None,
            "export": export,
            "notice": notice,
        },
    )


def _audit_events(
    request: Request, chosen: AuditFilter, before: str | None
) -> list[dict[str, Any]]:
    return audit.search(
        request.app.state.db,
        actor=chosen.actor or None,
        action=chosen.action or None,
        outcome=chosen.outcome or None,
        limit=AUDIT_PAGE_SIZE + 1,
        before=before,
    )
