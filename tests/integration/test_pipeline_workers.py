"""Pipeline jobs on real worker processes: a real Redis, a real PostgreSQL, one
``pave server`` and ``pave worker`` processes with labels of their own, sharing one
PAVEDROAD_HOME (the hosted repositories live there). Commits are pushed with git over
the repository's path, so the push hook's spool brings them to the platform as it does
for a push over HTTP.

- Routing: each job runs on a worker that has its ``runs-on`` label.
- A worker killed with SIGKILL mid-step: its job is retried on the other worker after
  its heartbeat is lost, or by the killed worker's own ``stop_orphans`` when it comes
  back; the step's processes do not outlive it and the run never stays "running".
- Pushes made while nothing ran are run once the platform starts: embedded ``pave up``
  on SQLite; on PostgreSQL a ``pave server --background``, a ``pave worker`` and two
  ``pave worker --once`` started together, which race to import the same spooled pushes
  and to start runs for the same recorded ones: each push gets one run, run once.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration_support import write
from test_git_http import commit_file, run_git
from test_job_queue import (  # noqa: F401  (redis_server is a fixture)
    Processes,
    RedisServer,
    alive,
    base_env,
    free_port,
    redis_server,
    wait_until,
)

from pavedroad.core.db import Database
from pavedroad.git.service import GitService
from pavedroad.pipelines.processes import marked_processes
from pavedroad.settings import Settings

RUNS = "/api/v1/pipelines/runs"
FINISHED = ("succeeded", "failed", "cancelled")
OWNER = "checkout-team"
LOST_AFTER_SECONDS = 10  # the smallest pipelines.lost_after_seconds allowed
HEARTBEAT_SECONDS = 5  # how often a running job writes its heartbeat
RECOVERY_INTERVAL_SECONDS = 10  # how often a process looks for lost jobs
HOST = socket.gethostname()
PUSHES = 6  # of each kind in the race

ROUTED = """
on: push
jobs:
  alpha:
    runs-on: [alpha]
    strategy: {matrix: {n: [1, 2, 3]}}
    steps:
      - run: echo "alpha ${{ matrix.n }}"
  beta:
    runs-on: [beta]
    strategy: {matrix: {n: [1, 2, 3]}}
    steps:
      - run: echo "beta ${{ matrix.n }}"
  anywhere:
    steps:
      - run: echo anywhere
"""

# The first attempt leaves a mark and sleeps; the retry finds the mark and ends at once.
SLOW_ONCE = """
on: push
jobs:
  slow:
    runs-on: [gamma]
    retries: 1
    steps:
      - run: |
          if [ -e "{marks}/first" ]; then echo "second attempt"; exit 0; fi
          touch "{marks}/first"
          sleep 120
"""

# Each execution of the job adds a line: how often each run's job really ran.
COUNTED = """
on: push
jobs:
  count:
    steps:
      - run: echo "$PAVEDROAD_RUN_ID" >> "{executions}"
"""


# -- the platform: pave server + workers on PostgreSQL and Redis ---------------------------


class Api:
    """Repositories and pipeline runs through one server's HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def create_repo(self, name: str) -> None:
        response = self.http.post("/api/v1/git/repos", json={"owner": OWNER, "name": name})
        assert response.status_code == 201, response.text

    def runs(self, repository: str) -> list[dict[str, Any]]:
        response = self.http.get(RUNS, params={"repository": repository, "limit": 500})
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"{RUNS}/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def finished_runs(self, repository: str, count: int, timeout: float) -> list[dict[str, Any]]:
        """The repository's runs once ``count`` of them have ended, with their jobs."""

        def ended() -> list[dict[str, Any]] | None:
            runs = self.runs(repository)
            done = [run for run in runs if run["status"] in FINISHED]
            return [self.run(run["id"]) for run in runs] if len(done) >= count else None

        return list(wait_until(f"{count} run(s) of {repository} to end", ended, timeout))

    def log(self, job_id: str) -> str:
        return self.http.get(f"/api/v1/pipelines/jobs/{job_id}/log.txt").text


class Checkout:
    """A working copy of a hosted repository that pushes over the repository's path."""

    def __init__(self, home: Path, work: Path, name: str) -> None:
        self.repository = f"{OWNER}/{name}"
        self.work = work
        bare = home / "git" / OWNER / f"{name}.git"
        run_git("clone", "-q", str(bare), str(work), cwd=work.parent)

    def push(self, files: dict[str, str], message: str = "change") -> str:
        *first, (last, text) = files.items()
        for path, earlier in first:
            write(self.work / path, earlier)
        commit_file(self.work, last, text, message)  # one commit with every file
        run_git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return run_git("rev-parse", "HEAD", cwd=self.work).stdout.strip()


