"""The secrets API as users meet it: who may set and read which secrets, the audit
record of every read and refusal, values that never show outside a value read, and
clear errors for bad input (stale versions, oversize values, hostile names, broken
ciphertext, an audit log that cannot be written).

The demo organisation: checkout-team (bob, carol) owns component orders-service,
dave is in catalog-team, and platform-team (alice) owns the environments.
"""

from __future__ import annotations

import base64
import json
import string
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from pavedroad.core import audit
from pavedroad.core.timeutil import utcnow
from pavedroad.identity.policy import Role
from pavedroad.secrets.models import SecretRow, SecretValueRow

API = "/api/v1/secrets"
ORDERS = {"entity": "orders-service"}
ORDERS_REF = "component:default/orders-service"
PASSWORD = "Orders-DB-pw-7f3a9c-do-not-leak"


@pytest.fixture
def database_seed() -> str:
    return "demo"


@pytest.fixture
def secured(make_app, make_settings):
    settings = make_settings()
    settings.auth.required = True
    app = make_app(settings)
    identity = app.state.identity
    identity.create_account("root", Role.admin, None)
    identity.create_account("alice", Role.member, None)  # platform-team: owns environments
    identity.create_account("bob", Role.member, None)  # checkout-team: owns orders-service
    identity.create_account("carol", Role.viewer, None)  # checkout-team, but a viewer
    identity.create_account("dave", Role.member, None)  # catalog-team
    return app


