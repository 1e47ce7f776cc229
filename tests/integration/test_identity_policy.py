"""The access policy's permission matrix, through the service, the API and the CLI.

Ownership follows the demo organisation: ``orders-service`` is owned by
``checkout-team`` (bob and carol), a team inside ``engineering``, which owns the
``commerce`` domain; alice is in ``platform-team``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pavedroad.identity.policy import Role

ORDERS = "component:default/orders-service"
COMMERCE = "domain:default/commerce"


@pytest.fixture
def database_seed() -> str:
    return "demo"


@pytest.fixture
def identity(app):
    service = app.state.identity
    service.create_account("root", Role.admin, "a long enough password")
    service.create_account("vera", Role.viewer, "a long enough password")
    service.create_account("carol", Role.viewer, None)  # a viewer even inside the owning team
    return service


# (who, permission, entity, allowed, words the reason contains)
MATRIX = [
    ("root", "catalog.entity.delete", ORDERS, True, "admin"),
    ("root", "catalog.location.delete", None, True, "admin"),
    ("bob", "catalog.entity.delete", ORDERS, True, "member of group:default/checkout-team"),
    ("bob", "catalog.entity.refresh", ORDERS, True, "owns"),
    ("bob", "catalog.entity.delete", COMMERCE, True, "member of group:default/engineering"),
    ("alice", "catalog.entity.delete", ORDERS, False, "owned by group:default/checkout-team"),
    ("alice", "catalog.entity.read", ORDERS, True, "every signed-in user"),
    ("alice", "catalog.location.create", None, True, "every member"),
    ("alice", "catalog.location.delete", None, False, "admins only"),
    ("vera", "catalog.entity.read", ORDERS, True, "every signed-in user"),
    ("vera", "catalog.entity.delete", ORDERS, False, "viewer"),
    ("vera", "catalog.location.create", None, False, "viewer"),
    ("carol", "catalog.entity.delete", ORDERS, False, "viewer"),
    ("bob", "identity.user.manage", None, False, "admins only"),
]


@pytest.mark.parametrize(("who", "permission", "entity", "allowed", "words"), MATRIX)
def test_permission_matrix(identity, client, who, permission, entity, allowed, words):
    decision = identity.can(who, permission, entity)
    assert decision.allowed is allowed
    assert words in decision.reason
    params = {"user": who, "permission": permission}
    if entity:
        params["entity"] = entity
    body = client.get("/api/v1/identity/can", params=params).json()
    assert body["allowed"] is allowed and words in body["reason"]


def test_ownership_through_parent_groups(identity):
    decision = identity.can("bob", "catalog.entity.delete", COMMERCE)
    assert decision.owners == ["group:default/engineering"]
    assert decision.groups[:1] == ["group:default/checkout-team"]
    assert "group:default/engineering" in decision.groups
    assert "group:default/acme" in decision.groups


def test_bad_questions_are_clear_errors(identity, client):
    response = client.get("/api/v1/identity/can", params={"user": "bob", "permission": "x.y"})
    assert response.status_code == 400 and "unknown permission" in response.json()["detail"]
    response = client.get(
        "/api/v1/identity/can", params={"user": "nobody", "permission": "catalog.entity.read"}
    )
    assert response.status_code == 404
    response = client.get(
        "/api/v1/identity/can", params={"user": "bob", "permission": "catalog.entity.delete"}
    )
    assert response.status_code == 400 and "name one" in response.json()["detail"]
    decision = identity.can("bob", "catalog.entity.delete", "component:does-not-exist")
    assert not decision.allowed and "no entity" in decision.reason


def test_accounts_refuse_bad_input(identity):
    from pavedroad.core.errors import ConflictError, InputError

    with pytest.raises(InputError, match="at least"):
        identity.create_account("dave", Role.member, "short")
    with pytest.raises(InputError, match="not a valid user name"):
        identity.create_account("../etc", Role.member, "a long enough password")
    with pytest.raises(ConflictError):
        identity.create_account("ROOT", Role.member, None)
    assert identity.verify_password("root", "a long enough password")
    assert not identity.verify_password("root", "a long enough passwore")
    assert not identity.verify_password("ghost", "a long enough password")
    names = [a["name"] for a in identity.accounts()]
    assert names == ["carol", "root", "vera"]
    assert [a["inCatalog"] for a in identity.accounts()] == [True, False, False]


def test_permissions_are_listed(client):
    names = {p["name"]: p["scope"] for p in client.get("/api/v1/identity/permissions").json()}
    assert names["catalog.entity.delete"] == "owner"
    assert names["identity.user.manage"] == "admin"


def _pave(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    pave = Path(sys.executable).with_name("pave")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAVEDROAD_")}
    env["PAVEDROAD_HOME"] = str(home)
    env["PAVEDROAD_CONFIG"] = str(home / "none.yaml")
    return subprocess.run(
        [str(pave), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_accounts_and_decisions(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "none.yaml").write_text("")
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo" / "catalog-info.yaml"
    script = (
        "from pavedroad.app import create_app; from pavedroad.settings import Settings; "
        f"create_app(Settings(home={str(home)!r})).state.catalog.register_location('file', "
        f"{str(demo)!r})"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAVEDROAD_")}
    env["PAVEDROAD_CONFIG"] = str(home / "none.yaml")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)

    created = _pave(home, "user", "create", "root", "--admin", stdin="a long enough password\n")
    assert created.returncode == 0, created.stderr
    assert "created admin account root" in created.stdout
    short = _pave(home, "user", "create", "dave", stdin="short\n")
    assert short.returncode == 2 and short.stderr.startswith("error: ")
    assert "Traceback" not in short.stderr
    listed = _pave(home, "user", "list")
    assert "root" in listed.stdout and "admin" in listed.stdout

    allowed = _pave(home, "can", "bob", "catalog.entity.delete", "orders-service")
    assert allowed.returncode == 0
    assert allowed.stdout.startswith("allowed: bob owns component:default/orders-service")
    denied = _pave(home, "can", "alice", "catalog.entity.delete", "orders-service")
    assert denied.returncode == 1 and denied.stdout.startswith("denied: ")
    unknown = _pave(home, "can", "alice", "no.such", "orders-service")
    assert unknown.returncode == 2 and "unknown permission" in unknown.stderr
