"""The Environments pages in a real browser: the matrix of components by environments
with each cell's live release, status, URL, age and actions; a viewer who sees no
actions; an approval the requester cannot give and another owner gives from the
deployment page (the service then queues the deployment); a promotion from the matrix
and one refused because nothing is live where it comes from; the timeline of a failed
and of a running deployment without JavaScript (the running one refreshes itself); the
component's Deployments tab with the live instance's log lines (a real supervised
process) and its Deploy form; an environment's page, and removing a run-time one.

Deployments need a runtime to run, so each test writes what deployments would have left
behind (releases, deployments with their timelines, what is live, approvals) straight
into the server's database, for a component of its own registered in the catalog and
owned by the demo's checkout team (bob and carol are members). Nothing consumes the
deployment queue here: what a page asks for is queued and stays so.
"""

from __future__ import annotations

import re
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import utcnow
from pavedroad.environments.models import (
    DEPLOYMENT_STEPS,
    DeploymentEventRow,
    DeploymentRow,
    LiveRow,
    ReleaseRow,
)
from pavedroad.identity.policy import Role

pytestmark = pytest.mark.e2e

OWNER = "checkout-team"
MEMBERS = {"bob": Role.member, "carol": Role.member, "liam": Role.viewer}
FAILURE = "ready: the new instance did not answer its readiness check within 60 s"
LOG_LINE = "ledger listening on port"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _accounts(portal: Any) -> None:
    identity = portal.app.state.identity
    existing = {account["name"] for account in identity.accounts()}
    for name, role in MEMBERS.items():
        if name not in existing:
            identity.create_account(name, role)


@dataclass
class Release:
    id: str
    commit: str

    @property
    def label(self) -> str:
        return self.commit[:7]


@dataclass
class Scenario:
    """A component and what its deployments left behind:

    - development: release ``r2`` live (#``dev_live``), ``r3`` being deployed (``running``,
      at the readiness check);
    - staging: ``r1`` live (promoted), a promotion of ``r2`` that ``failed``;
    - production: a promotion of ``r1`` asked for by bob, ``awaiting-approval``.
    """

    name: str
    ref: str
    r1: Release
    r2: Release
    r3: Release
    dev_live: DeploymentRow
    staging_live: DeploymentRow
    failed: DeploymentRow
    running: DeploymentRow
    waiting: DeploymentRow

    @property
    def tab(self) -> str:
        return f"/catalog/default/component/{self.name}/deployments"


def _release(component: str, name: str) -> tuple[ReleaseRow, Release]:
    commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    row = ReleaseRow(
        id=new_id(),
        component=component,
        digest="sha256:" + uuid.uuid4().hex * 2,
        size=2048,
        repository=f"{OWNER}/{name}",
        commit=commit,
        branch="main",
        score={"apiVersion": "score.dev/v1b1", "metadata": {"name": name}},
        score_text=f"apiVersion: score.dev/v1b1\nmetadata:\n  name: {name}\n",
        source="pipeline",
        run_id=None,
        created_by="bob",
        created_at=utcnow() - timedelta(hours=5),
    )
    return row, Release(row.id, commit)


