"""`pave login` through the browser: the CLI shows a code, a signed-in user approves it
at /device, and the CLI receives a new token of that user, once."""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest
from fastapi.testclient import TestClient
from integration_support import csrf_in, sign_in
from sqlalchemy import update
from test_cli import PAVE, cli_env, pave, running_server

from pavedroad.core import audit
from pavedroad.core.timeutil import utcnow
from pavedroad.identity.device import DeviceGrantRow
from pavedroad.identity.policy import Role

PASSWORD = "a long enough password"


@pytest.fixture
def database_seed() -> str:
    return "demo"


@pytest.fixture
def secured(make_app, make_settings):
    settings = make_settings()
    settings.auth.required = True
    app = make_app(settings)
    app.state.identity.create_account("bob", Role.member, PASSWORD)
    return app


def signed_in(client, name: str, password: str = PASSWORD) -> None:
    done = sign_in(client, name, password)
    assert done.status_code == 303, done.text


def decide(client, code: str, decision: str) -> httpx.Response:
    page = client.get("/device", params={"code": code})
    assert page.status_code == 200
    token = csrf_in(page.text)
    return client.post("/device", data={"code": code, "decision": decision, "csrf_token": token})


def start(client) -> dict:
    started = client.post("/api/v1/identity/device", json={"clientName": "pave CLI on test"})
    assert started.status_code == 201, started.text
    return started.json()


def poll(client, grant: dict) -> httpx.Response:
    return client.post("/api/v1/identity/device/token", json={"deviceCode": grant["deviceCode"]})


def test_an_approved_code_gives_the_cli_a_token_once(secured):
    cli, browser = TestClient(secured), TestClient(secured)
    grant = start(cli)
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", grant["userCode"])
    assert grant["verificationUriComplete"].endswith(f"/device?code={grant['userCode']}")
    assert poll(cli, grant).status_code == 400  # pending

    signed_out = browser.get(f"/device?code={grant['userCode']}", follow_redirects=False)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/sign-in?next=%2Fdevice")
    signed_in(browser, "bob")
    page = browser.get("/device", params={"code": grant["userCode"].lower().replace("-", "")})
    assert grant["userCode"] in page.text and "pave CLI on test" in page.text
    approved = decide(browser, grant["userCode"], "approve")
    assert "now signed in as bob" in approved.text

    answer = poll(cli, grant)
    assert answer.status_code == 200, answer.text
    secret = answer.json()["secret"]
    me = cli.get("/api/v1/identity/me", headers={"authorization": f"Bearer {secret}"})
    assert me.json()["name"] == "bob" and me.json()["scopes"] == ["read", "write"]
    assert [t["name"] for t in secured.state.identity.tokens("bob")] == ["pave CLI on test"]

    again = poll(cli, grant)
    assert again.status_code == 403 and "used already" in again.json()["detail"]
    assert decide(browser, grant["userCode"], "approve").status_code == 404  # decided
    events = audit.search(secured.state.db, action="identity.device.*")
    assert {(e["action"], e["outcome"]) for e in events} >= {
        ("identity.device.decide", "success"),
        ("identity.device.redeem", "success"),
        ("identity.device.redeem", "denied"),
    }


def test_denied_expired_and_unknown_codes_give_nothing(secured):
    cli, browser = TestClient(secured), TestClient(secured)
    signed_in(browser, "bob")

    denied = start(cli)
    assert "was not signed in" in decide(browser, denied["userCode"], "deny").text
    refused = poll(cli, denied)
    assert refused.status_code == 403 and "denied" in refused.json()["detail"]

    expired = start(cli)
    with secured.state.db.session() as session:  # ten minutes pass
        session.execute(update(DeviceGrantRow).values(expires_at=utcnow()))
    assert poll(cli, expired).status_code == 410
    page = browser.get("/device", params={"code": expired["userCode"]})
    assert "no waiting sign-in" in page.text

    assert poll(cli, {"deviceCode": "forged"}).status_code == 403
    no_csrf = browser.post("/device", data={"code": "ABCD-EFGH", "decision": "approve"})
    assert no_csrf.status_code == 403
    assert secured.state.identity.tokens("bob") == []


def test_pave_login_waits_for_the_browser(tmp_path_factory, tmp_path):
    home = tmp_path_factory.mktemp("device-home")
    env = cli_env(home) | {"PAVEDROAD_AUTH__REQUIRED": "true"}
    created = subprocess.run(
        [str(PAVE), "user", "create", "carol", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    with running_server(home, env) as url:
        client_env = cli_env(tmp_path / "client") | {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
        login = subprocess.Popen(
            [str(PAVE), "login", url, "--device", "--no-browser"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=client_env,
            cwd=tmp_path,
        )
        try:
            assert login.stdout is not None
            first = login.stdout.readline()
            link = re.search(r"(http://\S+/device\?code=(\S+))", first)
            assert link, first
            browser = httpx.Client(base_url=url, timeout=30)
            signed_in(browser, "carol")
            assert "now signed in as carol" in decide(browser, link.group(2), "approve").text
            out, err = login.communicate(timeout=60)
        finally:
            if login.poll() is None:
                login.kill()
        assert login.returncode == 0, err
        assert f"signed in to {url} as carol (member)" in out
        whoami = pave("whoami", env=client_env, cwd=tmp_path)
        assert whoami.stdout.startswith("carol (member)"), whoami.stderr
