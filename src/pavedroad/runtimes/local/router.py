"""The local router: every deployed service at a stable URL on the platform's own port.

:class:`RouterMiddleware` sits outermost around the app. A request for
``<component>.<environment>.localhost[:port]`` (the Host header, any case), or for a path
under ``/r/<environment>/<component>/`` (the prefix is stripped and sent upstream as
``X-Forwarded-Prefix``), is proxied to one of the route's upstreams, taken in turn;
everything else reaches the app untouched. The router only ever connects to upstreams
in the :class:`~pavedroad.runtimes.local.routes.RouteTable`: a name it cannot read gets
400, a route that does not exist 404, naming it.

Proxying is HTTP/1.1 over keep-alive connections kept per upstream
(:class:`UpstreamPool`): a small asyncio protocol writes the request head and parses the
response with ``httptools`` (the parser uvicorn uses), so the router adds well under a
millisecond. Bodies stream both ways and are never held whole: the request body is
written as the client sends it (``Content-Length`` kept, chunked otherwise), the
response body is passed on as it arrives, so server-sent events flow event by event;
reading from a slow client or a slow upstream pauses the other side. Hop-by-hop
headers are dropped both ways; ``X-Forwarded-For``/``-Proto``/``-Host`` are set. An
upstream that cannot be reached answers 502; one that does not connect, or answer,
within the configured timeouts 504. Websockets are relayed message by message to a
websocket opened on the upstream.

A switch loses no request: a request is counted in flight on its upstream from the
moment it picked it (:meth:`LocalRouter.in_flight`,
:meth:`LocalRouter.wait_drained`), and a request whose connection fails before the
upstream saw it (refused, or a kept-alive connection the upstream had just closed)
re-reads the route table and is sent once more to the route's current upstreams.

Every proxied request is recorded by :class:`~pavedroad.runtimes.local.requests.RequestRecorder`.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit

import httptools
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pavedroad.runtimes.local.requests import RequestRecorder
from pavedroad.runtimes.local.routes import LABEL, Route, RouteTable, routes_root

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pavedroad.settings import RouterSettings, Settings

log = logging.getLogger("pavedroad.router")

PATH_PREFIX = b"/r/"

# Request headers the router never passes on: hop-by-hop (RFC 9110, 7.6.1), those it
# sets itself, and Expect (the router's own server answers 100-continue).
_REQUEST_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-authorization", b"proxy-authenticate",
        b"expect", b"content-length", b"host", b"x-forwarded-for", b"x-forwarded-proto",
        b"x-forwarded-host", b"x-forwarded-prefix",
    }
)  # fmt: skip
# Response headers the router drops: hop-by-hop, and Date and Server, which the
# router's own server sets.
_RESPONSE_DROP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"date", b"server",
    }
)  # fmt: skip
# Handshake headers the websocket client makes itself.
_WEBSOCKET_DROP = _REQUEST_DROP | {
    b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
    b"sec-websocket-protocol",
}  # fmt: skip
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_NOT_VISIBLE = re.compile(rb"[^\x21-\x7e]")  # outside printable ASCII
_CONTROL = re.compile(rb"[\x00-\x20\x7f]")
_PERCENT_SAFE = bytes(range(0x21, 0x7F))  # left as they are when quoting the rest

_NO_BODY, _LENGTH, _CHUNKED = 0, 1, 2
_READ_HIGH_WATER = 256 * 1024  # response bytes buffered before reading pauses
_WEBSOCKET_MAX_MESSAGE = 16 * 1024 * 1024  # as uvicorn's default
_HOST_CACHE_SIZE = 1024


class Refusal(NamedTuple):
    """An answer of the router's own: a status and a short message (for 308, where to)."""

    status: int
    message: str


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request is going: the route's names and the path the upstream gets."""

    environment: str
    component: str
    path: bytes  # raw, percent-encoded, without the /r/<env>/<component> prefix
    prefix: str | None  # the stripped prefix, for path-based routing


# -- the upstream client -------------------------------------------------------------------


class UpstreamError(Exception):
    """The upstream could not be reached, broke the exchange, or sent nonsense."""


