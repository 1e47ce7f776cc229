"""`pave login`, `whoami` and `logout` against a real `pave server` that requires tokens."""

from __future__ import annotations

import stat
import subprocess

import pytest
from test_cli import PAVE, assert_one_line_error, cli_env, pave, running_server


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory):
    """``pave server`` with auth.required, and a member account with a token."""
    home = tmp_path_factory.mktemp("secured-home")
    env = cli_env(home) | {"PAVEDROAD_AUTH__REQUIRED": "true"}
    created = pave("user", "create", "bob", "--no-password", env=env, cwd=home)
    assert created.returncode == 0, created.stderr
    token = pave("token", "create", "cli", "--user", "bob", env=env, cwd=home)
    assert token.returncode == 0, token.stderr
    with running_server(home, env) as url:
        yield url, token.stdout.strip().splitlines()[-1]


def test_login_whoami_logout(secured_server, tmp_path):
    url, token = secured_server
    env = cli_env(tmp_path / "client") | {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    cwd = tmp_path

    refused = pave("catalog", "list", "--server", url, env=env, cwd=cwd)
    assert_one_line_error(refused, "sign in", "HTTP 401")

    wrong = subprocess.run(
        [str(PAVE), "login", url, "--token-stdin"],
        input="pvd_nope\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    assert_one_line_error(wrong, "did not accept this token")
    stored = tmp_path / "config" / "pavedroad" / "credentials.json"
    assert not stored.exists()

    login = subprocess.run(
        [str(PAVE), "login", url, "--token-stdin"],
        input=token + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    assert login.returncode == 0, login.stderr
    assert f"signed in to {url} as bob (member)" in login.stdout
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert token not in login.stdout

    whoami = pave("whoami", env=env, cwd=cwd)
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout.strip() == "bob (member), scopes read, write"
    listed = pave("catalog", "list", env=env, cwd=cwd)
    assert listed.returncode == 0, listed.stderr

    out = pave("logout", env=env, cwd=cwd)
    assert out.stdout.strip() == "signed out" and not stored.exists()
    assert_one_line_error(pave("whoami", "--server", url, env=env, cwd=cwd), "HTTP 401")


def test_local_account_commands_are_audited(tmp_path):
    from pavedroad.core import audit
    from pavedroad.core.db import Database

    home = tmp_path / "home"
    env = cli_env(home)
    assert pave("user", "create", "zoe", "--no-password", env=env, cwd=tmp_path).returncode == 0
    assert pave("user", "role", "zoe", "viewer", env=env, cwd=tmp_path).returncode == 0
    created = pave("token", "create", "ci", "--user", "zoe", env=env, cwd=tmp_path)
    token_id = created.stdout.split()[2]
    assert pave("token", "revoke", token_id, env=env, cwd=tmp_path).returncode == 0
    twice = pave("user", "create", "zoe", "--no-password", env=env, cwd=tmp_path)
    assert_one_line_error(twice, "already exists")

    db = Database(f"sqlite:///{home / 'pavedroad.db'}")
    try:
        events = list(reversed(audit.search(db)))
    finally:
        db.dispose()
    assert [(e["action"], e["target"], e["outcome"]) for e in events] == [
        ("identity.user.create", "user:zoe", "success"),
        ("identity.user.update", "user:zoe role=viewer", "success"),
        ("identity.token.create", "user:zoe", "success"),
        ("identity.token.revoke", f"token_id={token_id}", "success"),
        ("identity.user.create", "user:zoe", "failure"),
    ]
    assert all(e["actor"].startswith("local:") and e["sourceIp"] == "local" for e in events)
    assert all(created.stdout.splitlines()[-1] not in str(e) for e in events)
