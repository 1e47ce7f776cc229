"""The Pipelines pages in a real browser, with real runs: a hosted repository whose
pipeline has two jobs (``build``, then ``test`` which needs it) is pushed, the push is
picked up, and workers in this process run it while the run page is open: the job
graph, the log streaming live with its colours as spans and a secret masked, the
failing test, the artifact download, the release; then Re-run (run #2, whose long step
only re-runs have) and Cancel during that step; the entity's CI tab and the badge.
Also: the runs list and its filters, the templates page with who uses python-service@1
and what they added, an invalid pipeline's problems with their lines, the page without
JavaScript (it refreshes itself), a viewer refused, and an empty list that says how a
run starts.

The shared server (conftest) is built without ``background=True``: nothing picks up
pushes and nothing consumes the job queues. This module calls ``start_pushed()`` as the
reconciler would, and runs queue consumers (:class:`Workers`) only once the run page is
open, so the page is seen to update live. Runs that other modules' pushes started here
are cancelled so the workers run only this module's.
"""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import tarfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from pavedroad.identity.policy import Role
from pavedroad.pipelines.models import FINISHED
from pavedroad.secrets.scopes import SecretScope
from pavedroad.secrets.service import Write

pytestmark = pytest.mark.e2e

OWNER = "checkout-team"
RUN_TIMEOUT = 60_000  # ms: both jobs check out, one runs pytest
SECRET = "s3cr3t-" + uuid.uuid4().hex[:12]
LOG_CAP = 4096
RUN_URL = re.compile(r"/pipelines/runs/[0-9a-f-]{36}")

PIPELINE = f"""\
name: CI
on:
  push: {{}}
jobs:
  build:
    name: Build
    steps:
      - uses: checkout
      - name: Say hello in colour
        run: |
          printf '\\033[1;32mready\\033[0m and \\033[31mred\\033[0m\\n'
          echo "token={SECRET} <b>not bold</b>"
      - name: Print a lot
        run: seq 1 3000
      - name: Upload the package
        uses: artifact/upload
        with: {{name: package, path: src}}
      - name: Build the release
        uses: release/build
      - name: Wait on re-runs
        if: ${{{{ github.event_name == 'rerun' }}}}
        run: echo "waiting for a cancel"; sleep 120
  test:
    name: Test
    needs: [build]
    runs-on: [local]
    steps:
      - uses: checkout
      - uses: python/test
        with: {{args: -q -p no:cacheprovider tests}}
"""

TESTS = """\
def test_adds():
    assert 1 + 1 == 2


def test_subtracts():
    assert 3 - 1 == 1, "three minus one is not one"
"""


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class HostedRepo:
    """A hosted repository and a working copy that pushes to it as a developer would."""

    def __init__(self, portal: Any, name: str) -> None:
        self.portal = portal
        self.name = name
        self.full_name = f"{OWNER}/{name}"
        git = portal.app.state.git
        git.create(OWNER, name, "alice")
        self.work = portal.home / "work" / name
        self.work.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "-q", str(git.root / OWNER / f"{name}.git"), str(self.work), cwd=portal.home)

    def push(self, files: dict[str, str], branch: str = "main") -> str:
        for path, text in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(text))
        _git("checkout", "-q", "-B", branch, cwd=self.work)
        _git("add", "-A", cwd=self.work)
        _git("-c", "user.name=Alice", "-c", "user.email=a@x", "commit", "-qm", "c", cwd=self.work)
        _git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        self.portal.app.state.git.import_spool()
        return _git("rev-parse", "HEAD", cwd=self.work).strip()

    def register(self) -> str:
        """Register its catalog-info.yaml (a Component); returns the entity's ref."""
        public = self.portal.app.state.settings.public_url
        url = f"{public}/repos/{OWNER}/{self.name}/blob/catalog-info.yaml?ref=main"
        self.portal.catalog.register_location("url", url)
        return f"component:default/{self.name}"


