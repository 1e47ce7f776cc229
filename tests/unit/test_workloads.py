"""Score workloads: files read into the model with every problem at its line, the
placeholder syntax and its resolution (escapes, nested outputs, secrets, unknown
references), and what a runtime gets: a container's environment and files on disk."""

from __future__ import annotations

import dataclasses
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pavedroad.core.errors import NotFoundError, PayloadTooLargeError
from pavedroad.core.paths import PathEscapeError
from pavedroad.core.plugins import plugin_manager
from pavedroad.scaffolder.expressions import render_text
from pavedroad.workloads.containers import environment_for, write_files
from pavedroad.workloads.placeholders import (
    MAX_FILE_BYTES,
    PlaceholderError,
    ResolvedFile,
    ResolvedWorkload,
    ResourceOutputs,
    resolve_params,
    resolve_workload,
)
from pavedroad.workloads.problems import Problem, WorkloadError
from pavedroad.workloads.resources import (
    ResourceContext,
    ResourceRequest,
    ResourceType,
    ResourceTypes,
    UnknownResourceTypeError,
)
from pavedroad.workloads.score import (
    MAX_SCORE_BYTES,
    HttpGet,
    Probe,
    Workload,
    parse_workload,
    workload_from_data,
)
from pavedroad.workloads.template import (
    PlaceholderSyntaxError,
    Reference,
    parse_template,
    references,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SKELETON_SCORE = REPO_ROOT / "examples/demo/templates/python-web-service/skeleton/score.yaml"


def parse(text: str) -> Workload:
    return parse_workload(textwrap.dedent(text).lstrip("\n"))


def problems(text: str) -> list[str]:
    with pytest.raises(WorkloadError) as caught:
        parse(text)
    return [str(problem) for problem in caught.value.problems]


def workload_with(container: str = "", resources: str = "", metadata: str = "") -> str:
    """A workload whose one container (``main``) has ``container`` added to it."""
    return (
        "apiVersion: score.dev/v1b1\n"
        "metadata:\n"
        "  name: shop\n"
        + textwrap.indent(textwrap.dedent(metadata).lstrip("\n"), "  ")
        + "containers:\n"
        "  main:\n"
        "    image: .\n"
        + textwrap.indent(textwrap.dedent(container).lstrip("\n"), "    ")
        + (
            "resources:\n" + textwrap.indent(textwrap.dedent(resources).lstrip("\n"), "  ")
            if resources
            else ""
        )
    )


FULL = """
apiVersion: score.dev/v1b1
metadata:
  name: orders
  annotations:
    example.com/team: checkout
  tier: {level: gold}
containers:
  web:
    image: .
    command: ["python", "-m", "orders"]
    args: ["--workers", "2"]
    variables:
      LOG_LEVEL: ${resources.env.LOG_LEVEL}
      DATABASE_URL: postgres://app:${resources.db-password.value}@db/${metadata.name}
    files:
      /etc/orders/config.toml:
        mode: 0600
        content: |
          team = "${metadata.annotations.example\\.com/team}"
      /etc/orders/raw.txt:
        content: "${left} as written"
        noExpand: true
      /etc/orders/logo.bin:
        binaryContent: AAEC/w==
      /etc/orders/rules.yaml:
        source: config/rules.yaml
    volumes:
      /var/lib/orders:
        source: ${resources.data}
        path: sub
        readOnly: true
    resources:
      limits: {cpu: 0.5, memory: 128Mi}
      requests: {cpu: 250m}
    livenessProbe:
      httpGet:
        scheme: http
        path: /livez
        port: 8080
        httpHeaders:
          - {name: X-Probe, value: "${metadata.name}"}
    readinessProbe:
      exec:
        command: ["python", "-c", "print('${metadata.name}')"]
  worker:
    image: ghcr.io/acme/orders-worker:1.4
service:
  ports:
    web:
      port: 80
      targetPort: 8080
    metrics:
      port: 9100
      protocol: UDP
resources:
  env:
    type: environment
  db-password:
    type: secret
    params:
      name: DB_PASSWORD
  data:
    type: volume
    class: fast
    id: orders-data
    metadata:
      annotations: {example.com/backup: daily}
"""


# -- reading ------------------------------------------------------------------------------


def test_a_full_workload_reads_into_the_model():
    workload = parse(FULL)

    assert workload.name == "orders"
    assert workload.annotations == {"example.com/team": "checkout"}
    assert list(workload.containers) == ["web", "worker"]
    web = workload.containers["web"]
    assert web.uses_own_image and not workload.containers["worker"].uses_own_image
    assert web.command == ("python", "-m", "orders") and web.args == ("--workers", "2")
    assert workload.containers["worker"].command is None
    files = {file.target: file for file in web.files}
    assert files["/etc/orders/config.toml"].mode == 0o600  # YAML's 0600 is the number 600
    assert files["/etc/orders/raw.txt"].mode == 0o644 and files["/etc/orders/raw.txt"].no_expand
    assert files["/etc/orders/logo.bin"].binary_content == b"\x00\x01\x02\xff"
    assert files["/etc/orders/rules.yaml"].source == "config/rules.yaml"
    (volume,) = web.volumes
    assert (volume.target, volume.path, volume.read_only) == ("/var/lib/orders", "sub", True)
    assert web.resources.limits == {"cpu": "0.5", "memory": "128Mi"}
    assert web.resources.requests == {"cpu": "250m"}
    assert web.liveness_probe is not None and web.liveness_probe.http_get is not None
    assert web.liveness_probe.http_get.scheme == "HTTP"  # Score's own examples write "http"
    assert web.readiness_probe == Probe(exec_command=("python", "-c", "print('${metadata.name}')"))
    assert workload.ports["web"].target_port == 8080
    assert (workload.ports["metrics"].target_port, workload.ports["metrics"].protocol) == (
        9100,
        "UDP",
    )
    data = workload.resources["data"]
    assert (data.type, data.class_, data.id) == ("volume", "fast", "orders-data")
    assert workload.resources["db-password"].params == {"name": "DB_PASSWORD"}
    assert workload.resource_order == ("env", "db-password", "data")
    assert workload.data["metadata"]["tier"] == {"level": "gold"}


def test_the_golden_path_score_file_rendered_by_the_scaffolder_is_a_valid_workload():
    values = {"name": "stock-levels", "module": "stock_levels", "port": 8080}
    text = render_text(SKELETON_SCORE.read_text(), {"values": values})

    workload = parse_workload(text)

    assert workload.name == "stock-levels"
    (main,) = workload.containers.values()
    assert main.uses_own_image
    assert main.command == ("python", "-m", "stock_levels")
    assert main.readiness_probe is not None
    assert main.readiness_probe.http_get == HttpGet(path="/healthz", port=8080)
    assert workload.ports["web"].port == 8080
    resolved = resolve_workload(workload, {})
    assert environment_for(resolved, main.name)["PORT"] == "8080"


def test_files_and_volumes_are_read_in_the_list_form_too():
    workload = parse(
        workload_with(
            """
            files:
              - target: /etc/a.conf
                content: a
                mode: "755"
            volumes:
              - source: ${resources.data}
                target: /data
            """,
            "data: {type: volume}\n",
        )
    )
    (file,) = workload.containers["main"].files
    (volume,) = workload.containers["main"].volumes
    assert (file.target, file.mode, file.content) == ("/etc/a.conf", 0o755, "a")
    assert (volume.target, volume.source) == ("/data", "${resources.data}")


def test_resources_are_ordered_so_that_params_come_after_the_outputs_they_use():
    workload = parse(
        workload_with(
            resources="""
            app-db:
              type: postgres-database
              params: {server: "${resources.server.host}", owner: "${metadata.name}"}
            server:
              type: postgres
              params: {size: "${resources.size.value}"}
            size:
              type: secret
              params: {name: SIZE}
            """
        )
    )
    assert workload.resource_order == ("size", "server", "app-db")


def test_every_problem_is_reported_at_once_by_line_with_its_path():
    with pytest.raises(WorkloadError) as caught:
        parse(
            """
            apiVersion: score.dev/v1b1
            metadata:
              name: shop
            containers:
              main:
                command: [serve]
                variables:
                  PORT: 8080
            service:
              ports:
                web: {port: 0}
            """
        )
    error = caught.value
    assert error.detail.splitlines() == [
        "score.yaml:5: containers.main.image: required",
        "score.yaml:8: containers.main.variables.PORT: must be a string, not the number 8080 "
        "(quote it)",
        "score.yaml:11: service.ports.web.port: must be a port number from 1 to 65535, "
        "not the number 0",
    ]
    assert error.problems[0] == Problem(5, 3, "containers.main.image", "required")
    assert error.to_problem()["problems"][0]["line"] == 5
    assert error.status == 400


KEY_PROBLEMS = [
    pytest.param(
        "imgae: x\n",
        "7: containers.main.imgae: unknown key 'imgae' in a container (did you mean 'image'?)",
        id="misspelt-key",
    ),
    pytest.param(
        "env: {A: b}\n",
        "7: containers.main.env: unknown key 'env' in a container: environment variables go "
        "under 'variables'",
        id="key-from-elsewhere",
    ),
    pytest.param(
        "command: python -m shop\n",
        "7: containers.main.command: must be a list, not the string 'python -m shop'",
        id="wrong-type",
    ),
    pytest.param(
        "variables: {A=B: x}\n",
        "7: containers.main.variables[\"A=B\"]: 'A=B' is not a variable name: it must not be "
        "empty or hold '='",
        id="variable-name",
    ),
    pytest.param(
        "files:\n  /etc/a:\n    content: a\n    source: b\n",
        '8: containers.main.files["/etc/a"]: a file has exactly one of content, source or '
        "binaryContent, not content and source",
        id="file-content-and-source",
    ),
    pytest.param(
        'files:\n  /etc/a: {mode: "0644"}\n',
        '8: containers.main.files["/etc/a"]: a file has exactly one of content, source or '
        "binaryContent",
        id="file-without-content",
    ),
    pytest.param(
        "files:\n  /etc/../../x: {content: a}\n",
        "8: containers.main.files[\"/etc/../../x\"]: 'etc/../../x' must not leave its root "
        "with '..'",
        id="file-target-escape",
    ),
    pytest.param(
        "files:\n  /etc/a: {source: /etc/shadow}\n",
        "8: containers.main.files[\"/etc/a\"].source: '/etc/shadow' must be a path inside the "
        "release, such as config/app.yaml",
        id="file-source-absolute",
    ),
    pytest.param(
        "files:\n  /etc/a: {source: ../secrets.txt}\n",
        "8: containers.main.files[\"/etc/a\"].source: '../secrets.txt' must be a path inside "
        "the release, such as config/app.yaml",
        id="file-source-escape",
    ),
    pytest.param(
        'files:\n  /etc/a: {binaryContent: "not base64!"}\n',
        '8: containers.main.files["/etc/a"].binaryContent: is not valid base64',
        id="binary-content",
    ),
    pytest.param(
        "files:\n  /etc/a: {content: a, mode: 999}\n",
        '8: containers.main.files["/etc/a"].mode: must be an octal file mode such as '
        '"0644" or "600"',
        id="file-mode",
    ),
    pytest.param(
        "files:\n  - {target: /etc/a, content: a}\n  - {target: etc//a, content: b}\n",
        "9: containers.main.files[1]: target 'etc//a' is used twice in files",
        id="duplicate-target",
    ),
    pytest.param(
        "readinessProbe:\n  httpGet: {path: /, port: 80}\n  exec: {command: [x]}\n",
        "7: containers.main.readinessProbe: a probe has exactly one of httpGet or exec",
        id="probe-both",
    ),
    pytest.param(
        "livenessProbe:\n  httpGet: {path: /, port: 80, scheme: ftp}\n",
        "8: containers.main.livenessProbe.httpGet.scheme: must be HTTP or HTTPS, not the "
        "string 'ftp'",
        id="probe-scheme",
    ),
    pytest.param(
        "livenessProbe:\n  httpGet: {port: 80}\n",
        "8: containers.main.livenessProbe.httpGet.path: required",
        id="probe-path",
    ),
    pytest.param(
        "resources:\n  limits: {memory: lots}\n",
        "8: containers.main.resources.limits.memory: must be a number of bytes with an "
        "optional unit (128Mi, 1G), not the string 'lots'",
        id="memory",
    ),
    pytest.param(
        'variables: {A: "${foo.bar}"}\n',
        "7: containers.main.variables.A: ${foo.bar} is not a placeholder: they start with "
        "metadata. or resources. (write $${...} for a literal ${...})",
        id="placeholder-root",
    ),
    pytest.param(
        'args: ["${metadata.name"]\n',
        "7: containers.main.args[0]: ${metadata.name opens a placeholder that is never closed "
        "with '}' (write $${ for a literal ${)",
        id="placeholder-unclosed",
    ),
    pytest.param(
        'variables: {A: "${resources.${metadata.name}}"}\n',
        "7: containers.main.variables.A: ${resources.${metadata.name}: a placeholder cannot "
        "hold another placeholder",
        id="placeholder-nested",
    ),
    pytest.param(
        'variables: {A: "${metadata.nmae}"}\n',
        "7: containers.main.variables.A: ${metadata.nmae}: metadata has no key 'nmae' "
        "(did you mean 'name'?)",
        id="placeholder-metadata",
    ),
    pytest.param(
        'variables: {A: "${resources.db.host}"}\n',
        "7: containers.main.variables.A: ${resources.db.host}: there is no resource 'db' "
        "under resources (none is declared)",
        id="placeholder-resource",
    ),
    pytest.param(
        'livenessProbe:\n  exec: {command: ["${resources.x}"]}\n',
        "8: containers.main.livenessProbe.exec.command[0]: ${resources.x}: there is no "
        "resource 'x' under resources (none is declared)",
        id="placeholder-in-probe",
    ),
]


@pytest.mark.parametrize(("container", "expected"), KEY_PROBLEMS)
def test_each_kind_of_problem_in_a_container_is_reported_at_its_line(container, expected):
    assert expected in problems(workload_with(container))


DOCUMENT_PROBLEMS = [
    pytest.param(
        "apiVersion: v1\nkind: Pod\n",
        [
            "1: apiVersion: must be score.dev/v1b1 (the Score version Pavedroad reads), "
            "not the string 'v1'",
            "1: containers: required",
            "1: metadata: required",
            "2: kind: unknown key 'kind' in a Score workload: a Score workload has no kind, "
            "only apiVersion",
        ],
        id="not-score",
    ),
    pytest.param(
        "apiVersion: score.dev/v1b1\nmetadata: {name: Shop_1}\ncontainers: {}\n",
        [
            "2: metadata.name: must be 2 to 63 lowercase letters, digits and '-', starting "
            "and ending with a letter or digit, not the string 'Shop_1'",
            "3: containers: needs at least one container",
        ],
        id="names",
    ),
    pytest.param(
        "apiVersion: score.dev/v1b1\nmetadata: {name: shop}\ncontainers:\n  Web: {image: x}\n",
        [
            "4: containers.Web: 'Web' must be 2 to 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        ],
        id="container-name",
    ),
    pytest.param(
        "apiVersion: score.dev/v1b1\nmetadata:\n  name: shop\n  annotations: {'a b': c}\n"
        "containers: {main: {image: x}}\n",
        [
            "4: metadata.annotations[\"a b\"]: 'a b' is not a valid annotation key: an "
            "optional DNS prefix and '/', then up to 63 letters, digits, '.', '_' and '-' "
            "(example.com/team)"
        ],
        id="annotation-key",
    ),
    pytest.param(
        "apiVersion: score.dev/v1b1\nmetadata: {name: shop}\ncontainers: {main: {image: x}}\n"
        'service:\n  ports:\n    web: {port: "80", protocol: tcp}\n    api: {targetPort: 81}\n',
        [
            "6: service.ports.web.port: must be a whole number, not the string '80'",
            "6: service.ports.web.protocol: must be one of 'TCP', 'UDP', not the string 'tcp'",
            "7: service.ports.api.port: required",
        ],
        id="ports",
    ),
    pytest.param(
        "apiVersion: score.dev/v1b1\nmetadata: {name: shop}\ncontainers: {main: {image: x}}\n"
        "resources:\n  db:\n    type: postgres_15\n    properties: {}\n  cache: {class: big}\n",
        [
            "6: resources.db.type: must be 2 to 63 letters, digits and '-', starting and "
            "ending with a letter or digit, not the string 'postgres_15'",
            "7: resources.db.properties: unknown key 'properties' in a resource: a "
            "resource's settings go under 'params'",
            "8: resources.cache.type: required",
        ],
        id="resources",
    ),
    pytest.param(
        "apiVersion: score.dev/v1b1\nmetadata: {name: shop}\ncontainers: {main: {image: x}}\n"
        "resources:\n"
        "  aa: {type: x1, params: {v: '${resources.bb.out}'}}\n"
        "  bb: {type: x1, params: {v: '${resources.aa.out}'}}\n",
        ["5: resources.aa.params: resources use each other's outputs in a cycle: aa → bb → aa"],
        id="cycle",
    ),
    pytest.param(
        "",
        ["the file is empty: a Score workload needs apiVersion, metadata and containers"],
        id="empty",
    ),
    pytest.param("- a\n- b\n", ["1: a Score workload must be a mapping, not a list"], id="list"),
    pytest.param(
        "apiVersion: score.dev/v1b1\nmetadata: {name: shop\n",
        ["3: did not find expected ',' or '}' (while parsing a flow mapping)"],
        id="yaml-syntax",
    ),
    pytest.param(
        "apiVersion: score.dev/v1b1\napiVersion: score.dev/v1b1\n",
        ["2: duplicate key 'apiVersion'"],
        id="duplicate-key",
    ),
    pytest.param(
        "apiVersion: !!python/object:os.system x\n",
        ["1: tag !!python/object:os.system is not allowed (only plain YAML data is accepted)"],
        id="python-tag",
    ),
]


@pytest.mark.parametrize(("text", "expected"), DOCUMENT_PROBLEMS)
def test_each_kind_of_problem_in_the_document_is_reported_at_its_line(text, expected):
    with pytest.raises(WorkloadError) as caught:
        parse_workload(text)
    assert [str(problem) for problem in caught.value.problems] == expected


def test_a_file_over_the_size_cap_is_refused_before_it_is_read():
    text = "apiVersion: score.dev/v1b1\n# " + "x" * MAX_SCORE_BYTES + "\n"
    with pytest.raises(WorkloadError) as caught:
        parse_workload(text.encode(), "big/score.yaml")
    assert caught.value.detail == (
        f"big/score.yaml: the file is {len(text)} bytes, over the limit of {MAX_SCORE_BYTES}"
    )


def test_a_workload_checked_from_data_has_paths_without_lines():
    with pytest.raises(WorkloadError) as caught:
        workload_from_data(
            {
                "apiVersion": "score.dev/v1b1",
                "metadata": {"name": "shop"},
                "containers": {"main": {}},
            }
        )
    assert caught.value.detail == "score.yaml: containers.main.image: required"
    workload = workload_from_data(
        {
            "apiVersion": "score.dev/v1b1",
            "metadata": {"name": "shop"},
            "containers": {"main": {"image": "."}},
        }
    )
    assert workload.position(("containers", "main")) == (0, 0)


# -- the placeholder syntax ---------------------------------------------------------------


def test_templates_split_into_text_and_references_with_scores_escapes():
    assert parse_template("postgres://${resources.db.host}:${resources.db.port}/x") == [
        "postgres://",
        Reference(("resources", "db", "host"), "${resources.db.host}"),
        ":",
        Reference(("resources", "db", "port"), "${resources.db.port}"),
        "/x",
    ]
    assert parse_template("$${HOME} costs $$5, $HOME stays, so does a $") == [
        "${HOME} costs $5, $HOME stays, so does a $"
    ]
    assert parse_template("$$${metadata.name}") == [
        "$",
        Reference(("metadata", "name"), "${metadata.name}"),
    ]
    (reference,) = references("${metadata.annotations.example\\.com/team}")
    assert reference.parts == ("metadata", "annotations", "example.com/team")
    (reference,) = references("${resources.db.conn.primary.host}")
    assert (reference.resource, reference.output) == ("db", ("conn", "primary", "host"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${}", "${} is an empty placeholder"),
        ("${resources}", "${resources} names no resource"),
        ("${metadata}", "${metadata} names no metadata key"),
        ("${resources..x}", "${resources..x} has an empty key between dots"),
        ("${env.HOME}", "${env.HOME} is not a placeholder"),
        ("a ${metadata.name", "${metadata.name opens a placeholder that is never closed"),
    ],
)
def test_malformed_placeholders_say_what_is_wrong(text, message):
    with pytest.raises(PlaceholderSyntaxError, match=re.escape(message)):
        parse_template(text)


# -- resolution ---------------------------------------------------------------------------


def secret_outputs(value: str) -> ResourceOutputs:
    return ResourceOutputs({"value": value}, secret=frozenset({"value"}))


def full_outputs(volume: str = "/srv/volumes/orders-data") -> dict[str, Any]:
    return {
        "env": ResourceOutputs({"LOG_LEVEL": "debug"}),
        "db-password": secret_outputs("hunter2"),
        "data": ResourceOutputs({"source": volume, "path": volume}, reference=volume),
    }


def test_a_workload_resolves_with_its_resources_outputs(tmp_path):
    release = tmp_path / "release"
    (release / "config").mkdir(parents=True)
    (release / "config" / "rules.yaml").write_text("owner: ${metadata.name}\n")
    workload = parse(FULL)

    resolved = resolve_workload(workload, full_outputs(), source_root=release)

    web = resolved.container("web")
    assert web.variables == {
        "LOG_LEVEL": "debug",
        "DATABASE_URL": "postgres://app:hunter2@db/orders",
    }
    assert web.command == ("python", "-m", "orders")
    files = {file.target: file for file in web.files}
    assert files["/etc/orders/config.toml"].content == b'team = "checkout"\n'
    assert files["/etc/orders/raw.txt"].content == b"${left} as written"  # noExpand
    assert files["/etc/orders/logo.bin"].content == b"\x00\x01\x02\xff"
    assert files["/etc/orders/rules.yaml"].content == b"owner: orders\n"
    assert web.volumes[0].source == "/srv/volumes/orders-data"  # ${resources.data}
    assert web.liveness_probe is not None and web.liveness_probe.http_get is not None
    assert web.liveness_probe.http_get.headers[0].value == "orders"
    assert web.readiness_probe == Probe(exec_command=("python", "-c", "print('orders')"))
    assert resolved.params["db-password"] == {"name": "DB_PASSWORD"}
    assert environment_for(resolved, "worker") == {}


def test_secret_outputs_are_substituted_and_everything_they_reach_is_marked(tmp_path):
    workload = parse(
        workload_with(
            """
            args: ["--token", "${resources.token.value}"]
            variables:
              PLAIN: ${resources.env.LOG_LEVEL}
              TOKEN_URL: https://x:${resources.token.value}@api
            files:
              /etc/token: {content: "${resources.token.value}"}
              /etc/plain: {content: "${metadata.name}"}
            """,
            "env: {type: environment}\ntoken: {type: secret, params: {name: TOKEN}}\n",
        )
    )
    outputs = {"env": ResourceOutputs({"LOG_LEVEL": "info"}), "token": secret_outputs("s3cr3t")}

    resolved = resolve_workload(workload, outputs)

    main = resolved.container("main")
    assert main.variables["TOKEN_URL"] == "https://x:s3cr3t@api"
    assert main.secret_variables == {"TOKEN_URL"}
    assert main.secret_arguments
    assert [file.secret for file in main.files] == [True, False]
    assert resolved.secret_values == {"s3cr3t"}
    assert main.redacted_variables() == {"PLAIN": "info", "TOKEN_URL": "********"}
    assert outputs["token"].redacted() == {"value": "********"}
    for shown in (repr(resolved), repr(main), repr(outputs["token"]), repr(main.files)):
        assert "s3cr3t" not in shown


def test_outputs_are_followed_into_nested_values_and_rendered_as_json():
    workload = parse(
        workload_with(
            """
            variables:
              HOST: ${resources.db.conn.primary.host}
              SECOND: ${resources.db.replicas.1}
              PORT: ${resources.db.port}
              TLS: ${resources.db.tls}
              CONN: ${resources.db.conn}
              LITERAL: $${resources.db.port} costs $$5
              RAW: ${resources.db.template}
            """,
            "db: {type: postgres}\n",
        )
    )
    outputs = {
        "db": {
            "conn": {"primary": {"host": "db-1"}},
            "replicas": ["db-2", "db-3"],
            "port": 5432,
            "tls": True,
            "template": "${metadata.name}",  # a value is never expanded again
        }
    }

    variables = environment_for(resolve_workload(workload, outputs), "main")

    assert variables == {
        "HOST": "db-1",
        "SECOND": "db-3",
        "PORT": "5432",
        "TLS": "true",
        "CONN": '{"primary":{"host":"db-1"}}',
        "LITERAL": "${resources.db.port} costs $5",
        "RAW": "${metadata.name}",
    }


def test_unresolvable_placeholders_are_all_named_with_where_they_are_used():
    workload = parse(
        workload_with(
            """
            variables:
              A: ${resources.db.hots}
              B: ${resources.db.conn.nope}
              C: ${resources.cache.url}
            """,
            "db: {type: postgres}\ncache: {type: redis}\n",
        )
    )
    with pytest.raises(PlaceholderError) as caught:
        resolve_workload(workload, {"db": {"host": "h", "conn": {"host": "h"}}})

    assert caught.value.detail.splitlines() == [
        "score.yaml:8: containers.main.variables.A: ${resources.db.hots}: resource 'db' "
        "(postgres) has no output 'hots' (did you mean 'host'?); its outputs: conn, host",
        "score.yaml:9: containers.main.variables.B: ${resources.db.conn.nope}: output "
        "'conn' of 'db' has no key 'nope'",
        "score.yaml:10: containers.main.variables.C: ${resources.cache.url}: resource "
        "'cache' (redis) has not been provisioned",
    ]
    assert caught.value.status == 400


def test_params_resolve_with_earlier_outputs_and_a_lone_placeholder_keeps_its_type():
    workload = parse(
        workload_with(
            resources="""
            server: {type: postgres}
            app-db:
              type: postgres-database
              params:
                port: ${resources.server.port}
                dsn: "host=${resources.server.host} port=${resources.server.port}"
                owners: ["${metadata.name}", team]
                ref: ${resources.server}
            """
        )
    )
    outputs = {"server": ResourceOutputs({"host": "pg", "port": 5432})}
    assert resolve_params(workload, "app-db", outputs) == {
        "port": 5432,
        "dsn": "host=pg port=5432",
        "owners": ["shop", "team"],
        "ref": "postgres.default#shop.server",
    }
    with pytest.raises(
        PlaceholderError, match=r"resource 'server' \(postgres\) has not been provisioned"
    ):
        resolve_params(workload, "app-db", {})


def test_file_sources_come_from_the_release_and_never_from_outside_it(tmp_path):
    workload = parse(
        workload_with(
            """
            files:
              /etc/a.conf: {source: conf/a.conf}
              /etc/b.bin: {source: conf/b.bin, noExpand: true}
            """
        )
    )
    release = tmp_path / "release"
    (release / "conf").mkdir(parents=True)
    (release / "conf" / "a.conf").write_text("name=${metadata.name}")
    (release / "conf" / "b.bin").write_bytes(b"\xff${metadata.name}")
    files = resolve_workload(workload, {}, source_root=release).container("main").files
    assert [file.content for file in files] == [b"name=shop", b"\xff${metadata.name}"]

    with pytest.raises(PlaceholderError, match=r"conf/a\.conf is read from the release's files"):
        resolve_workload(workload, {})

    outside = tmp_path / "outside.conf"
    outside.write_text("stolen")
    (release / "conf" / "a.conf").unlink()
    (release / "conf" / "a.conf").symlink_to(outside)
    with pytest.raises(PlaceholderError, match=r"'conf/a\.conf' is outside the release"):
        resolve_workload(workload, {}, source_root=release)

    (release / "conf" / "a.conf").unlink()
    with pytest.raises(PlaceholderError, match=r"there is no file conf/a\.conf in the release"):
        resolve_workload(workload, {}, source_root=release)


def test_an_expanded_file_over_the_size_cap_is_refused():
    workload = parse(
        workload_with(
            'files:\n  /etc/big: {content: "${resources.blob.data}"}\n', "blob: {type: blob}\n"
        )
    )
    with pytest.raises(PlaceholderError, match="over the limit of"):
        resolve_workload(workload, {"blob": {"data": "x" * (MAX_FILE_BYTES + 1)}})


def test_an_unknown_container_is_not_found():
    resolved = resolve_workload(parse(workload_with()), {})
    with pytest.raises(
        NotFoundError, match="workload shop has no container 'web'; its containers: main"
    ):
        environment_for(resolved, "web")


# -- files on disk ------------------------------------------------------------------------


def test_files_are_written_under_the_root_with_their_modes(tmp_path):
    workload = parse(
        workload_with(
            """
            files:
              /etc/app/config.toml: {content: "name = '${metadata.name}'", mode: "0600"}
              run/start.sh: {content: "#!/bin/sh\\n", mode: "755"}
            """
        )
    )
    resolved = resolve_workload(workload, {})
    root = tmp_path / "instance"
    (root / "etc" / "app").mkdir(parents=True)
    (root / "etc" / "app" / "config.toml").symlink_to(tmp_path / "elsewhere")  # replaced

    written = write_files(resolved, "main", root)

    config = root / "etc" / "app" / "config.toml"
    assert written == [config, root / "run" / "start.sh"]
    assert not config.is_symlink() and config.read_text() == "name = 'shop'"
    assert not (tmp_path / "elsewhere").exists()
    assert config.stat().st_mode & 0o777 == 0o600
    assert (root / "run" / "start.sh").stat().st_mode & 0o777 == 0o755
    assert sorted(os.listdir(root / "etc" / "app")) == ["config.toml"]  # no temporary left


def test_a_file_target_that_leaves_the_root_writes_nothing(tmp_path):
    root = tmp_path / "instance"
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir()
    (root / "etc").symlink_to(outside)
    workload = parse(workload_with("files:\n  /a: {content: a}\n  /etc/passwd: {content: x}\n"))
    with pytest.raises(PathEscapeError):
        write_files(resolve_workload(workload, {}), "main", root)
    assert list(outside.iterdir()) == [] and not (root / "a").exists()

    sneaky = _resolved_with(ResolvedFile("/etc/../../x", 0o644, b"x"))
    with pytest.raises(PathEscapeError, match="is not a path inside the container"):
        write_files(sneaky, "main", tmp_path / "other")
    big = _resolved_with(ResolvedFile("/big", 0o644, b"x" * (MAX_FILE_BYTES + 1)))
    with pytest.raises(PayloadTooLargeError):
        write_files(big, "main", tmp_path / "other")


def _resolved_with(file: ResolvedFile) -> ResolvedWorkload:
    resolved = resolve_workload(parse(workload_with()), {})
    main = resolved.container("main")
    return dataclasses.replace(
        resolved, containers={"main": dataclasses.replace(main, files=(file,))}
    )


# -- resource types -----------------------------------------------------------------------


class _Queue(ResourceType):
    type = "queue"
    description = "A test queue."
    params_schema = {
        "type": "object",
        "required": ["size"],
        "properties": {"size": {"type": "integer"}},
    }
    outputs = {"url": "where to send"}

    def provision(self, request: ResourceRequest, ctx: ResourceContext) -> Any:
        return {"url": f"queue://{request.name}"}


def test_the_built_in_resource_types_come_from_the_plugin_hook():
    types = ResourceTypes.from_plugins(plugin_manager())
    assert types.names() == ["environment", "route", "secret", "service-port", "volume"]
    with pytest.raises(
        UnknownResourceTypeError,
        match="unknown resource type 'volum' "
        r"\(did you mean 'volume'\?\); known types: environment, route",
    ):
        types.get("volum")
    with pytest.raises(ValueError, match="two plugins register the resource type 'queue'"):
        ResourceTypes([_Queue(), _Queue()])


def test_resource_types_check_a_workload_before_it_is_deployed():
    types = ResourceTypes([*ResourceTypes.from_plugins(), _Queue()])
    workload = parse(
        workload_with(
            """
            variables:
              A: ${resources.jobs.uri}
              B: ${resources.pw.value}
              C: ${resources.env.ANYTHING}
            """,
            """
            jobs: {type: queue, params: {size: "${metadata.name}"}}
            jobs2: {type: queue, params: {size: big}}
            pw: {type: secret, params: {name: 1}}
            db: {type: postgres}
            env: {type: environment}
            """,
        )
    )
    assert [str(problem) for problem in types.check(workload)] == [
        "8: containers.main.variables.A: ${resources.jobs.uri}: a queue resource has no "
        "output 'uri' (did you mean 'url'?); its outputs: url",
        "13: resources.jobs2.params: params.size: 'big' is not of type 'integer'",
        "14: resources.pw.params: params.name: 1 is not of type 'string'",
        "15: resources.db.type: unknown resource type 'postgres'; known types: environment, "
        "queue, route, secret, service-port, volume",
    ]
