"""The Repositories pages in a real browser: bob (checkout-team) creates a repository
from the list page, pushes to it with real git over HTTP with a token, and browses it
(README rendered, a folder, a file, the commit list, a commit); an admin deletes one
behind a typed confirmation; a non-owner is not offered the delete.

The server is shared by every e2e module, so each test uses repository names of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from pavedroad.identity.policy import Role

pytestmark = pytest.mark.e2e

OWNER = "checkout-team"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Bob Okafor", "-c", "user.email=bob@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _as(page: Any, portal: Any, user: str) -> Any:
    page.context.clear_cookies()
    page.context.add_cookies([portal.session_cookie(user)])
    return page


def _token(portal: Any, user: str) -> str:
    """A read+write token for ``user`` (an account is made for the catalog User first)."""
    identity = portal.app.state.identity
    if not any(a["name"] == user for a in identity.accounts()):
        identity.create_account(user, Role.member)
    _info, secret = identity.create_token(user, _unique("git"), ["read", "write"])
    return str(secret)


def _push_project(portal: Any, name: str, work: Path, token: str) -> None:
    (work / "src").mkdir(parents=True)
    (work / "README.md").write_text("# Shop\n\nWelcome to **the shop**.\n")
    (work / "src" / "main.py").write_text("def main():\n    return 'shop'\n")
    _git("init", "-q", "--initial-branch=main", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-qm", "Start the shop", cwd=work)
    (work / "src" / "main.py").write_text("def main():\n    return 'open shop'\n")
    _git("commit", "-qam", "Open the shop\n\nA longer explanation.", cwd=work)
    host = portal.url.removeprefix("http://")
    _git("push", "-q", f"http://x:{token}@{host}/git/{OWNER}/{name}.git", "main", cwd=work)


def test_a_member_creates_pushes_and_browses(page: Any, portal: Any, tmp_path: Path) -> None:
    name = _unique("shop")
    _as(page, portal, "bob")
    page.goto("/repos")
    expect(page.locator(".sidebar a.active")).to_have_text("Repositories")
    form = page.get_by_test_id("new-repo-form")
    owner = form.get_by_label("Owner")
    expect(owner.locator("option")).to_contain_text(["checkout-team"])
    owner.select_option(f"group:default/{OWNER}")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Description").fill("The shop front")
    form.get_by_test_id("create-repo").click()

    expect(page).to_have_url(re.compile(rf"/repos/{OWNER}/{name}\?notice=created$"))
    expect(page.get_by_test_id("notice")).to_contain_text("Repository created")
    expect(page.get_by_test_id("empty-repo")).to_be_visible()
    expect(page.get_by_test_id("clone-url")).to_have_text(re.compile(rf"/git/{OWNER}/{name}\.git$"))
    expect(page.get_by_test_id("copy-clone-url")).to_be_visible()  # portal.js ran

    _push_project(portal, name, tmp_path / "work", _token(portal, "bob"))

    page.goto(f"/repos/{OWNER}/{name}")
    readme = page.get_by_test_id("readme-body")
    expect(readme.locator("h1")).to_have_text("Shop")
    expect(readme.locator("strong")).to_have_text("the shop")
    expect(page.get_by_test_id("commit-line")).to_contain_text("Open the shop")
    expect(page.get_by_test_id("push").first).to_contain_text("bob")

    page.locator('[data-testid="tree-entry"][data-name="src"] a').click()
    expect(page).to_have_url(re.compile(rf"/repos/{OWNER}/{name}/tree/src\?ref=main$"))
    expect(page.get_by_test_id("crumb-current")).to_have_text("src")
    page.locator('[data-testid="tree-entry"][data-name="main.py"] a').click()
    expect(page).to_have_url(re.compile(r"/blob/src/main\.py\?ref=main$"))
    expect(page.get_by_test_id("blob-source")).to_contain_text("return 'open shop'")
    expect(page.locator("#L2")).to_contain_text("return 'open shop'")

    page.get_by_test_id("commits-tab").click()
    items = page.get_by_test_id("commit-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Open the shop")
    expect(items.last).to_contain_text("Start the shop")

    items.first.get_by_test_id("commit-link").click()
    expect(page).to_have_url(re.compile(rf"/repos/{OWNER}/{name}/commit/[0-9a-f]{{40}}$"))
    expect(page.get_by_test_id("commit-subject")).to_have_text("Open the shop")
    expect(page.get_by_test_id("commit-body")).to_have_text("A longer explanation.")
    changed = page.get_by_test_id("changed-file")
    expect(changed).to_have_count(1)
    expect(changed).to_have_attribute("data-path", "src/main.py")
    expect(changed).to_contain_text("+1")
    expect(changed).to_contain_text("\u22121")  # a minus sign

    page.get_by_test_id("browse-files").click()
    expect(page.get_by_test_id("file-tree")).to_contain_text("README.md")


def test_an_admin_deletes_behind_a_typed_confirmation(page: Any, portal: Any) -> None:
    name = _unique("old")
    portal.app.state.git.create(OWNER, name, "alice", "To be removed")
    page.goto(f"/repos/{OWNER}/{name}")
    delete = page.get_by_test_id("delete-repo")
    expect(page.get_by_test_id("confirm-delete")).to_be_hidden()
    delete.locator("summary").click()
    delete.get_by_test_id("confirm-name").fill("not-the-name")
    delete.get_by_test_id("confirm-delete").click()
    expect(page.get_by_test_id("repo-error")).to_contain_text("nothing was deleted")
    assert portal.app.state.git.repo(OWNER, name)

    page.get_by_test_id("delete-repo").locator("summary").click()
    page.get_by_test_id("confirm-name").fill(name)
    page.get_by_test_id("confirm-delete").click()
    expect(page).to_have_url(re.compile(r"/repos\?notice=deleted$"))
    expect(page.get_by_test_id("notice")).to_contain_text("Repository deleted")
    expect(page.locator(f'[data-testid="repo-row"][data-repo="{OWNER}/{name}"]')).to_have_count(0)


def test_a_non_owner_browses_but_is_not_offered_the_delete(page: Any, portal: Any) -> None:
    name = _unique("theirs")
    portal.app.state.git.create("catalog-team", name, "alice")
    _as(page, portal, "bob")
    page.goto(f"/repos/catalog-team/{name}")
    expect(page.get_by_test_id("empty-repo")).to_be_visible()
    expect(page.get_by_test_id("danger-zone")).to_have_count(0)
    owners = page.goto("/repos")
    assert owners is not None and owners.status == 200
    options = page.get_by_test_id("repo-owner").locator("option")
    expect(options.filter(has_text="catalog-team")).to_have_count(0)
