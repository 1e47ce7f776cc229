"""The permission matrix: for each role and ownership relation, each permission is
allowed or denied as ``MATRIX`` says, through the API and through the CLI.

The demo organisation: bob and carol are in ``checkout-team``, dave in ``catalog-team``,
kwame in ``data-team`` and ``payments-team``; every team sits inside ``engineering``.
An actor's entity permissions act on an entity owned by ``checkout-team``, or, for the
owner through a parent group, by ``engineering``. Through the API that is a ``scratch``
component of the test's own, so a refresh (of an edited file) and a delete can be seen
to happen or not; ``pave can`` is asked about the demo's ``orders-service`` (owned by
``checkout-team``) and ``commerce`` domain (owned by ``engineering``).

Through the API every cell is the real request that needs the permission. An allowed
cell answers 2xx and its change happens; a denied cell answers 403 naming the missing
permission (or the owners, or the viewer role), changes nothing, and leaves a
``denied`` audit event when it tried a change. ``GET /api/v1/identity/can`` must agree
for the actors whose token carries everything their user may do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from integration_support import component, write_docs
from test_cli import assert_one_line_error, cli_env, pave, running_server

from pavedroad.core import audit
from pavedroad.identity.policy import Role

PERMISSIONS = (
    READ := "catalog.entity.read",
    REFRESH := "catalog.entity.refresh",
    DELETE := "catalog.entity.delete",
    LOCATION_CREATE := "catalog.location.create",
    LOCATION_DELETE := "catalog.location.delete",
    USER_MANAGE := "identity.user.manage",
    SERVICE_TOKEN_MANAGE := "identity.service_token.manage",
    AUDIT_READ := "audit.read",
)
Y, N = True, False


def _row(*cells: bool) -> dict[str, bool]:
    assert len(cells) == len(PERMISSIONS)
    return dict(zip(PERMISSIONS, cells, strict=True))


# The specification. Columns, in PERMISSIONS order:
#   entity.read  entity.refresh  entity.delete  location.create  location.delete
#   user.manage  service_token.manage  audit.read
MATRIX: dict[str, dict[str, bool]] = {
    "admin": _row(Y, Y, Y, Y, Y, Y, Y, Y),
    "owner": _row(Y, Y, Y, Y, N, N, N, N),
    "owner-through-parent-group": _row(Y, Y, Y, Y, N, N, N, N),
    "non-owner": _row(Y, N, N, Y, N, N, N, N),
    "viewer-in-owning-team": _row(Y, N, N, N, N, N, N, N),  # viewers change nothing
    "service-token-of-owning-team": _row(Y, Y, Y, Y, N, N, N, N),
    "read-token-of-owner": _row(Y, N, N, N, N, N, N, N),
}

CHECKOUT = "group:default/checkout-team"
ENGINEERING = "group:default/engineering"
# The demo entity each owning group owns (what `pave can` is asked about).
DEMO_ENTITY = {CHECKOUT: "component:default/orders-service", ENGINEERING: "domain:default/commerce"}
RW = ("read", "write")


@dataclass(frozen=True)
class Actor:
    """Who calls, with which token, and which group owns the entity it tries to change."""

    who: str
    account: str | None  # None: a service token of ``group``
    role: Role | None
    scopes: tuple[str, ...]
    owner: str  # the owner of the entity this actor's entity permissions act on
    group: str | None = None

    @property
    def asks_as_user(self) -> bool:
        """Whether the token carries everything its user may do, so that the
        user-based decision (``/can``, ``pave can``) must agree with the cell."""
        return self.account is not None and set(self.scopes) >= {"read", "write"}


ACTORS: dict[str, Actor] = {
    "admin": Actor("root, an admin in no team", "root", Role.admin, (*RW, "admin"), CHECKOUT),
    "owner": Actor("bob, in checkout-team", "bob", Role.member, RW, CHECKOUT),
    "owner-through-parent-group": Actor(
        "kwame, in data-team and payments-team, both inside engineering",
        "kwame",
        Role.member,
        RW,
        ENGINEERING,
    ),
    "non-owner": Actor("dave, in catalog-team", "dave", Role.member, RW, CHECKOUT),
    "viewer-in-owning-team": Actor(
        "carol, a viewer in checkout-team", "carol", Role.viewer, RW, CHECKOUT
    ),
    "service-token-of-owning-team": Actor(
        "a service token of checkout-team", None, None, RW, CHECKOUT, group="checkout-team"
    ),
    "read-token-of-owner": Actor(
        "bob with a read-only token", "bob", Role.member, ("read",), CHECKOUT
    ),
}
assert set(ACTORS) == set(MATRIX)

V1 = "/api/v1/catalog"
BS = "/api/catalog"
SCRATCH_REF = "component:default/scratch"


@pytest.fixture
def database_seed() -> str:
    return "demo"


@pytest.fixture
def secured_app(make_app, make_settings):
    settings = make_settings()
    settings.auth.required = True
    app = make_app(settings)
    app.state.identity.create_account("root", Role.admin, None)
    return app


# -- through the API -------------------------------------------------------------------------


@dataclass
class World:
    """One actor's view of a secured portal with entities and locations to spend."""

    app: Any
    client: TestClient
    actor: Actor
    actor_name: str  # as the audit log names it
    headers: dict[str, str]
    admin: dict[str, str]
    scratch: Path  # the file of the entity the actor tries to refresh and delete
    scratch_uid: str
    doomed_location: str  # a location the actor tries to unregister
    new_location: Path  # a file the actor tries to register

    def entity(self, ref: str) -> dict[str, Any] | None:
        with self.app.state.catalog.reader() as reader:
            return reader.get_many([ref])[0]  # type: ignore[no-any-return]

    def locations(self) -> dict[str, str]:
        """Every location: id → target."""
        with self.app.state.catalog.reader() as reader:
            return {row.id: row.target for row in reader.locations()}

    def accounts(self) -> set[str]:
        return {a["name"] for a in self.app.state.identity.accounts()}

    def service_tokens(self) -> int:
        return len(self.app.state.identity.service_tokens())