class Rows:
    """Deployments numbered after every one the server has, with their timelines."""

    def __init__(self, session: Any, component: str) -> None:
        self.session = session
        self.component = component
        self.number = session.scalar(select(func.max(DeploymentRow.number))) or 0

    def deployment(
        self,
        environment: str,
        release: Release,
        status: str,
        *,
        kind: str = "auto",
        steps: tuple[str, ...] = DEPLOYMENT_STEPS,
        failed_step: str | None = None,
        ago: timedelta = timedelta(hours=1),
        **values: Any,
    ) -> DeploymentRow:
        self.number += 1
        began = utcnow() - ago
        ended = status not in ("awaiting-approval", "queued", "running")
        row = DeploymentRow(
            id=new_id(),
            number=self.number,
            component=self.component,
            environment=environment,
            release_id=release.id,
            kind=kind,
            status=status,
            step=values.pop("step", None),
            active_key=None if ended else f"{self.component}|{environment}|{release.id}",
            requested_by=values.pop("requested_by", "bob"),
            reason=values.pop("reason", None),
            log_tail=values.pop("log_tail", []),
            config={"variables": {}},
            secret_versions={},
            instances=[],
            url=values.pop("url", None),
            attempt=0 if status == "awaiting-approval" else 1,
            created_at=began,
            started_at=None if status == "awaiting-approval" else began,
            finished_at=began + timedelta(seconds=42) if ended else None,
            **values,
        )
        self.session.add(row)
        self.event(row, began, "request", "info", f"{kind} of release {release.id} by bob")
        at = began
        for step in steps:
            at += timedelta(seconds=3)
            self.event(row, at, step, "started", "")
            if step == failed_step:
                self.event(row, at + timedelta(seconds=60), step, "failed", FAILURE)
                self.event(row, at + timedelta(seconds=60), "rollback", "info", "keeps serving")
            elif status != "running" or step != steps[-1]:
                self.event(row, at + timedelta(seconds=2), step, "succeeded", f"{step} done")
        if status in ("live", "replaced"):
            self.event(row, at + timedelta(seconds=3), "live", "succeeded", f"live at {row.url}")
        return row

    def event(self, row: DeploymentRow, at: Any, step: str, status: str, message: str) -> None:
        self.session.add(
            DeploymentEventRow(
                deployment_id=row.id, at=at, step=step, status=status, message=message
            )
        )

    def live(self, row: DeploymentRow, since: timedelta, instances: list[str]) -> None:
        self.session.add(
            LiveRow(
                component=self.component,
                environment=row.environment,
                release_id=row.release_id,
                deployment_id=row.id,
                instances=instances,
                url=row.url,
                since=utcnow() - since,
            )
        )


def _scenario(portal: Any, staging_instances: list[str] | None = None) -> Scenario:
    _accounts(portal)
    name = _unique("ledger")
    portal.register_yaml(
        f"{name}.yaml",
        textwrap.dedent(
            f"""\
            apiVersion: backstage.io/v1alpha1
            kind: Component
            metadata:
              name: {name}
              description: A service whose deployments the portal shows.
            spec:
              type: service
              lifecycle: production
              owner: group:default/{OWNER}
            """
        ),
    )
    ref = f"component:default/{name}"
    url = "http://{}.{}.localhost:7070/"
    with portal.app.state.db.session() as session:
        (row1, r1), (row2, r2), (row3, r3) = (_release(ref, name) for _ in range(3))
        session.add_all([row1, row2, row3])
        rows = Rows(session, ref)
        rows.deployment(
            "development",
            r1,
            "replaced",
            ago=timedelta(hours=4),
            url=url.format(name, "development"),
        )
        staging_live = rows.deployment(
            "staging",
            r1,
            "live",
            kind="promote",
            promoted_from="development",
            ago=timedelta(hours=3),
            url=url.format(name, "staging"),
        )
        dev_live = rows.deployment(
            "development", r2, "live", ago=timedelta(hours=2), url=url.format(name, "development")
        )
        failed = rows.deployment(
            "staging",
            r2,
            "failed",
            kind="promote",
            promoted_from="development",
            steps=DEPLOYMENT_STEPS[:5],
            failed_step="ready",
            reason=FAILURE,
            log_tail=["Traceback (most recent call last):", "ModuleNotFoundError: ledger_app"],
            previous_release_id=r1.id,
        )
        waiting = rows.deployment(
            "production",
            r1,
            "awaiting-approval",
            kind="promote",
            promoted_from="staging",
            steps=(),
            approval_expires_at=utcnow() + timedelta(hours=23),
        )
        running = rows.deployment(
            "development",
            r3,
            "running",
            steps=DEPLOYMENT_STEPS[:5],
            step="ready",
            ago=timedelta(seconds=20),
            heartbeat_at=utcnow(),
            previous_release_id=r2.id,
        )
        rows.live(dev_live, timedelta(hours=2), [])
        rows.live(staging_live, timedelta(hours=3), staging_instances or [])
    return Scenario(name, ref, r1, r2, r3, dev_live, staging_live, failed, running, waiting)


def _row(page: Any, scenario: Scenario) -> Any:
    return page.locator(f'[data-testid="matrix-row"][data-component="{scenario.ref}"]')


def _cell(page: Any, scenario: Scenario, environment: str) -> Any:
    return _row(page, scenario).locator(
        f'[data-testid="matrix-cell"][data-environment="{environment}"]'
    )


