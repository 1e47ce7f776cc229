"""Bad input to sign-in and sessions, through the portal's real HTTP flow: wrong
passwords (and the pause after too many), tampered, expired and ended sessions, missing
or wrong CSRF tokens, a spent one-time link, open redirects, oversized fields, and a
member of one team changing another team's entity with their session. Each is refused
with a clear error and an audit event, and nothing changes.

Forged, revoked and expired bearer tokens and read-only tokens trying to write are in
test_tokens_and_enforcement.py.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from integration_support import component, csrf_in, sign_in, write_docs
from sqlalchemy import func, select, update

from pavedroad.core import audit
from pavedroad.core.timeutil import utcnow
from pavedroad.identity.models import AccountRow
from pavedroad.identity.policy import Role
from pavedroad.identity.sessions import SESSION_COOKIE, SessionRow, SignInFailureRow

PASSWORD = "a long enough password"
CHECKOUT = "group:default/checkout-team"
ORDERS = "component:default/orders-service"
SCRATCH = "component:default/scratch"
ME = "/api/v1/identity/me"
PAGE = "/catalog?kind=component"
SIGN_IN_FOR_PAGE = "/sign-in?next=%2Fcatalog%3Fkind%3Dcomponent"
HTML = {"accept": "text/html"}


@pytest.fixture
def database_seed() -> str:
    return "demo"


@pytest.fixture
def portal(make_app, make_settings, tmp_path):
    """A portal that requires sign-in; bob (checkout-team) and dave (catalog-team) have
    passwords, and checkout-team owns a ``scratch`` component whose file the tests edit."""
    settings = make_settings()
    settings.auth.required = True
    app = make_app(settings)
    names = ("bob", "dave")
    for name in names:
        app.state.identity.create_account(name, Role.member, None)
    with app.state.db.session() as session:
        session.execute(
            update(AccountRow).where(AccountRow.name.in_(names)).values(password_hash=_cheap_hash())
        )
    app.state.scratch = write_docs(
        tmp_path / "scratch.yaml", component("scratch", CHECKOUT, description="v1")
    )
    app.state.catalog.register_location("file", str(app.state.scratch))
    return app


@functools.cache
def _cheap_hash() -> str:
    """PASSWORD hashed with argon2's cheapest parameters: verifying reads them from the
    hash, so each of these tests' sign-ins costs milliseconds instead of 0.2 seconds
    (the cost parameters are not what these tests are about)."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


# -- helpers -----------------------------------------------------------------------------------


def _form_token(browser: TestClient, path: str) -> str:
    """The CSRF token in the page's forms, as a browser would post it."""
    page = browser.get(path, headers=HTML)
    assert page.status_code == 200, page.text
    return csrf_in(page.text)


def _signed_in(app: Any, username: str) -> TestClient:
    browser = TestClient(app)
    response = sign_in(browser, username, PASSWORD)
    assert response.status_code == 303, response.text
    assert browser.get(ME).json()["name"] == username
    return browser


def _events(app: Any, response: Any) -> list[dict[str, Any]]:
    """The audit events of this response (matched by its request id)."""
    request_id = response.headers["x-request-id"]
    return [e for e in audit.search(app.state.db, limit=1000) if e["requestId"] == request_id]


def _event(app: Any, response: Any) -> dict[str, Any]:
    events = _events(app, response)
    assert len(events) == 1, events
    return events[0]


def _assert_denied(app: Any, response: Any, status: int, actor: str | None = None) -> dict:
    """The response's refusal is on the record as ``denied`` (a stale session cookie may
    add an event of its own for the same request: it must say ``denied`` too)."""
    events = _events(app, response)
    assert events and all(e["outcome"] == "denied" for e in events), events
    matching = [e for e in events if e["status"] == status]
    assert matching, events
    if actor is not None:
        assert all(e["actor"] == actor for e in matching), matching
    return matching[0]  # newest first: the request's own, after a stale cookie's


def _live_sessions(app: Any, account: str | None = None) -> int:
    statement = select(func.count()).select_from(SessionRow).where(SessionRow.revoked_at.is_(None))
    if account:
        statement = statement.where(SessionRow.account == account)
    with app.state.db.read_session() as session:
        return int(session.scalar(statement) or 0)


def _description(app: Any, ref: str) -> str | None:
    with app.state.catalog.reader() as reader:
        entity = reader.get_many([ref])[0]
    return None if entity is None else entity["metadata"].get("description")


