"""What a deployment asks of a runtime, and the local runtime's answer.

:class:`WorkloadRuntime` is the interface the deployment steps call (provision,
prepare, start, wait until ready, switch, drain, stop); :class:`LocalWorkloadRuntime`
runs each instance as a supervised process on this host
(:mod:`pavedroad.runtimes.local.supervisor`) behind the router's stable URLs
(:mod:`pavedroad.runtimes.local.routes`). A Kubernetes runtime implements the same
interface with manifests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pavedroad.catalog.refs import parse_ref
from pavedroad.environments.directory import Environment
from pavedroad.environments.releases import Release

if TYPE_CHECKING:
    from pavedroad.environments.deployments import SecretReader
    from pavedroad.environments.models import DeploymentRow
    from pavedroad.workloads.placeholders import ResolvedWorkload
    from pavedroad.workloads.score import Workload


def dns_label(name: str) -> str:
    """A component's name as the first label of its host name."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label[:63].strip("-") or "service"


@dataclass(frozen=True)
class RouteInfo:
    host: str  # orders.development.localhost
    port: int  # the router's (the platform's) port
    url: str  # http://orders.development.localhost:7070/
    path_url: str  # http://127.0.0.1:7070/r/development/orders/ (no DNS needed)


@dataclass
class DeploymentPlan:
    """What is being deployed where, read once at the resolve step."""

    deployment_id: str
    number: int
    component: str  # its entity ref
    name: str  # the DNS label it is served under
    environment: Environment
    release: Release
    workload: Workload
    variables: dict[str, str]  # the environment's (or, for a rollback, those it ran with)
    secrets: SecretReader

    @classmethod
    def for_release(
        cls,
        release: Release,
        environment: Environment,
        deployment: DeploymentRow,
        secrets: SecretReader,
    ) -> DeploymentPlan:
        from pavedroad.workloads.score import parse_workload

        workload = parse_workload(release.score_text or "", "score.yaml")
        pinned = (deployment.config or {}).get("variables")
        return cls(
            deployment_id=deployment.id,
            number=deployment.number,
            component=deployment.component,
            name=dns_label(parse_ref(deployment.component).name),
            environment=environment,
            release=release,
            workload=workload,
            variables=dict(pinned) if isinstance(pinned, dict) else dict(environment.variables),
            secrets=secrets,
        )


@dataclass
class Provisioned:
    resolved: ResolvedWorkload
    outputs: dict[str, Any]  # by resource name, for resolving again with the release's files
    config: dict[str, Any]  # non-secret resource outputs, recorded on the deployment
    secret_versions: dict[str, int]
    summary: str
    secret_values: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    app_dir: Any
    env: dict[str, str]
    summary: str


class WorkloadRuntime(Protocol):
    def provision(self, plan: DeploymentPlan) -> Provisioned: ...
    def prepare(self, release: Release) -> Prepared: ...
    def start(
        self, plan: DeploymentPlan, provisioned: Provisioned, prepared: Prepared
    ) -> list[str]: ...
    def wait_ready(self, plan: DeploymentPlan, instances: list[str]) -> str: ...
    def switch(self, plan: DeploymentPlan, instances: list[str]) -> str: ...
    def drain(self, plan: DeploymentPlan, instances: list[str]) -> None: ...
    def stop(self, instances: list[str]) -> None: ...
    def stop_except(self, component: str, environment: str, keep: set[str]) -> None: ...
    def remove_route(self, component: str, environment: str) -> None: ...
    def route_info(self, name: str, environment: str) -> RouteInfo: ...
    def instances(
        self, component: str | None = None, environment: str | None = None
    ) -> list[dict[str, Any]]: ...
    def logs(self, instances: list[str], tail: int) -> list[str]: ...
    def log_cursor(self, instances: list[str]) -> Any: ...
    def logs_since(self, instances: list[str], cursors: Any) -> tuple[list[str], Any]: ...
    def adopt(self) -> Any: ...
