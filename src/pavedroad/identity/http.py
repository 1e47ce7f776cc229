"""Who is asking: bearer tokens on every request, and the checks routes make.

With ``auth.required`` set, every API request except the health check and the API
docs needs a valid token; without it, requests may be anonymous (the embedded
default until sign-in lands in the portal), but a token that is presented must be
valid and is then held to its scopes and to the access policy.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from pavedroad.catalog.queries import CatalogReader
from pavedroad.core import audit
from pavedroad.core.errors import ForbiddenError, ProblemError
from pavedroad.core.http import problem_response
from pavedroad.identity.policy import Scope, decide, permission
from pavedroad.identity.service import AuthenticationError, IdentityService

OPEN_PATHS = ("/healthz", "/metrics", "/api/docs", "/api/openapi.json")
CATALOG_READ_PATHS = ("/api/catalog/", "/api/v1/catalog/")


class AuthenticationMiddleware(BaseHTTPMiddleware):
    def __init__(
        self, app: Any, identity: IdentityService, required: bool, anonymous_read: bool = False
    ) -> None:
        super().__init__(app)
        self.identity = identity
        self.required = required
        self.anonymous_read = anonymous_read

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request.state.actor = None
        request.state.actor_name = None
        request.state.scopes = frozenset()
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if header and scheme.lower() != "bearer":
                raise AuthenticationError("use an Authorization: Bearer <token> header")
            if token:
                actor, scopes = self.identity.authenticate(token.strip())
                request.state.actor, request.state.actor_name = actor, actor.name
                request.state.scopes = scopes
            elif (
                self.required
                and request.url.path.startswith("/api/")
                and request.url.path not in OPEN_PATHS
                and not self._anonymous_read(request)
            ):
                raise AuthenticationError(
                    "sign in: send a personal access token as Authorization: Bearer <token>"
                )
        except ProblemError as exc:
            self._record_refusal(request, exc)
            return problem_response(request, exc.status, exc.title, exc.detail, exc.type_slug)
        return await call_next(request)

    def _anonymous_read(self, request: Request) -> bool:
        return (
            self.anonymous_read
            and request.method in ("GET", "HEAD")
            and request.url.path.startswith(CATALOG_READ_PATHS)
        )

    def _record_refusal(self, request: Request, exc: ProblemError) -> None:
        audit.record(
            self.identity.db,
            audit.AuditEvent(
                actor="anonymous",
                action=f"{request.method} {request.url.path}"[:100],
                target=request.url.path,
                outcome="denied",
                status=exc.status,
                source_ip=request.client.host if request.client else None,
                request_id=getattr(request.state, "request_id", None),
            ),
        )


def require(request: Request, permission_name: str, entity: str | None = None) -> None:
    """Refuse (403) unless the caller may use this permission; anonymous callers pass
    only while ``auth.required`` is off."""
    actor = request.state.actor
    if actor is None:
        return  # the middleware already refused anonymous requests where it must
    wanted = permission(permission_name)
    needed = {Scope.read: "read", Scope.owner: "write", Scope.admin: "admin"}[wanted.scope]
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
