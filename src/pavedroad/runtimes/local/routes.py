"""The route table: which upstreams serve each (environment, component).

Routes are files, ``<root>/<environment>/<component>.json`` under
``$PAVEDROAD_HOME/runtime/routes``, so every process on the host sees one table: the
server whose router proxies requests, and the ``pave worker`` processes whose deployments
switch routes. A change writes the route to a temporary file and renames it over the old
one (readers see the old route or the new one, never half of either), then bumps the
``.generation`` file. Writers take an exclusive lock on ``.lock`` around both, so versions
and generations never go backwards when two processes write at once.

Readers answer :meth:`RouteTable.lookup` from memory and look at the generation at most
every :data:`CHECK_INTERVAL` seconds (one small file read), reloading the whole table
only when it changed: a switch made by another process is seen within that interval.

Environment and component names are DNS labels (they become host names such as
``orders.preview-login-form.localhost``), so no name can lead a path out of the root.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pavedroad.core.errors import InputError
from pavedroad.core.paths import contained_path, file_lock
from pavedroad.core.timeutil import isoformat, utcnow

log = logging.getLogger("pavedroad.routes")

CHECK_INTERVAL = 0.05
"""Seconds between two looks at the generation file by a reader."""

LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
"""A DNS label, lower case (RFC 1123): what environment and component names must be."""

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_GENERATION = ".generation"
_LOCK = ".lock"


@dataclass(frozen=True, slots=True)
class Route:
    """Where requests for a component in an environment go: its upstreams
    (``host:port``, taken in turn) and the release they run."""

    environment: str
    component: str
    upstreams: tuple[str, ...]
    release: str | None
    version: int  # 1 for the first switch of this route, one more at each switch after
    updated_at: datetime

    def host(self, base_port: int, domain: str = "localhost") -> str:
        """The Host the router answers for this route on the platform's port."""
        return f"{self.component}.{self.environment}.{domain}:{base_port}"

    def url(self, base_port: int, domain: str = "localhost", scheme: str = "http") -> str:
        """The route's stable URL by host name (``*.localhost`` reaches 127.0.0.1)."""
        return f"{scheme}://{self.host(base_port, domain)}/"

    def path_url(self, base_url: str) -> str:
        """The route's URL under the platform's own address (``/r/<env>/<component>/``)."""
        return f"{base_url.rstrip('/')}{self.path_prefix}/"

    @property
    def path_prefix(self) -> str:
        return f"/r/{self.environment}/{self.component}"

    def to_dict(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "component": self.component,
            "upstreams": list(self.upstreams),
            "release": self.release,
            "version": self.version,
            "updated_at": isoformat(self.updated_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Route:
        upstreams = data["upstreams"]
        if not isinstance(upstreams, list) or not upstreams:
            raise ValueError("upstreams must be a non-empty list")
        release = data.get("release")
        version = data["version"]
        if not isinstance(version, int):
            raise ValueError("version must be an integer")
        return cls(
            environment=check_label(str(data["environment"]), "environment"),
            component=check_label(str(data["component"]), "component"),
            upstreams=tuple(check_upstream(str(u)) for u in upstreams),
            release=None if release is None else str(release),
            version=version,
            updated_at=datetime.fromisoformat(str(data["updated_at"]).replace("Z", "+00:00")),
        )


def check_label(name: str, what: str) -> str:
    """``name`` if it is a DNS label (lower case letters, digits, inner hyphens, at most
    63 characters); otherwise an :class:`InputError` saying so."""
    if not isinstance(name, str) or not LABEL.match(name):
        raise InputError(
            f"{what} name {name!r} is not a DNS label: lower case letters, digits and "
            "hyphens, starting and ending with a letter or digit, at most 63 characters"
        )
    return name


def check_upstream(upstream: str) -> str:
    """``upstream`` if it is ``host:port`` (an IP address, ``[v6]`` or a host name, and a
    port from 1 to 65535), lower-cased; otherwise an :class:`InputError`."""
    host, sep, port = upstream.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or len(port) > 5:
        raise InputError(f"upstream {upstream!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InputError(f"upstream {upstream!r} has no valid IPv6 address") from None
    elif not _HOSTNAME.match(host.lower()):
        raise InputError(f"upstream {upstream!r} has no valid host")
    return f"{host.lower()}:{int(port)}"


def routes_root(home: Path) -> Path:
    """Where the route table of a ``PAVEDROAD_HOME`` lives."""
    return home / "runtime" / "routes"


class RouteTable:
    """The routes of one host, kept as files under ``root``; safe to use from any
    number of threads and processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._routes: dict[tuple[str, str], Route] = {}
        self._generation: bytes | None = None  # what the cache was loaded at
        self._checked = -1.0  # monotonic time of the last look at the generation
        self._reload_lock = threading.Lock()
        self._thread_lock = threading.Lock()  # one writer per process at a time

    @property
    def generation(self) -> bytes | None:
        """The generation the in-memory table was loaded at; changes at every reload."""
        return self._generation

    # -- reading --------------------------------------------------------------------------

    def lookup(self, environment: str, component: str) -> Route | None:
        """The route of ``component`` in ``environment``, from memory (refreshed if the
        table changed on disk since the last look, at most every 50 ms)."""
        now = time.monotonic()
        if now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            self._refresh_if_changed()
        return self._routes.get((environment, component))

    def refresh(self) -> None:
        """Look at the table on disk now (a caller that just failed on a stale route)."""
        self._checked = time.monotonic()
        self._refresh_if_changed()

    def all(self) -> list[Route]:
        """Every route, sorted by environment and component, as on disk now."""
        self.refresh()
        return sorted(self._routes.values(), key=lambda r: (r.environment, r.component))

    def for_environment(self, environment: str) -> list[Route]:
        check_label(environment, "environment")
        return [r for r in self.all() if r.environment == environment]

    def _refresh_if_changed(self) -> None:
        generation = self._read_generation()
        if generation == self._generation:
            return
        with self._reload_lock:
            if generation != self._generation:
                self._routes = self._load_all()
                self._generation = generation

    def _read_generation(self) -> bytes:
        try:
            with open(self.root / _GENERATION, "rb") as handle:
                return handle.read(64)
        except FileNotFoundError:
            return b"0"

    def _load_all(self) -> dict[tuple[str, str], Route]:
        routes: dict[tuple[str, str], Route] = {}
        for path in self._route_files():
            try:
                route = Route.from_dict(json.loads(path.read_bytes()))
            except FileNotFoundError:
                continue  # removed while we listed
            except (ValueError, KeyError, TypeError, InputError) as error:
                log.warning("ignoring the unreadable route file %s: %s", path, error)
                continue
            if (route.environment, route.component) != (path.parent.name, path.stem):
                log.warning("ignoring the route file %s: it names another route", path)
                continue
            routes[(route.environment, route.component)] = route
        return routes

    def _route_files(self) -> Iterator[Path]:
        try:
            environments = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for environment in environments:
            if not LABEL.match(environment.name) or not environment.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(environment.path):
                stem, dot, suffix = entry.name.rpartition(".")
                if (
                    dot
                    and suffix == "json"
                    and LABEL.match(stem)
                    and entry.is_file(follow_symlinks=False)
                ):
                    yield Path(entry.path)

    # -- writing --------------------------------------------------------------------------

    def switch(
        self,
        environment: str,
        component: str,
        upstreams: list[str],
        release: str | None = None,
    ) -> Route:
        """Send every new request for ``component`` in ``environment`` to ``upstreams``
        from now on (in this process at once, in others within 50 ms). Requests already
        on the old upstreams finish there: drain them before stopping the old instances."""
        check_label(environment, "environment")
        check_label(component, "component")
        if not upstreams:
            raise InputError("a route needs at least one upstream (remove the route instead)")
        checked = tuple(dict.fromkeys(check_upstream(u) for u in upstreams))
        with self._writing():
            path = self._route_path(environment, component)
            previous = self._read_route(path)
            route = Route(
                environment=environment,
                component=component,
                upstreams=checked,
                release=release,
                version=(previous.version + 1) if previous else 1,
                updated_at=utcnow(),
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, json.dumps(route.to_dict(), indent=2).encode() + b"\n")
            self._bump_generation()
        self.refresh()
        return route

    def remove(self, environment: str, component: str) -> bool:
        """Forget the route (requests for it get 404 from now on); False if there was none."""
        check_label(environment, "environment")
        check_label(component, "component")
        with self._writing():
            path = self._route_path(environment, component)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # the environment's last route
            self._bump_generation()
        self.refresh()
        return True

    def remove_environment(self, environment: str) -> int:
        """Forget every route of ``environment`` (a preview torn down); how many there were."""
        return sum(
            self.remove(r.environment, r.component) for r in self.for_environment(environment)
        )

    def _route_path(self, environment: str, component: str) -> Path:
        return contained_path(self.root, f"{environment}/{component}.json")

    @staticmethod
    def _read_route(path: Path) -> Route | None:
        try:
            return Route.from_dict(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, InputError):
            return None  # an unreadable file is replaced; its version restarts

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._thread_lock, file_lock(self.root / _LOCK):
            yield

    def _bump_generation(self) -> None:
        current = self._read_generation().strip()
        number = int(current) if current.isdigit() else 0
        _write_atomically(self.root / _GENERATION, str(number + 1).encode())


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
