"""Hosted repositories with real git: clone and push over smart HTTP against a real
`pave server` that requires sign-in, push events through the hook's spool, and the
repository API's refusals."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from test_cli import DEMO_ROOT, cli_env, pave, running_server

from pavedroad.core import audit, events
from pavedroad.identity.policy import Role


def run_git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"},
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def commit_file(work: Path, name: str, text: str, message: str) -> None:
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(text)
    run_git("add", ".", cwd=work)
    run_git(
        "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", message, cwd=work
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`pave server` with the demo catalog; bob (checkout-team) and dave have tokens;
    bob's repository checkout-team/orders exists. Accounts, tokens and the catalog are
    made in this process first (quicker than a `pave` command each)."""
    from pavedroad.app import create_app
    from pavedroad.settings import AuthSettings, Settings

    home = tmp_path_factory.mktemp("git-home")
    env = cli_env(home) | {
        "PAVEDROAD_AUTH__REQUIRED": "true",
        "PAVEDROAD_GIT__MAX_PUSH_BYTES": "65536",
    }
    app = create_app(
        Settings(
            home=home,
            database_url=f"sqlite:///{home / 'pavedroad.db'}",
            auth=AuthSettings(required=True),
        )
    )
    try:
        app.state.catalog.register_location("file", str(DEMO_ROOT))
        identity = app.state.identity
        identity.create_account("bob", Role.member)
        identity.create_account("dave", Role.member)
        tokens = {
            key: identity.create_token(name, "git", scopes)[1]
            for key, name, scopes in (
                ("bob:read+write", "bob", ["read", "write"]),
                ("dave:read+write", "dave", ["read", "write"]),
                ("bob:read", "bob", ["read"]),
            )
        }
    finally:
        app.state.db.dispose()
    with running_server(home, env) as url:
        as_bob = env | {"PAVEDROAD_URL": url, "PAVEDROAD_TOKEN": tokens["bob:read+write"]}
        created = pave(
            "repo", "create", "checkout-team/orders", "-d", "Orders", env=as_bob, cwd=home
        )
        assert created.returncode == 0, created.stderr
        assert f"git clone {url}/git/checkout-team/orders.git" in created.stdout
        yield url, home, tokens


def _remote(url: str, token: str | None) -> str:
    host = url.removeprefix("http://")
    auth = f"x:{token}@" if token else ""
    return f"http://{auth}{host}/git/checkout-team/orders.git"