class Users:
    """A TestClient per account, each with a read-write (admin: all scopes) token."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._clients: dict[str, TestClient] = {}

    def __getattr__(self, account: str) -> TestClient:
        if account.startswith("_"):
            raise AttributeError(account)
        if account not in self._clients:
            scopes = ["read", "write", "admin"] if account == "root" else ["read", "write"]
            _info, secret = self.app.state.identity.create_token(account, "test", scopes)
            self._clients[account] = TestClient(
                self.app,
                headers={"authorization": f"Bearer {secret}"},
                raise_server_exceptions=False,
            )
        return self._clients[account]


@pytest.fixture
def users(secured) -> Users:
    return Users(secured)


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    for word in words:
        assert word in body["detail"], body["detail"]
    return body  # type: ignore[no-any-return]


def _audit_log(app: Any) -> list[dict[str, Any]]:
    return audit.search(app.state.db, limit=10_000)


def _reads(app: Any, outcome: str = "success") -> list[dict[str, Any]]:
    """The ``secret.read`` events with this outcome, newest first."""
    return [e for e in _audit_log(app) if e["action"] == "secret.read" and e["outcome"] == outcome]


def _assert_nowhere(value: str, *texts: str) -> None:
    forms = {value, base64.b64encode(value.encode()).decode(), json.dumps(value)[1:-1]}
    for text_ in texts:
        for form in forms:
            assert form not in text_, f"{form!r} leaked into {text_[:300]!r}"


def _set(client: TestClient, name: str, value: str, params: dict[str, str] | None = None) -> Any:
    return client.put(
        f"{API}/{name}", params=ORDERS if params is None else params, json={"value": value}
    )


# -- who may do what ------------------------------------------------------------------------


def test_an_owner_sets_reads_and_rotates_and_every_read_is_audited(secured, users):
    meta = _ok(_set(users.bob, "DATABASE_PASSWORD", PASSWORD))
    assert meta["version"] == 1 and meta["entity"] == ORDERS_REF and meta["createdBy"] == "bob"
    read = _ok(users.bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS))
    assert read["value"] == PASSWORD and read["version"] == 1

    generated = _ok(users.bob.post(f"{API}/API_TOKEN/generate", params=ORDERS, json={"length": 20}))
    assert "value" not in generated
    first = _ok(users.bob.get(f"{API}/API_TOKEN/value", params=ORDERS))["value"]
    rotated = _ok(users.bob.post(f"{API}/API_TOKEN/rotate", params=ORDERS))
    assert rotated["version"] == 2
    second = _ok(users.bob.get(f"{API}/API_TOKEN/value", params=ORDERS))["value"]
    assert len(first) == len(second) == 20 and first != second
    # Any member of the owning team reads it (carol, made a member here; see the viewer test).
    secured.state.identity.set_role("carol", Role.member)
    assert _ok(users.carol.get(f"{API}/API_TOKEN/value", params=ORDERS))["value"] == second

    reads = _reads(secured)
    assert [(e["actor"], e["target"]) for e in reads] == [
        ("carol", f"{ORDERS_REF} (every environment)/API_TOKEN version 2"),
        ("bob", f"{ORDERS_REF} (every environment)/API_TOKEN version 2"),
        ("bob", f"{ORDERS_REF} (every environment)/API_TOKEN version 1"),
        ("bob", f"{ORDERS_REF} (every environment)/DATABASE_PASSWORD version 1"),
    ]
    assert all(e["outcome"] == "success" and e["requestId"] for e in reads)
    changes = [e["action"] for e in _audit_log(secured) if e["action"] != "secret.read"]
    assert not _reads(secured, "denied")
    assert changes == ["secret.rotate", "secret.generate", "secret.set"]
    _assert_nowhere(PASSWORD, json.dumps(_audit_log(secured)))
    _assert_nowhere(first, json.dumps(_audit_log(secured)))
    _assert_nowhere(second, json.dumps(_audit_log(secured)))


def test_another_team_cannot_read_or_change_a_secret_and_is_on_the_record(secured, users):
    _ok(_set(users.bob, "DATABASE_PASSWORD", PASSWORD))
    _ok(users.bob.post(f"{API}/API_TOKEN/generate", params=ORDERS, json={}))
    dave = users.dave
    refusals = [
        dave.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS),
        dave.get(f"{API}/DATABASE_PASSWORD/value", params={**ORDERS, "version": 1}),
        _set(dave, "DATABASE_PASSWORD", "daves-overwrite"),
        _set(dave, "NEW_ONE", "daves-new-secret"),
        dave.post(f"{API}/DATABASE_PASSWORD/rollback", params=ORDERS, json={"version": 1}),
        dave.post(f"{API}/API_TOKEN/rotate", params=ORDERS),
        dave.post(f"{API}/API_TOKEN/generate", params=ORDERS, json={}),
        dave.delete(f"{API}/DATABASE_PASSWORD", params=ORDERS),
        dave.post(f"{API}/DATABASE_PASSWORD/restore", params=ORDERS),
    ]
    for response in refusals:
        body = _problem(response, 403, "dave")
        assert "checkout-team" in json.dumps(body)  # the refusal names who may
        _assert_nowhere(PASSWORD, response.text)

    log = _audit_log(secured)
    denied = [e for e in log if e["outcome"] == "denied"]
    assert len(denied) == len(refusals)
    assert {e["actor"] for e in denied} == {"dave"} and {e["status"] for e in denied} == {403}
    assert sorted((e["action"], e["target"].rsplit("/", 1)[1]) for e in denied) == [
        ("secret.delete", "DATABASE_PASSWORD"),
        ("secret.generate", "API_TOKEN"),
        ("secret.read", "DATABASE_PASSWORD"),
        ("secret.read", "DATABASE_PASSWORD"),
        ("secret.restore", "DATABASE_PASSWORD"),
        ("secret.rollback", "DATABASE_PASSWORD"),
        ("secret.rotate", "API_TOKEN"),
        ("secret.set", "DATABASE_PASSWORD"),
        ("secret.set", "NEW_ONE"),
    ]
    assert {e["target"].rsplit("/", 1)[0] for e in denied} == {f"{ORDERS_REF} (every environment)"}
    assert not _reads(secured)  # nothing was read
    _assert_nowhere(PASSWORD, json.dumps(log))
    meta = _ok(users.bob.get(f"{API}/DATABASE_PASSWORD", params=ORDERS))
    assert meta["version"] == 1 and meta["deletedAt"] is None
    assert _problem(users.bob.get(f"{API}/NEW_ONE", params=ORDERS), 404)


def test_a_viewer_of_the_owning_team_cannot_read_or_write(secured, users):
    _ok(_set(users.bob, "DATABASE_PASSWORD", PASSWORD))
    read = _problem(users.carol.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS), 403, "viewer")
    _assert_nowhere(PASSWORD, json.dumps(read))
    _problem(_set(users.carol, "DATABASE_PASSWORD", "carols-value"), 403, "viewer")
    _problem(users.carol.post(f"{API}/X_TOKEN/generate", params=ORDERS, json={}), 403, "viewer")
    denied = [e for e in _audit_log(secured) if e["outcome"] == "denied"]
    assert [e["actor"] for e in denied] == ["carol"] * 3
    # A viewer still sees which secrets exist (metadata only).
    listed = _ok(users.carol.get(API, params=ORDERS))["items"]
    assert [s["name"] for s in listed] == ["DATABASE_PASSWORD"]


def test_global_secrets_are_for_admins_only(secured, users):
    meta = _ok(_set(users.root, "SMTP_PASSWORD", "global-smtp-pw-91", params={}))
    assert meta["entity"] is None and meta["environment"] is None
    assert _ok(users.root.get(f"{API}/SMTP_PASSWORD/value"))["value"] == "global-smtp-pw-91"
    _, all_scopes = secured.state.identity.create_token("alice", "all", ["read", "write", "admin"])
    alice_all_scopes = TestClient(secured, headers={"authorization": f"Bearer {all_scopes}"})
    # A member's usual token lacks the admin scope; with it, the member is still no admin.
    for member, why in ((users.bob, "admin scope"), (alice_all_scopes, "admins only")):
        for response in (
            member.get(f"{API}/SMTP_PASSWORD/value"),
            _set(member, "SMTP_PASSWORD", "members-value", params={}),
            member.delete(f"{API}/SMTP_PASSWORD"),
        ):
            _problem(response, 403, why)
            assert "global-smtp-pw-91" not in response.text
    assert _ok(users.root.get(f"{API}/SMTP_PASSWORD"))["version"] == 1
    # Admins may do everything to a team's secrets as well.
    _ok(_set(users.bob, "DATABASE_PASSWORD", PASSWORD))
    assert _ok(users.root.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS))["value"] == (
        PASSWORD
    )
    assert _ok(_set(users.root, "DATABASE_PASSWORD", "root-changed-it"))["version"] == 2
    _ok(users.root.delete(f"{API}/DATABASE_PASSWORD", params=ORDERS))
    _ok(users.root.post(f"{API}/DATABASE_PASSWORD/restore", params=ORDERS))
    assert [e["actor"] for e in _reads(secured)] == ["root", "root"]
    denied = _reads(secured, "denied")
    assert [e["actor"] for e in denied] == ["alice", "bob"]
    assert {e["target"] for e in denied} == {"global/SMTP_PASSWORD"}


def test_environment_secrets_belong_to_the_environments_owners(secured, users):
    staging = {"environment": "staging"}
    # platform-team owns every demo environment: alice may, bob may not.
    _ok(_set(users.alice, "REGISTRY_TOKEN", "staging-registry-token", params=staging))
    got = _ok(users.alice.get(f"{API}/REGISTRY_TOKEN/value", params=staging))
    assert got["value"] == "staging-registry-token" and got["environment"] == "staging"
    _problem(users.bob.get(f"{API}/REGISTRY_TOKEN/value", params=staging), 403, "bob")
    _problem(_set(users.bob, "REGISTRY_TOKEN", "bobs", params=staging), 403, "platform-team")
    # An entity's secret in an environment belongs to the entity's owners.
    orders_in_staging = {**ORDERS, "environment": "staging"}
    _ok(_set(users.bob, "DATABASE_PASSWORD", "orders-in-staging-pw", params=orders_in_staging))
    _problem(users.alice.get(f"{API}/DATABASE_PASSWORD/value", params=orders_in_staging), 403)
    _problem(_set(users.dave, "DATABASE_PASSWORD", "x-value", params=orders_in_staging), 403)
    # Each scope is its own secret.
    _problem(users.bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS), 404)
    _problem(
        _set(users.root, "A_SECRET", "for-nowhere", params={"environment": "moon"}),
        404,
        "environment:default/moon",
    )
    _problem(
        _set(users.root, "A_SECRET", "for-nothing", params={"entity": "no-such-service"}),
        404,
        "component:default/no-such-service",
    )


def test_lists_histories_and_metadata_never_show_values(secured, users):
    values = [f"{PASSWORD}-v{n}" for n in range(1, 4)]
    for value in values:
        _ok(_set(users.bob, "DATABASE_PASSWORD", value))
    _ok(users.bob.post(f"{API}/DATABASE_PASSWORD/rollback", params=ORDERS, json={"version": 1}))
    _ok(users.bob.post(f"{API}/TOKEN/generate", params=ORDERS, json={"bytes": 16}))
    token = _ok(users.bob.get(f"{API}/TOKEN/value", params=ORDERS))["value"]
    _ok(_set(users.bob, "GONE", "deleted-secret-value"))
    _ok(users.bob.delete(f"{API}/GONE", params=ORDERS))

    responses = []
    for client in (users.bob, users.dave, users.carol):  # metadata is open to everyone
        responses += [
            client.get(API),
            client.get(API, params=ORDERS),
            client.get(API, params={**ORDERS, "includeDeleted": "true"}),
            client.get(f"{API}/DATABASE_PASSWORD", params=ORDERS),
            client.get(f"{API}/DATABASE_PASSWORD/versions", params=ORDERS),
            client.get(f"{API}/TOKEN/versions", params=ORDERS),
            client.get(f"{API}/GONE", params=ORDERS),
        ]
    assert all(r.status_code == 200 for r in responses)
    history = responses[4].json()["items"]
    assert [(v["version"], v["origin"]) for v in history] == [
        (4, "rollback"),
        (3, "set"),
        (2, "set"),
        (1, "set"),
    ]
    everything = "\n".join(r.text for r in responses)
    for value in [*values, token, "deleted-secret-value"]:
        _assert_nowhere(value, everything, json.dumps(_audit_log(secured)))
    assert '"value"' not in everything


# -- the audit record of a read --------------------------------------------------------------


def test_a_read_that_cannot_be_put_on_the_record_returns_no_value(secured, users, monkeypatch):
    _ok(_set(users.bob, "DATABASE_PASSWORD", PASSWORD))
    real_record = audit.record

    def failing(db: Any, event: audit.AuditEvent) -> None:
        if event.action == "secret.read":
            raise RuntimeError("the audit database is full")
        real_record(db, event)

    monkeypatch.setattr(audit, "record", failing)
    failed = users.bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS)
    assert failed.status_code == 500
    _assert_nowhere(PASSWORD, failed.text)
    monkeypatch.undo()

    with secured.state.db.session() as session:  # the audit table is gone
        session.execute(text("ALTER TABLE audit_events RENAME TO audit_events_away"))
    try:
        failed = users.bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS)
        assert failed.status_code == 500
        _assert_nowhere(PASSWORD, failed.text)
    finally:
        with secured.state.db.session() as session:
            session.execute(text("ALTER TABLE audit_events_away RENAME TO audit_events"))

    assert not _reads(secured)
    assert _ok(users.bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS))["value"] == (
        PASSWORD
    )


# -- bad input -------------------------------------------------------------------------------


def test_stale_versions_are_refused(secured, users):
    _ok(_set(users.bob, "DATABASE_PASSWORD", PASSWORD))
    put = users.bob.put
    body = _problem(
        put(f"{API}/DATABASE_PASSWORD", params=ORDERS, json={"value": "v2", "expectedVersion": 0}),
        409,
        "at version 1, not 0",
    )
    assert body["currentVersion"] == 1
    _ok(
        put(
            f"{API}/DATABASE_PASSWORD", params=ORDERS, json={"value": "v2-ok", "expectedVersion": 1}
        )
    )
    _problem(
        put(f"{API}/DATABASE_PASSWORD", params=ORDERS, json={"value": "v3", "expectedVersion": 1}),
        409,
        "someone changed it meanwhile",
    )
    _problem(
        users.bob.post(
            f"{API}/DATABASE_PASSWORD/rollback",
            params=ORDERS,
            json={"version": 1, "expectedVersion": 1},
        ),
        409,
        "at version 2",
    )
    _problem(
        put(f"{API}/MISSING", params=ORDERS, json={"value": "value", "expectedVersion": 3}),
        409,
        "does not exist",
    )
    _ok(put(f"{API}/MISSING", params=ORDERS, json={"value": "created", "expectedVersion": 0}))
    _problem(put(f"{API}/MISSING", params=ORDERS, json={"value": "x", "expectedVersion": -1}), 400)
    read = _ok(users.bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS))
    assert read["value"] == "v2-ok" and read["version"] == 2


def test_oversize_and_empty_values_are_refused(secured, users):
    limit = 64 * 1024
    _problem(_set(users.bob, "BIG", "x" * (limit + 1)), 413, "at most 65536 bytes")
    _problem(_set(users.bob, "BIG", "é" * (limit // 2 + 1)), 413, "65538")  # bytes, not chars
    _problem(_set(users.bob, "BIG", ""), 400, "cannot be empty")
    _problem(users.bob.get(f"{API}/BIG", params=ORDERS), 404)
    assert _ok(_set(users.bob, "BIG", "x" * limit))["version"] == 1
    assert len(_ok(users.bob.get(f"{API}/BIG/value", params=ORDERS))["value"]) == limit


HOSTILE_NAMES = [
    "a%2Fb",
    "..%2F..%2Fx",
    "bad%0Aname",
    "bad%0D%0Aname",
    "nul%00",
    "tab%09name",
    "caf%C3%A9",  # café
    "%EF%BC%A1PI_KEY",  # fullwidth A
    "%D0%90PI_KEY",  # Cyrillic A
    "A%E2%80%AEyek",  # right-to-left override
    "API%E2%80%8BKEY",  # zero-width space
    "%20leading",
    "1STARTS_WITH_DIGIT",
    "_underscore",
    "name%20with%20spaces",
    "a" * 101,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_with_paths_or_control_characters_are_refused_clearly(secured, users, name):
    bob = users.bob
    _ok(_set(bob, "REAL_SECRET", PASSWORD))
    attempts = [
        bob.put(f"{API}/{name}", params=ORDERS, json={"value": "hostile-value"}),
        bob.get(f"{API}/{name}/value", params=ORDERS),
        bob.get(f"{API}/{name}", params=ORDERS),
        bob.get(f"{API}/{name}/versions", params=ORDERS),
        bob.post(f"{API}/{name}/generate", params=ORDERS, json={}),
        bob.post(f"{API}/{name}/rollback", params=ORDERS, json={"version": 1}),
        bob.delete(f"{API}/{name}", params=ORDERS),
    ]
    for response in attempts:
        body = _problem(response, 400, "is not a valid secret name")
        assert "\n" not in body["detail"] and "\r" not in body["detail"]
        assert "\x00" not in body["detail"] and "\u202e" not in body["detail"]
        _assert_nowhere(PASSWORD, response.text)
    listed = _ok(bob.get(API, params={**ORDERS, "includeDeleted": "true"}))["items"]
    assert [s["name"] for s in listed] == ["REAL_SECRET"]
    for event in _audit_log(secured):  # one event is one line, whatever the name
        assert event["target"].isprintable(), event


def test_bad_scopes_are_refused_clearly(secured, users):
    for environment in ("Stag\ning", "../prod", "prod/../x", "st\u0430ging"):
        response = _set(users.root, "A_NAME", "v", params={"environment": environment})
        _problem(response, 400, "not a valid environment name")
    _problem(_set(users.root, "A_NAME", "v", params={"environment": "x" * 64}), 400)
    _problem(_set(users.root, "A_NAME", "v", params={"entity": "x" * 401}), 400)
    assert _ok(users.root.get(API))["items"] == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"length": 4}, ["length"]),
        ({"length": 5000}, ["length"]),
        ({"bytes": 2}, ["bytes"]),
        ({"bytes": 16, "encoding": "base32"}, ["encoding"]),
        ({"alphabet": ""}, ["alphabet"]),
        ({"alphabet": "aaaa"}, ["at least two different characters"]),
        ({"rotateEvery": "soon"}, ["not a rotation period"]),
        ({"rotateEvery": "0d"}, ["not a rotation period"]),
        ({"length": "many"}, ["length"]),
    ],
)
def test_bad_generator_inputs_are_refused(secured, users, body, words):
    response = users.bob.post(f"{API}/GENERATED/generate", params=ORDERS, json=body)
    _problem(response, 400, *words)
    _problem(users.bob.get(f"{API}/GENERATED", params=ORDERS), 404)


def test_generated_values_honour_length_alphabet_bytes_and_encoding(secured, users):
    def generate(body: dict[str, Any]) -> str:
        _ok(users.bob.post(f"{API}/GEN/generate", params=ORDERS, json=body))
        return _ok(users.bob.get(f"{API}/GEN/value", params=ORDERS))["value"]  # type: ignore[no-any-return]

    value = generate({})
    assert len(value) == 32 and set(value) <= set(string.ascii_letters + string.digits)
    value = generate({"length": 100, "alphabet": "symbols"})
    assert len(value) == 100 and not set(value) <= set(string.ascii_letters + string.digits)
    value = generate({"length": 16, "alphabet": "hex"})
    assert len(value) == 16 and set(value) <= set("0123456789abcdef")
    value = generate({"length": 9, "alphabet": "AB"})
    assert len(value) == 9 and set(value) <= {"A", "B"}
    value = generate({"bytes": 24, "encoding": "hex"})
    assert len(value) == 48 and bytes.fromhex(value)
    value = generate({"bytes": 24, "encoding": "base64"})
    assert len(base64.b64decode(value, validate=True)) == 24
    value = generate({"bytes": 10, "encoding": "base64url"})
    assert len(base64.urlsafe_b64decode(value)) == 10 and value.endswith("=")
    history = _ok(users.bob.get(f"{API}/GEN/versions", params=ORDERS))["items"]
    assert [v["origin"] for v in history] == ["generated"] * 7


def test_delete_hides_a_secret_until_it_is_restored(secured, users):
    bob = users.bob
    _ok(_set(bob, "DATABASE_PASSWORD", PASSWORD))
    _ok(_set(bob, "OTHER", "other-value"))
    deleted = _ok(bob.delete(f"{API}/DATABASE_PASSWORD", params=ORDERS))
    assert deleted["deletedAt"] is not None

    assert [s["name"] for s in _ok(bob.get(API, params=ORDERS))["items"]] == ["OTHER"]
    with_deleted = _ok(bob.get(API, params={**ORDERS, "includeDeleted": "true"}))["items"]
    assert [(s["name"], s["deletedAt"] is not None) for s in with_deleted] == [
        ("DATABASE_PASSWORD", True),
        ("OTHER", False),
    ]
    _problem(bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS), 404, "restore")
    _problem(_set(bob, "DATABASE_PASSWORD", "new-value"), 409, "restore it first")
    _problem(bob.post(f"{API}/DATABASE_PASSWORD/rollback", params=ORDERS, json={"version": 1}), 404)
    _problem(bob.post(f"{API}/OTHER/restore", params=ORDERS), 409, "not deleted")
    again = bob.delete(f"{API}/DATABASE_PASSWORD", params=ORDERS)  # deleting twice is harmless
    assert again.status_code == 200 and again.json()["deletedAt"]

    restored = _ok(bob.post(f"{API}/DATABASE_PASSWORD/restore", params=ORDERS))
    assert restored["deletedAt"] is None and restored["version"] == 1
    assert _ok(bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS))["value"] == PASSWORD
    _problem(bob.delete(f"{API}/NEVER_SET", params=ORDERS), 404, "there is no secret")


def test_rollback_makes_a_new_version_with_the_old_value(secured, users):
    bob = users.bob
    for value in ("first-value", "second-value", "third-value"):
        _ok(_set(bob, "DATABASE_PASSWORD", value))
    meta = _ok(
        bob.post(
            f"{API}/DATABASE_PASSWORD/rollback",
            params=ORDERS,
            json={"version": 1, "expectedVersion": 3},
        )
    )
    assert meta["version"] == 4
    assert _ok(bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS))["value"] == "first-value"
    for version, value in [(1, "first-value"), (2, "second-value"), (3, "third-value")]:
        got = _ok(bob.get(f"{API}/DATABASE_PASSWORD/value", params={**ORDERS, "version": version}))
        assert got["value"] == value and got["version"] == version
    _problem(
        bob.post(f"{API}/DATABASE_PASSWORD/rollback", params=ORDERS, json={"version": 9}),
        404,
        "has no version 9",
    )
    _problem(bob.get(f"{API}/DATABASE_PASSWORD/value", params={**ORDERS, "version": 9}), 404)
    _problem(bob.get(f"{API}/DATABASE_PASSWORD/value", params={**ORDERS, "version": 0}), 400)


def test_a_pruned_version_is_gone_with_a_clear_message(make_app, make_settings):
    settings = make_settings()
    settings.secrets.versions_kept = 3
    client = TestClient(make_app(settings))
    for n in range(1, 6):
        _ok(_set(client, "DATABASE_PASSWORD", f"value-{n}"))
    history = _ok(client.get(f"{API}/DATABASE_PASSWORD/versions", params=ORDERS))["items"]
    assert [v["version"] for v in history] == [5, 4, 3]
    _problem(
        client.get(f"{API}/DATABASE_PASSWORD/value", params={**ORDERS, "version": 1}),
        404,
        "has no version 1: versions 1 to 5 existed and the last 3 are kept",
    )
    _problem(
        client.post(f"{API}/DATABASE_PASSWORD/rollback", params=ORDERS, json={"version": 2}),
        404,
        "has no version 2",
    )
    read = _ok(client.get(f"{API}/DATABASE_PASSWORD/value", params={**ORDERS, "version": 3}))
    assert read["value"] == "value-3"


def test_a_secret_set_by_hand_is_reported_overdue_not_rotated(secured, users):
    bob = users.bob
    put = bob.put(
        f"{API}/PARTNER_KEY", params=ORDERS, json={"value": "partner-key-1", "rotateEvery": "90d"}
    )
    meta = _ok(put)
    assert meta["rotateEvery"] == "90d"
    assert meta["rotationOverdue"] is False and meta["generated"] is False
    with secured.state.db.session() as session:
        session.execute(
            update(SecretRow)
            .where(SecretRow.name == "PARTNER_KEY")
            .values(rotation_due_at=utcnow() - timedelta(hours=1))
        )
    assert secured.state.secrets.rotate_due() == 0
    overdue = _ok(bob.get(f"{API}/PARTNER_KEY", params=ORDERS))
    assert overdue["rotationOverdue"] is True and overdue["version"] == 1
    listed = _ok(bob.get(API, params=ORDERS))["items"]
    assert listed[0]["rotationOverdue"] is True
    _problem(bob.post(f"{API}/PARTNER_KEY/rotate", params=ORDERS), 400, "set by hand")
    assert _ok(bob.get(f"{API}/PARTNER_KEY/value", params=ORDERS))["value"] == "partner-key-1"
    # Setting a new value by hand starts the period again.
    again = _ok(
        bob.put(
            f"{API}/PARTNER_KEY",
            params=ORDERS,
            json={"value": "partner-key-2", "rotateEvery": "90d"},
        )
    )
    assert again["rotationOverdue"] is False and again["version"] == 2


# -- broken ciphertext -----------------------------------------------------------------------


def _flip_a_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_a_changed_ciphertext_byte_is_an_integrity_error_never_garbage(secured, users):
    bob = users.bob
    _ok(_set(bob, "DATABASE_PASSWORD", "version-one-value"))
    _ok(_set(bob, "DATABASE_PASSWORD", "version-two-value"))
    with secured.state.db.session() as session:
        secret_id = session.scalar(
            select(SecretRow.id).where(SecretRow.name == "DATABASE_PASSWORD")
        )
        row = session.get(SecretValueRow, f"{secret_id}/1")
        row.sealed = _flip_a_byte(row.sealed, len(row.sealed) // 2)

    body = _problem(
        bob.get(f"{API}/DATABASE_PASSWORD/value", params={**ORDERS, "version": 1}),
        500,
        "secret DATABASE_PASSWORD version 1 failed its integrity check",
    )
    assert body["title"] == "Integrity check failed"
    assert "version-one-value" not in json.dumps(body)
    # The other version is untouched, and a rollback to the broken one is refused too.
    assert _ok(bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS))["value"] == (
        "version-two-value"
    )
    _problem(
        bob.post(f"{API}/DATABASE_PASSWORD/rollback", params=ORDERS, json={"version": 1}),
        500,
        "integrity check",
    )

    # A sealed value moved to another version does not open either.
    with secured.state.db.session() as session:
        one = session.get(SecretValueRow, f"{secret_id}/1")
        two = session.get(SecretValueRow, f"{secret_id}/2")
        one.sealed = two.sealed
    _problem(
        bob.get(f"{API}/DATABASE_PASSWORD/value", params={**ORDERS, "version": 1}),
        500,
        "failed its integrity check",
    )


def test_a_changed_data_key_byte_is_an_integrity_error(secured, users):
    bob = users.bob
    _ok(_set(bob, "DATABASE_PASSWORD", PASSWORD))
    with secured.state.db.session() as session:
        row = session.scalar(select(SecretRow).where(SecretRow.name == "DATABASE_PASSWORD"))
        row.wrapped_key = _flip_a_byte(row.wrapped_key, 0)
    body = _problem(
        bob.get(f"{API}/DATABASE_PASSWORD/value", params=ORDERS),
        500,
        "the data key of secret DATABASE_PASSWORD failed its integrity check",
    )
    assert body["title"] == "Integrity check failed"
    _assert_nowhere(PASSWORD, json.dumps(body))
    _problem(_set(bob, "DATABASE_PASSWORD", "a-new-value"), 500, "integrity check")
