"""Personal access tokens, and the access policy enforced on the catalog's changes.

With ``auth.required`` every API request needs a token; a token's scopes bound what it
may do, and the ownership policy decides the rest. Every refusal is a clear
problem+json error with an audit event, and nothing changes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from pavedroad.core.errors import InputError
from pavedroad.core.timeutil import utcnow
from pavedroad.identity.models import TokenRow
from pavedroad.identity.policy import Role

V1 = "/api/v1/catalog"
BS = "/api/catalog"
ORDERS = "component:default/orders-service"


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
    identity.create_account("bob", Role.member, None)  # checkout-team: owns orders-service
    identity.create_account("alice", Role.member, None)  # platform-team
    identity.create_account("vera", Role.viewer, None)
    return app


def _token(app, account: str, *scopes: str, expires: timedelta | None = None) -> dict:
    _info, secret = app.state.identity.create_token(account, "test", list(scopes), expires)
    return {"authorization": f"Bearer {secret}"}


def _backstage_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message


def _problem(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    for word in words:
        assert word in body["detail"], body["detail"]
    return body


def test_requests_without_a_valid_token_are_refused(secured):
    client = TestClient(secured)
    assert client.get("/healthz").status_code == 200
    _problem(client.get(f"{V1}/entities"), 401, "Bearer")
    _problem(client.get(f"{V1}/entities", headers={"authorization": "Basic abc"}), 401, "Bearer")
    forged = "pvd_" + "0" * 32 + "_notasecret"
    _problem(client.get(f"{V1}/entities", headers={"authorization": f"Bearer {forged}"}), 401)
    good = _token(secured, "alice", "read")
    tampered = {"authorization": good["authorization"][:-2] + "xx"}
    _problem(client.get(f"{V1}/entities", headers=tampered), 401, "not valid")
    assert client.get(f"{V1}/entities", headers=good).status_code == 200


def test_revoked_and_expired_tokens_stop_working(secured):
    client = TestClient(secured)
    identity = secured.state.identity
    info, secret = identity.create_token("alice", "laptop", ["read"])
    headers = {"authorization": f"Bearer {secret}"}
    assert client.get(f"{V1}/entities", headers=headers).status_code == 200
    identity.revoke_token(info["id"])
    _problem(client.get(f"{V1}/entities", headers=headers), 401)
    expired = _token(secured, "alice", "read", expires=timedelta(minutes=5))
    with secured.state.db.session() as session:  # five minutes pass
        session.execute(
            update(TokenRow)
            .where(TokenRow.name == "test")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    _problem(client.get(f"{V1}/entities", headers=expired), 401)
    with pytest.raises(InputError, match="lifetime must be positive"):
        identity.create_token("alice", "never", ["read"], timedelta(seconds=-1))
    listed = identity.tokens("alice")
    assert [t["revokedAt"] is not None for t in listed] == [True, False]
    assert all("secret" not in str(t).lower() for t in listed)


def test_a_read_token_cannot_write(secured):
    client = TestClient(secured)
    body = _problem(
        client.post(
            f"{V1}/refresh", json={"entityRef": ORDERS}, headers=_token(secured, "bob", "read")
        ),
        403,
        "write scope",
    )
    assert "read scope" in body["detail"]


def test_only_owners_and_admins_change_an_entity(secured):
    client = TestClient(secured)
    denied = _problem(
        client.post(
            f"{V1}/refresh",
            json={"entityRef": ORDERS},
            headers=_token(secured, "alice", "read", "write"),
        ),
        403,
        "owned by group:default/checkout-team",
    )
    assert denied["owners"] == ["group:default/checkout-team"]
    _backstage_error(
        client.post(
            f"{BS}/refresh",
            json={"entityRef": ORDERS},
            headers=_token(secured, "vera", "read", "write"),
        ),
        403,
        "viewer",
    )
    assert (
        client.post(
            f"{V1}/refresh",
            json={"entityRef": ORDERS},
            headers=_token(secured, "bob", "read", "write"),
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"{BS}/refresh", json={"entityRef": ORDERS}, headers=_token(secured, "root", "admin")
        ).status_code
        == 200
    )


def test_refusals_change_nothing_and_are_audited(secured):
    client = TestClient(secured)
    admin = _token(secured, "root", "admin")
    locations = client.get(f"{V1}/locations", headers=admin).json()
    location_id = locations[0]["id"]
    _problem(
        client.delete(
            f"{V1}/locations/{location_id}", headers=_token(secured, "bob", "read", "write")
        ),
        403,
        "admin scope",
    )
    uid = client.get(f"{V1}/entities/component/default/orders-service", headers=admin).json()[
        "metadata"
    ]["uid"]
    _backstage_error(
        client.delete(
            f"{BS}/entities/by-uid/{uid}", headers=_token(secured, "alice", "read", "write")
        ),
        403,
    )
    assert client.get(f"{V1}/locations", headers=admin).json() == locations
    assert (
        client.get(f"{V1}/entities/component/default/orders-service", headers=admin).status_code
        == 200
    )
    client.get(f"{V1}/entities")  # no token: refused before routing, audited too

    events = client.get("/api/v1/audit", headers=admin).json()["items"]
    outcomes = [(e["actor"], e["action"], e["outcome"]) for e in events[:3]]
    assert outcomes == [
        ("anonymous", "GET /api/v1/catalog/entities", "denied"),
        ("alice", "catalog.entity.delete", "denied"),
        ("bob", "catalog.location.delete", "denied"),
    ]


def test_tokens_need_known_scopes_and_an_account(secured):
    from pavedroad.core.errors import InputError, NotFoundError

    identity = secured.state.identity
    with pytest.raises(InputError, match="scopes"):
        identity.create_token("alice", "x", ["everything"])
    with pytest.raises(InputError, match="scopes"):
        identity.create_token("alice", "x", [])
    with pytest.raises(NotFoundError):
        identity.create_token("ghost", "x", ["read"])


def test_open_mode_still_checks_presented_tokens(app):
    client = TestClient(app)
    app.state.identity.create_account("alice", Role.member, None)
    assert client.post(f"{V1}/refresh", json={"entityRef": ORDERS}).status_code == 200
    headers = {"authorization": "Bearer pvd_nonsense"}
    _problem(client.post(f"{V1}/refresh", json={"entityRef": ORDERS}, headers=headers), 401)
    _info, secret = app.state.identity.create_token("alice", "t", ["read", "write"])
    _problem(
        client.post(
            f"{V1}/refresh",
            json={"entityRef": ORDERS},
            headers={"authorization": f"Bearer {secret}"},
        ),
        403,
    )


def test_anonymous_catalog_reads_when_enabled(make_app, make_settings):
    settings = make_settings()
    settings.auth.required = True
    settings.auth.anonymous_read = True
    client = TestClient(make_app(settings))
    assert client.get(f"{V1}/entities").status_code == 200
    assert client.get(f"{BS}/entities/by-name/component/default/orders-service").status_code == 200
    _backstage_error(client.post(f"{BS}/refresh", json={"entityRef": ORDERS}), 401, "sign in")
    _problem(client.get("/api/v1/audit"), 401)
    badge = client.get("/pipelines/badge/checkout-team/orders.svg")  # for READMEs elsewhere
    assert badge.status_code in (200, 404) and badge.status_code != 401
    _problem(client.get("/api/v1/pipelines/runs"), 401)  # the runs themselves are not
