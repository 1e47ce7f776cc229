"""Inbound GitHub and GitLab webhooks: signed push deliveries become push events with
sign-in required, redeliveries are recorded once, and every forged, oversized, malformed
or unconfigured delivery is refused with nothing recorded."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from pavedroad.core import audit, events

GITHUB_SECRET = "It's a Secret to Everybody"
GITLAB_TOKEN = "gitlab-shared-token-5f2b"
GITHUB_URL = "/api/v1/git/webhooks/github"
GITLAB_URL = "/api/v1/git/webhooks/gitlab"
CAP = 1024 * 1024  # the default git.webhook_max_bytes

BEFORE = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
AFTER = "59b20b8d5c6ff8d09518454d4dd8b7a30f095ab5"


def github_push(ref: str = "refs/heads/main") -> dict[str, Any]:
    """A push delivery as GitHub sends it (trimmed of fields nobody reads)."""
    return {
        "ref": ref,
        "before": BEFORE,
        "after": AFTER,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": "https://github.com/acme/orders/compare/6113728f27ae...59b20b8d5c6f",
        "commits": [
            {
                "id": AFTER,
                "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
                "distinct": True,
                "message": "Retry payments once",
                "timestamp": "2026-11-26T15:10:59+00:00",
                "url": f"https://github.com/acme/orders/commit/{AFTER}",
                "author": {"name": "Bob", "email": "bob@acme.example", "username": "bob"},
                "committer": {"name": "Bob", "email": "bob@acme.example", "username": "bob"},
                "added": [],
                "removed": [],
                "modified": ["src/payments.py"],
            }
        ],
        "repository": {
            "id": 186853002,
            "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
            "name": "orders",
            "full_name": "acme/orders",
            "private": True,
            "owner": {"name": "acme", "login": "acme", "id": 21031067, "type": "Organization"},
            "html_url": "https://github.com/acme/orders",
            "url": "https://github.com/acme/orders",
            "clone_url": "https://github.com/acme/orders.git",
            "git_url": "git://github.com/acme/orders.git",
            "ssh_url": "git@github.com:acme/orders.git",
            "default_branch": "main",
            "master_branch": "main",
            "organization": "acme",
        },
        "pusher": {"name": "bob", "email": "bob@acme.example"},
        "organization": {"login": "acme", "id": 21031067},
        "sender": {"login": "bob", "id": 21031068, "type": "User"},
    }


def gitlab_push(event: str = "push", ref: str = "refs/heads/main") -> dict[str, Any]:
    """A push (or tag push) delivery as GitLab sends it (trimmed)."""
    return {
        "object_kind": event,
        "event_name": event,
        "before": BEFORE if event == "push" else "0" * 40,
        "after": AFTER,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": AFTER,
        "user_id": 4,
        "user_name": "Carol Chen",
        "user_username": "carol",
        "user_email": "",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "billing",
            "web_url": "https://gitlab.example.com/acme/billing",
            "git_ssh_url": "git@gitlab.example.com:acme/billing.git",
            "git_http_url": "https://gitlab.example.com/acme/billing.git",
            "namespace": "acme",
            "path_with_namespace": "acme/billing",
            "default_branch": "main",
        },
        "commits": [],
        "total_commits_count": 0,
        "repository": {
            "name": "billing",
            "url": "git@gitlab.example.com:acme/billing.git",
            "homepage": "https://gitlab.example.com/acme/billing",
        },
    }


def sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, event: str = "push", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-Hub-Signature-256": sign(body),
        **extra,
    }


def gitlab_headers(event: str = "Push Hook", token: str = GITLAB_TOKEN) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "Idempotency-Key": str(uuid.uuid4()),
        "User-Agent": "GitLab/17.6.0",
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture
def webhook_settings(make_settings: Any) -> Any:
    """Sign-in required (the default), both shared secrets set."""
    settings = make_settings()
    settings.auth.required = True
    settings.git.github_webhook_secret = SecretStr(GITHUB_SECRET)
    settings.git.gitlab_webhook_token = SecretStr(GITLAB_TOKEN)
    return settings


@pytest.fixture
def app(make_app: Any, webhook_settings: Any) -> Any:
    return make_app(webhook_settings)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def pushes(app: Any) -> list[dict[str, Any]]:
    return app.state.git.pushes()  # type: ignore[no-any-return]


def pushed_events(app: Any) -> list[events.Event]:
    return events.since(app.state.db, type="GitPushed")


def webhook_audit(app: Any) -> list[dict[str, Any]]:
    return audit.search(app.state.db, action="git.webhook.*")


# -- GitHub -----------------------------------------------------------------------------------


def test_a_signed_github_push_is_recorded_without_signing_in(app: Any, client: TestClient):
    body = encode(github_push())
    headers = github_headers(body)

    answer = client.post(GITHUB_URL, content=body, headers=headers)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 1}
    [push] = pushes(app)
    assert push["source"] == "github"
    assert push["repository"] == "https://github.com/acme/orders.git"
    assert (push["ref"], push["before"], push["after"], push["pusher"]) == (
        "refs/heads/main",
        BEFORE,
        AFTER,
        "bob",
    )
    [event] = pushed_events(app)
    assert event.subject == "https://github.com/acme/orders.git"
    assert event.data["source"] == "github" and event.data["after"] == AFTER
    [entry] = webhook_audit(app)
    assert entry["action"] == "git.webhook.github"
    assert entry["actor"] == "webhook:github"
    assert entry["outcome"] == "success"
    assert entry["target"] == "https://github.com/acme/orders.git refs/heads/main"


def test_a_redelivered_github_push_is_recorded_once(app: Any, client: TestClient):
    body = encode(github_push())
    headers = github_headers(body)

    first = client.post(GITHUB_URL, content=body, headers=headers)
    again = client.post(GITHUB_URL, content=body, headers=headers)

    assert first.json() == {"recorded": 1}
    assert again.status_code == 200 and again.json() == {"recorded": 0}
    assert len(pushes(app)) == 1
    assert len(pushed_events(app)) == 1
    # a new delivery of another ref is a new push
    other = encode(github_push("refs/heads/release"))
    assert client.post(GITHUB_URL, content=other, headers=github_headers(other)).json() == {
        "recorded": 1
    }
    assert len(pushes(app)) == 2


def test_a_form_encoded_github_delivery_needs_no_csrf_token(app: Any, client: TestClient):
    """GitHub's default content type is a form with the event in its payload field: the
    portal's CSRF check for form posts does not apply to webhooks."""
    body = urlencode({"payload": json.dumps(github_push())}).encode()
    headers = github_headers(body, **{"Content-Type": "application/x-www-form-urlencoded"})

    answer = client.post(GITHUB_URL, content=body, headers=headers)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 1}
    assert pushes(app)[0]["repository"] == "https://github.com/acme/orders.git"


