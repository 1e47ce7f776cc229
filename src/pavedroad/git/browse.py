"""Read-only views of a bare repository: its branches and tags, the files at a commit,
a file's content, the commit log and one commit's changes.

Everything goes through git plumbing in a subprocess: arguments as a list (never a
shell), a clean environment with literal pathspecs, and a time limit on every call.
What a user names is checked before git sees it: a ref must look like a ref and
resolve to a commit (``rev-parse --verify --end-of-options``); a path is relative,
without ``.``/``..`` segments, control characters or a leading ``-``, and reaches git
only inside a ``<commit>:<path>`` object name. Symbolic links are shown as links,
never followed. An empty repository (no commits) has no refs: every reader works on
it and finds nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pavedroad.core.errors import InputError, NotFoundError, ProblemError

GIT_TIMEOUT = 30  # seconds, for every git call
MAX_BLOB_BYTES = 512 * 1024
BINARY_SNIFF_BYTES = 8 * 1024
MAX_REFS = 1000
MAX_TREE_ENTRIES = 5000
MAX_CHANGED_FILES = 1000
README_NAMES = ("readme.md", "readme.markdown", "readme", "readme.txt")
MARKDOWN_SUFFIXES = (".md", ".markdown")

UNIT = "\x1f"  # between fields: neither appears in names, subjects or messages
RECORD = "\x1e"  # after each record

_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+@-]{0,254}")
_SHA = re.compile(r"[0-9a-fA-F]{4,64}")
_RAW = re.compile(r":\d{6} \d{6} [0-9a-f]+ [0-9a-f]+ ([A-Z])\d*")

# No user or system configuration, no prompts, no replace objects; pathspecs literal.
_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "LC_ALL": "C",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_LITERAL_PATHSPECS": "1",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_OPTIONAL_LOCKS": "0",
}


class GitTimeoutError(ProblemError):
    status = 503
    title = "Repository too slow"
    type_slug = "git-timeout"


class NotATreeError(NotFoundError):
    """The path names a file, not a folder (pages send the reader to the file)."""


class NotABlobError(NotFoundError):
    """The path names a folder, not a file."""


@dataclass(frozen=True)
class RefInfo:
    name: str  # "main", "feature/x", "v1.0"
    kind: str  # "branch" or "tag"
    sha: str  # the commit (a tag's target, peeled)


@dataclass(frozen=True)
class Refs:
    branches: list[RefInfo]
    tags: list[RefInfo]
    head: str | None  # the branch HEAD names, when it exists

    @property
    def empty(self) -> bool:
        return not self.branches and not self.tags

    @property
    def default(self) -> str | None:
        """The ref a repository page shows when none is asked for."""
        if self.head:
            return self.head
        return (self.branches or self.tags)[0].name if not self.empty else None


@dataclass(frozen=True)
class TreeEntry:
    name: str
    path: str  # from the repository's root
    type: str  # blob, tree, commit (a submodule) or symlink
    mode: str
    oid: str
    size: int | None  # blobs and symlinks only


@dataclass(frozen=True)
class Tree:
    commit: str
    path: str
    entries: list[TreeEntry]
    truncated: bool = False


@dataclass(frozen=True)
class Blob:
    commit: str
    path: str
    size: int
    content: bytes  # at most the cap asked for
    too_large: bool
    binary: bool
    symlink: bool = False

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def is_markdown(self) -> bool:
        return self.name.lower().endswith(MARKDOWN_SUFFIXES) and not self.binary


@dataclass(frozen=True)
class CommitSummary:
    sha: str
    short: str
    author_name: str
    author_email: str
    date: datetime
    subject: str


@dataclass(frozen=True)
class FileChange:
    path: str
    status: str  # A, M, D, T ...
    added: int | None  # None for a binary file
    deleted: int | None


@dataclass(frozen=True)
class CommitDetail:
    sha: str
    short: str
    parents: list[str]
    author_name: str
    author_email: str
    date: datetime
    committer_name: str
    committed: datetime
    message: str
    files: list[FileChange] = field(default_factory=list)
    truncated: bool = False

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def body(self) -> str:
        return self.message.partition("\n")[2].strip("\n")

    @property
    def added(self) -> int:
        return sum(f.added or 0 for f in self.files)

    @property
    def deleted(self) -> int:
        return sum(f.deleted or 0 for f in self.files)


# -- what users name ---------------------------------------------------------------------


def check_ref(ref: str) -> str:
    """A branch, tag or commit name that cannot be taken for an option or a range."""
    if not _REF.fullmatch(ref) or ".." in ref or "//" in ref or ref.endswith(("/", ".", ".lock")):
        raise InputError(
            f"{ref[:80]!r} is not a branch, tag or commit name: letters, digits and . _ / + @ - "
            "(not first), without '..' or '@{'"
        )
    return ref


def is_commit_id(text: str) -> bool:
    return bool(_SHA.fullmatch(text))


def check_path(path: str) -> str:
    """A path inside the repository: relative, no ``.``/``..`` segments, no control
    characters, not starting with ``-``; a trailing ``/`` is dropped."""
    if len(path) > 4096 or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise InputError("the path has control characters or is too long")
    if path.startswith("/"):
        raise InputError("the path must be relative to the repository's root")
    if path.startswith("-"):
        raise InputError("the path must not start with '-'")
    clean = path.rstrip("/")
    if clean and any(part in ("", ".", "..") for part in clean.split("/")):
        raise InputError("the path must not have empty, '.' or '..' segments")
    return clean


# -- running git ---------------------------------------------------------------------------


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", f"--git-dir={repo}", *args],
            cwd=repo,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            env=_ENV,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise GitTimeoutError(
            f"git {args[0]} took longer than {GIT_TIMEOUT}s on this repository; try again"
        ) from None


def _git(repo: Path, *args: str) -> bytes:
    """git's output; a failure is a bug or a broken repository, not the user's doing."""
    result = _run(repo, *args)
    if result.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def _read_head(repo: Path, oid: str, limit: int) -> bytes:
    """The first ``limit`` bytes of a blob, without reading the rest."""
    process = subprocess.Popen(
        ["git", f"--git-dir={repo}", "cat-file", "blob", oid],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_ENV,
    )
    timer = threading.Timer(GIT_TIMEOUT, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        return process.stdout.read(limit)
    finally:
        timer.cancel()
        process.kill()
        process.wait(timeout=GIT_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


# -- readers ----------------------------------------------------------------------------------


def refs(repo: Path) -> Refs:
    """Branches and tags (each with its commit), and the branch HEAD names."""
    output = _git(
        repo,
        "for-each-ref",
        f"--count={2 * MAX_REFS}",
        "--sort=refname",
        "--format=%(refname)%1f%(objectname)%1f%(*objectname)%1f%(objecttype)",
        "refs/heads/",
        "refs/tags/",
    ).decode(errors="replace")
    branches: list[RefInfo] = []
    tags: list[RefInfo] = []
    for line in output.splitlines():
        refname, sha, peeled, _type = line.split(UNIT)
        if refname.startswith("refs/heads/"):
            branches.append(RefInfo(refname.removeprefix("refs/heads/"), "branch", sha))
        elif refname.startswith("refs/tags/"):
            tags.append(RefInfo(refname.removeprefix("refs/tags/"), "tag", peeled or sha))
    head = _run(repo, "symbolic-ref", "--quiet", "HEAD").stdout.decode(errors="replace").strip()
    head_branch = head.removeprefix("refs/heads/")
    present = any(b.name == head_branch for b in branches)
    return Refs(branches[:MAX_REFS], tags[:MAX_REFS], head_branch if present else None)


def resolve(repo: Path, ref: str) -> str:
    """The commit a branch, tag or commit name means; 404 when it means none."""
    check_ref(ref)
    result = _run(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    sha = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0 or not _SHA.fullmatch(sha):
        raise NotFoundError(f"there is no branch, tag or commit {ref!r} in this repository")
    return sha


def _list(repo: Path, commit: str, folder: str) -> tuple[list[TreeEntry], bool]:
    output = _git(repo, "ls-tree", "-z", "-l", f"{commit}:{folder}")
    entries: list[TreeEntry] = []
    records = output.split(b"\0")
    for record in records[:MAX_TREE_ENTRIES]:
        if not record:
            continue
        meta, _, raw_name = record.partition(b"\t")
        mode, kind, oid, size = meta.decode().split()
        name = raw_name.decode(errors="replace")
        entries.append(
            TreeEntry(
                name=name,
                path=f"{folder}/{name}" if folder else name,
                type="symlink" if mode == "120000" else kind,
                mode=mode,
                oid=oid,
                size=int(size) if size.isdigit() else None,
            )
        )
    entries.sort(key=lambda e: (e.type != "tree", e.name.lower()))
    return entries, len([r for r in records if r]) > MAX_TREE_ENTRIES


def _entry(repo: Path, commit: str, path: str) -> TreeEntry | None:
    """The entry ``path`` names at ``commit`` (found in its folder's listing)."""
    folder, _, name = path.rpartition("/")
    # `<commit>:<folder>` never follows symbolic links: a link on the way is not a tree.
    if folder and _run(repo, "cat-file", "-t", f"{commit}:{folder}").stdout.strip() != b"tree":
        return None
    entries, _truncated = _list(repo, commit, folder)
    return next((e for e in entries if e.name == name), None)


def tree(repo: Path, ref: str, subpath: str = "") -> Tree:
    """The entries of a folder at ``ref``: folders first, then by name."""
    commit = resolve(repo, ref)
    folder = check_path(subpath)
    if folder:
        entry = _entry(repo, commit, folder)
        if entry is None:
            raise NotFoundError(f"there is no {folder!r} at {ref}")
        if entry.type != "tree":
            raise NotATreeError(f"{folder!r} is a file, not a folder")
    entries, truncated = _list(repo, commit, folder)
    return Tree(commit, folder, entries, truncated)


def blob(repo: Path, ref: str, filepath: str, max_bytes: int = MAX_BLOB_BYTES) -> Blob:
    """A file's content at ``ref``, up to ``max_bytes``; a symbolic link's content is
    its target, which is never followed."""
    commit = resolve(repo, ref)
    path = check_path(filepath)
    entry = _entry(repo, commit, path) if path else None
    if entry is None:
        raise NotFoundError(f"there is no file {path!r} at {ref}")
    if entry.type not in ("blob", "symlink"):
        raise NotABlobError(f"{path!r} is a folder or a submodule, not a file")
    size = entry.size or 0
    too_large = size > max_bytes
    if too_large:
        content = _read_head(repo, entry.oid, min(max_bytes, BINARY_SNIFF_BYTES))
    else:
        content = _git(repo, "cat-file", "blob", entry.oid)
    binary = b"\0" in content[:BINARY_SNIFF_BYTES]
    if too_large:
        content = b""
    return Blob(commit, path, size, content, too_large, binary, entry.type == "symlink")


def commits(repo: Path, ref: str, limit: int = 30, skip: int = 0) -> list[CommitSummary]:
    """The commits reachable from ``ref``, newest first."""
    commit = resolve(repo, ref)
    fields = UNIT.join(["%H", "%h", "%an", "%ae", "%aI", "%s"])
    output = _git(
        repo,
        "log",
        f"--format={fields}{RECORD}",
        f"--max-count={max(0, limit)}",
        f"--skip={max(0, skip)}",
        commit,
        "--",
    ).decode(errors="replace")
    found = []
    for record in output.split(RECORD):
        record = record.strip("\n")
        if not record:
            continue
        sha, short, name, email, date, subject = record.split(UNIT)
        found.append(CommitSummary(sha, short, name, email, datetime.fromisoformat(date), subject))
    return found


def commit(repo: Path, sha: str) -> CommitDetail:
    """One commit: its message, parents and the files it changed (against its first
    parent) with lines added and deleted."""
    if not _SHA.fullmatch(sha):
        raise InputError(f"{sha[:80]!r} is not a commit id (4 to 64 hexadecimal digits)")
    full = resolve(repo, sha)
    fields = UNIT.join(["%H", "%h", "%P", "%an", "%ae", "%aI", "%cn", "%cI", "%B"])
    output = _git(
        repo,
        "show",
        "-z",
        "--no-renames",
        "--diff-merges=first-parent",
        "--raw",
        "--numstat",
        f"--format={fields}{RECORD}",
        full,
        "--",
    ).decode(errors="replace")
    header, _, changes = output.partition(RECORD)
    hexsha, short, parents, name, email, date, committer, committed, message = header.split(UNIT)
    files, truncated = _changes(changes)
    return CommitDetail(
        sha=hexsha,
        short=short,
        parents=parents.split(),
        author_name=name,
        author_email=email,
        date=datetime.fromisoformat(date),
        committer_name=committer,
        committed=datetime.fromisoformat(committed),
        message=message.strip("\n"),
        files=files,
        truncated=truncated,
    )


def _changes(output: str) -> tuple[list[FileChange], bool]:
    """``--raw`` records (``:modes oids STATUS\\0path\\0``) then ``--numstat`` records
    (``added\\tdeleted\\tpath\\0``), as ``git show -z`` writes them."""
    tokens = output.lstrip("\0\n").split("\0")
    statuses: dict[str, str] = {}
    stats: dict[str, tuple[int | None, int | None]] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        raw = _RAW.fullmatch(token)
        if raw and index + 1 < len(tokens):
            statuses[tokens[index + 1]] = raw.group(1)
            index += 2
            continue
        added, _, rest = token.partition("\t")
        deleted, _, path = rest.partition("\t")
        if path:
            stats[path] = (
                int(added) if added.isdigit() else None,
                int(deleted) if deleted.isdigit() else None,
            )
        index += 1
    files = [
        FileChange(path, status, *stats.get(path, (None, None)))
        for path, status in statuses.items()
    ]
    return files[:MAX_CHANGED_FILES], len(files) > MAX_CHANGED_FILES


def readme(repo: Path, ref: str, subpath: str = "") -> Blob | None:
    """The folder's README (README.md, README, readme.md, ...), if it has one."""
    listing = tree(repo, ref, subpath)
    by_name = {e.name.lower(): e for e in listing.entries if e.type == "blob"}
    for name in README_NAMES:
        if name in by_name:
            return blob(repo, listing.commit, by_name[name].path)
    return None
