"""The local router in front of real services: the platform app served by uvicorn (as
``pave up`` serves it) and upstream HTTP servers (uvicorn, each in a thread), reached
by Host name and by path, streaming both ways, websockets, refusals, hostile input, and
switches under load that lose no request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as websocket_connect

from pavedroad.core.errors import InputError
from pavedroad.runtimes.local.requests import RequestRecorder, read_request_log
from pavedroad.runtimes.local.router import LocalRouter
from pavedroad.runtimes.local.routes import RouteTable, routes_root

READ_TIMEOUT = 1.0  # the platform's router.read_timeout_seconds in these tests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_in_thread(
    app: Any, port: int, name: str, lifespan: str = "off"
) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    )
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, f"{name} did not start"
        time.sleep(0.02)
    return server, thread


# -- a service to route to ---------------------------------------------------------------------


class Upstream:
    """A real HTTP server playing a deployed service. It records what it received and
    answers:

    - ``/echo``: the request as JSON (headers, path, body size and SHA-256, when the
      first body bytes arrived), with hop-by-hop response headers the router must drop;
    - ``/whoami?delay=S``: its name, after S seconds;
    - ``/sse?count=N&interval=S``: N server-sent events (0: until the client leaves);
    - ``/slow``: an answer after 3 s;  ``/big?mb=N``: N MiB streamed;
    - ``/break``: 10 of the 1000 bytes it announced, then it fails;
    - ``/ws``: a websocket echoing text and bytes; ``close:<code>`` closes it with that code.
    """

    def __init__(self, name: str, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.requests: list[dict[str, Any]] = []
        self.disconnects: list[str] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        self._server, self._thread = serve_in_thread(self, self.port, f"upstream-{self.name}")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
            assert not self._thread.is_alive(), f"upstream {self.name} did not stop"
            self._server = None

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        headers: dict[str, list[str]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode(), []).append(value.decode("latin-1"))
        query = parse_qs(scope["query_string"].decode())
        self.requests.append(
            {
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query": scope["query_string"].decode(),
                "headers": headers,
            }
        )
        path = scope["path"]
        if path == "/whoami":
            await asyncio.sleep(float(query.get("delay", ["0"])[0]))
            await _answer(send, 200, self.name.encode())
        elif path == "/sse":
            await self._events(scope, receive, send, query)
        elif path == "/slow":
            await asyncio.sleep(3)
            await _answer(send, 200, b"late")
        elif path == "/big":
            await self._big(send, int(query.get("mb", ["1"])[0]))
        elif path == "/break":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"1000")],
                }
            )
            await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
            raise RuntimeError("the service broke in the middle of its answer (on purpose)")
        else:
            await self._echo(scope, receive, send, headers)

    async def _echo(
        self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, list[str]]
    ) -> None:
        digest = hashlib.sha256()
        size = 0
        first_chunk_at = None
        while True:
            message = await receive()
            body = message.get("body", b"")
            if body and first_chunk_at is None:
                first_chunk_at = time.time()
            digest.update(body)
            size += len(body)
            if not message.get("more_body"):
                break
        answer = json.dumps(
            {
                "upstream": self.name,
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query": scope["query_string"].decode(),
                "headers": headers,
                "bytes": size,
                "sha256": digest.hexdigest(),
                "first_chunk_at": first_chunk_at,
            }
        ).encode()
        await _answer(
            send,
            200,
            answer,
            [
                (b"content-type", b"application/json"),
                (b"x-upstream", self.name.encode()),
                (b"set-cookie", b"a=1"),
                (b"set-cookie", b"b=2"),
                (b"keep-alive", b"timeout=5"),
                (b"connection", b"x-hop-out"),
                (b"x-hop-out", b"dropped"),
            ],
        )

    async def _events(
        self, scope: dict[str, Any], receive: Any, send: Any, query: dict[str, list[str]]
    ) -> None:
        count = int(query.get("count", ["3"])[0])
        interval = float(query.get("interval", ["0.2"])[0])
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        number = 0
        while (count == 0 or number < count) and not gone.is_set():
            await send(
                {"type": "http.response.body", "body": b"data: %d\n\n" % number, "more_body": True}
            )
            number += 1
            with __import__("contextlib").suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), interval)
        if gone.is_set():
            self.disconnects.append(scope["path"])
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        watcher.cancel()

    async def _big(self, send: Any, mebibytes: int) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        block = bytes(range(256)) * 256  # 64 KiB
        for _ in range(mebibytes * 16):
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        self.requests.append({"method": "WEBSOCKET", "path": scope["path"], "headers": {}})
        offered = scope.get("subprotocols") or []
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.disconnects.append(f"ws:{message.get('code')}")
                return
            text = message.get("text")
            if text is not None and text.startswith("close:"):
                await send({"type": "websocket.close", "code": int(text[6:]), "reason": "asked"})
                return
            if text is not None:
                await send({"type": "websocket.send", "text": f"{self.name}:{text}"})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


async def _answer(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*(headers or [(b"content-type", b"text/plain")])]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the platform ------------------------------------------------------------------------------


class Platform:
    def __init__(self, app: Any, port: int, home: Path) -> None:
        self.app = app
        self.port = port
        self.home = home
        self.url = f"http://127.0.0.1:{port}"

    @property
    def router(self) -> LocalRouter:
        return self.app.state.router  # type: ignore[no-any-return]

    @property
    def routes(self) -> RouteTable:
        """The route table as another process on the host (a deploying worker) sees it."""
        return RouteTable(routes_root(self.home))

    def host(self, component: str, environment: str = "dev") -> str:
        return f"{component}.{environment}.localhost:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, database_templates: Any
) -> Iterator[Platform]:
    """The platform app served by uvicorn from a thread, on a migrated SQLite copy."""
    from pavedroad.app import create_app
    from pavedroad.settings import RouterSettings, Settings

    home = tmp_path_factory.mktemp("router-home")
    (home / "empty.yaml").write_text("")
    database_url = database_templates.sqlite_copy("empty", home / "pavedroad.db")
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("PAVEDROAD_"):
                env.delenv(name)
        env.setenv("PAVEDROAD_CONFIG", str(home / "empty.yaml"))
        port = free_port()
        settings = Settings(
            home=home,
            port=port,
            database_url=database_url,
            router=RouterSettings(connect_timeout_seconds=1.0, read_timeout_seconds=READ_TIMEOUT),
        )
        app = create_app(settings)  # sign-in required, as by default
    server, thread = serve_in_thread(app, port, "platform", lifespan="on")
    yield Platform(app, port, home)
    server.should_exit = True
    thread.join(15)
    app.state.db.dispose()
    # The shutdown closed the router: no connection kept, every record written.
    assert app.state.router.pool.idle_count() == 0
    assert app.state.router.recorder.log_path.is_file()


@pytest.fixture
def start_upstream() -> Iterator[Callable[[str], Upstream]]:
    started: list[Upstream] = []

    def start(name: str, port: int | None = None) -> Upstream:
        upstream = Upstream(name, port).start()
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()


@pytest.fixture(scope="module")
def orders(platform: Platform) -> Iterator[Upstream]:
    """One service, ``orders`` in ``dev``, shared by the module's tests."""
    upstream = Upstream("orders-1").start()
    platform.routes.switch("dev", "orders", [upstream.address], release="r1")
    yield upstream
    upstream.stop()


