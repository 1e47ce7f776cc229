"""The built-in resource types provisioned for real: a volume directory made under the
platform's home and kept across deployments, a secret read from the real secret store,
routes that reach real HTTP servers, the environment's variables; then a real process
started with the resolved workload's environment and files. Also: a plugin's resource
type through the hook, failures naming the resource, and releases checking their
score.yaml with line-numbered problems."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pluggy
import pytest

from pavedroad.core import hookspecs
from pavedroad.core.audit import AuditEvent
from pavedroad.core.db import database_for
from pavedroad.core.errors import NotFoundError
from pavedroad.environments.releases import ScoreError, parse_score
from pavedroad.secrets.scopes import SecretScope
from pavedroad.secrets.service import SecretStore, Write
from pavedroad.workloads import builtin
from pavedroad.workloads.containers import environment_for, write_files
from pavedroad.workloads.placeholders import ResourceOutputs, resolve_workload
from pavedroad.workloads.resources import (
    ResourceContext,
    ResourceProvisionError,
    ResourceRequest,
    ResourceType,
    ResourceTypes,
    WorkloadRoute,
    provision_all,
)
from pavedroad.workloads.score import Workload, parse_workload

COMPONENT = "component:default/orders-service"
ENVIRONMENT = "development"

SCORE = """\
apiVersion: score.dev/v1b1
metadata:
  name: orders
containers:
  main:
    image: .
    command: ["python", "app.py"]
    variables:
      LOG_LEVEL: ${resources.env.LOG_LEVEL}
      DB_PASSWORD: ${resources.db-password.value}
      PUBLIC_URL: ${resources.public.url}
      CART_URL: ${resources.cart.url}
      DATA_DIR: ${resources.data.path}
    files:
      /etc/orders.json:
        mode: "0600"
        content: '{"cart": "${resources.cart.hostname}:${resources.cart.port}"}'
    volumes:
      /var/lib/orders:
        source: ${resources.data}
resources:
  env:
    type: environment
  db-password:
    type: secret
    params:
      name: DB_PASSWORD
  public:
    type: route
  cart:
    type: service-port
    params:
      workload: cart
      port: web
  data:
    type: volume
