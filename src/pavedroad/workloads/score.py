"""Score workload files (``score.dev/v1b1``) read into frozen dataclasses, with every
problem reported at its line.

A ``score.yaml`` says how a service runs, independently of where: its containers
(``image: .`` is the service's own code, from its release), the ports it serves and the
resources it needs (``type: volume``, ``type: postgres``). :func:`parse_workload` reads
one through the platform's safe YAML loader (size cap 256 KiB), checks it against
Pavedroad's JSON Schema for Score (:data:`SCORE_SCHEMA`, written from the specification)
and then against what a schema cannot say:

- a file has exactly one of ``content``, ``source`` or ``binaryContent``; a file or
  volume ``target`` and a file ``source`` stay inside their root (no ``..``, and a
  source is a path inside the release, never an absolute one);
- a probe has exactly one of ``httpGet`` or ``exec``;
- every placeholder is well formed and names metadata that exists and a resource the
  workload declares; resources whose params use other resources' outputs form no cycle.

``files`` and ``volumes`` are read in both of Score's forms: a mapping keyed by target
(the current one) and a list of items with a ``target``. Where Score asks for strings,
a few unambiguous YAML numbers are taken too: ``mode: 0644`` (YAML reads it as the
number 644, meant as octal), ``cpu: 0.5`` and ``memory: 1048576``.

The result is a :class:`Workload`; :mod:`pavedroad.workloads.placeholders` turns it and
its resources' outputs into what a runtime starts.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from pavedroad.core.messages import describe, did_you_mean
from pavedroad.core.safeyaml import YamlError, YamlLimits, load_document
from pavedroad.workloads.problems import At, Problem, WorkloadError, format_path
from pavedroad.workloads.template import PlaceholderSyntaxError, Reference, references

SCORE_API_VERSION = "score.dev/v1b1"
MAX_SCORE_BYTES = 256 * 1024
OWN_IMAGE = "."  # the service's own code, from its release
DEFAULT_FILE_MODE = 0o644


# -- the schema ---------------------------------------------------------------------------

_LABEL = "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"
_LABEL_RULE = (
    "must be 2 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
)
_TYPE_NAME = "^[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]$"
_TYPE_RULE = "must be 2 to 63 letters, digits and '-', starting and ending with a letter or digit"
_ANNOTATION_KEY = (
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
)
_ANNOTATIONS = {
    "title": "annotations",
    "type": "object",
    "propertyNames": {
        "maxLength": 316,
        "pattern": _ANNOTATION_KEY,
        "errorMessage": "is not a valid annotation key: an optional DNS prefix and '/', then "
        "up to 63 letters, digits, '.', '_' and '-' (example.com/team)",
    },
    "additionalProperties": {"type": "string"},
}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_PORT_NUMBER = {
    "type": "integer",
    "minimum": 1,
    "maximum": 65535,
    "errorMessage": "must be a port number from 1 to 65535",
}
_COMPUTE = {
    "title": "limits or requests",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cpu": {
            "type": ["string", "number"],
            "pattern": r"^(?:[0-9]+m|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)$",
            "minimum": 0,
            "errorMessage": "must be a number of CPUs (2, 0.5) or of millicpus (250m)",
        },
        "memory": {
            "type": ["string", "integer"],
            "pattern": "^[1-9][0-9]*(?:K|M|G|T|Ki|Mi|Gi|Ti)?$",
            "minimum": 1,
            "errorMessage": "must be a number of bytes with an optional unit (128Mi, 1G)",
        },
    },
}
_FILE_FIELDS = {
    "mode": {
        "type": ["string", "integer"],
        "pattern": "^0?[0-7]{3}$",
        "errorMessage": 'must be an octal file mode such as "0644" or "600"',
    },
    "source": {"type": "string", "minLength": 1},
    "content": {"type": "string"},
    "binaryContent": {"type": "string"},
    "noExpand": {"type": "boolean"},
}
_VOLUME_FIELDS = {
    "source": {"type": "string", "minLength": 1},
    "path": {"type": "string"},
    "readOnly": {"type": "boolean"},
}
_TARGET = {"type": "string", "minLength": 1}
_PROBE = {
    "title": "a probe",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "httpGet": {
            "title": "httpGet",
            "type": "object",
            "required": ["path", "port"],
            "additionalProperties": False,
            "properties": {
                "scheme": {
                    "type": "string",
                    "pattern": "^(?i:https?)$",
                    "errorMessage": "must be HTTP or HTTPS",
                },
                "host": {"type": "string", "minLength": 1},
                "path": {"type": "string"},
                "port": _PORT_NUMBER,
                "httpHeaders": {
                    "type": "array",
                    "items": {
                        "title": "an HTTP header",
                        "type": "object",
                        "required": ["name", "value"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9_-]+$",
                                "errorMessage": "must be a header name: letters, digits, "
                                "'_' and '-'",
                            },
                            "value": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
        },
        "exec": {
            "title": "exec",
            "type": "object",
            "required": ["command"],
            "additionalProperties": False,
            "properties": {"command": {**_STRINGS, "minItems": 1}},
        },
    },
}
_CONTAINER = {
    "title": "a container",
    "type": "object",
    "required": ["image"],
    "additionalProperties": False,
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "command": _STRINGS,
        "args": _STRINGS,
        "variables": {
            "title": "variables",
            "type": "object",
            "propertyNames": {
                "pattern": "^[^=\\x00]+$",
                "errorMessage": "is not a variable name: it must not be empty or hold '='",
            },
            "additionalProperties": {"type": "string"},
        },
        "files": {
            "type": ["object", "array"],
            "additionalProperties": {
                "title": "a file",
                "type": "object",
                "additionalProperties": False,
                "properties": _FILE_FIELDS,
            },
            "items": {
                "title": "a file",
                "type": "object",
                "required": ["target"],
                "additionalProperties": False,
                "properties": {"target": _TARGET, **_FILE_FIELDS},
            },
        },
        "volumes": {
            "type": ["object", "array"],
            "additionalProperties": {
                "title": "a volume",
                "type": "object",
                "required": ["source"],
                "additionalProperties": False,
                "properties": _VOLUME_FIELDS,
            },
            "items": {
                "title": "a volume",
                "type": "object",
                "required": ["source", "target"],
                "additionalProperties": False,
                "properties": {"target": _TARGET, **_VOLUME_FIELDS},
            },
        },
        "resources": {
            "title": "the container's resources",
            "type": "object",
            "additionalProperties": False,
            "properties": {"limits": _COMPUTE, "requests": _COMPUTE},
        },
        "livenessProbe": _PROBE,
        "readinessProbe": _PROBE,
    },
}
_RESOURCE = {
    "title": "a resource",
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "pattern": _TYPE_NAME, "errorMessage": _TYPE_RULE},
        "class": {"type": "string", "pattern": _TYPE_NAME, "errorMessage": _TYPE_RULE},
        "id": {
            "type": "string",
            "maxLength": 63,
            "pattern": r"^[a-z0-9]+(?:-+[a-z0-9]+)*(?:\.[a-z0-9]+(?:-+[a-z0-9]+)*)*$",
            "errorMessage": "must be up to 63 characters: lowercase words of letters and "
            "digits joined by '-', in parts separated by '.'",
        },
        "metadata": {
            "title": "the resource's metadata",
            "type": "object",
            "properties": {"annotations": _ANNOTATIONS},
        },
        "params": {"type": "object"},
    },
}
_NAMES = {"pattern": _LABEL, "errorMessage": _LABEL_RULE}

SCORE_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "a Score workload",
    "type": "object",
    "required": ["apiVersion", "metadata", "containers"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {
            "const": SCORE_API_VERSION,
            "errorMessage": f"must be {SCORE_API_VERSION} (the Score version Pavedroad reads)",
        },
        "metadata": {
            "title": "metadata",
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", **_NAMES},
                "annotations": _ANNOTATIONS,
            },
        },
        "containers": {
            "type": "object",
            "minProperties": 1,
            "errorMessage": "needs at least one container",
            "propertyNames": _NAMES,
            "additionalProperties": _CONTAINER,
        },
        "service": {
            "title": "service",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ports": {
                    "type": "object",
                    "propertyNames": _NAMES,
                    "additionalProperties": {
                        "title": "a port",
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": _PORT_NUMBER,
                            "targetPort": _PORT_NUMBER,
                            "protocol": {"enum": ["TCP", "UDP"]},
                        },
                    },
                }
            },
        },
        "resources": {
            "type": "object",
            "propertyNames": _NAMES,
            "additionalProperties": _RESOURCE,
        },
    },
}
Draft7Validator.check_schema(SCORE_SCHEMA)
_VALIDATOR = Draft7Validator(SCORE_SCHEMA)

# Keys people bring from elsewhere: (key, where) → what to write instead.
_HINTS = {
    ("env", "a container"): "environment variables go under 'variables'",
    ("environment", "a container"): "environment variables go under 'variables'",
    ("ports", "a container"): "ports go under service.ports, at the top level",
    ("entrypoint", "a container"): "Score calls it 'command'",
    ("name", "a Score workload"): "the workload's name goes under metadata.name",
    ("kind", "a Score workload"): "a Score workload has no kind, only apiVersion",
    ("ports", "a Score workload"): "ports go under service.ports",
    ("properties", "a resource"): "a resource's settings go under 'params'",
}

# -- the model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpHeader:
    name: str
    value: str


@dataclass(frozen=True)
class HttpGet:
    """An HTTP GET health check; a runtime that gives each instance its own port (the
    local one) probes that port instead of ``port``."""

    path: str
    port: int
    scheme: str = "HTTP"
    host: str | None = None
    headers: tuple[HttpHeader, ...] = ()


@dataclass(frozen=True)
class Probe:
    """A liveness or readiness probe: ``http_get`` or ``exec_command``, never both."""

    http_get: HttpGet | None = None
    exec_command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ContainerFile:
    """A file the container needs at ``target``: inline ``content`` (placeholders
    expanded unless ``no_expand``), ``binary_content`` (never expanded) or ``source``, a
    path inside the release read at deploy time."""

    target: str
    mode: int = DEFAULT_FILE_MODE
    content: str | None = None
    binary_content: bytes | None = None
    source: str | None = None
    no_expand: bool = False
    at: At = field(default=(), compare=False, repr=False)  # where it is written


@dataclass(frozen=True)
class ContainerVolume:
    target: str
    source: str
    path: str | None = None
    read_only: bool = False
    at: At = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class ComputeResources:
    """``limits`` and ``requests``: ``{"cpu": "500m", "memory": "128Mi"}``, as text."""

    limits: Mapping[str, str] = field(default_factory=dict)
    requests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    files: tuple[ContainerFile, ...] = ()
    volumes: tuple[ContainerVolume, ...] = ()
    resources: ComputeResources = field(default_factory=ComputeResources)
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None

    @property
    def uses_own_image(self) -> bool:
        """Whether the image is ``.``: the service's own code, from its release."""
        return self.image == OWN_IMAGE


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int  # ``port`` when not given
    protocol: str = "TCP"


