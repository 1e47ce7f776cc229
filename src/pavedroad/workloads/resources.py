"""Resource types: what ``type:`` in a Score workload's resources names, and the built-in
ones.

A resource type is a name (``volume``), a JSON Schema for its ``params``, and two
methods: :meth:`ResourceType.provision` makes (or finds) the resource and returns its
:class:`~pavedroad.workloads.placeholders.ResourceOutputs`; ``deprovision`` removes it
and does nothing when it is already gone. Both must be safe to call again: a deployment
that is retried provisions its resources again and must get the same ones. A type finds
what it made from the request's identity (environment, component, resource name and
``id``), so ``deprovision`` gets the params as written, placeholders unresolved.

Plugins add types through the ``pavedroad_resource_types`` hook, which the built-ins use
too (Terraform-backed types such as ``postgres`` come with the infrastructure layer):

- ``environment``: the environment's variables (``${resources.env.LOG_LEVEL}``);
- ``service-port``: how to reach another workload of the same environment
  (params ``workload`` and optional ``port``; outputs ``hostname``, ``port``, ``url``);
- ``route``: this workload's own stable URL (outputs ``host``, ``port``, ``url``,
  ``path`` and ``path_url``);
- ``volume``: a persistent directory per environment, component and resource name
  (outputs ``source`` and ``path``, the directory);
- ``secret``: a secret of the component in the environment, by name (output ``value``,
  marked secret), so the file stays valid Score.

The deployments layer fills a :class:`ResourceContext` and calls :func:`provision_all`.
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pluggy
from jsonschema import Draft7Validator

from pavedroad.core.errors import InputError, ProblemError
from pavedroad.core.messages import did_you_mean
from pavedroad.core.paths import contained_path
from pavedroad.workloads.placeholders import ResourceOutputs, resolve_params
from pavedroad.workloads.problems import At, Problem, WorkloadError, format_path
from pavedroad.workloads.score import ResourceSpec, Workload, expandable_texts
from pavedroad.workloads.template import PlaceholderSyntaxError, references

VOLUMES_DIR = "volumes"
_SHARED = "_shared"  # never a namespace: those have no '_'
_DIRECTORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


class UnknownResourceTypeError(InputError):
    title = "Unknown resource type"
    type_slug = "unknown-resource-type"


class ResourceProvisionError(ProblemError):
    """A resource could not be provisioned: ``resource`` names it, ``cause`` is why,
    ``provisioned`` holds the outputs of the resources provisioned before it."""

    title = "Resource not provisioned"
    type_slug = "resource-not-provisioned"

    def __init__(
        self,
        resource: str,
        resource_type: str,
        cause: BaseException,
        provisioned: Mapping[str, ResourceOutputs] | None = None,
    ) -> None:
        reason = cause.detail if isinstance(cause, ProblemError) else str(cause) or repr(cause)
        super().__init__(
            f"resource {resource!r} ({resource_type}) could not be provisioned: {reason}",
            resource=resource,
            resourceType=resource_type,
        )
        # A user's mistake keeps its status (a missing secret is a 400); a crash is ours.
        self.status = cause.status if isinstance(cause, ProblemError) else 500
        self.resource = resource
        self.resource_type = resource_type
        self.cause = cause
        self.provisioned = dict(provisioned or {})


@dataclass(frozen=True)
class WorkloadRoute:
    """Where a workload answers in an environment: ``url`` by its own host name,
    ``path_url`` under the environment's shared host (for places without wildcard DNS)."""

    host: str
    port: int
    url: str
    path_url: str


class RouteLookup(Protocol):
    def __call__(self, workload: str, port: str | None = None) -> WorkloadRoute:
        """The stable route of ``workload`` (a Score workload name) in the environment;
        ``port`` names one of its service ports (None: its first)."""
        ...


