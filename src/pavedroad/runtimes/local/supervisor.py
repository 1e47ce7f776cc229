"""The local runtime: service instances as supervised processes on 127.0.0.1.

:class:`LocalRuntime` starts, watches and stops instances of released services on this
host. Each instance is kept by a shim process of its own (:mod:`.shim`), detached from
whoever started it, so instances go on serving while the server restarts, and any
process of the host (the server, ``pave worker`` processes, the CLI) sees and manages
the same instances: everything is in files under the runtime's root
(``$PAVEDROAD_HOME/runtime``):

- ``instances/<id>/``: an instance's spec, state, supervision policy and logs (see
  :mod:`.shim` for each file);
- ``locks/<id>.lock``: held while an instance is started, stopped, adopted or removed,
  so two processes never act on one instance at once;
- ``ports/``: the book of ports handed out, where the host's shared one cannot be
  used (:mod:`.ports`);
- ``releases/`` and ``venvs/``: releases unpacked and their virtualenvs (:mod:`.prepare`).

When the server starts it calls :meth:`LocalRuntime.adopt`: an instance whose shim is
alive (the same pid *and* start time: a pid the kernel reused is not ours) is left
running as it is; one whose shim is gone (killed, or the host rebooted) has whatever
is left of its service stopped and is started again from its spec, unless it was
stopped on purpose.

Linux only: processes are identified and their sessions found through ``/proc``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import IO, NoReturn

import pavedroad
from pavedroad.core.errors import ConflictError, NotFoundError, ProblemError
from pavedroad.core.paths import contained_path
from pavedroad.core.timeutil import isoformat, utcnow
from pavedroad.runtimes.local.ports import allocate_port, host_port_folder, release_port
from pavedroad.runtimes.local.prepare import DEFAULT_PATH, PreparedRelease, prepare_release
from pavedroad.runtimes.local.shim import (
    ACTIVE_STATUSES,
    CRASHLOOP,
    FAILED,
    INSTANCE_ID,
    LOG_FILE,
    LOST,
    RUNNING,
    SHIM_LOG_FILE,
    STARTING,
    STOP_FILE,
    STOPPED,
    STOPPING,
    HttpProbe,
    InstanceSpec,
    InstanceState,
    SupervisionPolicy,
    describe_exit,
    is_running,
    kill_session,
    listening_sockets,
    port_accepts,
    probe_http,
    read_spec,
    read_state,
    session_holds,
    write_json,
    write_policy,
    write_spec,
    write_state,
)
from pavedroad.settings import RuntimeSettings, Settings

__all__ = [
    "AdoptReport",
    "HttpProbe",
    "InstanceSpec",
    "InstanceStartError",
    "InstanceState",
    "LocalRuntime",
    "LogCursor",
    "PreparedRelease",
    "Readiness",
]

LAST_LINES = 30  # of the log, with a failed readiness
_SHIM_REPORT_SECONDS = 15.0  # for a new shim to start its service
_POLL_SECONDS = 0.1
_STOP_EXTRA_SECONDS = 10.0  # a shim gets the grace period and this, then SIGKILL
_LOST_START_SECONDS = 60.0  # a start that never launched its shim is lost after this
_TAIL_BLOCK = 64 * 1024
_FOLLOW_READ_BYTES = 1024 * 1024  # of one file, at one call of logs_since


class InstanceStartError(ProblemError):
    status = 500
    title = "Instance did not start"
    type_slug = "instance-start-failed"


@dataclass(frozen=True)
class LogCursor:
    """A place in an instance's log: the file (by inode, which rotation keeps) and an
    offset in it."""

    inode: int
    offset: int


@dataclass(frozen=True)
class Readiness:
    """Whether an instance became ready; if not, why and the last lines of its log."""

    ok: bool
    reason: str
    last_lines: list[str] = field(default_factory=list)


@dataclass
class AdoptReport:
    """What :meth:`LocalRuntime.adopt` found: instances left running, started again,
    left stopped, and those it could not start (with why)."""

    adopted: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class LocalRuntime:
    """Instances as processes on this host, their state in files under ``root``."""

    def __init__(self, root: Path, settings: RuntimeSettings) -> None:
        self.root = root
        self.settings = settings
        self._instances = root / "instances"
        self._locks = root / "locks"
        # Where ports handed out are booked: one book for the host, shared with other
        # homes (else this root's own).
        self.ports_folder = host_port_folder() or root / "ports"
        # Shims this object started: reaped once they end (else they stay zombies).
        self._shims: list[subprocess.Popen[bytes]] = []
        self._shims_lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalRuntime:
        return cls(settings.home / "runtime", settings.runtime)

    @property
    def policy(self) -> SupervisionPolicy:
        s = self.settings
        return SupervisionPolicy(
            log_max_bytes=s.log_max_bytes,
            log_files=s.log_files,
            restart_backoff_initial_seconds=s.restart_backoff_initial_seconds,
            restart_backoff_max_seconds=s.restart_backoff_max_seconds,
            stop_grace_seconds=s.stop_grace_seconds,
            probe_period_seconds=s.probe_period_seconds,
            probe_timeout_seconds=s.probe_timeout_seconds,
            liveness_failure_threshold=s.liveness_failure_threshold,
        )

    # -- before a start ------------------------------------------------------------------

    def allocate_port(self) -> int:
        """A port for a new instance: free on the host, no known instance's, and held
        for ten minutes so that no other caller gets it before the instance starts."""
        return allocate_port(
            self.ports_folder, self.settings.port_min, self.settings.port_max, self._known_ports()
        )

    def release_port(self, port: int) -> None:
        """Give back a port from :meth:`allocate_port` that no instance will use (a
        started instance's port is known from its spec; its hold simply expires)."""
        release_port(self.ports_folder, port)

    def prepare(self, digest: str, extract: Callable[[Path], None]) -> PreparedRelease:
        """The release with bundle ``digest`` unpacked (by ``extract``) and its
        virtualenv made, as :func:`.prepare.prepare_release` with this runtime's settings."""
        return prepare_release(
            self.root,
            digest,
            extract,
            python=self.settings.python,
            system_path=self.settings.path,
            timeout=self.settings.prepare_timeout_seconds,
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, spec: InstanceSpec) -> InstanceState:
        """Start the instance ``spec`` under a new shim; returns its state once the shim
        has started the service (``running``, not yet ready: see :meth:`wait_ready`) or
        found it cannot (``failed``, with ``error``). An instance of that id that was
        stopped is started again with this spec; a running one is a conflict."""
        with self._locked(spec.id):
            folder = self._folder(spec.id)
            current = read_state(folder) if folder.is_dir() else None
            if current is not None and is_running(current.shim_pid, current.shim_started):
                raise ConflictError(f"the instance {spec.id} is running already: stop it first")
            self._check_port(spec)
            if current is not None:
                kill_session(current.pid, current.pid_started)
            self._instances.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder.mkdir(exist_ok=True, mode=0o700)
            with contextlib.suppress(FileNotFoundError):
                (folder / STOP_FILE).unlink()
            return self._launch(spec, restarts=0)

    def stop(self, instance_id: str, grace_seconds: float | None = None) -> InstanceState:
        """Stop the instance: SIGTERM to its service's process group, SIGKILL to what is
        left of its session after ``grace_seconds`` (default: runtime.stop_grace_seconds).
        Returns once the shim has ended. Stopping a stopped instance does nothing; a
        stopped instance stays stopped across server restarts."""
        grace = self.settings.stop_grace_seconds if grace_seconds is None else grace_seconds
        with self._locked(instance_id):
            state = self._stop_locked(self._existing_folder(instance_id), grace)
        self._reap()
        return state

    def remove(self, instance_id: str, grace_seconds: float | None = None) -> None:
        """Stop the instance and delete its folder (spec, state and logs)."""
        grace = self.settings.stop_grace_seconds if grace_seconds is None else grace_seconds
        with self._locked(instance_id) as lock_path:
            folder = self._existing_folder(instance_id)
            if read_state(folder) is not None:
                self._stop_locked(folder, grace)
            shutil.rmtree(folder)
            lock_path.unlink()  # waiters see it gone and take a new lock file
        self._reap()

    def adopt(self) -> AdoptReport:
        """At server start: keep instances whose shim is alive, start again those whose
        shim is gone (after stopping what is left of their service), leave stopped
        those stopped on purpose."""
        report = AdoptReport()
        self._reap()
        for folder in self._folders():
            instance_id = folder.name
            try:
                with self._locked(instance_id):
                    if folder.is_dir():
                        self._adopt_locked(folder, report)
            except (ProblemError, OSError, ValueError, KeyError, TypeError) as error:
                report.failed[instance_id] = _describe(error)
        return report

    # -- reading -------------------------------------------------------------------------

    def get(self, instance_id: str) -> InstanceState:
        """The instance's state as last recorded; ``lost`` when it should be up but its
        shim is gone (:meth:`adopt` starts it again)."""
        state = read_state(self._existing_folder(instance_id))
        if state is None:
            raise NotFoundError(f"there is no instance {instance_id}")
        return self._observed(state)

    def spec(self, instance_id: str) -> InstanceSpec:
        return read_spec(self._existing_folder(instance_id))

    def instances(
        self, component: str | None = None, environment: str | None = None
    ) -> list[InstanceState]:
        """Every instance on this host, optionally of one component and environment."""
        self._reap()
        found: list[InstanceState] = []
        for folder in self._folders():
            try:
                state = read_state(folder)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # removed meanwhile, or damaged
            if state is None:
                continue
            if component is not None and state.component.lower() != component.lower():
                continue
            if environment is not None and state.environment != environment:
                continue
            found.append(self._observed(state))
        return found

    def wait_ready(self, instance_id: str, timeout: float) -> Readiness:
        """Wait until the instance answers its readiness probe (an HTTP GET on
        127.0.0.1 answered 200 to 399) or, without one, accepts connections on its port.
        Only an answer from a process of the service's own session counts (another
        process on the port says nothing about this instance). Fails at once when the
        service exits (``exited with code N``), cannot start or is stopped, and after
        ``timeout`` seconds (``not ready after T s``)."""
        spec = self.spec(instance_id)
        probed = spec.readiness.port if spec.readiness and spec.readiness.port else spec.port
        deadline = time.monotonic() + timeout
        restarts: int | None = None
        last_answer = "no answer yet"
        while True:
            state = self.get(instance_id)
            restarts = state.restarts if restarts is None else restarts
            failure = _not_up(state, restarts)
            if failure is not None:
                return Readiness(False, failure, self.logs(instance_id, LAST_LINES))
            remaining = deadline - time.monotonic()
            if state.status == RUNNING:
                answer_within = max(0.1, min(self.settings.probe_timeout_seconds, remaining))
                answer = (
                    probe_http(spec.readiness, spec.port, answer_within)
                    if spec.readiness is not None
                    else port_accepts(spec.port, answer_within)
                )
                if answer is None and _answered_by_another(probed, state):
                    answer = f"port {probed} answers, but from a process not of this instance"
                if answer is None:
                    return Readiness(True, "ready")
                last_answer = answer
                remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Readiness(
                    False,
                    f"not ready after {timeout:g} s (last answer: {last_answer})",
                    self.logs(instance_id, LAST_LINES),
                )
            time.sleep(min(_POLL_SECONDS, remaining))

    def logs(self, instance_id: str, tail: int = 100) -> list[str]:
        """The last ``tail`` lines of the instance's log (across rotated files)."""
        folder = self._existing_folder(instance_id)
        try:
            with open(folder / LOG_FILE, "rb") as current:
                return _tail(folder, tail, current, current.seek(0, os.SEEK_END))
        except FileNotFoundError:
            return _tail(folder, tail, None, 0)

    def log_cursor(self, instance_id: str) -> LogCursor:
        """Where the instance's log ends now, for :meth:`logs_since`."""
        path = self._existing_folder(instance_id) / LOG_FILE
        try:
            with open(path, "rb") as current:
                return LogCursor(_inode(current), current.seek(0, os.SEEK_END))
        except FileNotFoundError:
            return LogCursor(0, 0)

    def logs_since(
        self, instance_id: str, cursor: LogCursor, limit: int = 10_000
    ) -> tuple[list[str], LogCursor]:
        """The complete lines written after ``cursor`` (following rotation; stops
        after the read that reaches ``limit``) and the cursor after them. Never blocks:
        poll it."""
        folder = self._existing_folder(instance_id)
        files = _chain_since(folder, cursor)
        lines: list[str] = []
        for index, (path, inode, offset) in enumerate(files):
            try:
                with open(path, "rb") as handle:
                    if _inode(handle) != inode:
                        break  # rotated meanwhile: the next call goes on from the cursor
                    handle.seek(offset)
                    data = handle.read(_FOLLOW_READ_BYTES)
            except FileNotFoundError:
                break
            whole = len(data) < _FOLLOW_READ_BYTES
            if whole and index < len(files) - 1:
                taken = data  # a rotated file is complete, even a last piece of a long line
            else:
                taken = data[: data.rfind(b"\n") + 1] or (b"" if whole else data)
            pieces = taken.split(b"\n")
            if pieces[-1] == b"":
                pieces.pop()
            lines.extend(piece.decode("utf-8", errors="replace") for piece in pieces)
            cursor = LogCursor(inode, offset + len(taken))
            if len(lines) >= limit or not whole or len(taken) < len(data):
                break  # more to read next time, or a line still being written
        return lines, cursor

    def follow(self, instance_id: str, tail: int = 0, poll_seconds: float = 0.25) -> Iterator[str]:
        """The last ``tail`` lines of the log, then each new line as it is written
        (across rotation), until the instance is stopped or removed. Blocks between
        lines: run it in a thread of its own."""
        folder = self._existing_folder(instance_id)
        cursor = self.log_cursor(instance_id)
        yield from _tail_at(folder, tail, cursor)
        while True:
            ended = self._ended(folder)  # before reading: the lines written before it
            try:
                lines, cursor = self.logs_since(instance_id, cursor)
            except NotFoundError:  # removed
                return
            yield from lines
            if not lines:
                if ended:
                    return
                time.sleep(poll_seconds)

    # -- inside --------------------------------------------------------------------------

    def _launch(self, spec: InstanceSpec, restarts: int) -> InstanceState:
        """Write the instance's files and start its shim; its state once the shim has
        started the service (or found it cannot)."""
        folder = self._folder(spec.id)
        write_spec(folder, spec)
        write_policy(folder, self.policy)
        write_state(folder, InstanceState.initial(spec, restarts))
        with open(folder / SHIM_LOG_FILE, "ab") as shim_errors:
            shim = subprocess.Popen(
                [sys.executable, "-m", "pavedroad.runtimes.local.shim", str(folder)],
                cwd=folder,
                env=self._shim_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=shim_errors,
                start_new_session=True,
                close_fds=True,
            )
        with self._shims_lock:
            self._shims.append(shim)
        return self._await_shim(folder, shim)

    def _await_shim(self, folder: Path, shim: subprocess.Popen[bytes]) -> InstanceState:
        deadline = time.monotonic() + _SHIM_REPORT_SECONDS
        while time.monotonic() < deadline:
            state = read_state(folder)
            if state is not None and state.shim_pid == shim.pid and state.status != STARTING:
                return state
            if shim.poll() is not None:
                self._start_failed(
                    folder,
                    f"the supervisor process of instance {folder.name} ended at once "
                    f"(exit code {shim.returncode})" + _block(_last_lines(folder / SHIM_LOG_FILE)),
                )
            time.sleep(0.02)
        shim.kill()
        shim.wait()
        self._start_failed(
            folder,
            f"the supervisor process of instance {folder.name} did not start it within "
            f"{_SHIM_REPORT_SECONDS:g} s",
        )

    def _start_failed(self, folder: Path, message: str) -> NoReturn:
        state = read_state(folder)
        if state is not None:
            kill_session(state.pid, state.pid_started)
            write_state(folder, replace(state, status=FAILED, pid=None, error=message))
        raise InstanceStartError(message)

    def _stop_locked(self, folder: Path, grace: float) -> InstanceState:
        write_json(folder / STOP_FILE, {"grace_seconds": grace, "requested_at": _now()})
        state = read_state(folder)
        if state is None:
            raise NotFoundError(f"the instance {folder.name} has no state")
        if is_running(state.shim_pid, state.shim_started):
            assert state.shim_pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.shim_pid, signal.SIGTERM)
            if not _wait_ended(state.shim_pid, state.shim_started, grace + _STOP_EXTRA_SECONDS):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.shim_pid, signal.SIGKILL)
                _wait_ended(state.shim_pid, state.shim_started, 5.0)
            state = read_state(folder) or state
        kill_session(state.pid, state.pid_started)  # what a shim killed midway left
        if state.status != STOPPED or state.pid is not None:
            state = replace(
                state,
                status=STOPPED,
                pid=None,
                pid_started=None,
                next_start_at=None,
                updated_at=utcnow(),
            )
            write_state(folder, state)
        return state

    def _adopt_locked(self, folder: Path, report: AdoptReport) -> None:
        instance_id = folder.name
        state = read_state(folder)
        if state is not None and state.status in (STOPPED, FAILED) and state.shim_pid:
            _wait_ended(state.shim_pid, state.shim_started, 5.0)  # a shim on its way out
        if state is not None and is_running(state.shim_pid, state.shim_started):
            report.adopted.append(instance_id)
            return
        if state is not None:
            kill_session(state.pid, state.pid_started)
        if (folder / STOP_FILE).exists():
            if state is not None and state.status != STOPPED:
                self._stop_locked(folder, 0)
            report.stopped.append(instance_id)
            return
        spec = read_spec(folder)
        started = self._launch(spec, restarts=state.restarts + 1 if state else 0)
        if started.status == FAILED:
            report.failed[instance_id] = started.error or "it cannot be started"
        else:
            report.restarted.append(instance_id)

    def _observed(self, state: InstanceState) -> InstanceState:
        if state.status not in ACTIVE_STATUSES:
            return state
        if state.shim_pid is None:
            updated = state.updated_at or utcnow()
            if utcnow() - updated < timedelta(seconds=_LOST_START_SECONDS):
                return state  # its shim is being started
        elif is_running(state.shim_pid, state.shim_started):
            return state
        return replace(state, status=LOST)

    def _ended(self, folder: Path) -> bool:
        if not folder.is_dir():
            return True
        try:
            state = read_state(folder)
        except (OSError, ValueError):
            return False
        return state is None or (
            state.status in (STOPPED, FAILED) and not is_running(state.shim_pid, state.shim_started)
        )

    def _check_port(self, spec: InstanceSpec) -> None:
        for other in self.instances():
            if other.id != spec.id and other.port == spec.port and other.status in ACTIVE_STATUSES:
                raise ConflictError(
                    f"port {spec.port} belongs to the instance {other.id} "
                    f"({other.component} in {other.environment})"
                )

    def _known_ports(self) -> set[int]:
        return {state.port for state in self.instances()}

    def _folders(self) -> list[Path]:
        try:
            return sorted(path for path in self._instances.iterdir() if path.is_dir())
        except FileNotFoundError:
            return []

    def _folder(self, instance_id: str) -> Path:
        if not INSTANCE_ID.fullmatch(instance_id):
            raise NotFoundError(f"there is no instance {instance_id[:80]!r}")
        return contained_path(self._instances, instance_id)

    def _existing_folder(self, instance_id: str) -> Path:
        folder = self._folder(instance_id)
        if not folder.is_dir():
            raise NotFoundError(f"there is no instance {instance_id}")
        return folder

    @contextlib.contextmanager
    def _locked(self, instance_id: str) -> Iterator[Path]:
        """Hold the instance's lock file; yields its path (:meth:`remove` deletes it,
        which is why a lock taken on a file no longer at that path is taken again)."""
        self._folder(instance_id)  # a valid id
        self._locks.mkdir(parents=True, exist_ok=True)
        path = self._locks / f"{instance_id}.lock"
        while True:
            handle = open(path, "a")  # noqa: SIM115 - closed below
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                    break
            except FileNotFoundError:
                pass
            handle.close()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def _shim_env(self) -> dict[str, str]:
        # The shim runs this very code: the folder that holds the pavedroad package.
        package_parent = Path(pavedroad.__file__).resolve().parents[1]
        return {
            "PATH": self.settings.path or DEFAULT_PATH,
            "PYTHONPATH": str(package_parent),
            "PYTHONUNBUFFERED": "1",
        }

    def _reap(self) -> None:
        with self._shims_lock:
            self._shims = [shim for shim in self._shims if shim.poll() is None]


