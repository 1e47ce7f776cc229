"""Deployment benchmark: from ``git push`` to the new release answering at its URL, what
the router adds to a request, and a redeploy under load, on the embedded default (``pave
up``: SQLite, the job queue in the server's threads, the local process runtime behind the
router).

Run from the repository root:

    .venv/bin/python bench/deploy.py              # 5 pushes, the full router benchmark
    .venv/bin/python bench/deploy.py --quick      # 1 push, a short router run (about 1 min)
    .venv/bin/python bench/deploy.py --runs 10

It starts ``pave up`` in a temporary PAVEDROAD_HOME with the demo organisation and a token
of a checkout-team member, creates ``bench-web`` from the "Python web service" template
through the API (what the portal's Create button does) and waits for the template's own
push to go live in ``development``: the warm-up, which also fills pip's cache. Then:

1. **Push to live**: ``--runs`` times, a commit that changes the service's greeting (and
   its test) is pushed with plain git over the server's smart HTTP, after a random pause
   so pushes land anywhere in the reconcilers' rounds. The figure is from the start of
   ``git push`` to the first answer with the new greeting from
   ``http://127.0.0.1:<port>/`` with ``Host: bench-web.development.localhost`` (polled
   every 50 ms): the standard pipeline ran (lint, test, build the release), the release
   was deployed automatically, and the router switched to it. Where the time goes comes
   from the platform's own records read back through the API: the push, the pipeline run
   and its jobs, the release, the deployment and its timeline. Target: median < 10 s.
2. **The router**: ``bench/router.py`` as a subprocess (shorter with ``--quick``), after
   the platform above has stopped, so nothing else shares the machine: the router's
   overhead (p50 through the router minus p50 direct) and requests/s through it.
3. **Zero downtime**: one more push while requests arrive through the router at a steady
   200 a second (four keep-alive connections, each sending on its own schedule), from a
   second before the push to a second after the deployment ended (old instances
   drained). It prints the requests sent, those that failed (anything but a 200 from
   either release: must be 0), how many each release answered, and the switch: the
   switch step of the deployment's timeline and the latency under load.

At the end every service instance is stopped (instances outlive the server by design)
and the temporary home removed (``--keep`` keeps it). It prints the machine and the exact
command, and exits 1 when a request failed in part 3.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from benchkit import ROOT, Summary, free_port, parse_time, prepare, seconds_between, wait_for

PAVE = Path(sys.executable).parent / "pave"
OWNER = "checkout-team"
NAME = "bench-web"
MODULE = NAME.replace("-", "_")
COMPONENT = f"component:default/{NAME}"
ENVIRONMENT = "development"
TARGET_SECONDS = 10.0
LOAD_RATE = 200.0  # requests per second through the router in part 3
POLL_SECONDS = 0.05
TRIGGER_INTERVAL_SECONDS = 2.0  # the reconcilers' round, when no event wakes them sooner
ENDED = ("live", "replaced", "failed", "rejected", "expired", "cancelled", "removed")
DEPLOYMENT_STEPS = ("resolve", "provision", "prepare", "start", "ready", "switch")


# -- figures ------------------------------------------------------------------------------


def note(text: str) -> None:
    """Progress, on stderr: the figures alone go to stdout."""
    print(text, file=sys.stderr, flush=True)


# -- the platform -------------------------------------------------------------------------


class Platform:
    """``pave up`` in a temporary PAVEDROAD_HOME on a free port, logging to a file."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        empty = home / "empty.yaml"
        empty.write_text("")
        os.environ |= {"PAVEDROAD_HOME": str(home), "PAVEDROAD_CONFIG": str(empty)}
        self.token = prepare(home)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PAVEDROAD_")} | {
            "PAVEDROAD_HOME": str(home),
            "PAVEDROAD_CONFIG": str(empty),
            "PAVEDROAD_BASE_URL": self.url,
            "PYTHONUNBUFFERED": "1",
        }

    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def start(self) -> httpx.Client:
        """``pave up``; a client with bob's token once it answers."""
        with (self.home / "server.log").open("wb") as log:
            self.process = subprocess.Popen(
                [str(PAVE), "up", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = self.process

        def healthy() -> bool | None:
            if process.poll() is not None:
                raise SystemExit(f"pave up did not start:\n{self.log()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200 or None
            except httpx.HTTPError:
                return None

        wait_for("pave up to answer", healthy, timeout=60, poll=POLL_SECONDS)
        headers = {"authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self) -> None:
        """The server, then every service instance it started (they outlive it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        from pavedroad.runtimes.local.supervisor import LocalRuntime
        from pavedroad.settings import RuntimeSettings

        runtime = LocalRuntime(self.home / "runtime", RuntimeSettings())
        for state in runtime.instances():
            runtime.remove(state.id, 2)

    def remote(self) -> str:
        return f"http://x:{self.token}@127.0.0.1:{self.port}/git/{OWNER}/{NAME}.git"


def create_service(client: httpx.Client) -> None:
    """``bench-web`` from the "Python web service" template, as the portal's form does."""
    response = client.post(
        "/api/v1/scaffolder/tasks",
        json={
            "templateRef": "template:default/python-web-service",
            "values": {
                "name": NAME,
                "description": "The deployment benchmark's service",
                "owner": f"group:default/{OWNER}",
                "repoUrl": f"pavedroad?owner={OWNER}&repo={NAME}",
            },
        },
    )
    if response.status_code != 201:
        raise SystemExit(f"could not create {NAME}: {response.text}")
    task_id = response.json()["id"]

    def ended() -> dict[str, Any] | None:
        task = client.get(f"/api/v1/scaffolder/tasks/{task_id}").json()
        return task if task["status"] in ("completed", "failed", "cancelled") else None

    task = wait_for("the template task", ended, timeout=120, poll=POLL_SECONDS)
    if task["status"] != "completed":
        raise SystemExit(f"the template task ended {task['status']}: {task.get('error')}")


class Checkout:
    """A clone of the service's hosted repository, pushed to over HTTP."""

    def __init__(self, platform: Platform) -> None:
        self.work = platform.home / "work" / NAME
        self.work.parent.mkdir(parents=True, exist_ok=True)
        self.git("clone", "-q", platform.remote(), str(self.work), cwd=self.work.parent)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        result = subprocess.run(
            ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com", *args],
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"},
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"git {args[0]} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def change_greeting(self, change: int) -> str:
        """Commit a new greeting (and the test that checks it); returns the commit."""
        self._rewrite(
            f"src/{MODULE}/app.py",
            r'f"Hello from \{SERVICE_NAME\}![^"]*"',
            f'f"Hello from {{SERVICE_NAME}}! (change {change})"',
        )
        self._rewrite(
            "tests/test_app.py", rf'"Hello from {NAME}![^"]*"', f'"{greeting_of(change)}"'
        )
        self.git("commit", "-qam", f"Greeting, change {change}")
        return self.git("rev-parse", "HEAD")

    def _rewrite(self, path: str, pattern: str, replacement: str) -> None:
        file = self.work / path
        text, count = re.subn(pattern, lambda _: replacement, file.read_text())
        if count != 1:
            raise SystemExit(f"{path}: the template's greeting is not where the benchmark looks")
        file.write_text(text)

    def push(self) -> None:
        self.git("push", "-q", "origin", "HEAD:refs/heads/main")


def greeting_of(change: int) -> str:
    return f"Hello from {NAME}! (change {change})"


class Service:
    """Reads of the service through the router and of its records through the API."""

    def __init__(self, platform: Platform, client: httpx.Client) -> None:
        self.client = client
        self.router = httpx.Client(
            base_url=platform.url,
            headers={"host": f"{NAME}.{ENVIRONMENT}.localhost:{platform.port}"},
            timeout=10,
        )

    def greeting(self) -> str | None:
        """The message ``/`` answers through the router (None: no 200 answer)."""
        try:
            response = self.router.get("/")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return str(response.json().get("message"))

    def wait_for_greeting(self, wanted: str, timeout: float) -> None:
        """Poll the router until the service answers ``wanted``."""
        deadline = time.monotonic() + timeout
        while self.greeting() != wanted:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{NAME} did not answer {wanted!r} within {timeout:g} s; "
                    f"the platform says:\n{self.situation()}"
                )
            time.sleep(POLL_SECONDS)

    def situation(self) -> str:
        """The service's newest pipeline runs and deployments, for a timeout's message."""
        lines = []
        try:
            runs = self.api("/api/v1/pipelines/runs", repository=f"{OWNER}/{NAME}", limit=3)
            for run in runs["items"]:
                lines.append(f"  run {run['number']} of {run['commit'][:12]}: {run['status']}")
            deployments = self.api("/api/v1/deployments", component=COMPONENT, limit=3)
            for row in deployments["items"]:
                lines.append(
                    f"  deployment {row['number']} of {row['release']} to {row['environment']}: "
                    f"{row['status']} {row['step'] or ''} {row['reason'] or ''}"
                )
        except httpx.HTTPError as error:
            lines.append(f"  (the API did not answer: {error!r})")
        return "\n".join(lines) or "  no pipeline run and no deployment"

    def api(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def run_of(self, commit: str) -> dict[str, Any]:
        """The pipeline run of ``commit``, once it ended, with its jobs."""

        def found() -> dict[str, Any] | None:
            items = self.api("/api/v1/pipelines/runs", repository=f"{OWNER}/{NAME}", limit=10)
            return next((r for r in items["items"] if r["commit"] == commit), None)

        run_id = wait_for(f"the run of {commit[:12]}", found, timeout=60, poll=POLL_SECONDS)["id"]

        def ended() -> dict[str, Any] | None:
            run = self.api(f"/api/v1/pipelines/runs/{run_id}")
            return run if run["status"] in ("succeeded", "failed", "cancelled") else None

        run = wait_for(f"the run of {commit[:12]} to end", ended, timeout=300, poll=POLL_SECONDS)
        if run["status"] != "succeeded":
            errors = [(job["key"], job["status"], job["error"]) for job in run["jobs"]]
            raise SystemExit(f"the run of {commit[:12]} {run['status']}: {errors}")
        return dict(run)

    def release_of(self, commit: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            items = self.api("/api/v1/releases", component=COMPONENT, branch="main")["items"]
            return next((r for r in items if r["commit"] == commit), None)

        return wait_for(f"the release of {commit[:12]}", found, timeout=60, poll=POLL_SECONDS)

    def deployment_of(self, release_id: str) -> dict[str, Any]:
        """The deployment of the release to development, once it ended, with its timeline."""

        def ended() -> dict[str, Any] | None:
            items = self.api("/api/v1/deployments", component=COMPONENT, environment=ENVIRONMENT)
            row = next((d for d in items["items"] if d["release"] == release_id), None)
            return row if row is not None and row["status"] in ENDED else None

        row = wait_for(f"the deployment of {release_id}", ended, timeout=300, poll=POLL_SECONDS)
        deployment = self.api(f"/api/v1/deployments/{row['id']}")
        if deployment["status"] != "live":
            raise SystemExit(
                f"deployment {deployment['number']} ended {deployment['status']}: "
                f"{deployment['reason']}\n" + "\n".join(deployment.get("logTail") or [])
            )
        return dict(deployment)


# -- 1. push to live ------------------------------------------------------------------------


@dataclass
class PushToLive:
    seconds: float
    phases: dict[str, float]
    jobs: dict[str, float]
    job_steps: dict[str, dict[str, float]]
    drain: float


def step_durations(timeline: list[dict[str, Any]]) -> dict[str, float]:
    """Each step of a deployment's timeline: from started to succeeded."""
    began: dict[str, str] = {}
    durations: dict[str, float] = {}
    for event in timeline:
        if event["status"] == "started":
            began[event["step"]] = event["at"]
        elif event["status"] == "succeeded" and event["step"] in began:
            durations[event["step"]] = seconds_between(began[event["step"]], event["at"])
    return durations


def step_end(timeline: list[dict[str, Any]], step: str) -> datetime:
    return parse_time(
        next(e["at"] for e in timeline if e["step"] == step and e["status"] == "succeeded")
    )


def push_to_live(service: Service, checkout: Checkout, change: int) -> PushToLive:
    """One push of a new greeting, timed to its first answer through the router, and
    where the time went."""
    commit = checkout.change_greeting(change)
    wanted = greeting_of(change)
    began = time.perf_counter()
    checkout.push()
    pushed = time.perf_counter()
    pushed_at = datetime.now(UTC)
    service.wait_for_greeting(wanted, timeout=300)
    answered = time.perf_counter()
    answered_at = datetime.now(UTC)

    run = service.run_of(commit)
    release = service.release_of(commit)
    deployment = service.deployment_of(release["id"])
    timeline = deployment["timeline"]
    steps = step_durations(timeline)
    phases = {
        "git push itself": pushed - began,
        "push → pipeline run planned": seconds_between(pushed_at, run["createdAt"]),
        "run planned → release built (lint, test, build)": seconds_between(
            run["createdAt"], release["createdAt"]
        ),
        "release built → deployment requested": seconds_between(
            release["createdAt"], deployment["createdAt"]
        ),
        "deployment requested → running": seconds_between(
            deployment["createdAt"], deployment["startedAt"]
        ),
    }
    for step in DEPLOYMENT_STEPS:
        phases[f"deployment step {step}"] = steps.get(step, float("nan"))
    phases["switched → answer seen"] = seconds_between(step_end(timeline, "switch"), answered_at)
    jobs = {"the run, planned → ended": seconds_between(run["createdAt"], run["finishedAt"])}
    job_steps: dict[str, dict[str, float]] = {}
    for job in run["jobs"]:
        jobs[job["key"]] = seconds_between(job["startedAt"], job["finishedAt"])
        job_steps[job["key"]] = {
            (s["name"] or s["id"] or f"step {s['index']}"): seconds_between(
                s["startedAt"], s["finishedAt"]
            )
            for s in job["steps"]
            if s["startedAt"] and s["finishedAt"]
        }
    return PushToLive(answered - began, phases, jobs, job_steps, steps.get("drain", float("nan")))


# -- 2. the router --------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterFigures:
    overhead_ms: float
    direct_p50_ms: float
    routed_p50_ms: float
    routed_rate: float
    direct_rate: float
    command: str


def router_figures(quick: bool) -> RouterFigures:
    """``bench/router.py`` in a process of its own; its figures read from its output."""
    options = ["--seconds", "1", "--count", "1000"] if quick else []
    command = [sys.executable, str(ROOT / "bench" / "router.py"), *options]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    out = result.stdout
    latency, _, throughput = out.partition("2. throughput")

    def figure(pattern: str, part: str) -> float:
        found = re.search(pattern, part)
        if result.returncode != 0 or found is None:
            raise SystemExit(f"bench/router.py gave no {pattern!r}:\n{out}\n{result.stderr}")
        return float(found.group(1).replace(",", ""))

    return RouterFigures(
        overhead_ms=figure(r"router overhead p50: (-?[\d.]+) ms", latency),
        direct_p50_ms=figure(r"direct: p50 ([\d.]+) ms", latency),
        routed_p50_ms=figure(r"router: p50 ([\d.]+) ms", latency),
        routed_rate=figure(r"through the router: ([\d,]+) requests/s", throughput),
        direct_rate=figure(r"direct: ([\d,]+) requests/s", throughput),
        command=" ".join(["bench/router.py", *options]),
    )


# -- 3. zero downtime ------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float  # perf_counter when it left
    seconds: float
    outcome: str  # the greeting of a 200, else "HTTP <status>" or the error


class SteadyLoad:
    """Requests through the router at a steady rate: ``connections`` threads, each with a
    keep-alive connection and its own schedule, sending its next request when it is due
    (at once when the previous answer came late, so the rate holds while answers are
    slow, with at most one request in flight per connection)."""

    def __init__(self, url: str, host: str, rate: float, connections: int = 4) -> None:
        self.url = url
        self.host = host
        self.rate = rate
        self.answers: list[Answer] = []
        self.started = 0.0
        self.stopped = 0.0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, args=(index, connections), daemon=True)
            for index in range(connections)
        ]

    def start(self) -> None:
        self.started = time.perf_counter()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.stopped = time.perf_counter()
        for thread in self._threads:
            thread.join(60)

    def _send(self, index: int, connections: int) -> None:
        interval = connections / self.rate
        due = self.started + index / self.rate
        with httpx.Client(base_url=self.url, headers={"host": self.host}, timeout=30) as client:
            while not self._stop.wait(max(0.0, due - time.perf_counter())):
                sent = time.perf_counter()
                try:
                    response = client.get("/")
                    if response.status_code == 200:
                        outcome = str(response.json().get("message"))
                    else:
                        outcome = f"HTTP {response.status_code}: {response.text[:100]}"
                except (httpx.HTTPError, ValueError) as error:
                    outcome = repr(error)
                self.answers.append(Answer(sent, time.perf_counter() - sent, outcome))
                due += interval


@dataclass
class Redeploy:
    sent: int
    seconds: float
    during_deployment: int
    failed: list[str]
    old: int
    new: int
    switch_step: float
    overlap: float  # the last old answer's start after the first new answer's start
    latency_ms: Summary
    latency_during_ms: Summary
    deployment_seconds: float


def redeploy_under_load(
    platform: Platform, service: Service, checkout: Checkout, change: int
) -> Redeploy:
    """One more push of a new greeting while requests arrive at a steady rate."""
    old, new = greeting_of(change - 1), greeting_of(change)
    if service.greeting() != old:
        raise SystemExit(f"before the redeploy, {NAME} does not answer {old!r}")
    load = SteadyLoad(platform.url, f"{NAME}.{ENVIRONMENT}.localhost:{platform.port}", LOAD_RATE)
    load.start()
    try:
        time.sleep(1.0)
        commit = checkout.change_greeting(change)
        checkout.push()
        release = service.release_of(commit)
        deployment = service.deployment_of(release["id"])
        time.sleep(1.0)
    finally:
        load.stop()
    # The load's clock is perf_counter; the deployment's is the server's UTC clock.
    offset = datetime.now(UTC).timestamp() - time.perf_counter()
    started = parse_time(deployment["startedAt"]).timestamp() - offset
    finished = parse_time(deployment["finishedAt"]).timestamp() - offset
    answers = load.answers
    during = [a for a in answers if started <= a.sent <= finished]
    failed = [a.outcome for a in answers if a.outcome not in (old, new)]
    first_new = min((a.sent for a in answers if a.outcome == new), default=float("nan"))
    last_old = max((a.sent for a in answers if a.outcome == old), default=float("nan"))
    return Redeploy(
        sent=len(answers),
        seconds=load.stopped - load.started,
        during_deployment=len(during),
        failed=failed,
        old=sum(a.outcome == old for a in answers),
        new=sum(a.outcome == new for a in answers),
        switch_step=step_durations(deployment["timeline"]).get("switch", float("nan")),
        overlap=last_old - first_new,
        latency_ms=Summary.of([a.seconds * 1000 for a in answers]),
        latency_during_ms=Summary.of([a.seconds * 1000 for a in during]),
        deployment_seconds=seconds_between(deployment["startedAt"], deployment["finishedAt"]),
    )


# -- the report ----------------------------------------------------------------------------


def medians(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = list(dict.fromkeys(key for row in rows for key in row))
    return {key: statistics.median([row[key] for row in rows if key in row]) for key in keys}


def shown(seconds: float) -> str:
    """Seconds for a table: a few milliseconds either side of 0 is 0."""
    return f"{0.0 if abs(seconds) < 0.005 else seconds:6.2f}"


def print_push_to_live(first: float, results: list[PushToLive]) -> None:
    total = Summary.of([r.seconds for r in results])
    verdict = "meets" if total.median < TARGET_SECONDS else "MISSES"
    print(f"1. Push to live in {ENVIRONMENT}: git push → the new release answers at its URL")
    print(f'   service      {NAME}, from the "Python web service" template')
    print(f"   first deploy {first:.2f} s from the template's form to live (warm-up, not counted)")
    print(f"   runs         {total.count}")
    print(f"   push to live {total.seconds(2)}   ({verdict} the target of < {TARGET_SECONDS:g} s)")
    print("   where the time goes (median of each):")
    for phase, value in medians([r.phases for r in results]).items():
        print(f"     {phase:<50} {shown(value)} s")
    print("   inside the pipeline run (median of each job, start to end; lint and test at once):")
    job_steps = [r.job_steps for r in results]
    for job, value in medians([r.jobs for r in results]).items():
        print(f"     {job:<50} {shown(value)} s")
        for step, seconds in medians([steps[job] for steps in job_steps if job in steps]).items():
            print(f"       {step[:48]:<48} {shown(seconds)} s")
    drain = statistics.median([r.drain for r in results])
    print(f"   after the switch, not counted: drain of the old instance {drain:.2f} s")


def print_router(figures: RouterFigures) -> None:
    print("2. The router (bench/router.py: a minimal upstream, direct and through the router)")
    print(
        f"   overhead p50 {figures.overhead_ms:.3f} ms   "
        f"(one connection: p50 {figures.direct_p50_ms:.3f} ms direct, "
        f"{figures.routed_p50_ms:.3f} ms through the router)"
    )
    print(
        f"   throughput   {figures.routed_rate:,.0f} requests/s through the router   "
        f"({figures.direct_rate:,.0f} requests/s direct)"
    )
    print(f"   command      {figures.command}")


def print_redeploy(redeploy: Redeploy) -> None:
    rate = redeploy.sent / redeploy.seconds if redeploy.seconds else float("nan")
    print(f"3. Zero downtime: a push redeployed under {LOAD_RATE:g} requests/s through the router")
    print(
        f"   requests     {redeploy.sent} sent in {redeploy.seconds:.1f} s ({rate:.0f}/s), "
        f"{redeploy.during_deployment} while the deployment ran "
        f"({redeploy.deployment_seconds:.2f} s)"
    )
    print(
        f"   failed       {len(redeploy.failed)}   "
        f"(answered: {redeploy.old} by the old release, {redeploy.new} by the new)"
    )
    for outcome in sorted(set(redeploy.failed))[:5]:
        print(f"     {redeploy.failed.count(outcome)} x {outcome}")
    print(
        f"   switch       {redeploy.switch_step * 1000:.0f} ms (the deployment's switch step); "
        f"old and new answered side by side for {max(0.0, redeploy.overlap) * 1000:.0f} ms"
    )
    print(
        f"   latency      {redeploy.latency_ms.median:.1f} ms median, "
        f"{redeploy.latency_ms.p90:.1f} ms p90, {redeploy.latency_ms.maximum:.1f} ms max "
        f"(while deploying: {redeploy.latency_during_ms.median:.1f} / "
        f"{redeploy.latency_during_ms.p90:.1f} / {redeploy.latency_during_ms.maximum:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="pushes timed (default 5)")
    parser.add_argument("--quick", action="store_true", help="1 push and a short router run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()
    runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    if runs < 1:
        parser.error("--runs must be at least 1")

    load_before = os.getloadavg()[0]
    home = Path(tempfile.mkdtemp(prefix="pavedroad-bench-deploy-"))
    platform_ = Platform(home)
    pauses = random.Random(1)
    try:
        with platform_.start() as client:
            service = Service(platform_, client)
            note(f"creating {NAME} from the template and waiting for it to go live")
            began = time.perf_counter()
            create_service(client)
            service.wait_for_greeting(f"Hello from {NAME}!", timeout=300)
            first = time.perf_counter() - began
            checkout = Checkout(platform_)
            # the template's deployment ends (drains) before the first timed push
            service.deployment_of(service.release_of(checkout.git("rev-parse", "HEAD"))["id"])
            results = []
            for change in range(1, runs + 1):
                time.sleep(pauses.uniform(0, TRIGGER_INTERVAL_SECONDS))
                results.append(push_to_live(service, checkout, change))
                note(f"push {change}/{runs}: live in {results[-1].seconds:.2f} s")
            note(f"redeploying under {LOAD_RATE:g} requests/s")
            redeploy = redeploy_under_load(platform_, service, checkout, runs + 1)
    except SystemExit as error:
        if isinstance(error.code, str) and (home / "server.log").is_file():
            tail = "\n".join(platform_.log().splitlines()[-40:])
            raise SystemExit(f"{error.code}\n\nthe end of pave up's log:\n{tail}") from None
        raise
    finally:
        platform_.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            note(f"kept {home}")
    note("running bench/router.py")
    router = router_figures(args.quick)

    print_push_to_live(first, results)
    print()
    print_router(router)
    print()
    print_redeploy(redeploy)
    print()
    print(
        f"machine  {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(f"command  {' '.join([Path(sys.executable).name, *sys.argv])}")
    if redeploy.failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