def _component(name: str) -> dict[str, str]:
    return {
        "catalog-info.yaml": f"""\
            apiVersion: backstage.io/v1alpha1
            kind: Component
            metadata:
              name: {name}
              description: A service whose pipeline the portal shows.
            spec:
              type: service
              lifecycle: experimental
              owner: group:default/{OWNER}
            """,
        "score.yaml": f"""\
            apiVersion: score.dev/v1b1
            metadata:
              name: {name}
            containers:
              web:
                image: .
            """,
    }


# The repositories whose runs the workers here run; every other run is cancelled.
RUNNABLE: set[str] = set()


def _start_pushed(portal: Any) -> None:
    """Start the runs for recorded pushes, as the reconciler would; cancel those of
    other repositories (other modules' pushes, or ones only planned here), so the
    workers run only what this module means them to."""
    service = portal.app.state.pipelines
    service.start_pushed()
    for status in ("queued", "running"):
        for run in service.runs(status=status, limit=500):
            if run.repository not in RUNNABLE:
                service.cancel(run.id)


class Workers:
    """Pipeline job consumers in the test process, started and stopped at will: those
    of jobs without a ``runs-on`` label, and those of the labels named."""

    def __init__(self, portal: Any) -> None:
        self.queues = portal.app.state.pipelines.queues
        self.consumers: dict[str, Any] = {}

    def start(self, labels: tuple[str, ...] = ()) -> None:
        for name in self.queues.names(list(labels)):
            if name not in self.consumers:
                self.consumers[name] = self.queues(name).consumer(2)
                self.consumers[name].start()

    def stop(self) -> None:
        for consumer in self.consumers.values():
            consumer.stop_and_wait(timeout=30)
        self.consumers = {}


@dataclass
class Service:
    repo: HostedRepo
    entity_ref: str
    run_id: str


@pytest.fixture(scope="module")
def workers(portal: Any) -> Iterator[Workers]:
    running = Workers(portal)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def service(portal: Any) -> Iterator[Service]:
    """A service with the pipeline pushed and its run queued (nothing runs it yet);
    steps' logs are cut at 4 KiB meanwhile, so one step's is."""
    settings = portal.app.state.settings.pipelines
    cap = settings.max_step_log_bytes
    settings.max_step_log_bytes = LOG_CAP
    name = _unique("shelf")
    repo = HostedRepo(portal, name)
    repo.push(
        {
            **_component(name),
            ".pavedroad/pipeline.yaml": PIPELINE,
            "src/shelf/__init__.py": "VERSION = 1\n",
            "tests/test_shelf.py": TESTS,
        }
    )
    entity_ref = repo.register()
    portal.app.state.secrets.set(
        SecretScope.parse(entity_ref, None), "API_TOKEN", SECRET, Write("alice")
    )
    RUNNABLE.add(repo.full_name)
    _start_pushed(portal)
    [run] = portal.app.state.pipelines.runs(repository=repo.full_name)
    assert run.entity_ref == entity_ref
    yield Service(repo, entity_ref, run.id)
    settings.max_step_log_bytes = cap


@contextmanager
def _no_script_page(browser: Any, portal: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=portal.url, java_script_enabled=False)
    context.set_default_timeout(10_000)
    context.add_cookies([portal.session_cookie()])
    try:
        yield context.new_page()
    finally:
        context.close()


def _wait_until_finished(portal: Any, run_id: str) -> None:
    service = portal.app.state.pipelines
    deadline = time.monotonic() + RUN_TIMEOUT / 1000
    while service.run(run_id).status not in FINISHED:
        assert time.monotonic() < deadline, f"run {run_id} did not finish"
        time.sleep(0.2)


def _graph_job(page: Any, name: str) -> Any:
    return page.get_by_test_id("graph-job").filter(has_text=name)


# -- before anything runs ---------------------------------------------------------------------


def test_an_empty_list_says_how_a_run_starts(browser: Any, empty_portal: Any) -> None:
    context = browser.new_context(base_url=empty_portal.url)
    context.add_cookies([empty_portal.session_cookie()])
    page = context.new_page()
    page.goto("/pipelines")
    expect(page.locator(".sidebar a.active")).to_have_text("Pipelines")
    empty = page.get_by_test_id("no-runs")
    expect(empty).to_contain_text(".pavedroad/pipeline.yaml")
    expect(empty).to_contain_text("pave pipeline run")
    context.close()