def raw_request(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client normalises them) and read the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        while length is not None and len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(head.split(b" ")[1]), body


# -- routing -----------------------------------------------------------------------------------


def test_host_based_routing_reaches_the_service_with_its_path_and_query(
    platform: Platform, orders: Upstream
) -> None:
    with platform.client() as client:
        response = client.get(
            "/api/orders/42?expand=items&x=%2F", headers={"Host": "Orders.DEV.localhost"}
        )
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["upstream"] == "orders-1"
    assert seen["raw_path"] == "/api/orders/42" and seen["query"] == "expand=items&x=%2F"
    assert seen["headers"]["host"] == ["Orders.DEV.localhost"]
    assert "x-forwarded-prefix" not in seen["headers"]
    # The platform's sign-in never applies to a service's requests.
    assert response.headers["x-upstream"] == "orders-1"


def test_path_based_routing_strips_the_prefix_and_says_so(
    platform: Platform, orders: Upstream
) -> None:
    with platform.client() as client:
        response = client.post("/r/dev/orders/api/items?q=1", json={"n": 1})
        redirect = client.get("/r/dev/orders?q=1")
        root = client.get("/r/dev/orders/")
    assert response.status_code == 200, response.text
    seen = response.json()
    assert (seen["method"], seen["raw_path"], seen["query"]) == ("POST", "/api/items", "q=1")
    assert seen["headers"]["x-forwarded-prefix"] == ["/r/dev/orders"]
    assert seen["bytes"] == len(b'{"n":1}')
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/r/dev/orders/?q=1"
    assert root.json()["raw_path"] == "/"