@dataclass(frozen=True)
class ResourceContext:
    """What a resource type may know about the deployment it provisions for; the
    deployments layer fills it.

    ``read_secret(name)`` gives the value of the component's secret ``name`` in the
    environment, or None when there is none; ``route_of`` gives workloads' stable routes.
    """

    component: str  # the component's entity ref, component:default/orders
    environment: str
    workload: str
    home: Path  # PAVEDROAD_HOME
    read_secret: Callable[[str], str | None]
    route_of: RouteLookup
    variables: Mapping[str, str] = field(default_factory=dict)  # the environment's, not secret
    deployment_id: str = ""


@dataclass(frozen=True)
class ResourceRequest:
    """One resource to provision: as the workload declares it, with its params resolved
    (for ``deprovision``: as written)."""

    name: str
    type: str
    class_: str | None = None
    id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: ResourceSpec, params: Mapping[str, Any] | None = None) -> ResourceRequest:
        return cls(
            spec.name,
            spec.type,
            spec.class_,
            spec.id,
            dict(spec.params if params is None else params),
            dict(spec.metadata),
        )


class ResourceType:
    """A kind of resource. Subclasses set ``type``, ``description``, ``params_schema``
    (JSON Schema, draft 7) and, when the output names are fixed, ``outputs`` (name →
    what it is), so a placeholder naming another output is refused before deploying."""

    type: str = ""
    description: str = ""
    params_schema: Mapping[str, Any] = {"type": "object"}
    outputs: Mapping[str, str] | None = None

    def provision(self, request: ResourceRequest, ctx: ResourceContext) -> ResourceOutputs:
        raise NotImplementedError

    def deprovision(self, request: ResourceRequest, ctx: ResourceContext) -> None:
        """Remove what ``provision`` made; nothing to do by default."""
        return None


