"""The first `pave up`: there is always someone who can sign in, and it says how."""

from __future__ import annotations

import re
import stat

import httpx
from integration_support import csrf_in, sign_in
from test_cli import cli_env, running_server

from pavedroad.core import audit
from pavedroad.core.db import Database

LINK = re.compile(r"(http://\S+/sign-in/link/\S+)")


def _sign_in(url: str, name: str, password: str) -> httpx.Response:
    browser = httpx.Client(base_url=url, timeout=30, follow_redirects=True)
    answer = sign_in(browser, name, password)
    return browser.get(answer.headers["location"]) if answer.status_code == 303 else answer


def _events(home) -> list[dict]:
    db = Database(f"sqlite:///{home / 'pavedroad.db'}")
    try:
        return audit.search(db, actor="system:first-start")
    finally:
        db.dispose()


def test_the_first_start_prints_a_one_time_link_for_the_admin(tmp_path):
    home = tmp_path / "home"
    env = cli_env(home)
    with running_server(home, env, ("up",)) as url:
        links = LINK.findall((home / "server.log").read_text())
        assert len(links) == 1 and links[0].startswith(url)
        browser = httpx.Client(timeout=30, follow_redirects=True)
        anonymous = browser.get(f"{url}/catalog", follow_redirects=False)
        assert anonymous.status_code == 303  # sign-in is required by default
        page = browser.get(links[0])
        assert "one-time link" in page.text
        used = browser.post(links[0], data={"csrf_token": csrf_in(page.text)})
        assert str(used.url).endswith("/settings")
        me = browser.get(f"{url}/api/v1/identity/me").json()
        assert (me["name"], me["role"]) == ("admin", "admin")
        again = httpx.Client(timeout=30, follow_redirects=True)
        page = again.get(links[0])
        spent = again.post(links[0], data={"csrf_token": csrf_in(page.text)})
        assert spent.status_code == 401 and "not valid" in spent.text
    # Once the admin has signed in, later starts print no link.
    with running_server(home, env, ("up",)):
        assert not LINK.search((home / "server.log").read_text())
    assert [(e["action"], e["target"]) for e in _events(home)] == [
        ("identity.user.create", "user:admin")
    ]


def test_the_admin_password_can_come_from_the_environment(tmp_path):
    home = tmp_path / "home"
    env = cli_env(home) | {"PAVEDROAD_ADMIN_PASSWORD": "first admin password"}
    with running_server(home, env, ("up",)) as url:
        assert not LINK.search((home / "server.log").read_text())
        assert _sign_in(url, "admin", "wrong password!").status_code == 401
        signed_in = _sign_in(url, "admin", "first admin password")
        assert signed_in.status_code == 200 and str(signed_in.url) == f"{url}/"


def test_the_demo_prints_passwords_that_work_and_keeps_them(tmp_path):
    home = tmp_path / "home"
    env = cli_env(home)
    with running_server(home, env, ("up", "--demo")) as url:
        output = (home / "server.log").read_text()
        accounts = dict(re.findall(r"^\s+(\w+)\s+(?:admin|member|viewer)\s+(\S+)$", output, re.M))
        assert len(accounts) == 12 and "Demo accounts" in output
        assert re.search(r"^\s+alice\s+admin\s", output, re.M)
        assert re.search(r"^\s+liam\s+viewer\s", output, re.M)
        assert not LINK.search(output)  # alice is an admin with a password
        assert _sign_in(url, "bob", accounts["bob"]).status_code == 200
    kept = home / "demo-accounts.txt"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    with running_server(home, env, ("up", "--demo")):
        again = dict(
            re.findall(
                r"^\s+(\w+)\s+(?:admin|member|viewer)\s+(\S+)$",
                (home / "server.log").read_text(),
                re.M,
            )
        )
    assert again == accounts  # the same passwords on every start
    assert len(_events(home)) == 12
