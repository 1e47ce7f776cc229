"""Deployments through the ``pave`` command against a real ``pave server --background``
process, and the faults a real host has: a redeploy under steady load loses no request,
an instance killed with SIGKILL is started again, the server killed in the middle of a
deploy ends it cleanly after restarting with exactly one release live."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration_support import DEMO_DIR
from test_cli import PAVE, _free_port, cli_env, pave

from pavedroad.identity.policy import Role

SERVICE = """\
import http.server, os, sys, time

VERSION = open("VERSION").read().strip()
if os.environ.get("SLOW_START"):
    time.sleep(float(os.environ["SLOW_START"]))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = VERSION.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


print("serving", VERSION, flush=True)
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
"""

SCORE = """\
apiVersion: score.dev/v1b1
metadata:
  name: cart-service
containers:
  main:
    image: .
    command: ["python", "app.py"]
    variables:
      SLOW_START: "{slow}"
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
"""


class Server:
    """``pave server --background`` that the test may kill and start again."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.home / "server.log").open("a")
        self.process = subprocess.Popen(
            [str(PAVE), "server", "--background", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env | {"PYTHONUNBUFFERED": "1", "PAVEDROAD_PORT": str(self.port)},
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail("pave server did not start:\n" + (self.home / "server.log").read_text())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    from pavedroad.app import create_app
    from pavedroad.settings import Settings

    home = tmp_path / "home"
    env = cli_env(home) | {
        "PAVEDROAD_DEPLOYMENTS__DRAIN_SECONDS": "1",
        "PAVEDROAD_DEPLOYMENTS__READY_TIMEOUT_SECONDS": "20",
        "PAVEDROAD_RUNTIME__RESTART_BACKOFF_INITIAL_SECONDS": "0.2",
    }
    app = create_app(Settings(home=home, database_url=f"sqlite:///{home / 'pavedroad.db'}"))
    try:
        for part in (
            "org/groups.yaml",
            "org/users.yaml",
            "systems/systems.yaml",
            "components/storefront.yaml",
            "environments/environments.yaml",
        ):
            app.state.catalog.register_location("file", str(DEMO_DIR / part))
        identity = app.state.identity
        tokens = {}
        for name in ("bob", "carol"):
            identity.create_account(name, Role.member)
            tokens[name] = identity.create_token(name, "cli", ["read", "write"])[1]
    finally:
        app.state.db.dispose()
    platform = Server(home, env)
    platform.start()
    try:
        yield (
            platform,
            env
            | {
                "PAVEDROAD_URL": platform.url,
                "PAVEDROAD_TOKEN": tokens["bob"],
                "CAROL_TOKEN": tokens["carol"],
            },
        )
    finally:
        platform.stop()
        subprocess.run(
            [str(PAVE), "ps"],
            env=env | {"PAVEDROAD_URL": platform.url},
            check=False,
            capture_output=True,
        )
        _stop_instances(home)


def _stop_instances(home: Path) -> None:
    from pavedroad.runtimes.local.supervisor import LocalRuntime
    from pavedroad.settings import RuntimeSettings

    runtime = LocalRuntime(home / "runtime", RuntimeSettings())
    for state in runtime.instances():
        runtime.remove(state.id, 2)


def service_folder(root: Path, version: str, slow: str = "") -> Path:
    folder = root / f"cart-{version}"
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(SERVICE)
    (folder / "VERSION").write_text(version + "\n")
    (folder / "requirements.txt").write_text("")
    (folder / "score.yaml").write_text(SCORE.format(slow=slow))
    return folder


def make_release(env: dict[str, str], folder: Path) -> str:
    made = pave(
        "release", "create", str(folder), "--component", "cart-service", env=env, cwd=folder
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.split("release ")[1].split()[0]


def get(url: str, path: str, env: dict[str, str]) -> Any:
    response = httpx.get(url + path, headers={"authorization": f"Bearer {env['PAVEDROAD_TOKEN']}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_deploy_under_load_and_an_instance_killed(
    server: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    platform, env = server
    v1 = make_release(env, service_folder(tmp_path, "v1"))
    deployed = pave(
        "deploy",
        "cart-service",
        "--env",
        "development",
        "--release",
        v1,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert deployed.returncode == 0, (deployed.stdout, deployed.stderr)
    assert "live: http://cart-service.development.localhost" in deployed.stdout
    assert "ready" in deployed.stdout and "switch" in deployed.stdout

    # a redeploy while 200 requests a second arrive: none fails
    host = {"host": "cart-service.development.localhost"}
    answers: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=platform.url, headers=host, timeout=10) as client:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    response = client.get("/")
                    if response.status_code == 200:
                        answers[response.text] += 1
                    else:
                        failures.append(f"{response.status_code} {response.text[:100]}")
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                time.sleep(max(0.0, 0.02 - (time.monotonic() - began)))  # 50/s per thread

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        v2 = make_release(env, service_folder(tmp_path, "v2"))
        again = pave(
            "deploy",
            "cart-service",
            "--env",
            "development",
            "--release",
            v2,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert answers["v1"] > 50 and answers["v2"] > 50, answers

    # pave ps and pave logs show what serves
    shown = pave("ps", "cart-service", env=env, cwd=tmp_path)
    assert shown.returncode == 0 and v2 in shown.stdout and v1 not in shown.stdout
    logs = pave("logs", "cart-service", "--env", "development", env=env, cwd=tmp_path)
    assert "serving v2" in logs.stdout

    # SIGKILL of the instance: its supervisor starts it again
    instance = get(platform.url, "/api/v1/instances", env)["items"][0]
    os.kill(instance["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = get(platform.url, "/api/v1/instances", env)["items"][0]
        if current["restarts"] >= 1 and current["status"] == "running":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(current)
    deadline = time.monotonic() + 15  # serving again once it listens
    while httpx.get(platform.url + "/", headers=host).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert httpx.get(platform.url + "/", headers=host).text == "v2"


def test_the_server_killed_during_a_deploy(
    server: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    platform, env = server
    v1 = make_release(env, service_folder(tmp_path, "v1"))
    assert (
        pave(
            "deploy",
            "cart-service",
            "-e",
            "development",
            "-r",
            v1,
            env=env,
            cwd=tmp_path,
            timeout=120,
        ).returncode
        == 0
    )
    slow = make_release(env, service_folder(tmp_path, "v2", slow="4"))
    started = pave(
        "deploy",
        "cart-service",
        "-e",
        "development",
        "-r",
        slow,
        "--no-wait",
        env=env,
        cwd=tmp_path,
    )
    assert started.returncode == 0, started.stderr
    number = started.stdout.split()[1].rstrip(":")
    deadline = time.monotonic() + 30
    while get(platform.url, f"/api/v1/deployments/{number}", env)["step"] != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    platform.kill()  # in the middle of the readiness check

    # the old release still serves while the platform is down
    platform.start()
    deadline = time.monotonic() + 60
    while True:
        ended = get(platform.url, f"/api/v1/deployments/{number}", env)
        if ended["status"] not in ("queued", "running"):
            break
        assert time.monotonic() < deadline, ended
        time.sleep(0.3)
    assert ended["status"] == "failed" and "stopped during ready" in ended["reason"]
    lives = [e for e in get(platform.url, "/api/v1/environments/development", env)["live"]]
    assert [live["release"] for live in lives] == [v1]
    instances = get(platform.url, "/api/v1/instances", env)["items"]
    assert [i["releaseId"] for i in instances] == [v1]
    answer = httpx.get(platform.url + "/", headers={"host": "cart-service.development.localhost"})
    assert answer.text == "v1"


def test_promote_approve_and_roll_back_with_the_cli(
    server: tuple[Server, dict[str, str]], tmp_path: Path
) -> None:
    platform, env = server
    v1 = make_release(env, service_folder(tmp_path, "v1"))
    assert (
        pave(
            "deploy",
            "cart-service",
            "-e",
            "development",
            "-r",
            v1,
            env=env,
            cwd=tmp_path,
            timeout=120,
        ).returncode
        == 0
    )
    listed = pave("env", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0
    assert "production" in listed.stdout and "staging" in listed.stdout
    refused = pave("promote", "cart-service", "--to", "production", env=env, cwd=tmp_path)
    assert (
        refused.returncode == 2
        and "nothing of component:default/cart-service is live in staging" in refused.stderr
    )
    staged = pave("promote", "cart-service", "--to", "staging", env=env, cwd=tmp_path, timeout=120)
    assert staged.returncode == 0, staged.stderr
    waiting = pave("promote", "cart-service", "--to", "production", env=env, cwd=tmp_path)
    assert waiting.returncode == 0 and "waiting for approval" in waiting.stdout
    number = waiting.stdout.split()[1].rstrip(":")
    own = pave("approve", number, env=env, cwd=tmp_path)
    assert own.returncode == 2 and "someone else must approve" in own.stderr
    carol = env | {"PAVEDROAD_TOKEN": env["CAROL_TOKEN"]}
    pending = pave("approve", env=carol, cwd=tmp_path)
    assert number in pending.stdout
    approved = pave("approve", number, env=carol, cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    deadline = time.monotonic() + 60
    while get(platform.url, f"/api/v1/deployments/{number}", env)["status"] != "live":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    shown = pave("env", "show", "production", env=env, cwd=tmp_path)
    assert v1 in shown.stdout

    v2 = make_release(env, service_folder(tmp_path, "v2"))
    assert (
        pave(
            "deploy",
            "cart-service",
            "-e",
            "development",
            "-r",
            v2,
            env=env,
            cwd=tmp_path,
            timeout=120,
        ).returncode
        == 0
    )
    rolled = pave(
        "rollback", "cart-service", "--env", "development", env=env, cwd=tmp_path, timeout=120
    )
    assert rolled.returncode == 0, rolled.stderr
    assert f"rollback of {v1}" in rolled.stdout
    answer = httpx.get(platform.url + "/", headers={"host": "cart-service.development.localhost"})
    assert answer.text == "v1"
