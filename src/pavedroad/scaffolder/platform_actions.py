"""Scaffolder actions that change the platform: ``publish:git``, ``catalog:register``,
``catalog:write`` and ``catalog:fetch``.

They act for the person who started the task (``ctx.platform.actor``): every change is
checked against the same policy as the API, and recorded in the audit log with the
task's id. Without ``ctx.platform`` (a template only being rendered) the ones that need
the platform refuse with a clear message. In a dry run nothing is created or registered:
the actions check what they can and return the outputs the real run would give.
"""

from __future__ import annotations

import copy
import os
import posixpath
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pluggy

from pavedroad.catalog.refs import EntityRef, parse_ref
from pavedroad.catalog.validation import is_valid_object_name
from pavedroad.core import audit, safeyaml
from pavedroad.core.errors import ConflictError, ForbiddenError, NotFoundError, ProblemError
from pavedroad.core.timeutil import utcnow
from pavedroad.git.catalog_reader import hosted_file_path
from pavedroad.git.models import RepoRow
from pavedroad.git.service import ZERO_SHA
from pavedroad.identity.policy import decide
from pavedroad.scaffolder.actions import Action, ActionCancelled, ActionContext
from pavedroad.scaffolder.expressions import TemplateError, parse_repo_url
from pavedroad.scaffolder.platform import TaskPlatform, TemplateOrigin
from pavedroad.scaffolder.provenance import (
    CATALOG_INFO_PATH,
    PROVENANCE_PATH,
    SOURCE_TEMPLATE_ANNOTATION,
    dump_yaml,
    provenance_text,
    with_source_template,
)
from pavedroad.scaffolder.workspace import ActionError, Workspace

hookimpl = pluggy.HookimplMarker("pavedroad")

HOSTED_HOST = "pavedroad"
"""The host a RepoUrlPicker value names for Pavedroad's own repositories (the server's
own ``host[:port]`` works too)."""
GIT_TIMEOUT_SECONDS = 120
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BRANCH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$"  # as the git API's NewRepo
_IDENTITY_PATTERN = r"^[^<>\x00-\x1f\x7f]*$"  # what git accepts in a name or an email


def _platform(ctx: ActionContext, action_id: str) -> TaskPlatform:
    if ctx.platform is None:
        raise ActionError(
            f"{action_id} needs a task: it acts on the platform for the person who started "
            "it, and this template is only being rendered"
        )
    return ctx.platform


def _require(platform: TaskPlatform, permission: str, entity: str | None = None) -> None:
    """Refuse (403, with the policy's reason) unless the task's actor may do this."""
    with platform.catalog.reader() as reader:
        decision = decide(reader, platform.actor, permission, entity)
    if not decision.allowed:
        raise ForbiddenError(decision.reason, permission=permission, owners=decision.owners)


@contextmanager
def _audited(
    platform: TaskPlatform, action: str, target: str, *, enabled: bool
) -> Iterator[audit.AuditEvent]:
    """Record what the block did (or was refused) in the audit log, as the API does
    for a request; the block may adjust the event. Nothing is recorded when disabled
    (a dry run changes nothing)."""
    event = audit.AuditEvent(
        actor=platform.actor.name[:400],
        action=action,
        target=target[:2000],
        outcome="success",
        status=201,
        request_id=f"task:{platform.task_id}"[:64],
    )
    try:
        yield event
    except ActionCancelled:
        enabled = False  # stopped before it changed anything: nothing to record
        raise
    except ProblemError as error:
        event.outcome, event.status = audit.outcome_of(error.status), error.status
        raise
    except BaseException:
        event.outcome, event.status = "failure", 500
        raise
    finally:
        if enabled:
            audit.record(platform.db, event)


# --- publish:git -------------------------------------------------------------------------

