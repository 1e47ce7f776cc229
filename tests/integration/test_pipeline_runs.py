"""Pipeline runs from trigger to result, on a real database and real hosted repositories:
pushes start runs (once each, filters honoured), invalid files give failed runs with their
lines, jobs are planned with their matrix and queued as their needs end, a worker's
reports advance the run (retries, if: conditions, skips), cancel, manual runs with typed
inputs, and recovery of jobs whose worker stopped. The workers here are this test: it
claims jobs and reports on them as `pave worker` does, so the orchestration is exercised
without running steps (tests/integration/test_pipeline_executor.py runs them)."""

from __future__ import annotations

import subprocess
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from pavedroad.pipelines.models import JobRow
from pavedroad.pipelines.runs import PipelineService, Trigger, glob_match


@pytest.fixture
def database_seed() -> str:
    return "demo"  # the teams that own repositories, and the pipeline templates


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class Repo:
    """A hosted repository and a working copy that pushes to it as a developer would."""

    def __init__(self, app: Any, tmp_path: Path, name: str = "svc") -> None:
        self.app = app
        app.state.git.create("checkout-team", name, "bob")
        self.bare = app.state.git.root / "checkout-team" / f"{name}.git"
        self.work = tmp_path / f"work-{name}"
        git("clone", "-q", str(self.bare), str(self.work), cwd=tmp_path)
        self.repository = f"checkout-team/{name}"

    def commit(self, files: dict[str, str], branch: str = "main") -> str:
        for path, text in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))
        git("checkout", "-q", "-B", branch, cwd=self.work)
        git("add", "-A", cwd=self.work)
        git("-c", "user.name=Bob", "-c", "user.email=b@x", "commit", "-qm", "change", cwd=self.work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        self.app.state.git.import_spool()
        return git("rev-parse", "HEAD", cwd=self.work).strip()


@pytest.fixture
def platform(make_app, make_settings, tmp_path):
    app = make_app(make_settings())
    service: PipelineService = app.state.pipelines
    service.queues = None  # this test plays the workers
    return app, service, tmp_path


PIPELINE = """
name: CI
on:
  push:
    branches: [main, "release/**"]
    paths-ignore: ["docs/**"]
  manual:
    inputs:
      level: {type: choice, options: [low, high], default: low}
      count: {type: number}
jobs:
  lint:
    steps:
      - run: echo lint
  test:
    strategy:
      matrix:
        python: ["3.11", "3.12"]
    retries: 1
    steps:
      - run: echo test ${{ matrix.python }}
  build:
    needs: [lint, test]
    steps:
      - run: echo build
  notify:
    needs: [build]
    if: ${{ always() }}
    steps:
      - run: echo notify
"""


def statuses(service: PipelineService, run_id: str) -> dict[str, str]:
    return {job.key: job.status for job in service.jobs(run_id)}


def work(service: PipelineService, run_id: str, key: str, status: str = "succeeded") -> None:
    """Be a worker: claim the queued job ``key`` and report ``status``."""
    job = next(j for j in service.jobs(run_id) if j.key == key)
    assert service.claim(job.id, "test-worker") is not None, f"{key} is {job.status}"
    service.finish_job(job.id, status, {"result": status}, None if status != "failed" else "x")


def test_a_push_starts_one_run_planned_with_its_matrix_and_needs(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    commit = repo.commit({".pavedroad/pipeline.yaml": PIPELINE, "app.py": "x = 1\n"})

    assert service.start_pushed() == 1
    assert service.start_pushed() == 0  # the same push never starts a second run
    [run] = service.runs(repository=repo.repository)

    assert (run.commit, run.branch, run.event, run.number) == (commit, "main", "push", 1)
    assert run.status == "running" and run.problems == []
    assert statuses(service, run.id) == {
        "lint": "queued",
        "test (3.11)": "queued",
        "test (3.12)": "queued",
        "build": "waiting",
        "notify": "waiting",
    }
    described = service.describe(run, with_jobs=True)
    assert [s["name"] for s in described["jobs"][0]["steps"]] == ["Run echo build"]


def test_jobs_advance_as_their_needs_end_and_the_run_takes_their_result(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()

    work(service, run.id, "lint")
    work(service, run.id, "test (3.11)")
    assert statuses(service, run.id)["build"] == "waiting"  # test (3.12) still runs
    work(service, run.id, "test (3.12)", "failed")
    assert statuses(service, run.id)["test (3.12)"] == "queued"  # retries: 1
    work(service, run.id, "test (3.12)", "failed")

    ended = statuses(service, run.id)
    assert ended["build"] == "skipped"  # a need failed
    assert ended["notify"] == "queued"  # if: always()
    work(service, run.id, "notify")
    assert service.run(run.id).status == "failed"
    retried = next(j for j in service.jobs(run.id) if j.key == "test (3.12)")
    assert retried.attempt == 2


def test_an_invalid_pipeline_file_gives_a_failed_run_with_its_lines(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit(
        {
            ".pavedroad/pipeline.yaml": """\
                jobs:
                  a:
                    needs: [b]
                    steps:
                      - run: echo a
                  b:
                    needs: [a]
                    steps:
                      - uses: no/such-step
                      - runs: typo
                """
        }
    )

    service.start_pushed()
    [run] = service.runs()

    assert run.status == "failed" and service.jobs(run.id) == []
    by_line = {(p["line"], p["path"]): p["message"] for p in run.problems}
    assert any("cycle" in message for message in by_line.values()), by_line
    assert any(line == 9 and "no/such-step" in msg for (line, _), msg in by_line.items())
    assert any(line == 10 and "runs" in msg for (line, _), msg in by_line.items())


def test_branch_and_path_filters_decide_whether_a_push_runs(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    assert service.start_pushed() == 1
    repo.commit({"docs/index.md": "# docs only\n"})  # paths-ignore: docs/**
    assert service.start_pushed() == 0
    repo.commit({"feature.py": "y = 2\n"}, branch="feature/x")  # not main nor release/**
    assert service.start_pushed() == 0
    repo.commit({"fix.py": "z = 3\n"}, branch="release/2.0")
    assert service.start_pushed() == 1
    assert [r.branch for r in service.runs()] == ["release/2.0", "main"]


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("main", "main", True),
        ("release/*", "release/1", True),
        ("release/*", "release/1/x", False),
        ("release/**", "release/1/x", True),
        ("docs/**", "docs/a/b.md", True),
        ("*.md", "docs/a.md", False),
        ("**.md", "docs/a.md", True),
        ("v?", "v1", True),
    ],
)
def test_filter_patterns_follow_github(pattern, value, matches):
    assert glob_match(pattern, value) is matches


def test_a_repository_without_a_pipeline_file_runs_nothing(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({"README.md": "hi\n"})
    assert service.start_pushed() == 0
    with pytest.raises(Exception, match=r"has no \.pavedroad/pipeline\.yaml"):
        service.start_manual(repo.repository, "main", "bob")


def test_a_manual_run_checks_its_typed_inputs(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})

    with pytest.raises(Exception) as refused:
        service.start_manual(repo.repository, "main", "bob", {"level": "extreme", "nope": 1})
    errors = refused.value.extensions["errors"]  # type: ignore[attr-defined]
    assert set(errors) == {"level", "nope"}

    run = service.start_manual(repo.repository, "main", "bob", {"level": "high", "count": 3})
    assert run.event == "manual" and run.inputs["level"] == "high" and run.created_by == "bob"


def test_cancel_ends_waiting_and_queued_jobs_and_the_run(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    lint = next(j for j in service.jobs(run.id) if j.key == "lint")
    service.claim(lint.id, "test-worker")

    service.cancel(run.id)

    assert statuses(service, run.id)["build"] == "cancelled"
    assert service.heartbeat(lint.id) is False  # the running job is told to stop
    service.finish_job(lint.id, "cancelled", {}, None)
    assert service.run(run.id).status == "cancelled"


def test_a_job_whose_worker_stopped_is_retried_then_failed(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    test_job = next(j for j in service.jobs(run.id) if j.key == "test (3.11)")
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    for _attempt in range(2):
        assert service.claim(test_job.id, "a-worker-that-dies") is not None
        with app.state.db.session() as session:
            session.execute(
                update(JobRow).where(JobRow.id == test_job.id).values(heartbeat_at=long_ago)
            )
        assert service.recover() >= 1
    job = next(j for j in service.jobs(run.id) if j.key == "test (3.11)")
    assert job.status == "failed" and "worker" in (job.error or "")


def test_a_rerun_is_a_new_run_of_the_same_commit(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    service.cancel(run.id)

    again = service.rerun(run.id, "carol")

    assert (again.commit, again.number, again.rerun_of) == (run.commit, 2, run.id)
    assert again.created_by == "carol" and again.status == "running"


def test_a_pipeline_using_a_template_resolves_against_the_catalog(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": "uses: python-service@1\n"})

    service.start_pushed()
    [run] = service.runs()

    assert run.problems == [] and run.template_ref == "python-service"
    assert {job.job_id for job in service.jobs(run.id)} == {"lint", "test", "build"}


def test_triggers_are_keyed_so_two_services_never_start_one_push_twice(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    commit = repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    trigger = Trigger(repo.repository, commit, "refs/heads/main", "push", "push:same", "bob")
    other = PipelineService(app.state.db, app.state.settings, app.state.catalog)

    first, second = service.start(trigger), other.start(trigger)

    assert first is not None and second is not None and first.id == second.id


def test_a_push_runs_its_pipeline_on_the_queue_to_the_end(make_app, make_settings, tmp_path):
    """Everything for real: the push is noticed, jobs go through the job queue to this
    process's workers, steps run as processes, logs and outputs come back."""
    from fastapi.testclient import TestClient
    from integration_support import wait_for

    app = make_app(make_settings(), background=True)
    with TestClient(app) as client:
        repo = Repo(app, tmp_path)
        repo.commit(
            {
                ".pavedroad/pipeline.yaml": """\
                    on: push
                    jobs:
                      make:
                        outputs:
                          word: ${{ steps.pick.outputs.word }}
                        steps:
                          - uses: checkout
                          - id: pick
                            run: echo "word=$(cat word.txt)" >> "$PAVEDROAD_OUTPUT"
                      say:
                        needs: [make]
                        runs-on: local
                        steps:
                          - run: echo "the word is ${{ needs.make.outputs.word }}"
                    """,
                "word.txt": "paved\n",
            }
        )
        service: PipelineService = app.state.pipelines

        assert wait_for(lambda: service.runs() and service.runs()[0].status in ("succeeded",
                        "failed", "cancelled"), timeout=60)  # fmt: skip
        [run] = service.runs()
        described = client.get(f"/api/v1/pipelines/runs/{run.id}").json()
        assert described["status"] == "succeeded", described
        say = next(job for job in described["jobs"] if job["key"] == "say")
        log = client.get(f"/api/v1/pipelines/jobs/{say['id']}/log.txt").text
        assert "the word is paved" in log


GROUPED = """
on: push
concurrency:
  group: deploy-${{ github.ref }}
  cancel-in-progress: %s
jobs:
  only:
    steps:
      - run: echo one
"""


def test_a_new_run_cancels_the_one_in_progress_of_its_group(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": GROUPED % "true"})
    service.start_pushed()
    repo.commit({"a.txt": "a\n"})
    service.start_pushed()

    newer, older = service.runs()

    assert older.status == "cancelled" and newer.status == "running"


def test_without_cancel_in_progress_a_run_waits_for_its_group(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": GROUPED % "false"})
    service.start_pushed()
    repo.commit({"a.txt": "a\n"})
    service.start_pushed()
    newer, older = service.runs()
    assert (older.status, newer.status) == ("running", "queued")
    assert statuses(service, newer.id) == {"only": "waiting"}

    work(service, older.id, "only")

    assert service.run(older.id).status == "succeeded"
    assert statuses(service, newer.id) == {"only": "queued"}


def test_a_schedule_starts_one_run_per_matching_minute(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit(
        {
            ".pavedroad/pipeline.yaml": """\
                on:
                  schedule:
                    - cron: "30 4 * * 1-5"
                jobs:
                  nightly:
                    steps:
                      - run: echo nightly
                """
        }
    )
    monday = datetime(2026, 11, 23, 4, 30, 12, tzinfo=UTC)

    assert service.fire_schedules(monday) == 1
    assert service.fire_schedules(monday.replace(second=50)) == 0  # the same minute
    assert service.fire_schedules(monday.replace(minute=31)) == 0  # not its minute
    assert service.fire_schedules(monday.replace(day=29)) == 0  # a Sunday
    [run] = service.runs()
    assert run.event == "schedule" and run.branch == "main"


def test_a_cache_saved_by_one_run_is_restored_by_the_next(make_app, make_settings, tmp_path):
    from fastapi.testclient import TestClient
    from integration_support import wait_for

    app = make_app(make_settings(), background=True)
    with TestClient(app) as client:
        repo = Repo(app, tmp_path)
        repo.commit(
            {
                ".pavedroad/pipeline.yaml": """\
                    on: push
                    jobs:
                      deps:
                        steps:
                          - uses: checkout
                          - id: restore
                            uses: cache/restore
                            with:
                              key: deps-${{ hashFiles('deps.txt') }}
                              path: .deps
                          - run: |
                              if [ "${{ steps.restore.outputs.cache-hit }}" = "true" ]; then
                                echo "from the cache: $(cat .deps/value)"
                              else
                                mkdir -p .deps && echo built-once > .deps/value
                              fi
                          - uses: cache/save
                            with:
                              key: deps-${{ hashFiles('deps.txt') }}
                              path: .deps
                    """,
                "deps.txt": "requests==2\n",
            }
        )
        service: PipelineService = app.state.pipelines

        def finished(count: int) -> bool:
            runs = service.runs()
            return len(runs) >= count and all(
                r.status in ("succeeded", "failed", "cancelled") for r in runs
            )

        assert wait_for(lambda: finished(1), timeout=60)
        first = service.runs()[0]
        service.rerun(first.id, "bob")
        assert wait_for(lambda: finished(2), timeout=60)
        second = service.runs()[0]
        logs = [
            client.get(f"/api/v1/pipelines/jobs/{job.id}/log.txt").text
            for job in service.jobs(second.id)
        ]
    assert (first.status, service.run(second.id).status) == ("succeeded", "succeeded")
    assert "from the cache: built-once" in logs[0]


def test_artifacts_and_test_results_come_back_through_the_api(make_app, make_settings, tmp_path):
    import io
    import tarfile

    from fastapi.testclient import TestClient
    from integration_support import wait_for

    app = make_app(make_settings(), background=True)
    with TestClient(app) as client:
        repo = Repo(app, tmp_path)
        repo.commit(
            {
                ".pavedroad/pipeline.yaml": """\
                    on: push
                    jobs:
                      test:
                        steps:
                          - uses: checkout
                          - uses: python/test
                            continue-on-error: true
                          - run: mkdir -p out && echo report > out/report.txt
                          - uses: artifact/upload
                            with: {name: report, path: out}
                    """,
                "tests/test_it.py": "def test_ok():\n    pass\n\n\ndef test_bad():\n    assert 0\n",
            }
        )
        service: PipelineService = app.state.pipelines
        assert wait_for(
            lambda: bool(service.runs()) and service.runs()[0].status == "succeeded", timeout=60
        ), [service.describe(r, with_jobs=True) for r in service.runs()]
        run = service.runs()[0]
        job = service.jobs(run.id)[0]

        listed = client.get(f"/api/v1/pipelines/runs/{run.id}/artifacts").json()["items"]
        blob = client.get(f"/api/v1/pipelines/runs/{run.id}/artifacts/report")
        tests = client.get(f"/api/v1/pipelines/jobs/{job.id}/tests").json()
        missing = client.get(f"/api/v1/pipelines/runs/{run.id}/artifacts/nope")

    assert [a["name"] for a in listed] == ["report"]
    assert blob.status_code == 200 and blob.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(blob.content)) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("report.txt"))
        assert archive.extractfile(member).read() == b"report\n"  # type: ignore[union-attr]
    assert tests["counts"] == {"passed": 1, "failed": 1}
    assert missing.status_code == 404


def test_a_report_from_a_superseded_claim_changes_nothing(platform):
    app, service, tmp_path = platform
    repo = Repo(app, tmp_path)
    repo.commit({".pavedroad/pipeline.yaml": PIPELINE})
    service.start_pushed()
    [run] = service.runs()
    job = next(j for j in service.jobs(run.id) if j.key == "test (3.11)")  # retries: 1
    first = service.claim(job.id, "worker-a:1")
    assert first is not None
    with app.state.db.session() as session:  # worker a goes silent; its job is retried
        session.execute(
            update(JobRow)
            .where(JobRow.id == job.id)
            .values(heartbeat_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    service.recover()
    second = service.claim(job.id, "worker-b:2")
    assert second is not None and second.attempt == 2

    # worker a was only slow: its late report is for a claim that is no longer the job's
    service.finish_job(job.id, "succeeded", {}, None, worker="worker-a:1", attempt=1)
    assert statuses(service, run.id)["test (3.11)"] == "running"
    service.finish_job(job.id, "succeeded", {}, None, worker="worker-b:2", attempt=2)
    assert statuses(service, run.id)["test (3.11)"] == "succeeded"