class ResourceTypes:
    """The resource types a deployment knows, by name, with their params validators."""

    def __init__(self, types: Iterable[ResourceType]) -> None:
        self._types: dict[str, ResourceType] = {}
        self._validators: dict[str, Draft7Validator] = {}
        for resource_type in types:
            name = resource_type.type
            if not name:
                raise ValueError(f"{type(resource_type).__name__} has no type name")
            if name in self._types:
                raise ValueError(f"two plugins register the resource type {name!r}")
            Draft7Validator.check_schema(resource_type.params_schema)
            self._types[name] = resource_type
            self._validators[name] = Draft7Validator(resource_type.params_schema)

    @classmethod
    def from_plugins(cls, manager: pluggy.PluginManager | None = None) -> ResourceTypes:
        """Every type the registered plugins offer through ``pavedroad_resource_types``."""
        if manager is None:
            from pavedroad.core.plugins import plugin_manager

            manager = plugin_manager()
        return cls(itertools.chain.from_iterable(manager.hook.pavedroad_resource_types()))

    def names(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._types[name] for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def get(self, name: str) -> ResourceType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownResourceTypeError(self._unknown(name)) from None

    def _unknown(self, name: str) -> str:
        known = ", ".join(self.names()) or "none"
        return (
            f"unknown resource type {name!r}"
            + did_you_mean(name, self._types)
            + (f"; known types: {known}")
        )

    def params_problems(self, name: str, params: Any, *, resolved: bool = True) -> list[str]:
        """What is wrong with ``params`` for type ``name``; unless ``resolved``, a string
        holding a placeholder passes anywhere, since only its value will tell."""
        problems = []
        for error in self._validators[name].iter_errors({} if params is None else params):
            if not resolved and isinstance(error.instance, str) and "${" in error.instance:
                continue
            where = format_path(["params", *error.absolute_path])
            problems.append(f"{where}: {error.message}")
        return sorted(problems)

    def check(self, workload: Workload) -> list[Problem]:
        """Problems a deployment would meet, found before it starts: unknown types,
        params that do not fit their type, placeholders naming an output the type
        does not have."""
        problems: list[Problem] = []
        for name, spec in workload.resources.items():
            at: At = ("resources", name)
            if spec.type not in self._types:
                problems.append(workload.problem((*at, "type"), self._unknown(spec.type)))
                continue
            for message in self.params_problems(spec.type, dict(spec.params), resolved=False):
                problems.append(workload.problem((*at, "params"), message))
        for at, text in expandable_texts(workload.data):
            try:
                found = references(text)
            except PlaceholderSyntaxError:
                continue  # reported when the workload was read
            for reference in found:
                problem = self._output_problem(workload, reference.resource, reference.output)
                if problem:
                    problems.append(workload.problem(at, f"{reference.text}: {problem}"))
        return sorted(set(problems))

    def _output_problem(
        self, workload: Workload, resource: str | None, output: tuple[str, ...]
    ) -> str | None:
        spec = workload.resources.get(resource or "")
        if spec is None or not output or spec.type not in self._types:
            return None
        known = self._types[spec.type].outputs
        if known is None or output[0] in known:
            return None
        return (
            f"a {spec.type} resource has no output {output[0]!r}"
            + did_you_mean(output[0], known)
            + f"; its outputs: {', '.join(known)}"
        )

    def provision_all(self, workload: Workload, ctx: ResourceContext) -> dict[str, ResourceOutputs]:
        """Provision every resource, each after those whose outputs its params use; the
        outputs by resource name. Raises :class:`ResourceProvisionError` naming the
        resource that failed (those before it stay provisioned: provisioning again
        finds them)."""
        done: dict[str, ResourceOutputs] = {}
        for name in workload.resource_order:
            spec = workload.resources[name]
            try:
                done[name] = self._provision(workload, spec, ctx, done)
            except Exception as error:
                raise ResourceProvisionError(name, spec.type, error, done) from error
        return done

    def _provision(
        self,
        workload: Workload,
        spec: ResourceSpec,
        ctx: ResourceContext,
        done: Mapping[str, ResourceOutputs],
    ) -> ResourceOutputs:
        resource_type = self.get(spec.type)
        params = resolve_params(workload, spec.name, done)
        problems = self.params_problems(spec.type, params)
        if problems:
            raise WorkloadError(
                [workload.problem(("resources", spec.name, "params"), m) for m in problems],
                workload.source,
            )
        outputs = resource_type.provision(ResourceRequest.of(spec, params), ctx)
        if not isinstance(outputs, ResourceOutputs):
            outputs = ResourceOutputs(dict(outputs))
        return outputs

    def deprovision_all(self, workload: Workload, ctx: ResourceContext) -> list[str]:
        """Deprovision every resource, in the reverse of provisioning order, going on past
        failures; what failed, one message each (empty: all gone)."""
        failures = []
        for name in reversed(workload.resource_order):
            spec = workload.resources[name]
            try:
                self.get(spec.type).deprovision(ResourceRequest.of(spec), ctx)
            except Exception as error:
                reason = error.detail if isinstance(error, ProblemError) else str(error)
                failures.append(f"resource {name!r} ({spec.type}): {reason}")
        return failures


def provision_all(
    workload: Workload, ctx: ResourceContext, types: ResourceTypes | None = None
) -> dict[str, ResourceOutputs]:
    """:meth:`ResourceTypes.provision_all` with the types the plugins offer."""
    return (types or ResourceTypes.from_plugins()).provision_all(workload, ctx)


# -- the built-in types -------------------------------------------------------------------

_NO_PARAMS: Mapping[str, Any] = {"type": "object", "additionalProperties": False}
_PORT_PARAM = {"type": ["string", "integer"], "minLength": 1, "minimum": 1, "maximum": 65535}


class EnvironmentResource(ResourceType):
    type = "environment"
    description = "The environment's variables, one output each (${resources.env.LOG_LEVEL})."
    params_schema = _NO_PARAMS

    def provision(self, request: ResourceRequest, ctx: ResourceContext) -> ResourceOutputs:
        return ResourceOutputs(dict(ctx.variables))


class ServicePortResource(ResourceType):
    type = "service-port"
    description = "How to reach another workload deployed in the same environment."
    params_schema = {
        "type": "object",
        "required": ["workload"],
        "additionalProperties": False,
        "properties": {
            "workload": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$"},
            "port": _PORT_PARAM,
        },
    }
    outputs = {
        "hostname": "the host name to connect to",
        "port": "the port to connect to",
        "url": "http://hostname:port",
        "path_url": "the workload's URL under the environment's shared host",
    }

    def provision(self, request: ResourceRequest, ctx: ResourceContext) -> ResourceOutputs:
        port = request.params.get("port")
        route = ctx.route_of(request.params["workload"], None if port is None else str(port))
        return ResourceOutputs(
            {
                "hostname": route.host,
                "port": route.port,
                "url": route.url,
                "path_url": route.path_url,
            }
        )


class RouteResource(ResourceType):
    type = "route"
    description = "This workload's own stable URL in the environment."
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"port": _PORT_PARAM},
    }
    outputs = {
        "host": "the workload's host name",
        "port": "the port its route listens on",
        "url": "its stable URL",
        "path": "the path of its URL under the environment's shared host",
        "path_url": "its URL under the environment's shared host",
    }

    def provision(self, request: ResourceRequest, ctx: ResourceContext) -> ResourceOutputs:
        port = request.params.get("port")
        route = ctx.route_of(ctx.workload, None if port is None else str(port))
        return ResourceOutputs(
            {
                "host": route.host,
                "port": route.port,
                "url": route.url,
                "path": urlsplit(route.path_url).path or "/",
                "path_url": route.path_url,
            }
        )