_PUBLISH_GIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["repoUrl"],
    "additionalProperties": False,
    "properties": {
        "repoUrl": {
            "type": "string",
            "description": "The repository to create, as RepoUrlPicker writes it: "
            "pavedroad?owner=<group or user>&repo=<name>.",
        },
        "description": {
            "type": "string",
            "maxLength": 2000,
            "description": "The repository's description.",
        },
        "defaultBranch": {
            "type": "string",
            "pattern": _BRANCH_PATTERN,
            "description": "The branch the files are pushed to (default main).",
        },
        "sourcePath": {
            "type": "string",
            "description": "The workspace folder to publish (default the whole workspace).",
        },
        "gitCommitMessage": {
            "type": "string",
            "minLength": 1,
            "description": "The first commit's message (default 'Initial commit').",
        },
        "gitAuthorName": {
            "type": "string",
            "minLength": 1,
            "pattern": _IDENTITY_PATTERN,
            "description": "The commit's author (default the person who started the task).",
        },
        "gitAuthorEmail": {
            "type": "string",
            "minLength": 1,
            "pattern": _IDENTITY_PATTERN,
            "description": "The author's email (default theirs in the catalog).",
        },
    },
}

_PUBLISH_GIT_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "remoteUrl": {"type": "string", "description": "The repository's clone URL."},
        "repoContentsUrl": {
            "type": "string",
            "description": "Where its files are: <public URL>/repos/<owner>/<name>/blob.",
        },
        "commitHash": {
            "type": "string",
            "description": "The commit pushed (forty zeros in a dry run).",
        },
    },
}


@dataclass(frozen=True)
class _RepoTarget:
    owner: str  # as the template gave it: a group or user name (or ref)
    name: str


def publish_git(ctx: ActionContext) -> dict[str, Any]:
    platform = _platform(ctx, "publish:git")
    target = _repo_target(ctx.input["repoUrl"], platform.settings.public_url)
    branch = ctx.input.get("defaultBranch") or "main"
    with _audited(
        platform, "git.repo.create", f"{target.owner}/{target.name}", enabled=not ctx.dry_run
    ) as event:
        _check_branch(branch)
        owner_ref = platform.git.owner_ref(target.owner)
        owner = owner_ref.split("/", 1)[1]
        event.target = f"{owner}/{target.name}"
        if not platform.rendering:  # a template update renders an existing project again
            _require(platform, "git.repo.create", owner_ref)
            _refuse_existing(platform, owner, target.name)
        source = _source_folder(ctx.workspace, ctx.input.get("sourcePath") or ".")
        _write_provenance(ctx.workspace, source, platform.origin)
        if source not in platform.published_paths:
            platform.published_paths.append(source)
        if ctx.dry_run:
            ctx.log(f"publish:git would create {owner}/{target.name} and push {source} to {branch}")
            return _publish_outputs(platform, _would_be(platform, owner, target.name), ZERO_SHA)
        ctx.check_cancelled()
        repo, commit = _create_and_push(ctx, platform, owner, target.name, source, branch)
    return _publish_outputs(platform, repo, commit)


def _create_and_push(
    ctx: ActionContext, platform: TaskPlatform, owner: str, name: str, source: str, branch: str
) -> tuple[dict[str, Any], str]:
    """Create the repository and push the folder into it, or leave no repository."""
    given = ctx.input
    repo = platform.git.create(
        owner, name, platform.actor.name, given.get("description") or "", branch
    )
    ctx.log(f"publish:git created the repository {owner}/{name}")
    try:
        commit = _push_folder(
            ctx.workspace.path(source),
            platform.git.root / owner / f"{name}.git",
            branch,
            given.get("gitCommitMessage") or "Initial commit",
            _author(platform, given),
            pusher=platform.actor.name,
        )
        recorded = platform.git.import_spool()
    except BaseException:
        _delete_quietly(ctx, platform, owner, name)
        raise
    ctx.log(
        f"publish:git pushed {source} to {branch} of {owner}/{name} as {commit[:12]} "
        f"({recorded} push event(s) recorded)"
    )
    return repo, commit


def _repo_target(repo_url: str, public_url: str) -> _RepoTarget:
    try:
        parts = parse_repo_url(repo_url)
    except TemplateError:
        raise ActionError(
            f"repoUrl {repo_url!r} is not of the form pavedroad?owner=<owner>&repo=<name>"
        ) from None
    host = parts["host"]
    if not _is_this_server(host, public_url):
        raise ActionError(
            f"publish:git publishes to Pavedroad's hosted repositories; {host} is not one "
            f"(use {HOSTED_HOST}?owner=<owner>&repo=<name>)"
        )
    if not parts.get("owner"):
        raise ActionError(f"repoUrl {repo_url!r} names no owner (add &owner=<group or user>)")
    name = parts["repo"]
    if not is_valid_object_name(name) or name.endswith(".git"):
        # The rule GitService.create applies, checked here so a dry run refuses it too.
        raise ActionError(
            f"{name[:80]!r} is not a valid repository name: letters, digits and -_. between "
            "them, at most 63 characters, not ending in .git"
        )
    return _RepoTarget(parts["owner"], name)


