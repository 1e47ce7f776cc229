"""Scaffolder actions: what a template step does, each declaring its input schema.

An action is an id (``fetch:template``), a JSON Schema for its input and a function that
works in the task's :class:`Workspace`. Plugins add actions through the
``pavedroad_scaffolder_actions`` hook, the built-in ones below included. Template
ingestion checks every step against its action's schema (:meth:`ActionRegistry.validate_step`),
so an unknown action or a bad input fails when the template is registered, not when it runs.

This module renders nothing itself: the runner injects ``render_text``/``render_path``
(the ``${{ }}`` sandbox), so actions and the expression language stay apart.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import re
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from pavedroad.core.paths import PathEscapeError, contained_path
from pavedroad.scaffolder.platform import TaskPlatform
from pavedroad.scaffolder.workspace import (
    ActionError,
    UnsafePathError,
    Workspace,
    glob_relative,
    safe_relative,
)

hookimpl = pluggy.HookimplMarker("pavedroad")

Render = Callable[[str, Mapping[str, Any]], str]
"""``render(text, values) -> str``: renders ``${{ values.x }}`` expressions in ``text``."""

MAX_WAIT_SECONDS = 600.0
_BINARY_SNIFF_BYTES = 8192
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class UnknownActionError(ActionError):
    title = "Unknown template action"
    type_slug = "unknown-action"


class ActionCancelled(Exception):
    """The task was cancelled while the action ran; the runner marks the task cancelled."""


def _never_cancelled() -> bool:
    return False


@dataclass
class ActionContext:
    """What an action gets: its rendered input, the workspace and the runner's callables."""

    input: dict[str, Any]
    workspace: Workspace
    log: Callable[[str], None]
    render_text: Render
    render_path: Render
    template_dir: Path
    dry_run: bool = False
    cancelled: Callable[[], bool] = field(default=_never_cancelled)
    render_cookiecutter: Render | None = None
    """Renders ``{{ cookiecutter.x }}`` for ``fetch:template``'s ``cookiecutterCompat``;
    None until the runner offers it (the option is then refused with a clear message)."""
    platform: TaskPlatform | None = None
    """The platform's services for actions that publish or register (``publish:git``,
    ``catalog:*``); None where a template is only rendered."""

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise ActionCancelled("the task was cancelled")


@dataclass(frozen=True)
class Action:
    """One scaffolder action; ``handler(ctx)`` returns the step's outputs."""

    id: str
    description: str
    input_schema: dict[str, Any]
    handler: Callable[[ActionContext], dict[str, Any]]
    output_schema: dict[str, Any] | None = None
    supports_dry_run: bool = True

    def run(self, ctx: ActionContext) -> dict[str, Any]:
        """Check the rendered input against the schema, then do the work."""
        errors = input_errors(
            self.id, Draft7Validator(self.input_schema), ctx.input, allow_expressions=False
        )
        if errors:
            raise ActionError("; ".join(errors), errors=errors)
        return self.handler(ctx)


class ActionRegistry:
    """The actions a runner knows, by id, with their input validators."""

    def __init__(self, actions: Iterable[Action]) -> None:
        self._actions: dict[str, Action] = {}
        self._validators: dict[str, Draft7Validator] = {}
        for action in actions:
            if action.id in self._actions:
                raise ValueError(f"two plugins register the scaffolder action {action.id!r}")
            Draft7Validator.check_schema(action.input_schema)
            self._actions[action.id] = action
            self._validators[action.id] = Draft7Validator(action.input_schema)

    @classmethod
    def from_plugins(cls, manager: pluggy.PluginManager) -> ActionRegistry:
        """Every action the registered plugins offer through ``pavedroad_scaffolder_actions``."""
        return cls(itertools.chain.from_iterable(manager.hook.pavedroad_scaffolder_actions()))

    def ids(self) -> list[str]:
        return sorted(self._actions)

    def __iter__(self) -> Any:
        return iter(self._actions[action_id] for action_id in self.ids())

    def get(self, action_id: str) -> Action:
        try:
            return self._actions[action_id]
        except KeyError:
            raise UnknownActionError(self._unknown_message(action_id)) from None

    def validate_step(self, action_id: str, step_input: Any) -> list[str]:
        """Problems with a step's input as written in the template (before rendering).

        A string containing ``${{`` is accepted for any field, since only rendering tells
        what it becomes; everything else must already fit the action's schema.
        """
        return self._errors(action_id, step_input, allow_expressions=True)

    def validate_input(self, action_id: str, rendered_input: Any) -> list[str]:
        """Problems with a step's rendered input, just before the action runs."""
        return self._errors(action_id, rendered_input, allow_expressions=False)

    def _errors(self, action_id: str, step_input: Any, *, allow_expressions: bool) -> list[str]:
        if action_id not in self._actions:
            return [self._unknown_message(action_id)]
        validator = self._validators[action_id]
        return input_errors(action_id, validator, step_input, allow_expressions=allow_expressions)

    def _unknown_message(self, action_id: str) -> str:
        known = ", ".join(self.ids()) or "none"
        return f"unknown action {action_id!r}; known actions: {known}"


