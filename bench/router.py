"""Router benchmark: what the local router adds to a request, and how many it carries.

Run from the repository root:

    .venv/bin/python bench/router.py                  # the default figures
    .venv/bin/python bench/router.py --seconds 3      # a quicker run

Three processes, each started by this script with its own interpreter:

- the **upstream**: a minimal ASGI app answering ``200 ok`` (12 bytes), served by uvicorn
  with httptools and uvloop, as fast a service as Python gets;
- the **platform**: the real app (``create_app``, every middleware, a fresh
  ``PAVEDROAD_HOME`` on SQLite) served by uvicorn as ``pave up`` serves it, with one route
  ``bench.dev.localhost`` → the upstream;
- the **load generator**: asyncio + uvloop with ``httptools`` parsing, N keep-alive
  connections each sending one request at a time (closed loop: the next request leaves
  when the previous answer is complete), timing each request from the first byte written
  to the last byte read.

Each runs in a process of its own, so the load generator's work is not counted as the
router's; the scheduler places them. ``--pin`` instead pins the platform to the first
core and the upstream and load generator to the others, to see what one core of router
carries; on virtual machines this is often slower, as every request then wakes a
process on another virtual CPU. The same load runs twice: straight to the upstream,
then through the router (``Host: bench.dev.localhost``), each after a one-second
warm-up. It prints

1. latency with one connection (requests one after another): p50/p90/p99 direct and
   through the router, and the difference of the medians: the router's overhead;
2. throughput with ``--connections`` connections for ``--seconds`` seconds: requests/s
   and p50/p90 latency, direct and through the router, with the CPU seconds the
   platform process used per request (from /proc);
3. the machine and the exact command.

Targets (from the issue): router overhead p50 < 2 ms; at least 2,000 requests/s through
the router on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_OVERHEAD_MS = 2.0
TARGET_THROUGHPUT = 2000.0


# -- the upstream ----------------------------------------------------------------------------


async def upstream_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok, upstream"})


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(
        upstream_app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )


# -- the platform ----------------------------------------------------------------------------


def serve_platform(port: int, home: Path, upstream_port: int) -> None:
    import uvicorn

    os.environ["PAVEDROAD_CONFIG"] = str(home / "pavedroad.yaml")
    from pavedroad.app import create_app
    from pavedroad.runtimes.local.routes import RouteTable, routes_root
    from pavedroad.settings import Settings

    settings = Settings(home=home, port=port)
    RouteTable(routes_root(home)).switch("dev", "bench", [f"127.0.0.1:{upstream_port}"], "r1")
    app = create_app(settings)
    # As `pave up` serves it (pavedroad.cli.main._serve).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", log_config=None)


# -- the load generator ----------------------------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive connection sending one request at a time."""

    def __init__(self, request: bytes) -> None:
        import httptools

        self.request = request
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.done: asyncio.Future[int] | None = None
        self.status = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    async def send(self) -> int:
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(self.request)
        return await self.done


async def _load(
    port: int, host: str, connections: int, seconds: float, warmup: float, count: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    request = f"GET /ping HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n\r\n".encode()
    clients = []
    for _ in range(connections):
        _transport, client = await loop.create_connection(
            lambda: _Client(request), "127.0.0.1", port
        )
        clients.append(client)
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop_at = 0.0

    async def run(client: _Client) -> None:
        nonlocal errors
        while True:
            if count and len(latencies) >= count:
                return
            started = time.perf_counter()
            if stop_at and started >= stop_at:
                return
            status = await client.send()
            if measuring:
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1

    warm = time.perf_counter() + warmup
    stop_at = warm
    await asyncio.gather(*(run(c) for c in clients))
    measuring = True
    began = time.perf_counter()
    stop_at = 0.0 if count else began + seconds
    await asyncio.gather(*(run(c) for c in clients))
    elapsed = time.perf_counter() - began
    for client in clients:
        client.transport.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "p50": _quantile(latencies, 0.50) * 1000,
        "p90": _quantile(latencies, 0.90) * 1000,
        "p99": _quantile(latencies, 0.99) * 1000,
        "mean": statistics.fmean(latencies) * 1000,
    }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_load(args: argparse.Namespace) -> None:
    import uvloop

    result = uvloop.run(
        _load(args.port, args.host, args.connections, args.seconds, args.warmup, args.count)
    )
    print(json.dumps(result))


# -- the conductor -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(args: list[str], cpus: set[int] | None) -> subprocess.Popen[bytes]:
    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    return subprocess.Popen(
        [sys.executable, __file__, *args],
        preexec_fn=pin,
        cwd=ROOT,
    )


