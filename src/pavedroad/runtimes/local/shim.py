"""The shim: the small process that keeps one service instance running.

Every instance has a folder (``<runtime root>/instances/<id>/``) and one shim,
``python -m pavedroad.runtimes.local.shim <folder>``, started in a session of its own so
it outlives the server that started it. The folder is the whole interface between the
shim and everything else on the host:

- ``spec.json`` (mode 0600: the environment holds secret values, needed again at every
  restart): what to run, as an :class:`InstanceSpec`;
- ``policy.json``: how to supervise it (log sizes, backoff, grace, probes);
- ``state.json``: what the shim last saw, as an :class:`InstanceState`, rewritten
  atomically at every change;
- ``output.log`` (with ``output.log.1``, ``.2``, ... rotated at a size cap): the
  service's standard output and error, merged, with the shim's own notes about starts,
  exits and restarts in lines beginning ``[pavedroad]``;
- ``stop.json``: written by whoever stops the instance before it sends the shim SIGTERM;
  it gives the grace period, and tells a server that starts later that the instance is
  meant to stay stopped (an instance whose shim ended without one, e.g. at a reboot, is
  started again).

The shim starts the service in a session (and process group) of its own, restarts it
with exponential backoff whenever it exits, restarts it when its liveness probe fails
too often in a row, and on SIGTERM stops the whole group (SIGTERM, the grace period,
then SIGKILL to every process left in the service's session) and exits.

Processes are known by their pid *and* start time (``/proc/<pid>/stat``): a pid that
the kernel has handed to another process since is not ours. This module also holds
those helpers, the on-disk formats and the HTTP probe, which the supervisor shares.
It imports little, so that a shim starts fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pavedroad.core.errors import InputError
from pavedroad.core.timeutil import isoformat, utcnow

SPEC_FILE = "spec.json"
POLICY_FILE = "policy.json"
STATE_FILE = "state.json"
STOP_FILE = "stop.json"
LOG_FILE = "output.log"
SHIM_LOG_FILE = "shim.log"  # the shim's own standard error (a crash of the shim itself)
NOTE_PREFIX = "[pavedroad] "

# What the shim writes as an instance's status.
STARTING = "starting"  # the shim has not started the service yet
RUNNING = "running"  # the service's process is running (ready or not)
CRASHLOOP = "crashloop"  # the service exited; the shim waits to start it again
STOPPING = "stopping"
STOPPED = "stopped"
FAILED = "failed"  # the service cannot be started at all (no such command or folder)
# What the supervisor reports when the state says an instance is up but its shim is gone.
LOST = "lost"
ACTIVE_STATUSES = frozenset({STARTING, RUNNING, CRASHLOOP, STOPPING})

INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ENV_NAME = re.compile(r"[^=\0]+")
_TICK_SECONDS = 0.1
_READ_BYTES = 256 * 1024
_MAX_PARTIAL_LINE = 64 * 1024  # a line longer than this is written in pieces
_STABLE_RUN_SECONDS = 60.0  # a service up this long starts its next backoff from the start
_DRAIN_IDLE_SECONDS = 0.2
_DRAIN_MAX_SECONDS = 2.0


class InstanceSpecError(InputError):
    title = "Invalid instance spec"
    type_slug = "invalid-instance-spec"


# -- what to run -------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpProbe:
    """An HTTP GET on 127.0.0.1 that passes with a status from 200 to 399 (as
    Kubernetes' ``httpGet`` probes). ``port`` None: the instance's own port."""

    path: str = "/"
    port: int | None = None
    scheme: Literal["http", "https"] = "http"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or any(c in self.path for c in "\r\n\0 "):
            raise InstanceSpecError(f"a probe's path must start with / ({self.path[:80]!r})")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise InstanceSpecError(f"a probe's port must be from 1 to 65535, not {self.port}")
        if self.scheme not in ("http", "https"):
            raise InstanceSpecError(f"a probe's scheme is http or https, not {self.scheme!r}")
        for name, value in self.headers.items():
            if any(c in f"{name}{value}" for c in "\r\n\0") or not name.strip():
                raise InstanceSpecError(f"a probe's header {name[:80]!r} is not valid")

    def url(self, instance_port: int) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port or instance_port}{self.path}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> HttpProbe | None:
        if data is None:
            return None
        return cls(
            path=str(data.get("path", "/")),
            port=data.get("port"),
            scheme=data.get("scheme", "http"),
            headers=dict(data.get("headers") or {}),
        )


@dataclass(frozen=True)
class InstanceSpec:
    """One instance of a service: what to run, where, with which environment (exactly
    ``env``: nothing is inherited from the server) and on which port of 127.0.0.1."""

    id: str
    component: str
    environment: str
    deployment_id: str | None
    release_id: str | None
    command: list[str]
    cwd: Path
    env: dict[str, str]
    port: int
    readiness: HttpProbe | None = None
    liveness: HttpProbe | None = None

    def __post_init__(self) -> None:
        if not INSTANCE_ID.fullmatch(self.id):
            raise InstanceSpecError(
                f"an instance id is 1 to 100 letters, digits, '.', '_' or '-' ({self.id[:80]!r})"
            )
        if not self.command or not all(isinstance(a, str) and "\0" not in a for a in self.command):
            raise InstanceSpecError("an instance's command is a non-empty list of strings")
        if not self.cwd.is_absolute():
            raise InstanceSpecError(f"an instance's folder must be absolute, not {self.cwd}")
        for name, value in self.env.items():
            if not ENV_NAME.fullmatch(name) or not isinstance(value, str) or "\0" in value:
                raise InstanceSpecError(f"the environment variable {name[:80]!r} is not valid")
        if not 1 <= self.port <= 65535:
            raise InstanceSpecError(f"an instance's port must be from 1 to 65535, not {self.port}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cwd"] = str(self.cwd)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceSpec:
        return cls(
            id=data["id"],
            component=data["component"],
            environment=data["environment"],
            deployment_id=data.get("deployment_id"),
            release_id=data.get("release_id"),
            command=list(data["command"]),
            cwd=Path(data["cwd"]),
            env=dict(data["env"]),
            port=int(data["port"]),
            readiness=HttpProbe.from_dict(data.get("readiness")),
            liveness=HttpProbe.from_dict(data.get("liveness")),
        )


@dataclass(frozen=True)
class SupervisionPolicy:
    """How a shim supervises its service (from the runtime settings at start)."""

    log_max_bytes: int = 10 * 1024 * 1024
    log_files: int = 5
    restart_backoff_initial_seconds: float = 1.0
    restart_backoff_max_seconds: float = 60.0
    stop_grace_seconds: float = 10.0
    probe_period_seconds: float = 5.0
    probe_timeout_seconds: float = 2.0
    liveness_failure_threshold: int = 3

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SupervisionPolicy:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


# -- what is running ---------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceState:
    """What an instance's shim last recorded. Processes are named by pid and start time
    (clock ticks after boot, as ``/proc/<pid>/stat`` has it)."""

    id: str
    component: str
    environment: str
    deployment_id: str | None
    release_id: str | None
    port: int
    status: str
    shim_pid: int | None = None
    shim_started: int | None = None
    pid: int | None = None  # the service's process (and its process group and session)
    pid_started: int | None = None
    started_at: datetime | None = None  # when the service's current process started
    restarts: int = 0
    last_exit: int | None = None  # negative: killed by that signal
    error: str | None = None  # why the service cannot start, or the shim failed
    next_start_at: datetime | None = None  # while in crashloop
    updated_at: datetime | None = None

    @classmethod
    def initial(cls, spec: InstanceSpec, restarts: int = 0) -> InstanceState:
        return cls(
            id=spec.id,
            component=spec.component,
            environment=spec.environment,
            deployment_id=spec.deployment_id,
            release_id=spec.release_id,
            port=spec.port,
            status=STARTING,
            restarts=restarts,
            updated_at=utcnow(),
        )

    @property
    def exit_description(self) -> str:
        return describe_exit(self.last_exit)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("started_at", "next_start_at", "updated_at"):
            data[name] = isoformat(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceState:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for name in ("started_at", "next_start_at", "updated_at"):
            if values.get(name):
                values[name] = datetime.fromisoformat(values[name].replace("Z", "+00:00"))
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The state for the API (camelCase, as other resources)."""
        return {
            "id": self.id,
            "component": self.component,
            "environment": self.environment,
            "deploymentId": self.deployment_id,
            "releaseId": self.release_id,
            "port": self.port,
            "status": self.status,
            "pid": self.pid,
            "startedAt": isoformat(self.started_at),
            "restarts": self.restarts,
            "lastExit": self.last_exit,
            "error": self.error,
            "nextStartAt": isoformat(self.next_start_at),
            "updatedAt": isoformat(self.updated_at),
        }


def describe_exit(code: int | None) -> str:
    """``exited with code 3`` or ``was killed by signal SIGKILL``."""
    if code is None:
        return "exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name}"
    return f"exited with code {code}"


# -- the files ---------------------------------------------------------------------------


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` at once: readers see the old file or the new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.chmod(temporary, mode)  # an old temporary file kept its mode
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_spec(folder: Path, spec: InstanceSpec) -> None:
    write_json(folder / SPEC_FILE, spec.to_dict(), mode=0o600)


def read_spec(folder: Path) -> InstanceSpec:
    return InstanceSpec.from_dict(read_json(folder / SPEC_FILE))


def write_policy(folder: Path, policy: SupervisionPolicy) -> None:
    write_json(folder / POLICY_FILE, asdict(policy))


def read_policy(folder: Path) -> SupervisionPolicy:
    try:
        return SupervisionPolicy.from_dict(read_json(folder / POLICY_FILE))
    except FileNotFoundError:
        return SupervisionPolicy()


def write_state(folder: Path, state: InstanceState) -> None:
    write_json(folder / STATE_FILE, state.to_dict())


def read_state(folder: Path) -> InstanceState | None:
    try:
        return InstanceState.from_dict(read_json(folder / STATE_FILE))
    except FileNotFoundError:
        return None


def stop_grace(folder: Path, default: float) -> float:
    """The grace period in ``stop.json``, else ``default``."""
    try:
        value = read_json(folder / STOP_FILE).get("grace_seconds")
    except (OSError, ValueError, AttributeError):
        return default
    return float(value) if isinstance(value, int | float) and value >= 0 else default


# -- processes (Linux: /proc) ------------------------------------------------------------


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` from the third (state) on; None when there
    is no such process or it has ended (a zombie)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (OSError, ValueError):
        return None
    rest = data[data.rindex(b")") + 2 :].split()  # the name may hold spaces and parens
    if not rest or rest[0] in (b"Z", b"X"):
        return None
    return rest


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot); None if it is gone."""
    fields_ = _stat_fields(pid)
    return None if fields_ is None else int(fields_[19])


def is_running(pid: int | None, started: int | None) -> bool:
    """Whether the process ``pid`` that started at ``started`` is still running (the same
    pid with another start time is another process)."""
    return pid is not None and started is not None and process_start_ticks(pid) == started


def session_processes(session: int, since: int) -> list[int]:
    """The live processes of session ``session`` that started at ``since`` or later (so
    that a new session that got the same number is not taken for the old one)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            fields_ = _stat_fields(int(entry))
            if fields_ is not None and int(fields_[3]) == session and int(fields_[19]) >= since:
                found.append(int(entry))
    return found


