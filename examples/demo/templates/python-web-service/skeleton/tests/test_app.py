"""The service's routes, called directly and over HTTP."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any
from urllib.error import HTTPError

import pytest

from ${{ values.module }}.__main__ import DEFAULT_PORT, configured_port
from ${{ values.module }}.app import make_server, respond

# Requests go straight to the test server, whatever proxy the machine has set.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_root_says_hello_with_the_service_name() -> None:
    status, body = respond("/")
    assert status == HTTPStatus.OK
    assert body == {"service": "${{ values.name }}", "message": "Hello from ${{ values.name }}!"}


def test_healthz_is_ok_whatever_the_query() -> None:
    assert respond("/healthz?probe=readiness") == (HTTPStatus.OK, {"status": "ok"})


def test_unknown_path_is_not_found() -> None:
    status, body = respond("/nope")
    assert status == HTTPStatus.NOT_FOUND
    assert body["path"] == "/nope"


def test_port_comes_from_the_environment() -> None:
    assert configured_port({"PORT": "9000"}) == 9000
    assert configured_port({}) == DEFAULT_PORT == ${{ values.port }}


@pytest.fixture
def base_url() -> Iterator[str]:
    server = make_server(host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def get(url: str) -> tuple[int, str, Any]:
    with _OPENER.open(url, timeout=5) as response:
        return response.status, response.headers["Content-Type"], json.loads(response.read())


def test_serves_hello_over_http(base_url: str) -> None:
    status, content_type, body = get(base_url + "/")
    assert (status, content_type) == (200, "application/json")
    assert body["service"] == "${{ values.name }}"


def test_serves_healthz_over_http(base_url: str) -> None:
    assert get(base_url + "/healthz") == (200, "application/json", {"status": "ok"})


def test_unknown_path_over_http_is_404(base_url: str) -> None:
    with pytest.raises(HTTPError) as error:
        get(base_url + "/nope")
    assert error.value.code == 404