def _assert_signed_out(app: Any, browser: TestClient) -> None:
    """The API answers 401 (with a denied audit event); pages send to the sign-in page."""
    api = browser.get(ME)
    assert api.status_code == 401, api.text
    assert api.headers["content-type"].startswith("application/problem+json")
    assert "sign in" in api.json()["detail"]
    _assert_denied(app, api, 401, actor="anonymous")
    page = browser.get(PAGE, headers=HTML, follow_redirects=False)
    assert page.status_code == 303, page.text
    assert page.headers["location"] == SIGN_IN_FOR_PAGE


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


# -- passwords -----------------------------------------------------------------------------------


def test_a_wrong_password_is_refused_with_an_audit_event(portal):
    browser = TestClient(portal)
    for username in ("bob", "nobody"):  # the answer never says whether the user exists
        response = sign_in(browser, username, "not the password")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/html")
        assert "wrong user name or password" in response.text
        assert SESSION_COOKIE not in response.cookies
        event = _assert_denied(portal, response, 401)
        assert (event["action"], event["target"]) == ("identity.session.create", f"user:{username}")
        assert PASSWORD not in str(event) and "not the password" not in str(event)
    assert _live_sessions(portal) == 0
    empty = sign_in(browser, "bob", "")
    assert empty.status_code == 401 and "enter your user name and password" in empty.text


def test_too_many_wrong_passwords_pause_that_user_from_that_address(portal):
    limit = portal.state.settings.auth.max_failed_sign_ins
    window = portal.state.settings.auth.failed_sign_in_window_minutes * 60
    browser = TestClient(portal)
    for _ in range(limit):
        assert sign_in(browser, "bob", "not the password").status_code == 401
    paused = sign_in(browser, "bob", "not the password")
    assert paused.status_code == 429, paused.text
    assert 0 < int(paused.headers["retry-after"]) <= window
    assert "too many wrong passwords for bob" in paused.text
    right = sign_in(browser, "bob", PASSWORD)  # even the right password, while paused
    assert right.status_code == 429, right.text
    assert SESSION_COOKIE not in right.cookies and _live_sessions(portal, "bob") == 0
    for response in (paused, right):
        event = _event(portal, response)
        # Recorded, though as "failure": see test_found_bugs.py for why it should be "denied".
        assert (event["action"], event["target"], event["status"]) == (
            "identity.session.create",
            "user:bob",
            429,
        )

    # Only that user from that address is paused.
    assert sign_in(TestClient(portal), "dave", PASSWORD).status_code == 303
    elsewhere = TestClient(portal, client=("10.0.0.2", 5000))
    signed_in = sign_in(elsewhere, "bob", PASSWORD)
    assert signed_in.status_code == 303, signed_in.text
    assert elsewhere.get(ME).json()["name"] == "bob"
    assert sign_in(TestClient(portal), "bob", PASSWORD).status_code == 429  # still paused here


# -- sessions ------------------------------------------------------------------------------------


def test_a_tampered_session_cookie_counts_as_signed_out(portal):
    bob = _signed_in(portal, "bob")
    session_id, issued, signature = bob.cookies[SESSION_COOKIE].rsplit(".", 2)
    for forged in (
        f"{session_id}.{issued}.{_flip(signature, 10)}",
        f"{_flip(session_id, 10)}.{issued}.{signature}",
        f"{session_id}.{int(issued) + 1}.{signature}",
    ):
        thief = TestClient(portal)
        thief.cookies.set(SESSION_COOKIE, forged)
        _assert_signed_out(portal, thief)
    assert bob.get(ME).json()["name"] == "bob"  # the real session is untouched
    assert _live_sessions(portal, "bob") == 1


