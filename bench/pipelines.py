"""Pipelines benchmark: how soon a push runs, what each step costs, and whether queued
runs all run once on workers, on the embedded default (SQLite, the huey SQLite queue).

Run from the repository root:

    .venv/bin/python bench/pipelines.py               # 20 pushes, 3 x 50 steps, 50 runs
    .venv/bin/python bench/pipelines.py --quick       # a short smoke run (about 30 s)
    .venv/bin/python bench/pipelines.py --runs 40 --steps 100 --queued 100

It works in a temporary PAVEDROAD_HOME with the demo organisation and a token of a
checkout-team member, and pushes with plain git over the server's smart HTTP, as a
developer does. Timestamps come from the platform's own records (the push event, the
run, the job and step rows), read back through the API; the benchmark's polling does
not change them.

1. **Push to first step running**, on `pave up` (one process, two job threads): a
   repository whose `.pavedroad/pipeline.yaml` is one job with one `run:` step; each of
   `--runs` pushes changes a file. The figure is from `git push` returning to the first
   step's `started_at`, with where the time goes (recording the push, the trigger
   reconciler, the queue, the job's start). Target: median under 1 s.
2. **Per-step overhead**, on the same server: a manual run of one job with `--steps`
   steps of `run: "true"`, `--step-jobs` times. The overhead per step is
   (job duration - steps x one `true` script run directly by bash in this process)
   / steps: what the runner adds around each process (recording the step, its log,
   evaluating expressions, writing the script, the file commands), the job's own
   setup and cleanup shared out among its steps. Target: under 100 ms.
3. **Queued runs on two workers**: `pave up` again with `pipelines.workers=0` (it
   serves and reconciles but runs no jobs). `--queued` manual runs are started while
   no process runs jobs, so all of them are queued at once; then two `pave worker`
   processes with `pipelines.workers=1` start. Each run's only step appends its run id
   to a file outside the workspace. The benchmark waits for them all and counts
   completed, failed, lost (not ended in time), duplicated (a run id written more than
   once: a job executed twice) and missing (a run that succeeded without writing), with
   the wall time from starting the workers to the last run's end, and the drain time
   from the first job claimed to the last run's end.

It prints the machine, the exact command and the load average, and exits 1 when a run
of part 3 is failed, lost, duplicated or missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from benchkit import Summary, free_port, parse_time, prepare, seconds_between, wait_for

PAVE = Path(sys.executable).parent / "pave"
OWNER = "checkout-team"
RUNS = "/api/v1/pipelines/runs"
FINISHED = ("succeeded", "failed", "cancelled")
PUSH_TARGET_SECONDS = 1.0
STEP_TARGET_SECONDS = 0.1
POLL_SECONDS = 0.1
TRIGGER_INTERVAL_SECONDS = 2.0  # how often a server looks for new pushes

LATENCY_PIPELINE = """\
on: push
jobs:
  hello:
    steps:
      - run: echo "hello from $PAVEDROAD_SHA"
"""

STEPS_PIPELINE = """\
on: manual
jobs:
  many:
    steps:
{steps}"""

QUEUED_PIPELINE = """\
on: manual
jobs:
  count:
    steps:
      - run: echo "$PAVEDROAD_RUN_ID" >> "{executions}"
