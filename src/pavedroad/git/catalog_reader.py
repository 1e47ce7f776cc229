"""Catalog ``url`` locations that name files in hosted repositories.

A file in a hosted repository has one address, the portal's page for it::

    <public URL>/repos/<owner>/<name>/blob/<path>?ref=<ref>

``?ref=`` names a branch, a tag or a commit; without it the file is read from the
default branch. Such a URL is read straight from the bare repository with ``git``: no
HTTP request, so no ``catalog.allowed_hosts`` entry is needed and sign-in does not get
in the way, and it works in ingestion's worker processes (it needs only the settings).
Relative targets and placeholders resolve against the file's URL and keep its ``ref``,
so they stay in the same repository at the same ref; Location targets may be patterns
(``*``, ``**``, ``[abc]``).

"This server" means the scheme, host and port of ``settings.public_url`` (``base_url``)
exactly, under its path: ``localhost`` and ``127.0.0.1`` are different hosts. Every
URL there is read from a hosted repository or refused; any other URL is read over
HTTP as before. A file read over HTTP from elsewhere cannot point at hosted files.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urljoin, urlsplit, urlunsplit

from pavedroad.catalog.builtin import UrlReader
from pavedroad.catalog.ingestion import request_refresh_of_targets_containing
from pavedroad.catalog.processing import GLOB_CHARS
from pavedroad.catalog.validation import is_valid_object_name
from pavedroad.core.db import Database
from pavedroad.core.errors import InputError, NotFoundError, PayloadTooLargeError
from pavedroad.settings import Settings

HOSTED_FILE_FORM = "<public URL>/repos/<owner>/<name>/blob/<path>?ref=<ref>"
GIT_TIMEOUT_SECONDS = 30
COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Branch, tag and commit names a URL may give: never an option, a range or a reflog entry.
REF_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+@-]{0,254}")
DEFAULT_PORTS = {"http": 80, "https": 443}


def hosted_file_path(owner: str, name: str) -> str:
    """The part every hosted file URL of a repository holds, whatever the server."""
    return f"/repos/{owner}/{name}/blob/"


def refresh_locations_reading(db: Database, repository: str) -> int:
    """Mark due now every catalog source that reads a file of the hosted repository
    ``owner/name``; returns how many. (It matches the URL path on any host: at worst a
    look-alike URL elsewhere is re-read early.)"""
    owner, _, name = repository.partition("/")
    if not (is_valid_object_name(owner) and is_valid_object_name(name)):
        return 0
    return request_refresh_of_targets_containing(db, "url", hosted_file_path(owner, name))


@dataclass(frozen=True)
class HostedFile:
    """A parsed hosted file URL."""

    base: str  # the URL up to and including ``blob/``
    owner: str
    name: str
    path: str
    ref: str | None  # None: the default branch
    query: str  # as given, so that targets relative to this file keep it verbatim

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def at(self) -> str:
        return self.ref or "the default branch"


class HostedRepoUrlReader(UrlReader):
    """The ``url`` reader: files in hosted repositories from git, any other URL over
    HTTP (under the allowlist, as the built-in reader does)."""

    type = "url"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.root = settings.home / "git"
        self.max_bytes = settings.yaml.max_bytes
        public = urlsplit(settings.public_url)
        self.origin = _origin(public.scheme, public.hostname, public.port)
        self.base_path = public.path.rstrip("/")

    # -- the LocationReader interface ------------------------------------------------

    def check_target(self, target: str) -> None:
        if self.is_hosted(target):
            self.parse(target)
        else:
            super().check_target(target)

    def read(self, target: str) -> bytes:
        if not self.is_hosted(target):
            return super().read(target)
        file = self.parse(target)
        repo = self.repository_path(file)
        return self.blob(repo, self.commit(repo, file), file)

    def resolve(self, base_target: str, relative: str) -> str:
        """As a browser resolves a link, except that a relative target in a hosted file
        keeps the file's ``?ref=`` (unless it gives its own)."""
        if not self.is_hosted(base_target):
            target = urljoin(base_target, relative)
            if self.is_hosted(target):
                raise InputError(
                    f"{relative} names a file in a hosted repository, which {base_target} "
                    "(read from another server) cannot point at"
                )
            return target
        base = urlsplit(base_target)
        target = urljoin(urlunsplit(base._replace(query="", fragment="")), relative)
        reference = urlsplit(relative)
        is_relative = not reference.scheme and not reference.netloc
        if is_relative and base.query and not urlsplit(target).query:
            target += "?" + base.query
        return target

    def expand(self, target: str) -> list[str]:
        if not self.is_hosted(target):
            return [target]
        file = self.parse(target)
        if not GLOB_CHARS & set(file.path):
            return [target]
        repo = self.repository_path(file)
        listing = _git(repo, "ls-tree", "-r", "-z", "--name-only", self.commit(repo, file))
        pattern = file.path.split("/")
        query = "?" + file.query if file.query else ""
        return [
            file.base + quote(path) + query
            for path in sorted(entry.decode(errors="replace") for entry in listing.split(b"\0"))
            if path and glob_match(pattern, path.split("/"))
        ]

    # -- hosted file URLs ------------------------------------------------------------

    def is_hosted(self, target: str) -> bool:
        """Whether the URL is on this server (and so must name a hosted file)."""
        try:
            parts = urlsplit(target)
            origin = _origin(parts.scheme, parts.hostname, parts.port)
        except ValueError:  # an invalid port: not ours; the HTTP reader refuses it
            return False
        path = parts.path
        return origin == self.origin and (
            path == self.base_path or path.startswith(self.base_path + "/")
        )

    def parse(self, target: str) -> HostedFile:
        """The hosted file a URL on this server names; raises InputError for anything
        else (other paths, ``..``, a segment or ref starting with ``-``, other queries)."""
        parts = urlsplit(target)
        if parts.fragment or parts.username or parts.password:
            raise InputError(f"{target}: no user or #fragment here; use {HOSTED_FILE_FORM}")
        raw = parts.path[len(self.base_path) + 1 :].split("/")
        segments = [_segment(target, segment) for segment in raw]
        if len(segments) < 5 or segments[0] != "repos" or segments[3] != "blob":
            raise InputError(
                f"{target} is on this server but does not name a file in a hosted "
                f"repository; use {HOSTED_FILE_FORM}"
            )
        owner, name = segments[1], segments[2]
        if not is_valid_object_name(owner) or not is_valid_object_name(name):
            raise InputError(f"{target}: {owner}/{name} is not a valid repository name")
        base_path = "/".join([self.base_path, *raw[:4]]) + "/"
        base = urlunsplit((parts.scheme, parts.netloc, base_path, "", ""))
        ref = _ref(target, parts.query)
        return HostedFile(base, owner, name, "/".join(segments[4:]), ref, parts.query)

    def repository_path(self, file: HostedFile) -> Path:
        path = self.root / file.owner / f"{file.name}.git"
        if not (path / "HEAD").is_file():
            raise NotFoundError(f"there is no hosted repository {file.repository}")
        return path

    def commit(self, repo: Path, file: HostedFile) -> str:
        """The commit the file's ref (or the default branch) names."""
        result = _run(
            repo,
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{file.ref or 'HEAD'}^{{commit}}",
        )
        sha = result.stdout.decode(errors="replace").strip()
        if result.returncode != 0 or not COMMIT_ID.fullmatch(sha):
            if file.ref is None:
                raise NotFoundError(f"the hosted repository {file.repository} has no commits yet")
            raise NotFoundError(
                f"the hosted repository {file.repository} has no branch, tag or commit {file.ref!r}"
            )
        return sha

    def blob(self, repo: Path, commit: str, file: HostedFile) -> bytes:
        """The file's bytes, after checking it is a file within the size limit."""
        where = f"{file.path} at {file.at} in the hosted repository {file.repository}"
        answer = _git(repo, "cat-file", "--batch-check", input=f"{commit}:{file.path}\n".encode())
        fields = answer.decode(errors="replace").split()
        if len(fields) != 3 or fields[-1] == "missing":
            raise NotFoundError(f"there is no file {where}")
        oid, kind, size = fields
        if kind == "tree":
            raise InputError(f"{where} is a folder, not a file")
        if kind != "blob":
            raise InputError(f"{where} is a {kind}, not a file")
        if int(size) > self.max_bytes:
            raise PayloadTooLargeError(f"{where} is over the limit of {self.max_bytes} bytes")
        return _git(repo, "cat-file", "blob", oid)