def test_an_expired_session_counts_as_signed_out(portal):
    bob = _signed_in(portal, "bob")
    with portal.state.db.session() as session:
        session.execute(
            update(SessionRow)
            .where(SessionRow.account == "bob")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    _assert_signed_out(portal, bob)


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(portal):
    bob = _signed_in(portal, "bob")
    copied = bob.cookies[SESSION_COOKIE]
    signed_out = bob.post(
        "/sign-out", data={"csrf_token": _form_token(bob, "/")}, follow_redirects=False
    )
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/sign-in"
    event = _event(portal, signed_out)
    assert (event["actor"], event["action"], event["outcome"]) == (
        "bob",
        "identity.session.delete",
        "success",
    )
    assert _live_sessions(portal, "bob") == 0
    thief = TestClient(portal)
    thief.cookies.set(SESSION_COOKIE, copied)
    _assert_signed_out(portal, thief)


# -- CSRF ----------------------------------------------------------------------------------------


def test_a_sign_in_without_its_csrf_token_is_refused(portal):
    browser = TestClient(portal)
    token = _form_token(browser, "/sign-in")
    credentials = {"username": "bob", "password": PASSWORD}
    for who, data in (
        (browser, credentials),  # no token
        (browser, credentials | {"csrf_token": "x" * len(token)}),  # a wrong one
        (TestClient(portal), credentials | {"csrf_token": token}),  # without its cookie
    ):
        response = who.post("/sign-in", data=data, headers=HTML, follow_redirects=False)
        assert response.status_code == 403, response.text
        assert "CSRF token is missing or does not match" in response.text
        assert SESSION_COOKIE not in response.cookies
        _assert_denied(portal, response, 403)
    assert _live_sessions(portal) == 0


def test_a_sign_out_without_the_session_csrf_token_is_refused(portal):
    bob = _signed_in(portal, "bob")
    pre_session = _form_token(TestClient(portal), "/sign-in")  # another browser's token
    for data in ({}, {"csrf_token": "wrong"}, {"csrf_token": pre_session}):
        response = bob.post("/sign-out", data=data, headers=HTML, follow_redirects=False)
        assert response.status_code == 403, response.text
        assert "CSRF" in response.text
        _assert_denied(portal, response, 403)
    assert bob.get(ME).json()["name"] == "bob"
    assert _live_sessions(portal, "bob") == 1


def test_a_change_through_the_api_with_a_session_needs_the_csrf_header(portal):
    bob = _signed_in(portal, "bob")
    write_docs(portal.state.scratch, component("scratch", CHECKOUT, description="v2"))
    body = {"entityRef": SCRATCH}
    for headers in ({}, {"x-csrf-token": "wrong"}):
        refused = bob.post("/api/v1/catalog/refresh", json=body, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "CSRF" in refused.json()["detail"]
        _assert_denied(portal, refused, 403)
        assert _description(portal, SCRATCH) == "v1"  # not refreshed
    allowed = bob.post(
        "/api/v1/catalog/refresh", json=body, headers={"x-csrf-token": _form_token(bob, "/")}
    )
    assert allowed.status_code == 200, allowed.text
    assert _description(portal, SCRATCH) == "v2"


def test_a_member_of_another_team_cannot_change_the_entity_with_a_session(portal):
    dave = _signed_in(portal, "dave")
    csrf = {"x-csrf-token": _form_token(dave, "/")}
    uid = dave.get("/api/v1/catalog/entities/component/default/orders-service").json()["metadata"][
        "uid"
    ]
    deleted = dave.delete(f"/api/catalog/entities/by-uid/{uid}", headers=csrf)
    assert deleted.status_code == 403, deleted.text
    message = deleted.json()["error"]["message"]
    assert "catalog.entity.delete" in message and f"owned by {CHECKOUT}" in message
    assert _assert_denied(portal, deleted, 403, actor="dave")["action"] == "catalog.entity.delete"

    write_docs(portal.state.scratch, component("scratch", CHECKOUT, description="v2"))
    refreshed = dave.post("/api/v1/catalog/refresh", json={"entityRef": SCRATCH}, headers=csrf)
    assert refreshed.status_code == 403, refreshed.text
    problem = refreshed.json()
    assert problem["permission"] == "catalog.entity.refresh" and problem["owners"] == [CHECKOUT]
    assert "dave is not a member of an owning group" in problem["detail"]
    assert (
        _assert_denied(portal, refreshed, 403, actor="dave")["action"] == "catalog.entity.refresh"
    )

    assert _description(portal, ORDERS) is not None  # still there
    assert _description(portal, SCRATCH) == "v1"  # not refreshed


# -- one-time links, redirects, oversized input --------------------------------------------------


def test_a_one_time_sign_in_link_works_once(portal):
    link = f"/sign-in/link/{portal.state.sessions.create_link('bob')}"
    first = TestClient(portal)
    used = first.post(link, data={"csrf_token": _form_token(first, link)}, follow_redirects=False)
    assert used.status_code == 303 and used.headers["location"] == "/settings"
    assert first.get(ME).json()["name"] == "bob"

    second = TestClient(portal)
    again = second.post(
        link, data={"csrf_token": _form_token(second, link)}, follow_redirects=False
    )
    assert again.status_code == 401, again.text
    assert "this sign-in link is not valid" in again.text
    assert SESSION_COOKIE not in again.cookies
    assert _assert_denied(portal, again, 401)["action"] == "identity.link.use"
    assert _live_sessions(portal, "bob") == 1


def test_next_never_leaves_the_portal(portal):
    for target in ("//evil.example", "https://evil.example", "/\\evil.example", "/\t/evil.example"):
        browser = TestClient(portal)
        page = browser.get("/sign-in", params={"next": target})
        assert 'name="next" value="/"' in page.text
        signed_in = sign_in(browser, "bob", PASSWORD, next_url=target)
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == "/", target
        again = browser.get("/sign-in", params={"next": target}, follow_redirects=False)
        assert again.status_code == 303 and again.headers["location"] == "/"
    kept = sign_in(TestClient(portal), "bob", PASSWORD, next_url=PAGE)
    assert kept.headers["location"] == PAGE


def test_oversized_sign_in_fields_are_clear_errors(portal):
    browser = TestClient(portal)
    token = _form_token(browser, "/sign-in")
    for field, limit in (("username", 400), ("password", 1024)):
        data = {"username": "bob", "password": PASSWORD, "csrf_token": token} | {
            field: "b" * 10_000
        }
        response = browser.post("/sign-in", data=data, follow_redirects=False)
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert field in detail and str(limit) in detail, detail
        assert SESSION_COOKIE not in response.cookies
        event = _event(portal, response)
        assert (event["action"], event["status"]) == ("identity.session.create", 400)
    huge = browser.post(
        "/sign-in",
        data={"username": "b" * (portal.state.settings.max_request_bytes + 1), "csrf_token": token},
    )
    assert huge.status_code == 413 and "over the limit" in huge.json()["detail"]
    with portal.state.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(SignInFailureRow)) == 0
    assert _live_sessions(portal) == 0


def test_an_oversized_form_is_refused_before_the_csrf_check_reads_it(portal):
    """The size limit sits outside authentication: the CSRF check never buffers (or
    parses) a form over ``max_request_bytes``."""
    body = {"username": "b" * (portal.state.settings.max_request_bytes + 1), "csrf_token": "x"}
    response = TestClient(portal).post("/sign-in", data=body)
    assert response.status_code == 413, (response.status_code, response.text[:200])


def test_a_paused_sign_in_is_audited_as_denied(portal):
    """Refusals during the wrong-password pause (429) count as denials, so an export of
    ``outcome=denied`` shows every locked-out attempt."""
    browser = TestClient(portal)
    for _ in range(portal.state.settings.auth.max_failed_sign_ins):
        assert sign_in(browser, "bob", "not the password").status_code == 401
    paused = sign_in(browser, "bob", PASSWORD)
    assert paused.status_code == 429
    assert _event(portal, paused)["outcome"] == "denied"


def test_a_viewer_cannot_register_a_location(portal, tmp_path):
    """Viewers change nothing: registering a location needs a member (or admin)."""
    portal.state.identity.create_account("carol", Role.viewer, None)
    target = write_docs(tmp_path / "viewer.yaml", component("by-a-viewer", CHECKOUT))
    _info, secret = portal.state.identity.create_token("carol", "t", ["read", "write"])
    response = TestClient(portal).post(
        "/api/v1/catalog/locations",
        json={"type": "file", "target": str(target)},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 403, response.text
    assert "viewer" in response.json()["detail"]
    assert _event(portal, response)["outcome"] == "denied"
    assert portal.state.identity.can("carol", "catalog.location.create").allowed is False
    with portal.state.catalog.reader() as reader:
        assert reader.row_by_ref("component:default/by-a-viewer") is None


def test_a_csrf_refusal_names_the_signed_in_user(portal):
    """A forged request riding on bob's session is refused and recorded as bob's."""
    bob = _signed_in(portal, "bob")
    assert _form_token(bob, "/")  # bob has a session and a CSRF token he did not send
    refused = bob.post("/api/v1/catalog/refresh", json={"entityRef": "orders-service"})
    assert refused.status_code == 403
    assert _event(portal, refused)["actor"] == "bob"