class Platform:
    def __init__(
        self, processes: Processes, env: dict[str, str], api: Api, home: Path, root: Path
    ) -> None:
        self.database_url = env["PAVEDROAD_DATABASE_URL"]
        self.processes = processes
        self.env = env
        self.api = api
        self.home = home
        self.root = root
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def checkout(self, name: str) -> Checkout:
        self.api.create_repo(name)
        return Checkout(self.home, self.root / f"work-{name}", name)

    def start_workers(self, labels: dict[str, list[str]]) -> dict[str, subprocess.Popen[bytes]]:
        """``pave worker`` processes, each with its labels and one job at a time; once
        each has started its consumers."""
        started = {
            name: self.processes.start(
                name,
                ["worker"],
                self.env | {"PAVEDROAD_PIPELINES__LABELS": json.dumps(worker_labels)},
            )
            for name, worker_labels in labels.items()
        }
        self.workers.update(started)

        def ready() -> bool:
            for name, process in started.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited:\n{self.processes.log(name)}")
            return all("pave worker: processing" in self.processes.log(n) for n in started)

        wait_until("the workers to start", ready, timeout=60)
        return started

    def kill(self, name: str) -> None:
        """SIGKILL: the worker gets no chance to clean up."""
        process = self.workers.pop(name)
        self.processes.running.pop(name)
        process.kill()
        process.wait(10)

    def stop_workers(self) -> None:
        """Stop them all at once (SIGINT: each lets its jobs finish), not one by one."""
        stopping = [self.processes.running.pop(name) for name in self.workers]
        self.workers.clear()
        for process in stopping:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in stopping:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,  # noqa: F811
    postgres_cluster: Any,
    database_templates: Any,
) -> Iterator[Platform]:
    """A PostgreSQL database with the demo organisation (its teams own repositories), a
    Redis queue, one shared PAVEDROAD_HOME and one ``pave server`` without background
    work: the tests start the workers."""
    root = tmp_path_factory.mktemp("pipeline-workers")
    home = root / "home"
    config = write(root / "pavedroad.yaml", "")
    database = database_templates.postgres_copy(postgres_cluster, "demo")
    port = free_port()
    env = base_env(home, config) | {
        "PAVEDROAD_DATABASE_URL": postgres_cluster.url(database),
        "PAVEDROAD_QUEUE_URL": redis_server.url,
        "PAVEDROAD_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PAVEDROAD_BASE_URL": f"http://127.0.0.1:{port}",
        "PAVEDROAD_WORKERS": "1",  # scaffolder tasks: none here
        "PAVEDROAD_PIPELINES__WORKERS": "1",  # one job at a time per worker
        "PAVEDROAD_PIPELINES__LOST_AFTER_SECONDS": str(LOST_AFTER_SECONDS),
    }
    processes = Processes(root / "logs")
    try:
        api = Api(processes.serve("server", ["server"], env, port))
        yield Platform(processes, env, api, home, root)
    finally:
        processes.stop_all()
        postgres_cluster.drop_database(database)


@pytest.fixture
def workers(platform: Platform) -> Iterator[Platform]:
    """The platform; the workers a test starts are stopped after it."""
    try:
        yield platform
    finally:
        platform.stop_workers()


def pid_of(job: dict[str, Any]) -> int:
    """The pid of the worker that ran a job (its ``worker`` is ``<host>:<pid>``)."""
    host, _, pid = str(job["worker"]).rpartition(":")
    assert host == HOST, job["worker"]
    return int(pid)


def living(job_id: str) -> list[int]:
    """The processes a job started that are still running (zombies are not)."""
    return [pid for pid in marked_processes(job_id) if alive(pid)]


def command_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def kill_leftovers(job_id: str) -> None:
    for pid in living(job_id):
        os.kill(pid, signal.SIGKILL)


# -- routing -------------------------------------------------------------------------------


def test_each_job_runs_on_a_worker_with_its_label(workers: Platform) -> None:
    started = workers.start_workers({"a": ["alpha"], "b": ["beta"]})
    pids = {name: process.pid for name, process in started.items()}
    checkout = workers.checkout("routed")

    commit = checkout.push({".pavedroad/pipeline.yaml": ROUTED})

    [run] = workers.api.finished_runs(checkout.repository, 1, timeout=40)
    assert run["commit"] == commit and run["event"] == "push"
    assert run["status"] == "succeeded", [(j["key"], j["status"], j["error"]) for j in run["jobs"]]
    ran_on = {job["key"]: pid_of(job) for job in run["jobs"]}
    assert len(ran_on) == 7, ran_on
    for n in (1, 2, 3):
        assert ran_on[f"alpha ({n})"] == pids["a"], (ran_on, pids)
        assert ran_on[f"beta ({n})"] == pids["b"], (ran_on, pids)
    assert ran_on["anywhere"] in pids.values()  # unlabelled: whichever worker was free
    assert all(job["attempt"] == 1 for job in run["jobs"]), run["jobs"]
    alpha = next(job for job in run["jobs"] if job["key"] == "alpha (2)")
    assert "alpha 2" in workers.api.log(alpha["id"])