def _world(app: Any, actor: Actor, folder: Path) -> World:
    identity = app.state.identity
    catalog = app.state.catalog
    if actor.account and actor.account != "root":
        identity.create_account(actor.account, actor.role or Role.member, None)
    if actor.group:
        info, secret = identity.create_token("root", "ci", list(actor.scopes), group=actor.group)
        name = f"token:{info['id']}"
    else:
        assert actor.account is not None
        _info, secret = identity.create_token(actor.account, "matrix", list(actor.scopes))
        name = actor.account
    _info, admin_secret = identity.create_token("root", "setup", ["read", "write", "admin"])
    scratch = write_docs(
        folder / "scratch.yaml", component("scratch", actor.owner, description="v1")
    )
    catalog.register_location("file", str(scratch))
    doomed = write_docs(folder / "doomed.yaml", component("doomed", actor.owner))
    doomed_location, _entities = catalog.register_location("file", str(doomed))
    new_location = write_docs(folder / "new.yaml", component("newcomer", actor.owner))
    with catalog.reader() as reader:
        scratch_uid = reader.get_many([SCRATCH_REF])[0]["metadata"]["uid"]
    return World(
        app=app,
        client=TestClient(app),
        actor=actor,
        actor_name=name,
        headers={"authorization": f"Bearer {secret}"},
        admin={"authorization": f"Bearer {admin_secret}"},
        scratch=scratch,
        scratch_uid=scratch_uid,
        doomed_location=doomed_location.id,
        new_location=new_location,
    )


@dataclass
class Attempt:
    """One request a permission needs, and whether its change took place (None: a read)."""

    response: Any
    happened: Callable[[], bool] | None = None


def _read(w: World) -> list[Attempt]:
    response = w.client.get(f"{V1}/entities/component/default/scratch", headers=w.headers)
    return [Attempt(response)]


def _refresh(w: World) -> list[Attempt]:
    write_docs(w.scratch, component("scratch", w.actor.owner, description="v2"))
    response = w.client.post(f"{V1}/refresh", json={"entityRef": SCRATCH_REF}, headers=w.headers)
    entity = w.entity(SCRATCH_REF)
    return [
        Attempt(response, lambda: entity is not None and entity["metadata"]["description"] == "v2")
    ]


def _delete(w: World) -> list[Attempt]:
    response = w.client.delete(f"{BS}/entities/by-uid/{w.scratch_uid}", headers=w.headers)
    return [Attempt(response, lambda: w.entity(SCRATCH_REF) is None)]


def _location_create(w: World) -> list[Attempt]:
    body = {"type": "file", "target": str(w.new_location)}
    response = w.client.post(f"{V1}/locations", json=body, headers=w.headers)
    return [
        Attempt(
            response,
            lambda: (
                str(w.new_location) in w.locations().values()
                and w.entity("component:default/newcomer") is not None
            ),
        )
    ]