def listening_sockets(port: int) -> set[int]:
    """The inodes of the TCP sockets listening on ``port`` (any address, IPv4 or 6)."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            columns = row.split()
            # local address (hex ip:port), state 0A is LISTEN, the inode is column 10
            listening = len(columns) > 9 and columns[3] == "0A"
            if listening and int(columns[1].rsplit(":", 1)[1], 16) == port:
                found.add(int(columns[9]))
    return found


def session_holds(leader: int, started: int, sockets: set[int]) -> bool:
    """Whether a process of the session ``leader`` began holds one of ``sockets``."""
    names = {f"socket:[{inode}]" for inode in sockets}
    for pid in session_processes(leader, started):
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{descriptor}") in names:
                    return True
    return False


def signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def kill_session(leader: int | None, started: int | None, rounds: int = 20) -> int:
    """SIGKILL every process left in the session that ``leader`` (started at ``started``)
    began, including those that left its process group; returns how many there were."""
    if leader is None or started is None:
        return 0
    killed: set[int] = set()
    for _ in range(rounds):  # a process may fork while its siblings die
        pids = session_processes(leader, started)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.02)
    return len(killed)


# -- probes ------------------------------------------------------------------------------


def probe_http(probe: HttpProbe, instance_port: int, timeout: float) -> str | None:
    """None when the probe passes, else why it did not (``HTTP 503``, ``connection
    refused``...). Certificates are not checked (a local service's is self-signed) and
    proxy variables are ignored (127.0.0.1 is never behind one)."""
    import httpx

    try:
        response = httpx.get(
            probe.url(instance_port),
            headers=probe.headers,
            timeout=timeout,
            verify=False,
            trust_env=False,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        return f"no answer within {timeout:g} s"
    except httpx.ConnectError:
        return "connection refused"
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"[:300]
    if 200 <= response.status_code < 400:
        return None
    return f"HTTP {response.status_code}"


def port_accepts(port: int, timeout: float) -> str | None:
    """None when 127.0.0.1:``port`` accepts a connection, else why not."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return "connection refused"
    except OSError as error:
        return error.strerror or str(error)


# -- the log -----------------------------------------------------------------------------


class RotatingLog:
    """Lines appended to ``output.log``; before a line would take the file over
    ``max_bytes`` it becomes ``output.log.1`` (``.1`` becoming ``.2``...), keeping
    ``files`` files in all. Lines are never split between files unless one alone is
    longer than the cap."""

    def __init__(self, path: Path, max_bytes: int, files: int) -> None:
        self.path = path
        self.max_bytes = max(1, max_bytes)
        self.files = max(1, files)
        self._partial = b""
        self._handle = open(path, "ab")  # noqa: SIM115 - open for the shim's lifetime
        self._size = self._handle.tell()

    def write(self, data: bytes) -> None:
        """Append output as it arrives: complete lines now, the rest once it ends
        (or grows past 64 KiB)."""
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        if len(data) - cut > _MAX_PARTIAL_LINE:
            cut = len(data)
        self._partial = data[cut:]
        for line in data[:cut].splitlines(keepends=True):
            self._write_line(line)
        self._handle.flush()

    def note(self, text: str) -> None:
        """One line of the shim's own, marked as such."""
        self.flush_partial()
        self._write_line(f"{NOTE_PREFIX}{text}\n".encode(errors="replace"))
        self._handle.flush()

    def flush_partial(self) -> None:
        """Write a last line that has no line end yet (its process has ended)."""
        if self._partial:
            line, self._partial = self._partial + b"\n", b""
            self._write_line(line)
            self._handle.flush()

    def close(self) -> None:
        self.flush_partial()
        self._handle.close()

    def _write_line(self, line: bytes) -> None:
        while len(line) > self.max_bytes:
            self._write_line(line[: self.max_bytes])
            line = line[self.max_bytes :]
        if self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._handle.write(line)
        self._size += len(line)

    def _rotate(self) -> None:
        self._handle.close()
        if self.files > 1:
            for number in range(self.files - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{number}")
                newer = (
                    self.path
                    if number == 1
                    else self.path.with_name(f"{self.path.name}.{number - 1}")
                )
                with contextlib.suppress(FileNotFoundError):
                    os.replace(newer, older)
        self._handle = open(self.path, "wb")  # noqa: SIM115
        self._size = 0


# -- the shim itself ---------------------------------------------------------------------


class _LivenessWatch(threading.Thread):
    """Probes the service every period on a thread of its own (a slow answer must not
    stop the shim from reading output). Failures count only once the probe has passed
    since the service's last start: a service still starting is not restarted for it,
    that is what its readiness is for."""

    def __init__(self, probe: HttpProbe, port: int, policy: SupervisionPolicy) -> None:
        super().__init__(name="liveness", daemon=True)
        self.probe = probe
        self.port = port
        self.period = policy.probe_period_seconds
        self.timeout = policy.probe_timeout_seconds
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._generation = 0
        self._passed = False
        self.failures = 0
        self.last_failure = ""

    def reset(self) -> None:
        """The service started again: count afresh."""
        with self._lock:
            self._generation += 1
            self._passed = False
            self.failures = 0

    def close(self) -> None:
        self._closing.set()

    def run(self) -> None:
        while not self._closing.wait(self.period):
            with self._lock:
                generation = self._generation
            failure = probe_http(self.probe, self.port, self.timeout)
            with self._lock:
                if generation != self._generation:
                    continue
                if failure is None:
                    self._passed, self.failures = True, 0
                elif self._passed:
                    self.failures += 1
                    self.last_failure = failure


class Shim:
    """Supervises the service of the instance folder ``folder`` until told to stop."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.spec = read_spec(folder)
        self.policy = read_policy(folder)
        self.state = read_state(folder) or InstanceState.initial(self.spec)
        self.log = RotatingLog(folder / LOG_FILE, self.policy.log_max_bytes, self.policy.log_files)
        self.stop_requested = False
        self.process: subprocess.Popen[bytes] | None = None
        self._output: int | None = None
        self._selector = selectors.DefaultSelector()
        self.liveness = (
            _LivenessWatch(self.spec.liveness, self.spec.port, self.policy)
            if self.spec.liveness
            else None
        )

    def run(self) -> int:
        """Supervise until SIGTERM (0) or until the service cannot be started (1)."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        me = os.getpid()
        self._update(shim_pid=me, shim_started=process_start_ticks(me), status=STARTING, error=None)
        if self.liveness is not None:
            self.liveness.start()
        try:
            if not self._supervise():
                return 1
            self._stop_service()
            self.log.note("stopped")
            self._update(status=STOPPED, pid=None, pid_started=None, next_start_at=None)
            return 0
        except Exception as error:  # the shim's own failure: leave nothing unsupervised
            self._kill_service()
            message = f"the instance's supervisor failed: {type(error).__name__}: {error}"
            self.log.note(message)
            self._update(status=FAILED, pid=None, pid_started=None, error=message)
            raise
        finally:
            if self.liveness is not None:
                self.liveness.close()
            self.log.close()

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def _supervise(self) -> bool:
        """Start the service, and again each time it exits, until a stop is requested
        (True) or the service cannot be started (False)."""
        backoff = self.policy.restart_backoff_initial_seconds
        while not self.stop_requested:
            started = time.monotonic()
            if not self._launch():
                return False
            ending = self._watch()
            if ending is None:  # a stop was requested
                return True
            if time.monotonic() - started >= _STABLE_RUN_SECONDS:
                backoff = self.policy.restart_backoff_initial_seconds
            delay, backoff = backoff, min(backoff * 2, self.policy.restart_backoff_max_seconds)
            exit_code = self._reap_service()
            restarts = self.state.restarts + 1
            self.log.note(
                f"the service {ending or describe_exit(exit_code)}; "
                f"starting it again in {delay:g} s (restart {restarts})"
            )
            self._update(
                status=CRASHLOOP,
                pid=None,
                pid_started=None,
                restarts=restarts,
                last_exit=exit_code,
                next_start_at=utcnow() + timedelta(seconds=delay),
            )
            self._sleep(delay)
        return True

    def _launch(self) -> bool:
        read_end, write_end = os.pipe()
        try:
            self.process = subprocess.Popen(
                self.spec.command,
                cwd=self.spec.cwd,
                env=self.spec.env,
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            os.close(read_end)
            self.process = None
            message = f"cannot start {self.spec.command[0]!r}: {error.strerror or error}"
            if isinstance(error, FileNotFoundError) and not self.spec.cwd.is_dir():
                message = f"cannot start the service: its folder {self.spec.cwd} does not exist"
            self.log.note(message)
            self._update(status=FAILED, pid=None, pid_started=None, error=message)
            return False
        finally:
            os.close(write_end)
        os.set_blocking(read_end, False)
        self._output = read_end
        self._selector.register(read_end, selectors.EVENT_READ)
        pid = self.process.pid
        self._update(
            status=RUNNING,
            pid=pid,
            pid_started=process_start_ticks(pid),
            started_at=utcnow(),
            next_start_at=None,
            error=None,
        )
        self.log.note(f"started {self.spec.command[0]} (pid {pid}) on port {self.spec.port}")
        if self.liveness is not None:
            self.liveness.reset()
        return True

    def _watch(self) -> str | None:
        """Copy the service's output to the log until it exits ("" or why it was
        restarted) or a stop is requested (None)."""
        assert self.process is not None
        threshold = self.policy.liveness_failure_threshold
        while self.process.poll() is None:
            self._pump(_TICK_SECONDS)
            if self.stop_requested:
                return None
            if self.liveness is not None and self.liveness.failures >= threshold:
                reason = (
                    f"failed its liveness probe {self.liveness.failures} times in a row "
                    f"(last: {self.liveness.last_failure})"
                )
                self.log.note(f"the service {reason}: stopping it")
                self._terminate(self.policy.stop_grace_seconds)
                return f"was restarted: it {reason}"
        return ""

    def _pump(self, timeout: float) -> bool:
        """Copy what the service wrote to the log, waiting up to ``timeout`` for it;
        False once its output is closed."""
        if self._output is None:
            time.sleep(timeout)
            return False
        if not self._selector.select(timeout):
            return True
        try:
            data = os.read(self._output, _READ_BYTES)
        except BlockingIOError:
            return True
        if not data:
            self._close_output()
            return False
        self.log.write(data)
        return True

    def _drain(self) -> None:
        """Read the output written before the service ended (a process that left its
        session may hold the pipe open: stop once it has been quiet for a moment)."""
        give_up = time.monotonic() + _DRAIN_MAX_SECONDS
        while self._output is not None and time.monotonic() < give_up:
            if not self._selector.select(_DRAIN_IDLE_SECONDS):
                break
            self._pump(0)
        self._close_output()
        self.log.flush_partial()

    def _close_output(self) -> None:
        if self._output is not None:
            self._selector.unregister(self._output)
            os.close(self._output)
            self._output = None

    def _terminate(self, grace: float) -> None:
        """SIGTERM to the service's group, then, after ``grace`` or once it has exited,
        SIGKILL to whatever is left of its session."""
        assert self.process is not None
        signal_group(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.process.poll() is None and time.monotonic() < deadline:
            self._pump(_TICK_SECONDS)
        self._kill_service()

    def _kill_service(self) -> None:
        """SIGKILL the service and every process of its session, and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            signal_group(self.process.pid, signal.SIGKILL)
        kill_session(self.process.pid, self.state.pid_started)
        with contextlib.suppress(ChildProcessError):
            self.process.wait()

    def _reap_service(self) -> int:
        """After the service exited: end what it left in its session (a background
        child would keep its port), read the rest of its output, forget the process."""
        assert self.process is not None
        self._kill_service()
        self._drain()
        exit_code = self.process.returncode
        self.process = None
        return exit_code

    def _stop_service(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            grace = stop_grace(self.folder, self.policy.stop_grace_seconds)
            self._update(status=STOPPING)
            self.log.note(f"stopping the service (pid {self.process.pid}; grace {grace:g} s)")
            self._terminate(grace)
        self._update(last_exit=self._reap_service())

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(min(_TICK_SECONDS, max(0.0, deadline - time.monotonic())))

    def _update(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes, updated_at=utcnow())
        write_state(self.folder, self.state)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m pavedroad.runtimes.local.shim <instance folder>", file=sys.stderr)
        return 2
    return Shim(Path(arguments[0])).run()


if __name__ == "__main__":
    sys.exit(main())
