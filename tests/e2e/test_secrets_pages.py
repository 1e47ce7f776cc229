"""The portal's Secrets tab in a real browser: setting, generating, revealing once behind
a confirmation, rotating, versions and roll back, delete and restore, errors shown on
the page, what a non-owner sees (and may not do), and an Environment's own secrets.

bob is in checkout-team, which owns orders-service; dave (catalog-team) owns nothing
here; the demo's Environments are owned by platform-team. The server is shared by every
e2e module, so each test uses secret names of its own.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from pavedroad.core import audit
from pavedroad.secrets.scopes import SecretScope
from pavedroad.secrets.service import Write

pytestmark = pytest.mark.e2e

ORDERS_REF = "component:default/orders-service"
ORDERS = "/catalog/default/component/orders-service"
SECRETS = f"{ORDERS}/secrets"
STAGING = "/catalog/default/environment/staging"


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _as(page: Any, portal: Any, user: str) -> Any:
    page.context.clear_cookies()
    page.context.add_cookies([portal.session_cookie(user)])
    return page


def _row(page: Any, name: str) -> Any:
    return page.locator(f'[data-testid="secret-row"][data-secret="{name}"]')


def _set(page: Any, name: str, value: str, environment: str | None = "staging") -> None:
    form = page.get_by_test_id("set-secret-form")
    form.get_by_label("Name").fill(name)
    if environment is not None:
        form.get_by_label("Environment").select_option(environment)
    form.get_by_label("Value").fill(value)
    form.get_by_test_id("set-submit").click()


def _reveal(page: Any, name: str) -> str:
    """Confirm the reveal of ``name`` and read the value shown once."""
    reveal = _row(page, name).get_by_test_id("reveal")
    reveal.locator("summary").click()
    expect(reveal).to_contain_text("recorded in the audit log")
    with page.expect_response(lambda r: r.url.endswith(f"/{name}/reveal")) as answer:
        reveal.get_by_test_id("confirm-reveal").click()
    assert answer.value.status == 200
    assert answer.value.headers["cache-control"] == "no-store"
    value = page.get_by_test_id("revealed-value")
    expect(value).to_be_visible()
    expect(page.get_by_test_id("copy-value")).to_be_visible()
    return str(value.text_content()).strip()


def _csrf(portal: Any, cookies: dict[str, str]) -> str:
    html = httpx.get(f"{portal.url}{SECRETS}", cookies=cookies).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page carries the session's form token"
    return match.group(1)


def _orders_secret(portal: Any, name: str, value: str, environment: str = "staging") -> None:
    scope = SecretScope.parse(ORDERS_REF, environment)
    portal.app.state.secrets.set(scope, name, value, Write("bob"))


def test_an_owner_sets_a_secret_twice_and_sees_its_value_once(page: Any, portal: Any) -> None:
    name = _unique("DB_PASSWORD")
    first, second = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
    _as(page, portal, "bob")
    page.goto(ORDERS)
    page.get_by_test_id("secrets-tab").click()
    expect(page).to_have_url(re.compile(r"/orders-service/secrets$"))

    _set(page, name, first)
    expect(page).to_have_url(re.compile(r"/orders-service/secrets\?notice=set$"))
    expect(page.get_by_test_id("notice")).to_contain_text("Saved")
    row = _row(page, name)
    expect(row).to_have_attribute("data-environment", "staging")
    expect(row.get_by_test_id("secret-version")).to_have_text("1")
    _set(page, name, second)
    expect(row.get_by_test_id("secret-version")).to_have_text("2")
    assert first not in page.content() and second not in page.content()

    assert _reveal(page, name) == second
    assert second not in page.url
    page.goto(SECRETS)  # shown once: not on the page again
    expect(page.get_by_test_id("revealed")).to_have_count(0)
    assert second not in page.content()
    page.goto(ORDERS)
    expect(page.get_by_test_id("secrets-tab").locator(".count")).to_be_visible()

    reads = audit.search(portal.app.state.db, actor="bob", action="secret.read")
    assert reads[0]["target"] == f"{ORDERS_REF} in staging/{name} version 2"
    sets = audit.search(portal.app.state.db, actor="bob", action="secret.set")
    assert [e["target"] for e in sets[:2]] == [f"{ORDERS_REF} in staging/{name}"] * 2
    _as(page, portal, "alice")
    page.goto("/audit?actor=bob&action=secret.*")
    table = page.get_by_test_id("audit-table")
    expect(table).to_contain_text("secret.read")
    expect(table).to_contain_text(name)
    html = page.content()
    assert first not in html and second not in html


def test_generate_rotate_and_roll_back_from_the_versions_page(page: Any, portal: Any) -> None:
    name = _unique("SESSION_KEY")
    _as(page, portal, "bob")
    page.goto(SECRETS)
    form = page.get_by_test_id("generate-secret-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Environment").select_option("production")
    form.get_by_label("Length").fill("40")
    form.get_by_label("Characters").select_option("hex")
    form.get_by_label("Rotate every").fill("30d")
    form.get_by_test_id("generate-submit").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Generated")
    row = _row(page, name)
    expect(row).to_contain_text("generated")
    expect(row).to_contain_text("every 30d")
    expect(row).to_contain_text(re.compile(r"due in (29|30) days"))
    expect(row.get_by_test_id("secret-version")).to_have_text("1")
    original = _reveal(page, name)
    assert re.fullmatch(r"[0-9a-f]{40}", original)

    page.goto(SECRETS)
    _row(page, name).get_by_test_id("rotate").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Rotated")
    expect(_row(page, name).get_by_test_id("secret-version")).to_have_text("2")
    rotated = _reveal(page, name)
    assert re.fullmatch(r"[0-9a-f]{40}", rotated) and rotated != original

    page.goto(SECRETS)
    _row(page, name).get_by_test_id("secret-versions").click()
    expect(page).to_have_url(re.compile(rf"/secrets/{name}\?environment=production$"))
    versions = page.get_by_test_id("version-row")
    expect(versions).to_have_count(2)
    expect(page.locator('[data-version="2"]').get_by_test_id("current")).to_be_visible()
    expect(page.locator('[data-version="2"]').get_by_test_id("rollback")).to_have_count(0)
    page.locator('[data-version="1"]').get_by_test_id("rollback").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Rolled back")
    expect(page.get_by_test_id("current-version")).to_have_text("3")
    expect(page.locator('[data-version="3"]')).to_contain_text("rollback")
    page.goto(SECRETS)
    assert _reveal(page, name) == original
    events = audit.search(portal.app.state.db, actor="bob", action="secret.r*")
    assert {"secret.rotate", "secret.rollback", "secret.read"} <= {e["action"] for e in events}


def test_a_stale_roll_back_is_refused_with_409_and_changes_nothing(page: Any, portal: Any) -> None:
    name = _unique("API_TOKEN")
    _orders_secret(portal, name, "one")
    _orders_secret(portal, name, "two")
    _as(page, portal, "bob")
    page.goto(f"{SECRETS}/{name}?environment=staging")
    expect(page.get_by_test_id("current-version")).to_have_text("2")
    _orders_secret(portal, name, "three")  # someone else, meanwhile
    with page.expect_response(lambda r: r.url.endswith("/rollback")) as answer:
        page.locator('[data-version="1"]').get_by_test_id("rollback").click()
    assert answer.value.status == 409
    error = page.get_by_test_id("secrets-error")
    expect(error).to_have_attribute("data-status", "409")
    expect(error).to_contain_text("someone changed it meanwhile")
    expect(page.get_by_test_id("current-version")).to_have_text("3")


def test_delete_and_restore(page: Any, portal: Any) -> None:
    name = _unique("OLD_KEY")
    _orders_secret(portal, name, "kept")
    _as(page, portal, "bob")
    page.goto(SECRETS)
    delete = _row(page, name).get_by_test_id("delete")
    delete.locator("summary").click()
    delete.get_by_test_id("confirm-delete").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Deleted")
    row = _row(page, name)
    expect(row.get_by_test_id("secret-deleted")).to_be_visible()
    expect(row.get_by_test_id("reveal")).to_have_count(0)
    row.get_by_test_id("restore").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Restored")
    expect(_row(page, name).get_by_test_id("secret-deleted")).to_have_count(0)
    assert _reveal(page, name) == "kept"
    actions = [e["action"] for e in audit.search(portal.app.state.db, actor="bob", limit=20)]
    assert "secret.delete" in actions and "secret.restore" in actions


def test_a_value_over_64_kib_is_refused_on_the_page_and_nothing_changes(
    page: Any, portal: Any
) -> None:
    name = _unique("BIG")
    _orders_secret(portal, name, "small")
    _as(page, portal, "bob")
    page.goto(SECRETS)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        _set(page, name, "x" * (64 * 1024 + 1))
    assert answer.value.status == 413
    error = page.get_by_test_id("secrets-error")
    expect(error).to_have_attribute("data-status", "413")
    expect(error).to_contain_text("at most 65536 bytes")
    expect(_row(page, name).get_by_test_id("secret-version")).to_have_text("1")
    assert "x" * 100 not in page.content()  # the value is not echoed back

    cookie = portal.session_cookie("bob")
    cookies = {cookie["name"]: cookie["value"]}
    bad_name = httpx.post(
        f"{portal.url}{SECRETS}",
        data={"csrf_token": _csrf(portal, cookies), "secret": "no such name!", "value": "v"},
        cookies=cookies,
    )
    assert bad_name.status_code == 400
    assert "is not a valid secret name" in bad_name.text


def test_a_non_owner_sees_names_only_and_a_forged_reveal_is_refused(page: Any, portal: Any) -> None:
    name, value = _unique("STRIPE_KEY"), f"sk-{uuid.uuid4().hex}"
    _orders_secret(portal, name, value)
    _as(page, portal, "dave")
    page.goto(SECRETS)
    row = _row(page, name)
    expect(row).to_be_visible()
    expect(page.get_by_test_id("secrets-who")).to_contain_text("Only the owners")
    expect(page.get_by_test_id("secrets-who")).to_contain_text("checkout-team")
    for action in ("reveal", "rotate", "delete", "restore"):
        expect(row.get_by_test_id(action)).to_have_count(0)
    expect(page.get_by_test_id("set-secret-form")).to_have_count(0)
    expect(page.get_by_test_id("generate-secret-form")).to_have_count(0)
    assert value not in page.content()

    cookie = portal.session_cookie("dave")
    cookies = {cookie["name"]: cookie["value"]}
    token = _csrf(portal, cookies)
    for action in ("reveal", "delete"):
        refused = httpx.post(
            f"{portal.url}{SECRETS}/{name}/{action}",
            data={"csrf_token": token, "environment": "staging"},
            cookies=cookies,
            headers={"accept": "text/html"},
        )
        assert refused.status_code == 403
        assert "owned by group:default/checkout-team" in refused.text
        assert value not in refused.text
    assert (
        portal.app.state.secrets.metadata(SecretScope.parse(ORDERS_REF, "staging"), name)[
            "deletedAt"
        ]
        is None
    )
    denied = audit.search(portal.app.state.db, actor="dave", outcome="denied", limit=5)
    assert any(e["target"].endswith(f"staging/{name}") for e in denied)
    assert not audit.search(portal.app.state.db, actor="dave", action="secret.read")


def test_an_environment_page_shows_the_environment_s_own_secrets(page: Any, portal: Any) -> None:
    shared, own = _unique("SMTP_PASSWORD"), _unique("ORDERS_ONLY")
    portal.app.state.secrets.set(SecretScope.parse(None, "staging"), shared, "s", Write("ivan"))
    _orders_secret(portal, own, "o")
    page.goto(STAGING)  # alice: an admin
    tab = page.get_by_test_id("secrets-tab")
    expect(tab.locator(".count")).to_be_visible()
    tab.click()
    expect(page).to_have_url(re.compile(r"/environment/staging/secrets$"))
    expect(_row(page, shared)).to_be_visible()
    expect(_row(page, own)).to_have_count(0)

    added = _unique("CDN_TOKEN")
    _set(page, added, "cdn", environment=None)  # the environment is the page's
    expect(page.get_by_test_id("notice")).to_contain_text("Saved")
    expect(_row(page, added).get_by_test_id("secret-version")).to_have_text("1")
    names = {s["name"] for s in portal.app.state.secrets.find(entity="", environment="staging")}
    assert {shared, added} <= names