def test_requests_for_the_platform_reach_the_app_untouched(
    platform: Platform, orders: Upstream
) -> None:
    before = len(orders.requests)
    with platform.client() as client:
        health = client.get("/healthz")
        other_host = client.get("/healthz", headers={"Host": "orders.dev.localhost.example.com"})
        deeper = client.get("/healthz", headers={"Host": "a.orders.dev.localhost"})
    for response in (health, other_host, deeper):
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ok"
        assert response.headers["x-request-id"]  # the app's own middleware ran
    assert len(orders.requests) == before


def test_forwarded_and_hop_by_hop_headers(platform: Platform, orders: Upstream) -> None:
    with platform.client() as client:
        response = client.get(
            "/echo",
            headers={
                "Host": platform.host("orders"),
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "secret",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Proxy-Authorization": "Basic c2VjcmV0",
                "X-Forwarded-For": "203.0.113.9",
                "X-Forwarded-Host": "evil.example",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Prefix": "/evil",
                "Authorization": "Bearer service-token",
                "Cookie": "session=1",
                "X-Custom": "kept",
            },
        )
    assert response.status_code == 200
    seen = response.json()["headers"]
    for dropped in (
        "x-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "connection",
        "x-forwarded-prefix",
    ):
        assert dropped not in seen, dropped
    # The server trusts its peer 127.0.0.1 as a proxy (uvicorn's default) and took the
    # client's address and scheme from these headers: the address is already last.
    assert seen["x-forwarded-for"] == ["203.0.113.9"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-host"] == [platform.host("orders")]
    assert seen["host"] == [platform.host("orders")]
    assert seen["authorization"] == ["Bearer service-token"]
    with platform.client() as client:
        direct = client.get("/r/dev/orders/echo").json()["headers"]
    assert direct["x-forwarded-for"] == ["127.0.0.1"]
    assert direct["x-forwarded-proto"] == ["http"]
    assert direct["x-forwarded-host"] == [f"127.0.0.1:{platform.port}"]
    assert seen["cookie"] == ["session=1"] and seen["x-custom"] == ["kept"]
    # Back to the client: end-to-end headers kept (both cookies), hop-by-hop ones gone.
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert "x-hop-out" not in response.headers
    assert response.headers.get("keep-alive") is None
    assert len(response.headers.get_list("date")) == 1
    assert len(response.headers.get_list("server")) == 1


def test_head_and_keep_alive_reuse(platform: Platform, orders: Upstream) -> None:
    with platform.client(headers={"Host": platform.host("orders")}) as client:
        head = client.head("/echo")
        after = [client.get("/echo").json()["method"] for _ in range(3)]
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert after == ["GET"] * 3


def test_round_robin_over_upstreams(platform: Platform, start_upstream: Any) -> None:
    first, second = start_upstream("rr-1"), start_upstream("rr-2")
    platform.routes.switch("dev", "pairs", [first.address, second.address])
    with platform.client(headers={"Host": platform.host("pairs")}) as client:
        answers = [client.get("/whoami").text for _ in range(6)]
    assert sorted(answers) == ["rr-1"] * 3 + ["rr-2"] * 3
    assert answers[0] != answers[1]


# -- streaming ---------------------------------------------------------------------------------


def test_server_sent_events_arrive_as_they_are_sent(
    platform: Platform, start_upstream: Any
) -> None:
    upstream = start_upstream("events")
    platform.routes.switch("dev", "events", [upstream.address])
    arrivals: list[tuple[float, bytes]] = []
    with platform.client() as client:
        started = time.monotonic()
        with client.stream(
            "GET", "/sse?count=4&interval=0.3", headers={"Host": platform.host("events")}
        ) as response:
            assert response.headers["content-type"] == "text/event-stream"
            for chunk in response.iter_raw():
                arrivals.append((time.monotonic() - started, chunk))
    body = b"".join(chunk for _, chunk in arrivals)
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n"
    assert arrivals[0][0] < 0.5, arrivals  # the first event did not wait for the last
    assert arrivals[-1][0] - arrivals[0][0] >= 0.6, arrivals
    assert len(arrivals) >= 4


def test_a_client_leaving_a_stream_ends_it_on_the_service(
    platform: Platform, start_upstream: Any
) -> None:
    upstream = start_upstream("forever")
    platform.routes.switch("dev", "forever", [upstream.address])
    with (
        platform.client() as client,
        client.stream("GET", "/r/dev/forever/sse?count=0&interval=0.1") as response,
    ):
        events = response.iter_raw()
        assert next(events).startswith(b"data: 0")
    deadline = time.monotonic() + 5
    while not upstream.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream.disconnects == ["/sse"]


def test_large_bodies_stream_both_ways(platform: Platform, orders: Upstream) -> None:
    block = os.urandom(1024 * 1024)
    last_sent_at = 0.0

    def slowly() -> Iterator[bytes]:
        nonlocal last_sent_at
        for _ in range(12):
            yield block
            time.sleep(0.03)
        last_sent_at = time.time()

    headers = {"Host": platform.host("orders")}
    with platform.client(headers=headers) as client:
        chunked = client.post("/upload", content=slowly())
        sized = client.put("/upload", content=block * 8)
        download = client.get("/big?mb=20")
    seen = chunked.json()
    assert chunked.status_code == 200
    assert seen["bytes"] == 12 * len(block)  # larger than the app's own request limit
    assert seen["sha256"] == hashlib.sha256(block * 12).hexdigest()
    assert seen["headers"]["transfer-encoding"] == ["chunked"]
    assert seen["first_chunk_at"] < last_sent_at  # the service read while the client sent
    assert sized.json()["sha256"] == hashlib.sha256(block * 8).hexdigest()
    assert sized.json()["headers"]["content-length"] == [str(8 * len(block))]
    assert len(download.content) == 20 * 1024 * 1024
    assert download.content[:512] == bytes(range(256)) * 2


# -- refusals ----------------------------------------------------------------------------------


def test_a_switch_seen_late_is_caught_by_the_retry(platform: Platform, start_upstream: Any) -> None:
    """The router still holds the old route (it looks at the table at most every 50 ms)
    when the old upstream refuses: it reads the table again and sends the request on."""
    new = start_upstream("new")
    platform.routes.switch("dev", "flip", [f"127.0.0.1:{free_port()}"])
    with platform.client(headers={"Host": platform.host("flip")}) as client:
        assert client.get("/whoami").status_code == 502  # the router has the route now
        platform.routes.switch("dev", "flip", [new.address])  # as another process would
        response = client.get("/whoami")
    assert (response.status_code, response.text) == (200, "new")


def test_a_restarted_service_is_reached_on_a_fresh_connection(
    platform: Platform, start_upstream: Any
) -> None:
    before = start_upstream("before")
    platform.routes.switch("dev", "restarts", [before.address])
    with platform.client(headers={"Host": platform.host("restarts")}) as client:
        assert client.get("/whoami").text == "before"  # its connection stays in the pool
        before.stop()
        start_upstream("after", port=before.port)
        answers = [client.get("/whoami") for _ in range(3)]
    assert [(r.status_code, r.text) for r in answers] == [(200, "after")] * 3


def test_a_service_failing_mid_answer_cuts_the_client_off(
    platform: Platform, orders: Upstream
) -> None:
    with platform.client(headers={"Host": platform.host("orders")}) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/break")
        after = client.get("/whoami")
    assert after.status_code == 200  # neither connection was reused
    assert platform.router.recorder.recent(limit=2, component="orders")[1].status == 502


def test_no_route_is_404_naming_it(platform: Platform) -> None:
    with platform.client() as client:
        by_host = client.get("/x", headers={"Host": platform.host("nothing", "staging")})
        by_path = client.get("/r/staging/nothing/x", headers={"Accept": "text/html"})
    assert by_host.status_code == 404
    assert by_host.headers["content-type"].startswith("text/plain")
    assert "'nothing'" in by_host.text and "'staging'" in by_host.text
    assert by_path.status_code == 404
    assert by_path.headers["content-type"].startswith("text/html")
    assert "<h1>404 Not Found</h1>" in by_path.text and "nothing" in by_path.text


def test_an_unreachable_service_is_502(platform: Platform) -> None:
    platform.routes.switch("dev", "down", [f"127.0.0.1:{free_port()}"])
    with platform.client() as client:
        started = time.monotonic()
        response = client.get("/r/dev/down/", headers={"Accept": "text/html,*/*"})
    assert response.status_code == 502
    assert "not answering" in response.text and "<html>" in response.text
    assert time.monotonic() - started < 3
    assert platform.router.in_flight(platform.routes.lookup("dev", "down").upstreams[0]) == 0


def test_a_service_too_slow_to_answer_is_504(platform: Platform, orders: Upstream) -> None:
    with platform.client() as client:
        started = time.monotonic()
        response = client.get("/r/dev/orders/slow")
        elapsed = time.monotonic() - started
        after = client.get("/r/dev/orders/whoami")
    assert response.status_code == 504
    assert "did not answer in time" in response.text
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 1.5
    assert after.status_code == 200  # the abandoned connection was not reused


def test_hostile_hosts_and_paths_are_refused_and_never_proxied(
    platform: Platform, orders: Upstream
) -> None:
    port = platform.port
    before = len(orders.requests)

    def get(target: bytes, host: bytes) -> int:
        return raw_request(port, b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")[0]

    refused = {
        "dot segments": get(b"/r/dev/orders/../../healthz", b"x"),
        "encoded dot segments": get(b"/r/dev/orders/%2e%2E/%2e%2e/healthz", b"x"),
        "backslash dot segments": get(b"/r/dev/orders/..\\..\\healthz", b"x"),
        "dot segments by host": get(b"/a/../../etc/passwd", platform.host("orders").encode()),
        "encoded slash in a name": get(b"/r/dev/..%2forders/x", b"x"),
        "upper case name in a path": get(b"/r/DEV/orders/x", b"x"),
        "address as a name": get(b"/r/dev/127.0.0.1:22/x", b"x"),
        "underscore in a host": get(b"/", b"or_ders.dev.localhost"),
        "empty label": get(b"/", b".dev.localhost"),
        "bad port": get(b"/", b"orders.dev.localhost:abc"),
        "long label": get(b"/", b"o" * 64 + b".dev.localhost"),
        "no names": get(b"/r/", b"x"),
        "one name": get(b"/r/dev/", b"x"),
    }
    assert {reason: status for reason, status in refused.items() if status not in (400, 404)} == {}
    assert refused["dot segments"] == 400 and refused["underscore in a host"] == 400
    assert refused["no names"] == 404
    # Line breaks or spaces inside a request never get through the server.
    assert raw_request(port, b"GET /r/dev/orders/a b HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 400
    status, _ = raw_request(
        port, b"GET /r/dev/orders/x HTTP/1.1\r\nHost: x\r\nX-Evil: a\rb\r\n\r\n"
    )
    assert status == 400
    # Hosts that only look like a service's go to the platform itself.
    for host in (b"orders.dev.localhost@127.0.0.1:22", b"127.0.0.1:22", b"localhost.orders.dev"):
        assert get(b"/healthz", host) == 200
    assert len(orders.requests) == before
    # An absolute URL as the request target still only reaches the route's upstream.
    status, body = raw_request(
        port, b"GET http://127.0.0.1:22/echo HTTP/1.1\r\nHost: orders.dev.localhost\r\n\r\n"
    )
    assert status == 200 and json.loads(body)["upstream"] == "orders-1"
    # Bytes outside ASCII are percent-encoded on the way, not passed raw.
    status, body = raw_request(port, "GET /r/dev/orders/café HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    if status == 200:
        assert json.loads(body)["raw_path"] == "/caf%C3%A9"
    else:
        assert status == 400


def test_route_names_and_upstreams_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "routes"
    table = RouteTable(root)
    for environment, component in [
        ("../x", "a"), ("dev", "../../etc"), ("dev", "a/b"), ("Dev", "a"), ("", "a"),
        ("dev", "x" * 64), ("dev", "a\x00"), ("dev", "-a"), ("dev", "a."),
    ]:  # fmt: skip
        with pytest.raises(InputError):
            table.switch(environment, component, ["127.0.0.1:8000"])
    for upstream in [
        "evil.example:80/x", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "http://x:1",
        "a b:1", "[::1:2", "127.0.0.1:+80",
    ]:  # fmt: skip
        with pytest.raises(InputError):
            table.switch("dev", "orders", [upstream])
    with pytest.raises(InputError):
        table.switch("dev", "orders", [])
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the root


def test_route_table_is_shared_by_files(tmp_path: Path) -> None:
    root = tmp_path / "routes"
    writer, reader = RouteTable(root), RouteTable(root)
    assert reader.lookup("preview-login-form", "orders") is None
    first = writer.switch("preview-login-form", "orders", ["127.0.0.1:20001"], release="r1")
    assert (first.version, first.upstreams, first.release) == (1, ("127.0.0.1:20001",), "r1")
    assert first.url(7070) == "http://orders.preview-login-form.localhost:7070/"
    assert (
        first.path_url("http://127.0.0.1:7070/")
        == "http://127.0.0.1:7070/r/preview-login-form/orders/"
    )
    deadline = time.monotonic() + 1
    while reader.lookup("preview-login-form", "orders") is None:
        assert time.monotonic() < deadline, "the other table never saw the switch"
        time.sleep(0.01)
    second = writer.switch(
        "preview-login-form", "orders", ["127.0.0.1:20002", "LOCALHOST:20003", "127.0.0.1:20002"]
    )
    assert second.version == 2 and second.upstreams == ("127.0.0.1:20002", "localhost:20003")
    time.sleep(0.06)
    assert reader.lookup("preview-login-form", "orders") == second
    stored = json.loads((root / "preview-login-form" / "orders.json").read_text())
    assert stored["upstreams"] == ["127.0.0.1:20002", "localhost:20003"]
    # A file someone broke by hand is skipped, not fatal.
    (root / "dev").mkdir()
    (root / "dev" / "broken.json").write_text("{not json")
    writer.switch("dev", "payments", ["127.0.0.1:20004"])
    assert [(r.environment, r.component) for r in reader.all()] == [
        ("dev", "payments"), ("preview-login-form", "orders"),
    ]  # fmt: skip
    assert writer.remove_environment("preview-login-form") == 1
    assert writer.remove("preview-login-form", "orders") is False
    time.sleep(0.06)
    assert reader.lookup("preview-login-form", "orders") is None
    assert not (root / "preview-login-form").exists()


# -- websockets --------------------------------------------------------------------------------


def test_websockets_are_relayed_both_ways(platform: Platform, start_upstream: Any) -> None:
    upstream = start_upstream("chat")
    platform.routes.switch("dev", "chat", [upstream.address])
    with websocket_connect(
        f"ws://127.0.0.1:{platform.port}/r/dev/chat/ws",
        subprotocols=["chat.v1"],  # type: ignore[list-item]
    ) as websocket:
        assert websocket.subprotocol == "chat.v1"
        websocket.send("hello")
        assert websocket.recv(timeout=5) == "chat:hello"
        websocket.send(b"\x00\x01\x02")
        assert websocket.recv(timeout=5) == b"\x02\x01\x00"
    deadline = time.monotonic() + 5
    while not upstream.disconnects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.disconnects == ["ws:1000"]  # the client's close reached the service
    # By host name, and a close from the service reaches the client with its code.
    sock = socket.create_connection(("127.0.0.1", platform.port))
    with websocket_connect(f"ws://{platform.host('chat')}/ws", sock=sock) as websocket:
        websocket.send("close:4001")
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    with pytest.raises(InvalidStatus) as refused:
        websocket_connect(f"ws://127.0.0.1:{platform.port}/r/dev/nothing/ws")
    assert refused.value.response.status_code == 404


# -- records -----------------------------------------------------------------------------------


def test_every_proxied_request_is_recorded(platform: Platform, start_upstream: Any) -> None:
    upstream = start_upstream("counted")
    platform.routes.switch("dev", "counted", [upstream.address])
    with platform.client(headers={"Host": platform.host("counted")}) as client:
        for _ in range(5):
            client.get("/whoami?secret=1")
        client.get("/missing-route", headers={"Host": platform.host("counted", "qa")})
    recorder = platform.router.recorder
    stats = recorder.stats()[("dev", "counted")]
    assert stats.requests == 5 and stats.by_class["2xx"] == 5 and stats.errors == 0
    assert 0 < stats.quantile(0.5) <= stats.latency_max < 1
    recent = recorder.recent(limit=3, component="counted")
    assert [r.path for r in recent] == ["/missing-route", "/whoami", "/whoami"]
    assert (recent[0].environment, recent[0].status, recent[0].upstream) == ("qa", 404, None)
    assert recent[1].upstream == upstream.address and recent[1].method == "GET"
    recorder.flush()
    lines = [
        json.loads(line)
        for line in (platform.home / "runtime" / "requests" / "requests.jsonl")
        .read_text()
        .splitlines()
    ]
    mine = [line for line in lines if line["component"] == "counted"]
    assert len(mine) == 6
    assert set(mine[0]) == {
        "time", "environment", "component", "method", "path", "status", "latency_ms", "upstream",
    }  # fmt: skip
    assert all("secret" not in line["path"] for line in mine)


def test_request_log_rotates_by_size(tmp_path: Path) -> None:
    recorder = RequestRecorder(tmp_path, recent=10, max_file_bytes=2048, files_kept=3)
    for number in range(120):
        recorder.record("dev", "orders", "GET", f"/n/{number}", 200, 0.001, "127.0.0.1:1")
        if number % 10 == 9:
            recorder.flush()
    recorder.close()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "requests.jsonl", "requests.jsonl.1", "requests.jsonl.2",
    ]  # fmt: skip
    assert all(p.stat().st_size <= 2048 for p in tmp_path.glob("requests.jsonl*"))
    kept = [r.path for r in read_request_log(tmp_path)]
    assert kept[-1] == "/n/119" and len(kept) < 120
    assert kept == [f"/n/{n}" for n in range(120 - len(kept), 120)]  # oldest first, no gap
    assert [r.path for r in recorder.recent(limit=2)] == ["/n/119", "/n/118"]


# -- switches ------------------------------------------------------------------------------------


def test_switches_under_load_lose_no_request(platform: Platform, start_upstream: Any) -> None:
    """~200 requests/s for ~3 s while the route moves twice, each old upstream stopped
    once drained: every request succeeds."""
    first, second, third = (start_upstream(f"release-{n}") for n in (1, 2, 3))
    deployer = platform.routes  # another process's view of the table
    deployer.switch("prod", "shop", [first.address], release="r1")
    router = platform.router
    outcomes: list[tuple[int | str, str]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=platform.url, timeout=10) as client:
            next_at = time.monotonic() + worker * 0.005
            while not stop.is_set():
                try:
                    response = client.get(
                        "/whoami?delay=0.03", headers={"Host": platform.host("shop", "prod")}
                    )
                    outcomes.append((response.status_code, response.text))
                except httpx.HTTPError as error:
                    outcomes.append((type(error).__name__, str(error)))
                next_at += 0.05
                time.sleep(max(0.0, next_at - time.monotonic()))

    def serving(upstream: Upstream, at_least: int = 150) -> None:
        """Let about a second of load (less on a busy machine) reach ``upstream``."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline or len(upstream.requests) < 20:
            assert time.monotonic() < deadline + 10, "the load does not get through"
            if len(upstream.requests) >= at_least:
                return
            time.sleep(0.02)

    with ThreadPoolExecutor(10) as pool:
        workers = [pool.submit(load, worker) for worker in range(10)]
        serving(first)
        deployer.switch("prod", "shop", [second.address], release="r2")  # from elsewhere
        time.sleep(0.1)  # the router sees it within 50 ms
        assert router.wait_drained_blocking([first.address], timeout=5)
        first.stop()
        serving(second)
        router.table.switch("prod", "shop", [third.address], release="r3")  # in-process
        assert router.wait_drained_blocking([second.address], timeout=5)
        second.stop()
        serving(third)
        stop.set()
        for worker in workers:
            worker.result()
    failed = [outcome for outcome in outcomes if outcome[0] != 200]
    assert failed == []
    served = {
        name: sum(1 for _, text in outcomes if text == name)
        for name in ("release-1", "release-2", "release-3")
    }
    assert min(served.values()) >= 20 and sum(served.values()) == len(outcomes), served
    assert router.in_flight(first.address) == router.in_flight(second.address) == 0
