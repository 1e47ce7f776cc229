"""The ``pave`` command as a user runs it: real subprocesses, against a real
``pave server`` for the commands that talk to one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from integration_support import DEMO_DIR, DEMO_ROOT, DEMO_TOTAL, component, write, write_docs

PAVE = Path(sys.executable).with_name("pave")

# Every descriptor of the demo organisation (apis/openapi/ holds a definition, not an entity).
DEMO_ENTITY_FILES = sorted(
    p for p in DEMO_DIR.rglob("*.yaml") if not {"openapi", "skeleton"} & set(p.parts)
)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(home: Path, server: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAVEDROAD_")}
    home.mkdir(parents=True, exist_ok=True)
    empty = home / "empty-pavedroad.yaml"
    empty.write_text("")
    env.update(
        PAVEDROAD_HOME=str(home),
        PAVEDROAD_CONFIG=str(empty),
        NO_COLOR="1",
        COLUMNS="200",
        TERM="dumb",
    )
    if server:
        env["PAVEDROAD_URL"] = server
    return env


def pave(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PAVE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@contextmanager
def running_server(
    home: Path, env: dict[str, str], command: tuple[str, ...] = ("server",)
) -> Iterator[str]:
    """``pave server`` (or another serving command, e.g. ``("up", "--demo")``) in a
    subprocess on a free port; yields its URL. Its output goes to ``home/server.log``."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        [str(PAVE), *command, "--host", "127.0.0.1", "--port", str(port)],
        env=env | {"PYTHONUNBUFFERED": "1"},
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("pave server did not start:\n" + (home / "server.log").read_text())
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``pave server`` with its own PAVEDROAD_HOME."""
    home = tmp_path_factory.mktemp("server-home")
    # The catalog commands are tried without sign-in; test_cli_login covers tokens.
    with running_server(home, cli_env(home) | {"PAVEDROAD_AUTH__REQUIRED": "false"}) as url:
        yield url


@pytest.fixture
def env(tmp_path, server):
    return cli_env(tmp_path / "client-home", server)


# -- without a server ----------------------------------------------------------------------


def test_help(tmp_path):
    result = pave("--help", env=cli_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for command in ("catalog", "server", "up", "worker", "migrate"):
        assert command in result.stdout
    catalog_help = pave("catalog", "--help", env=cli_env(tmp_path), cwd=tmp_path)
    assert catalog_help.returncode == 0
    for command in ("validate", "register", "list", "get", "refresh", "locations", "unregister"):
        assert command in catalog_help.stdout


def test_version(tmp_path):
    version = pave("--version", env=cli_env(tmp_path), cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("pave ")


def test_python_dash_m_runs_the_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pavedroad.cli.main", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0
    assert "catalog" in result.stdout


def test_validate_demo_files(tmp_path):
    result = pave(
        "catalog", "validate", *map(str, DEMO_ENTITY_FILES), env=cli_env(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{DEMO_TOTAL - 1} valid, 0 invalid in {len(DEMO_ENTITY_FILES)} file(s)" in result.stdout
    assert "component:default/orders-service" in result.stdout
    assert "error" not in result.stdout


def test_validate_json_output(tmp_path):
    result = pave(
        "catalog", "validate", "--json", str(DEMO_ROOT), env=cli_env(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0
    assert json.loads(result.stdout) == [
        {
            "path": str(DEMO_ROOT),
            "errors": [],
            "entities": [{"line": 3, "ref": "location:default/demo-organisation"}],
        }
    ]  # after two comment lines


def test_validate_invalid_file_reports_file_and_line(tmp_path):
    path = write(
        tmp_path / "broken.yaml",
        """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: fine
        spec: {type: service, lifecycle: production, owner: team-a}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: no-owner
        spec: {type: service, lifecycle: production}
        ---
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata: {name: [unclosed
        """,
    )
    result = pave("catalog", "validate", str(path), env=cli_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("error")]
    assert len(errors) == 2, result.stdout
    assert f"{path}:" in errors[0] and "/spec must have required property 'owner'" in errors[0]
    line_of_second = int(errors[0].split(f"{path}:")[1].split()[0])
    assert line_of_second in (6, 7)
    assert f"{path}:" in errors[1]
    assert "ok     " in result.stdout and "component:default/fine" in result.stdout
    assert "1 valid, 2 invalid in 1 file(s)" in result.stdout
    assert "Traceback" not in result.stderr


def test_validate_folder_and_glob(tmp_path):
    write_docs(tmp_path / "svc" / "a.yaml", component("a"))
    write_docs(tmp_path / "svc" / "nested" / "b.yml", component("b"))
    folder = pave("catalog", "validate", str(tmp_path / "svc"), env=cli_env(tmp_path), cwd=tmp_path)
    assert folder.returncode == 0 and "2 valid, 0 invalid in 2 file(s)" in folder.stdout
    glob = pave(
        "catalog", "validate", str(tmp_path / "svc" / "*.yaml"), env=cli_env(tmp_path), cwd=tmp_path
    )
    assert glob.returncode == 0 and "1 valid" in glob.stdout
    nothing = pave(
        "catalog",
        "validate",
        str(tmp_path / "nope" / "*.yaml"),
        env=cli_env(tmp_path),
        cwd=tmp_path,
    )
    assert_one_line_error(nothing, "no files matched")


def test_unreachable_server_is_one_clear_line(tmp_path):
    closed = f"http://127.0.0.1:{_free_port()}"
    for args in (
        ["catalog", "list"],
        ["catalog", "get", "component:x"],
        ["catalog", "locations"],
        ["catalog", "register", str(DEMO_ROOT)],
        ["catalog", "unregister", "x"],
        ["catalog", "refresh", "component:x"],
    ):
        result = pave(*args, "--server", closed, env=cli_env(tmp_path), cwd=tmp_path)
        assert_one_line_error(result, "cannot reach", closed)


@pytest.mark.parametrize("ref", ["component:", "a:b/", ":x", "kind:/name"])
def test_bad_ref_is_one_clear_line(tmp_path, ref):
    closed = f"http://127.0.0.1:{_free_port()}"
    result = pave("catalog", "get", ref, "--server", closed, env=cli_env(tmp_path), cwd=tmp_path)
    assert_one_line_error(result, ref)
    refresh = pave(
        "catalog", "refresh", ref, "--server", closed, env=cli_env(tmp_path), cwd=tmp_path
    )
    assert_one_line_error(refresh)


# -- against a live server -----------------------------------------------------------------


def test_register_list_get_refresh_unregister(env, tmp_path):
    registered = pave("catalog", "register", str(DEMO_ROOT), env=env, cwd=tmp_path)
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert f"Registered file:{DEMO_ROOT} (id " in registered.stdout
    assert f"{DEMO_TOTAL} entities" in registered.stdout
    location_id = registered.stdout.split("(id ")[1].split(")")[0]

    listed = pave("catalog", "list", "--kind", "component", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert len(items) == 12 and {i["kind"] for i in items} == {"Component"}
    table = pave(
        "catalog", "list", "--kind", "component", "--type", "website", env=env, cwd=tmp_path
    )
    assert table.returncode == 0
    assert "component:default/legacy-checkout" in table.stdout
    assert "component:default/orders-service" not in table.stdout
    owned = pave("catalog", "list", "--owner", "payments-team", "--json", env=env, cwd=tmp_path)
    assert sorted(i["metadata"]["name"] for i in json.loads(owned.stdout)) == [
        "payments",
        "payments-api",
        "payments-db",
        "payments-service",
        "payments-web-sdk",
    ]

    got = pave("catalog", "get", "component:orders-service", env=env, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert (
        "name: orders-service" in got.stdout
        and "targetRef: group:default/checkout-team" in got.stdout
    )
    as_json = pave("catalog", "get", "orders-service", "-o", "json", env=env, cwd=tmp_path)
    assert json.loads(as_json.stdout)["metadata"]["name"] == "orders-service"

    locations = pave("catalog", "locations", env=env, cwd=tmp_path)
    assert locations.returncode == 0
    assert location_id in locations.stdout and f"file:{DEMO_ROOT}" in locations.stdout
    located = json.loads(pave("catalog", "locations", "--json", env=env, cwd=tmp_path).stdout)
    assert (location_id, DEMO_TOTAL) in [(i["id"], i["status"]["entities"]) for i in located]

    refreshed = pave("catalog", "refresh", "component:orders-service", env=env, cwd=tmp_path)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.stdout.strip() == (
        "refreshed 1 source(s): 0 written, 7 unchanged, 0 orphaned, 0 error(s)"
    )
    whole = pave("catalog", "refresh", "--location", location_id, env=env, cwd=tmp_path)
    assert whole.returncode == 0 and f"0 written, {DEMO_TOTAL} unchanged" in whole.stdout

    missing = pave("catalog", "get", "component:nope", env=env, cwd=tmp_path)
    assert_one_line_error(missing, "No entity named 'nope'", "404")
    again = pave("catalog", "register", str(DEMO_ROOT), env=env, cwd=tmp_path)
    assert_one_line_error(again, "already exists", "409")

    unregistered = pave("catalog", "unregister", location_id, env=env, cwd=tmp_path)
    assert unregistered.returncode == 0
    assert unregistered.stdout.strip() == f"unregistered location {location_id}"
    left = pave("catalog", "list", "--search", "orders-service", "--json", env=env, cwd=tmp_path)
    assert json.loads(left.stdout) == []
    gone = pave("catalog", "unregister", location_id, env=env, cwd=tmp_path)
    assert_one_line_error(gone, location_id, "404")


def test_register_relative_path_and_dry_run(env, tmp_path):
    write_docs(tmp_path / "svc" / "catalog-info.yaml", component("cli-dry-run"))
    dry = pave("catalog", "register", "--dry-run", "svc/catalog-info.yaml", env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"Would register file:{tmp_path / 'svc' / 'catalog-info.yaml'}" in dry.stdout
    assert "2 entities" in dry.stdout
    assert (
        json.loads(
            pave(
                "catalog", "list", "--json", "--search", "cli-dry-run", env=env, cwd=tmp_path
            ).stdout
        )
        == []
    )
    real = pave("catalog", "register", "-o", "json", "svc/catalog-info.yaml", env=env, cwd=tmp_path)
    body = json.loads(real.stdout)
    assert body["location"]["target"] == str(tmp_path / "svc" / "catalog-info.yaml")
    pave("catalog", "unregister", body["location"]["id"], env=env, cwd=tmp_path)


def test_register_shows_errors_of_the_location(env, tmp_path):
    path = write(
        tmp_path / "catalog-info.yaml",
        """
        apiVersion: backstage.io/v1alpha1
        kind: Component
        metadata:
          name: "bad name"
        spec: {type: service, lifecycle: production, owner: team-a}
        """,
    )
    result = pave("catalog", "register", str(path), env=env, cwd=tmp_path)
    assert result.returncode == 1  # registered, with documents to fix
    assert f"error  file:{path}:1" in result.stdout
    assert '"metadata.name" is not valid' in result.stdout
    location_id = result.stdout.split("(id ")[1].split(")")[0]
    pave("catalog", "unregister", location_id, env=env, cwd=tmp_path)


def test_register_refused_url_is_one_clear_line(env, tmp_path):
    result = pave(
        "catalog", "register", "https://example.com/catalog-info.yaml", env=env, cwd=tmp_path
    )
    assert_one_line_error(result, "example.com", "allowed hosts", "400")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_migrate_and_worker_once(request, tmp_path, backend):
    env = cli_env(tmp_path / "home")
    if backend == "postgres":
        env["PAVEDROAD_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    migrated = pave("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("database is up to date: ")
    assert ("postgresql" if backend == "postgres" else "sqlite") in migrated.stdout
    again = pave("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    worker = pave("worker", "--once", env=env, cwd=tmp_path)
    assert worker.returncode == 0, worker.stderr
    assert "Traceback" not in worker.stderr