def input_errors(
    action_id: str, validator: Draft7Validator, step_input: Any, *, allow_expressions: bool
) -> list[str]:
    """Readable schema problems with one step's input, in a stable order."""
    if step_input is None:
        step_input = {}
    if allow_expressions and _is_expression(step_input):
        return []
    errors = [
        error
        for error in validator.iter_errors(step_input)
        if not (allow_expressions and _is_expression(error.instance))
    ]
    errors.sort(key=lambda e: ([str(p) for p in e.absolute_path], e.message))
    return [f"{action_id}: {_describe(error)}" for error in errors]


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and "${{" in value


_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _describe(error: ValidationError) -> str:
    where = "input" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
    )
    if error.validator == "required":
        match = re.match(r"'(.+)' is a required property", error.message)
        name = match.group(1) if match else error.message
        return f"{where} is missing the required property {name!r}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = ", ".join(repr(key) for key in sorted(set(error.instance) - allowed))
        known = ", ".join(sorted(allowed)) or "none"
        return f"{where} has unknown properties {unknown} (allowed: {known})"
    if error.validator == "enum":
        choices = ", ".join(repr(value) for value in error.validator_value)
        return f"{where} must be one of {choices}, not {error.instance!r}"
    if error.validator in ("type", "anyOf", "oneOf"):
        got = _JSON_TYPES.get(type(error.instance), type(error.instance).__name__)
        expected = _expected_types(error.schema)
        return f"{where} must be {expected}, not {got} {error.instance!r}"
    return f"{where}: {error.message}"


def _expected_types(schema: Mapping[str, Any]) -> str:
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    names: list[str] = []
    for option in options:
        if "enum" in option:
            names.append("one of " + ", ".join(repr(value) for value in option["enum"]))
            continue
        kind = option.get("type", "valid")
        for name in kind if isinstance(kind, list) else [kind]:
            names.append(f"{'an' if name[0] in 'aeiou' else 'a'} {name}")
    return " or ".join(names)


# --- shared helpers -----------------------------------------------------------------


def _template_source(ctx: ActionContext, url: Any, *, folder: bool) -> Path:
    """The file or folder ``url`` names inside the template's own location."""
    if isinstance(url, str) and _URL_SCHEME.match(url):
        raise ActionError(
            f"fetching from {url!r} is not supported yet; give a path relative to the "
            "template's location"
        )
    relative = safe_relative(url, "url")
    try:
        source = contained_path(ctx.template_dir, relative.as_posix())
    except PathEscapeError:
        raise UnsafePathError(f"url {url!r} leads outside the template's location") from None
    kind = "folder" if folder else "file"
    if os.path.islink(ctx.template_dir / relative):
        raise UnsafePathError(f"url {url!r} is a symbolic link; templates may not contain links")
    if not (source.is_dir() if folder else source.is_file()):
        raise ActionError(f"url {url!r} is not a {kind} in the template")
    return source


def _skeleton(source: Path) -> list[tuple[str, bool]]:
    """Every entry under ``source`` as ``(relative path, is folder)``, parents first.

    Refused whole, before anything is written, if it holds a symbolic link (wherever it
    points) or anything that is not a file or a folder.
    """
    entries: list[tuple[str, bool]] = []
    for folder, dirs, files in os.walk(source):
        for name in [*dirs, *files]:
            full = Path(folder, name)
            relative = full.relative_to(source).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise UnsafePathError(
                    f"the template's {relative} is a symbolic link; templates may not contain "
                    "links (copy the file instead)"
                )
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise ActionError(f"the template's {relative} is not a regular file or folder")
            entries.append((relative, stat.S_ISDIR(mode)))
    return sorted(entries)


def _file_mode(source: Path) -> int:
    """Executable files stay executable; nothing else of the source's mode is kept."""
    return 0o755 if os.lstat(source).st_mode & 0o111 else 0o644


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:_BINARY_SNIFF_BYTES]


def _joined(target: str, name: str) -> str:
    return posixpath.join(target, name)


# --- fetch:template -----------------------------------------------------------------