def _is_this_server(host: str, public_url: str) -> bool:
    """``pavedroad``, or the ``host[:port]`` of the server's public URL (the port may be
    left out when it is the scheme's default)."""
    host = host.lower()
    if host == HOSTED_HOST:
        return True
    public = urlsplit(public_url)
    hostname = (public.hostname or "").lower()
    if ":" in hostname:
        hostname = f"[{hostname}]"  # an IPv6 address, written as in a URL
    default = _DEFAULT_PORTS.get(public.scheme.lower())
    port = public.port or default
    names = {f"{hostname}:{port}"} | ({hostname} if port == default else set())
    return host in names


def _check_branch(branch: str) -> None:
    result = _run_git("check-ref-format", f"refs/heads/{branch}", env=_git_env(), check=False)
    if result.returncode != 0:
        raise ActionError(f"defaultBranch {branch!r} is not a valid branch name")


def _refuse_existing(platform: TaskPlatform, owner: str, name: str) -> None:
    """A repository of that name is never overwritten, whether the platform knows it
    (a row) or only its folder is left."""
    try:
        platform.git.repo(owner, name)
    except NotFoundError:
        if not (platform.git.root / owner / f"{name}.git").exists():
            return
    raise ConflictError(
        f"the repository {owner}/{name} exists already; publish:git never overwrites one "
        "(choose another name, or delete it first)"
    )


def _source_folder(workspace: Workspace, source_path: str) -> str:
    """The workspace folder to publish, as a workspace-relative name ('.' for the root)."""
    folder = workspace.path(source_path)
    if not workspace.is_dir(source_path):
        raise ActionError(f"sourcePath {source_path!r} is not a folder in the workspace")
    return workspace.relative(folder)


def _write_provenance(workspace: Workspace, source: str, origin: TemplateOrigin) -> None:
    """``.pavedroad/template.yaml`` and the catalog-info.yaml annotation, written through
    the workspace so its containment and limits apply (see :mod:`.provenance`)."""
    workspace.write_text(
        posixpath.join(source, PROVENANCE_PATH), provenance_text(origin), overwrite=True
    )
    catalog_info = posixpath.join(source, CATALOG_INFO_PATH)
    target = workspace.path(catalog_info)
    if not target.is_file() or target.is_symlink():
        return
    annotated = with_source_template(workspace.read(catalog_info), origin.template_ref)
    if annotated is not None:
        workspace.write_bytes(catalog_info, annotated, overwrite=True)


def _would_be(platform: TaskPlatform, owner: str, name: str) -> dict[str, Any]:
    """What :meth:`GitService.describe` would say of the repository once made."""
    row = RepoRow(owner=owner, name=name, created_at=utcnow())
    return platform.git.describe(row)


def _publish_outputs(platform: TaskPlatform, repo: dict[str, Any], commit: str) -> dict[str, Any]:
    contents = platform.settings.public_url + hosted_file_path(repo["owner"], repo["name"])
    return {
        "remoteUrl": repo["cloneUrl"],
        "repoContentsUrl": contents.rstrip("/"),
        "commitHash": commit,
    }


@dataclass(frozen=True)
class _Author:
    name: str
    email: str


def _author(platform: TaskPlatform, given: dict[str, Any]) -> _Author:
    """The author the step names, else the task's actor as the catalog knows them."""
    actor = platform.actor
    name, email = actor.name, f"{actor.name}@pavedroad.invalid"
    if actor.user_ref:
        with platform.catalog.reader() as reader:
            user = reader.get_many([actor.user_ref])[0]
        profile = ((user or {}).get("spec") or {}).get("profile") or {}
        if isinstance(profile.get("displayName"), str) and profile["displayName"].strip():
            name = profile["displayName"]
        if isinstance(profile.get("email"), str) and "@" in profile["email"]:
            email = profile["email"]
    return _Author(given.get("gitAuthorName") or name, given.get("gitAuthorEmail") or email)


