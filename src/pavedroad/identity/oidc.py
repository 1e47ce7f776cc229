"""Single sign-on through OpenID Connect: the authorization code flow with PKCE.

``GET /sign-in/oidc`` sends the browser to the provider; the provider sends it back to
``GET /sign-in/oidc/callback`` with a code, which is exchanged for an ID token. The
token's signature and claims are checked, the catalog User it names is found, and a
portal session starts. What ties the two requests together (state, nonce, PKCE
verifier, the page to return to) rides in a signed cookie that lives ten minutes.

:class:`OidcClient` speaks to the provider (discovery, authorization URL, code exchange,
ID token validation); the two routes below only move the browser and record outcomes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2 import ClientAuth, OAuth2Client, OAuth2Error
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet
from starlette.responses import Response

from pavedroad.catalog.queries import EntityQuery
from pavedroad.catalog.validation import is_valid_object_name
from pavedroad.core import audit
from pavedroad.core.errors import ProblemError
from pavedroad.identity.http import client_ip
from pavedroad.identity.sessions import SessionService
from pavedroad.identity.web import (
    begin_session,
    secure_cookies,
    set_private_cookie,
    sign_in_page,
)
from pavedroad.settings import OidcSettings, Settings

FLOW_COOKIE = "pavedroad_oidc"
FLOW_PATH = "/sign-in/oidc"
FLOW_SECONDS = 600  # how long a browser may stay at the provider
DISCOVERY_TTL_SECONDS = 300.0
JWKS_TTL_SECONDS = 3600.0
LEEWAY_SECONDS = 60  # clock skew allowed on exp and iat
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_NEXT_LENGTH = 2000

router = APIRouter(include_in_schema=False)


class OidcError(Exception):
    """A sign-in refused or failed, with the sentence the user reads."""

    def __init__(self, message: str, status: int = 401, actor: str = "anonymous") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.actor = actor


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the provider's discovery document the code flow needs."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_endpoint_auth_methods: tuple[str, ...]


@dataclass(frozen=True)
class PendingSignIn:
    """What the callback must find again: kept in the flow cookie between the two."""

    state: str
    nonce: str
    code_verifier: str
    next: str | None = None


@dataclass(frozen=True)
class CallbackAnswer:
    """The query parameters the provider sends the browser back with."""

    code: str | None
    state: str | None
    iss: str | None
    error: str | None
    error_description: str | None


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    pending: PendingSignIn


class OidcClient:
    """One provider, as configured: discovery and keys are cached and thread-safe."""

    def __init__(
        self,
        settings: OidcSettings,
        redirect_url: str,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.redirect_url = redirect_url
        self.transport = transport  # tests may answer for the provider
        self._lock = threading.Lock()
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, KeySet] | None = None

    @property
    def discovery_url(self) -> str:
        return self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"

    # -- discovery and keys ---------------------------------------------------------------

    def metadata(self) -> ProviderMetadata:
        """The provider's endpoints, read from its discovery document (cached briefly)."""
        with self._lock:
            if self._metadata and time.monotonic() - self._metadata[0] < DISCOVERY_TTL_SECONDS:
                return self._metadata[1]
        document = self._get_json(self.discovery_url, "discovery document")
        missing = [
            name
            for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
            if not isinstance(document.get(name), str) or not document[name]
        ]
        if missing:
            raise OidcError(
                f"the provider's discovery document at {self.discovery_url} lacks "
                f"{', '.join(missing)}",
                status=502,
            )
        if document["issuer"] != self.settings.issuer:
            raise OidcError(
                f"the provider's discovery document names the issuer {document['issuer']!r}, "
                f"but auth.oidc.issuer is {self.settings.issuer!r}; they must be equal",
                status=502,
            )
        methods = document.get("token_endpoint_auth_methods_supported")
        metadata = ProviderMetadata(
            issuer=document["issuer"],
            authorization_endpoint=document["authorization_endpoint"],
            token_endpoint=document["token_endpoint"],
            jwks_uri=document["jwks_uri"],
            token_endpoint_auth_methods=tuple(m for m in methods or () if isinstance(m, str)),
        )
        with self._lock:
            self._metadata = (time.monotonic(), metadata)
        return metadata

    def key_set(self, refresh: bool = False) -> KeySet:
        """The provider's public signing keys (its JWKS), cached for an hour or until
        ``refresh`` asks for them again."""
        with self._lock:
            if not refresh and self._keys and time.monotonic() - self._keys[0] < JWKS_TTL_SECONDS:
                return self._keys[1]
        uri = self.metadata().jwks_uri
        document = self._get_json(uri, "signing keys (JWKS)")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, KeyError, TypeError, ValueError) as exc:
            raise OidcError(
                f"the provider's signing keys at {uri} are unusable: {exc}", 502
            ) from exc
        with self._lock:
            self._keys = (time.monotonic(), keys)
        return keys

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            with self._http() as http:
                response = http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(
                f"could not read the provider's {what} at {url}: {exc}", status=502
            ) from exc
        if not isinstance(document, dict):
            raise OidcError(f"the provider's {what} at {url} is not a JSON object", status=502)
        return document

    # -- the code flow --------------------------------------------------------------------

    def authorization_request(self, next_url: str | None = None) -> AuthorizationRequest:
        """Where to send the browser, with fresh state, nonce and PKCE verifier."""
        pending = PendingSignIn(
            state=generate_token(32),
            nonce=generate_token(32),
            code_verifier=generate_token(64),
            next=next_url,
        )
        url, _state = self._oauth_client(None).create_authorization_url(
            self.metadata().authorization_endpoint,
            state=pending.state,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
        )
        return AuthorizationRequest(url, pending)

    def exchange(self, code: str, code_verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for this authorization code."""
        token_endpoint = self.metadata().token_endpoint
        try:
            with self._http() as http:
                token = self._oauth_client(http).fetch_token(
                    token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except OAuth2Error as exc:
            detail = exc.description or exc.error
            raise OidcError(f"the provider refused to exchange the code: {detail}") from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(
                f"could not exchange the code at {token_endpoint}: {exc}", status=502
            ) from exc
        return dict(token)

    def _http(self) -> httpx.Client:
        return httpx.Client(timeout=HTTP_TIMEOUT, transport=self.transport)

    def _oauth_client(self, session: httpx.Client | None) -> OAuth2Client:
        return _TokenClient(
            session,
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret,
            token_endpoint_auth_method=self._auth_method(),
            scope=" ".join(self.settings.scopes),
            redirect_uri=self.redirect_url,
            code_challenge_method="S256",
        )

    def _auth_method(self) -> str:
        if not self.settings.client_secret:
            return "none"
        supported = self.metadata().token_endpoint_auth_methods
        # A provider that lists nothing supports client_secret_basic (RFC 8414).
        if "client_secret_post" in supported and "client_secret_basic" not in supported:
            return "client_secret_post"
        return "client_secret_basic"

    # -- the ID token -----------------------------------------------------------------------

    def validate_id_token(self, id_token: Any, nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature, algorithm, issuer, audience,
        times and nonce all check out; :class:`OidcError` saying which did not."""
        if not isinstance(id_token, str) or not id_token:
            raise OidcError("the provider's token response holds no ID token (id_token)")
        try:
            try:
                token = jwt.decode(id_token, self.key_set(), algorithms=self.settings.algorithms)
            except InvalidKeyIdError:  # the provider may have rotated its keys: look again
                token = jwt.decode(
                    id_token, self.key_set(refresh=True), algorithms=self.settings.algorithms
                )
            self._claims_registry(nonce).validate(token.claims)
        except JoseError as exc:
            raise OidcError(self._explain(exc, id_token)) from exc
        except ValueError as exc:  # a key that does not fit the token's algorithm, say
            raise OidcError(f"the ID token is not valid: {exc}") from exc
        claims = token.claims
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if len(audiences) > 1 and azp is None:
            raise OidcError("the ID token names several audiences but no authorized party (azp)")
        if azp is not None and azp != self.settings.client_id:
            raise OidcError(
                f"the ID token was issued to {azp!r} (azp), not to this portal's "
                f"client {self.settings.client_id!r}"
            )
        return claims

    def _claims_registry(self, nonce: str) -> jwt.JWTClaimsRegistry:
        return jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.settings.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )

    def _explain(self, error: JoseError, id_token: str) -> str:
        claims = _unverified_claims(id_token)
        if isinstance(error, UnsupportedAlgorithmError):
            allowed = ", ".join(self.settings.algorithms)
            return (
                f"the ID token is signed with {_unverified_header(id_token).get('alg')!r}, "
                f"which this portal does not accept (allowed: {allowed})"
            )
        if isinstance(error, InvalidKeyIdError):
            return "the ID token is signed with a key the provider does not publish"
        if isinstance(error, BadSignatureError):
            return "the ID token's signature does not verify with the provider's published keys"
        if isinstance(error, ExpiredTokenError):
            return "the ID token has expired; sign in again (or check this server's clock)"
        if isinstance(error, MissingClaimError):
            return f"the ID token lacks the claim(s) {error.claim}"
        if isinstance(error, ClaimError):
            return {
                "iss": f"the ID token was issued by {claims.get('iss')!r}, "
                f"not by {self.settings.issuer!r}",
                "aud": f"the ID token is meant for {claims.get('aud')!r}, "
                f"not for this portal's client {self.settings.client_id!r}",
                "nonce": "the ID token does not belong to this sign-in (nonce mismatch)",
                "iat": "the ID token claims to be issued in the future; check the clocks",
            }.get(error.claim, f"the ID token's {error.claim!r} claim is not valid")
        return f"the ID token is not valid: {error.description or error.error}"


