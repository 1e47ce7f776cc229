"""The HTTP side of the service: what each path answers, and a server that answers it."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICE_NAME = "${{ values.name }}"

logger = logging.getLogger(__name__)


def respond(path: str) -> tuple[HTTPStatus, dict[str, Any]]:
    """The status and JSON body for a GET of ``path`` (query string ignored)."""
    route = path.split("?", 1)[0]
    if route == "/":
        return HTTPStatus.OK, {"service": SERVICE_NAME, "message": f"Hello from {SERVICE_NAME}!"}
    if route == "/healthz":
        return HTTPStatus.OK, {"status": "ok"}
    return HTTPStatus.NOT_FOUND, {"error": "not found", "path": route}


class Handler(BaseHTTPRequestHandler):
    """Answers GET requests with :func:`respond`, as JSON."""

    server_version = SERVICE_NAME

    def do_GET(self) -> None:
        status, body = respond(self.path)
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def make_server(host: str = "0.0.0.0", port: int = 0) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0 picks a free one); call ``serve_forever``."""
    return ThreadingHTTPServer((host, port), Handler)