@contextmanager
def _signed_in(
    browser: Any, portal: Any, user: str = "alice", script: bool = True
) -> Iterator[Any]:
    """A page in a fresh browser context signed in as ``user``, with or without
    JavaScript; fails the test if the page raised a JavaScript error."""
    context = browser.new_context(base_url=portal.url, java_script_enabled=script)
    context.set_default_timeout(10_000)
    context.add_cookies([portal.session_cookie(user)])
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# -- the matrix ------------------------------------------------------------------------------


def test_the_matrix_shows_what_is_live_where_and_what_to_do(page: Any, portal: Any) -> None:
    scenario = _scenario(portal)
    page.goto("/environments")
    expect(page.locator(".sidebar a.active")).to_have_text("Environments")
    headings = page.get_by_test_id("matrix-environment")
    expect(headings.nth(0)).to_have_attribute("data-environment", "development")
    expect(headings.nth(1)).to_have_attribute("data-environment", "staging")
    expect(headings.nth(2)).to_have_attribute("data-environment", "production")

    development = _cell(page, scenario, "development")
    expect(development.get_by_test_id("live-release")).to_have_text(scenario.r2.label)
    expect(development.get_by_test_id("live-link")).to_have_attribute(
        "href", f"/deployments/{scenario.dev_live.id}"
    )
    expect(development.get_by_test_id("live-url")).to_have_attribute(
        "href", f"http://{scenario.name}.development.localhost:7070/"
    )
    expect(development.get_by_test_id("live-age")).to_have_text("2 hours ago")
    status = development.get_by_test_id("deployment-status")
    expect(status).to_have_text("running · ready")
    expect(development.get_by_test_id("latest-release")).to_have_text(scenario.r3.label)
    expect(development.get_by_test_id("promote")).to_have_count(0)  # nothing comes before it
    expect(development.get_by_test_id("rollback")).to_be_visible()

    staging = _cell(page, scenario, "staging")
    expect(staging.get_by_test_id("live-release")).to_have_text(scenario.r1.label)
    failed = staging.get_by_test_id("deployment-status")
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed).to_have_attribute("title", FAILURE)  # the reason on hover
    expect(staging.get_by_test_id("latest-reason")).to_contain_text("readiness check")
    expect(staging.get_by_test_id("promote")).to_be_visible()  # development has r2
    expect(staging.get_by_test_id("rollback")).to_have_count(0)  # nothing was live before r1

    production = _cell(page, scenario, "production")
    expect(production.get_by_test_id("live-release")).to_have_count(0)
    expect(production.get_by_test_id("deployment-status")).to_have_text("awaiting approval")
    expect(production.get_by_test_id("approve")).to_be_visible()  # alice is not the requester
    expect(production.get_by_test_id("reject")).to_be_visible()

    rules = page.get_by_test_id("environment-list")
    prod = rules.locator('[data-testid="environment-row"][data-environment="production"]')
    expect(prod.get_by_test_id("rule-promotes-from")).to_contain_text("staging only")
    expect(prod.get_by_test_id("rule-approval")).to_have_text(
        "1 approval from the component's owners, within 24 h"
    )
    dev = rules.locator('[data-testid="environment-row"][data-environment="development"]')
    expect(dev.get_by_test_id("rule-auto-deploy")).to_have_text("releases of the default branch")
    expect(dev.get_by_test_id("rule-previews")).to_contain_text("each lasts 72 h")

    # rejecting from the matrix: back to it, with what happened
    production.get_by_test_id("reject").click()
    expect(page).to_have_url(re.compile(r"/environments\?notice=rejected&deployment=\d+$"))
    expect(page.get_by_test_id("notice")).to_contain_text("Rejected")
    expect(page.get_by_test_id("notice-deployment")).to_have_text(
        f"Deployment #{scenario.waiting.number}"
    )
    production = _cell(page, scenario, "production")
    expect(production.get_by_test_id("deployment-status")).to_have_attribute(
        "data-status", "rejected"
    )
    expect(production.get_by_test_id("approve")).to_have_count(0)