def test_a_json_delivery_with_no_cookie_is_not_held_to_csrf(client: TestClient):
    body = encode(github_push())
    answer = client.post(GITHUB_URL, content=body, headers=github_headers(body))
    assert answer.status_code == 200
    assert not client.cookies  # nothing was needed and nothing was handed out


def test_github_ping_and_other_events(app: Any, client: TestClient):
    ping = encode({"zen": "Keep it logically awesome.", "hook_id": 292430182})
    answer = client.post(GITHUB_URL, content=ping, headers=github_headers(ping, "ping"))
    assert answer.status_code == 200 and answer.json() == {"ok": True}

    issue = encode({"action": "opened", "issue": {"number": 1}})
    answer = client.post(GITHUB_URL, content=issue, headers=github_headers(issue, "issues"))
    assert answer.status_code == 202 and answer.json() == {"ignored": "issues"}
    assert pushes(app) == []


def _unsigned(body: bytes) -> dict[str, str]:
    headers = github_headers(body)
    del headers["X-Hub-Signature-256"]
    return headers


FORGERIES = {
    "wrong secret": lambda body: github_headers(
        body, **{"X-Hub-Signature-256": sign(body, "not the secret")}
    ),
    "no signature": _unsigned,
    "another body's signature": lambda body: github_headers(
        body, **{"X-Hub-Signature-256": sign(body + b" ")}
    ),
    "sha1 only": lambda body: (
        _unsigned(body)
        | {"X-Hub-Signature": "sha1=" + hmac.new(GITHUB_SECRET.encode(), body, "sha1").hexdigest()}
    ),
    "sha1 in the sha256 header": lambda body: github_headers(
        body,
        **{
            "X-Hub-Signature-256": "sha1="
            + hmac.new(GITHUB_SECRET.encode(), body, "sha1").hexdigest()
        },
    ),
    "not ascii": lambda body: github_headers(body) | {"X-Hub-Signature-256": "sha256=é".encode()},
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_github_delivery_not_signed_with_the_secret_is_refused(
    app: Any, client: TestClient, forgery: str
):
    body = encode(github_push())
    headers = FORGERIES[forgery](body)

    answer = client.post(GITHUB_URL, content=body, headers=headers)

    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "X-Hub-Signature-256" in answer.json()["detail"]
    assert pushes(app) == [] and pushed_events(app) == []
    [entry] = audit.search(app.state.db, outcome="denied")
    assert (entry["action"], entry["actor"], entry["status"]) == (
        "git.webhook.github",
        "webhook:github",
        401,
    )


def test_signatures_and_tokens_are_compared_in_constant_time(
    app: Any, client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    body = encode(github_push())
    assert client.post(GITHUB_URL, content=body, headers=github_headers(body)).status_code == 200
    assert any(b"sha256=" in bytes(a) for a, _ in calls)
    seen = len(calls)
    answer = client.post(GITLAB_URL, content=encode(gitlab_push()), headers=gitlab_headers())
    assert answer.status_code == 200
    assert len(calls) > seen
    assert GITLAB_TOKEN.encode() in (calls[-1][0], calls[-1][1])


# -- bodies too large or malformed ------------------------------------------------------------


def test_a_delivery_over_the_cap_is_refused_by_its_content_length(app: Any, client: TestClient):
    body = b"x" * (CAP + 1)

    answer = client.post(GITHUB_URL, content=body, headers=github_headers(body))

    assert answer.status_code == 413
    assert "git.webhook_max_bytes" in answer.json()["detail"]
    assert pushes(app) == []


@pytest.mark.parametrize("url", [GITHUB_URL, GITLAB_URL])
def test_a_chunked_delivery_over_the_cap_is_refused_as_it_arrives(
    app: Any, client: TestClient, url: str
):
    """No Content-Length: the body is counted as it arrives. 2 MiB is under the
    platform's general 4 MiB limit, so it is the webhook's own cap that answers."""
    chunk = b" " * (64 * 1024)

    def body() -> Iterator[bytes]:
        yield b'{"ref": "refs/heads/main", "padding": "'
        for _ in range(32):
            yield chunk
        yield b'"}'

    headers = github_headers(b"") if url == GITHUB_URL else gitlab_headers()
    answer = client.post(url, content=body(), headers=headers)

    assert answer.status_code == 413, answer.text
    assert f"at most {CAP} bytes" in answer.json()["detail"]
    assert pushes(app) == []


def test_the_cap_is_a_setting(make_app: Any, webhook_settings: Any):
    webhook_settings.git.webhook_max_bytes = 4096
    app = make_app(webhook_settings)
    with TestClient(app) as client:
        body = encode(github_push() | {"padding": "x" * 4096})
        answer = client.post(GITHUB_URL, content=body, headers=github_headers(body))
    assert answer.status_code == 413
    assert "at most 4096 bytes" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b'{"ref": "refs/heads/main", ', "not valid JSON"),
        (b"\xff\xfe not even text", "not valid JSON"),
        (b"[1, 2, 3]", "not one this endpoint reads"),
        (encode({"ref": "refs/heads/main"}), "before: Field required"),
        (encode(github_push() | {"after": "HEAD; rm -rf /"}), "after: String should match"),
        (encode(github_push() | {"ref": ""}), "ref: String should have at least 1 character"),
        (
            encode(github_push() | {"repository": {"full_name": "a/b", "clone_url": "file:///"}}),
            "repository.clone_url",
        ),
        (
            encode(github_push() | {"repository": {"full_name": "acme/orders"}}),
            "no repository.clone_url",
        ),
    ],
)
def test_a_malformed_github_push_with_a_valid_signature_is_a_400(
    app: Any, client: TestClient, body: bytes, complaint: str
):
    answer = client.post(GITHUB_URL, content=body, headers=github_headers(body))

    assert answer.status_code == 400, answer.text
    assert complaint in answer.json()["detail"]
    assert pushes(app) == []