class _HttpxClientAuth(ClientAuth, httpx.Auth):
    """authlib's token endpoint client authentication (basic, post or none), applied to
    an httpx request: authlib's own httpx integration is deprecated in favour of httpx2,
    which this project does not use."""

    requires_request_body = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url, headers, body = self.prepare(
            request.method, str(request.url), dict(request.headers), request.content.decode()
        )
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        yield httpx.Request(request.method, url, headers=headers, content=body)


class _TokenClient(OAuth2Client):
    client_auth_class = _HttpxClientAuth


def _unverified_header(id_token: str) -> dict[str, Any]:
    return _decode_segment(id_token, 0)


def _unverified_claims(id_token: str) -> dict[str, Any]:
    """The claims, unchecked: only to say in an error message what the token claimed."""
    return _decode_segment(id_token, 1)


def _decode_segment(id_token: str, index: int) -> dict[str, Any]:
    try:
        segment = id_token.split(".")[index]
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return value if isinstance(value, dict) else {}


# -- which catalog User --------------------------------------------------------------------


def catalog_user(request: Request, claim: str, claims: dict[str, Any]) -> str:
    """The name of the catalog User the ID token's ``claim`` names; :class:`OidcError`
    (403) when there is none: sign-in never creates users."""
    value = claims.get(claim)
    if not isinstance(value, str) or not value.strip():
        raise OidcError(f"the ID token has no {claim!r} claim to find the catalog User by", 403)
    value = value.strip()
    if claim == "email":
        return _user_by_email(request, value, claims)
    if not is_valid_object_name(value):
        raise OidcError(f"{value!r} ({claim}) cannot be a catalog User's name", 403, value)
    with request.app.state.catalog.reader() as reader:
        found = reader.row_by_ref(f"user:default/{value}") is not None
    if not found:
        raise OidcError(
            f"no catalog User is named {value!r} ({claim}); ask an admin to add one", 403, value
        )
    return value