class UpstreamTimeout(UpstreamError):
    pass


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection to an upstream, one exchange at a time. The
    parser's callbacks fill in the response; the proxy waits with :meth:`wait`, which
    returns at any news (head, body bytes, end, error)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, upstream: str) -> None:
        self.loop = loop
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self.begin(head_request=False)

    def begin(self, head_request: bool) -> None:
        """Forget the last exchange; the next response answers a HEAD if ``head_request``."""
        self.active = True  # False while the connection waits in the pool
        self.head_request = head_request
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.framed = False  # Content-Length or Transfer-Encoding: else it ends at EOF
        self.informational = False
        self.received = False  # any byte of a response to this exchange
        self.request_sent = False
        self.reusable = True
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: UpstreamError | None = None

    # asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if not self.active:  # nothing was asked: a broken upstream, not to be reused
            self.abort()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the upstream switched protocols unasked"))
        except httptools.HttpParserError as error:
            self._fail(UpstreamError(f"the upstream sent an invalid response ({error})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self.head_done and not self.complete and not self.framed and exc is None:
            self.complete = True  # a body without length ends with the connection
        elif not self.complete and self.error is None:
            self.error = UpstreamError(
                "the upstream closed the connection"
                + (" before answering" if not self.head_done else " in the middle of its answer")
            )
        self._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(self.error or UpstreamError("the upstream closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.headers = []
        self.framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            self.informational = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        self.status = status
        self.head_done = True
        if self.head_request:
            # The parser would wait for the body a HEAD answer announces but never sends.
            self.complete = True
            self.reusable = False
        elif status in (204, 304):
            self.framed = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _READ_HIGH_WATER and not self._read_paused and self.transport:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        if self.complete:
            return
        self.complete = True
        if not self.parser.should_keep_alive():
            self.reusable = False
        self._wake()

    # for the proxy -------------------------------------------------------------------------

    async def wait(self, timeout: float | None) -> None:
        """Until something happens on this connection; :class:`UpstreamTimeout` if
        nothing does within ``timeout`` seconds."""
        waiter = self.loop.create_future()
        self._waiter = waiter
        timer = self.loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def write(self, data: bytes, timeout: float) -> None:
        """Send ``data``, waiting (at most ``timeout``) while the upstream is not reading."""
        if self.closed or self.transport is None:
            raise self.error or UpstreamError("the upstream closed the connection")
        self.transport.write(data)
        if self._write_paused:
            drain = self._drain = self.loop.create_future()
            timer = self.loop.call_later(timeout, _expire, drain)
            try:
                await drain
            finally:
                self._drain = None
                timer.cancel()

    def take_body(self) -> bytes:
        """The response bytes received since the last call."""
        chunks = self.chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self._read_paused and not self.closed and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    def wake(self) -> None:
        """Make :meth:`wait` return (something changed on the client's side)."""
        self._wake()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self.abort()
        self._wake()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout())


class UpstreamPool:
    """Kept-alive connections per upstream, the most recently used first."""

    def __init__(self, max_idle: int, idle_seconds: float, connect_timeout: float) -> None:
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self.connect_timeout = connect_timeout
        self._idle: dict[str, list[_Connection]] = {}

    async def acquire(self, upstream: str, fresh: bool = False) -> tuple[_Connection, bool]:
        """A connection to ``upstream`` and whether it was kept from an earlier request.
        Raises :class:`UpstreamTimeout` or ``OSError`` when none can be opened."""
        idle = self._idle.get(upstream)
        if idle and not fresh:
            now = time.monotonic()
            while idle:
                connection = idle.pop()
                if connection.closed:
                    continue
                if now - connection.idle_since > self.idle_seconds:
                    connection.close()
                    continue
                return connection, True
        return await self._connect(upstream), False

    def release(self, connection: _Connection) -> None:
        """Keep ``connection`` for the next request if its exchange ended cleanly."""
        if (
            not connection.reusable
            or connection.closed
            or not connection.complete
            or connection.chunks
        ):
            connection.close()
            return
        idle = self._idle.setdefault(connection.upstream, [])
        now = time.monotonic()
        while idle and (idle[0].closed or now - idle[0].idle_since > self.idle_seconds):
            idle.pop(0).close()
        if len(idle) >= self.max_idle:
            connection.close()
            return
        connection.idle_since = now
        connection.active = False
        idle.append(connection)

    def keep_only(self, upstreams: Iterable[str]) -> None:
        """Close the idle connections to upstreams that no route names any more."""
        keep = set(upstreams)
        for upstream in [u for u in self._idle if u not in keep]:
            for connection in self._idle.pop(upstream):
                connection.close()

    def idle_count(self, upstream: str | None = None) -> int:
        """Open idle connections kept to ``upstream`` (to any, if None)."""
        kept = self._idle.values() if upstream is None else [self._idle.get(upstream, [])]
        return sum(not c.closed for connections in kept for c in connections)

    def close(self) -> None:
        self.keep_only(())

    async def _connect(self, upstream: str) -> _Connection:
        host, _, port = upstream.rpartition(":")
        if host.startswith("["):
            host = host[1:-1]
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop, upstream), host, int(port)),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout() from None
        return connection


# -- the router ----------------------------------------------------------------------------


class _Retry(Exception):
    """The upstream never saw the request: send it again on the route as it is now."""


@dataclass(slots=True)
class _Exchange:
    """One proxied request's state, shared with the task that reads from the client."""

    status: int = 0
    response_done: bool = False
    client_gone: bool = False
    reader: asyncio.Task[None] | None = None  # sends the body, then watches for a disconnect


class LocalRouter:
    """Routes requests to the upstreams of the route table; keeps the connection pool,
    the in-flight counts and the request recorder. One per app (``app.state.router``)."""

    def __init__(
        self,
        table: RouteTable,
        recorder: RequestRecorder,
        settings: RouterSettings,
        public_url: str | None = None,
    ) -> None:
        self.table = table
        self.recorder = recorder
        self.settings = settings
        self.domain = settings.domain
        self.pool = UpstreamPool(
            settings.pool_max_idle, settings.pool_idle_seconds, settings.connect_timeout_seconds
        )
        self._suffix = b"." + settings.domain.encode()
        self._public_host = (urlsplit(public_url).hostname or "").encode() if public_url else b""
        self._hosts: dict[bytes, tuple[str, str] | Refusal | None] = {}  # Host → names
        self._turns: dict[tuple[str, str], int] = {}
        self._in_flight: dict[str, int] = {}
        self._generation: bytes | None = None

    # -- in flight ---------------------------------------------------------------------------

    def in_flight(self, upstream: str) -> int:
        """Requests (and open websockets) of this process on ``upstream`` now."""
        return self._in_flight.get(upstream, 0)

    async def wait_drained(self, upstreams: Iterable[str], timeout: float) -> bool:
        """Wait until no request of this process is on any of ``upstreams`` (switched
        away from), at most ``timeout`` seconds; True if they drained."""
        watched = list(upstreams)
        deadline = time.monotonic() + timeout
        while any(self.in_flight(u) for u in watched):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def wait_drained_blocking(self, upstreams: Iterable[str], timeout: float) -> bool:
        """:meth:`wait_drained` for a thread other than the server's event loop."""
        watched = list(upstreams)
        deadline = time.monotonic() + timeout
        while any(self.in_flight(u) for u in watched):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Close the kept-alive connections and flush the request log."""
        self.pool.close()
        self.recorder.close()

    # -- which requests are ours -------------------------------------------------------------

    def target_of(self, scope: Scope) -> Target | Refusal | None:
        """Where an HTTP or websocket request goes: a :class:`Target`, the router's own
        refusal (status, message), or None for the app."""
        host = _header(scope, b"host")
        if host is not None:
            try:
                names = self._hosts[host]
            except KeyError:
                if len(self._hosts) >= _HOST_CACHE_SIZE:
                    self._hosts.clear()
                names = self._hosts[host] = self._names_of_host(host)
            if isinstance(names, Refusal):
                return names
            if names is not None:
                raw = scope.get("raw_path") or scope["path"].encode()
                return self._checked(names[0], names[1], raw, None)
        raw = scope.get("raw_path") or scope["path"].encode()
        if raw.startswith(PATH_PREFIX):
            return self._path_target(raw, scope)
        return None

    def _names_of_host(self, host: bytes) -> tuple[str, str] | Refusal | None:
        """(environment, component) from ``<component>.<environment>.<domain>[:port]``."""
        name, colon, port = host.lower().partition(b":")
        if name.endswith(b"."):
            name = name[:-1]
        if not name.endswith(self._suffix) or name == self._public_host:
            return None
        labels = name[: -len(self._suffix)].split(b".")
        if len(labels) != 2:
            return None  # the platform itself may live at <name>.<domain>
        if colon and not (port.isdigit() and len(port) <= 5):
            return Refusal(400, "The Host header has an invalid port.")
        component, environment = (label.decode("ascii", "replace") for label in labels)
        if not LABEL.match(component) or not LABEL.match(environment):
            return Refusal(
                400,
                f"The host name must be <component>.<environment>.{self.domain}, each a "
                "DNS label (lower case letters, digits and hyphens).",
            )
        return environment, component

    def _path_target(self, raw: bytes, scope: Scope) -> Target | Refusal:
        parts = raw[len(PATH_PREFIX) :].split(b"/", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            return Refusal(404, "Service URLs look like /r/<environment>/<component>/.")
        environment, component = (p.decode("ascii", "replace") for p in parts[:2])
        if not LABEL.match(environment) or not LABEL.match(component):
            return Refusal(
                400,
                "Service URLs look like /r/<environment>/<component>/, each name a DNS "
                "label (lower case letters, digits and hyphens).",
            )
        if len(parts) == 2:
            query = scope.get("query_string") or b""
            location = raw + b"/" + (b"?" + query if query else b"")
            return Refusal(308, location.decode("ascii", "replace"))
        return self._checked(
            environment, component, b"/" + parts[2], f"/r/{environment}/{component}"
        )

    @staticmethod
    def _checked(
        environment: str, component: str, path: bytes, prefix: str | None
    ) -> Target | Refusal:
        """The target, if its path is one the router sends on unchanged in meaning."""
        if not path.startswith(b"/") and path != b"*":
            path = b"/" + path  # an absolute URL as the target had no path
        if _NOT_VISIBLE.search(path):
            if _CONTROL.search(path):
                return Refusal(400, "The request path holds spaces or control characters.")
            path = quote_from_bytes(path, safe=_PERCENT_SAFE).encode()
        if b"/." in path or b"%" in path or b"\\" in path:
            segments = unquote_to_bytes(path).replace(b"\\", b"/").split(b"/")
            if b".." in segments or b"." in segments:
                return Refusal(400, "The request path holds '.' or '..' segments.")
        return Target(environment, component, path, prefix)

    # -- dispatch ----------------------------------------------------------------------------

    async def handle(
        self, scope: Scope, receive: Receive, send: Send, target: Target | Refusal
    ) -> None:
        """Serve an HTTP or websocket request :meth:`target_of` found to be the router's."""
        websocket = scope["type"] == "websocket"
        if isinstance(target, Refusal):
            if websocket:
                await self._refuse_websocket(scope, receive, send, *target)
            else:
                await self._refuse(scope, send, *target)
        elif websocket:
            await self._proxy_websocket(scope, receive, send, target)
        else:
            await self._proxy_http(scope, receive, send, target)

    # -- HTTP --------------------------------------------------------------------------------

    async def _proxy_http(self, scope: Scope, receive: Receive, send: Send, target: Target) -> None:
        started = time.perf_counter()
        route = self._lookup(target)
        if route is None:
            await self._refuse(scope, send, 404, _no_route(target))
            self._record(target, scope, 404, started, None)
            return
        built = _request_head(scope, target)
        if isinstance(built, Refusal):
            await self._refuse(scope, send, *built)
            return
        head, body_mode = built
        exchange = _Exchange()
        upstream: str | None = None
        try:
            for attempt in (0, 1):
                upstream = self._pick(route)
                self._in_flight[upstream] = self._in_flight.get(upstream, 0) + 1
                try:
                    await self._exchange(
                        scope, receive, send, upstream, head, body_mode, exchange, attempt == 0
                    )
                    break
                except _Retry:
                    log.debug(
                        "%s unreachable: the request goes to the route as it is now", upstream
                    )
                    exchange = _Exchange()
                    self.table.refresh()
                    current = self._lookup(target)
                    if current is None:
                        exchange.status = await self._refuse(scope, send, 404, _no_route(target))
                        break
                    route = current
                finally:
                    self._in_flight[upstream] -= 1
        except UpstreamError as error:
            # The answer had begun: all that is left is to cut the client's connection.
            log.warning("%s %s: %s", target.component, target.environment, error)
            raise
        finally:
            status = 499 if exchange.client_gone and not exchange.response_done else exchange.status
            self._record(target, scope, status, started, upstream)

    async def _exchange(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        upstream: str,
        head: bytes,
        body_mode: int,
        exchange: _Exchange,
        may_retry: bool,
    ) -> None:
        """Send the request to ``upstream`` and its answer to the client. Raises
        :class:`_Retry` if the upstream cannot have seen the request and ``may_retry``."""
        try:
            connection, reused = await self.pool.acquire(upstream, fresh=not may_retry)
        except (UpstreamTimeout, OSError) as error:
            if may_retry:
                raise _Retry() from None
            exchange.status = await self._refuse(scope, send, *self._unreachable(error))
            return
        connection.begin(head_request=scope["method"] == "HEAD")
        try:
            assert connection.transport is not None
            connection.transport.write(head)
            if body_mode == _NO_BODY:
                connection.request_sent = True
            else:
                exchange.reader = asyncio.create_task(
                    self._read_client(receive, connection, body_mode, exchange)
                )
            try:
                await self._await_head(connection, reused and may_retry, scope, body_mode)
            except UpstreamError as error:
                exchange.status = await self._refuse(scope, send, *self._unreachable(error))
                return
            exchange.status = connection.status
            await send(
                {
                    "type": "http.response.start",
                    "status": connection.status,
                    "headers": _response_headers(connection.headers),
                }
            )
            await self._relay_body(send, receive, connection, exchange)
        finally:
            reader = exchange.reader
            if reader is not None and not reader.done():
                if not connection.request_sent:
                    connection.reusable = False  # answered before reading the whole body
                reader.cancel()
            if not connection.complete or exchange.client_gone:
                connection.abort()
            self.pool.release(connection)

    async def _await_head(
        self, connection: _Connection, retryable: bool, scope: Scope, body_mode: int
    ) -> None:
        while not connection.head_done:
            if connection.error is not None:
                if (
                    retryable
                    and not connection.received
                    and body_mode == _NO_BODY
                    and scope["method"] in _IDEMPOTENT
                ):
                    raise _Retry()  # a kept-alive connection the upstream had just closed
                raise connection.error
            # The upstream has until the read timeout to answer once it has the request.
            await connection.wait(
                self.settings.read_timeout_seconds if connection.request_sent else None
            )

    async def _relay_body(
        self, send: Send, receive: Receive, connection: _Connection, exchange: _Exchange
    ) -> None:
        while True:
            done = connection.complete
            data = connection.take_body()
            if done:
                exchange.response_done = True
                await send({"type": "http.response.body", "body": data, "more_body": False})
                return
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
                continue
            if exchange.client_gone:
                return
            if connection.error is not None:
                exchange.status = 502
                raise connection.error
            if exchange.reader is None:  # a long answer: notice the client leaving
                exchange.reader = asyncio.create_task(
                    self._read_client(receive, connection, _NO_BODY, exchange)
                )
            try:
                await connection.wait(self.settings.read_timeout_seconds)
            except UpstreamTimeout:
                exchange.status = 504
                raise UpstreamTimeout(
                    f"the service sent nothing for {self.settings.read_timeout_seconds:g} s "
                    "in the middle of its answer"
                ) from None

    async def _read_client(
        self, receive: Receive, connection: _Connection, body_mode: int, exchange: _Exchange
    ) -> None:
        """Send the request body upstream as it arrives, then wait for the client to go
        away: a client that leaves ends the exchange with the upstream."""
        try:
            message = await receive()
            while body_mode != _NO_BODY and message["type"] == "http.request":
                body = message.get("body", b"")
                more = message.get("more_body", False)
                if body_mode == _CHUNKED:
                    data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
                    if not more:
                        data += b"0\r\n\r\n"
                else:
                    data = body
                if data:
                    await connection.write(data, self.settings.read_timeout_seconds)
                if not more:
                    connection.request_sent = True
                    connection.wake()
                    break
                message = await receive()
            while message["type"] == "http.request":  # what is left of a body not sent
                message = await receive()
        except UpstreamError:
            connection.abort()
            return
        if not exchange.response_done:
            exchange.client_gone = True
            connection.abort()

    def _unreachable(self, error: Exception) -> Refusal:
        if isinstance(error, UpstreamTimeout):
            if not str(error):
                return Refusal(
                    504,
                    "The service did not answer in time (connect within "
                    f"{self.settings.connect_timeout_seconds:g} s, answer within "
                    f"{self.settings.read_timeout_seconds:g} s).",
                )
            return Refusal(504, f"The service timed out: {error}.")
        if isinstance(error, UpstreamError):
            return Refusal(502, f"The service failed: {error}.")
        return Refusal(502, "The service is not answering: it may be starting or stopped.")

    # -- websockets --------------------------------------------------------------------------

    async def _proxy_websocket(
        self, scope: Scope, receive: Receive, send: Send, target: Target
    ) -> None:
        started = time.perf_counter()
        route = self._lookup(target)
        query = scope.get("query_string") or b""
        if route is None or _CONTROL.search(query):
            refusal = (
                Refusal(404, _no_route(target)) if route is None else Refusal(400, "Bad query.")
            )
            await self._refuse_websocket(scope, receive, send, *refusal)
            self._record(target, scope, refusal.status, started, None)
            return
        resource = (target.path + (b"?" + query if query else b"")).decode("ascii", "replace")
        upstream, opened, refusal = await self._open_websocket(scope, target, route, resource)
        if opened is None:
            await self._refuse_websocket(scope, receive, send, *refusal)
            self._record(target, scope, refusal.status, started, upstream)
            return
        self._in_flight[upstream] = self._in_flight.get(upstream, 0) + 1
        try:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept", "subprotocol": opened.subprotocol})
                self._record(target, scope, 101, started, upstream)
                await _relay_websocket(receive, send, opened)
        finally:
            self._in_flight[upstream] -= 1
            with contextlib.suppress(Exception):
                await opened.close()

    async def _open_websocket(
        self, scope: Scope, target: Target, route: Route, resource: str
    ) -> tuple[str, Any, Refusal]:
        """A websocket opened on one of the route's upstreams (once more on the route as
        it is now if the first cannot be reached), or None and the refusal to send."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        offered = _header(scope, b"sec-websocket-protocol")
        subprotocols = (
            [p.strip() for p in offered.decode("latin-1").split(",")] if offered else None
        )
        headers = _websocket_headers(scope, target)
        refusal = Refusal(502, "The service is not answering: it may be starting or stopped.")
        upstream = self._pick(route)
        for attempt in (0, 1):
            try:
                opened = await connect(
                    f"ws://{upstream}{resource}",
                    additional_headers=headers,
                    subprotocols=subprotocols,  # type: ignore[arg-type]
                    compression=None,
                    proxy=None,
                    user_agent_header=None,
                    open_timeout=self.settings.connect_timeout_seconds,
                    ping_interval=None,
                    max_size=_WEBSOCKET_MAX_MESSAGE,
                )
                return upstream, opened, refusal
            except InvalidStatus as refused:
                status = refused.response.status_code
                return (
                    upstream,
                    None,
                    Refusal(status, f"The service refused the websocket ({status})."),
                )
            except TimeoutError:
                refusal = Refusal(504, "The service did not accept the websocket in time.")
            except (OSError, WebSocketException) as error:
                refusal = Refusal(502, f"The service could not open the websocket ({error}).")
            if attempt == 0:
                self.table.refresh()
                current = self._lookup(target)
                if current is None:
                    return upstream, None, Refusal(404, _no_route(target))
                upstream = self._pick(current)
        return upstream, None, refusal

    # -- helpers -----------------------------------------------------------------------------

    def _lookup(self, target: Target) -> Route | None:
        route = self.table.lookup(target.environment, target.component)
        if route is None:  # perhaps switched by another process this very moment
            self.table.refresh()
            route = self.table.lookup(target.environment, target.component)
        generation = self.table.generation
        if generation != self._generation:
            self._generation = generation
            self.pool.keep_only(u for r in self.table.all() for u in r.upstreams)
        return route

    def _pick(self, route: Route) -> str:
        upstreams = route.upstreams
        if len(upstreams) == 1:
            return upstreams[0]
        key = (route.environment, route.component)
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        return upstreams[turn % len(upstreams)]

    def _record(
        self, target: Target, scope: Scope, status: int, started: float, upstream: str | None
    ) -> None:
        path = scope["path"]
        if target.prefix and path.startswith(target.prefix):
            path = path[len(target.prefix) :]
        self.recorder.record(
            target.environment,
            target.component,
            scope.get("method", "GET"),
            path,
            status,
            time.perf_counter() - started,
            upstream,
        )

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, message: str) -> int:
        """Answer with the router's own short page (or a redirect, for 308)."""
        headers, body = _refusal(scope, status, message)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return status

    @staticmethod
    async def _refuse_websocket(
        scope: Scope, receive: Receive, send: Send, status: int, message: str
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            headers, body = _refusal(scope, status, message)
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        else:
            await send({"type": "websocket.close", "code": 1011 if status >= 500 else 1008})


async def _relay_websocket(receive: Receive, send: Send, upstream: Any) -> None:
    """Pass messages both ways until one side closes; the other is then closed with
    the same code."""
    from websockets.exceptions import ConnectionClosed

    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                await upstream.send(text if text is not None else message.get("bytes") or b"")
            elif kind == "websocket.disconnect":
                await upstream.close(_sendable_close_code(message.get("code")))
                return

    async def upstream_to_client() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        await send(
            {
                "type": "websocket.close",
                "code": _sendable_close_code(upstream.close_code),
                "reason": upstream.close_reason or "",
            }
        )

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, Exception) and not isinstance(outcome, ConnectionClosed):
            log.debug("websocket relay ended: %r", outcome)


def _sendable_close_code(code: int | None) -> int:
    """A close code one may send (1005, 1006 and 1015 only describe what happened)."""
    if code is None or code == 1005:
        return 1000
    if code in (1006, 1015) or not (1000 <= code <= 1014 or 3000 <= code <= 4999):
        return 1011
    return code


def _request_head(scope: Scope, target: Target) -> tuple[bytes, int] | Refusal:
    """The request line and headers for the upstream, and how the body is framed."""
    path = target.path
    query = scope.get("query_string") or b""
    if query:
        if _NOT_VISIBLE.search(query):
            if _CONTROL.search(query):
                return Refusal(400, "The query string holds spaces or control characters.")
            query = quote_from_bytes(query, safe=_PERCENT_SAFE).encode()
        path = path + b"?" + query
    method = scope["method"]
    parts = [method.encode("ascii"), b" ", path, b" HTTP/1.1\r\n"]
    lines = 1  # every line ends with a line feed: counted to refuse one inside a header
    body_mode = _NO_BODY
    host = forwarded_for = named = None
    length = b"0"
    for name, value in scope["headers"]:
        if name not in _REQUEST_DROP:
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        elif name == b"host":
            host = value
        elif name == b"content-length":
            length = value
            if body_mode == _NO_BODY and value.strip() != b"0":
                body_mode = _LENGTH
        elif name == b"transfer-encoding":
            body_mode = _CHUNKED
        elif name == b"x-forwarded-for":
            forwarded_for = value
        elif name == b"connection":
            named = {t.strip().lower() for t in value.split(b",")} - _REQUEST_DROP
    if named:  # headers the client named hop-by-hop (rare): build again without them
        return _request_head(_without(scope, named), target)
    extra = [
        (b"host", host or b"localhost"),
        (b"x-forwarded-for", _forwarded_for(scope, forwarded_for)),
        (b"x-forwarded-proto", b"https" if scope.get("scheme") in ("https", "wss") else b"http"),
    ]
    if body_mode == _LENGTH:
        extra.append((b"content-length", length))
    elif body_mode == _CHUNKED:
        extra.append((b"transfer-encoding", b"chunked"))
    elif method in ("POST", "PUT", "PATCH"):
        extra.append((b"content-length", b"0"))
    if host:
        extra.append((b"x-forwarded-host", host))
    if target.prefix:
        extra.append((b"x-forwarded-prefix", target.prefix.encode()))
    for name, value in extra:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    if head.count(b"\n") != lines + len(extra) + 1:
        return Refusal(400, "The request holds a line break inside a header.")
    return head, body_mode


def _websocket_headers(scope: Scope, target: Target) -> list[tuple[str, str]]:
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope["headers"]
        if name not in _WEBSOCKET_DROP
    ]
    host = _header(scope, b"host")
    forwarded_for = _forwarded_for(scope, _header(scope, b"x-forwarded-for"))
    headers.append(("X-Forwarded-For", forwarded_for.decode("latin-1")))
    headers.append(("X-Forwarded-Proto", "https" if scope.get("scheme") == "wss" else "http"))
    if host:
        headers.append(("X-Forwarded-Host", host.decode("latin-1")))
    if target.prefix:
        headers.append(("X-Forwarded-Prefix", target.prefix))
    return headers