_FETCH_TEMPLATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "description": "Folder of the skeleton, relative to the template's location.",
        },
        "targetPath": {
            "type": "string",
            "description": "Where in the workspace the files go (default ./).",
        },
        "values": {"type": "object", "description": "What ${{ values.x }} refers to."},
        "copyWithoutTemplating": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Globs of skeleton paths copied as they are (names and contents).",
        },
        "templateFileExtension": {
            "type": ["boolean", "string"],
            "description": "Template only files with this extension (true means .njk), "
            "dropping it from the name.",
        },
        "cookiecutterCompat": {
            "type": "boolean",
            "description": "Read {{ cookiecutter.x }} instead of ${{ values.x }}.",
        },
        "replace": {
            "type": "boolean",
            "description": "Overwrite files already in the workspace (otherwise kept).",
        },
    },
}


@dataclass(frozen=True)
class _Rendering:
    text: Render
    path: Render
    values: Mapping[str, Any]
    extension: str | None
    verbatim: frozenset[str]

    def output_name(self, location: str) -> tuple[str, bool]:
        """The rendered name of a skeleton entry, and whether its contents are templated."""
        if self.extension is not None:
            templated = location.endswith(self.extension)
            if templated:
                location = location[: -len(self.extension)]
            return self.path(location, self.values), templated
        if location in self.verbatim:
            return location, False
        return self.path(location, self.values), True


def _template_extension(option: Any) -> str | None:
    if option is True:
        return ".njk"
    if option in (False, None, ""):
        return None
    if not isinstance(option, str) or not option.startswith(".") or "/" in option:
        raise ActionError(f"templateFileExtension must be true or like '.njk', not {option!r}")
    return option


def _rendering(ctx: ActionContext, source: Path) -> _Rendering:
    given = ctx.input
    extension = _template_extension(given.get("templateFileExtension"))
    patterns = given.get("copyWithoutTemplating") or []
    if extension is not None and patterns:
        raise ActionError("templateFileExtension and copyWithoutTemplating cannot be used together")
    text, path = ctx.render_text, ctx.render_path
    if given.get("cookiecutterCompat"):
        if ctx.render_cookiecutter is None:
            raise ActionError("cookiecutterCompat is not supported yet; use ${{ values.x }}")
        text = path = ctx.render_cookiecutter
    verbatim = frozenset(itertools.chain.from_iterable(glob_relative(source, p) for p in patterns))
    return _Rendering(text, path, given.get("values") or {}, extension, verbatim)


def fetch_template(ctx: ActionContext) -> dict[str, Any]:
    source = _template_source(ctx, ctx.input.get("url"), folder=True)
    target = ctx.input.get("targetPath") or "./"
    workspace = ctx.workspace
    workspace.path(target)
    entries = _skeleton(source)
    rendering = _rendering(ctx, source)
    written = kept = 0
    for location, is_folder in entries:
        ctx.check_cancelled()
        name, templated = rendering.output_name(location)
        output = _joined(target, name)
        if is_folder:
            workspace.mkdir(output)
            continue
        if workspace.exists(output) and not ctx.input.get("replace"):
            ctx.log(f"kept {output}: it already exists (set replace: true to overwrite)")
            kept += 1
            continue
        data = workspace.load_source(source / location, f"template file {location}")
        if templated and not _is_binary(data):
            data = _rendered_contents(rendering, data)
        workspace.write_bytes(output, data, overwrite=True, mode=_file_mode(source / location))
        written += 1
    ctx.log(
        f"fetch:template wrote {written} file(s) to {target}" + (f", kept {kept}" if kept else "")
    )
    return {}


def _rendered_contents(rendering: _Rendering, data: bytes) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data  # not text: copied as it is, like a binary file
    return rendering.text(text, rendering.values).encode("utf-8")


# --- fetch:plain, fetch:plain:file --------------------------------------------------------

_FETCH_PLAIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "description": "Folder relative to the template's location."},
        "targetPath": {"type": "string", "description": "Where the files go (default ./)."},
    },
}

_FETCH_PLAIN_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url", "targetPath"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "description": "File relative to the template's location."},
        "targetPath": {"type": "string", "description": "The file's path in the workspace."},
    },
}


def fetch_plain(ctx: ActionContext) -> dict[str, Any]:
    source = _template_source(ctx, ctx.input.get("url"), folder=True)
    target = ctx.input.get("targetPath") or "./"
    ctx.workspace.path(target)
    copied = 0
    for location, is_folder in _skeleton(source):
        ctx.check_cancelled()
        output = _joined(target, location)
        if is_folder:
            ctx.workspace.mkdir(output)
            continue
        data = ctx.workspace.load_source(source / location, f"template file {location}")
        ctx.workspace.write_bytes(output, data, overwrite=True, mode=_file_mode(source / location))
        copied += 1
    ctx.log(f"fetch:plain copied {copied} file(s) to {target}")
    return {}


