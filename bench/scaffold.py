"""Scaffolder benchmark: from the form's submit to a pushed repository and a registered
entity, on the embedded default (SQLite, the huey queue in the server's threads).

Run from the repository root:

    .venv/bin/python bench/scaffold.py            # 10 runs of "Python web service"
    .venv/bin/python bench/scaffold.py --runs 30

It starts `pave up` in a temporary PAVEDROAD_HOME with the demo organisation, signs in
with a token of a checkout-team member, then for each run POSTs the form's answers to
/api/v1/scaffolder/tasks (what the portal's Create button does) and polls the task until
it ends. Each figure is the wall-clock time from the POST to the task's completion,
which is after the repository was pushed and the entity registered; both are checked.
It also prints where the time goes (queue wait, process start, each step), the machine
and the exact command. The target: median under 2 s. The new repositories' pipelines
are planned but not run (no pipeline workers), so their jobs do not share the machine
with what is measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from benchkit import free_port, prepare

PAVE = Path(sys.executable).parent / "pave"
TARGET_SECONDS = 2.0


def seconds_between(start: str | None, end: str | None) -> float:
    if not start or not end:
        return float("nan")
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def run_once(client: httpx.Client, index: int) -> dict[str, Any]:
    name = f"bench-svc-{index}"
    started = time.perf_counter()
    response = client.post(
        "/api/v1/scaffolder/tasks",
        json={
            "templateRef": "template:default/python-web-service",
            "values": {
                "name": name,
                "description": "A benchmark service",
                "owner": "group:default/checkout-team",
                "repoUrl": f"pavedroad?owner=checkout-team&repo={name}",
            },
        },
    )
    response.raise_for_status()
    task_id = response.json()["id"]
    while True:
        task = client.get(f"/api/v1/scaffolder/tasks/{task_id}").json()
        if task["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    if task["status"] != "completed":
        raise SystemExit(f"run {index} ended {task['status']}: {task['error']}")
    repo = client.get(f"/api/v1/git/repos/checkout-team/{name}/pushes").json()["items"]
    entity = client.get(f"/api/v1/catalog/entities/component/default/{name}")
    if not repo or entity.status_code != 200:
        raise SystemExit(f"run {index}: the repository or the entity is missing")
    events = client.get(f"/api/v1/scaffolder/tasks/{task_id}/events").json()["items"]
    first_log = next((e["at"] for e in events if e["type"] == "log"), None)
    phases = {
        "queue wait": seconds_between(task["createdAt"], task["startedAt"]),
        "process start": seconds_between(task["startedAt"], first_log),
    }
    for step in task["steps"]:
        phases[f"step {step['id']}"] = seconds_between(
            step.get("startedAt"), step.get("finishedAt")
        )
    return {"seconds": elapsed, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="pavedroad-bench-scaffold-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAVEDROAD_")}
    empty = home / "empty.yaml"
    empty.write_text("")
    env |= {"PAVEDROAD_HOME": str(home), "PAVEDROAD_CONFIG": str(empty)}
    # The new repositories' pipelines are planned but not run: this measures the scaffolder.
    env["PAVEDROAD_PIPELINES__WORKERS"] = "0"
    os.environ |= {"PAVEDROAD_HOME": str(home), "PAVEDROAD_CONFIG": str(empty)}
    token = prepare(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(PAVE), "up", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("pave up did not start:\n" + (home / "server.log").read_text())
            time.sleep(0.1)
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            run_once(client, 0)  # warm-up: first use of the template records its version
            results = [run_once(client, index) for index in range(1, args.runs + 1)]
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)

    times = sorted(r["seconds"] for r in results)
    median = statistics.median(times)
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    print("Scaffolder: form submit → pushed repository and registered entity")
    print('  template  "Python web service" (examples/demo/templates/python-web-service)')
    print(f"  runs      {len(times)} (after one warm-up run)")
    verdict = "meets" if median < TARGET_SECONDS else "MISSES"
    print(f"  median    {median:.3f} s   ({verdict} the target of < {TARGET_SECONDS:g} s)")
    print(f"  p90       {p90:.3f} s")
    print(f"  min/max   {times[0]:.3f} s / {times[-1]:.3f} s")
    print("  where the time goes (median of each):")
    for phase in results[0]["phases"]:
        values = [r["phases"][phase] for r in results if phase in r["phases"]]
        print(f"    {phase:<28} {statistics.median(values):.3f} s")
    print(
        f"  machine   {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"  command   {' '.join([Path(sys.executable).name, *sys.argv])}")


if __name__ == "__main__":
    main()
