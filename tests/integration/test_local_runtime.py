"""The local runtime with real processes: a tiny HTTP service written by each test is
started under real shims, killed, adopted, stopped and read back through its logs."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pavedroad.core.errors import ConflictError, NotFoundError
from pavedroad.pipelines.artifacts import ArtifactStore
from pavedroad.runtimes.local.ports import NoFreePortError, allocate_port, port_is_free
from pavedroad.runtimes.local.prepare import DEFAULT_PATH, PrepareError, prepare_release
from pavedroad.runtimes.local.shim import InstanceSpecError, is_running, process_start_ticks
from pavedroad.runtimes.local.supervisor import (
    HttpProbe,
    InstanceSpec,
    InstanceState,
    LocalRuntime,
)
from pavedroad.settings import RuntimeSettings

SERVICE = """\
import http.server, os, subprocess, sys, time

port = int(os.environ["PORT"])
mode = os.environ.get("MODE", "serve")
print(f"listening on {port} as {os.getpid()}", flush=True)
if mode == "idle":  # never binds its port
    time.sleep(600)
if mode == "exit":
    print("cannot start: DATABASE_URL is not set", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "chatty":
    for number in range(300):
        print(f"line {number:04d} " + "x" * 60)
    sys.stdout.flush()
if mode == "child":
    child = subprocess.Popen(["sleep", "600"])
    with open(os.environ["CHILD_PID_FILE"], "w") as handle:
        handle.write(str(child.pid))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200
        if self.path == "/healthz" and mode == "never-ready":
            status = 503
        if self.path == "/live" and os.path.exists(os.environ.get("SICK_FLAG", "/nonexistent")):
            status = 500
        body = f"{os.getpid()} {sys.prefix}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        print(f"request {self.path}", flush=True)


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def _settings(**overrides: Any) -> RuntimeSettings:
    base = random.randrange(20000, 60000, 200)  # apart from parallel test workers' ports
    values: dict[str, Any] = {
        "port_min": base,
        "port_max": base + 199,
        "restart_backoff_initial_seconds": 0.2,
        "restart_backoff_max_seconds": 1.0,
        "stop_grace_seconds": 2.0,
        "probe_period_seconds": 0.2,
        "probe_timeout_seconds": 1.0,
        "liveness_failure_threshold": 2,
    }
    return RuntimeSettings(**{**values, **overrides})


@pytest.fixture
def runtimes(tmp_path: Path) -> Iterator[Callable[..., LocalRuntime]]:
    """Make runtimes (each with its own root); afterwards every instance is stopped and
    none of their processes may be left."""
    made: list[LocalRuntime] = []

    def make(root: Path | None = None, **overrides: Any) -> LocalRuntime:
        runtime = LocalRuntime(root or tmp_path / f"runtime{len(made)}", _settings(**overrides))
        made.append(runtime)
        return runtime

    yield make
    leftovers: list[tuple[int | None, int | None]] = []
    for runtime in made:
        for state in runtime.instances():
            leftovers += [(state.shim_pid, state.shim_started), (state.pid, state.pid_started)]
            runtime.stop(state.id, grace_seconds=1)
    alive = [pid for pid, started in leftovers if is_running(pid, started)]
    assert not alive, f"processes left behind: {alive}"


@pytest.fixture
def runtime(runtimes: Callable[..., LocalRuntime]) -> LocalRuntime:
    return runtimes()


@pytest.fixture
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "service.py").write_text(SERVICE)
    return folder


def _spec(
    runtime: LocalRuntime, app: Path, instance_id: str = "web-1", **options: Any
) -> InstanceSpec:
    port = runtime.allocate_port()
    env = {"PATH": DEFAULT_PATH, "PORT": str(port), **options.pop("env", {})}
    return InstanceSpec(
        id=instance_id,
        component="component:default/orders",
        environment=options.pop("environment", "development"),
        deployment_id=None,
        release_id=None,
        command=[sys.executable, "service.py"],
        cwd=app,
        env=env,
        port=port,
        **options,
    )


