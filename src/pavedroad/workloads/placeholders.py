"""Placeholder resolution: a :class:`~pavedroad.workloads.score.Workload` and its
resources' outputs in, what a runtime starts out.

Score placeholders (syntax in :mod:`pavedroad.workloads.template`):

- ``${metadata.name}``, ``${metadata.annotations.example\\.com/team}``: the workload's
  metadata, at any depth;
- ``${resources.db.host}``, ``${resources.db.conn.host}``: an output of a resource,
  following a dotted path into outputs that are mappings (or lists, by index);
- ``${resources.data}``: the resource itself, for a volume ``source`` (its
  :attr:`ResourceOutputs.reference`, or a stable id such as ``volume.default#shop.data``);
- ``$${...}`` is a literal ``${...}`` (``$$`` is a literal ``$``).

They are expanded in container ``command``, ``args``, ``variables``, file ``content``
(unless ``noExpand``) and ``source``, volume ``source``, probe ``path``, ``host``,
header values and ``exec`` command, and resource ``params``. A value is put in as text:
strings as they are, other values as JSON (``5432``, ``true``). In params, a string that
is one placeholder and nothing else keeps the output's own type (a number stays one).
An expanded value is never expanded again.

Outputs a resource type marks secret (:class:`ResourceOutputs`) are substituted like any
other, and everything they reach is marked: :attr:`ResolvedContainer.secret_variables`,
:attr:`ResolvedFile.secret` and :attr:`ResolvedWorkload.secret_values` tell callers what
to mask in logs and never store in plain.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pavedroad.core.errors import NotFoundError
from pavedroad.core.messages import did_you_mean
from pavedroad.core.paths import PathEscapeError, contained_path
from pavedroad.workloads.problems import At, Problem, WorkloadError
from pavedroad.workloads.template import PlaceholderSyntaxError, Reference, parse_template

if TYPE_CHECKING:
    from pavedroad.workloads.score import Container, ContainerFile, Probe, Workload

MAX_FILE_BYTES = 1024 * 1024  # a container file, after expansion
REDACTED = "********"


class PlaceholderError(WorkloadError):
    """Placeholders that cannot be resolved; each problem names where one is used."""

    title = "Unresolved placeholder"
    type_slug = "unresolved-placeholder"


@dataclass(frozen=True, repr=False)
class ResourceOutputs(Mapping[str, Any]):
    """What provisioning a resource gave: ``data``, output values by name (the object is
    a read-only mapping of them too), ``secret``, the names of those that are secret, and
    ``reference``, what ``${resources.<name>}`` on its own stands for (None: the
    resource's stable id)."""

    data: Mapping[str, Any] = field(default_factory=dict)
    secret: frozenset[str] = frozenset()
    reference: str | None = None

    def __post_init__(self) -> None:
        unknown = self.secret - set(self.data)
        if unknown:
            raise ValueError(f"secret outputs {sorted(unknown)} have no value")

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def secret_values(self) -> list[str]:
        """The text of every secret value (nested ones too), for a masker."""
        return [text for key in sorted(self.secret) for text in _texts(self.data[key])]

    def redacted(self) -> dict[str, Any]:
        """The outputs with each secret one replaced by ``********``: safe to store and show."""
        return {k: REDACTED if k in self.secret else v for k, v in self.data.items()}

    def __repr__(self) -> str:  # never a secret in a log or a traceback
        return (
            f"ResourceOutputs({self.redacted()!r}, secret={sorted(self.secret)!r}, "
            f"reference={self.reference!r})"
        )


@dataclass(frozen=True)
class ResolvedFile:
    target: str
    mode: int
    content: bytes = field(repr=False)
    secret: bool = False  # the content holds a secret output


@dataclass(frozen=True)
class ResolvedVolume:
    target: str
    source: str
    path: str | None = None
    read_only: bool = False


@dataclass(frozen=True, repr=False)
class ResolvedContainer:
    """A container with every placeholder expanded."""

    name: str
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    variables: Mapping[str, str]
    files: tuple[ResolvedFile, ...]
    volumes: tuple[ResolvedVolume, ...]
    liveness_probe: Probe | None
    readiness_probe: Probe | None
    secret_variables: frozenset[str] = frozenset()
    secret_arguments: bool = False  # the command or args hold a secret output

    @property
    def uses_own_image(self) -> bool:
        """Whether the image is ``.``: the service's own code, from its release."""
        return self.image == "."

    def redacted_variables(self) -> dict[str, str]:
        """The variables with those holding a secret replaced by ``********``."""
        return {
            name: REDACTED if name in self.secret_variables else value
            for name, value in self.variables.items()
        }

    def __repr__(self) -> str:  # never a secret in a log or a traceback
        arguments = "(holding a secret)" if self.secret_arguments else (self.command, self.args)
        return (
            f"ResolvedContainer(name={self.name!r}, image={self.image!r}, "
            f"command/args={arguments!r}, variables={self.redacted_variables()!r}, "
            f"files={self.files!r}, volumes={self.volumes!r})"
        )


@dataclass(frozen=True)
class ResolvedWorkload:
    """A workload ready to run: its containers and resource params expanded."""

    workload: Workload
    containers: Mapping[str, ResolvedContainer]
    params: Mapping[str, Mapping[str, Any]] = field(repr=False)  # may hold secret outputs
    secret_values: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def name(self) -> str:
        return self.workload.name

    def container(self, name: str) -> ResolvedContainer:
        try:
            return self.containers[name]
        except KeyError:
            known = ", ".join(self.containers)
            raise NotFoundError(
                f"workload {self.name} has no container {name!r}; its containers: {known}"
            ) from None


def resource_id(workload: Workload, name: str) -> str:
    """A resource's stable id: ``type.class#id`` for a shared resource (one with an
    ``id``), else ``type.class#workload.name``."""
    spec = workload.resources[name]
    owner = spec.id or f"{workload.name}.{name}"
    return f"{spec.type}.{spec.class_ or 'default'}#{owner}"


def resolve_workload(
    workload: Workload,
    outputs: Mapping[str, Mapping[str, Any]],
    *,
    source_root: Path | None = None,
) -> ResolvedWorkload:
    """Expand every placeholder of ``workload`` with ``outputs`` (resource name → its
    outputs; a :class:`ResourceOutputs` says which are secret). ``source_root`` is
    where the release's files are, for files with a ``source``. Raises
    :class:`PlaceholderError` listing every placeholder that cannot be resolved."""
    resolver = _Resolver(workload, outputs)
    containers = {
        name: resolver.container(container, source_root)
        for name, container in workload.containers.items()
    }
    params = {name: resolver.params(name) for name in workload.resource_order}
    resolver.raise_problems()
    secret = frozenset(
        text
        for value in outputs.values()
        if isinstance(value, ResourceOutputs)
        for text in value.secret_values()
    )
    return ResolvedWorkload(workload, containers, params, secret)


def resolve_params(
    workload: Workload, name: str, outputs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """One resource's params with their placeholders expanded (the outputs of the
    resources it uses must be in ``outputs``). Raises :class:`PlaceholderError`."""
    resolver = _Resolver(workload, outputs)
    params = resolver.params(name)
    resolver.raise_problems()
    return params


class _Unresolved(Exception):
    """Why one placeholder has no value."""


class _Resolver:
    def __init__(self, workload: Workload, outputs: Mapping[str, Mapping[str, Any]]) -> None:
        self.workload = workload
        self.outputs = outputs
        self.problems: list[Problem] = []
        self.touched_secret = False

    def raise_problems(self) -> None:
        if self.problems:
            raise PlaceholderError(self.problems, self.workload.source)

    def report(self, at: At, message: str) -> None:
        self.problems.append(self.workload.problem(at, message))

    # looking up one reference

    def value(self, reference: Reference) -> Any:
        if reference.root == "metadata":
            return _walk(self.workload.metadata, reference.parts[1:], "metadata")
        name = str(reference.resource)
        spec = self.workload.resources.get(name)
        if spec is None:
            raise _Unresolved(
                f"there is no resource {name!r} under resources"
                + did_you_mean(name, self.workload.resources)
            )
        outputs = self.outputs.get(name)
        if outputs is None:
            raise _Unresolved(f"resource {name!r} ({spec.type}) has not been provisioned")
        if not reference.output:
            found = outputs.reference if isinstance(outputs, ResourceOutputs) else None
            return found or resource_id(self.workload, name)
        first = reference.output[0]
        if first not in outputs:
            available = ", ".join(sorted(outputs)) or "none"
            raise _Unresolved(
                f"resource {name!r} ({spec.type}) has no output {first!r}"
                + did_you_mean(first, outputs)
                + f"; its outputs: {available}"
            )
        if isinstance(outputs, ResourceOutputs) and first in outputs.secret:
            self.touched_secret = True
        return _walk(outputs[first], reference.output[1:], f"output {first!r} of {name!r}")

    # expanding text

    def text(self, text: str, at: At) -> str:
        try:
            parts = parse_template(text)
        except PlaceholderSyntaxError as error:
            self.report(at, str(error))
            return text
        pieces = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            try:
                pieces.append(_as_text(self.value(part)))
            except _Unresolved as why:
                self.report(at, f"{part.text}: {why}")
        return "".join(pieces)

    def data(self, value: Any, at: At) -> Any:
        """Params: strings expanded at any depth; a lone placeholder keeps its type."""
        if isinstance(value, str):
            try:
                parts = parse_template(value)
            except PlaceholderSyntaxError as error:
                self.report(at, str(error))
                return value
            if len(parts) == 1 and isinstance(parts[0], Reference):
                try:
                    return self.value(parts[0])
                except _Unresolved as why:
                    self.report(at, f"{parts[0].text}: {why}")
                    return value
            return self.text(value, at)
        if isinstance(value, Mapping):
            return {key: self.data(child, (*at, key)) for key, child in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(child, (*at, index)) for index, child in enumerate(value)]
        return value

    def tracked(self, text: str, at: At) -> tuple[str, bool]:
        """The expanded text and whether a secret output went into it."""
        self.touched_secret = False
        expanded = self.text(text, at)
        return expanded, self.touched_secret

    # the parts of a workload

    def params(self, name: str) -> dict[str, Any]:
        spec = self.workload.resources[name]
        return dict(self.data(dict(spec.params), ("resources", name, "params")))

    def strings(self, values: tuple[str, ...] | None, at: At) -> tuple[str, ...] | None:
        if values is None:
            return None
        return tuple(self.text(value, (*at, index)) for index, value in enumerate(values))

    def container(self, container: Container, source_root: Path | None) -> ResolvedContainer:
        at: At = ("containers", container.name)
        variables: dict[str, str] = {}
        secret: set[str] = set()
        for name, value in container.variables.items():
            variables[name], touched = self.tracked(value, (*at, "variables", name))
            if touched:
                secret.add(name)
        self.touched_secret = False
        command = self.strings(container.command, (*at, "command"))
        args = self.strings(container.args, (*at, "args"))
        secret_arguments = self.touched_secret
        return ResolvedContainer(
            name=container.name,
            image=container.image,
            command=command,
            args=args,
            variables=variables,
            files=tuple(
                resolved
                for file in container.files
                if (resolved := self.file(file, source_root)) is not None
            ),
            volumes=tuple(
                ResolvedVolume(
                    volume.target,
                    self.text(volume.source, (*volume.at, "source")),
                    volume.path,
                    volume.read_only,
                )
                for volume in container.volumes
            ),
            liveness_probe=self.probe(container.liveness_probe, (*at, "livenessProbe")),
            readiness_probe=self.probe(container.readiness_probe, (*at, "readinessProbe")),
            secret_variables=frozenset(secret),
            secret_arguments=secret_arguments,
        )

    def file(self, file: ContainerFile, source_root: Path | None) -> ResolvedFile | None:
        self.touched_secret = False
        if file.binary_content is not None:
            content = file.binary_content
        elif file.content is not None:
            text = (
                file.content if file.no_expand else self.text(file.content, (*file.at, "content"))
            )
            content = text.encode()
        else:
            loaded = self.source(file, source_root)
            if loaded is None:
                return None
            content = loaded
        if len(content) > MAX_FILE_BYTES:
            self.report(
                file.at,
                f"the file {file.target} would be {len(content)} bytes, over the limit of "
                f"{MAX_FILE_BYTES}",
            )
            return None
        return ResolvedFile(file.target, file.mode, content, self.touched_secret)

    def source(self, file: ContainerFile, source_root: Path | None) -> bytes | None:
        """A file's ``source`` read from the release (and expanded unless ``noExpand``)."""
        at = (*file.at, "source")
        name = self.text(str(file.source), at)
        if source_root is None:
            self.report(at, f"{name} is read from the release's files, which were not given")
            return None
        try:
            path = contained_path(source_root, name)
        except PathEscapeError:
            self.report(at, f"{name!r} is outside the release")
            return None
        if not path.is_file():
            self.report(at, f"there is no file {name} in the release")
            return None
        if path.stat().st_size > MAX_FILE_BYTES:
            self.report(at, f"{name} is over the limit of {MAX_FILE_BYTES} bytes")
            return None
        raw = path.read_bytes()
        if file.no_expand:
            return raw
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            self.report(at, f"{name} is not UTF-8 text: set noExpand: true to use it as it is")
            return None
        return self.text(text, at).encode()

    def probe(self, probe: Probe | None, at: At) -> Probe | None:
        if probe is None:
            return None
        if probe.exec_command is not None:
            command = self.strings(probe.exec_command, (*at, "exec", "command"))
            return dataclasses.replace(probe, exec_command=command)
        http = probe.http_get
        assert http is not None
        http_at: At = (*at, "httpGet")
        return dataclasses.replace(
            probe,
            http_get=dataclasses.replace(
                http,
                path=self.text(http.path, (*http_at, "path")),
                host=self.text(http.host, (*http_at, "host")) if http.host else None,
                headers=tuple(
                    dataclasses.replace(
                        header,
                        value=self.text(header.value, (*http_at, "httpHeaders", index, "value")),
                    )
                    for index, header in enumerate(http.headers)
                ),
            ),
        )


def _walk(value: Any, keys: tuple[str, ...], what: str) -> Any:
    """Follow ``keys`` into mappings (and lists, by index)."""
    for key in keys:
        if isinstance(value, Mapping):
            if key not in value:
                raise _Unresolved(
                    f"{what} has no key {key!r}" + did_you_mean(key, [str(k) for k in value])
                )
            value = value[key]
        elif isinstance(value, list | tuple) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise _Unresolved(f"{what} has no key {key!r}: it is not a mapping")
        what = f"{what}.{key}" if what.startswith("metadata") else f"{what} → {key!r}"
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _texts(value: Any) -> Iterator[str]:
    """Every scalar in ``value`` as text (a secret may be a mapping of secrets)."""
    if isinstance(value, Mapping):
        for child in value.values():
            yield from _texts(child)
    elif isinstance(value, list | tuple):
        for child in value:
            yield from _texts(child)
    elif value is not None:
        text = _as_text(value)
        if text:
            yield text
