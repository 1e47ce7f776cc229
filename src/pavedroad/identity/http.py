"""Who is asking: a bearer token or a portal session on every request, CSRF checks,
and the checks routes make.

With ``auth.required`` (the default) every request except the health check, metrics,
static files and the sign-in pages needs a valid token or session: API calls get a
401 problem, browsers are sent to the sign-in page. Requests that change something
with a session cookie (and every form post) must carry the CSRF token, in the
``csrf_token`` form field or the ``X-CSRF-Token`` header. With ``auth.required`` off
requests may be anonymous, but a token or session that is presented must be valid and
is then held to its scopes and to the access policy.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import RedirectResponse, Response

from pavedroad.catalog.queries import CatalogReader
from pavedroad.core import audit
from pavedroad.core.errors import ForbiddenError, NotFoundError, ProblemError
from pavedroad.core.http import problem_response
from pavedroad.identity.policy import Scope, decide, permission
from pavedroad.identity.service import SCOPES, AuthenticationError, IdentityService
from pavedroad.identity.sessions import (
    PRE_SESSION_COOKIE,
    SESSION_COOKIE,
    SessionService,
    WebSession,
)

OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/metrics",
        "/favicon.ico",
        "/sign-in",
        "/sign-out",
        # a CLI signing in through the browser has no credentials yet
        "/api/v1/identity/device",
        "/api/v1/identity/device/token",
    }
)
# /git/ answers git clients itself (401 with a Basic challenge; push permissions).
# Webhooks carry no session: each delivery is authenticated by its own signature
# (git/webhooks.py), so neither sign-in nor the CSRF token applies to them, form posts
# (GitHub's default content type) included.
WEBHOOK_PREFIX = "/api/v1/git/webhooks/"
OPEN_PREFIXES = ("/static/", "/sign-in/", "/git/", WEBHOOK_PREFIX)
ANONYMOUS_READ_PREFIXES = ("/api/catalog/", "/api/v1/catalog/", "/catalog", "/pipelines/badge/")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class AuthenticationMiddleware(BaseHTTPMiddleware):
    def __init__(
        self,
        app: Any,
        identity: IdentityService,
        sessions: SessionService,
        required: bool,
        anonymous_read: bool = False,
    ) -> None:
        super().__init__(app)
        self.identity = identity
        self.sessions = sessions
        self.required = required
        self.anonymous_read = anonymous_read

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await self._dispatch(request, call_next)
        if request.state.stale_session:  # forget a cookie that no longer names a session
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def _dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        state = request.state
        state.actor = None
        state.actor_name = None
        state.scopes = frozenset()
        state.web_session = None
        state.stale_session = False
        try:
            header = request.headers.get("authorization", "")
            if header:
                scheme, _, token = header.partition(" ")
                if scheme.lower() == "basic" and request.url.path.startswith("/git/"):
                    token = _basic_password(token)  # git sends the token as a password
                elif scheme.lower() != "bearer" or not token.strip():
                    raise AuthenticationError("use an Authorization: Bearer <token> header")
                state.actor, state.scopes = self.identity.authenticate(token.strip())
                if request.method in UNSAFE_METHODS and not state.scopes & {"write", "admin"}:
                    state.actor_name = state.actor.name
                    raise ForbiddenError(
                        "this token has only the read scope; changes need a token with "
                        "the write scope"
                    )
            else:
                self._resume_session(request)
                if state.actor is not None:  # so a refused forgery names whose session it used
                    state.actor_name = state.actor.name
                if (
                    request.method in UNSAFE_METHODS
                    and (state.web_session is not None or _is_form(request))
                    and not request.url.path.startswith(WEBHOOK_PREFIX)
                ):
                    await self._check_csrf(request, state.web_session)
            if state.actor is not None:
                state.actor_name = state.actor.name
            elif self.required and not self._open(request):
                if _is_page(request):
                    target = request.url.path + (
                        f"?{request.url.query}" if request.url.query else ""
                    )
                    return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", 303)
                raise AuthenticationError(
                    "sign in: send a personal access token as Authorization: Bearer <token>, "
                    "or use the portal's session"
                    + (
                        " (this session has ended or its cookie is not valid)"
                        if state.stale_session
                        else ""
                    )
                )
        except ProblemError as exc:
            self._record_refusal(request, exc)
            state.refusal_recorded = True  # the audit middleware need not record it again
            if _wants_page(request):
                from pavedroad.portal.views import error_page

                return error_page(request, exc.status, exc.title, exc.detail)
            return problem_response(request, exc.status, exc.title, exc.detail, exc.type_slug)
        return await call_next(request)

    def _resume_session(self, request: Request) -> None:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return
        web_session = self.sessions.resolve(cookie)
        actor = None
        if web_session is not None:
            try:
                actor = self.identity.actor(web_session.account)
            except NotFoundError:  # the account and its catalog User are gone
                actor = None
        if web_session is None or actor is None:
            # Forged, ended or expired: the request goes on signed out, on the record.
            request.state.stale_session = True
            self._record_refusal(
                request,
                AuthenticationError("the session cookie is forged, ended or expired"),
                action="identity.session.resume",
            )
            return
        request.state.web_session = web_session
        request.state.actor = actor
        request.state.scopes = frozenset(SCOPES)

    async def _check_csrf(self, request: Request, web_session: WebSession | None) -> None:
        expected = web_session.csrf_token if web_session else pre_session_token(request)
        presented = request.headers.get(CSRF_HEADER)
        if presented is None and _is_form(request):
            presented = await _form_field(request, CSRF_FIELD)
        if not expected or not presented or not hmac.compare_digest(expected, presented):
            raise ForbiddenError(
                "the form's CSRF token is missing or does not match this session; "
                "reload the page and try again"
            )

    def _open(self, request: Request) -> bool:
        path = request.url.path
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return True
        return (
            self.anonymous_read
            and request.method in ("GET", "HEAD")
            and (path == "/" or path.startswith(ANONYMOUS_READ_PREFIXES))
        )

    def _record_refusal(
        self, request: Request, exc: ProblemError, action: str | None = None
    ) -> None:
        audit.record(
            self.identity.db,
            audit.AuditEvent(
                actor=getattr(request.state, "actor_name", None) or "anonymous",
                action=(action or f"{request.method} {request.url.path}")[:100],
                target=request.url.path,
                outcome="denied",
                status=exc.status,
                source_ip=client_ip(request),
                request_id=getattr(request.state, "request_id", None),
            ),
        )


def _basic_password(credentials: str) -> str:
    import base64
    import binascii

    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationError("the Basic credentials are not valid base64") from None
    return decoded.partition(":")[2]


def pre_session_token(request: Request) -> str | None:
    """The CSRF token a browser holds before it signs in (from its signed cookie)."""
    cookie = request.cookies.get(PRE_SESSION_COOKIE)
    sessions: SessionService = request.app.state.sessions
    return sessions.signer.unsign(cookie) if cookie else None


def csrf_token(request: Request) -> str | None:
    """The token this request's forms must carry."""
    web_session = getattr(request.state, "web_session", None)
    return web_session.csrf_token if web_session else pre_session_token(request)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _is_page(request: Request) -> bool:
    """A portal page (or the API docs): signed-out browsers go to the sign-in page."""
    path = request.url.path
    return not path.startswith("/api/") or path == "/api/docs"


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() in FORM_TYPES