PARALLEL = """
on: push
jobs:
  anywhere:
    steps: [{run: sleep 1}]
  on-alpha:
    runs-on: [alpha]
    steps: [{run: sleep 1}]
  on-beta:
    runs-on: [beta]
    steps: [{run: sleep 1}]
"""


def test_a_worker_runs_no_more_jobs_at_once_than_its_setting(workers: Platform) -> None:
    workers.start_workers({"busy": ["alpha", "beta"]})  # pipelines.workers is 1
    checkout = workers.checkout("parallel")

    checkout.push({".pavedroad/pipeline.yaml": PARALLEL})

    [run] = workers.api.finished_runs(checkout.repository, 1, timeout=40)
    assert run["status"] == "succeeded", run
    spans = sorted(
        (datetime.fromisoformat(job["startedAt"]), datetime.fromisoformat(job["finishedAt"]))
        for job in run["jobs"]
    )
    overlapping = [(earlier, later) for earlier, later in pairwise(spans) if later[0] < earlier[1]]
    assert overlapping == [], "jobs ran at the same time on a worker with pipelines.workers=1"


# -- a worker killed mid-step --------------------------------------------------------------


def start_slow_job(platform: Platform, checkout: Checkout, marks: Path) -> tuple[dict, int]:
    """Push SLOW_ONCE; the running job and the pid of its ``sleep 120`` once it sleeps."""
    marks.mkdir()
    checkout.push({".pavedroad/pipeline.yaml": SLOW_ONCE.replace("{marks}", str(marks))})

    def sleeping() -> tuple[dict, int] | None:
        runs = platform.api.runs(checkout.repository)
        if not runs or not (marks / "first").exists():
            return None
        [job] = platform.api.run(runs[0]["id"])["jobs"]
        sleeps = [pid for pid in living(job["id"]) if command_of(pid) == "sleep"]
        return (job, sleeps[0]) if job["status"] == "running" and sleeps else None

    found: tuple[dict, int] = wait_until("the slow step to sleep", sleeping, timeout=30)
    return found


def test_a_job_whose_worker_is_killed_is_retried_on_the_other_worker(
    workers: Platform, tmp_path: Path
) -> None:
    started = workers.start_workers({"k1": ["gamma"], "k2": ["gamma"]})
    checkout = workers.checkout("killed")
    job, sleep = start_slow_job(workers, checkout, tmp_path / "marks")
    try:
        [victim] = [name for name, p in started.items() if p.pid == pid_of(job)]
        [survivor] = [name for name in started if name != victim]
        killed_at = time.monotonic()
        workers.kill(victim)

        # nobody cleans up after the dead worker until its heartbeat is old enough
        ended = LOST_AFTER_SECONDS + RECOVERY_INTERVAL_SECONDS + 15
        [run] = workers.api.finished_runs(checkout.repository, 1, timeout=ended)
        took = time.monotonic() - killed_at
        assert took >= LOST_AFTER_SECONDS - HEARTBEAT_SECONDS - 0.5, took
        assert run["status"] == "succeeded", run
        [retried] = run["jobs"]
        assert retried["attempt"] == 2 and retried["error"] is None, retried
        assert pid_of(retried) == started[survivor].pid
        assert "second attempt" in workers.api.log(retried["id"])
        assert "retrying (the worker running this job stopped (no heartbeat))" in (
            workers.processes.log(survivor)
        )
        # the killed worker's step processes ended, at the latest with the retry
        assert wait_until("the orphaned sleep to end", lambda: not alive(sleep), timeout=5)
        assert living(job["id"]) == []
    finally:
        kill_leftovers(job["id"])


def test_a_killed_worker_that_comes_back_stops_its_orphans_and_the_job_is_retried(
    workers: Platform, tmp_path: Path
) -> None:
    started = workers.start_workers({"o1": ["gamma"], "o2": ["gamma"]})
    checkout = workers.checkout("orphaned")
    job, sleep = start_slow_job(workers, checkout, tmp_path / "marks")
    try:
        [victim] = [name for name, p in started.items() if p.pid == pid_of(job)]
        killed_at = time.monotonic()
        workers.kill(victim)
        assert alive(sleep)  # the step leads a session of its own: nothing stopped it
        workers.start_workers({f"{victim}-again": ["gamma"]})  # stop_orphans at its start

        gone = wait_until("the orphaned sleep to end", lambda: not alive(sleep), timeout=15)
        # well before the heartbeat could be called lost: the restarted worker did it
        assert gone and time.monotonic() - killed_at < LOST_AFTER_SECONDS
        [run] = workers.api.finished_runs(checkout.repository, 1, timeout=30)
        assert run["status"] == "succeeded", run
        [retried] = run["jobs"]
        assert retried["attempt"] == 2, retried
        assert "second attempt" in workers.api.log(retried["id"])
        restarted = workers.processes.log(f"{victim}-again")
        assert "retrying (the worker running this job stopped)" in restarted, restarted
        assert "(no heartbeat)" not in restarted  # stop_orphans, not the heartbeat check
        assert living(job["id"]) == []
    finally:
        kill_leftovers(job["id"])