def _not_up(state: InstanceState, restarts: int) -> str | None:
    """Why an instance being waited for will not become ready, if it will not."""
    if state.status == FAILED:
        return state.error or "it cannot be started"
    if state.status == CRASHLOOP or state.restarts > restarts:
        return describe_exit(state.last_exit)
    if state.status in (STOPPED, STOPPING):
        return "it was stopped"
    if state.status == LOST:
        return "its supervisor process is gone"
    return None


def _answered_by_another(port: int, state: InstanceState) -> bool:
    """Whether ``port`` is held by a process outside the service's session (a port
    handed out twice, a leftover): its answer says nothing about this instance."""
    sockets = listening_sockets(port)
    if not sockets or state.pid is None or state.pid_started is None:
        return False  # cannot tell (no /proc/net): trust the answer
    return not session_holds(state.pid, state.pid_started, sockets)


def _wait_ended(pid: int, started: int | None, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while is_running(pid, started):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _log_files(folder: Path) -> list[Path]:
    """The rotated log files, newest first (``output.log.1``, ``.2``...)."""
    rotated = []
    for path in folder.glob(f"{LOG_FILE}.*"):
        suffix = path.name[len(LOG_FILE) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    return [path for _, path in sorted(rotated)]


def _tail(folder: Path, count: int, current: IO[bytes] | None, end: int) -> list[str]:
    """The last ``count`` lines of the log: of ``current`` up to ``end``, then as many
    of the rotated files as it takes."""
    if count <= 0:
        return []
    lines = _tail_of(current, end, count) if current is not None else []
    for path in _log_files(folder):
        if len(lines) >= count:
            break
        try:
            with open(path, "rb") as handle:
                older = _tail_of(handle, handle.seek(0, os.SEEK_END), count - len(lines))
        except FileNotFoundError:  # rotated away meanwhile
            continue
        lines = older + lines
    return lines[-count:]


def _tail_of(handle: IO[bytes], end: int, count: int) -> list[str]:
    """The last ``count`` lines of the first ``end`` bytes of ``handle``, reading back
    from the end in blocks."""
    data = b""
    position = end
    while position > 0 and data.count(b"\n") <= count:
        start = max(0, position - _TAIL_BLOCK)
        handle.seek(start)
        data = handle.read(position - start) + data
        position = start
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if position > 0:
        lines = lines[1:]  # the first one is cut
    return [line.decode("utf-8", errors="replace") for line in lines[-count:]]


def _last_lines(path: Path, count: int = 15) -> list[str]:
    try:
        with open(path, "rb") as handle:
            return _tail_of(handle, handle.seek(0, os.SEEK_END), count)
    except FileNotFoundError:
        return []


def _tail_at(folder: Path, count: int, cursor: LogCursor) -> list[str]:
    """The last ``count`` lines of the log before ``cursor``."""
    try:
        with open(folder / LOG_FILE, "rb") as current:
            if _inode(current) == cursor.inode:
                return _tail(folder, count, current, cursor.offset)
    except FileNotFoundError:
        pass
    return _tail(folder, count, None, 0)


def _chain_since(folder: Path, cursor: LogCursor) -> list[tuple[Path, int, int]]:
    """The log files to read after ``cursor``, oldest first, each with its inode and
    where to start: the file the cursor is in (now perhaps ``output.log.1``) from the
    cursor on, then the newer ones from their start. A cursor whose file is gone (or
    the first one) starts at the beginning of the current file."""
    chain: list[tuple[Path, int, int]] = []
    for path in [folder / LOG_FILE, *_log_files(folder)]:  # newest first
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            continue
        if inode == cursor.inode:
            chain.append((path, inode, cursor.offset))
            return list(reversed(chain))
        chain.append((path, inode, 0))
    return chain[:1]


def _inode(handle: IO[bytes]) -> int:
    return os.fstat(handle.fileno()).st_ino


def _block(lines: list[str]) -> str:
    return (":\n" + "\n".join(lines)) if lines else ""


def _describe(error: BaseException) -> str:
    return error.detail if isinstance(error, ProblemError) else f"{type(error).__name__}: {error}"


def _now() -> str | None:
    return isoformat(utcnow())