def test_a_viewer_sees_no_actions(browser: Any, portal: Any) -> None:
    scenario = _scenario(portal)
    with _signed_in(browser, portal, "liam") as page:
        page.goto("/environments")
        expect(_cell(page, scenario, "staging").get_by_test_id("live-release")).to_be_visible()
        expect(_row(page, scenario).get_by_test_id("cell-actions")).to_have_count(0)
        expect(_row(page, scenario).locator("form")).to_have_count(0)

        page.goto(f"/deployments/{scenario.waiting.number}")
        expect(page.get_by_test_id("approve")).to_have_count(0)
        expect(page.get_by_test_id("approve-refused")).to_contain_text("liam is a viewer")
        expect(page.get_by_test_id("cancel")).to_have_count(0)

        page.goto(scenario.tab)
        expect(page.get_by_test_id("deploy-form")).to_have_count(0)
        expect(page.get_by_test_id("deploy-refused")).to_contain_text("liam")


# -- approvals -------------------------------------------------------------------------------


def test_the_requester_cannot_approve_and_another_owner_can(browser: Any, portal: Any) -> None:
    scenario = _scenario(portal)
    page_url = f"/deployments/{scenario.waiting.number}"
    with _signed_in(browser, portal, "bob") as page:
        page.goto(page_url)
        expect(page.get_by_test_id("deployment-status")).to_have_text("awaiting approval")
        expect(page.get_by_test_id("awaiting-approval")).to_contain_text("other than bob")
        expect(page.get_by_test_id("approve")).to_have_count(0)
        expect(page.get_by_test_id("approve-refused")).to_contain_text(
            "You asked for this deployment"
        )
        expect(page.get_by_test_id("cancel")).to_be_visible()  # the requester may withdraw it

    with _signed_in(browser, portal, "carol") as page:
        page.goto(page_url)
        page.get_by_test_id("decision-comment").fill("Soaked in staging; ship it")
        page.get_by_test_id("approve").click()
        expect(page).to_have_url(
            re.compile(f"/deployments/{scenario.waiting.id}\\?notice=approved&deployment=\\d+$")
        )
        expect(page.get_by_test_id("notice")).to_contain_text("the deployment is queued")
        expect(page.get_by_test_id("deployment-status")).to_have_attribute("data-status", "queued")
        approval = page.get_by_test_id("approval")
        expect(approval).to_have_attribute("data-decision", "approved")
        expect(approval).to_contain_text("carol")
        expect(approval).to_contain_text("Soaked in staging; ship it")
        entries = page.get_by_test_id("timeline-entry")
        expect(entries.filter(has_text="approved by carol")).to_have_count(1)
        # queued, so the page refreshes itself until the deployment ends
        expect(page.locator('meta[http-equiv="refresh"]')).to_have_attribute("content", "3")

    row = portal.app.state.deployments.get(scenario.waiting.id)
    assert row.status == "queued"


# -- promotion -------------------------------------------------------------------------------


def test_promote_from_the_matrix_and_a_refused_promotion(page: Any, portal: Any) -> None:
    scenario = _scenario(portal)
    page.goto("/environments")
    _cell(page, scenario, "staging").get_by_test_id("promote").click()
    expect(page).to_have_url(re.compile(r"/environments\?notice=promoted&deployment=\d+$"))
    expect(page.get_by_test_id("notice")).to_contain_text("Promotion requested")
    staging = _cell(page, scenario, "staging")
    expect(staging.get_by_test_id("deployment-status")).to_have_attribute("data-status", "queued")
    expect(staging.get_by_test_id("latest-release")).to_have_text(scenario.r2.label)
    [promotion] = portal.app.state.deployments.recent(scenario.ref, "staging", "queued")
    assert (promotion.release_id, promotion.kind, promotion.requested_by) == (
        scenario.r2.id,
        "promote",
        "alice",
    )

    # the page still offers to promote to production, but staging's release has gone since
    with portal.app.state.db.session() as session:
        session.delete(session.get(LiveRow, (scenario.ref, "staging")))
    _cell(page, scenario, "production").get_by_test_id("promote").click()
    error = page.get_by_test_id("deployment-error")
    expect(error).to_have_attribute("data-status", "400")
    expect(error).to_contain_text(f"nothing of {scenario.ref} is live in staging")
    expect(page.get_by_test_id("matrix")).to_be_visible()  # the matrix, showing the refusal


# -- a deployment's timeline, without JavaScript --------------------------------------------


