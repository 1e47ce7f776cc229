"""The golden path's second stretch, for real: a service made from the "Python web
service" template is pushed by the template task itself; the push starts the platform
team's standard pipeline (`uses: python-service@1`): lint, test (pytest installed with pip
into the job's virtualenv, JUnit results recorded) and an immutable release of the commit
with its score.yaml."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from pavedroad.environments.releases import ReleaseStore
from pavedroad.pipelines.artifacts import ArtifactStore
from pavedroad.pipelines.models import TestCaseRow

FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def database_seed() -> str:
    return "demo"  # the teams, the golden-path templates and the pipeline templates


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_new_service_gets_its_standard_pipeline_and_a_release(make_app, make_settings):
    settings = make_settings()
    app = make_app(settings, background=True)
    with TestClient(app) as client:
        created = client.post(
            "/api/v1/scaffolder/tasks",
            json={
                "templateRef": "template:default/python-web-service",
                "values": {
                    "name": "stock-levels",
                    "description": "Stock per warehouse",
                    "owner": "group:default/checkout-team",
                    "repoUrl": "pavedroad?owner=checkout-team&repo=stock-levels",
                },
            },
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 240
        runs: list = []
        while time.monotonic() < deadline:
            runs = client.get("/api/v1/pipelines/runs").json()["items"]
            if runs and runs[0]["status"] in FINISHED:
                break
            time.sleep(0.5)
        assert runs, "the push started no pipeline run"
        run = client.get(f"/api/v1/pipelines/runs/{runs[0]['id']}").json()
        logs = {
            job["key"]: client.get(f"/api/v1/pipelines/jobs/{job['id']}/log.txt").text
            for job in run["jobs"]
        }
        failing = {
            job["key"]: (job["error"], logs[job["key"]][-2000:])
            for job in run["jobs"]
            if job["status"] != "succeeded"
        }
        assert run["status"] == "succeeded", (run["problems"], failing)

    assert run["uses"] == "python-service@1" and run["event"] == "push"
    assert run["entityRef"] == "component:default/stock-levels"
    assert {job["key"]: job["status"] for job in run["jobs"]} == {
        "lint": "succeeded",
        "test": "succeeded",
        "build": "succeeded",
    }
    test_job = next(job for job in run["jobs"] if job["key"] == "test")
    with app.state.db.read_session() as session:
        cases = session.scalar(
            select(func.count())
            .select_from(TestCaseRow)
            .where(TestCaseRow.job_id == test_job["id"])
        )
    assert cases and cases >= 2
    releases = ReleaseStore(app.state.db, ArtifactStore.for_settings(settings)).list(
        component="component:default/stock-levels"
    )
    assert len(releases) == 1
    release = releases[0]
    assert release.commit == run["commit"] and release.branch == "main"
    assert release.digest.startswith("sha256:") and release.score["metadata"]["name"] == (
        "stock-levels"
    )
    build = next(job for job in run["jobs"] if job["key"] == "build")
    assert build["outputs"]["release"] == release.id
