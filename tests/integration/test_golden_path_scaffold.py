"""The golden path's first stretch with real processes: a `pave server` running its job
queue, the "Python web service" template run through the API and the CLI by a team
member, the new repository cloned over HTTP with git, the entity in the catalog; then
the template changes, `pave template update` merges the change into a branch, and the
branch is fetched over HTTP."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from integration_support import DEMO_DIR
from test_cli import cli_env, pave, running_server

from pavedroad.identity.policy import Role

TEMPLATE_DIR = DEMO_DIR / "templates" / "python-web-service"


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


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """`pave server --background` on the demo teams and a copy of the web service
    template (so the test may change it); bob of checkout-team has a token."""
    from pavedroad.app import create_app
    from pavedroad.settings import AuthSettings, Settings

    home = tmp_path_factory.mktemp("golden-home")
    templates = tmp_path_factory.mktemp("templates")
    template = templates / "python-web-service"
    shutil.copytree(TEMPLATE_DIR, template)
    env = cli_env(home) | {"PAVEDROAD_AUTH__REQUIRED": "true"}
    app = create_app(
        Settings(
            home=home,
            database_url=f"sqlite:///{home / 'pavedroad.db'}",
            auth=AuthSettings(required=True),
        )
    )
    try:
        for part in ("org/groups.yaml", "org/users.yaml", "systems/systems.yaml"):
            app.state.catalog.register_location("file", str(DEMO_DIR / part))
        app.state.catalog.register_location("file", str(template / "template.yaml"))
        identity = app.state.identity
        identity.create_account("bob", Role.member)
        token = identity.create_token("bob", "cli", ["read", "write"])[1]
    finally:
        app.state.db.dispose()
    with running_server(home, env, command=("server", "--background")) as url:
        yield url, env | {"PAVEDROAD_URL": url, "PAVEDROAD_TOKEN": token}, token, template


def test_create_clone_and_update_a_python_web_service(platform, tmp_path):
    url, env, token, template = platform
    headers = {"authorization": f"Bearer {token}"}

    # 1. run the template through the API, as the portal does
    response = httpx.post(
        f"{url}/api/v1/scaffolder/tasks",
        headers=headers,
        json={
            "templateRef": "template:default/python-web-service",
            "values": {
                "name": "stock-levels",
                "description": "Stock levels per warehouse",
                "owner": "group:default/checkout-team",
                "system": "system:default/storefront",
                "repoUrl": "pavedroad?owner=checkout-team&repo=stock-levels",
            },
        },
    )
    assert response.status_code == 201, response.text
    followed = pave("task", "logs", "--follow", response.json()["id"], env=env, cwd=tmp_path)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert "[publish] publish:git pushed" in followed.stdout
    assert "Open in catalog: component:default/stock-levels (" in followed.stdout
    assert "/catalog/default/component/stock-levels)" in followed.stdout

    # 2. clone it over HTTP with git, as a developer does
    remote = url.replace("http://", f"http://bob:{token}@") + "/git/checkout-team/stock-levels.git"
    work = tmp_path / "stock-levels"
    git("clone", "-q", remote, str(work), cwd=tmp_path)
    for path in (
        "src/stock_levels/app.py",
        "tests/test_app.py",
        "catalog-info.yaml",
        "docs/index.md",
        "mkdocs.yml",
        "score.yaml",
        ".pavedroad/pipeline.yaml",
        ".pavedroad/template.yaml",
    ):
        assert (work / path).is_file(), path
    assert "uses: python-service@1" in (work / ".pavedroad/pipeline.yaml").read_text()
    assert "stock-levels" in (work / "score.yaml").read_text()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=work,
        env={"PYTHONPATH": str(work / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr

    # 3. the entity is in the catalog, owned by the team, made from the template
    entity = httpx.get(
        f"{url}/api/v1/catalog/entities/component/default/stock-levels", headers=headers
    ).json()
    assert entity["spec"]["owner"] == "group:default/checkout-team"
    assert entity["metadata"]["annotations"]["backstage.io/source-template"] == (
        "template:default/python-web-service"
    )

    # 4. the team changes its README; the platform team changes the template
    readme = work / "README.md"
    readme.write_text(readme.read_text() + "\nOur own notes.\n")
    git("-c", "user.name=Bob", "-c", "user.email=bob@x", "commit", "-qam", "notes", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    skeleton = template / "skeleton"
    (skeleton / "CONTRIBUTING.md").write_text("# Contributing to ${{ values.name }}\n")
    score = skeleton / "score.yaml"
    score.write_text(score.read_text().replace("readinessProbe", "livenessProbe", 1))

    behind = pave("template", "projects", "python-web-service", env=env, cwd=tmp_path)
    assert behind.returncode == 0, behind.stderr
    assert "checkout-team/stock-levels" in behind.stdout and " 1" in behind.stdout

    # 5. `pave template update` merges the template's change into a branch
    updated = pave("template", "update", "component:default/stock-levels", env=env, cwd=tmp_path)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    branch = next(
        line.split(": ", 1)[1]
        for line in updated.stdout.splitlines()
        if line.startswith("branch: ")
    )
    git("fetch", "-q", "origin", cwd=work)
    assert git("show", f"origin/{branch}:CONTRIBUTING.md", cwd=work) == (
        "# Contributing to stock-levels\n"
    )
    assert "livenessProbe" in git("show", f"origin/{branch}:score.yaml", cwd=work)
    assert "Our own notes." in git("show", f"origin/{branch}:README.md", cwd=work)
    assert "CONTRIBUTING.md" not in git("ls-tree", "--name-only", "origin/main", cwd=work)
