"""Ports for instances on 127.0.0.1, handed out so that no two instances get the same.

A port is free when nothing on the host is bound to it (a bind test, on every IPv4
address and on IPv6 where there is one), no known instance has it, and it was not
handed out in the last ten minutes: the caller may take a while (preparing a release,
starting a slow service) before its instance binds it. Those holds, and where the next
search starts, are kept in ``held.json`` under a file lock. The book is one per user
and host (:func:`host_port_folder`), not one per runtime root: two homes on one host
(a demo and a test run, parallel test workers) share the ports of 127.0.0.1, so they
must share the book too. Searching from after the last port handed out, rather than
from the start of the range, keeps a port just given up (a router may still send to
it) out of use for as long as possible.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

from pavedroad.core.errors import ConflictError
from pavedroad.core.paths import file_lock

HOLD_SECONDS = 600.0
_BOOK = "held.json"
_LOCK = "ports.lock"


class NoFreePortError(ConflictError):
    title = "No free port"
    type_slug = "no-free-port"


def allocate_port(
    folder: Path,
    first: int,
    last: int,
    taken: Collection[int] = (),
    *,
    hold_seconds: float = HOLD_SECONDS,
) -> int:
    """A free port from ``first`` to ``last``, not in ``taken`` (the ports of known
    instances), held for ``hold_seconds`` so that no other caller gets it meanwhile."""
    folder.mkdir(parents=True, exist_ok=True)
    count = last - first + 1
    with file_lock(folder / _LOCK):
        book = _read_book(folder)
        now = time.time()
        held = {port: until for port, until in book["held"].items() if until > now}
        cursor = book["next"] if first <= book["next"] <= last else first
        for offset in range(count):
            port = first + (cursor - first + offset) % count
            if port in taken or port in held or not port_is_free(port):
                continue
            held[port] = now + hold_seconds
            _write_book(folder, {"next": first + (port - first + 1) % count, "held": held})
            return port
    raise NoFreePortError(
        f"every port from {first} to {last} is in use or held: stop or remove instances "
        "that are no longer needed, or widen runtime.port_min/port_max"
    )


def release_port(folder: Path, port: int) -> None:
    """End the hold on ``port`` (its instance now owns it, or will never start)."""
    if not (folder / _BOOK).exists():
        return
    with file_lock(folder / _LOCK):
        book = _read_book(folder)
        if book["held"].pop(port, None) is not None:
            _write_book(folder, book)


def host_port_folder() -> Path | None:
    """The book shared by every runtime of this user on this host:
    ``<temp dir>/pavedroad-ports-<uid>``, if it is (or can be made) a folder of this
    user's that no one else may write; None otherwise (use a folder of your own)."""
    folder = Path(tempfile.gettempdir()) / f"pavedroad-ports-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    if (
        not stat.S_ISDIR(info.st_mode)  # a symbolic link someone put there
        or info.st_uid != os.getuid()
        or info.st_mode & 0o022
    ):
        return None
    return folder


def port_is_free(port: int) -> bool:
    """Whether nothing is bound to ``port`` (on any address). No SO_REUSEADDR: a port
    with connections still in TIME_WAIT counts as taken too."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    if socket.has_ipv6:
        try:
            sock6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this host
            return True
        with sock6:
            sock6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock6.bind(("::", port))
            except OSError as error:
                return error.errno != errno.EADDRINUSE
    return True


def _read_book(folder: Path) -> dict:
    try:
        data = json.loads((folder / _BOOK).read_text(encoding="utf-8"))
        return {
            "next": int(data.get("next", 0)),
            "held": {int(port): float(until) for port, until in data.get("held", {}).items()},
        }
    except (FileNotFoundError, ValueError, AttributeError, TypeError):
        return {"next": 0, "held": {}}  # a damaged book only loses its holds


def _write_book(folder: Path, book: dict) -> None:
    temporary = folder / f".{_BOOK}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(book), encoding="utf-8")
    os.replace(temporary, folder / _BOOK)