def test_the_timeline_of_a_failed_and_a_running_deployment(browser: Any, portal: Any) -> None:
    scenario = _scenario(portal)
    with _signed_in(browser, portal, script=False) as page:
        page.goto(f"/deployments/{scenario.failed.id}")
        title = page.get_by_test_id("deployment-title")
        expect(title).to_contain_text(scenario.name)
        expect(title.get_by_test_id("deployment-status")).to_have_attribute("data-status", "failed")
        expect(page.get_by_test_id("deployment-kind")).to_have_text("promotion from development")
        expect(page.get_by_test_id("failure-reason")).to_have_text(FAILURE)
        expect(page.get_by_test_id("failure")).to_contain_text("What was live before keeps serving")
        expect(page.get_by_test_id("still-serving")).to_have_text(scenario.r1.label)
        expect(page.get_by_test_id("log-tail")).to_contain_text("ModuleNotFoundError: ledger_app")
        expect(page.get_by_test_id("previous-release")).to_have_text(scenario.r1.label)
        entries = page.get_by_test_id("timeline-entry")
        expect(entries).to_have_count(7)  # requested, five steps, the automatic rollback
        resolve = page.locator('[data-testid="timeline-entry"][data-step="resolve"]')
        expect(resolve).to_have_attribute("data-status", "succeeded")
        expect(resolve.get_by_test_id("step-duration")).to_have_text("2.0 s")
        ready = page.locator('[data-testid="timeline-entry"][data-step="ready"]')
        expect(ready).to_have_attribute("data-status", "failed")
        expect(ready.get_by_test_id("step-duration")).to_have_text("1 min 0 s")
        expect(ready).to_contain_text("readiness check")
        rollback = page.locator('[data-testid="timeline-entry"][data-step="rollback"]')
        expect(rollback).to_contain_text("keeps serving")
        expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(0)  # it has ended

        page.goto(f"/deployments/{scenario.running.number}")
        expect(page.get_by_test_id("deployment-status")).to_have_text("running · ready")
        expect(page.locator('meta[http-equiv="refresh"]')).to_have_attribute("content", "3")
        ready = page.locator('[data-testid="timeline-entry"][data-step="ready"]')
        expect(ready).to_have_attribute("data-status", "running")
        for step in ("switch", "drain", "live"):
            pending = page.locator(f'[data-testid="timeline-entry"][data-step="{step}"]')
            expect(pending).to_have_attribute("data-status", "pending")

        # the matrix without JavaScript: the actions are plain forms
        page.goto("/environments")
        _cell(page, scenario, "development").get_by_test_id("rollback").click()
        expect(page.get_by_test_id("notice")).to_contain_text("Rollback requested")
        [rollback_row] = portal.app.state.deployments.recent(scenario.ref, "development", "queued")
        assert (rollback_row.kind, rollback_row.release_id) == ("rollback", scenario.r1.id)


# -- the Deployments tab ---------------------------------------------------------------------


@pytest.fixture
def instance(portal: Any, tmp_path: Path) -> Iterator[str]:
    """A real supervised process that logs a few lines, as a live instance would."""
    from pavedroad.runtimes.local.supervisor import InstanceSpec, LocalRuntime

    runtime = LocalRuntime.for_settings(portal.app.state.settings)
    instance_id = _unique("ledger-staging")
    script = (
        "import time\n"
        "for n in range(80):\n"
        f"    print('{LOG_LINE}', n, flush=True)\n"
        "time.sleep(120)\n"
    )
    spec = InstanceSpec(
        id=instance_id,
        component="component:default/ledger",
        environment="staging",
        deployment_id=None,
        release_id=None,
        command=[sys.executable, "-c", script],
        cwd=tmp_path,
        env={},
        port=runtime.allocate_port(),
    )
    runtime.start(spec)
    deadline = time.monotonic() + 10
    while len(runtime.logs(instance_id, 100)) < 80:  # its lines are written
        assert time.monotonic() < deadline, "the instance did not log its lines"
        time.sleep(0.05)
    try:
        yield instance_id
    finally:
        runtime.remove(instance_id, grace_seconds=1)