def _segment(target: str, raw: str) -> str:
    """One path segment, %-decoded and checked."""
    try:
        segment = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InputError(f"{target}: a %-escape is not UTF-8") from None
    if segment in ("", ".", "..") or "/" in segment:
        raise InputError(f"{target}: empty, '.' and '..' path segments are not allowed")
    if segment.startswith("-"):
        raise InputError(f"{target}: a segment cannot start with '-' ({segment[:80]!r})")
    if any(ord(c) < 32 or c == "\x7f" for c in segment):
        raise InputError(f"{target}: control characters are not allowed")
    return segment


def _ref(target: str, query: str) -> str | None:
    """The ``ref`` query parameter, checked; None when there is no query."""
    if not query:
        return None
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        params = []
    if len(params) != 1 or params[0][0] != "ref":
        raise InputError(f"{target}: the only query a hosted file URL takes is ?ref=<ref>")
    ref = params[0][1]
    if not REF_NAME.fullmatch(ref) or ".." in ref or "@{" in ref or ref.endswith("/"):
        raise InputError(
            f"{target}: {ref[:80]!r} is not a branch, tag or commit name (letters, digits "
            "and . _ / + @ -, not starting with '-', without '..' or '@{')"
        )
    return ref


def _origin(scheme: str, host: str | None, port: int | None) -> tuple[str, str, int | None]:
    scheme = scheme.lower()
    return scheme, (host or "").lower(), port or DEFAULT_PORTS.get(scheme)


def glob_match(pattern: list[str], path: list[str]) -> bool:
    """Whether a path matches a pattern as Python's ``glob`` (recursive) matches files:
    ``*`` stays within a folder, a ``**`` segment spans any number of folders, and
    names starting with '.' match only patterns that start with '.'."""
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for skipped in range(len(path) + 1):
            if skipped and path[skipped - 1].startswith("."):
                return False
            if glob_match(rest, path[skipped:]):
                return True
        return False
    if not path or (path[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(path[0], head) and glob_match(rest, path[1:])


def _run(repo: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a read-only git command in a bare repository (list arguments, no shell)."""
    try:
        return subprocess.run(
            ["git", f"--git-dir={repo}", *args],
            input=input,
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"git {args[0]} took longer than {GIT_TIMEOUT_SECONDS} s") from None


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    """Its output; a failure becomes InputError, so it is the source's error rather
    than the refresh's."""
    result = _run(repo, *args, input=input)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()[:500]
        raise InputError(f"git {args[0]} failed in {repo.parent.name}/{repo.name}: {message}")
    return result.stdout
