"""OpenID Connect sign-in against a real provider process (tests/integration/oidc_provider.py).

The browser is played by hand: the portal's TestClient for the portal, plain httpx for
the provider, following each redirect from one to the other. A good sign-in starts a
session for the matching catalog User; every bad answer the provider can give (or an
attacker can forge) is refused with a sentence that says why, starts no session and
leaves a "denied" audit event.
"""

from __future__ import annotations

import html
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from pavedroad.core import audit
from pavedroad.settings import AuthSettings, OidcSettings

PROVIDER_SCRIPT = Path(__file__).with_name("oidc_provider.py")
REDIRECT_URL = "http://127.0.0.1:7070/sign-in/oidc/callback"  # the default public URL's
CLIENT_ID = "pavedroad"
CLIENT_SECRET = "a-client-secret-for-tests"
PUBLIC_CLIENT_ID = "pavedroad-public"
SESSION_COOKIE = "pavedroad_session"
FLOW_COOKIE = "pavedroad_oidc"
BOB = {
    "sub": "u-bob",
    "email": "bob@acme-retail.example",
    "email_verified": True,
    "preferred_username": "bob",
    "name": "Bob Okafor",
}


@pytest.fixture
def database_seed() -> str:
    return "demo"  # the demo organisation's Users, with their emails