def _location_delete(w: World) -> list[Attempt]:
    response = w.client.delete(f"{V1}/locations/{w.doomed_location}", headers=w.headers)
    return [
        Attempt(
            response,
            lambda: (
                w.doomed_location not in w.locations()
                and w.entity("component:default/doomed") is None
            ),
        )
    ]


def _user_manage(w: World) -> list[Attempt]:
    listed = w.client.get("/api/v1/identity/users", headers=w.headers)
    created = w.client.post(
        "/api/v1/identity/users", json={"name": "newbie", "role": "admin"}, headers=w.headers
    )
    return [Attempt(listed), Attempt(created, lambda: "newbie" in w.accounts())]


def _service_token_manage(w: World) -> list[Attempt]:
    before = w.service_tokens()
    listed = w.client.get("/api/v1/identity/service-tokens", headers=w.headers)
    body = {"name": "deploy-bot", "scopes": ["read", "write"], "group": "checkout-team"}
    created = w.client.post("/api/v1/identity/service-tokens", json=body, headers=w.headers)
    return [Attempt(listed), Attempt(created, lambda: w.service_tokens() == before + 1)]


def _audit_read(w: World) -> list[Attempt]:
    return [Attempt(w.client.get("/api/v1/audit", headers=w.headers))]


# The requests that need each permission, in an order where no attempt spends what a
# later one needs (refresh before delete).
ATTEMPTS: dict[str, Callable[[World], list[Attempt]]] = {
    READ: _read,
    REFRESH: _refresh,
    DELETE: _delete,
    LOCATION_CREATE: _location_create,
    LOCATION_DELETE: _location_delete,
    USER_MANAGE: _user_manage,
    SERVICE_TOKEN_MANAGE: _service_token_manage,
    AUDIT_READ: _audit_read,
}
assert tuple(ATTEMPTS) == PERMISSIONS


def _denial_words(actor: Actor, permission: str, method: str) -> list[str]:
    """What a refusal's message must name (any one of them)."""
    if "write" not in actor.scopes and method != "GET":
        return ["read scope"]  # refused before the route: the token cannot write at all
    if permission in (REFRESH, DELETE, LOCATION_CREATE) and actor.role is Role.viewer:
        return ["viewer"]
    if permission in (REFRESH, DELETE):
        return [actor.owner]
    return [permission]


def _check_allowed(attempt: Attempt) -> None:
    response = attempt.response
    assert 200 <= response.status_code < 300, (response.status_code, response.text)
    if attempt.happened is not None:
        assert attempt.happened(), "answered 2xx but the change did not happen"


def _check_denied(w: World, permission: str, attempt: Attempt) -> None:
    response = attempt.response
    method = response.request.method
    assert response.status_code == 403, (response.status_code, response.text)
    if response.request.url.path.startswith(BS):
        body = response.json()
        assert body["error"]["name"] == "NotAllowedError", body
        message = body["error"]["message"]
    else:
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        message = body["detail"]
        if "permission" in body:  # refused by the policy (not by the token's scope)
            assert body["permission"] == permission, body
            if permission in (REFRESH, DELETE):
                assert body["owners"] == [w.actor.owner], body
    words = _denial_words(w.actor, permission, method)
    assert any(word in message for word in words), (words, message)
    if attempt.happened is not None:
        assert not attempt.happened(), "refused, yet the change happened"
    if method != "GET":
        request_id = response.headers["x-request-id"]
        events = [
            e
            for e in audit.search(w.app.state.db, outcome="denied", limit=1000)
            if e["requestId"] == request_id
        ]
        assert len(events) == 1, f"no single denied audit event for {method} {response.url}"
        assert events[0]["actor"] == w.actor_name and events[0]["status"] == 403, events[0]


@pytest.mark.parametrize("name", list(MATRIX))
def test_the_api_follows_the_matrix(secured_app, tmp_path, name):
    actor = ACTORS[name]
    w = _world(secured_app, actor, tmp_path / "files")
    wrong = _explained_decisions_that_disagree(w, name) if actor.asks_as_user else []
    for permission in PERMISSIONS:
        allowed = MATRIX[name][permission]
        for attempt in ATTEMPTS[permission](w):
            request = attempt.response.request
            try:
                if allowed:
                    _check_allowed(attempt)
                else:
                    _check_denied(w, permission, attempt)
            except AssertionError as exc:
                verdict = "allowed" if allowed else "denied"
                wrong.append(
                    f"{permission} ({request.method} {request.url.path}): {verdict}? {exc}"
                )
    assert not wrong, f"{name} ({actor.who}):\n" + "\n".join(wrong)