def _push_folder(
    source: Path, bare: Path, branch: str, message: str, author: _Author, *, pusher: str
) -> str:
    """Commit every file of ``source`` (``.gitignore`` applies) on ``branch`` in a
    scratch repository and push it to the bare repository; returns the commit."""
    env = _git_env(author, pusher)
    with tempfile.TemporaryDirectory(prefix="pavedroad-publish-") as scratch:
        clone = Path(scratch) / "clone"
        _run_git(
            "init", "--quiet", "--template=", f"--initial-branch={branch}", str(clone), env=env
        )
        tree = ("--git-dir", str(clone / ".git"), "--work-tree", str(source))
        _run_git("add", "--all", env=env, tree=tree)
        _run_git(
            "commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m", message, env=env, tree=tree
        )
        commit = _run_git("rev-parse", "HEAD", env=env, tree=tree).stdout.strip()
        _run_git("push", "--quiet", str(bare), f"HEAD:refs/heads/{branch}", env=env, tree=tree)
    return commit


def _git_env(author: _Author | None = None, pusher: str | None = None) -> dict[str, str]:
    """The process environment without any GIT_* variable of ours, and with no system
    or global git configuration: only what we set here shapes the commit and push."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env |= {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
    }
    if author is not None:
        env |= {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
    if pusher is not None:
        env["REMOTE_USER"] = pusher  # the post-receive hook records it, as over HTTP
    return env


def _run_git(
    command: str,
    *args: str,
    env: dict[str, str],
    tree: Sequence[str] = (),
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``git <tree options> <command> <args>``; a failure or a timeout is an ActionError
    carrying git's own message."""
    try:
        result = subprocess.run(
            ["git", *tree, command, *args],
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ActionError(f"git {command} took longer than {GIT_TIMEOUT_SECONDS} s") from None
    if check and result.returncode != 0:
        raise ActionError(f"git {command} failed: {result.stderr.strip()}")
    return result


def _delete_quietly(ctx: ActionContext, platform: TaskPlatform, owner: str, name: str) -> None:
    """Undo a repository that could not be filled; its own failure is only logged, so
    the error that caused it is the one raised."""
    try:
        platform.git.delete(owner, name)
    except Exception as error:  # the first error is the one to report
        ctx.log(f"publish:git could not delete {owner}/{name} again: {error}")
        return
    ctx.log(f"publish:git deleted {owner}/{name} again: the push did not complete")


# --- catalog:register ---------------------------------------------------------------------

_CATALOG_REGISTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "catalogInfoUrl": {
            "type": "string",
            "description": "The URL of the catalog-info.yaml to register "
            "(or give repoContentsUrl and catalogInfoPath).",
        },
        "repoContentsUrl": {
            "type": "string",
            "description": "Where the repository's files are (publish:git's repoContentsUrl).",
        },
        "catalogInfoPath": {
            "type": "string",
            "description": "The file under repoContentsUrl (default /catalog-info.yaml).",
        },
        "optional": {
            "type": "boolean",
            "description": "A missing file (or a location registered already) is not an error.",
        },
    },
    # Either catalogInfoUrl, or else repoContentsUrl (with an optional catalogInfoPath).
    "if": {"required": ["catalogInfoUrl"]},
    "then": {},
    "else": {"required": ["repoContentsUrl"]},
}

_CATALOG_REGISTER_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "entityRef": {
            "type": "string",
            "description": "The Component registered (or else the first entity).",
        },
        "catalogInfoUrl": {"type": "string", "description": "The URL registered."},
    },
}


def catalog_register(ctx: ActionContext) -> dict[str, Any]:
    platform = _platform(ctx, "catalog:register")
    url, path_in_repo = _catalog_info_url(ctx.input)
    optional = bool(ctx.input.get("optional"))
    with _audited(
        platform, "catalog.location.create", f"url:{url}", enabled=not ctx.dry_run
    ) as event:
        _require(platform, "catalog.location.create")
        platform.catalog.ingester.normalise_target("url", url)  # refused now, dry run or not
        if ctx.dry_run:
            entities = _workspace_entities(ctx, platform, path_in_repo)
            ctx.log(f"catalog:register would register {url}")
            return _register_outputs(url, entities)
        try:
            location, entities = platform.catalog.register_location(
                "url", url, created_by=platform.actor.name
            )
        except (NotFoundError, ConflictError) as error:
            if not optional:
                raise
            event.outcome, event.status = "failure", error.status
            ctx.log(f"catalog:register: {error.detail} (optional: going on)")
            return _register_outputs(url, _registered_already(platform, error))
        if not _described(entities):
            _unregister_empty(platform, location.id)
    ctx.log(f"catalog:register registered {url} ({len(entities)} entities)")
    return _register_outputs(url, entities)