@dataclass
class Provider:
    url: str

    def behave(self, mode: str = "ok", **user: Any) -> None:
        """How the next flows go (see oidc_provider.MODES) and who signs in."""
        answer = httpx.post(
            f"{self.url}/_test/mode", json={"mode": mode, "user": {**BOB, **user}}, timeout=10
        )
        answer.raise_for_status()

    def rotate_key(self) -> None:
        httpx.post(f"{self.url}/_test/rotate-key", timeout=10).raise_for_status()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """The provider, started once for the module and stopped at its end."""
    log_path = tmp_path_factory.mktemp("oidc-provider") / "provider.log"
    for _attempt in range(3):  # another process may take the free port first
        port = _free_port()
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(PROVIDER_SCRIPT),
                    f"--port={port}",
                    f"--client={CLIENT_ID}:{CLIENT_SECRET}",
                    f"--client={PUBLIC_CLIENT_ID}",
                    f"--redirect-uri={REDIRECT_URL}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        if _wait_until_ready(process, url):
            break
        process.kill()
        process.wait(10)
    else:
        pytest.fail(f"the OIDC test provider did not start:\n{log_path.read_text()}")
    try:
        yield Provider(url)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _wait_until_ready(process: subprocess.Popen[bytes], url: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/.well-known/openid-configuration", timeout=2).is_success:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture(autouse=True)
def well_behaved(provider: Provider) -> None:
    provider.behave("ok")


@pytest.fixture
def make_portal(
    make_settings: Callable[..., Any], make_app: Callable[..., Any], provider: Provider
) -> Iterator[Callable[..., TestClient]]:
    """A portal that requires sign-in and trusts the test provider; keyword arguments
    change its auth.oidc settings."""
    clients: list[TestClient] = []

    def make(**oidc: Any) -> TestClient:
        settings = make_settings()
        settings.auth = AuthSettings(
            required=True,
            oidc=OidcSettings(
                **{
                    "issuer": provider.url,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    **oidc,
                }
            ),
        )
        client = TestClient(make_app(settings))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def portal(make_portal: Callable[..., TestClient]) -> TestClient:
    return make_portal()


# -- the browser, by hand ---------------------------------------------------------------


def start(portal: TestClient, next_url: str = "/catalog") -> str:
    """Click "Sign in with ...": the provider's authorization URL the portal sends to."""
    response = portal.get("/sign-in/oidc", params={"next": next_url}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["location"]


def at_provider(authorization_url: str) -> str:
    """What the provider answers: the portal callback URL it sends the browser back to."""
    answer = httpx.get(authorization_url, follow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URL + "?")
    return location


def callback(portal: TestClient, location: str) -> httpx.Response:
    parts = urlsplit(location)
    return portal.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def sign_in(portal: TestClient, next_url: str = "/catalog") -> httpx.Response:
    return callback(portal, at_provider(start(portal, next_url)))


def sets_session(response: httpx.Response) -> bool:
    return any(c.startswith(f"{SESSION_COOKIE}=") for c in response.headers.get_list("set-cookie"))


def last_sign_in_event(portal: TestClient) -> dict[str, Any]:
    events = audit.search(portal.app.state.db, action="identity.session.create")  # type: ignore[attr-defined]
    assert events, "no identity.session.create audit event"
    return events[0]


def assert_refused(
    portal: TestClient, response: httpx.Response, status: int, *phrases: str
) -> None:
    assert response.status_code == status, response.text
    text = html.unescape(response.text)
    for phrase in phrases:
        assert phrase in text
    assert not sets_session(response)
    assert FLOW_COOKIE not in portal.cookies  # the flow is spent either way
    assert portal.get("/api/v1/identity/me").status_code == 401
    event = last_sign_in_event(portal)
    assert (event["outcome"], event["status"], event["target"]) == ("denied", status, "oidc")


def assert_signed_in_as(portal: TestClient, response: httpx.Response, name: str) -> None:
    assert response.status_code == 303, html.unescape(response.text)
    assert sets_session(response)
    me = portal.get("/api/v1/identity/me")
    assert me.status_code == 200, me.text
    assert me.json()["name"] == name
    event = last_sign_in_event(portal)
    assert (event["actor"], event["outcome"], event["target"]) == (name, "success", "oidc")


# -- signing in ---------------------------------------------------------------------------


@pytest.mark.parametrize("email", ["bob@acme-retail.example", "Bob@ACME-Retail.Example"])
def test_sign_in_starts_a_session_for_the_catalog_user_with_that_email(
    portal: TestClient, provider: Provider, email: str
) -> None:
    provider.behave("ok", email=email)
    authorization_url = start(portal, "/catalog?kind=component")
    query = parse_qs(urlsplit(authorization_url).query)
    assert authorization_url.startswith(f"{provider.url}/authorize?")
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [REDIRECT_URL]
    assert query["code_challenge_method"] == ["S256"]
    assert query["scope"] == ["openid email profile"]
    assert query["state"] and query["nonce"] and query["code_challenge"]
    flow_cookie = next(
        c for c in portal.cookies.jar if c.name == FLOW_COOKIE
    )  # kept between the redirect and the callback
    assert flow_cookie.path == "/sign-in/oidc"
    assert flow_cookie.has_nonstandard_attr("HttpOnly")

    response = callback(portal, at_provider(authorization_url))

    assert_signed_in_as(portal, response, "bob")
    assert response.headers["location"] == "/catalog?kind=component"
    assert FLOW_COOKIE not in portal.cookies


def test_a_public_client_signs_in_with_pkce_alone(make_portal: Callable[..., TestClient]) -> None:
    portal = make_portal(client_id=PUBLIC_CLIENT_ID, client_secret=None)
    assert_signed_in_as(portal, sign_in(portal), "bob")


def test_another_claim_names_the_user(
    make_portal: Callable[..., TestClient], provider: Provider
) -> None:
    portal = make_portal(user_claim="preferred_username")
    provider.behave("ok", preferred_username="carol", email="carol@elsewhere.example")
    assert_signed_in_as(portal, sign_in(portal), "carol")


def test_a_rotated_provider_key_is_fetched_again(portal: TestClient, provider: Provider) -> None:
    assert_signed_in_as(portal, sign_in(portal), "bob")  # the portal now holds the old key
    provider.rotate_key()
    portal.cookies.clear()
    assert_signed_in_as(portal, sign_in(portal), "bob")


def test_next_never_leaves_the_portal(portal: TestClient) -> None:
    response = sign_in(portal, "https://attacker.example/phish")
    assert_signed_in_as(portal, response, "bob")
    assert response.headers["location"] == "/"


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "phrase"),
    [
        ("wrong_audience", "the ID token is meant for 'another-client'"),
        ("expired", "the ID token has expired"),
        ("alg_none", "the ID token is signed with 'none', which this portal does not accept"),
        ("hs256_public_key", "signed with 'HS256', which this portal does not accept"),
        ("bad_signature", "signature does not verify with the provider's published keys"),
        ("wrong_nonce", "does not belong to this sign-in (nonce mismatch)"),
        ("wrong_issuer", "issued by 'https://issuer.attacker.example'"),
    ],
)
def test_a_bad_id_token_is_refused(
    portal: TestClient, provider: Provider, mode: str, phrase: str
) -> None:
    provider.behave(mode)
    assert_refused(portal, sign_in(portal), 401, phrase)