def _forwarded_for(scope: Scope, incoming: bytes | None) -> bytes:
    """``X-Forwarded-For`` with the client's address last. A server that trusts its peer
    as a proxy (uvicorn trusts 127.0.0.1 by default) has already taken the client's
    address from the header's last entry: the header then stays as it came."""
    client = scope.get("client")
    address = client[0].encode() if client else b"unknown"
    if not incoming:
        return address
    if incoming.rpartition(b",")[2].strip() == address:
        return incoming
    return incoming + b", " + address


def _response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers without the hop-by-hop ones."""
    kept = []
    named: set[bytes] = set()
    for name, value in headers:
        if name not in _RESPONSE_DROP:
            kept.append((name, value))
        elif name == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    if named - _RESPONSE_DROP:  # headers the upstream named hop-by-hop (rare)
        kept = [(name, value) for name, value in kept if name not in named]
    return kept


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return value  # type: ignore[no-any-return]
    return None


def _without(scope: Scope, names: set[bytes]) -> Scope:
    """The scope without the headers ``Connection`` named as hop-by-hop."""
    headers = [(n, v) for n, v in scope["headers"] if n not in names and n != b"connection"]
    return {**scope, "headers": headers}


def _no_route(target: Target) -> str:
    return (
        f"No route for component '{target.component}' in environment "
        f"'{target.environment}': nothing is deployed there (or it was removed)."
    )


_TITLES = {
    308: "Permanent Redirect", 400: "Bad Request", 404: "Not Found",
    502: "Bad Gateway", 504: "Gateway Timeout",
}  # fmt: skip


def _refusal(scope: Scope, status: int, message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of the router's own answer: a short page, HTML for browsers."""
    headers = [(b"cache-control", b"no-store")]
    if status == 308:
        headers.append((b"location", message.encode("latin-1")))
        message = f"Moved to {message}"
    title = f"{status} {_TITLES.get(status, 'Error')}"
    accept = _header(scope, b"accept") or b""
    if b"text/html" in accept:
        body = (
            "<!doctype html><html><head><meta charset=utf-8>"
            f"<title>{title}</title></head><body><h1>{title}</h1>"
            f"<p>{html.escape(message)}</p></body></html>\n"
        ).encode()
        headers.append((b"content-type", b"text/html; charset=utf-8"))
    else:
        body = f"{title}: {message}\n".encode()
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers.append((b"content-length", str(len(body)).encode()))
    return headers, body