async def _form_field(request: Request, name: str) -> str | None:
    # Read the body once: it is kept for the route, which parses the form again.
    body = await request.body()
    if request.headers.get("content-type", "").startswith("multipart/"):
        value = (await request.form()).get(name)
        return value if isinstance(value, str) else None
    values = parse_qs(body.decode("latin-1"), max_num_fields=1000).get(name)
    return values[0] if values else None


def require(request: Request, permission_name: str, entity: str | None = None) -> None:
    """Refuse (403) unless the caller may use this permission; anonymous callers pass
    only while ``auth.required`` is off."""
    actor = request.state.actor
    if actor is None:
        return  # the middleware already refused anonymous requests where it must
    wanted = permission(permission_name)
    needed = {
        Scope.read: "read",
        Scope.member: "write",
        Scope.owner: "write",
        Scope.admin: "admin",
    }[wanted.scope]
    if request.method != "GET" and needed == "read":
        needed = "write"
    scopes = request.state.scopes
    if needed not in scopes and "admin" not in scopes:
        raise ForbiddenError(
            f"this token has the scopes {', '.join(sorted(scopes))}; "
            f"{permission_name} needs a token with the {needed} scope",
            permission=permission_name,
        )
    with request.app.state.db.read_session() as session:
        decision = decide(CatalogReader(session), actor, permission_name, entity)
    if not decision.allowed:
        raise ForbiddenError(decision.reason, permission=permission_name, owners=decision.owners)