def test_a_form_delivery_without_a_payload_field_is_a_400(client: TestClient):
    body = b"event=push"
    headers = github_headers(body, **{"Content-Type": "application/x-www-form-urlencoded"})
    answer = client.post(GITHUB_URL, content=body, headers=headers)
    assert answer.status_code == 400
    assert "payload field" in answer.json()["detail"]


# -- unconfigured -----------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, ""])
def test_an_endpoint_without_its_secret_is_not_there(
    make_app: Any, make_settings: Any, secret: str | None
):
    settings = make_settings()
    settings.auth.required = True
    if secret is not None:
        settings.git.github_webhook_secret = SecretStr(secret)
        settings.git.gitlab_webhook_token = SecretStr(secret)
    app = make_app(settings)
    body = encode(github_push())
    with TestClient(app) as client:
        from_github = client.post(GITHUB_URL, content=body, headers=github_headers(body))
        from_gitlab = client.post(
            GITLAB_URL, content=encode(gitlab_push()), headers=gitlab_headers()
        )

    assert from_github.status_code == 404
    assert "PAVEDROAD_GIT__GITHUB_WEBHOOK_SECRET" in from_github.json()["detail"]
    assert from_gitlab.status_code == 404
    assert "PAVEDROAD_GIT__GITLAB_WEBHOOK_TOKEN" in from_gitlab.json()["detail"]
    assert app.state.git.pushes() == []


