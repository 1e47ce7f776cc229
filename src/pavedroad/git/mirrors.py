"""Mirrors of repositories kept elsewhere (GitHub, GitLab), for the pipelines they run.

A push announced by a GitHub or GitLab webhook names its repository by URL
(``https://github.com/acme/orders.git``). The platform knows such a repository by its
identity, the URL's host and path (``github.com/acme/orders``), and keeps a bare mirror
of it under ``$PAVEDROAD_HOME/mirrors/<identity>.git``: before a run reads the pushed
commit's pipeline file, :meth:`Mirrors.fetch` fetches the pushed ref from the URL into
the mirror, and the run's ``checkout`` step clones from there. Each commit fetched for a
run is kept by a ref of its own (:func:`pinned_ref`), so a branch force-pushed before the
run's jobs start does not take the commit away.

Fetching is an outbound request the sender of a webhook chooses, so it obeys the policy
catalog URL locations obey (:func:`pavedroad.core.outbound.check_url`:
``catalog.allowed_hosts``, no loopback or private address unless
``catalog.allow_private_network``). Git runs without a terminal prompt, without the
system's or the user's git configuration (so no credential helper hands it a secret),
over http(s) only, refusing redirects (it could not have them checked), and is killed
with everything it started when it passes its timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from pavedroad.core.errors import InputError
from pavedroad.core.outbound import OutboundError, check_url
from pavedroad.core.paths import PathEscapeError, contained_path, file_lock
from pavedroad.settings import Settings

MIRRORS = "mirrors"
FETCH_TIMEOUT_SECONDS = 300.0
LOCAL_TIMEOUT_SECONDS = 60.0
DEFAULT_PORTS = {"http": 80, "https": 443}
# Variables git may keep from the process's environment: where to find programs, and
# how the operator reaches the outside (proxies, certificate authorities).
PASSED_VARIABLES = (
    "PATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)

_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._~-]*")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REF = re.compile(r"refs/(?:heads|tags)/[^\s~^:?*\[\\]+")


class MirrorError(InputError):
    title = "Repository not mirrored"
    type_slug = "mirror-failed"


def pinned_ref(commit: str) -> str:
    """The mirror's ref that keeps a commit fetched for a run."""
    return f"refs/pavedroad/commits/{commit}"


def is_mirrored(repository: str) -> bool:
    """Whether a run's repository is a mirrored one (``host/owner/name``) rather than a
    hosted one (``owner/name``)."""
    return "://" not in repository and repository.count("/") >= 2