def _explained_decisions_that_disagree(w: World, name: str) -> list[str]:
    """``GET /api/v1/identity/can`` for the actor's user, asked before anything changes."""
    wrong = []
    for permission in PERMISSIONS:
        params = {"user": str(w.actor.account), "permission": permission}
        if permission in (READ, REFRESH, DELETE):
            params["entity"] = SCRATCH_REF
        response = w.client.get("/api/v1/identity/can", params=params, headers=w.admin)
        assert response.status_code == 200, response.text
        if response.json()["allowed"] is not MATRIX[name][permission]:
            wrong.append(f"/can disagrees on {permission}: {response.json()}")
    return wrong


# -- through the CLI ---------------------------------------------------------------------------

USER_ACTORS = [name for name, actor in ACTORS.items() if actor.asks_as_user]


# What `pave can` must explain, beyond "allowed"/"denied".
CLI_REASONS = {
    ("admin", REFRESH): "root is an admin; admins may do everything",
    ("admin", USER_MANAGE): "root is an admin; admins may do everything",
    ("owner", REFRESH): "bob owns component:default/orders-service as a member of " + CHECKOUT,
    ("owner-through-parent-group", REFRESH): "kwame owns domain:default/commerce as a member of "
    + ENGINEERING,
    ("non-owner", REFRESH): f"owned by {CHECKOUT}; dave is not a member of an owning group",
    ("viewer-in-owning-team", REFRESH): "carol is a viewer; viewers cannot change anything",
}


# Each `pave can` is a subprocess of about a second: SQLite only, two cells per actor.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", USER_ACTORS)
def test_pave_can_follows_the_matrix(secured_app, database_url, tmp_path, name):
    """`pave can USER PERMISSION ENTITY` on the configured database: exit 0 "allowed: ..."
    or exit 1 "denied: ...", for the actor's ownership cell and an admin-only cell."""
    actor = ACTORS[name]
    if actor.account != "root":
        secured_app.state.identity.create_account(str(actor.account), actor.role or Role.member)
    env = cli_env(tmp_path / "cli-home") | {"PAVEDROAD_DATABASE_URL": database_url}
    for permission, entity in ((REFRESH, DEMO_ENTITY[actor.owner]), (USER_MANAGE, None)):
        args = ["can", str(actor.account), permission, *([entity] if entity else [])]
        result = pave(*args, env=env, cwd=tmp_path)
        allowed = MATRIX[name][permission]
        assert result.returncode == (0 if allowed else 1), (permission, result)
        assert "Traceback" not in result.stderr
        verdict = "allowed" if allowed else "denied"
        reason = CLI_REASONS.get((name, permission), f"{USER_MANAGE} is for admins only")
        assert result.stdout.startswith(f"{verdict}: "), result.stdout
        assert reason in result.stdout, result.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # a real server: once
def test_pave_catalog_refresh_with_a_token_follows_ownership(secured_app, database_url, tmp_path):
    """`pave catalog refresh` against a `pave server` that requires sign-in: bob's token
    may refresh his team's orders-service; dave's is refused, naming the owners."""
    identity = secured_app.state.identity
    tokens = {}
    for user in ("bob", "dave"):
        identity.create_account(user, Role.member, None)
        tokens[user] = identity.create_token(user, "cli", ["read", "write"])[1]
    home = tmp_path / "server-home"
    env = cli_env(home) | {
        "PAVEDROAD_AUTH__REQUIRED": "true",
        "PAVEDROAD_DATABASE_URL": database_url,
    }
    with running_server(home, env) as url:
        client = cli_env(tmp_path / "client", url) | {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
        refresh = ("catalog", "refresh", "component:orders-service")
        as_bob = pave(*refresh, env=client | {"PAVEDROAD_TOKEN": tokens["bob"]}, cwd=tmp_path)
        assert as_bob.returncode == 0, as_bob.stderr
        assert as_bob.stdout.startswith("refreshed 1 source(s)"), as_bob.stdout
        as_dave = pave(*refresh, env=client | {"PAVEDROAD_TOKEN": tokens["dave"]}, cwd=tmp_path)
        assert_one_line_error(as_dave, REFRESH, CHECKOUT, "dave is not a member", "HTTP 403")
    events = audit.search(secured_app.state.db, action=REFRESH)
    assert [(e["actor"], e["outcome"]) for e in events] == [("dave", "denied"), ("bob", "success")]