def test_the_deployments_tab(page: Any, portal: Any, instance: str) -> None:
    scenario = _scenario(portal, staging_instances=[instance])
    page.goto(f"/catalog/default/component/{scenario.name}")
    tab = page.get_by_test_id("deployments-tab")
    expect(tab.locator(".count")).to_have_text("2")  # live in development and staging
    tab.click()
    expect(page).to_have_url(re.compile(f"{scenario.tab}$"))
    places = page.get_by_test_id("environment-place")
    expect(places).to_have_count(3)
    staging = page.locator('[data-testid="environment-place"][data-environment="staging"]')
    expect(staging.get_by_test_id("live-release")).to_have_text(scenario.r1.label)
    expect(staging.get_by_test_id("live-url")).to_contain_text(f"{scenario.name}.staging.localhost")
    expect(staging.get_by_test_id("place-logs")).to_contain_text(f"{LOG_LINE} 79")
    assert staging.get_by_test_id("place-logs").inner_text().count(LOG_LINE) == 50
    history = staging.get_by_test_id("place-deployment")
    expect(history).to_have_count(2)
    expect(history.first).to_have_attribute("data-status", "failed")
    production = page.locator('[data-testid="environment-place"][data-environment="production"]')
    expect(production.get_by_test_id("place-not-live")).to_be_visible()

    # a release of the default branch goes to development; production refuses one
    # that was never live in staging
    form = page.get_by_test_id("deploy-form")
    form.get_by_test_id("deploy-environment").select_option("production")
    form.get_by_test_id("deploy-release").select_option(scenario.r3.id)
    form.get_by_test_id("deploy").click()
    error = page.get_by_test_id("deployment-error")
    expect(error).to_have_attribute("data-status", "400")
    expect(error).to_contain_text("production takes only releases that were live in staging")

    form = page.get_by_test_id("deploy-form")
    form.get_by_test_id("deploy-environment").select_option("development")
    form.get_by_test_id("deploy-release").select_option(scenario.r1.id)
    form.get_by_test_id("deploy").click()
    expect(page).to_have_url(re.compile(f"{scenario.tab}\\?notice=deployed&deployment=\\d+$"))
    expect(page.get_by_test_id("notice")).to_contain_text("Deployment requested")
    page.get_by_test_id("notice-deployment").click()
    expect(page.get_by_test_id("deployment-kind")).to_have_text("deploy")
    expect(page.get_by_test_id("requested-by")).to_have_text("alice")
    expect(page.get_by_test_id("release-id")).to_have_text(scenario.r1.id)


# -- environments ----------------------------------------------------------------------------


def test_an_environment_page_and_removing_a_run_time_one(page: Any, portal: Any) -> None:
    scenario = _scenario(portal)
    page.goto("/environments/production")
    expect(page.get_by_test_id("environment-title")).to_contain_text("Production")
    expect(page.get_by_test_id("environment-type")).to_have_text("production")
    spec = page.get_by_test_id("environment-spec")
    expect(spec.get_by_test_id("rule-promotes-from")).to_contain_text("staging")
    expect(spec.get_by_test_id("rule-approval")).to_contain_text("1 approval")
    expect(spec.get_by_test_id("environment-variables")).to_contain_text("LOG_LEVEL=warning")
    mine = page.locator(
        f'[data-testid="deployment-row"][data-deployment="{scenario.waiting.number}"]'
    )
    expect(mine).to_have_attribute("data-status", "awaiting-approval")
    expect(page.get_by_test_id("remove-environment")).to_have_count(0)  # from the catalog

    page.goto("/environments/staging")
    live = page.locator(f'[data-testid="live-row"][data-component="{scenario.ref}"]')
    expect(live.get_by_test_id("live-release")).to_have_text(scenario.r1.label)

    name = _unique("load-test")
    portal.app.state.deployments.environments.create(
        name, {"type": "development", "owner": "group:platform-team", "runtime": "local"}, "alice"
    )
    page.goto(f"/environments/{name}")
    expect(page.get_by_test_id("nothing-live")).to_contain_text("pave deploy")
    page.get_by_test_id("remove-environment").locator("summary").click()
    page.get_by_test_id("confirm-remove").click()
    expect(page).to_have_url(re.compile(r"/environments\?notice=environment-removed$"))
    expect(page.get_by_test_id("notice")).to_contain_text("removed")
    expect(
        page.locator(f'[data-testid="environment-row"][data-environment="{name}"]')
    ).to_have_count(0)


def test_an_empty_matrix_says_how_the_first_deployment_happens(
    browser: Any, empty_portal: Any
) -> None:
    with _signed_in(browser, empty_portal) as page:
        page.goto("/environments")
        empty = page.get_by_test_id("matrix-empty")
        expect(empty).to_contain_text("Create a service from a template")
        expect(empty.get_by_role("link", name="Create a service")).to_have_attribute(
            "href", "/create"
        )
        expect(page.get_by_test_id("no-environments")).to_contain_text("pave env create")