def test_the_list_shows_the_run_and_filters_without_javascript(
    browser: Any, portal: Any, service: Service
) -> None:
    with _no_script_page(browser, portal) as page:
        page.goto("/pipelines")
        row = page.get_by_test_id("run-row").filter(has_text=service.repo.full_name)
        expect(row).to_have_count(1)
        expect(row).to_contain_text(f"{service.repo.full_name}#1")
        expect(row).to_contain_text("main")
        # a run is queued until a worker takes one of its jobs (none runs here yet)
        expect(row.get_by_test_id("run-status")).to_have_attribute("data-status", "queued")

        page.get_by_test_id("filter-repository").select_option(service.repo.full_name)
        page.get_by_test_id("filter-status").select_option("failed")
        page.get_by_test_id("apply-filters").click()
        expect(page).to_have_url(re.compile(r"repository=checkout-team%2Fshelf-.*status=failed"))
        expect(page.get_by_test_id("no-match")).to_be_visible()
        page.get_by_test_id("filter-status").select_option("queued")
        page.get_by_test_id("apply-filters").click()
        expect(page.get_by_test_id("run-row")).to_have_count(1)

        # the run page refreshes itself while the run is not finished
        page.get_by_test_id("run-link").click()
        expect(page).to_have_url(RUN_URL)
        refresh = page.locator('meta[http-equiv="refresh"]')
        expect(refresh).to_have_attribute("content", "3")
        expect(page.get_by_test_id("graph-job")).to_have_count(2)


def test_the_templates_page_shows_who_uses_which_version(page: Any, portal: Any) -> None:
    name = _unique("basket")
    repo = HostedRepo(portal, name)
    repo.push(
        {
            ".pavedroad/pipeline.yaml": """\
                uses: python-service@1
                jobs:
                  smoke:
                    needs: [build]
                    steps:
                      - run: echo smoke
                extend:
                  test:
                    after:
                      - name: Coverage report
                        run: echo coverage
                """
        }
    )
    _start_pushed(portal)  # and cancelled: only how it was planned matters here
    [run] = portal.app.state.pipelines.runs(repository=repo.full_name)

    page.goto("/pipelines/templates")
    template = page.locator('[data-testid="pipeline-template"][data-template="python-service"]')
    version = template.locator('[data-testid="template-version"][data-version="1"]')
    user = version.locator(f'[data-testid="template-user"][data-repository="{repo.full_name}"]')
    expect(user).to_be_visible()
    expect(user.get_by_test_id("customised")).to_have_text("adds its own")
    expect(user.get_by_test_id("added")).to_contain_text("smoke")
    expect(user.get_by_test_id("added")).to_contain_text("Coverage report (after test)")

    page.goto(f"/pipelines/runs/{run.id}")
    expect(page.get_by_test_id("run-uses")).to_contain_text("python-service@1")
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "cancelled")


def test_an_invalid_pipeline_shows_its_problems_with_lines(page: Any, portal: Any) -> None:
    repo = HostedRepo(portal, _unique("broken"))
    repo.push(
        {
            ".pavedroad/pipeline.yaml": """\
                jobs:
                  a:
                    needs: [b]
                    steps:
                      - run: echo a
                  b:
                    steps:
                      - uses: no/such-step
                """
        }
    )
    _start_pushed(portal)
    [run] = portal.app.state.pipelines.runs(repository=repo.full_name)
    page.goto(f"/pipelines/runs/{run.id}")
    problems = page.get_by_test_id("run-problems")
    expect(problems).to_contain_text("The pipeline file is not valid")
    problem = problems.get_by_test_id("run-problem").filter(has_text="no/such-step")
    expect(problem).to_contain_text("8:")
    expect(problem.get_by_role("link")).to_have_attribute("href", re.compile(r"/blob/.*#L8$"))
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "failed")