def _load_run(
    port: int,
    host: str,
    connections: int,
    seconds: float,
    count: int,
    cpus: set[int] | None,
    warmup: float,
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--load",
        "--port",
        str(port),
        "--host",
        host,
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
        "--count",
        str(count),
        "--warmup",
        str(warmup),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        check=True,
        cwd=ROOT,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def conduct(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0))
    pin = args.pin and len(cores) >= 2
    router_cpus = {cores[0]} if pin else None
    other_cpus = set(cores[1:]) if pin else None
    home = Path(tempfile.mkdtemp(prefix="pavedroad-bench-router-"))
    (home / "pavedroad.yaml").write_text("")
    upstream_port, platform_port = _free_port(), _free_port()
    processes = []
    try:
        upstream = _start(["--serve-upstream", "--port", str(upstream_port)], other_cpus)
        processes.append(upstream)
        server = _start(
            [
                "--serve-platform",
                "--port",
                str(platform_port),
                "--home",
                str(home),
                "--upstream-port",
                str(upstream_port),
            ],
            router_cpus,
        )
        processes.append(server)
        _wait_for_port(upstream_port, upstream)
        _wait_for_port(platform_port, server)
        routed_host = f"bench.dev.localhost:{platform_port}"
        pinning = (
            f"router on CPU {cores[0]}, upstream and load on CPUs {sorted(other_cpus or [])}"
            if pin
            else "none"
        )
        print(f"Router benchmark: {len(cores)} cores; pinning: {pinning}")
        print()
        print(f"1. latency, one connection, {args.count} requests after a warm-up")
        direct = _load_run(
            upstream_port, f"127.0.0.1:{upstream_port}", 1, 0, args.count, other_cpus, 1.0
        )
        routed = _load_run(platform_port, routed_host, 1, 0, args.count, other_cpus, 1.0)
        _print_latency("direct", direct)
        _print_latency("router", routed)
        overhead = routed["p50"] - direct["p50"]
        verdict = "ok" if overhead < TARGET_OVERHEAD_MS else "MISSED"
        print(
            f"   router overhead p50: {overhead:.3f} ms (target < {TARGET_OVERHEAD_MS} ms: "
            f"{verdict}); p90: {routed['p90'] - direct['p90']:.3f} ms"
        )
        print()
        print(f"2. throughput, {args.connections} keep-alive connections, {args.seconds:g} s")
        direct = _load_run(
            upstream_port,
            f"127.0.0.1:{upstream_port}",
            args.connections,
            args.seconds,
            0,
            other_cpus,
            1.0,
        )
        before = _cpu_seconds(server.pid)
        routed = _load_run(
            platform_port, routed_host, args.connections, args.seconds, 0, other_cpus, 1.0
        )
        used = _cpu_seconds(server.pid) - before
        _print_rate("direct", direct)
        _print_rate("router", routed)
        verdict = "ok" if routed["rate"] >= TARGET_THROUGHPUT else "MISSED"
        per_request = used / max(1, routed["requests"]) * 1e6
        print(
            f"   through the router: {routed['rate']:,.0f} requests/s (target >= "
            f"{TARGET_THROUGHPUT:,.0f}: {verdict}); platform process CPU "
            f"{per_request:.0f} us per request (warm-up included)"
        )
        print()
        print(
            f"3. {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs"
        )
        print("   " + " ".join([Path(sys.executable).name, *sys.argv]))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(home, ignore_errors=True)


def _print_latency(label: str, result: dict[str, Any]) -> None:
    print(
        f"   {label}: p50 {result['p50']:.3f} ms, p90 {result['p90']:.3f} ms, "
        f"p99 {result['p99']:.3f} ms ({result['requests']} requests, "
        f"{result['errors']} not 200)"
    )


def _print_rate(label: str, result: dict[str, Any]) -> None:
    print(
        f"   {label}: {result['rate']:,.0f} requests/s, p50 {result['p50']:.2f} ms, "
        f"p90 {result['p90']:.2f} ms ({result['requests']} requests, "
        f"{result['errors']} not 200)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each throughput run")
    parser.add_argument("--connections", type=int, default=32, help="for the throughput runs")
    parser.add_argument("--count", type=int, default=5000, help="requests of a latency run")
    parser.add_argument(
        "--pin", action="store_true", help="platform on CPU 0, upstream and load on the others"
    )
    # The roles this script plays in its child processes.
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-platform", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        serve_upstream(args.port)
    elif args.serve_platform:
        serve_platform(args.port, args.home, args.upstream_port)
    elif args.load:
        run_load(args)
    else:
        conduct(args)


if __name__ == "__main__":
    main()
