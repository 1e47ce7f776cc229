"""The identity pages in a real browser: signing in and out, settings and personal
access tokens, the entity page's "who can do what" panel and its actions,
administration and the audit log.

The server is shared by every e2e module, so each test makes its own accounts,
tokens and entities under unique names and looks only for those.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from pavedroad.core import audit
from pavedroad.identity.policy import Role

pytestmark = pytest.mark.e2e

ORDERS = "/catalog/default/component/orders-service"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _session(portal: Any, user: str) -> dict[str, str]:
    cookie = portal.session_cookie(user)
    return {cookie["name"]: cookie["value"]}


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def _me(portal: Any, token: str) -> httpx.Response:
    return httpx.get(
        f"{portal.url}/api/v1/identity/me", headers={"authorization": f"Bearer {token}"}
    )


def _as(page: Any, portal: Any, user: str | None) -> Any:
    """The ``page`` fixture's browser, signed in as ``user`` instead (``None``: signed out)."""
    page.context.clear_cookies()
    if user is not None:
        page.context.add_cookies([portal.session_cookie(user)])
    return page


def _open_menu_link(page: Any, name: str) -> None:
    menu = page.get_by_test_id("user-menu")
    menu.locator("summary").click()
    menu.get_by_role("link", name=name).click()


# -- signing in, tokens, signing out -------------------------------------------------------------