def _catalog_info_url(given: dict[str, Any]) -> tuple[str, str | None]:
    """The URL to register, and the file's path in the repository when it shows."""
    if given.get("catalogInfoUrl"):
        if "repoContentsUrl" in given or "catalogInfoPath" in given:
            raise ActionError(
                "catalog:register takes catalogInfoUrl, or repoContentsUrl and "
                "catalogInfoPath, not both"
            )
        url = given["catalogInfoUrl"]
        path = urlsplit(url).path
        return url, unquote(path.split("/blob/", 1)[1]) if "/blob/" in path else None
    contents = given.get("repoContentsUrl")
    if not contents:
        raise ActionError("catalog:register needs catalogInfoUrl or repoContentsUrl")
    path = (given.get("catalogInfoPath") or "/catalog-info.yaml").lstrip("/")
    return f"{contents.rstrip('/')}/{path}", path


def _described(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entities a file describes, without the Location entities made for it."""
    return [entity for entity in entities if entity.get("kind") != "Location"]


def _unregister_empty(platform: TaskPlatform, location_id: str) -> None:
    """A file that gave no entity is not left registered: nothing half-made."""
    with platform.catalog.reader() as reader:
        errors = reader.location_status(location_id)["errors"]
    platform.catalog.unregister_location(location_id)
    messages = "; ".join(str(e.get("message", e)) for e in errors) or "it describes no entity"
    raise ActionError(f"catalog:register: the file gave no entity: {messages}", errors=errors)


def _registered_already(platform: TaskPlatform, error: ProblemError) -> list[dict[str, Any]]:
    location_id = error.extensions.get("locationId")
    if not isinstance(error, ConflictError) or not location_id:
        return []
    with platform.catalog.reader() as reader:
        refs = reader.entity_refs_of_location(str(location_id))
        return [entity for entity in reader.get_many(refs) if entity is not None]


def _workspace_entities(
    ctx: ActionContext, platform: TaskPlatform, path_in_repo: str | None
) -> list[dict[str, Any]]:
    """In a dry run, the entities of the file as it is in the workspace folder
    ``publish:git`` published (the last one), when it is there."""
    if path_in_repo is None:
        return []
    folder = platform.published_paths[-1] if platform.published_paths else "."
    name = posixpath.join(folder, path_in_repo)
    try:
        if not ctx.workspace.is_dir(folder) or not ctx.workspace.path(name).is_file():
            ctx.log(f"catalog:register: {name} is not in the workspace; no entityRef")
            return []
        documents = safeyaml.load_documents(ctx.workspace.read(name), name)
    except ProblemError as error:
        ctx.log(f"catalog:register: cannot read {name} from the workspace: {error.detail}")
        return []
    return [d.data for d in documents if d.error is None and isinstance(d.data, dict)]


def _register_outputs(url: str, entities: list[dict[str, Any]]) -> dict[str, Any]:
    outputs: dict[str, Any] = {"catalogInfoUrl": url}
    refs = [(entity.get("kind"), _ref_of(entity)) for entity in entities]
    named = [(kind, ref) for kind, ref in refs if ref is not None]
    chosen = (
        next((ref for kind, ref in named if kind == "Component"), None)
        or next((ref for kind, ref in named if kind != "Location"), None)
        or next((ref for _kind, ref in named), None)
    )
    if chosen is not None:
        outputs["entityRef"] = chosen
    return outputs


def _ref_of(entity: dict[str, Any]) -> str | None:
    ref = EntityRef.of(entity)
    return ref.key if ref.kind and ref.name else None


# --- catalog:write ------------------------------------------------------------------------

_CATALOG_WRITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["entity"],
    "additionalProperties": False,
    "properties": {
        "filePath": {
            "type": "string",
            "description": "Where in the workspace to write it (default catalog-info.yaml).",
        },
        "entity": {
            "type": "object",
            "description": "The entity to write; it gets the backstage.io/source-template "
            "annotation.",
        },
    },
}


def catalog_write(ctx: ActionContext) -> dict[str, Any]:
    entity = copy.deepcopy(ctx.input["entity"])
    if ctx.platform is not None:
        metadata = entity.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise ActionError("catalog:write: entity.metadata must be an object")
        annotations = metadata.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ActionError("catalog:write: entity.metadata.annotations must be an object")
        metadata["annotations"] = annotations | {
            SOURCE_TEMPLATE_ANNOTATION: ctx.platform.origin.template_ref
        }
    file_path = ctx.input.get("filePath") or CATALOG_INFO_PATH
    ctx.workspace.write_text(file_path, dump_yaml(entity), overwrite=True)
    ctx.log(f"catalog:write wrote {file_path}")
    return {}


# --- catalog:fetch ------------------------------------------------------------------------

_CATALOG_FETCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "entityRef": {"type": "string", "description": "The entity to fetch."},
        "entityRefs": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 1000,
            "description": "Several entities to fetch, in this order.",
        },
        "optional": {
            "type": "boolean",
            "description": "A missing entity is null rather than an error.",
        },
        "defaultKind": {
            "type": "string",
            "description": "The kind of refs that name none (e.g. component).",
        },
        "defaultNamespace": {
            "type": "string",
            "description": "The namespace of refs that name none (default 'default').",
        },
    },
    # entityRef, entityRefs or both.
    "if": {"required": ["entityRef"]},
    "then": {},
    "else": {"required": ["entityRefs"]},
}

_CATALOG_FETCH_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "entity": {"type": ["object", "null"], "description": "The entity, with relations."},
        "entities": {
            "type": "array",
            "items": {"type": ["object", "null"]},
            "description": "The entities, in the order asked.",
        },
    },
}


def catalog_fetch(ctx: ActionContext) -> dict[str, Any]:
    platform = _platform(ctx, "catalog:fetch")
    given = ctx.input
    wanted = [given["entityRef"]] if "entityRef" in given else []
    wanted += list(given.get("entityRefs") or [])
    keys = [_fetch_key(ref, given) for ref in wanted]
    for key in dict.fromkeys(keys):
        _require(platform, "catalog.entity.read", key)
    with platform.catalog.reader() as reader:
        found = dict(zip(keys, reader.get_many(keys), strict=True))
    missing = [key for key in dict.fromkeys(keys) if found[key] is None]
    if missing and not given.get("optional"):
        raise ActionError(f"catalog:fetch: no entity {', '.join(missing)} in the catalog")
    outputs: dict[str, Any] = {}
    if "entityRef" in given:
        outputs["entity"] = found[keys[0]]
    if "entityRefs" in given:
        outputs["entities"] = [found[key] for key in keys[1 if "entityRef" in given else 0 :]]
    ctx.log(f"catalog:fetch found {len(keys) - len(missing)} of {len(keys)} entities")
    return outputs


def _fetch_key(ref: Any, given: dict[str, Any]) -> str:
    try:
        return parse_ref(
            ref,
            default_kind=given.get("defaultKind") or None,
            default_namespace=given.get("defaultNamespace") or "default",
        ).key
    except ProblemError as error:
        raise ActionError(f"catalog:fetch: {error.detail}") from None


PLATFORM_ACTIONS: list[Action] = [
    Action(
        id="publish:git",
        description="Create a hosted repository and push a workspace folder to it, with "
        ".pavedroad/template.yaml recording the template and its answers.",
        input_schema=_PUBLISH_GIT_SCHEMA,
        output_schema=_PUBLISH_GIT_OUTPUT,
        handler=publish_git,
    ),
    Action(
        id="catalog:register",
        description="Register a catalog-info.yaml (a url location) in the catalog.",
        input_schema=_CATALOG_REGISTER_SCHEMA,
        output_schema=_CATALOG_REGISTER_OUTPUT,
        handler=catalog_register,
    ),
    Action(
        id="catalog:write",
        description="Write an entity as a catalog-info.yaml into the workspace.",
        input_schema=_CATALOG_WRITE_SCHEMA,
        output_schema={"type": "object"},
        handler=catalog_write,
    ),
    Action(
        id="catalog:fetch",
        description="Read one or several entities from the catalog.",
        input_schema=_CATALOG_FETCH_SCHEMA,
        output_schema=_CATALOG_FETCH_OUTPUT,
        handler=catalog_fetch,
    ),
]


@hookimpl
def pavedroad_scaffolder_actions() -> list[Action]:
    return list(PLATFORM_ACTIONS)
