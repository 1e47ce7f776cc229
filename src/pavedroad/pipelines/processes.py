"""The processes a job starts: each step's in a session of its own, its output read as it
arrives, stopped as a whole process group, and the job's leftovers found at its end.

How the job's processes are found at its end: every process of a job is started with
the marker variable ``PAVEDROAD_JOB_ID=<job id>`` in its environment, which each process
passes on to the ones it starts. At the end of a job, :func:`kill_marked` reads
``/proc/<pid>/environ`` of the worker user's processes and kills those holding the
marker. Unlike following parent links (lost as soon as a parent exits and its child is
re-parented to init) or process groups and sessions (left with ``setsid``), the marker
survives double forks and new sessions. It does not survive a process that starts a
program with an emptied environment (``env -i``); containing that needs a cgroup per job,
which a worker cannot count on being allowed to create.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

JOB_MARKER = "PAVEDROAD_JOB_ID"

_READ_BYTES = 1024 * 1024
_PIPE_BYTES = 1024 * 1024
_TICK_SECONDS = 0.05
_DRAIN_IDLE_SECONDS = 0.2  # after the step ended: output still arriving this late is dropped
_DRAIN_MAX_SECONDS = 2.0
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

StopReason = str  # "timeout" or "cancelled"


@dataclass(frozen=True)
class ProcessOutcome:
    """How a process ended: its exit code (negative: killed by that signal), and whether
    it was stopped for a timeout or a cancellation."""

    exit_code: int
    stopped: StopReason | None = None


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_output: Callable[[bytes], None],
    should_stop: Callable[[], StopReason | None],
    on_tick: Callable[[], None] = lambda: None,
    grace_seconds: float = 5.0,
) -> ProcessOutcome:
    """Run ``argv`` (never through a shell) as the leader of a new session.

    Standard output and error go, merged, to ``on_output`` as they arrive. ``on_tick``
    is called at least every 50 ms; ``should_stop`` too, and when it names a reason the
    process group gets SIGTERM, then SIGKILL after ``grace_seconds``. Whatever the
    process leaves in its group when it ends is killed.
    """
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    with contextlib.suppress(OSError):
        fcntl.fcntl(descriptor, _F_SETPIPE_SZ, _PIPE_BYTES)  # fewer, larger reads
    os.set_blocking(descriptor, False)
    selector = selectors.DefaultSelector()
    selector.register(descriptor, selectors.EVENT_READ)
    stopped: StopReason | None = None
    kill_at: float | None = None
    try:
        open_ = True
        while process.poll() is None:
            if open_:
                if selector.select(_TICK_SECONDS):
                    open_ = _read_available(descriptor, on_output)
            else:
                time.sleep(_TICK_SECONDS)
            on_tick()
            if stopped is None:
                stopped = should_stop()
                if stopped is not None:
                    signal_group(process.pid, signal.SIGTERM)
                    kill_at = time.monotonic() + grace_seconds
            elif kill_at is not None and time.monotonic() >= kill_at:
                signal_group(process.pid, signal.SIGKILL)
                kill_at = None
        # What the step left running in its group (a `sleep 1000 &`) ends with it.
        signal_group(process.pid, signal.SIGKILL)
        if open_:
            _drain(selector, descriptor, on_output)
    finally:
        selector.close()
        process.stdout.close()
        if process.poll() is None:
            signal_group(process.pid, signal.SIGKILL)
            process.wait()
    return ProcessOutcome(process.returncode, stopped)


def _read_available(descriptor: int, on_output: Callable[[bytes], None]) -> bool:
    """Read what the pipe holds; False once every writer has closed it."""
    try:
        data = os.read(descriptor, _READ_BYTES)
    except BlockingIOError:
        return True
    if not data:
        return False
    on_output(data)
    return True


def _drain(
    selector: selectors.BaseSelector, descriptor: int, on_output: Callable[[bytes], None]
) -> None:
    """Read the output written before the step ended. A process that left the step's
    group (``setsid``) may hold the pipe open: stop once it has been quiet for a moment."""
    give_up = time.monotonic() + _DRAIN_MAX_SECONDS
    while time.monotonic() < give_up:
        if not selector.select(_DRAIN_IDLE_SECONDS):
            return
        if not _read_available(descriptor, on_output):
            return


def signal_group(group: int, signum: int) -> None:
    """Send ``signum`` to the process group ``group``, if it still exists."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def marked_processes(job_id: str) -> list[int]:
    """The worker user's processes whose environment holds ``PAVEDROAD_JOB_ID=<job_id>``
    (none where there is no ``/proc``)."""
    needle = f"{JOB_MARKER}={job_id}".encode()
    me, uid = os.getpid(), os.getuid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry))
    return found


def kill_marked(job_id: str, rounds: int = 20) -> int:
    """SIGKILL every process of the job (see :func:`marked_processes`) until none is
    left or ``rounds`` scans have passed (a process may fork while its siblings die).
    Returns how many processes were killed."""
    killed: set[int] = set()
    for _ in range(rounds):
        pids = marked_processes(job_id)  # a killed process no longer shows its environment
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.02)
    return len(killed)
