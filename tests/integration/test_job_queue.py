"""The background job queue in both of its deployments, with real processes only.

Scale-out: one ``pave server`` and two ``pave worker`` processes sharing a PostgreSQL
database and a real Redis (started here on a free port): tasks spread over the workers,
and a worker killed in the middle of a task leaves no task ``processing`` forever.
Embedded: ``pave up`` on SQLite runs the tasks accepted while nothing consumed the queue,
from the message SQLite kept or, when the message was lost, from the database.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration_support import wait_for, write
from test_scaffolder_tasks import APP, CATALOG_INFO, TEMPLATE

PAVE = Path(sys.executable).with_name("pave")
TASKS = "/api/v1/scaffolder/tasks"
FINISHED = ("completed", "failed", "cancelled")
LOST_AFTER_SECONDS = 10  # the smallest scaffolder.lost_after_seconds allowed
REQUEUE_AFTER_SECONDS = 5  # the smallest scaffolder.requeue_after_seconds allowed

SLOW_TEMPLATE = """
apiVersion: scaffolder.backstage.io/v1beta3
kind: Template
metadata: {name: slow}
spec:
  owner: group:default/platform-team
  type: service
  parameters: []
  steps:
    - id: wait
      action: debug:wait
      input: {seconds: 60}
"""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


# -- Redis -----------------------------------------------------------------------------------


class RedisServer:
    def __init__(self, url: str, client: Any) -> None:
        self.url = url
        self.client = client

    def consumers(self) -> int:
        """Connections blocked waiting for a message (huey's workers use BRPOP)."""
        return sum(1 for c in self.client.client_list() if c.get("cmd") in ("brpop", "blpop"))


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` on a free port, in memory only, killed at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if in_ci():
            pytest.fail(reason + "; CI must run the scale-out queue tests", pytrace=False)
        pytest.skip(reason)
    import redis

    folder = Path(tempfile.mkdtemp(prefix="pavedroad-redis-"))
    port = free_port()
    log = (folder / "redis.log").open("w")
    options = ["--bind", "127.0.0.1", "--dir", str(folder), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, "--port", str(port), *options],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError("redis-server exited:\n" + (folder / "redis.log").read_text())
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_until("redis-server to answer", answers, timeout=20)
        yield RedisServer(f"redis://127.0.0.1:{port}/0", client)
    finally:
        client.close()
        process.kill()
        process.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


# -- pave processes --------------------------------------------------------------------------


class Processes:
    """``pave`` subprocesses, each with its own environment and log file."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [str(PAVE), *args],
                env=env | {"PYTHONUNBUFFERED": "1"},
                cwd=self.logs,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running[name] = process
        return process

    def serve(self, name: str, args: list[str], env: dict[str, str], port: int) -> str:
        """Start a serving command; its URL once /healthz answers."""
        url = f"http://127.0.0.1:{port}"
        process = self.start(name, [*args, "--host", "127.0.0.1", "--port", str(port)], env)

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.log(name)}")
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(f"{name} to serve", healthy, timeout=60)
        return url

    def workers(
        self, names: list[str], env: dict[str, str], consuming: Callable[[], int]
    ) -> dict[str, subprocess.Popen[bytes]]:
        """Start ``pave worker`` processes; once ``consuming()`` says each of their
        threads waits on the queue."""
        before = consuming()
        started = {name: self.start(name, ["worker"], env) for name in names}

        def ready() -> bool:
            for name, process in started.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited:\n{self.log(name)}")
            return consuming() >= before + len(names) * int(env.get("PAVEDROAD_WORKERS", "2"))

        wait_until("the workers to consume the queue", ready, timeout=60)
        return started

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # both `pave server` and `pave worker` stop
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def base_env(home: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAVEDROAD_")}
    env.update(
        PAVEDROAD_HOME=str(home),
        PAVEDROAD_CONFIG=str(config),
        PAVEDROAD_AUTH__REQUIRED="false",
        PAVEDROAD_LOG_LEVEL="info",
        NO_COLOR="1",
    )
    return env


class Api:
    """The scaffolder through one server's HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def register_templates(self, root: Path) -> None:
        tiny = root / "tiny"
        write(tiny / "template.yaml", TEMPLATE.format(name="tiny"))
        write(tiny / "skeleton" / "catalog-info.yaml", CATALOG_INFO)
        write(tiny / "skeleton" / "app.py", APP)
        write(root / "slow" / "template.yaml", SLOW_TEMPLATE)
        for name in ("tiny", "slow"):
            target = str(root / name / "template.yaml")
            response = self.http.post(
                "/api/v1/catalog/locations", json={"type": "file", "target": target}
            )
            assert response.status_code == 201, response.text

    def start(self, template: str, values: dict[str, Any]) -> str:
        response = self.http.post(
            TASKS, json={"templateRef": f"template:default/{template}", "values": values}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.http.get(f"{TASKS}/{task_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, task_id: str, timeout: float = 30) -> dict[str, Any]:
        return dict(
            wait_until(
                f"task {task_id} to finish",
                lambda: (task := self.task(task_id))["status"] in FINISHED and task,
                timeout,
            )
        )

    def log(self, task_id: str) -> list[str]:
        events = self.http.get(f"{TASKS}/{task_id}/events").json()["items"]
        return [e["body"]["message"] for e in events if e["type"] == "log"]


def _process_table() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, session id) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def task_processes(worker: int) -> list[int]:
    """The scaffolder task processes a worker runs: its descendants that lead a session
    of their own (the task runner starts each task in one, to kill it as a whole)."""
    table = _process_table()
    found, parents = [], {worker}
    while parents:
        children = [pid for pid, (ppid, _sid) in table.items() if ppid in parents]
        found += [pid for pid in children if table[pid][1] == pid]
        parents = set(children)
    return found


def task_id_of(pid: int) -> str | None:
    """The task a task process runs: its output goes to ``<task id>.output``."""
    try:
        output = Path(os.readlink(f"/proc/{pid}/fd/1"))
    except OSError:
        return None
    return output.stem if output.suffix == ".output" else None


def alive(pid: int) -> bool:
    """Running, not merely a zombie nobody reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TaskWatcher:
    """Notes, every few milliseconds, which worker process runs which task."""

    def __init__(self, workers: dict[str, subprocess.Popen[bytes]]) -> None:
        self.workers = workers
        self.seen: dict[str, set[str]] = {name: set() for name in workers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> TaskWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            for name, process in self.workers.items():
                for pid in task_processes(process.pid):
                    if task := task_id_of(pid):  # None until it writes to its output file
                        self.seen[name].add(task)


# -- scale-out: pave server + pave worker, PostgreSQL and Redis ----------------------------


class ScaleOut:
    def __init__(
        self, processes: Processes, env: dict[str, str], api: Api, home: Path, redis: RedisServer
    ) -> None:
        self.processes = processes
        self.env = env
        self.api = api
        self.home = home
        self.redis = redis


@pytest.fixture(scope="module")
def scale_out(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    postgres_cluster: Any,
    database_templates: Any,
) -> Iterator[ScaleOut]:
    """A PostgreSQL database with the demo organisation, a Redis queue, one shared
    PAVEDROAD_HOME (the hosted git repositories live there) and one ``pave server``
    that runs no background work. The tests start their own workers."""
    root = tmp_path_factory.mktemp("scale-out")
    home = root / "home"
    config = write(root / "pavedroad.yaml", "")
    name = database_templates.postgres_copy(postgres_cluster, "demo")
    port = free_port()
    env = base_env(home, config) | {
        "PAVEDROAD_DATABASE_URL": postgres_cluster.url(name),
        "PAVEDROAD_QUEUE_URL": redis_server.url,
        # every machine of a deployment is given the same key, not a file in its home
        "PAVEDROAD_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PAVEDROAD_BASE_URL": f"http://127.0.0.1:{port}",
        "PAVEDROAD_WORKERS": "1",  # one task at a time per worker: both must take some
        "PAVEDROAD_SCAFFOLDER__LOST_AFTER_SECONDS": str(LOST_AFTER_SECONDS),
    }
    processes = Processes(root / "logs")
    try:
        api = Api(processes.serve("server", ["server"], env, port))
        api.register_templates(root / "templates")
        yield ScaleOut(processes, env, api, home, redis_server)
    finally:
        processes.stop_all()
        postgres_cluster.drop_database(name)


@pytest.fixture
def workers(scale_out: ScaleOut) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Two ``pave worker`` processes, stopped after the test."""
    started = scale_out.processes.workers(["w1", "w2"], scale_out.env, scale_out.redis.consumers)
    try:
        yield started
    finally:
        for name in started:
            scale_out.processes.stop(name)


def test_two_workers_share_the_tasks_a_server_accepted(scale_out, workers):
    api = scale_out.api
    names = [f"shared-{i}" for i in range(4)]

    with TaskWatcher(workers) as watcher:
        ids = [
            api.start("tiny", {"name": name, "owner": "checkout-team", "token": "tok-12345678"})
            for name in names
        ]
        tasks = [api.wait(task_id) for task_id in ids]

    assert [t["status"] for t in tasks] == ["completed"] * 4, [
        (t["error"], api.log(t["id"])) for t in tasks
    ]
    for name in names:  # published into the shared home, registered in the shared database
        assert api.http.get(f"/api/v1/git/repos/checkout-team/{name}").status_code == 200
        entity = api.http.get(f"/api/v1/catalog/entities/component/default/{name}")
        assert entity.status_code == 200, entity.text
    # each worker ran some of the tasks, and no task ran twice
    assert all(watcher.seen.values()), watcher.seen
    assert sorted(watcher.seen["w1"] | watcher.seen["w2"]) == sorted(ids), watcher.seen
    assert not watcher.seen["w1"] & watcher.seen["w2"], watcher.seen
    assert not (scale_out.home / "queue.db").exists()  # the queue was Redis, not SQLite


def test_a_task_whose_worker_is_killed_fails_and_the_other_worker_carries_on(scale_out, workers):
    api = scale_out.api
    slow = api.start("slow", {})
    runners = wait_until(
        "the slow task's process to start",
        lambda: {
            name: pids for name, process in workers.items() if (pids := task_processes(process.pid))
        },
        timeout=30,
    )
    assert len(runners) == 1 and len(next(iter(runners.values()))) == 1, runners
    [(victim, [child])] = runners.items()
    assert task_id_of(child) == slow
    assert api.task(slow)["status"] == "processing"
    try:
        killed_at = time.monotonic()
        workers[victim].kill()  # SIGKILL: no chance to clean up
        workers[victim].wait(10)

        # the other worker still takes new work
        survivor = {name: process for name, process in workers.items() if name != victim}
        with TaskWatcher(survivor) as watcher:
            after = api.start("tiny", {"name": "after-kill", "owner": "checkout-team"})
            assert api.wait(after)["status"] == "completed"
        assert list(watcher.seen.values()) == [{after}]

        # and the orphaned task ends, failed, once its heartbeat is old enough
        ended = api.wait(slow, timeout=LOST_AFTER_SECONDS + 45)  # + the reconciler interval
        assert ended["status"] == "failed"
        assert "worker" in ended["error"] and "retry" in ended["error"], ended["error"]
        assert time.monotonic() - killed_at >= LOST_AFTER_SECONDS - 5.5  # not before
        assert "waited 60 s" not in api.log(slow)

        gone = wait_for(lambda: not alive(child), timeout=3)
    finally:
        if alive(child):
            os.killpg(child, signal.SIGKILL)  # the task process leads its process group
    assert gone, "the task process outlived its killed worker"


# -- embedded: pave up on SQLite ---------------------------------------------------------------


def test_pave_up_runs_the_tasks_accepted_while_no_worker_ran(
    tmp_path: Path, database_templates: Any
) -> None:
    from huey import SqliteHuey

    home = tmp_path / "home"
    database_templates.sqlite_copy("demo", home / "pavedroad.db")  # the default database
    config = write(tmp_path / "pavedroad.yaml", "")
    env = base_env(home, config) | {
        "PAVEDROAD_SCAFFOLDER__REQUEUE_AFTER_SECONDS": str(REQUEUE_AFTER_SECONDS),
    }
    processes = Processes(tmp_path / "logs")
    queue = SqliteHuey("pavedroad", filename=str(home / "queue.db"), results=False)
    try:
        api = Api(processes.serve("server", ["server"], env, free_port()))
        api.register_templates(tmp_path / "templates")
        lost = api.start("tiny", {"name": "lost-message", "owner": "checkout-team"})
        queue.flush()  # its message is lost, as with a queue file deleted or restored
        kept = api.start("tiny", {"name": "kept-message", "owner": "checkout-team"})
        assert api.task(lost)["status"] == api.task(kept)["status"] == "open"
        processes.stop("server")
        assert queue.pending_count() == 1
    finally:
        processes.stop_all()
    try:
        up = Api(processes.serve("up", ["up"], env, free_port()))
        kept_task = up.wait(kept)  # from the message SQLite kept
        assert kept_task["status"] == "completed", (kept_task["error"], up.log(kept))
        lost_task = up.wait(lost, timeout=REQUEUE_AFTER_SECONDS + 20)  # queued again
        assert lost_task["status"] == "completed", (lost_task["error"], up.log(lost))
        assert up.http.get("/api/v1/git/repos/checkout-team/lost-message").status_code == 200
    finally:
        processes.stop_all()
    assert queue.pending_count() == 0


# -- settings mistakes -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["worker", "up"])  # `server` starts as `up` does
def test_a_queue_url_that_is_not_redis_is_one_clear_error(tmp_path: Path, command: str) -> None:
    config = write(tmp_path / "pavedroad.yaml", "")
    env = base_env(tmp_path / "home", config) | {
        "PAVEDROAD_QUEUE_URL": "amqp://guest:hunter2@queue.example/",
    }

    port = [] if command == "worker" else ["--port", str(free_port())]
    result = subprocess.run(
        [str(PAVE), command, *port],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
        check=False,
    )

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: queue_url (PAVEDROAD_QUEUE_URL) must be a redis://")
    assert "not amqp://" in lines[0] and "hunter2" not in lines[0]