def _pushes(url: str, token: str) -> list[dict]:
    answer = httpx.get(
        f"{url}/api/v1/git/repos/checkout-team/orders/pushes",
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_owners_push_and_everyone_signed_in_clones(server, tmp_path):
    url, _home, tokens = server
    bob, dave = tokens["bob:read+write"], tokens["dave:read+write"]
    work = tmp_path / "bob"
    run_git("clone", "-q", _remote(url, bob), str(work), cwd=tmp_path)
    commit_file(work, "README.md", "# Orders\n", "first")
    commit_file(work, "src/app.py", "print('hi')\n", "code")
    pushed = run_git("push", "origin", "main", cwd=work)
    assert "main -> main" in pushed.stderr
    head = run_git("rev-parse", "HEAD", cwd=work).stdout.strip()

    pushes = _pushes(url, bob)
    assert pushes[0]["ref"] == "refs/heads/main" and pushes[0]["after"] == head
    assert pushes[0]["pusher"] == "bob" and pushes[0]["source"] == "hosted"

    copy = tmp_path / "dave"
    run_git("clone", "-q", _remote(url, dave), str(copy), cwd=tmp_path)  # reading is open
    assert (copy / "src" / "app.py").read_text() == "print('hi')\n"
    commit_file(copy, "README.md", "# Dave was here\n", "not my team")
    refused = run_git("push", "origin", "main", cwd=copy, check=False)
    assert refused.returncode != 0
    assert "git.repo.push needs membership of group:default/checkout-team" in refused.stderr
    assert "403" in refused.stderr

    read_only = run_git("push", _remote(url, tokens["bob:read"]), "main", cwd=copy, check=False)
    assert read_only.returncode != 0 and "write scope" in read_only.stderr

    check = tmp_path / "check"
    run_git("clone", "-q", _remote(url, bob), str(check), cwd=tmp_path)
    assert run_git("rev-parse", "HEAD", cwd=check).stdout.strip() == head  # nothing changed
    assert len(_pushes(url, bob)) == 1


def test_git_without_credentials_is_asked_for_them(server, tmp_path):
    url, _home, tokens = server
    anonymous = run_git(
        "clone", "-q", _remote(url, None), str(tmp_path / "a"), cwd=tmp_path, check=False
    )
    assert anonymous.returncode != 0 and "could not read Username" in anonymous.stderr
    challenge = httpx.get(f"{url}/git/checkout-team/orders.git/info/refs?service=git-upload-pack")
    assert challenge.status_code == 401
    assert challenge.headers["www-authenticate"].startswith('Basic realm="Pavedroad git"')
    forged = run_git(
        "clone",
        "-q",
        _remote(url, "pvd_" + "0" * 32 + "_forged"),
        str(tmp_path / "f"),
        cwd=tmp_path,
        check=False,
    )
    assert forged.returncode != 0
    for path in (
        "/git/checkout-team/nope.git/info/refs?service=git-upload-pack",
        "/git/checkout-team/orders.git/objects/info/packs",
        "/git/checkout-team/orders.git/../../x/info/refs",
        "/git/checkout-team/orders/info/refs",
    ):
        answer = httpx.get(url + path, auth=("x", tokens["bob:read+write"]))
        assert answer.status_code in (400, 404), (path, answer.status_code)


def test_an_oversized_push_is_refused_and_changes_nothing(server, tmp_path):
    url, _home, tokens = server
    bob = tokens["bob:read+write"]
    work = tmp_path / "big"
    run_git("clone", "-q", _remote(url, bob), str(work), cwd=tmp_path)
    before = len(_pushes(url, bob))
    (work / "blob.bin").write_bytes(os.urandom(256 * 1024))  # over the 64 KiB push limit
    run_git("add", ".", cwd=work)
    run_git("-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", "big", cwd=work)
    refused = run_git("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0
    assert len(_pushes(url, bob)) == before


def test_a_push_while_the_platform_is_down_is_recorded_at_the_next_start(
    make_app, make_settings, tmp_path
):
    settings = make_settings()
    app = make_app(settings)  # the demo catalog is there: checkout-team exists
    repo = app.state.git.create("checkout-team", "offline", "bob")
    bare = app.state.git.root / "checkout-team" / "offline.git"
    app.state.db.dispose()  # the platform is down; git still works on the disk

    work = tmp_path / "work"
    run_git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    commit_file(work, "a.txt", "a\n", "while down")
    run_git("push", "-q", str(bare), "main", cwd=work)
    spooled = list((settings.home / "git" / ".spool").glob("*.json"))
    assert len(spooled) == 1

    restarted = make_app(settings)
    pushes = restarted.state.git.pushes(f"{repo['owner']}/{repo['name']}")
    assert [(p["ref"], p["source"]) for p in pushes] == [("refs/heads/main", "hosted")]
    assert not list((settings.home / "git" / ".spool").glob("*.json"))
    assert [e.subject for e in events.since(restarted.state.db, type="GitPushed")] == [
        "checkout-team/offline"
    ]
    assert restarted.state.git.import_spool() == 0  # recorded once


@pytest.fixture
def database_seed() -> str:
    return "demo"


@pytest.fixture
def secured(make_app, make_settings):
    settings = make_settings()
    settings.auth.required = True
    app = make_app(settings)
    for name in ("bob", "dave"):
        app.state.identity.create_account(name, Role.member)
    return app


def _bearer(app, name: str) -> dict[str, str]:
    _info, secret = app.state.identity.create_token(name, "t", ["read", "write"])
    return {"authorization": f"Bearer {secret}"}


def test_repository_api_refusals(secured):
    client = TestClient(secured)
    bob, dave = _bearer(secured, "bob"), _bearer(secured, "dave")
    repos = "/api/v1/git/repos"
    made = client.post(repos, json={"owner": "checkout-team", "name": "svc"}, headers=bob)
    assert made.status_code == 201, made.text
    again = client.post(repos, json={"owner": "checkout-team", "name": "svc"}, headers=bob)
    assert again.status_code == 409 and "exists already" in again.json()["detail"]
    for name in ("../evil", "a/b", "x.git", "-rf", "bad name", "é"):
        bad = client.post(repos, json={"owner": "checkout-team", "name": name}, headers=bob)
        assert bad.status_code in (400, 422), (name, bad.text)
    unknown = client.post(repos, json={"owner": "no-such-team", "name": "x"}, headers=bob)
    assert unknown.status_code == 404
    denied = client.post(repos, json={"owner": "checkout-team", "name": "d"}, headers=dave)
    assert denied.status_code == 403 and "checkout-team" in denied.json()["detail"]
    mine = client.post(repos, json={"owner": "dave", "name": "sandbox"}, headers=dave)
    assert mine.status_code == 201, mine.text  # a user owns their own repositories
    assert client.delete(f"{repos}/checkout-team/svc", headers=dave).status_code == 403
    assert client.delete(f"{repos}/checkout-team/svc", headers=bob).status_code == 204
    assert not (secured.state.git.root / "checkout-team" / "svc.git").exists()
    names = [r["name"] for r in client.get(repos, headers=dave).json()["items"]]
    assert names == ["sandbox"]
    outcomes = {
        (e["action"], e["outcome"])
        for e in audit.search(secured.state.db, action="git.repo.*", limit=100)
    }
    assert {
        ("git.repo.create", "success"),
        ("git.repo.create", "denied"),
        ("git.repo.delete", "denied"),
        ("git.repo.delete", "success"),
    } <= outcomes