# -- GitLab -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "header", "ref"),
    [("push", "Push Hook", "refs/heads/main"), ("tag_push", "Tag Push Hook", "refs/tags/v1.4.0")],
)
def test_a_gitlab_push_with_the_token_is_recorded(
    app: Any, client: TestClient, event: str, header: str, ref: str
):
    answer = client.post(
        GITLAB_URL, content=encode(gitlab_push(event, ref)), headers=gitlab_headers(header)
    )

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"recorded": 1}
    [push] = pushes(app)
    assert push["source"] == "gitlab"
    assert push["repository"] == "https://gitlab.example.com/acme/billing.git"
    assert (push["ref"], push["after"], push["pusher"]) == (ref, AFTER, "carol")
    [pushed] = pushed_events(app)
    assert pushed.data["source"] == "gitlab"
    [entry] = webhook_audit(app)
    assert (entry["action"], entry["actor"], entry["outcome"]) == (
        "git.webhook.gitlab",
        "webhook:gitlab",
        "success",
    )


def test_a_gitlab_retry_is_recorded_once(app: Any, client: TestClient):
    body = encode(gitlab_push())
    headers = gitlab_headers()
    assert client.post(GITLAB_URL, content=body, headers=headers).json() == {"recorded": 1}
    retry = headers | {"X-Gitlab-Event-UUID": str(uuid.uuid4())}  # same Idempotency-Key
    assert client.post(GITLAB_URL, content=body, headers=retry).json() == {"recorded": 0}
    # without either header, the body itself identifies the delivery
    bare = {k: v for k, v in headers.items() if k not in ("X-Gitlab-Event-UUID", "Idempotency-Key")}
    other = encode(gitlab_push(ref="refs/heads/hotfix"))
    assert client.post(GITLAB_URL, content=other, headers=bare).json() == {"recorded": 1}
    assert client.post(GITLAB_URL, content=other, headers=bare).json() == {"recorded": 0}
    assert len(pushes(app)) == 2


def test_other_gitlab_events_are_ignored(app: Any, client: TestClient):
    answer = client.post(
        GITLAB_URL,
        content=encode({"object_kind": "issue"}),
        headers=gitlab_headers("Issue Hook"),
    )
    assert answer.status_code == 202 and answer.json() == {"ignored": "Issue Hook"}
    assert pushes(app) == []


@pytest.mark.parametrize("token", ["not-the-token", "", GITLAB_TOKEN + "x", "é"])
def test_a_gitlab_delivery_without_the_token_is_refused(app: Any, client: TestClient, token: str):
    headers: dict[str, Any] = gitlab_headers()
    headers["X-Gitlab-Token"] = token.encode()  # as sent: bytes, not always ASCII
    if not token:
        del headers["X-Gitlab-Token"]

    answer = client.post(GITLAB_URL, content=encode(gitlab_push()), headers=headers)

    assert answer.status_code == 401, answer.text
    assert "X-Gitlab-Token" in answer.json()["detail"]
    assert pushes(app) == [] and pushed_events(app) == []
    [entry] = audit.search(app.state.db, outcome="denied")
    assert (entry["action"], entry["actor"], entry["status"]) == (
        "git.webhook.gitlab",
        "webhook:gitlab",
        401,
    )


def test_a_malformed_gitlab_push_is_a_400(app: Any, client: TestClient):
    body = encode(gitlab_push() | {"project": {"path_with_namespace": "acme/billing"}})
    answer = client.post(GITLAB_URL, content=body, headers=gitlab_headers())
    assert answer.status_code == 400
    assert "project.git_http_url: Field required" in answer.json()["detail"]
    assert pushes(app) == []