"""


# -- figures ------------------------------------------------------------------------------


# -- the platform -------------------------------------------------------------------------


class Platform:
    """``pave`` processes sharing one temporary PAVEDROAD_HOME, each logging to a file."""

    def __init__(self, home: Path, env: dict[str, str], token: str) -> None:
        self.home = home
        self.env = env
        self.token = token
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        with (self.home / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [str(PAVE), *args],
                env=self.env | {"PYTHONUNBUFFERED": "1"} | env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[name] = process
        return process

    def serve(self, name: str, **env: str) -> httpx.Client:
        """``pave up`` on a free port; a client with bob's token once it answers."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        process = self.start(
            name,
            ["up", "--host", "127.0.0.1", "--port", str(port)],
            PAVEDROAD_BASE_URL=self.url,
            **env,
        )

        def healthy() -> bool | None:
            if process.poll() is not None:
                raise SystemExit(f"pave up did not start:\n{self.log(name)}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200 or None
            except httpx.HTTPError:
                return None

        wait_for("pave up to answer", healthy, timeout=60, poll=POLL_SECONDS)
        headers = {"authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def start_workers(self, count: int, **env: str) -> None:
        names = [f"worker-{n}" for n in range(1, count + 1)]
        for name in names:
            self.start(name, ["worker"], **env)

        def ready() -> bool | None:
            for name in names:
                if self.processes[name].poll() is not None:
                    raise SystemExit(f"{name} exited:\n{self.log(name)}")
            return all("pave worker: processing" in self.log(name) for name in names) or None

        wait_for("the workers to start", ready, timeout=60, poll=POLL_SECONDS)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def remote(self, name: str) -> str:
        host = self.url.removeprefix("http://")
        return f"http://x:{self.token}@{host}/git/{OWNER}/{name}.git"


class Checkout:
    """A clone of a new hosted repository, pushed to over HTTP."""

    def __init__(self, platform: Platform, client: httpx.Client, name: str) -> None:
        response = client.post("/api/v1/git/repos", json={"owner": OWNER, "name": name})
        if response.status_code != 201:
            raise SystemExit(f"could not create {OWNER}/{name}: {response.text}")
        self.repository = f"{OWNER}/{name}"
        self.work = platform.home / "work" / name
        self.work.parent.mkdir(exist_ok=True)
        self.git("clone", "-q", platform.remote(name), str(self.work), cwd=self.work.parent)

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

    def commit(self, files: dict[str, str], message: str) -> str:
        for path, text in files.items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_text(text)
        self.git("add", ".")
        self.git("commit", "-qm", message)
        return self.git("rev-parse", "HEAD")

    def push(self) -> None:
        self.git("push", "-q", "origin", "HEAD:refs/heads/main")


def run_with_jobs(client: httpx.Client, run_id: str) -> dict[str, Any]:
    response = client.get(f"{RUNS}/{run_id}")
    response.raise_for_status()
    return dict(response.json())


def finished_run(client: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run = run_with_jobs(client, run_id)
        return run if run["status"] in FINISHED else None

    return wait_for(f"run {run_id} to end", ended, timeout, poll=POLL_SECONDS)


def run_of_commit(client: httpx.Client, repository: str, commit: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        response = client.get(RUNS, params={"repository": repository, "limit": 5})
        response.raise_for_status()
        return next((r for r in response.json()["items"] if r["commit"] == commit), None)

    return wait_for(f"the run of {commit[:12]}", found, timeout=60, poll=POLL_SECONDS)


def start_manual(client: httpx.Client, repository: str) -> dict[str, Any]:
    response = client.post(RUNS, json={"repository": repository, "ref": "main"})
    if response.status_code != 201:
        raise SystemExit(f"could not start a run of {repository}: {response.text}")
    return dict(response.json())


def succeeded(run: dict[str, Any]) -> dict[str, Any]:
    if run["status"] != "succeeded":
        errors = [(job["key"], job["status"], job["error"]) for job in run.get("jobs", [])]
        raise SystemExit(f"run {run['number']} of {run['repository']} {run['status']}: {errors}")
    return run


# -- 1. push to first step running ----------------------------------------------------------


def push_to_first_step(platform: Platform, client: httpx.Client, pushes: int) -> dict[str, Any]:
    checkout = Checkout(platform, client, "bench-latency")
    # warm-up: the first push also brings the pipeline file
    checkout.commit({".pavedroad/pipeline.yaml": LATENCY_PIPELINE, "n.txt": "0\n"}, "pipeline")
    checkout.push()
    head = checkout.git("rev-parse", "HEAD")
    succeeded(finished_run(client, run_of_commit(client, checkout.repository, head)["id"]))
    phases: dict[str, list[float]] = {
        "git push itself": [],
        "push returned → push recorded": [],
        "push recorded → run planned": [],
        "run planned → job claimed": [],
        "job claimed → first step running": [],
    }
    totals: list[float] = []
    from_recorded: list[float] = []
    pauses = random.Random(1)
    for n in range(1, pushes + 1):
        commit = checkout.commit({"n.txt": f"{n}\n"}, f"change {n}")
        # pushes come at any moment of the trigger reconciler's round, not in step with it
        time.sleep(pauses.uniform(0, TRIGGER_INTERVAL_SECONDS))
        before = time.perf_counter()
        checkout.push()
        pushed_at = datetime.now(UTC)
        phases["git push itself"].append(time.perf_counter() - before)
        run = finished_run(client, run_of_commit(client, checkout.repository, commit)["id"])
        [job] = succeeded(run)["jobs"]
        step_started = parse_time(job["steps"][0]["startedAt"])
        recorded = parse_time(push_event(client, checkout.repository, commit)["at"])
        totals.append(seconds_between(pushed_at, step_started))
        from_recorded.append(seconds_between(recorded, step_started))
        phases["push returned → push recorded"].append(seconds_between(pushed_at, recorded))
        phases["push recorded → run planned"].append(seconds_between(recorded, run["createdAt"]))
        phases["run planned → job claimed"].append(
            seconds_between(run["createdAt"], job["startedAt"])
        )
        phases["job claimed → first step running"].append(
            seconds_between(job["startedAt"], step_started)
        )
    return {"total": Summary.of(totals), "recorded": Summary.of(from_recorded), "phases": phases}


def push_event(client: httpx.Client, repository: str, commit: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/git/repos/{repository}/pushes")
    response.raise_for_status()
    for push in response.json()["items"]:
        if push["after"] == commit:
            return dict(push)
    raise SystemExit(f"the push of {commit[:12]} was not recorded")


# -- 2. per-step overhead -------------------------------------------------------------------


def bare_true_seconds(home: Path, repeats: int = 50) -> float:
    """What one ``run: "true"`` step's process costs by itself: bash running a script
    holding ``true``, as the runner starts it, timed here (median)."""
    script = home / "true.sh"
    script.write_text("true")
    bash = shutil.which("bash") or "bash"
    argv = [bash, "--noprofile", "--norc", "-eo", "pipefail", str(script)]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, env={"PATH": "/usr/bin:/bin"}, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def per_step_overhead(
    platform: Platform, client: httpx.Client, steps: int, jobs: int
) -> dict[str, Any]:
    checkout = Checkout(platform, client, "bench-steps")
    lines = "".join('      - run: "true"\n' for _ in range(steps))
    checkout.commit({".pavedroad/pipeline.yaml": STEPS_PIPELINE.format(steps=lines)}, "steps")
    checkout.push()
    bare = bare_true_seconds(platform.home)
    overheads: list[float] = []
    durations: list[float] = []
    step_times: list[float] = []
    intervals: list[float] = []
    for _ in range(jobs):
        run = succeeded(finished_run(client, start_manual(client, checkout.repository)["id"]))
        [job] = run["jobs"]
        rows = job["steps"]
        if len(rows) != steps or any(row["status"] != "succeeded" for row in rows):
            raise SystemExit(f"run {run['number']}: not every step succeeded: {rows}")
        duration = seconds_between(job["startedAt"], job["finishedAt"])
        durations.append(duration)
        overheads.append((duration - steps * bare) / steps)
        step_times += [seconds_between(row["startedAt"], row["finishedAt"]) for row in rows]
        span = seconds_between(rows[0]["startedAt"], rows[-1]["finishedAt"])
        intervals.append(span / steps)
    return {
        "bare": bare,
        "overhead": Summary.of(overheads),
        "job": Summary.of(durations),
        "step": Summary.of(step_times),
        "interval": Summary.of(intervals),
    }


# -- 3. queued runs on two workers ------------------------------------------------------------


def queued_on_workers(
    platform: Platform, client: httpx.Client, count: int, timeout: float
) -> dict[str, Any]:
    """Start ``count`` runs while no process runs jobs, then start two workers and wait
    for every run to end."""
    executions = platform.home / "executions.txt"
    executions.touch()
    checkout = Checkout(platform, client, "bench-queue")
    pipeline = QUEUED_PIPELINE.format(executions=executions)
    checkout.commit({".pavedroad/pipeline.yaml": pipeline}, "count")
    checkout.push()
    began = time.perf_counter()
    run_ids = [start_manual(client, checkout.repository)["id"] for _ in range(count)]
    submitted = time.perf_counter() - began
    workers_started = datetime.now(UTC)
    platform.start_workers(2, PAVEDROAD_PIPELINES__WORKERS="1")
    deadline = time.monotonic() + timeout
    ended: dict[str, dict[str, Any]] = {}
    while len(ended) < count and time.monotonic() < deadline:
        response = client.get(RUNS, params={"repository": checkout.repository, "limit": 500})
        response.raise_for_status()
        for run in response.json()["items"]:
            if run["status"] in FINISHED and run["id"] not in ended:
                ended[run["id"]] = run_with_jobs(client, run["id"])
        time.sleep(POLL_SECONDS * 5)
    written = Counter(executions.read_text().split())
    statuses = Counter(run["status"] for run in ended.values())
    jobs = [job for run in ended.values() for job in run["jobs"]]
    claims = [parse_time(job["startedAt"]) for job in jobs if job["startedAt"]]
    last_end = max((parse_time(run["finishedAt"]) for run in ended.values()), default=None)
    return {
        "count": count,
        "submitted": submitted,
        "completed": statuses["succeeded"],
        "failed": statuses["failed"] + statuses["cancelled"],
        "lost": len(set(run_ids) - set(ended)),
        "duplicated": sum(1 for run_id in run_ids if written[run_id] > 1),
        "missing": sum(
            1 for run in ended.values() if run["status"] == "succeeded" and not written[run["id"]]
        ),
        "retried": sum(1 for job in jobs if job["attempt"] > 1),
        "wall": seconds_between(workers_started, last_end) if last_end else float("nan"),
        "drain": seconds_between(min(claims), last_end) if claims and last_end else float("nan"),
        "job": Summary.of(
            [
                seconds_between(job["startedAt"], job["finishedAt"])
                for job in jobs
                if job["finishedAt"]
            ]
        ),
        "per_worker": Counter(str(job["worker"]).rpartition(":")[2] for job in jobs),
    }


# -- the whole benchmark ---------------------------------------------------------------------


@contextmanager
def temporary_home(keep: bool) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="pavedroad-bench-pipelines-"))
    try:
        yield home
    finally:
        if keep:
            print(f"  (kept {home})")
        else:
            shutil.rmtree(home, ignore_errors=True)


def use_home(home: Path) -> dict[str, str]:
    """The environment of the ``pave`` processes: this home, an empty configuration
    file and none of the caller's PAVEDROAD_* settings (this process gets the same)."""
    empty = home / "empty.yaml"
    empty.write_text("")
    for name in [name for name in os.environ if name.startswith("PAVEDROAD_")]:
        del os.environ[name]
    os.environ |= {"PAVEDROAD_HOME": str(home), "PAVEDROAD_CONFIG": str(empty)}
    return dict(os.environ)


def report_latency(latency: dict[str, Any]) -> None:
    total: Summary = latency["total"]
    verdict = "meets" if total.median < PUSH_TARGET_SECONDS else "MISSES"
    print("1. Push to first step running (pave up: one process, 2 job threads)")
    print(f"  pushes    {total.count} (after one warm-up push), one job with one run: step")
    print(f"  from git push returning   {total.seconds()}")
    print(f"    ({verdict} the target of a median < {PUSH_TARGET_SECONDS:g} s)")
    print(f"  from the push recorded    {latency['recorded'].seconds()}")
    print("  where the time goes (median, max):")
    for phase, values in latency["phases"].items():
        summary = Summary.of(values)
        print(f"    {phase:<34} {summary.median:.3f} s   {summary.maximum:.3f} s")


def report_steps(steps: dict[str, Any], count: int) -> None:
    overhead: Summary = steps["overhead"]
    verdict = "meets" if overhead.median < STEP_TARGET_SECONDS else "MISSES"
    print(f'2. Per-step overhead (one job of {count} steps of run: "true")')
    print(f"  jobs      {overhead.count}")
    print(f"  overhead per step         {overhead.milliseconds()}")
    print(f"    ({verdict} the target of < {STEP_TARGET_SECONDS * 1000:g} ms)")
    print(f"    = (job duration - {count} x {steps['bare'] * 1000:.1f} ms) / {count}, where")
    print(f"    {steps['bare'] * 1000:.1f} ms is bash running `true` here, without the runner")
    print(f"  job duration              {steps['job'].seconds()}")
    print(f"  one step, as recorded     {steps['step'].milliseconds()}")
    print(f"  step to step              {steps['interval'].milliseconds()}")


def report_queue(queue: dict[str, Any]) -> None:
    print(f"3. {queue['count']} runs queued, then 2 `pave worker`s (pipelines.workers=1 each)")
    print(
        f"  queued    {queue['count']} manual runs in {queue['submitted']:.2f} s, no worker running"
    )
    print(
        f"  completed {queue['completed']}   failed {queue['failed']}   lost {queue['lost']}   "
        f"duplicated {queue['duplicated']}   missing {queue['missing']}   "
        f"retried {queue['retried']}"
    )
    print(f"  wall time {queue['wall']:.2f} s from starting the workers to the last run's end")
    if queue["drain"] > 0:
        rate = queue["completed"] / queue["drain"]
        print(
            f"  drain     {queue['drain']:.2f} s from the first claim to the last end: "
            f"{rate:.2f} runs/s"
        )
    print(f"  one job   {queue['job'].seconds()} (claimed to ended)")
    shares = ", ".join(f"pid {pid}: {n}" for pid, n in sorted(queue["per_worker"].items()))
    print(f"  jobs per worker           {shares}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="pushes timed in part 1")
    parser.add_argument("--steps", type=int, default=50, help="steps of the job in part 2")
    parser.add_argument("--step-jobs", type=int, default=3, help="jobs timed in part 2")
    parser.add_argument("--queued", type=int, default=50, help="runs queued in part 3")
    parser.add_argument("--timeout", type=float, default=600, help="seconds part 3 may take")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.steps, args.step_jobs, args.queued = 3, 10, 1, 6

    load_at_start = os.getloadavg()[0]
    with temporary_home(args.keep) as home:
        env = use_home(home)
        platform_ = Platform(home, env, prepare(home))
        try:
            with platform_.serve("up") as client:
                latency = push_to_first_step(platform_, client, args.runs)
                steps = per_step_overhead(platform_, client, args.steps, args.step_jobs)
            platform_.stop("up")
            # only the workers run jobs; the server plans runs and reconciles
            with platform_.serve("up-no-jobs", PAVEDROAD_PIPELINES__WORKERS="0") as client:
                queue = queued_on_workers(platform_, client, args.queued, args.timeout)
        finally:
            platform_.stop_all()

        print("Pipelines on the embedded default (SQLite database, huey SQLite queue)")
        report_latency(latency)
        report_steps(steps, args.steps)
        report_queue(queue)
        print(
            f"  machine   {platform.platform()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}"
        )
        print(f"  command   {' '.join([Path(sys.executable).name, *sys.argv])}")
        print(
            f"  load      {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
            "(1-minute load average; other work on the machine slows every figure)"
        )
        if args.json:
            args.json.write_text(json.dumps(figures(latency, steps, queue), indent=2, default=str))
    bad = queue["failed"] + queue["lost"] + queue["duplicated"] + queue["missing"]
    if bad:
        sys.exit(1)


def figures(latency: dict[str, Any], steps: dict[str, Any], queue: dict[str, Any]) -> dict:
    return {
        "push_to_first_step": vars(latency["total"]),
        "push_recorded_to_first_step": vars(latency["recorded"]),
        "step_overhead": vars(steps["overhead"]) | {"bare_true_seconds": steps["bare"]},
        "queued": {k: v for k, v in queue.items() if k not in ("per_worker", "job")},
    }


if __name__ == "__main__":
    main()