def test_a_provider_error_is_shown(portal: TestClient, provider: Provider) -> None:
    provider.behave("error")
    response = sign_in(portal)
    assert_refused(
        portal, response, 401, "Single sign-on did not sign you in: The user declined to sign in"
    )
    assert "(access_denied)" in html.unescape(response.text)


def test_a_tampered_state_is_refused(portal: TestClient) -> None:
    location = at_provider(start(portal))
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    state = query["state"]
    query["state"] = state[:-1] + ("A" if state[-1] != "A" else "B")  # always a change
    response = portal.get(f"{parts.path}?{urlencode(query)}", follow_redirects=False)
    assert_refused(portal, response, 401, "(state mismatch)")


def test_a_callback_in_another_browser_is_refused(
    portal: TestClient, make_portal: Callable[..., TestClient]
) -> None:
    location = at_provider(start(portal))
    other_browser = make_portal()
    assert_refused(
        other_browser, callback(other_browser, location), 401, "not started in this browser"
    )


def test_a_tampered_flow_cookie_is_refused(portal: TestClient) -> None:
    location = at_provider(start(portal))
    cookie = next(c for c in portal.cookies.jar if c.name == FLOW_COOKIE)
    portal.cookies.set(FLOW_COOKIE, "x" + str(cookie.value)[1:], cookie.domain, cookie.path)
    assert_refused(portal, callback(portal, location), 401, "not started in this browser")


def test_a_callback_is_spent_once(portal: TestClient) -> None:
    location = at_provider(start(portal))
    assert_signed_in_as(portal, callback(portal, location), "bob")
    portal.cookies.clear()
    assert_refused(portal, callback(portal, location), 401, "not started in this browser")


def test_an_email_no_catalog_user_has_is_refused(portal: TestClient, provider: Provider) -> None:
    provider.behave("ok", email="nobody@acme-retail.example")
    response = sign_in(portal)
    assert_refused(
        portal,
        response,
        403,
        "no catalog User has the email nobody@acme-retail.example; ask an admin to add one",
    )
    assert last_sign_in_event(portal)["actor"] == "nobody@acme-retail.example"


def test_an_unverified_email_is_refused(portal: TestClient, provider: Provider) -> None:
    provider.behave("email_unverified")
    assert_refused(portal, sign_in(portal), 403, "has not verified the email")


def test_a_wrong_client_secret_is_refused(make_portal: Callable[..., TestClient]) -> None:
    portal = make_portal(client_secret="not-the-secret")
    assert_refused(
        portal,
        sign_in(portal),
        401,
        "the provider refused to exchange the code: client authentication failed",
    )


def test_without_oidc_settings_the_routes_say_so(
    make_settings: Callable[..., Any], make_app: Callable[..., Any]
) -> None:
    settings = make_settings()
    settings.auth = AuthSettings(required=True)
    with TestClient(make_app(settings)) as portal:
        for path in ("/sign-in/oidc", "/sign-in/oidc/callback?code=x&state=y"):
            response = portal.get(path, follow_redirects=False)
            assert response.status_code == 404
            assert "Single sign-on is not configured" in response.text
