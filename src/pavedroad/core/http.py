"""HTTP plumbing shared by every domain: problem+json errors, request ids, metrics."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from pavedroad.core.errors import ProblemError

log = logging.getLogger("pavedroad.http")

PROBLEM_JSON = "application/problem+json"
BACKSTAGE_PREFIX = "/api/catalog"

REQUESTS = Counter(
    "pavedroad_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
LATENCY = Histogram(
    "pavedroad_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_ERROR_NAMES = {
    400: "InputError",
    401: "AuthenticationError",
    403: "NotAllowedError",
    404: "NotFoundError",
    409: "ConflictError",
    413: "PayloadTooLargeError",
    422: "InputError",
    500: "Error",
}


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    type_slug: str = "error",
    extensions: dict[str, Any] | None = None,
) -> Response:
    """The error in the shape the caller expects: Backstage's under /api/catalog,
    problem+json everywhere else."""
    if request.url.path.startswith(BACKSTAGE_PREFIX):
        path = request.url.path[len(BACKSTAGE_PREFIX) :] or "/"
        body: dict[str, Any] = {
            "error": {"name": _ERROR_NAMES.get(status, "Error"), "message": detail},
            "request": {
                "method": request.method,
                "url": path + (f"?{request.url.query}" if request.url.query else ""),
            },
            "response": {"statusCode": status},
        }
        if extensions and "errors" in extensions:
            body["errors"] = extensions["errors"]
        return JSONResponse(body, status_code=status)
    problem = {
        "type": f"https://pavedroad.dev/problems/{type_slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "requestId": getattr(request.state, "request_id", None),
    }
    problem.update(extensions or {})
    return JSONResponse(problem, status_code=status, media_type=PROBLEM_JSON)


class BodySizeLimit:
    """Refuses request bodies over the limit, with or without a Content-Length header:
    the body is read up to the limit before the app sees it (a chunked upload is
    counted as it arrives and refused at the limit)."""

    def __init__(self, app: Any, max_body_bytes: int, streamed: tuple[str, ...] = ()) -> None:
        """``streamed``: path prefixes whose routes stream bodies and limit them
        themselves (git pushes)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.streamed = streamed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in ("GET", "HEAD", "OPTIONS")
            or scope["path"].startswith(self.streamed)
        ):
            await self.app(scope, receive, send)
            return
        messages = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                response = problem_response(
                    Request(scope),
                    413,
                    "Payload too large",
                    f"request body is over the limit of {self.max_body_bytes} bytes",
                    "payload-too-large",
                )
                await response(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Any:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)


def resume_point(after: int | None, last_event_id: str | None) -> int:
    """Where a server-sent event stream starts: after the id given as ``after=``, or
    after the ``Last-Event-ID`` a reconnecting browser sends, or at the beginning."""
    if after is not None:
        return after
    return int(last_event_id) if last_event_id and last_event_id.isdigit() else 0


def event_stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    """A ``text/event-stream`` response that no cache or proxy holds back."""
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        return problem_response(
            request, exc.status, exc.title, exc.detail, exc.type_slug, exc.extensions
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors) or "invalid request"
        return problem_response(
            request, 400, "Invalid request", detail, "invalid-request", {"errors": errors}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"Nothing at {request.url.path}"
        return problem_response(
            request,
            exc.status_code,
            _title(exc.status_code),
            detail,
            _title(exc.status_code).lower().replace(" ", "-"),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            request,
            500,
            "Internal error",
            "The server failed to handle this request; the error is logged with request id "
            f"{getattr(request.state, 'request_id', '?')}.",
            "internal-error",
        )


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class RequestContextMiddleware(BaseHTTPMiddleware):
    """Gives each request an id (``X-Request-ID``) and records request metrics."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        incoming = request.headers.get("x-request-id", "")
        request.state.request_id = (
            incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        )
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or (
            "static" if request.url.path.startswith("/static") else "unmatched"
        )
        REQUESTS.labels(request.method, template, str(response.status_code)).inc()
        LATENCY.labels(request.method, template).observe(time.perf_counter() - started)
        response.headers["X-Request-ID"] = request.state.request_id
        return response
