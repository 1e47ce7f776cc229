"""Integration fixtures: local HTTP servers for URL locations."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


@dataclass
class LocalHttpServer:
    """A static file server on 127.0.0.1 with optional redirects (path → URL)."""

    root: Path
    server: ThreadingHTTPServer
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        return f"http://{self.host}/{path.lstrip('/')}"


def _handler(state: dict[str, Any]) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            server: LocalHttpServer = state["server"]
            server.requests.append(self.path)
            target = server.redirects.get(self.path)
            if target is not None:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[Callable[[Path | None], LocalHttpServer]]:
    """Start local HTTP servers serving a folder; all are shut down after the test."""
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(root: Path | None = None) -> LocalHttpServer:
        folder = root or tmp_path / f"www{len(started)}"
        folder.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {}
        httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(_handler(state), directory=str(folder))
        )
        httpd.daemon_threads = True
        server = LocalHttpServer(folder, httpd)
        state["server"] = server
        thread = threading.Thread(
            target=partial(httpd.serve_forever, poll_interval=0.05), daemon=True, name="test-http"
        )
        thread.start()
        started.append((httpd, thread))
        return server

    yield start
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