def _user_by_email(request: Request, email: str, claims: dict[str, Any]) -> str:
    if claims.get("email_verified") is False:
        raise OidcError(
            f"the provider has not verified the email {email}; verify it there first", 403, email
        )
    query = EntityQuery(
        filter={"$all": [{"kind": "user"}, {"spec.profile.email": email}]},
        fields=["metadata.name", "metadata.namespace"],
        limit=2,
    )
    with request.app.state.catalog.reader() as reader:
        users = reader.query(query).items
    users = [u for u in users if u["metadata"].get("namespace", "default") == "default"]
    if not users:
        raise OidcError(
            f"no catalog User has the email {email}; ask an admin to add one", 403, email
        )
    if len(users) > 1:
        names = ", ".join(u["metadata"]["name"] for u in users)
        raise OidcError(
            f"more than one catalog User has the email {email} ({names}); "
            "ask an admin to keep emails unique",
            403,
            email,
        )
    return str(users[0]["metadata"]["name"])


# -- routes ----------------------------------------------------------------------------------


@router.get("/sign-in/oidc")
def start_sign_in(request: Request, next: str | None = None) -> Response:
    """Send the browser to the provider, remembering the flow in a signed cookie."""
    client = _client(request)
    if client is None:
        return _not_configured(request)
    next_url = next if next and len(next) <= MAX_NEXT_LENGTH else None
    try:
        authorization = client.authorization_request(next_url)
    except OidcError as exc:
        return _refuse(request, exc, next_url)
    response = RedirectResponse(authorization.url, status_code=303)
    set_private_cookie(
        request,
        response,
        FLOW_COOKIE,
        _sessions(request).signer.sign(_encode(authorization.pending)),
        FLOW_SECONDS,
        FLOW_PATH,
    )
    return response