def test_a_viewer_sees_why_they_cannot_rerun(page: Any, portal: Any, service: Service) -> None:
    identity = portal.app.state.identity
    if not any(account["name"] == "liam" for account in identity.accounts()):
        identity.create_account("liam", Role.viewer)
    page.context.clear_cookies()
    page.context.add_cookies([portal.session_cookie("liam")])
    page.goto(f"/pipelines/runs/{service.run_id}")
    expect(page.get_by_test_id("run-refused")).to_contain_text("liam is a viewer")
    expect(page.get_by_test_id("cancel-run")).to_have_count(0)


# -- a run, live ------------------------------------------------------------------------------


def test_watch_the_run_live(page: Any, portal: Any, service: Service, workers: Workers) -> None:
    page.goto("/pipelines")
    page.get_by_test_id("run-row").filter(has_text=service.repo.full_name).get_by_test_id(
        "run-link"
    ).click()
    expect(page).to_have_url(re.compile(f"/pipelines/runs/{service.run_id}$"))
    expect(page.get_by_test_id("run-title")).to_contain_text(f"{service.repo.full_name}#1")
    expect(page.get_by_test_id("graph-job")).to_have_count(2)
    expect(_graph_job(page, "Build")).to_have_attribute("data-status", "queued")
    expect(_graph_job(page, "Test")).to_have_attribute("data-status", "waiting")
    expect(page.locator(".pl-edge")).to_have_count(1)  # test needs build
    expect(page.get_by_test_id("job-title")).to_contain_text("Build")

    page.evaluate("window.notReloaded = true")

    workers.start()  # the page is open: what follows arrives live
    log = page.get_by_test_id("job-log")
    expect(log.locator("span.ansi-32.ansi-bold")).to_have_text("ready", timeout=RUN_TIMEOUT)
    expect(log.locator("span.ansi-31")).to_have_text("red")
    expect(log).to_contain_text("token=*** <b>not bold</b>")  # masked, and text, not HTML
    expect(log).not_to_contain_text(SECRET)
    expect(log.locator("b")).to_have_count(0)

    # statuses change in place: the test job waits for a worker for its label (the
    # server's settings give its workers the label "local")
    expect(_graph_job(page, "Build")).to_have_attribute(
        "data-status", "succeeded", timeout=RUN_TIMEOUT
    )
    expect(_graph_job(page, "Test")).to_have_attribute("data-status", "queued")
    colours = page.get_by_test_id("log-section").filter(has_text="Say hello in colour")
    expect(colours.get_by_test_id("step-status")).to_have_attribute("data-status", "succeeded")
    assert page.evaluate("window.notReloaded") is True  # all of it arrived live

    # once the run has ended, the page shows its results
    workers.start(("local",))
    expect(page.get_by_test_id("run-title").get_by_test_id("run-status")).to_have_attribute(
        "data-status", "failed", timeout=RUN_TIMEOUT
    )
    expect(_graph_job(page, "Build")).to_have_attribute("data-status", "succeeded")
    expect(_graph_job(page, "Test")).to_have_attribute("data-status", "failed")
    tests = page.get_by_test_id("test-results")
    expect(tests.get_by_test_id("tests-passed")).to_have_text("1 passed")
    expect(tests.get_by_test_id("tests-failed")).to_have_text("1 failed")
    failure = tests.get_by_test_id("test-failure")
    expect(failure).to_have_count(1)
    expect(failure).to_contain_text("test_subtracts")
    expect(failure).to_contain_text("three minus one is not one")
    expect(page.get_by_test_id("release")).to_contain_text(service.repo.name)

    # the page now shows the job that failed; the server renders the build's log with
    # the same colours
    expect(page.get_by_test_id("job-title")).to_contain_text("Test")
    _graph_job(page, "Build").click()
    section = page.get_by_test_id("log-section").filter(has_text="Say hello in colour")
    if not section.evaluate("element => element.open"):
        section.locator("summary").click()
    expect(section.locator("span.ansi-32.ansi-bold")).to_have_text("ready")
    long = page.get_by_test_id("log-section").filter(has_text="Print a lot")
    expect(long.get_by_test_id("step-truncated")).to_be_visible()  # even while folded
    long.locator("summary").click()
    expect(long.get_by_test_id("truncation-notice")).to_be_visible()
    expect(long.locator(".log-mark-notice")).to_have_text("notice")
    expect(long.get_by_test_id("step-log")).to_contain_text("The step's output was cut at 4.0 KiB")
    expect(long.get_by_test_id("step-log")).not_to_contain_text("3000")
    expect(page.get_by_test_id("download-log")).to_have_attribute(
        "href", re.compile(r"/api/v1/pipelines/jobs/.+/log\.txt$")
    )
    _graph_job(page, "Test").click()
    failed_step = page.get_by_test_id("log-section").filter(has_text="python/test")
    expect(failed_step.get_by_test_id("step-status")).to_have_attribute("data-status", "failed")
    expect(failed_step.get_by_test_id("step-log")).to_contain_text("1 failed")

    with page.expect_download() as download_info:
        page.get_by_test_id("artifact-download").click()
    download = download_info.value
    assert download.suggested_filename == "package.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(Path(download.path()).read_bytes()))) as t:
        assert "shelf/__init__.py" in t.getnames()