# -- the middleware ------------------------------------------------------------------------


class RouterMiddleware:
    """Outermost ASGI middleware: requests for services go to :class:`LocalRouter`,
    everything else to the app."""

    def __init__(self, app: ASGIApp, router: LocalRouter) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            target = self.router.target_of(scope)
            if target is None:
                await self.app(scope, receive, send)
            else:
                await self.router.handle(scope, receive, send, target)
            return
        if kind == "lifespan":
            receive = self._closing_at_shutdown(receive)
        await self.app(scope, receive, send)

    def _closing_at_shutdown(self, receive: Receive) -> Callable[[], Awaitable[Message]]:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.router.close()
            return message

        return wrapped


def install_router(app: FastAPI, settings: Settings) -> LocalRouter | None:
    """Put the router in front of ``app`` (outermost: call after every other
    ``add_middleware``); None when ``router.enabled`` is off."""
    if not settings.router.enabled:
        return None
    router = LocalRouter(
        RouteTable(routes_root(settings.home)),
        RequestRecorder(
            requests_directory(settings.home),
            recent=settings.router.recent_requests,
            max_file_bytes=settings.router.requests_log_max_bytes,
            files_kept=settings.router.requests_log_files,
        ),
        settings.router,
        public_url=settings.base_url,
    )
    app.add_middleware(RouterMiddleware, router=router)
    return router


def requests_directory(home: Path) -> Path:
    """Where the request log of a ``PAVEDROAD_HOME`` lives."""
    return home / "runtime" / "requests"