@router.get("/sign-in/oidc/callback")
def finish_sign_in(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    iss: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> Response:
    """Check the provider's answer and start a session for the catalog User it names."""
    client = _client(request)
    if client is None:
        return _not_configured(request)
    pending = _read_pending(request)
    next_url = pending.next if pending else None
    try:
        answer = CallbackAnswer(code, state, iss, error, error_description)
        user_name = _complete(request, client, pending, answer)
        response = _begin_session(request, user_name, next_url)
    except OidcError as exc:
        response = _refuse(request, exc, next_url)
    else:
        _record(request, user_name, response.status_code)
    response.delete_cookie(
        FLOW_COOKIE,
        path=FLOW_PATH,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request.app.state.settings),
    )
    return response


def _complete(
    request: Request, client: OidcClient, pending: PendingSignIn | None, answer: CallbackAnswer
) -> str:
    """The catalog User's name once every check passed; :class:`OidcError` otherwise."""
    label = client.settings.label
    if answer.error:
        reason = (answer.error_description or answer.error)[:300]
        raise OidcError(f"{label} did not sign you in: {reason} ({answer.error[:100]})")
    if pending is None:
        raise OidcError(
            "this sign-in was not started in this browser, or took longer than "
            f"{FLOW_SECONDS // 60} minutes; start again"
        )
    if not answer.state or not hmac.compare_digest(answer.state, pending.state):
        raise OidcError(
            f"the answer from {label} does not belong to the sign-in this browser "
            "started (state mismatch); start again"
        )
    if answer.iss is not None and answer.iss != client.settings.issuer:
        # RFC 9207: an answer from another provider, mixed up with this one.
        raise OidcError(f"the answer comes from {answer.iss!r}, not from {label}")
    if not answer.code:
        raise OidcError(f"{label} sent no authorization code back")
    tokens = client.exchange(answer.code, pending.code_verifier)
    claims = client.validate_id_token(tokens.get("id_token"), pending.nonce)
    return catalog_user(request, client.settings.user_claim, claims)


def _begin_session(request: Request, user_name: str, next_url: str | None) -> Response:
    try:
        return begin_session(request, user_name, via="oidc", next_url=next_url)
    except ProblemError as exc:
        raise OidcError(exc.detail, exc.status, user_name) from exc


def _client(request: Request) -> OidcClient | None:
    """The app's client for its configured provider; ``None`` if OIDC is not set up."""
    settings: Settings = request.app.state.settings
    oidc = settings.auth.oidc
    if oidc is None:
        return None
    client: OidcClient | None = getattr(request.app.state, "oidc_client", None)
    if client is None or client.settings is not oidc:
        redirect_url = oidc.redirect_url or f"{settings.public_url}{FLOW_PATH}/callback"
        client = OidcClient(oidc, redirect_url)
        request.app.state.oidc_client = client
    return client


def _sessions(request: Request) -> SessionService:
    return request.app.state.sessions


def _encode(pending: PendingSignIn) -> str:
    raw = json.dumps(asdict(pending), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_pending(request: Request) -> PendingSignIn | None:
    """The flow this browser started, if its cookie is present, intact and fresh."""
    cookie = request.cookies.get(FLOW_COOKIE)
    if not cookie:
        return None
    value = _sessions(request).signer.unsign(cookie, max_age_seconds=FLOW_SECONDS)
    if value is None:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        return PendingSignIn(**data)
    except (ValueError, TypeError, binascii.Error):
        return None


def _refuse(request: Request, error: OidcError, next_url: str | None) -> Response:
    """The sign-in page again, saying what went wrong (its forms keep working)."""
    _record(request, error.actor, error.status)
    return sign_in_page(request, next_url=next_url, error=error.message, status_code=error.status)


def _not_configured(request: Request) -> Response:
    from pavedroad.portal.views import error_page

    return error_page(
        request,
        404,
        "Single sign-on is not configured",
        "This portal has no OpenID Connect provider: an admin sets auth.oidc in "
        "pavedroad.yaml to turn single sign-on on (see docs/oidc.md).",
    )


def _record(request: Request, actor: str, status: int) -> None:
    audit.record(
        request.app.state.db,
        audit.AuditEvent(
            actor=actor[:400],
            action="identity.session.create",
            target="oidc",
            outcome=audit.outcome_of(status),
            status=status,
            source_ip=client_ip(request),
            request_id=getattr(request.state, "request_id", None),
        ),
    )
