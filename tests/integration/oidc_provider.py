"""A small OpenID Connect provider for tests, run as a process of its own:

    python tests/integration/oidc_provider.py --port 8123 \\
        --client portal:s3cret --client public-portal \\
        --redirect-uri http://127.0.0.1:7070/sign-in/oidc/callback \\
        --email bob@acme-retail.example --preferred-username bob

It serves discovery, a JWKS (an RSA key made at start), ``/authorize`` (which signs in
the configured user at once: there is no login form) and ``/token`` (which checks the
code, the PKCE verifier, the client's credentials and the redirect URI, and answers
with an ID token and an access token). Its issuer is ``http://127.0.0.1:<port>``.

To let tests try what a broken or hostile provider does, it misbehaves on request:
``POST /_test/mode`` with ``{"mode": ..., "user": {...}}`` sets how the next flows
go (see ``MODES``) and who signs in; ``POST /_test/rotate-key`` replaces the signing
key with a new one (a new ``kid``), as providers do when they rotate keys.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlencode

import uvicorn
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

MODES = {
    "ok": "a good ID token",
    "error": "/authorize answers error=access_denied instead of a code",
    "wrong_audience": "the ID token's aud is another client",
    "expired": "the ID token expired ten minutes ago",
    "alg_none": "an unsigned ID token (alg: none)",
    "hs256_public_key": "HS256 with the provider's public key as the HMAC secret",
    "bad_signature": "signed with a key the JWKS does not hold, under the published kid",
    "wrong_nonce": "the ID token's nonce is not the one the client sent",
    "wrong_issuer": "the ID token's iss is another issuer",
    "email_unverified": "the ID token says email_verified: false",
}
CODE_SECONDS = 60


@dataclass
class Client:
    client_id: str
    secret: str | None  # None: a public client, PKCE only


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: str
    user: dict[str, Any]
    mode: str
    expires: float


@dataclass
class Provider:
    issuer: str
    clients: dict[str, Client]
    redirect_uris: set[str]
    user: dict[str, Any]
    mode: str = "ok"
    key: RSAKey = field(default_factory=lambda: _new_key())
    grants: dict[str, Grant] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- tokens ------------------------------------------------------------------------

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.user["sub"],
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            **{k: v for k, v in grant.user.items() if k != "sub"},
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        header = {"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}
        mode = grant.mode
        if mode == "wrong_audience":
            claims["aud"] = "another-client"
        elif mode == "expired":
            claims["iat"], claims["exp"] = now - 900, now - 600
        elif mode == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-you-sent"
        elif mode == "wrong_issuer":
            claims["iss"] = "https://issuer.attacker.example"
        elif mode == "email_unverified":
            claims["email_verified"] = False
        elif mode == "alg_none":
            return f"{_b64_json({'alg': 'none', 'typ': 'JWT'})}.{_b64_json(claims)}."
        elif mode == "hs256_public_key":
            public_pem = self.key.as_pem(private=False)
            signing_input = (
                f"{_b64_json({'alg': 'HS256', 'kid': self.key.kid})}.{_b64_json(claims)}"
            )
            mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
            return f"{signing_input}.{_b64(mac)}"
        elif mode == "bad_signature":
            return jwt.encode(header, claims, _new_key(self.key.kid))
        return jwt.encode(header, claims, self.key)


def _new_key(kid: str | None = None) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid or secrets.token_hex(8), "use": "sig"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


# -- endpoints -------------------------------------------------------------------------


def build_app(provider: Provider) -> Starlette:
    async def discovery(request: Request) -> Response:
        base = provider.issuer
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "none",
                ],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code"],
            }
        )

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [provider.key.as_dict(private=False)]})

    async def authorize(request: Request) -> Response:
        params = request.query_params
        client = provider.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        # Errors about the client or the redirect URI must not redirect (RFC 6749 4.1.2.1).
        if client is None:
            return PlainTextResponse("unknown client_id", status_code=400)
        if redirect_uri not in provider.redirect_uris:
            return PlainTextResponse(f"unregistered redirect_uri {redirect_uri}", 400)
        state = params.get("state")

        def back(**answer: str) -> Response:
            if state is not None:
                answer["state"] = state
            return RedirectResponse(f"{redirect_uri}?{urlencode(answer)}", status_code=302)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in params.get("scope", "").split():
            return back(error="invalid_scope", error_description="the openid scope is required")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        with provider.lock:
            mode, user = provider.mode, dict(provider.user)
        if mode == "error":
            return back(error="access_denied", error_description="The user declined to sign in")
        code = secrets.token_urlsafe(32)
        with provider.lock:
            provider.grants[code] = Grant(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                code_challenge=params["code_challenge"],
                nonce=params.get("nonce"),
                scope=params.get("scope", ""),
                user=user,
                mode=mode,
                expires=time.time() + CODE_SECONDS,
            )
        return back(code=code)

    async def token(request: Request) -> Response:
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
        client, problem = _authenticate_client(provider, request, data)
        if problem is not None:
            return problem
        assert client is not None
        if data.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code is supported")
        with provider.lock:
            grant = provider.grants.pop(data.get("code", ""), None)  # a code works once
        if grant is None or grant.expires < time.time():
            return _oauth_error("invalid_grant", "the code is unknown, used or expired")
        if grant.client_id != client.client_id:
            return _oauth_error("invalid_grant", "the code was issued to another client")
        if data.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri differs from the authorization's")
        verifier = data.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(
            create_s256_code_challenge(verifier), grant.code_challenge
        ):
            return _oauth_error("invalid_grant", "the code_verifier does not match the challenge")
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(32),
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": grant.scope,
                "id_token": provider.id_token(grant),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def set_mode(request: Request) -> Response:
        body = await request.json()
        mode = body.get("mode", "ok")
        if mode not in MODES:
            return JSONResponse({"error": f"unknown mode {mode!r}", "modes": MODES}, 400)
        with provider.lock:
            provider.mode = mode
            if "user" in body:
                provider.user = dict(body["user"])
            return JSONResponse({"mode": provider.mode, "user": provider.user})

    async def rotate_key(request: Request) -> Response:
        with provider.lock:
            provider.key = _new_key()
            return JSONResponse({"kid": provider.key.kid})

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorize", authorize),
            Route("/token", token, methods=["POST"]),
            Route("/_test/mode", set_mode, methods=["POST"]),
            Route("/_test/rotate-key", rotate_key, methods=["POST"]),
        ]
    )


def _authenticate_client(
    provider: Provider, request: Request, data: dict[str, str]
) -> tuple[Client | None, Response | None]:
    """client_secret_basic, client_secret_post, or none for a public client."""
    refused = _oauth_error("invalid_client", "client authentication failed", 401)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return None, refused
        client_id, _, secret = (unquote(part) for part in decoded.partition(":"))
    else:
        client_id, secret = data.get("client_id", ""), data.get("client_secret", "")
    client = provider.clients.get(client_id)
    if client is None:
        return None, refused
    if client.secret is None:
        return (client, None) if not secret else (None, refused)
    if not secret or not hmac.compare_digest(secret, client.secret):
        return None, refused
    return client, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        help="ID:SECRET for a confidential client, ID for a public one (repeatable)",
    )
    parser.add_argument("--redirect-uri", action="append", default=[], required=True)
    parser.add_argument("--mode", default="ok", choices=sorted(MODES))
    parser.add_argument("--sub", default="user-0001")
    parser.add_argument("--email", default="bob@acme-retail.example")
    parser.add_argument("--preferred-username", default="bob")
    parser.add_argument("--name", default="Bob Okafor")
    args = parser.parse_args()
    clients = {}
    for text in args.client or ["portal"]:
        client_id, has_secret, secret = text.partition(":")
        clients[client_id] = Client(client_id, secret if has_secret else None)
    provider = Provider(
        issuer=f"http://127.0.0.1:{args.port}",
        clients=clients,
        redirect_uris=set(args.redirect_uri),
        user={
            "sub": args.sub,
            "email": args.email,
            "email_verified": True,
            "preferred_username": args.preferred_username,
            "name": args.name,
        },
        mode=args.mode,
    )
    uvicorn.run(build_app(provider), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