# -- runs for pushes made while nothing ran ------------------------------------------------


def record_spooled_pushes(platform: Platform) -> int:
    """Record the spooled pushes as a server does right after a push over HTTP: push
    events, and no run started for them yet."""
    database = Database(platform.database_url)
    try:
        settings = Settings(home=platform.home, database_url=platform.database_url)
        return GitService(database, settings).import_spool()
    finally:
        database.dispose()


def test_processes_reconciling_the_same_pushes_at_once_start_each_run_once(
    workers: Platform, tmp_path: Path
) -> None:
    checkout = workers.checkout("raced")
    executions = tmp_path / "executions"
    pipeline = COUNTED.replace("{executions}", str(executions))
    # Nothing reconciles now (the server runs no background work). Half of the pushes
    # are recorded already, waiting for a run; half wait in the push hook's spool.
    commits = [checkout.push({".pavedroad/pipeline.yaml": pipeline, "n.txt": "0\n"})]
    commits += [checkout.push({"n.txt": f"{n}\n"}) for n in range(1, PUSHES)]
    assert record_spooled_pushes(workers) == PUSHES
    commits += [checkout.push({"n.txt": f"{n}\n"}) for n in range(PUSHES, 2 * PUSHES)]
    spool = workers.home / "git" / ".spool"
    assert len(list(spool.glob("*.json"))) == PUSHES
    assert workers.api.runs(checkout.repository) == []

    # They start at once, each importing the spool and starting runs for what it finds:
    # a server with background work, a worker, and two one-round workers.
    racing = ["server-background", "racer", "once-1", "once-2"]
    port = free_port()
    workers.workers["server-background"] = workers.processes.start(
        "server-background",
        ["server", "--background", "--host", "127.0.0.1", "--port", str(port)],
        workers.env | {"PAVEDROAD_PIPELINES__LABELS": "[]"},
    )
    once = [workers.processes.start(name, ["worker", "--once"], workers.env) for name in racing[2:]]
    workers.start_workers({"racer": []})
    assert [process.wait(60) for process in once] == [0, 0]

    runs = workers.api.finished_runs(checkout.repository, 2 * PUSHES, timeout=40)
    time.sleep(2.5)  # one more round of every reconciler: nothing new may start
    assert len(workers.api.runs(checkout.repository)) == 2 * PUSHES
    assert sorted(run["commit"] for run in runs) == sorted(commits)
    assert {run["status"] for run in runs} == {"succeeded"}, runs
    assert all(job["attempt"] == 1 for run in runs for job in run["jobs"])
    ran = executions.read_text().split()
    assert sorted(ran) == sorted(run["id"] for run in runs)  # each job ran once
    assert not list(spool.iterdir())  # every push imported, none set aside as unreadable
    for name in racing:  # and none of them saw an error doing it
        assert " ERROR " not in workers.processes.log(name), workers.processes.log(name)


def test_pave_up_runs_what_was_pushed_while_it_was_down(
    tmp_path: Path, database_templates: Any
) -> None:
    home = tmp_path / "home"
    url = database_templates.sqlite_copy("demo", home / "pavedroad.db")
    database = Database(url)
    try:
        GitService(database, Settings(home=home, database_url=url)).create(OWNER, "offline", "bob")
    finally:
        database.dispose()
    work = tmp_path / "work"
    checkout = Checkout(home, work, "offline")
    executions = tmp_path / "executions"
    commit = checkout.push(
        {".pavedroad/pipeline.yaml": COUNTED.replace("{executions}", str(executions))}
    )
    assert len(list((home / "git" / ".spool").glob("*.json"))) == 1  # kept for the platform

    processes = Processes(tmp_path / "logs")
    env = base_env(home, write(tmp_path / "pavedroad.yaml", ""))
    try:
        api = Api(processes.serve("up", ["up"], env, free_port()))
        [run] = api.finished_runs(checkout.repository, 1, timeout=30)
    finally:
        processes.stop_all()
    assert run["commit"] == commit and run["status"] == "succeeded", run
    assert executions.read_text().split() == [run["id"]]
