"""`pave secret ...` as a user runs it, against a real `pave server` that requires
sign-in; and `pave secrets rotate-master-key` while that server keeps serving."""

from __future__ import annotations

import stat
import subprocess

import pytest
from test_cli import DEMO_ROOT, PAVE, assert_one_line_error, cli_env, pave, running_server

ORDERS = ("--entity", "component:orders-service", "--env", "staging")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A server with the demo catalog; bob owns orders-service, dave does not."""
    home = tmp_path_factory.mktemp("secrets-home")
    env = cli_env(home) | {"PAVEDROAD_AUTH__REQUIRED": "true"}
    tokens = {}
    for name in ("bob", "dave"):
        assert pave("user", "create", name, "--no-password", env=env, cwd=home).returncode == 0
        created = pave("token", "create", "cli", "--user", name, env=env, cwd=home)
        tokens[name] = created.stdout.strip().splitlines()[-1]
    with running_server(home, env) as url:
        as_bob = env | {"PAVEDROAD_URL": url, "PAVEDROAD_TOKEN": tokens["bob"]}
        registered = pave("catalog", "register", str(DEMO_ROOT), env=as_bob, cwd=home)
        assert registered.returncode == 0, registered.stderr
        yield home, env, url, tokens


def _as(secured, user):
    _home, env, url, tokens = secured
    return env | {"PAVEDROAD_URL": url, "PAVEDROAD_TOKEN": tokens[user]}


def _pave(secured, user, *args, stdin=None):
    home = secured[0]
    return subprocess.run(
        [str(PAVE), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_as(secured, user),
        cwd=home,
        timeout=60,
    )


def test_set_get_history_rollback_delete_restore(secured, tmp_path):
    done = _pave(secured, "bob", "secret", "set", "DB_PASSWORD", *ORDERS, stdin="s3cret-one\n")
    assert done.returncode == 0, done.stderr
    assert (
        "DB_PASSWORD (component:default/orders-service in staging) is at version 1" in done.stdout
    )
    assert "s3cret-one" not in done.stdout + done.stderr
    value = tmp_path / "value.txt"
    value.write_text("line one\nline two\n")
    assert (
        _pave(
            secured, "bob", "secret", "set", "DB_PASSWORD", *ORDERS, "--file", str(value)
        ).returncode
        == 0
    )
    got = _pave(secured, "bob", "secret", "get", "DB_PASSWORD", *ORDERS)
    assert got.stdout == "line one\nline two\n\n"  # the value, then a newline
    first = _pave(secured, "bob", "secret", "get", "DB_PASSWORD", *ORDERS, "--version", "1")
    assert first.stdout == "s3cret-one\n"

    stale = _pave(
        secured,
        "bob",
        "secret",
        "set",
        "DB_PASSWORD",
        *ORDERS,
        "--expected-version",
        "1",
        "--value",
        "late",
    )
    assert_one_line_error(stale, "is at version 2, not 1", "HTTP 409")

    rolled = _pave(secured, "bob", "secret", "rollback", "DB_PASSWORD", "1", *ORDERS)
    assert "version 3" in rolled.stdout
    history = _pave(secured, "bob", "secret", "history", "DB_PASSWORD", *ORDERS)
    assert [line.split()[:2] for line in history.stdout.splitlines()[1:]] == [
        ["3", "rollback"],
        ["2", "set"],
        ["1", "set"],
    ]
    assert "s3cret-one" not in history.stdout

    assert _pave(secured, "bob", "secret", "delete", "DB_PASSWORD", *ORDERS).returncode == 0
    gone = _pave(secured, "bob", "secret", "get", "DB_PASSWORD", *ORDERS)
    assert_one_line_error(gone, "is deleted", "HTTP 404")
    listed = _pave(secured, "bob", "secret", "list", "--entity", "orders-service", "--deleted")
    assert "deleted" in listed.stdout
    assert _pave(secured, "bob", "secret", "restore", "DB_PASSWORD", *ORDERS).returncode == 0
    assert _pave(secured, "bob", "secret", "get", "DB_PASSWORD", *ORDERS).stdout == "s3cret-one\n"


def test_generated_secrets_rotate_and_are_never_printed_on_creation(secured):
    made = _pave(
        secured,
        "bob",
        "secret",
        "generate",
        "API_KEY",
        *ORDERS,
        "--length",
        "48",
        "--alphabet",
        "hex",
        "--rotate-every",
        "30d",
    )
    assert made.returncode == 0 and "rotates every 30d" in made.stdout
    first = _pave(secured, "bob", "secret", "get", "API_KEY", *ORDERS).stdout.strip()
    assert len(first) == 48 and set(first) <= set("0123456789abcdef")
    assert first not in made.stdout
    assert "rotated" in _pave(secured, "bob", "secret", "rotate", "API_KEY", *ORDERS).stdout
    second = _pave(secured, "bob", "secret", "get", "API_KEY", *ORDERS).stdout.strip()
    assert second != first and len(second) == 48


def test_refusals_are_one_clear_line(secured):
    _pave(secured, "bob", "secret", "set", "TEAM_ONLY", *ORDERS, "--value", "checkout-eyes-only")
    denied = _pave(secured, "dave", "secret", "get", "TEAM_ONLY", *ORDERS)
    assert_one_line_error(denied, "secret.read", "checkout-team", "HTTP 403")
    assert "checkout-eyes-only" not in denied.stdout + denied.stderr
    for bad in ("a/b", "../../etc/passwd", "bad\nname", "x" * 200):
        assert_one_line_error(
            _pave(secured, "bob", "secret", "set", bad, *ORDERS, "--value", "v"),
            "not a valid secret name",
        )
    big = _pave(secured, "bob", "secret", "set", "BIG", *ORDERS, stdin="x" * (65 * 1024))
    assert_one_line_error(big, "at most 65536 bytes", "HTTP 413")
    both = _pave(secured, "bob", "secret", "set", "X1", *ORDERS, "--value", "a", "--file", "/x")
    assert_one_line_error(both, "not both")


def test_the_master_key_rotates_while_the_server_serves(secured):
    home = secured[0]
    _pave(secured, "bob", "secret", "set", "BEFORE_ROTATION", *ORDERS, "--value", "still-here")
    old_key = (home / "master.key").read_text()
    rotated = pave("secrets", "rotate-master-key", env=secured[1], cwd=home)
    assert rotated.returncode == 0, rotated.stderr
    assert "re-sealed" in rotated.stdout
    assert (home / "master.key").read_text() != old_key
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    assert len(list((home / "keys").glob("*.key"))) == 2  # the old key is kept
    # The running server was never told: it finds the new key when it meets its id.
    got = _pave(secured, "bob", "secret", "get", "BEFORE_ROTATION", *ORDERS)
    assert got.stdout == "still-here\n", got.stderr