def fetch_plain_file(ctx: ActionContext) -> dict[str, Any]:
    url = ctx.input.get("url")
    source = _template_source(ctx, url, folder=False)
    target = ctx.input["targetPath"]
    data = ctx.workspace.load_source(source, f"template file {url}")
    ctx.workspace.write_bytes(target, data, overwrite=True, mode=_file_mode(source))
    ctx.log(f"fetch:plain:file copied {url} to {target}")
    return {}


# --- fs:rename, fs:delete -------------------------------------------------------------------

_FS_RENAME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["files"],
    "additionalProperties": False,
    "properties": {
        "files": {
            "type": "array",
            "description": "Moves to make, in order.",
            "items": {
                "type": "object",
                "required": ["from", "to"],
                "additionalProperties": False,
                "properties": {
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "overwrite": {"type": "boolean", "description": "Replace what is at `to`."},
                },
            },
        }
    },
}

_FS_DELETE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["files"],
    "additionalProperties": False,
    "properties": {
        "files": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Globs of files and folders to delete (** spans folders).",
        }
    },
}


def fs_rename(ctx: ActionContext) -> dict[str, Any]:
    for move in ctx.input["files"]:
        ctx.check_cancelled()
        ctx.workspace.rename(move["from"], move["to"], overwrite=bool(move.get("overwrite")))
        ctx.log(f"renamed {move['from']} to {move['to']}")
    return {}


def fs_delete(ctx: ActionContext) -> dict[str, Any]:
    for pattern in ctx.input["files"]:
        ctx.check_cancelled()
        matches = ctx.workspace.glob(pattern)
        for match in matches:
            ctx.workspace.delete(match)
        ctx.log(f"deleted {len(matches)} path(s) matching {pattern}")
    return {}


# --- debug:log, debug:wait --------------------------------------------------------------

_DEBUG_LOG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "message": {"type": "string", "description": "A line for the task log."},
        "listWorkspace": {
            "description": "Log the workspace's files (with-contents: and their text).",
            "anyOf": [
                {"type": "boolean"},
                {"type": "string", "enum": ["with-filenames", "with-contents"]},
            ],
        },
    },
}

_DEBUG_WAIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "seconds": {"type": "number", "minimum": 0},
        "minutes": {"type": "number", "minimum": 0},
    },
}


def debug_log(ctx: ActionContext) -> dict[str, Any]:
    if ctx.input.get("message"):
        ctx.log(str(ctx.input["message"]))
    listing = ctx.input.get("listWorkspace")
    if listing:
        for name, size in ctx.workspace.tree():
            ctx.log(f"{name} ({size} bytes)")
            if listing == "with-contents":
                data = ctx.workspace.read(name)
                if not _is_binary(data):
                    ctx.log(data.decode("utf-8", errors="replace"))
    return {}


def debug_wait(ctx: ActionContext) -> dict[str, Any]:
    seconds = float(ctx.input.get("minutes") or 0) * 60 + float(ctx.input.get("seconds") or 0)
    if seconds > MAX_WAIT_SECONDS:
        raise ActionError(f"debug:wait waits at most {MAX_WAIT_SECONDS / 60:g} minutes")
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        ctx.check_cancelled()
        time.sleep(min(0.1, remaining))
    ctx.check_cancelled()
    ctx.log(f"waited {seconds:g} s")
    return {}


BUILTIN_ACTIONS: list[Action] = [
    Action(
        id="fetch:template",
        description="Copy a skeleton folder into the workspace, rendering ${{ values.x }} "
        "in file contents and names.",
        input_schema=_FETCH_TEMPLATE_SCHEMA,
        handler=fetch_template,
    ),
    Action(
        id="fetch:plain",
        description="Copy a folder of the template into the workspace as it is.",
        input_schema=_FETCH_PLAIN_SCHEMA,
        handler=fetch_plain,
    ),
    Action(
        id="fetch:plain:file",
        description="Copy one file of the template into the workspace as it is.",
        input_schema=_FETCH_PLAIN_FILE_SCHEMA,
        handler=fetch_plain_file,
    ),
    Action(
        id="fs:rename",
        description="Rename or move files and folders in the workspace.",
        input_schema=_FS_RENAME_SCHEMA,
        handler=fs_rename,
    ),
    Action(
        id="fs:delete",
        description="Delete files and folders in the workspace matching globs.",
        input_schema=_FS_DELETE_SCHEMA,
        handler=fs_delete,
    ),
    Action(
        id="debug:log",
        description="Write a message, and optionally the workspace's files, to the task log.",
        input_schema=_DEBUG_LOG_SCHEMA,
        handler=debug_log,
    ),
    Action(
        id="debug:wait",
        description="Wait a while (at most 10 minutes); stops early when the task is cancelled.",
        input_schema=_DEBUG_WAIT_SCHEMA,
        handler=debug_wait,
    ),
]


@hookimpl
def pavedroad_scaffolder_actions() -> list[Action]:
    return list(BUILTIN_ACTIONS)