def test_sign_in_make_a_token_see_it_once_revoke_it_and_sign_out(page: Any, portal: Any) -> None:
    name, password = _unique("pat"), "correct horse battery"
    portal.app.state.identity.create_account(name, Role.member, password)
    _as(page, portal, None)
    page.goto("/catalog")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=%2Fcatalog$"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_test_id("sign-in-submit").click()
    expect(page).to_have_url(re.compile(r"/catalog$"))
    expect(page.get_by_test_id("user-menu")).to_contain_text(name)

    _open_menu_link(page, "Settings and tokens")
    expect(page).to_have_url(re.compile(r"/settings$"))
    expect(page.get_by_test_id("account-name")).to_have_text(name)
    expect(page.get_by_test_id("no-tokens")).to_be_visible()
    form = page.get_by_test_id("new-token-form")
    expect(form.locator('input[name="scopes"][value="admin"]')).to_have_count(0)  # a member
    form.get_by_label("Name").fill("laptop")
    form.get_by_label("write").check()
    form.get_by_label("Expires after").select_option("7")
    form.get_by_test_id("create-token").click()

    box = page.get_by_test_id("new-token")
    expect(box).to_contain_text("it will not be shown again")
    secret = page.get_by_test_id("token-secret").inner_text().strip()
    assert secret.startswith("pvd_")
    assert secret not in page.url
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_test_id("copy-token").click()
    expect(page.get_by_test_id("copy-token")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    me = _me(portal, secret)
    assert me.status_code == 200
    assert me.json()["name"] == name and me.json()["scopes"] == ["read", "write"]

    page.goto("/settings")
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    assert secret not in page.content()
    row = page.get_by_test_id("token-row").filter(has_text="laptop")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("in 6 days")  # expires in 7 days, less a moment
    row.get_by_test_id("revoke-token").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Token revoked")
    expect(row).to_contain_text("revoked")
    expect(row.get_by_test_id("revoke-token")).to_have_count(0)
    assert _me(portal, secret).status_code == 401

    page.get_by_test_id("user-menu").locator("summary").click()
    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    page.goto("/settings")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=%2Fsettings$"))


def test_token_form_refuses_bad_input_with_the_page(portal: Any) -> None:
    name = _unique("bad-token")
    portal.app.state.identity.create_account(name, Role.member)
    cookies = _session(portal, name)
    token = _csrf(httpx.get(f"{portal.url}/settings", cookies=cookies).text)
    cases = [
        ({"name": "x", "expiry": "30"}, 400, "choose at least one scope"),
        ({"name": "x", "scopes": "admin", "expiry": "30"}, 403, "scopes read, write"),
        ({"name": "x", "scopes": "read", "expiry": "forever"}, 400, "choose an expiry"),
        ({"name": " ", "scopes": "read", "expiry": "30"}, 400, "needs a name"),
    ]
    for fields, status, message in cases:
        answer = httpx.post(
            f"{portal.url}/settings/tokens",
            data={"csrf_token": token, **fields},
            cookies=cookies,
            headers={"accept": "text/html"},
        )
        assert answer.status_code == status, fields
        assert message in answer.text and 'data-testid="form-error"' in answer.text
    assert portal.app.state.identity.tokens(name) == []


def test_changing_the_password_keeps_this_session_and_ends_the_others(
    page: Any, portal: Any
) -> None:
    name = _unique("pw")
    portal.app.state.identity.create_account(name, Role.member, "first-password-1")
    elsewhere = _session(portal, name)
    _as(page, portal, name)
    page.goto("/settings")
    form = page.get_by_test_id("password-form")

    def submit(current: str, new: str, again: str) -> None:
        form.get_by_label("Current password").fill(current)
        form.get_by_label("New password", exact=True).fill(new)
        form.get_by_label("New password again").fill(again)
        form.get_by_test_id("change-password").click()

    submit("not-my-password", "second-password-2", "second-password-2")
    expect(page.get_by_test_id("form-error")).to_have_text("the current password is wrong")
    submit("first-password-1", "second-password-2", "second-password-3")
    expect(page.get_by_test_id("form-error")).to_contain_text("confirmation differ")
    submit("first-password-1", "second-password-2", "second-password-2")
    expect(page).to_have_url(re.compile(r"/settings\?notice=password-changed$"))
    expect(page.get_by_test_id("notice")).to_contain_text("other sessions were signed out")
    page.reload()
    expect(page.get_by_test_id("user-menu")).to_contain_text(name)
    assert portal.app.state.identity.verify_password(name, "second-password-2")
    other = httpx.get(f"{portal.url}/settings", cookies=elsewhere, follow_redirects=False)
    assert other.status_code == 303 and other.headers["location"].startswith("/sign-in")


def test_a_user_without_a_password_sets_one_without_the_current_one(page: Any, portal: Any) -> None:
    name = _unique("linked")
    portal.app.state.identity.create_account(name, Role.member)  # as after a sign-in link
    _as(page, portal, name)
    page.goto("/settings")
    form = page.get_by_test_id("password-form")
    expect(form.get_by_label("Current password")).to_have_count(0)
    form.get_by_label("New password", exact=True).fill("brand-new-password")
    form.get_by_label("New password again").fill("brand-new-password")
    form.get_by_test_id("change-password").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Password changed")
    expect(page.get_by_test_id("password")).to_contain_text("Change password")
    assert portal.app.state.identity.verify_password(name, "brand-new-password")
    cookies = _session(portal, name)
    token = _csrf(httpx.get(f"{portal.url}/settings", cookies=cookies).text)
    too_short = httpx.post(
        f"{portal.url}/settings/password",
        data={"csrf_token": token, "current_password": "brand-new-password"}
        | {"new_password": "short", "confirm_password": "short"},
        cookies=cookies,
        headers={"accept": "text/html"},
    )
    assert too_short.status_code == 400
    assert "at least 10 characters" in too_short.text


# -- the entity page: who can do what -----------------------------------------------------------


def test_a_non_owner_sees_why_not_and_no_buttons_and_a_forged_post_is_refused(
    page: Any, portal: Any
) -> None:
    _as(page, portal, "dave")  # catalog-team, no account
    page.goto(ORDERS)
    panel = page.get_by_test_id("access")
    expect(panel.get_by_test_id("access-owners")).to_contain_text("Checkout Team")
    mine = panel.get_by_test_id("my-decisions")
    read = mine.locator('[data-permission="catalog.entity.read"]')
    expect(read).to_have_attribute("data-allowed", "yes")
    for permission in ("catalog.entity.refresh", "catalog.entity.delete"):
        decision = mine.locator(f'[data-permission="{permission}"]')
        expect(decision).to_have_attribute("data-allowed", "no")
        expect(decision).to_contain_text("denied")
        expect(decision).to_contain_text("owned by group:default/checkout-team")
        expect(decision).to_contain_text("dave is not a member of an owning group")
    expect(page.get_by_test_id("entity-actions")).to_have_count(0)
    expect(panel.get_by_test_id("check-user")).to_have_count(0)  # admins only

    page.goto("/settings")
    expect(page.get_by_test_id("account")).to_contain_text("no local account")
    expect(page.get_by_test_id("new-token-form")).to_have_count(0)

    cookies = _session(portal, "dave")
    token = _csrf(httpx.get(f"{portal.url}{ORDERS}", cookies=cookies).text)
    for action in ("refresh", "delete"):
        refused = httpx.post(
            f"{portal.url}{ORDERS}/{action}",
            data={"csrf_token": token},
            cookies=cookies,
            headers={"accept": "text/html"},
        )
        assert refused.status_code == 403
        assert "owned by group:default/checkout-team" in refused.text
    with portal.catalog.reader() as reader:
        assert reader.row_by_ref("component:default/orders-service") is not None
    denied = audit.search(portal.app.state.db, actor="dave", action="catalog.entity.*")
    assert {e["outcome"] for e in denied[:2]} == {"denied"}


def test_an_owner_refreshes_and_deletes_from_the_entity_page(page: Any, portal: Any) -> None:
    name = _unique("scratch")
    portal.register_yaml(
        f"{name}.yaml",
        "apiVersion: backstage.io/v1alpha1\nkind: Component\n"
        f"metadata:\n  name: {name}\nspec:\n  type: service\n  lifecycle: experimental\n"
        "  owner: group:checkout-team\n",
    )
    _as(page, portal, "bob")  # checkout-team
    page.goto(ORDERS)
    refresh = page.get_by_test_id("my-decisions").locator(
        '[data-permission="catalog.entity.refresh"]'
    )
    expect(refresh).to_have_attribute("data-allowed", "yes")
    expect(refresh).to_contain_text("as a member of group:default/checkout-team")
    page.get_by_test_id("refresh-entity").click()
    expect(page).to_have_url(re.compile(r"/orders-service\?notice=refreshed$"))
    expect(page.get_by_test_id("notice")).to_contain_text("Refreshed")

    page.goto(f"/catalog/default/component/{name}")
    confirm = page.get_by_test_id("confirm-delete")
    expect(confirm).to_be_hidden()  # deleting takes a second, deliberate click
    page.get_by_test_id("delete-entity").locator("summary").click()
    confirm.click()
    expect(page).to_have_url(re.compile(r"/catalog\?notice=deleted$"))
    expect(page.locator(".notice")).to_contain_text("The entity was deleted")
    with portal.catalog.reader() as reader:
        assert reader.row_by_ref(f"component:default/{name}") is None


def test_an_admin_checks_what_another_user_may_do(page: Any) -> None:
    page.goto(ORDERS)
    panel = page.get_by_test_id("access")
    expect(panel.get_by_test_id("my-decisions")).to_contain_text("alice is an admin")
    panel.get_by_label("Check another user").fill("carol")
    panel.get_by_role("button", name="Check").click()
    expect(page).to_have_url(re.compile(r"\?who=carol#access$"))
    theirs = page.get_by_test_id("access").get_by_test_id("their-decisions")
    delete = theirs.locator('[data-permission="catalog.entity.delete"]')
    expect(delete).to_have_attribute("data-allowed", "yes")
    expect(delete).to_contain_text("carol owns component:default/orders-service")
    page.goto(f"{ORDERS}?who=nobody-at-all")
    expect(page.get_by_test_id("access")).to_contain_text("no user 'nobody-at-all'")


# -- administration and the audit log -------------------------------------------------------------


def test_admin_creates_a_user_changes_a_role_and_makes_a_service_token(
    page: Any, portal: Any
) -> None:
    user, token_name = _unique("newbie"), _unique("ci")
    page.goto("/")
    _open_menu_link(page, "Administration")
    expect(page).to_have_url(re.compile(r"/admin$"))

    create = page.get_by_test_id("create-user-form")
    create.get_by_label("User name").fill(user)
    create.get_by_label("Role").select_option("viewer")
    create.get_by_test_id("create-user").click()
    expect(page.get_by_test_id("notice")).to_contain_text("User created")
    row = page.locator(f'[data-testid="user-row"][data-user="{user}"]')
    expect(row.get_by_test_id("role-select")).to_have_value("viewer")
    row.get_by_test_id("role-select").select_option("member")
    row.get_by_test_id("save-role").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Role changed")
    expect(row.get_by_test_id("role-select")).to_have_value("member")
    assert portal.app.state.identity.actor(user).role is Role.member

    create.get_by_label("User name").fill("not a name!")
    create.get_by_test_id("create-user").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("is not a valid user name")
    mine = page.locator('[data-testid="user-row"][data-user="alice"]')
    expect(mine.get_by_test_id("role-select")).to_have_count(0)  # no locking oneself out

    form = page.get_by_test_id("service-token-form")
    form.get_by_label("Group").select_option("group:default/checkout-team")
    form.get_by_label("Name").fill(token_name)
    form.get_by_label("write").check()
    form.get_by_test_id("create-service-token").click()
    expect(page.get_by_test_id("new-token")).to_contain_text("it will not be shown again")
    expect(page.get_by_test_id("new-token")).to_contain_text("checkout-team")
    secret = page.get_by_test_id("token-secret").inner_text().strip()
    token_row = page.get_by_test_id("service-token-row").filter(has_text=token_name)
    expect(token_row).to_contain_text("checkout-team")
    expect(token_row).to_contain_text("alice")
    expect(token_row).to_contain_text("active")
    token_id = token_row.get_attribute("data-token-id")
    me = _me(portal, secret)
    assert me.status_code == 200 and me.json()["name"].startswith("token:")

    page.goto("/admin")
    expect(page.get_by_test_id("new-token")).to_have_count(0)
    token_row.get_by_test_id("revoke-service-token").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Service token revoked")
    expect(token_row).to_contain_text("revoked")
    assert _me(portal, secret).status_code == 401

    _open_menu_link(page, "Audit log")
    expect(page).to_have_url(re.compile(r"/audit$"))
    table = page.get_by_test_id("audit-table")
    expect(
        table.locator('[data-action="identity.user.create"]').filter(has_text=user)
    ).to_have_count(1)
    expect(
        table.locator('[data-action="identity.service_token.create"]').filter(
            has_text=f"group:default/checkout-team token:{token_id}"
        )
    ).to_have_count(1)
    expect(table.locator('[data-action="identity.user.create"]').first).to_contain_text("alice")

    filters = page.get_by_test_id("audit-filter")
    filters.get_by_label("Action").fill("identity.user.*")
    filters.get_by_label("Outcome").select_option("success")
    filters.get_by_test_id("audit-apply").click()
    expect(page).to_have_url(re.compile(r"action=identity\.user\.(\*|%2A)&outcome=success"))
    actions = page.get_by_test_id("audit-row").evaluate_all(
        "rows => rows.map(row => row.dataset.action)"
    )
    assert actions and all(a.startswith("identity.user.") for a in actions)
    assert "identity.user.update" in actions
    export = page.get_by_test_id("audit-export").get_attribute("href")
    assert (
        export == "/api/v1/audit?action=identity.user.%2A&outcome=success&format=jsonl&limit=10000"
    )
    lines = httpx.get(portal.url + export, cookies=_session(portal, "alice")).text.splitlines()
    assert lines and all('"action":"identity.user.' in line for line in lines)


def test_the_audit_log_pages_back_through_older_events(page: Any, portal: Any) -> None:
    action = f"e2e.paging.{uuid.uuid4().hex[:8]}"
    for number in range(53):
        audit.record(
            portal.app.state.db,
            audit.AuditEvent("alice", action, f"target {number}", "success", 200),
        )
    page.goto(f"/audit?action={action}")
    expect(page.get_by_test_id("audit-row")).to_have_count(50)
    expect(page.get_by_test_id("audit-row").first).to_contain_text("target 52")
    page.get_by_test_id("audit-older").click()
    expect(page.get_by_test_id("audit-row")).to_have_count(3)
    expect(page.get_by_test_id("audit-row").last).to_contain_text("target 0")
    expect(page.get_by_test_id("audit-older")).to_have_count(0)


def test_members_get_the_refusal_page_for_admin_pages(page: Any, portal: Any) -> None:
    _as(page, portal, "bob")
    for path, permission in (("/admin", "identity.user.manage"), ("/audit", "audit.read")):
        response = page.goto(path)
        assert response is not None and response.status == 403
        error = page.get_by_test_id("error-page")
        expect(error).to_contain_text(f"{permission} is for admins only")
    page.get_by_test_id("user-menu").locator("summary").click()
    expect(
        page.get_by_test_id("user-menu").get_by_role("link", name="Administration")
    ).to_have_count(0)