def repository_identity(url: str) -> str:
    """``https://github.com/acme/orders.git`` → ``github.com/acme/orders``: the host (with
    its port when it is not the scheme's default) and the path, without ``.git``.

    Raises :class:`MirrorError` for URLs that cannot name a repository to fetch: not
    http(s), with credentials, a query or a fragment, or a path that is not at least
    ``owner/name`` of plain segments."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise MirrorError(f"{url[:200]!r} is not an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise MirrorError("a repository URL must not hold a user name or password")
    if parts.query or parts.fragment:
        raise MirrorError(f"{url[:200]!r}: a repository URL has no query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise MirrorError(f"{url[:200]!r} has an invalid port") from None
    host = (parts.hostname or "").lower()
    if port is not None and port != DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    path = parts.path.strip("/").removesuffix(".git").rstrip("/")
    identity = f"{host}/{path}"
    check_identity(identity)
    return identity


def check_identity(identity: str) -> None:
    """Raise :class:`MirrorError` unless ``identity`` is ``host[:port]/owner/name[/...]``
    of plain segments (so it is also a safe path under the mirrors folder)."""
    host, _, path = identity.partition("/")
    segments = path.split("/")
    if not _HOST.fullmatch(host) or len(identity) > 300:
        raise MirrorError(f"{identity[:200]!r} does not name a repository by host and path")
    if len(segments) < 2 or not all(_SEGMENT.fullmatch(segment) for segment in segments):
        raise MirrorError(
            f"{identity[:200]!r} does not name a repository: its path must be owner/name "
            "(letters, digits, '.', '_', '~', '-')"
        )


class Mirrors:
    """The mirrors under ``$PAVEDROAD_HOME/mirrors``, filled under the outbound policy."""

    def __init__(self, settings: Settings, timeout: float = FETCH_TIMEOUT_SECONDS) -> None:
        self.root = settings.home / MIRRORS
        self.allowed_hosts = list(settings.catalog.allowed_hosts)
        self.allow_private_network = settings.catalog.allow_private_network
        self.timeout = timeout

    def path(self, identity: str) -> Path:
        """The bare mirror of ``identity`` (which may not exist yet)."""
        check_identity(identity)
        try:
            return contained_path(self.root, f"{identity}.git")
        except PathEscapeError:
            raise MirrorError(f"{identity[:200]!r} is not a repository identity") from None

    def fetch(self, url: str, ref: str, commit: str) -> Path:
        """Fetch ``ref`` from ``url`` into its mirror, made on first use, and make sure
        ``commit`` is there (fetched by its id when the ref has moved on since). Returns
        the mirror's path; raises :class:`MirrorError` saying why it could not."""
        identity = repository_identity(url)
        if not _REF.fullmatch(ref) or ".." in ref or ref.endswith((".lock", "/", ".")):
            raise MirrorError(f"{ref[:200]!r} is not a branch or tag to fetch")
        if not _COMMIT.fullmatch(commit):
            raise MirrorError(f"{commit[:80]!r} is not a full commit id")
        self.check(url)
        path = self.path(identity)
        with self._locked(path):
            self._create(path, url)
            self._git(path, "fetch", "--quiet", "--no-tags", url, f"+{ref}:{ref}")
            if not self.has(path, commit):
                self._git(path, "fetch", "--quiet", "--no-tags", url, commit)
            if not self.has(path, commit):
                raise MirrorError(f"{url} has no commit {commit}")
            self._pin(path, commit)
        return path

    def ensure(self, identity: str, commit: str) -> Path:
        """The mirror of ``identity`` with ``commit`` kept in it (by :func:`pinned_ref`):
        fetched again by its id from the URL the mirror was made from, under the same
        policy, when the mirror lost it."""
        path = self.path(identity)
        if not (path / "objects").is_dir():
            raise MirrorError(
                f"there is no mirror of {identity} under {self.root} (is PAVEDROAD_HOME "
                "shared with the server that received the push?)"
            )
        if self.has(path, pinned_ref(commit)):
            return path
        with self._locked(path):
            if not self.has(path, commit):
                url = self._git(path, "config", "--get", "remote.origin.url").strip()
                if repository_identity(url) != identity:
                    raise MirrorError(f"the mirror of {identity} was made from another URL")
                self.check(url)
                self._git(path, "fetch", "--quiet", "--no-tags", url, commit)
                if not self.has(path, commit):
                    raise MirrorError(f"{url} has no commit {commit}")
            self._pin(path, commit)
        return path

    def check(self, url: str) -> None:
        """Raise :class:`MirrorError` unless the outbound policy lets the platform read
        ``url``."""
        try:
            check_url(url, self.allowed_hosts, self.allow_private_network)
        except OutboundError as error:
            raise MirrorError(f"{url} may not be fetched: {error.detail}") from None

    def has(self, path: Path, revision: str) -> bool:
        """Whether the mirror has the commit ``revision`` names (a commit id, a ref)."""
        try:
            self._git(
                path, "cat-file", "-e", f"{revision}^{{commit}}", timeout=LOCAL_TIMEOUT_SECONDS
            )
        except MirrorError:
            return False
        return True

    # -- git -----------------------------------------------------------------------------

    def _pin(self, path: Path, commit: str) -> None:
        self._git(path, "update-ref", pinned_ref(commit), commit, timeout=LOCAL_TIMEOUT_SECONDS)

    def _create(self, path: Path, url: str) -> None:
        if not (path / "objects").is_dir():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            _run(["git", "init", "--quiet", "--bare", str(path)], LOCAL_TIMEOUT_SECONDS)
        # remembered for checkout, which may need a commit the mirror lost
        self._git(path, "config", "remote.origin.url", url, timeout=LOCAL_TIMEOUT_SECONDS)

    def _git(self, path: Path, *args: str, timeout: float | None = None) -> str:
        argv = [
            "git",
            "-c",
            "credential.helper=",
            "-c",
            "core.askPass=",
            "-c",
            "http.followRedirects=false",
            "-c",
            "gc.autoDetach=false",
            "--git-dir",
            str(path),
            *args,
        ]
        return _run(argv, self.timeout if timeout is None else timeout)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """One fetch into a mirror at a time on this machine (git would refuse a second
        one's ref updates while the first holds them)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with file_lock(path.with_name(path.name + ".lock")):
            yield


def git_environment() -> dict[str, str]:
    """What git runs with: none of the machine's or user's git configuration, no prompt,
    http(s) only."""
    env = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
    env.update(
        {
            "LANG": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ALLOW_PROTOCOL": "http:https",
        }
    )
    return env


def _run(argv: list[str], timeout: float) -> str:
    """Run git in a session of its own; past ``timeout`` the whole session is killed.
    Git's last error line becomes the :class:`MirrorError`'s message."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=git_environment(),
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise MirrorError(f"git {_command(argv)} took longer than {timeout:g} seconds") from None
    if process.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()
        detail = lines[-1][:300] if lines else f"exit code {process.returncode}"
        raise MirrorError(f"git {_command(argv)} failed: {detail}")
    return stdout.decode(errors="replace")


def _command(argv: list[str]) -> str:
    """The git subcommand in ``argv`` (what an error message names)."""
    options_with_values = {"-c", "--git-dir"}
    skip = False
    for word in argv[1:]:
        if skip:
            skip = False
        elif word in options_with_values:
            skip = True
        elif not word.startswith("-"):
            return word
    return "git"