def _get(port: int, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5, trust_env=False)


def _wait_for(
    read: Callable[[], InstanceState], condition: Callable[[InstanceState], bool]
) -> InstanceState:
    deadline = time.monotonic() + 15
    state = read()
    while not condition(state):
        assert time.monotonic() < deadline, f"still {state}"
        time.sleep(0.05)
        state = read()
    return state


def _started(runtime: LocalRuntime, spec: InstanceSpec) -> InstanceState:
    state = runtime.start(spec)
    assert state.status == "running", state
    readiness = runtime.wait_ready(spec.id, timeout=15)
    assert readiness.ok, readiness
    return runtime.get(spec.id)


# -- start, ready, logs --------------------------------------------------------------------


def test_a_release_is_prepared_started_and_served_with_its_logs(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    package = source / "src" / "orders_service"
    package.mkdir(parents=True)
    (source / "pyproject.toml").write_text(
        '[project]\nname = "orders"\nversion = "1.0"\ndependencies = []\n'
    )
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(SERVICE)
    store = ArtifactStore(tmp_path / "store")
    bundle = store.put_tree(source)

    prepared = runtime.prepare(bundle.digest, lambda folder: store.extract(bundle.digest, folder))
    assert prepared.python is not None and prepared.python.parent.parent.parent.name == "venvs"
    port = runtime.allocate_port()
    spec = InstanceSpec(
        id="orders-1",
        component="component:default/orders",
        environment="development",
        deployment_id="d1",
        release_id="r1",
        command=["python", "-m", "orders_service"],
        cwd=prepared.app_dir,
        env={**prepared.env, "PORT": str(port), "API_KEY": "s3cr3t-value"},
        port=port,
        readiness=HttpProbe("/healthz"),
    )
    state = runtime.start(spec)
    assert (state.status, state.restarts, state.port) == ("running", 0, port)
    assert runtime.wait_ready("orders-1", timeout=15).ok

    pid, prefix = _get(port).text.split()
    assert int(pid) == state.pid
    assert Path(prefix) == prepared.python.parent.parent  # the release's virtualenv
    logs = runtime.logs("orders-1", tail=50)
    assert f"listening on {port} as {pid}" in logs
    assert "request /healthz" in logs
    _wait_for(lambda: state, lambda _: runtime.logs("orders-1", tail=1) == ["request /"])
    # The spec holds the environment's secret values, needed at every restart.
    spec_file = runtime.root / "instances" / "orders-1" / "spec.json"
    assert stat.S_IMODE(spec_file.stat().st_mode) == 0o600
    assert (
        "s3cr3t-value" not in (runtime.root / "instances" / "orders-1" / "state.json").read_text()
    )

    assert [s.id for s in runtime.instances(component="component:default/orders")] == ["orders-1"]
    assert runtime.instances(environment="production") == []


def test_a_service_that_exits_at_once_fails_readiness_fast(
    runtime: LocalRuntime, app: Path
) -> None:
    spec = _spec(runtime, app, env={"MODE": "exit"}, readiness=HttpProbe("/healthz"))
    runtime.start(spec)
    began = time.monotonic()
    readiness = runtime.wait_ready(spec.id, timeout=30)
    assert not readiness.ok
    assert readiness.reason == "exited with code 3"
    assert "cannot start: DATABASE_URL is not set" in readiness.last_lines
    assert time.monotonic() - began < 5
    state = runtime.get(spec.id)
    assert state.last_exit == 3 and state.restarts >= 1


def test_a_service_that_never_gets_ready_times_out(runtime: LocalRuntime, app: Path) -> None:
    spec = _spec(runtime, app, env={"MODE": "never-ready"}, readiness=HttpProbe("/healthz"))
    runtime.start(spec)
    readiness = runtime.wait_ready(spec.id, timeout=1.5)
    assert not readiness.ok
    assert readiness.reason == "not ready after 1.5 s (last answer: HTTP 503)"
    assert "request /healthz" in readiness.last_lines
    assert runtime.get(spec.id).status == "running"  # not ready is not dead


def test_a_command_that_cannot_start_fails(runtime: LocalRuntime, app: Path) -> None:
    spec = _spec(runtime, app)
    spec = dataclasses.replace(spec, command=["no-such-program-here"])
    state = runtime.start(spec)
    assert state.status == "failed"
    readiness = runtime.wait_ready(spec.id, timeout=5)
    assert not readiness.ok
    assert "cannot start 'no-such-program-here'" in readiness.reason


def test_another_process_answering_on_the_port_is_not_readiness(
    runtime: LocalRuntime, app: Path
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        spec = _spec(runtime, app, env={"MODE": "idle"})
        spec = dataclasses.replace(spec, port=port, env={**spec.env, "PORT": str(port)})
        runtime.start(spec)
        readiness = runtime.wait_ready(spec.id, timeout=1)
    assert not readiness.ok
    assert f"port {port} answers, but from a process not of this instance" in readiness.reason


# -- crashes, restarts and adoption --------------------------------------------------------


def test_a_killed_service_is_started_again_by_its_shim(runtime: LocalRuntime, app: Path) -> None:
    spec = _spec(runtime, app, readiness=HttpProbe("/healthz"))
    before = _started(runtime, spec)
    assert before.pid is not None
    os.kill(before.pid, signal.SIGKILL)

    after = _wait_for(
        lambda: runtime.get(spec.id), lambda s: s.status == "running" and s.pid != before.pid
    )
    assert (after.restarts, after.last_exit, after.shim_pid) == (1, -9, before.shim_pid)
    assert runtime.wait_ready(spec.id, timeout=15).ok
    assert _get(spec.port).text.split()[0] == str(after.pid)
    assert any("was killed by signal SIGKILL" in line for line in runtime.logs(spec.id, 20))


def test_a_service_failing_its_liveness_probe_is_restarted(
    runtime: LocalRuntime, app: Path, tmp_path: Path
) -> None:
    flag = tmp_path / "sick"
    spec = _spec(runtime, app, env={"SICK_FLAG": str(flag)}, liveness=HttpProbe("/live"))
    before = _started(runtime, spec)
    _wait_for(lambda: runtime.get(spec.id), lambda s: "request /live" in runtime.logs(s.id, 5))
    flag.touch()
    after = _wait_for(lambda: runtime.get(spec.id), lambda s: s.restarts == 1)
    assert after.last_exit == -15  # stopped with SIGTERM
    assert any("failed its liveness probe 2 times" in line for line in runtime.logs(spec.id, 30))
    flag.unlink()
    restarted = _wait_for(lambda: runtime.get(spec.id), lambda s: s.status == "running")
    assert restarted.pid != before.pid


def test_a_killed_shim_is_replaced_when_the_runtime_adopts(
    runtime: LocalRuntime, app: Path
) -> None:
    spec = _spec(runtime, app, readiness=HttpProbe("/healthz"))
    before = _started(runtime, spec)
    assert before.shim_pid is not None
    os.kill(before.shim_pid, signal.SIGKILL)
    _wait_for(lambda: runtime.get(spec.id), lambda s: s.status == "lost")

    report = runtime.adopt()
    assert (report.restarted, report.adopted, report.failed) == ([spec.id], [], {})
    assert not is_running(before.pid, before.pid_started)  # its old service was stopped
    after = runtime.get(spec.id)
    assert after.shim_pid != before.shim_pid and after.restarts == 1
    assert runtime.wait_ready(spec.id, timeout=15).ok
    assert _get(spec.port).text.split()[0] == str(after.pid)


def test_a_restarted_server_adopts_running_instances_as_they_are(
    runtimes: Callable[..., LocalRuntime], app: Path
) -> None:
    first = runtimes()
    spec = _spec(first, app, readiness=HttpProbe("/healthz"))
    before = _started(first, spec)

    second = LocalRuntime(first.root, first.settings)  # as a new server process would
    report = second.adopt()
    assert (report.adopted, report.restarted) == ([spec.id], [])
    after = second.get(spec.id)
    assert (after.shim_pid, after.pid, after.restarts) == (before.shim_pid, before.pid, 0)
    assert _get(spec.port).text.split()[0] == str(before.pid)


def test_an_instance_whose_shim_was_terminated_from_outside_comes_back(
    runtime: LocalRuntime, app: Path
) -> None:
    spec = _spec(runtime, app)
    before = _started(runtime, spec)
    assert before.shim_pid is not None
    os.kill(before.shim_pid, signal.SIGTERM)  # as at a reboot: not a stop asked for
    _wait_for(
        lambda: runtime.get(spec.id),
        lambda s: s.status == "stopped" and not is_running(s.shim_pid, s.shim_started),
    )

    assert runtime.adopt().restarted == [spec.id]
    assert runtime.wait_ready(spec.id, timeout=15).ok


# -- stopping ------------------------------------------------------------------------------


def test_stop_ends_the_whole_process_group_and_stays_stopped(
    runtime: LocalRuntime, app: Path, tmp_path: Path
) -> None:
    child_file = tmp_path / "child.pid"
    spec = _spec(runtime, app, env={"MODE": "child", "CHILD_PID_FILE": str(child_file)})
    before = _started(runtime, spec)
    child = int(child_file.read_text())
    child_started = process_start_ticks(child)
    assert child_started is not None

    stopped = runtime.stop(spec.id, grace_seconds=1)
    assert (stopped.status, stopped.pid) == ("stopped", None)
    assert not is_running(child, child_started)  # the background `sleep 600` too
    assert not is_running(before.pid, before.pid_started)
    assert not is_running(before.shim_pid, before.shim_started)
    assert runtime.stop(spec.id).status == "stopped"  # again: nothing to do
    assert runtime.logs(spec.id, 1) == ["[pavedroad] stopped"]

    report = runtime.adopt()
    assert (report.stopped, report.restarted) == ([spec.id], [])
    assert port_is_free(spec.port)

    runtime.remove(spec.id)
    assert runtime.instances() == []


def test_follow_streams_new_lines_until_the_instance_stops(
    runtime: LocalRuntime, app: Path
) -> None:
    spec = _spec(runtime, app)
    state = _started(runtime, spec)
    _wait_for(lambda: state, lambda _: runtime.logs(spec.id, 1)[0].startswith("listening on"))
    followed: list[str] = []
    reader = threading.Thread(target=lambda: followed.extend(runtime.follow(spec.id, tail=1)))
    reader.start()
    _get(spec.port, "/first")
    _get(spec.port, "/second")
    _wait_for(lambda: runtime.get(spec.id), lambda s: "request /second" in followed)
    runtime.stop(spec.id, grace_seconds=1)
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert followed[0].startswith("listening on")
    assert followed[1:3] == ["request /first", "request /second"]
    assert followed[-1] == "[pavedroad] stopped"


# -- logs ----------------------------------------------------------------------------------


def test_logs_rotate_at_their_size_cap(runtimes: Callable[..., LocalRuntime], app: Path) -> None:
    runtime = runtimes(log_max_bytes=2048, log_files=3)
    spec = _spec(runtime, app, env={"MODE": "chatty"})
    _started(runtime, spec)
    _wait_for(lambda: runtime.get(spec.id), lambda s: "line 0299 " in runtime.logs(s.id, 1)[0])

    folder = runtime.root / "instances" / spec.id
    logs = sorted(path.name for path in folder.glob("output.log*"))
    assert logs == ["output.log", "output.log.1", "output.log.2"]
    for name in logs:
        text = (folder / name).read_text()
        assert len(text.encode()) <= 2048
        assert text.endswith("\n")  # whole lines only
    last = runtime.logs(spec.id, tail=60)  # across the three files, in order
    numbers = [int(line.split()[1]) for line in last if line.startswith("line ")]
    assert numbers == list(range(300 - len(numbers), 300)) and len(numbers) == 60


# -- ports ---------------------------------------------------------------------------------


def test_ports_in_use_or_held_are_never_handed_out(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        first, last = busy, busy + 3
        handed: list[int] = []
        with pytest.raises(NoFreePortError):
            for _ in range(5):
                handed.append(allocate_port(tmp_path, first, last, taken={busy + 1}))
        assert busy not in handed and busy + 1 not in handed
        assert len(set(handed)) == len(handed) and len(handed) <= 2

    many: list[int] = []
    threads = [
        threading.Thread(target=lambda: many.append(allocate_port(tmp_path / "b", 30000, 30999)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(many)) == 8


def test_an_instance_port_is_not_handed_out_again(runtime: LocalRuntime, app: Path) -> None:
    spec = _spec(runtime, app)
    _started(runtime, spec)
    runtime.release_port(spec.port)  # forget the hold: the instance is known
    taken = {runtime.allocate_port() for _ in range(20)}
    assert spec.port not in taken


# -- preparing releases --------------------------------------------------------------------


def test_concurrent_prepares_of_one_release_extract_it_once(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    extracted: list[Path] = []

    def extract(folder: Path) -> None:
        extracted.append(folder)
        time.sleep(0.3)  # long enough for the other thread to arrive meanwhile
        (folder / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = []\n')
        (folder / "src").mkdir()

    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(prepare_release(tmp_path, digest, extract)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(extracted) == 1
    assert results[0] == results[1]
    prepared = results[0]
    assert prepared.app_dir == tmp_path / "releases" / ("ab" * 32)
    assert prepared.env["PYTHONPATH"] == f"{prepared.app_dir / 'src'}:{prepared.app_dir}"
    assert prepared.env["PATH"].startswith(f"{prepared.python.parent}:")
    assert [p.name for p in (tmp_path / "releases").iterdir() if not p.name.startswith(".")] == [
        "ab" * 32
    ]


def test_a_dependency_that_cannot_be_installed_fails_with_pips_output(tmp_path: Path) -> None:
    def extract(folder: Path) -> None:
        (folder / "requirements.txt").write_text(
            "--no-index\nno-such-package-for-pavedroad-tests==1.0\n"
        )

    with pytest.raises(PrepareError) as failure:
        prepare_release(tmp_path, "sha256:" + "cd" * 32, extract)
    assert "pip install of the dependencies in requirements.txt failed" in failure.value.detail
    assert "no-such-package-for-pavedroad-tests" in failure.value.detail
    assert list((tmp_path / "venvs").iterdir()) == [tmp_path / "venvs" / ".locks"]


# -- bad input -----------------------------------------------------------------------------


def test_bad_specs_and_ids_are_refused(runtime: LocalRuntime, app: Path, tmp_path: Path) -> None:
    spec = _spec(runtime, app)
    for changes in (
        {"id": "../escape"},
        {"id": ".hidden"},
        {"command": []},
        {"cwd": Path("relative")},
        {"env": {"A=B": "x"}},
        {"env": {"NUL": "a\0b"}},
        {"port": 70000},
    ):
        with pytest.raises(InstanceSpecError):
            dataclasses.replace(spec, **changes)
    for probe in ({"path": "healthz"}, {"scheme": "ftp"}, {"headers": {"X": "a\r\nB: c"}}):
        with pytest.raises(InstanceSpecError):
            HttpProbe(**probe)
    for instance_id in ("../../etc", "missing", ""):
        with pytest.raises(NotFoundError):
            runtime.get(instance_id)
        with pytest.raises(NotFoundError):
            runtime.stop(instance_id)
    with pytest.raises(PrepareError, match="is not a digest"):
        prepare_release(tmp_path, "sha256:../../x", lambda folder: None)
    assert runtime.instances() == []


def test_a_running_instance_cannot_be_started_twice_or_share_a_port(
    runtime: LocalRuntime, app: Path
) -> None:
    spec = _spec(runtime, app)
    _started(runtime, spec)
    with pytest.raises(ConflictError, match="running already"):
        runtime.start(spec)
    with pytest.raises(ConflictError, match=f"port {spec.port} belongs to the instance web-1"):
        runtime.start(dataclasses.replace(spec, id="web-2"))