def test_rerun_then_cancel_during_a_long_step(
    page: Any, portal: Any, service: Service, workers: Workers
) -> None:
    workers.start(("local",))
    _wait_until_finished(portal, service.run_id)  # when run alone
    page.goto(f"/pipelines/runs/{service.run_id}")
    page.get_by_test_id("rerun-run").click()
    expect(page).to_have_url(re.compile(r"/pipelines/runs/[0-9a-f-]{36}\?notice=rerun"))
    expect(page.get_by_test_id("run-title")).to_contain_text(f"{service.repo.full_name}#2")
    expect(page.get_by_test_id("run-event")).to_have_text("rerun")
    waiting = page.get_by_test_id("log-section").filter(has_text="Wait on re-runs")
    expect(waiting.get_by_test_id("step-status")).to_have_attribute(
        "data-status", "running", timeout=RUN_TIMEOUT
    )
    page.get_by_test_id("cancel-run").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Cancel requested")
    expect(page.get_by_test_id("run-title").get_by_test_id("run-status")).to_have_attribute(
        "data-status", "cancelled", timeout=RUN_TIMEOUT
    )
    expect(_graph_job(page, "Test")).to_have_attribute("data-status", "cancelled")
    # the same files: the release run #1 built, found again
    expect(page.get_by_test_id("release-first-run")).to_contain_text("an earlier run")


def test_the_ci_tab_and_the_badge(page: Any, portal: Any, service: Service) -> None:
    page.goto(f"/catalog/default/component/{service.repo.name}")
    tab = page.get_by_test_id("ci-tab")
    expect(tab.locator(".pl-tab-status")).to_have_attribute("data-status", "cancelled")
    tab.click()
    expect(page).to_have_url(re.compile(f"/catalog/default/component/{service.repo.name}/ci$"))
    branch = page.get_by_test_id("ci-branch")
    expect(branch).to_have_count(1)
    expect(branch).to_contain_text("#2")
    history = page.get_by_test_id("ci-run")
    expect(history).to_have_count(2)
    expect(history.nth(1)).to_have_attribute("data-status", "failed")
    badge_path = f"/pipelines/badge/{OWNER}/{service.repo.name}.svg?branch=main"
    expect(page.get_by_test_id("badge-markdown")).to_contain_text(badge_path)
    preview = page.get_by_test_id("badge-preview")
    expect(preview).to_have_attribute("src", badge_path)
    page.wait_for_function("document.querySelector('[data-testid=badge-preview]').naturalWidth > 0")

    badge = page.request.get(badge_path)
    assert badge.headers["content-type"].startswith("image/svg+xml")
    assert badge.headers["cache-control"] == "no-cache"
    assert ">cancelled<" in badge.text() and "<script" not in badge.text()
    other = page.request.get(f"/pipelines/badge/{OWNER}/{service.repo.name}.svg?branch=nope")
    assert ">no runs<" in other.text()
    signed_out = httpx.get(portal.url + badge_path, timeout=10.0)
    assert signed_out.status_code in (303, 401)  # behind sign-in, as the portal is
