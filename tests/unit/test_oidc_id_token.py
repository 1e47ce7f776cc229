"""ID token validation by :class:`OidcClient`, with the provider's discovery document and
keys answered in memory (httpx's MockTransport): every check has a token that fails it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from pavedroad.identity.oidc import OidcClient, OidcError
from pavedroad.settings import OidcSettings

ISSUER = "https://id.example"
CLIENT_ID = "pavedroad"
NONCE = "the-nonce"


class FakeProvider:
    """Answers discovery and JWKS requests; counts the JWKS fetches."""

    def __init__(self) -> None:
        self.keys: list[RSAKey | ECKey] = [RSAKey.generate_key(2048, parameters={"kid": "k1"})]
        self.jwks_fetches = 0
        self.issuer = ISSUER

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{ISSUER}/authorize",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/jwks",
                },
            )
        if request.url.path == "/jwks":
            self.jwks_fetches += 1
            return httpx.Response(200, json={"keys": [k.as_dict(private=False) for k in self.keys]})
        return httpx.Response(404)


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def client(provider: FakeProvider) -> OidcClient:
    settings = OidcSettings(issuer=ISSUER, client_id=CLIENT_ID, client_secret="s")
    return OidcClient(
        settings,
        "https://portal.example/sign-in/oidc/callback",
        httpx.MockTransport(provider.handle),
    )


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "u1",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
        "email": "bob@acme-retail.example",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(key: RSAKey | ECKey, alg: str = "RS256", **changes: Any) -> str:
    return jwt.encode({"alg": alg, "kid": key.kid}, claims(**changes), key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refused(client: OidcClient, token: Any, phrase: str, nonce: str = NONCE) -> None:
    with pytest.raises(OidcError) as caught:
        client.validate_id_token(token, nonce)
    assert phrase in caught.value.message
    assert caught.value.status == 401


def test_a_good_token_gives_its_claims(client: OidcClient, provider: FakeProvider) -> None:
    token = signed(provider.keys[0])
    assert client.validate_id_token(token, NONCE)["email"] == "bob@acme-retail.example"


def test_es256_is_accepted_too(client: OidcClient, provider: FakeProvider) -> None:
    provider.keys.append(ECKey.generate_key("P-256", parameters={"kid": "ec"}))
    assert client.validate_id_token(signed(provider.keys[1], "ES256"), NONCE)["sub"] == "u1"


def test_alg_none_is_refused(client: OidcClient) -> None:
    header = _b64(json.dumps({"alg": "none"}).encode())
    token = f"{header}.{_b64(json.dumps(claims()).encode())}."
    refused(client, token, "signed with 'none', which this portal does not accept")


def test_hs256_keyed_with_the_public_key_is_refused(
    client: OidcClient, provider: FakeProvider
) -> None:
    key = provider.keys[0]
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'kid': key.kid}).encode())}."
        f"{_b64(json.dumps(claims()).encode())}"
    )
    secret = key.as_pem(private=False)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    refused(client, f"{signing_input}.{_b64(mac)}", "signed with 'HS256'")


def test_a_token_signed_by_another_key_is_refused(client: OidcClient) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    refused(client, signed(impostor), "signature does not verify")


def test_an_unknown_kid_fetches_the_keys_once_more(
    client: OidcClient, provider: FakeProvider
) -> None:
    client.validate_id_token(signed(provider.keys[0]), NONCE)
    assert provider.jwks_fetches == 1
    provider.keys = [RSAKey.generate_key(2048, parameters={"kid": "k2"})]  # rotated
    assert client.validate_id_token(signed(provider.keys[0]), NONCE)["sub"] == "u1"
    assert provider.jwks_fetches == 2
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k3"})
    refused(client, signed(stranger), "a key the provider does not publish")
    assert provider.jwks_fetches == 3  # once per token, not in a loop


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"iss": "https://evil.example"}, "issued by 'https://evil.example'"),
        ({"aud": "another-client"}, "meant for 'another-client'"),
        ({"aud": ["another-client", CLIENT_ID]}, "several audiences but no authorized party (azp)"),
        ({"aud": [CLIENT_ID, "x"], "azp": "x"}, "issued to 'x' (azp)"),
        ({"azp": "x"}, "issued to 'x' (azp)"),
        ({"exp": int(time.time()) - 120}, "the ID token has expired"),
        ({"iat": int(time.time()) + 30 * 86400}, "issued in the future"),  # at any test time
        ({"nonce": "another-nonce"}, "nonce mismatch"),
        ({"nonce": None}, "lacks the claim(s) nonce"),
        ({"sub": None}, "lacks the claim(s) sub"),
        ({"exp": None}, "lacks the claim(s) exp"),
    ],
)
def test_bad_claims_are_refused(
    client: OidcClient, provider: FakeProvider, changes: dict[str, Any], phrase: str
) -> None:
    refused(client, signed(provider.keys[0], **changes), phrase)


def test_small_clock_skew_is_allowed(client: OidcClient, provider: FakeProvider) -> None:
    now = int(time.time())
    token = signed(provider.keys[0], exp=now - 30, iat=now + 30)
    assert client.validate_id_token(token, NONCE)["sub"] == "u1"


def test_several_audiences_pass_with_azp_naming_this_client(
    client: OidcClient, provider: FakeProvider
) -> None:
    token = signed(provider.keys[0], aud=[CLIENT_ID, "api"], azp=CLIENT_ID)
    assert client.validate_id_token(token, NONCE)["azp"] == CLIENT_ID


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", "a.b.c"])
def test_malformed_tokens_are_refused(client: OidcClient, token: Any) -> None:
    with pytest.raises(OidcError):
        client.validate_id_token(token, NONCE)


def test_a_discovery_document_for_another_issuer_is_refused(
    client: OidcClient, provider: FakeProvider
) -> None:
    provider.issuer = "https://elsewhere.example"
    with pytest.raises(OidcError) as caught:
        client.metadata()
    assert "names the issuer 'https://elsewhere.example'" in caught.value.message
    assert caught.value.status == 502


def test_the_authorization_url_carries_pkce_and_nonce(client: OidcClient) -> None:
    request = client.authorization_request("/catalog")
    url = httpx.URL(request.url)
    assert url.host == "id.example" and url.path == "/authorize"
    params = url.params
    assert params["state"] == request.pending.state
    assert params["nonce"] == request.pending.nonce
    assert params["code_challenge_method"] == "S256"
    digest = hashlib.sha256(request.pending.code_verifier.encode()).digest()
    assert params["code_challenge"] == _b64(digest)
    assert request.pending.next == "/catalog"