@dataclass(frozen=True)
class ResourceSpec:
    """A resource as the workload asks for it; ``params`` are as written (placeholders
    unresolved)."""

    name: str
    type: str
    class_: str | None = None
    id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """A checked Score workload. ``resource_order`` lists the resources so that one whose
    params use another's outputs comes after it; ``data`` is the file as read."""

    name: str
    metadata: Mapping[str, Any]
    containers: Mapping[str, Container]
    ports: Mapping[str, ServicePort]
    resources: Mapping[str, ResourceSpec]
    resource_order: tuple[str, ...]
    data: Mapping[str, Any] = field(compare=False, repr=False)
    source: str = "score.yaml"
    positions: Mapping[At, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.metadata.get("annotations") or {}

    def position(self, at: At) -> tuple[int, int]:
        """The line and column where ``at`` (or the nearest enclosing part) is written;
        (0, 0) for a workload that did not come from a file."""
        for end in range(len(at), -1, -1):
            found = self.positions.get(at[:end])
            if found is not None:
                return found
        return 0, 0

    def problem(self, at: At, message: str) -> Problem:
        """A problem at ``at``, with its line."""
        line, column = self.position(at)
        return Problem(line, column, format_path(at), message)


# -- reading ------------------------------------------------------------------------------


def parse_workload(text: str | bytes, source: str = "score.yaml") -> Workload:
    """Read and check a Score file. Raises :class:`WorkloadError` with every problem."""
    limits = YamlLimits(max_bytes=MAX_SCORE_BYTES)
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_SCORE_BYTES:
        raise WorkloadError(
            [Problem(0, 0, "", f"the file is {size} bytes, over the limit of {MAX_SCORE_BYTES}")],
            source,
        )
    try:
        data = load_document(text, source, limits)
    except YamlError as error:
        raise WorkloadError(
            [Problem(error.line or 0, error.column or 0, "", error.message)], source
        ) from None
    decoded = text.decode("utf-8-sig") if isinstance(text, bytes) else text.removeprefix("\ufeff")
    node = yaml.compose(decoded, Loader=_ComposeLoader) if data is not None else None
    return _read(data, _positions(data, node), source)


def workload_from_data(data: Any, source: str = "score.yaml") -> Workload:
    """Check a Score workload already read (a release's stored ``score``); its problems
    have paths but no lines."""
    return _read(data, {}, source)


_ComposeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _positions(data: Any, node: yaml.Node | None) -> dict[At, tuple[int, int]]:
    """Where each part of ``data`` is written: a mapping value at its key, a list item
    at its start."""
    found: dict[At, tuple[int, int]] = {}
    if node is None:
        return found

    def mark(at: yaml.Node) -> tuple[int, int]:
        return at.start_mark.line + 1, at.start_mark.column + 1

    def walk(value: Any, current: yaml.Node, at: At) -> None:
        if isinstance(value, dict) and isinstance(current, yaml.MappingNode):
            if len(current.value) != len(value):
                return
            for (key, child), (key_node, child_node) in zip(
                value.items(), current.value, strict=True
            ):
                found[(*at, key)] = mark(key_node)
                walk(child, child_node, (*at, key))
        elif isinstance(value, list) and isinstance(current, yaml.SequenceNode):
            for index, (child, child_node) in enumerate(zip(value, current.value, strict=True)):
                found[(*at, index)] = mark(child_node)
                walk(child, child_node, (*at, index))

    found[()] = mark(node)
    walk(data, node, ())
    return found


def _read(data: Any, positions: dict[At, tuple[int, int]], source: str) -> Workload:
    checker = _Checker(data, positions)
    if data is None:
        checker.report(
            (), "the file is empty: a Score workload needs apiVersion, metadata and containers"
        )
    elif not isinstance(data, dict):
        checker.report((), f"a Score workload must be a mapping, not {describe(data)}")
    else:
        checker.check()
    if checker.problems:
        raise WorkloadError(checker.problems, source)
    return _build(data, checker.order, positions, source)


class _Checker:
    """Collects every problem of a Score document instead of stopping at the first."""

    def __init__(self, data: Any, positions: dict[At, tuple[int, int]]) -> None:
        self.data = data
        self.positions = positions
        self.problems: list[Problem] = []
        self.order: tuple[str, ...] = ()

    def report(self, at: At, message: str) -> None:
        line, column = (0, 0)
        for end in range(len(at), -1, -1):
            if at[:end] in self.positions:
                line, column = self.positions[at[:end]]
                break
        self.problems.append(Problem(line, column, format_path(at), message))

    def check(self) -> None:
        for error in _VALIDATOR.iter_errors(self.data):
            for at, message in _schema_problems(error):
                self.report(at, message)
        containers = self.data.get("containers")
        for name, container in _items(containers):
            if isinstance(container, dict):
                self.check_container(("containers", name), container)
        self.check_placeholders()

    # files, volumes and probes

    def check_container(self, at: At, container: dict[str, Any]) -> None:
        for file_at, body in _entries(container.get("files"), (*at, "files")):
            self.check_file(file_at, body)
        for volume_at, body in _entries(container.get("volumes"), (*at, "volumes")):
            self.check_target(volume_at, body)
        for probe in ("livenessProbe", "readinessProbe"):
            value = container.get(probe)
            if isinstance(value, dict) and len({"httpGet", "exec"} & value.keys()) != 1:
                self.report((*at, probe), "a probe has exactly one of httpGet or exec")
        self.check_duplicate_targets(at, container)

    def check_file(self, at: At, body: dict[str, Any]) -> None:
        self.check_target(at, body)
        given = [key for key in ("content", "source", "binaryContent") if key in body]
        if len(given) != 1:
            self.report(
                at,
                "a file has exactly one of content, source or binaryContent"
                + (f", not {' and '.join(given)}" if given else ""),
            )
        binary = body.get("binaryContent")
        if isinstance(binary, str):
            try:
                base64.b64decode(binary, validate=True)
            except (binascii.Error, ValueError):
                self.report((*at, "binaryContent"), "is not valid base64")
        source = body.get("source")
        if isinstance(source, str) and "${" not in source:
            self.check_relative(
                (*at, "source"),
                source,
                "must be a path inside the release, such as config/app.yaml",
            )
        mode = body.get("mode")
        if (
            isinstance(mode, int)
            and not isinstance(mode, bool)
            and not re.fullmatch("0?[0-7]{3}", str(mode))
        ):
            self.report((*at, "mode"), 'must be an octal file mode such as "0644" or "600"')

    def check_target(self, at: At, body: dict[str, Any]) -> None:
        target = at[-1] if isinstance(at[-1], str) else body.get("target")
        if isinstance(target, str):
            where = at if isinstance(at[-1], str) else (*at, "target")
            self.check_relative(where, target.lstrip("/"), "must not leave its root with '..'")

    def check_relative(self, at: At, path: str, rule: str) -> None:
        parts = re.split(r"[/\\]", path)
        if "\x00" in path or path.startswith(("/", "\\")) or ".." in parts or not path.strip():
            self.report(at, f"{path!r} {rule}" if path.strip() else "must not be empty")

    def check_duplicate_targets(self, at: At, container: dict[str, Any]) -> None:
        for key in ("files", "volumes"):
            seen: set[str] = set()
            for item_at, body in _entries(container.get(key), (*at, key)):
                target = item_at[-1] if isinstance(item_at[-1], str) else body.get("target")
                if not isinstance(target, str):
                    continue
                normal = "/" + "/".join(part for part in target.split("/") if part not in ("", "."))
                if normal in seen:
                    self.report(item_at, f"target {target!r} is used twice in {key}")
                seen.add(normal)

    # placeholders

    def check_placeholders(self) -> None:
        resources = self.data.get("resources")
        declared = set(resources) if isinstance(resources, dict) else set()
        needs: dict[str, set[str]] = {name: set() for name in declared}
        for at, text in expandable_texts(self.data):
            try:
                found = references(text)
            except PlaceholderSyntaxError as error:
                self.report(at, str(error))
                continue
            for reference in found:
                self.check_reference(at, reference, declared)
                if at[0] == "resources" and reference.resource in declared:
                    needs[str(at[1])].add(str(reference.resource))
        written = list(resources) if isinstance(resources, dict) else []
        self.order = self.resource_order(needs, written)

    def check_reference(self, at: At, reference: Reference, declared: set[str]) -> None:
        if reference.root == "metadata":
            value: Any = self.data.get("metadata")
            for depth, key in enumerate(reference.parts[1:], start=1):
                if not isinstance(value, dict) or key not in value:
                    where = ".".join(reference.parts[:depth]) or "metadata"
                    choices = list(value) if isinstance(value, dict) else []
                    self.report(
                        at,
                        f"{reference.text}: {where} has no key {key!r}"
                        + did_you_mean(key, choices),
                    )
                    return
                value = value[key]
        elif reference.resource not in declared:
            self.report(
                at,
                f"{reference.text}: there is no resource {reference.resource!r} under resources"
                + (did_you_mean(reference.resource, declared) or self.declared_list(declared)),
            )

    @staticmethod
    def declared_list(declared: set[str]) -> str:
        return f" (resources: {', '.join(sorted(declared))})" if declared else " (none is declared)"

    def resource_order(self, needs: dict[str, set[str]], written: list[str]) -> tuple[str, ...]:
        """The resources, each after those its params use (in written order otherwise);
        a cycle is reported."""
        order: list[str] = []
        done: set[str] = set()
        pending = list(written)
        while pending:
            ready = [name for name in pending if needs[name] <= done]
            if not ready:
                cycle = _cycle(pending, needs)
                self.report(
                    ("resources", cycle[0], "params"),
                    "resources use each other's outputs in a cycle: " + " → ".join(cycle),
                )
                return tuple(order + pending)
            order.append(ready[0])
            done.add(ready[0])
            pending.remove(ready[0])
        return tuple(order)


def _cycle(pending: list[str], needs: dict[str, set[str]]) -> list[str]:
    walk: list[str] = []
    current = pending[0]
    while current not in walk:
        walk.append(current)
        current = sorted(needs[current] & set(pending), key=pending.index)[0]
    cycle = walk[walk.index(current) :]
    return [*cycle, cycle[0]]


def expandable_texts(data: Mapping[str, Any]) -> Iterator[tuple[At, str]]:
    """Every string of a Score document where placeholders are expanded, with where it is:
    container ``command``, ``args`` and ``variables``, file ``content`` (unless
    ``noExpand``) and ``source``, volume ``source``, probe fields, resource ``params``."""
    for name, container in _items(data.get("containers")):
        if not isinstance(container, dict):
            continue
        at: At = ("containers", name)
        for key in ("command", "args"):
            yield from _strings(container.get(key), (*at, key))
        for variable, value in _items(container.get("variables")):
            if isinstance(value, str):
                yield (*at, "variables", variable), value
        for file_at, body in _entries(container.get("files"), (*at, "files")):
            if not body.get("noExpand"):
                yield from _strings(body.get("content"), (*file_at, "content"))
            yield from _strings(body.get("source"), (*file_at, "source"))
        for volume_at, body in _entries(container.get("volumes"), (*at, "volumes")):
            yield from _strings(body.get("source"), (*volume_at, "source"))
        for probe in ("livenessProbe", "readinessProbe"):
            yield from _probe_texts(container.get(probe), (*at, probe))
    for name, resource in _items(data.get("resources")):
        if isinstance(resource, dict):
            yield from _strings(resource.get("params"), ("resources", name, "params"))


def _probe_texts(probe: Any, at: At) -> Iterator[tuple[At, str]]:
    if not isinstance(probe, dict):
        return
    http = probe.get("httpGet")
    if isinstance(http, dict):
        for key in ("path", "host"):
            yield from _strings(http.get(key), (*at, "httpGet", key))
        for index, header in enumerate(http.get("httpHeaders") or []):
            if isinstance(header, dict):
                yield from _strings(
                    header.get("value"), (*at, "httpGet", "httpHeaders", index, "value")
                )
    run = probe.get("exec")
    if isinstance(run, dict):
        yield from _strings(run.get("command"), (*at, "exec", "command"))


def _strings(value: Any, at: At) -> Iterator[tuple[At, str]]:
    """Every string in ``value``, however deeply nested."""
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, (*at, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, (*at, index))


def _items(value: Any) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def _entries(value: Any, at: At) -> Iterator[tuple[At, dict[str, Any]]]:
    """The mappings of a ``files`` or ``volumes`` field in either form: keyed by target
    (their path ends with the target) or a list (their path ends with the index)."""
    if isinstance(value, dict):
        for target, body in value.items():
            if isinstance(body, dict):
                yield (*at, target), body
    elif isinstance(value, list):
        for index, body in enumerate(value):
            if isinstance(body, dict):
                yield (*at, index), body


# -- schema errors as problems ------------------------------------------------------------

_TYPE_NAMES = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _schema_problems(error: ValidationError) -> Iterator[tuple[At, str]]:
    at: At = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if "propertyNames" in error.relative_schema_path:
        key = error.instance
        rule = schema.get("errorMessage") or error.message
        yield (*at, key), f"{key!r} {rule}" if schema.get("errorMessage") else rule
        return
    if error.validator == "required":
        for name in error.validator_value:
            if isinstance(error.instance, dict) and name not in error.instance:
                yield (*at, name), "required"
        return
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = list(schema.get("properties", {}))
        what = schema.get("title", "this mapping")
        for key in error.instance:
            if key not in allowed:
                yield (*at, key), _unknown_key(key, allowed, what)
        return
    if error.validator == "type":
        yield at, _type_message(error.validator_value, error.instance)
        return
    if error.validator == "enum":
        choices = ", ".join(repr(v) for v in error.validator_value)
        yield at, f"must be one of {choices}, not {describe(error.instance)}"
        return
    custom = schema.get("errorMessage")
    if custom:
        yield (
            at,
            f"{custom}, not {describe(error.instance)}" if custom.startswith("must") else custom,
        )
        return
    yield at, error.message


def _type_message(expected: str | list[str], value: Any) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    wanted = " or ".join(_TYPE_NAMES.get(name, name) for name in names)
    hint = (
        " (quote it)"
        if "string" in names and isinstance(value, int | float) and value is not None
        else ""
    )
    return f"must be {wanted}, not {describe(value)}{hint}"


def _unknown_key(key: str, allowed: list[str], what: str) -> str:
    message = f"unknown key {key!r} in {what}"
    hint = _HINTS.get((key, what))
    if hint:
        return f"{message}: {hint}"
    suggestion = did_you_mean(key, allowed)
    if suggestion:
        return message + suggestion
    return f"{message}; expected one of: {', '.join(allowed)}"


# -- building the model -------------------------------------------------------------------


def _build(
    data: dict[str, Any],
    order: tuple[str, ...],
    positions: dict[At, tuple[int, int]],
    source: str,
) -> Workload:
    metadata = dict(data["metadata"])
    containers = {
        name: _container(name, body, ("containers", name))
        for name, body in data["containers"].items()
    }
    ports = {
        name: ServicePort(
            name,
            body["port"],
            body.get("targetPort", body["port"]),
            body.get("protocol", "TCP"),
        )
        for name, body in ((data.get("service") or {}).get("ports") or {}).items()
    }
    resources = {
        name: ResourceSpec(
            name,
            body["type"],
            body.get("class"),
            body.get("id"),
            dict(body.get("metadata") or {}),
            dict(body.get("params") or {}),
        )
        for name, body in (data.get("resources") or {}).items()
    }
    return Workload(
        name=metadata["name"],
        metadata=metadata,
        containers=containers,
        ports=ports,
        resources=resources,
        resource_order=order,
        data=data,
        source=source,
        positions=positions,
    )


def _container(name: str, body: dict[str, Any], at: At) -> Container:
    command = body.get("command")
    args = body.get("args")
    compute = body.get("resources") or {}
    return Container(
        name=name,
        image=body["image"],
        command=tuple(command) if command is not None else None,
        args=tuple(args) if args is not None else None,
        variables=dict(body.get("variables") or {}),
        files=tuple(
            _file(file_at, item) for file_at, item in _entries(body.get("files"), (*at, "files"))
        ),
        volumes=tuple(
            _volume(volume_at, item)
            for volume_at, item in _entries(body.get("volumes"), (*at, "volumes"))
        ),
        resources=ComputeResources(
            _compute(compute.get("limits")), _compute(compute.get("requests"))
        ),
        liveness_probe=_probe(body.get("livenessProbe")),
        readiness_probe=_probe(body.get("readinessProbe")),
    )


def _file(at: At, body: dict[str, Any]) -> ContainerFile:
    target = at[-1] if isinstance(at[-1], str) else body["target"]
    mode = body.get("mode")
    binary = body.get("binaryContent")
    return ContainerFile(
        target=target,
        mode=int(str(mode), 8) if mode is not None else DEFAULT_FILE_MODE,
        content=body.get("content"),
        binary_content=base64.b64decode(binary) if binary is not None else None,
        source=body.get("source"),
        no_expand=bool(body.get("noExpand", False)),
        at=at,
    )


def _volume(at: At, body: dict[str, Any]) -> ContainerVolume:
    target = at[-1] if isinstance(at[-1], str) else body["target"]
    return ContainerVolume(
        target=target,
        source=body["source"],
        path=body.get("path"),
        read_only=bool(body.get("readOnly", False)),
        at=at,
    )


def _compute(value: dict[str, Any] | None) -> dict[str, str]:
    return {key: str(amount) for key, amount in (value or {}).items()}


def _probe(value: dict[str, Any] | None) -> Probe | None:
    if value is None:
        return None
    http = value.get("httpGet")
    if http is not None:
        return Probe(
            http_get=HttpGet(
                path=http["path"],
                port=http["port"],
                scheme=http.get("scheme", "HTTP").upper(),
                host=http.get("host"),
                headers=tuple(
                    HttpHeader(h["name"], h["value"]) for h in http.get("httpHeaders") or []
                ),
            )
        )
    return Probe(exec_command=tuple(value["exec"]["command"]))