"""

APP = """\
import json, os, pathlib
config = json.loads(pathlib.Path("etc/orders.json").read_text())
data = pathlib.Path(os.environ["DATA_DIR"])
(data / "orders.log").write_text("order 1\\n")
print(json.dumps({
    "log_level": os.environ["LOG_LEVEL"],
    "password": os.environ["DB_PASSWORD"],
    "cart": config["cart"],
    "public": os.environ["PUBLIC_URL"],
    "mode": oct(pathlib.Path("etc/orders.json").stat().st_mode & 0o777),
}))
"""


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def workloads_served() -> Iterator[dict[str, ThreadingHTTPServer]]:
    """A real HTTP server per workload name, standing for its stable route."""
    servers: dict[str, ThreadingHTTPServer] = {}
    for name in ("orders", "cart"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


def _route_lookup(servers: dict[str, ThreadingHTTPServer]) -> Callable[..., WorkloadRoute]:
    def route_of(workload: str, port: str | None = None) -> WorkloadRoute:
        if workload not in servers:
            raise NotFoundError(f"{workload} is not deployed in {ENVIRONMENT}")
        number = int(servers[workload].server_address[1])
        return WorkloadRoute(
            host="127.0.0.1",
            port=number,
            url=f"http://127.0.0.1:{number}/",
            path_url=f"http://127.0.0.1:{number}/r/{ENVIRONMENT}/{workload}/",
        )

    return route_of


@pytest.fixture
def store(settings: Any) -> SecretStore:
    return SecretStore(database_for(settings), settings)


def _secret_reader(store: SecretStore, component: str) -> Callable[[str], str | None]:
    scope = SecretScope.parse(component, ENVIRONMENT)

    def read(name: str) -> str | None:
        record = AuditEvent("deployment:1", "secret.read", "", "success", 200)
        try:
            value, _meta = store.reveal(scope, name, None, record)
        except NotFoundError:
            return None
        return value

    return read


@pytest.fixture
def make_context(
    settings: Any, store: SecretStore, workloads_served: dict[str, ThreadingHTTPServer]
) -> Callable[..., ResourceContext]:
    def make(component: str = COMPONENT, workload: str = "orders") -> ResourceContext:
        return ResourceContext(
            component=component,
            environment=ENVIRONMENT,
            workload=workload,
            home=settings.home,
            read_secret=_secret_reader(store, component),
            route_of=_route_lookup(workloads_served),
            variables={"LOG_LEVEL": "debug", "REGION": "eu-west-1"},
            deployment_id="deployment-1",
        )

    return make


def test_each_built_in_type_provisions_for_real_and_a_process_runs_with_the_result(
    settings, store, make_context, workloads_served, tmp_path
):
    store.set(SecretScope.parse(COMPONENT, ENVIRONMENT), "DB_PASSWORD", "pg-s3cret", Write("t"))
    workload = parse_workload(SCORE)
    ctx = make_context()

    outputs = provision_all(workload, ctx)

    volume = settings.home / "volumes" / ENVIRONMENT / "default" / "orders-service" / "data"
    assert volume.is_dir()
    assert outputs["data"].data == {"source": str(volume), "path": str(volume)}
    assert outputs["env"].data == {"LOG_LEVEL": "debug", "REGION": "eu-west-1"}
    assert outputs["db-password"].secret == {"value"}
    assert outputs["db-password"].redacted() == {"value": "********"}
    cart_port = workloads_served["cart"].server_address[1]
    assert outputs["cart"].data == {
        "hostname": "127.0.0.1",
        "port": cart_port,
        "url": f"http://127.0.0.1:{cart_port}/",
        "path_url": f"http://127.0.0.1:{cart_port}/r/development/cart/",
    }
    assert outputs["public"]["path"] == "/r/development/orders/"

    resolved = resolve_workload(workload, outputs)
    env = environment_for(resolved, "main")
    assert httpx.get(env["CART_URL"]).text == "cart"  # the route reaches the workload
    assert httpx.get(env["PUBLIC_URL"]).text == "orders"
    assert resolved.secret_values == {"pg-s3cret"}
    assert resolved.container("main").secret_variables == {"DB_PASSWORD"}
    assert resolved.container("main").volumes[0].source == str(volume)

    instance = tmp_path / "instance"
    write_files(resolved, "main", instance)
    (instance / "app.py").write_text(APP)
    run = subprocess.run(
        [sys.executable, "app.py"],
        cwd=instance,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(run.stdout) == {
        "log_level": "debug",
        "password": "pg-s3cret",
        "cart": f"127.0.0.1:{cart_port}",
        "public": f"http://127.0.0.1:{workloads_served['orders'].server_address[1]}/",
        "mode": "0o600",
    }

    again = provision_all(workload, ctx)  # a retried deployment gets the same resources
    assert again["data"].data == outputs["data"].data
    assert (volume / "orders.log").read_text() == "order 1\n"  # kept across deployments

    types = ResourceTypes.from_plugins()
    assert types.deprovision_all(workload, ctx) == []
    assert not volume.exists()
    assert types.deprovision_all(workload, ctx) == []  # already gone: nothing to do


def test_a_volume_with_an_id_is_shared_and_outlives_one_workload(settings, make_context):
    shared = parse_workload(
        "apiVersion: score.dev/v1b1\nmetadata: {name: orders}\n"
        "containers: {main: {image: .}}\n"
        "resources:\n  uploads: {type: volume, id: shop-uploads}\n"
    )
    types = ResourceTypes.from_plugins()
    first = types.provision_all(shared, make_context())
    second = types.provision_all(shared, make_context("component:default/billing", "billing"))

    directory = settings.home / "volumes" / ENVIRONMENT / "_shared" / "shop-uploads"
    assert first["uploads"].reference == second["uploads"].reference == str(directory)
    types.deprovision_all(shared, make_context())
    assert directory.is_dir()


def test_a_missing_secret_fails_naming_the_resource_and_keeps_what_was_provisioned(
    settings, make_context
):
    workload = parse_workload(SCORE)

    with pytest.raises(ResourceProvisionError) as caught:
        provision_all(workload, make_context())

    error = caught.value
    assert (error.resource, error.resource_type, error.status) == ("db-password", "secret", 400)
    assert error.detail == (
        "resource 'db-password' (secret) could not be provisioned: the secret DB_PASSWORD is "
        "not set for component:default/orders-service in development: set it with pave "
        "secret set DB_PASSWORD --entity component:default/orders-service --env development"
    )
    assert list(error.provisioned) == ["env"]
    assert error.to_problem()["resource"] == "db-password"


def test_a_route_to_a_workload_not_deployed_fails_naming_the_resource(store, make_context):
    store.set(SecretScope.parse(COMPONENT, ENVIRONMENT), "DB_PASSWORD", "x", Write("t"))
    workload = parse_workload(SCORE.replace("workload: cart", "workload: payments"))
    with pytest.raises(ResourceProvisionError) as caught:
        provision_all(workload, make_context())
    assert caught.value.detail == (
        "resource 'cart' (service-port) could not be provisioned: payments is not deployed "
        "in development"
    )
    assert caught.value.status == 404


# -- a plugin's resource type -------------------------------------------------------------


class QueueResource(ResourceType):
    """A queue kept as a folder of the home: made on provision, removed on deprovision."""

    type = "queue"
    description = "A message queue."
    params_schema = {
        "type": "object",
        "required": ["size"],
        "additionalProperties": False,
        "properties": {"size": {"type": "integer", "minimum": 1}, "owner": {"type": "string"}},
    }
    outputs = {"url": "where to send messages", "size": "how many it holds"}

    def _folder(self, request: ResourceRequest, ctx: ResourceContext) -> Path:
        return ctx.home / "queues" / ctx.environment / request.name

    def provision(self, request: ResourceRequest, ctx: ResourceContext) -> ResourceOutputs:
        folder = self._folder(request, ctx)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "owner").write_text(str(request.params.get("owner", "")))
        return ResourceOutputs({"url": folder.as_uri(), "size": request.params["size"]})

    def deprovision(self, request: ResourceRequest, ctx: ResourceContext) -> None:
        folder = self._folder(request, ctx)
        for item in folder.glob("*"):
            item.unlink()
        if folder.exists():
            folder.rmdir()


class QueuePlugin:
    @hookspecs.hookimpl
    def pavedroad_resource_types(self) -> list[ResourceType]:
        return [QueueResource()]


def _manager_with_queue() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("pavedroad")
    manager.add_hookspecs(hookspecs)
    manager.register(builtin, name="pavedroad.workloads.builtin")
    manager.register(QueuePlugin(), name="acme-queues")
    return manager


def _queue_workload(size: str) -> Workload:
    return parse_workload(
        textwrap.dedent(
            f"""\
            apiVersion: score.dev/v1b1
            metadata:
              name: orders
            containers:
              main:
                image: .
                variables:
                  QUEUE: ${{resources.jobs.url}}
            resources:
              dead-letters:
                type: queue
                params:
                  size: ${{resources.jobs.size}}
              env:
                type: environment
              jobs:
                type: queue
                params:
                  size: {size}
                  owner: ${{metadata.name}} in ${{resources.env.REGION}}
            """
        )
    )


def test_a_plugin_adds_a_resource_type_through_the_hook(settings, make_context):
    types = ResourceTypes.from_plugins(_manager_with_queue())
    assert "queue" in types and "volume" in types
    workload = _queue_workload("100")
    assert workload.resource_order == ("env", "jobs", "dead-letters")
    ctx = make_context()

    outputs = types.provision_all(workload, ctx)

    assert outputs["dead-letters"]["size"] == 100  # a lone placeholder keeps its type
    folder = settings.home / "queues" / ENVIRONMENT / "jobs"
    assert (folder / "owner").read_text() == "orders in eu-west-1"
    resolved = resolve_workload(workload, outputs)
    assert environment_for(resolved, "main") == {"QUEUE": folder.as_uri()}
    assert types.check(workload) == []

    assert types.deprovision_all(workload, ctx) == []
    assert not folder.exists()
    assert not (settings.home / "queues" / ENVIRONMENT / "dead-letters").exists()


def test_params_that_do_not_fit_the_type_fail_at_their_line(make_context):
    types = ResourceTypes.from_plugins(_manager_with_queue())
    with pytest.raises(ResourceProvisionError) as caught:
        types.provision_all(_queue_workload("0"), make_context())
    assert caught.value.detail == (
        "resource 'jobs' (queue) could not be provisioned: score.yaml:18: "
        "resources.jobs.params: params.size: 0 is less than the minimum of 1"
    )
    assert caught.value.status == 400


# -- releases -----------------------------------------------------------------------------


def test_a_release_score_file_is_checked_whole_with_its_problems_lines():
    with pytest.raises(ScoreError) as caught:
        parse_score(
            "apiVersion: score.dev/v1b1\nmetadata:\n  name: shop\ncontainers:\n  main: {}\n"
        )
    assert caught.value.detail == "score.yaml:5: containers.main.image: required"
    assert caught.value.to_problem()["problems"] == [
        {"line": 5, "column": 3, "path": "containers.main.image", "message": "required"}
    ]
    assert parse_score(SCORE)["metadata"] == {"name": "orders"}