class VolumeResource(ResourceType):
    """A directory under ``$PAVEDROAD_HOME/volumes/<environment>/``: one per component
    and resource name, or one per ``id`` shared by every workload that names it. It
    outlives deployments; deprovisioning removes it, unless it is shared."""

    type = "volume"
    description = "A persistent directory, kept across deployments."
    params_schema = _NO_PARAMS
    outputs = {"source": "the directory", "path": "the directory"}

    def provision(self, request: ResourceRequest, ctx: ResourceContext) -> ResourceOutputs:
        directory = volume_directory(request, ctx)
        directory.mkdir(parents=True, exist_ok=True)
        return ResourceOutputs(
            {"source": str(directory), "path": str(directory)}, reference=str(directory)
        )

    def deprovision(self, request: ResourceRequest, ctx: ResourceContext) -> None:
        if request.id:
            return  # other workloads may use it
        directory = volume_directory(request, ctx)
        if directory.is_dir():
            shutil.rmtree(directory)


def volume_directory(request: ResourceRequest, ctx: ResourceContext) -> Path:
    """Where a volume lives, contained in the home's ``volumes`` folder."""
    from pavedroad.catalog.refs import parse_ref

    if request.id:
        named = [ctx.environment, request.id]
        parts = [ctx.environment, _SHARED, request.id]
    else:
        ref = parse_ref(ctx.component, "component")
        named = parts = [ctx.environment, ref.namespace.lower(), ref.name.lower(), request.name]
    for part in named:
        if not _DIRECTORY_NAME.fullmatch(part) or part.strip(".") == "":
            raise InputError(f"{part!r} cannot name a volume directory")
    root = ctx.home / VOLUMES_DIR
    root.mkdir(parents=True, exist_ok=True)
    return contained_path(root, "/".join(parts))


class SecretResource(ResourceType):
    type = "secret"
    description = "A secret of the component in the environment, by name."
    params_schema = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.-]{0,99}$"}},
    }
    outputs = {"value": "the secret's current value (secret)"}

    def provision(self, request: ResourceRequest, ctx: ResourceContext) -> ResourceOutputs:
        name = request.params["name"]
        value = ctx.read_secret(name)
        if value is None:
            raise InputError(
                f"the secret {name} is not set for {ctx.component} in {ctx.environment}: "
                f"set it with pave secret set {name} --entity {ctx.component} "
                f"--env {ctx.environment}"
            )
        return ResourceOutputs({"value": value}, secret=frozenset({"value"}))


def builtin_types() -> list[ResourceType]:
    return [
        EnvironmentResource(),
        ServicePortResource(),
        RouteResource(),
        VolumeResource(),
        SecretResource(),
    ]
