"""The local runtime as deployments use it: each instance a supervised process on this
host (:class:`~pavedroad.runtimes.local.supervisor.LocalRuntime`), served at a stable URL
by the router (:class:`~pavedroad.runtimes.local.routes.RouteTable`).

Processes cannot map ports as containers do, so each instance gets its own port in
``$PORT`` (overriding a ``PORT`` the workload sets) and its probes are sent there. The
runtime runs the service's own code (``image: .``) with the container's ``command`` and
``args`` in the release's folder, with its virtualenv first on ``PATH``. Container files
are written under ``$PAVEDROAD_FILES`` at their target path.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pavedroad.core.errors import NotFoundError, ProblemError
from pavedroad.core.timeutil import as_utc, utcnow
from pavedroad.environments.deployments import DeploymentFailed
from pavedroad.environments.releases import Release
from pavedroad.environments.runtime import (
    DeploymentPlan,
    Prepared,
    Provisioned,
    RouteInfo,
    dns_label,
)
from pavedroad.settings import Settings

if TYPE_CHECKING:
    from pavedroad.pipelines.artifacts import ArtifactStore
    from pavedroad.runtimes.local.router import LocalRouter
    from pavedroad.runtimes.local.supervisor import LogCursor
    from pavedroad.workloads.score import Probe


class LocalWorkloadRuntime:
    def __init__(self, settings: Settings, artifacts: ArtifactStore) -> None:
        from pavedroad.runtimes.local.routes import RouteTable, routes_root
        from pavedroad.runtimes.local.supervisor import LocalRuntime

        self.settings = settings
        self.artifacts = artifacts
        self.root = settings.home / "runtime"
        self.local = LocalRuntime.for_settings(settings)
        self.routes = RouteTable(routes_root(settings.home))
        self.router: LocalRouter | None = None  # the one in this process, if any

    # -- routes ----------------------------------------------------------------------

    def route_info(self, name: str, environment: str) -> RouteInfo:
        label = dns_label(name)
        host = f"{label}.{environment}.{self.settings.router.domain}"
        port = self.settings.port
        base = (self.settings.base_url or f"http://127.0.0.1:{port}").rstrip("/")
        return RouteInfo(
            host=host,
            port=port,
            url=f"http://{host}:{port}/",
            path_url=f"{base}/r/{environment}/{label}/",
        )

    # -- the deployment steps ----------------------------------------------------------

    def provision(self, plan: DeploymentPlan) -> Provisioned:
        from pavedroad.workloads.placeholders import resolve_workload
        from pavedroad.workloads.problems import WorkloadError
        from pavedroad.workloads.resources import (
            ResourceContext,
            ResourceProvisionError,
            ResourceTypes,
            WorkloadRoute,
        )

        environment = plan.environment.name

        def route_of(workload: str, port: str | None = None) -> WorkloadRoute:
            # the router serves a workload under its component's name; another workload
            # of the environment is found under its own name (name them alike)
            name = plan.name if workload == plan.workload.name else workload
            info = self.route_info(name, environment)
            return WorkloadRoute(info.host, info.port, info.url, info.path_url)

        context = ResourceContext(
            component=plan.component,
            environment=environment,
            workload=plan.workload.name,
            home=self.settings.home,
            read_secret=plan.secrets.find,
            route_of=route_of,
            variables=dict(plan.variables),
            deployment_id=plan.deployment_id,
        )
        types = ResourceTypes.from_plugins()
        problems = types.check(plan.workload)
        if problems:
            raise WorkloadError(problems, plan.workload.source)
        try:
            outputs = types.provision_all(plan.workload, context)
        except ResourceProvisionError as error:
            raise DeploymentFailed(error.detail) from None
        resolved = resolve_workload(plan.workload, outputs)
        secret_values = [v for o in outputs.values() for v in o.secret_values()]
        from pavedroad.secrets.masking import process_masker

        for value in secret_values:
            process_masker().add(value)
        names = [f"{name} ({plan.workload.resources[name].type})" for name in outputs]
        return Provisioned(
            resolved=resolved,
            outputs=dict(outputs),
            config={"resources": {name: o.redacted() for name, o in outputs.items()}},
            secret_versions=dict(plan.secrets.versions),
            summary=("resources: " + ", ".join(names)) if names else "no resources",
            secret_values=secret_values,
        )

    def prepare(self, release: Release) -> Prepared:
        began = time.monotonic()

        def extract(target: Path) -> None:
            self.artifacts.extract(release.digest, target)

        prepared = self.local.prepare(release.digest, extract)
        took = time.monotonic() - began
        python = f", virtualenv {prepared.python.parent.parent.name}" if prepared.python else ""
        return Prepared(
            app_dir=prepared.app_dir,
            env=dict(prepared.env),
            summary=f"release files in {prepared.app_dir.name}{python} ({took:.1f} s)",
        )

    def start(
        self, plan: DeploymentPlan, provisioned: Provisioned, prepared: Prepared
    ) -> list[str]:
        from pavedroad.runtimes.local.shim import InstanceSpec
        from pavedroad.workloads.containers import environment_for, write_files
        from pavedroad.workloads.placeholders import resolve_workload

        # again, now that the release's files are there for files with a ``source``
        resolved = resolve_workload(
            plan.workload, provisioned.outputs, source_root=Path(prepared.app_dir)
        )
        containers = resolved.containers
        if len(containers) != 1:
            raise DeploymentFailed(
                f"the local runtime runs one container per workload; {plan.workload.name} "
                f"has {len(containers)} ({', '.join(containers)})"
            )
        ((name, container),) = containers.items()
        if not container.uses_own_image:
            raise DeploymentFailed(
                f"containers.{name}.image is {container.image!r}: the local runtime runs the "
                "service's own code (image: .); other images need a container runtime"
            )
        command = [*(container.command or ()), *(container.args or ())]
        if not command:
            raise DeploymentFailed(
                f"containers.{name} has no command: the local runtime has no image "
                "entrypoint, so say what runs the service (e.g. command: [python, -m, app])"
            )
        environment = plan.environment.name
        instance_id = f"{environment[:40]}.{plan.name[:40]}.d{plan.number}"
        files = self.root / "files" / instance_id
        write_files(resolved, name, files)
        port = self.local.allocate_port()
        env = {
            **prepared.env,
            **environment_for(resolved, name),
            "PORT": str(port),
            "PAVEDROAD_COMPONENT": plan.component,
            "PAVEDROAD_ENVIRONMENT": environment,
            "PAVEDROAD_RELEASE": plan.release.id,
            "PAVEDROAD_FILES": str(files),
            "PAVEDROAD_URL": self.route_info(plan.name, environment).url,
            "OTEL_SERVICE_NAME": plan.workload.name,
            "OTEL_RESOURCE_ATTRIBUTES": (
                f"deployment.environment={environment},service.version={plan.release.id}"
            ),
        }
        spec = InstanceSpec(
            id=instance_id,
            component=plan.component,
            environment=environment,
            deployment_id=plan.deployment_id,
            release_id=plan.release.id,
            command=command,
            cwd=Path(prepared.app_dir),
            env=env,
            port=port,
            readiness=_probe(container.readiness_probe),
            liveness=_probe(container.liveness_probe),
        )
        with contextlib.suppress(NotFoundError):
            self.local.remove(instance_id)  # a retried deployment's earlier attempt
        self.local.start(spec)
        return [instance_id]

    def wait_ready(self, plan: DeploymentPlan, instances: list[str]) -> str:
        from pavedroad.secrets.masking import process_masker

        timeout = self.settings.deployments.ready_timeout_seconds
        for instance in instances:
            readiness = self.local.wait_ready(instance, timeout)
            if not readiness.ok:
                masker = process_masker()
                raise DeploymentFailed(
                    f"instance {instance} {readiness.reason}",
                    [masker.mask(line) for line in readiness.last_lines],
                )
        ports = ", ".join(str(self.local.get(i).port) for i in instances)
        return f"ready on port {ports}"

    def switch(self, plan: DeploymentPlan, instances: list[str]) -> str:
        upstreams = [f"127.0.0.1:{self.local.get(i).port}" for i in instances]
        self.routes.switch(plan.environment.name, plan.name, upstreams, plan.release.id)
        return self.route_info(plan.name, plan.environment.name).url

    def drain(self, plan: DeploymentPlan, instances: list[str]) -> None:
        """Let the old instances finish what they serve, then stop them. Routers in
        other processes see the switch within a moment; the drain period covers that
        and the requests they had begun."""
        upstreams = []
        for instance in instances:
            with contextlib.suppress(NotFoundError):
                upstreams.append(f"127.0.0.1:{self.local.get(instance).port}")
        drain = self.settings.deployments.drain_seconds
        time.sleep(min(drain, 0.5))
        if self.router is not None and upstreams:
            self.router.wait_drained_blocking(upstreams, drain)
        else:
            time.sleep(max(0.0, drain - 0.5))
        self.stop(instances)

    def stop(self, instances: list[str]) -> None:
        for instance in instances:
            with contextlib.suppress(NotFoundError):
                self.local.remove(instance)
            _remove_tree(self.root / "files" / instance)

    def stop_except(self, component: str, environment: str, keep: set[str]) -> None:
        for state in self.local.instances(component=component, environment=environment):
            if state.id not in keep:
                self.stop([state.id])

    def remove_route(self, component: str, environment: str) -> None:
        from pavedroad.catalog.refs import parse_ref

        self.routes.remove(environment, dns_label(parse_ref(component).name))

    # -- reading -----------------------------------------------------------------------

    def instances(
        self, component: str | None = None, environment: str | None = None
    ) -> list[dict[str, Any]]:
        found = []
        now = utcnow()
        for state in self.local.instances(component=component, environment=environment):
            data = state.as_dict()
            data["release"] = state.release_id
            data["ageSeconds"] = (
                int((now - as_utc(state.started_at)).total_seconds()) if state.started_at else None
            )
            found.append(data)
        return found

    def logs(self, instances: list[str], tail: int) -> list[str]:
        lines: list[str] = []
        for instance in instances:
            with contextlib.suppress(NotFoundError):
                got = self.local.logs(instance, tail)
                prefix = f"[{instance}] " if len(instances) > 1 else ""
                lines.extend(prefix + line for line in got)
        return lines[-tail:] if tail else []

    def log_cursor(self, instances: list[str]) -> dict[str, LogCursor]:
        cursors = {}
        for instance in instances:
            with contextlib.suppress(NotFoundError):
                cursors[instance] = self.local.log_cursor(instance)
        return cursors

    def logs_since(
        self, instances: list[str], cursors: dict[str, LogCursor]
    ) -> tuple[list[str], dict[str, LogCursor]]:
        lines: list[str] = []
        for instance, cursor in list(cursors.items()):
            try:
                got, cursors[instance] = self.local.logs_since(instance, cursor)
            except (NotFoundError, ProblemError):
                continue
            lines.extend(got)
        return lines, cursors

    def adopt(self) -> Any:
        return self.local.adopt()


def _probe(probe: Probe | None) -> Any:
    from pavedroad.runtimes.local.shim import HttpProbe

    if probe is None or probe.http_get is None:
        return None
    get = probe.http_get
    return HttpProbe(
        path=get.path or "/",
        port=None,  # the instance's own port: processes cannot map ports
        scheme="https" if (get.scheme or "").lower() == "https" else "http",
        headers={h.name: h.value for h in get.headers},
    )


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
