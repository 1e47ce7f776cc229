"""Signing in and out of the portal: the password form, one-time sign-in links and
sign-out. :func:`begin_session` is how every way of signing in ends (OIDC too)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from pavedroad.core.errors import ProblemError, TooManyRequestsError
from pavedroad.identity.http import client_ip, csrf_token
from pavedroad.identity.service import AuthenticationError
from pavedroad.identity.sessions import PRE_SESSION_COOKIE, SESSION_COOKIE, SessionService
from pavedroad.portal.templating import render
from pavedroad.settings import Settings

router = APIRouter(include_in_schema=False)

PRE_SESSION_MAX_AGE = 2 * 3600


def safe_next(next_url: str | None) -> str:
    """Only a path on this site: never ``//host``, a scheme, or a backslash trick."""
    if (
        not next_url
        or not next_url.startswith("/")
        or next_url.startswith(("//", "/\\"))
        or any(ord(c) < 32 for c in next_url)
        or next_url.startswith("/sign-")
    ):
        return "/"
    return next_url


def set_private_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int, path: str = "/"
) -> None:
    """A cookie scripts cannot read, sent on same-site navigation only, and over https
    only when the portal is served over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request.app.state.settings),
    )


def secure_cookies(settings: Settings) -> bool:
    """Cookies marked Secure: as configured, else when the public URL is https."""
    if settings.auth.secure_cookies is not None:
        return settings.auth.secure_cookies
    return settings.public_url.startswith("https://")


def begin_session(request: Request, user_name: str, via: str, next_url: str | None) -> Response:
    """Start a session for ``user_name`` and send the browser on to ``next_url``."""
    sessions: SessionService = request.app.state.sessions
    cookie, web_session = sessions.start(user_name, via, client_ip(request))
    request.state.actor_name = web_session.account
    response = RedirectResponse(safe_next(next_url), status_code=303)
    set_private_cookie(
        request, response, SESSION_COOKIE, cookie, int(sessions.lifetime.total_seconds())
    )
    response.delete_cookie(PRE_SESSION_COOKIE, path="/")
    return response


def form_token(request: Request) -> str:
    """The CSRF token this page's forms carry. A browser without a session gets a new
    one, which :func:`keep_form_token` stores in a signed cookie on the response."""
    token = csrf_token(request)
    if token is None:
        token = secrets.token_urlsafe(32)
        request.state.fresh_form_token = token
    return token


def keep_form_token(request: Request, response: Response) -> Response:
    """Set the cookie holding the token :func:`form_token` made, if it made one."""
    fresh = getattr(request.state, "fresh_form_token", None)
    if fresh:
        sessions: SessionService = request.app.state.sessions
        set_private_cookie(
            request, response, PRE_SESSION_COOKIE, sessions.signer.sign(fresh), PRE_SESSION_MAX_AGE
        )
    return response


def sign_in_page(
    request: Request,
    *,
    next_url: str | None,
    error: str | None = None,
    status_code: int = 200,
    username: str = "",
    link: str | None = None,
) -> Response:
    """The sign-in page, with a CSRF token the browser keeps in a signed cookie."""
    settings = request.app.state.settings
    response = render(
        request,
        "portal/sign_in.html",
        {
            "title": "Sign in",
            "csrf_token": form_token(request),
            "next": safe_next(next_url),
            "error": error,
            "username": username,
            "oidc": settings.auth.oidc,
            "link": link,
        },
        status_code=status_code,
    )
    if isinstance(error, str) and status_code == 429:
        response.headers["Retry-After"] = str(getattr(request.state, "retry_after", 60))
    return keep_form_token(request, response)


@router.get("/sign-in")
def sign_in_form(request: Request, next: str | None = None) -> Response:
    if request.state.web_session is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return sign_in_page(request, next_url=next)


@router.post("/sign-in", name="identity.session.create")
def sign_in(
    request: Request,
    username: Annotated[str, Form(max_length=400)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    sessions: SessionService = request.app.state.sessions
    name = username.strip()
    request.state.audit_target = f"user:{name.lower()[:100]}" if name else "sign-in"
    try:
        if not name or not password:
            raise AuthenticationError("enter your user name and password")
        sessions.check_password(name, password, client_ip(request))
    except ProblemError as exc:
        if isinstance(exc, TooManyRequestsError):
            request.state.retry_after = exc.extensions.get("retryAfter", 60)
        return sign_in_page(
            request, next_url=next, error=exc.detail, status_code=exc.status, username=name
        )
    return begin_session(request, name.lower(), "password", next)


@router.post("/sign-out", name="identity.session.delete")
def sign_out(request: Request) -> Response:
    web_session = request.state.web_session
    if web_session is not None:
        request.app.state.sessions.end(web_session)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/sign-in/link/{token}")
def sign_in_link_form(request: Request, token: str) -> Response:
    """A page with a button: following the link alone (a mail scanner, a preview)
    does not spend it."""
    return sign_in_page(request, next_url="/settings", link=token)


@router.post("/sign-in/link/{token}", name="identity.link.use")
def sign_in_with_link(request: Request, token: str) -> Response:
    request.state.audit_target = "sign-in link"
    try:
        account = request.app.state.sessions.use_link(token)
    except AuthenticationError as exc:
        return sign_in_page(request, next_url="/", error=exc.detail, status_code=401)
    return begin_session(request, account, "link", "/settings")
