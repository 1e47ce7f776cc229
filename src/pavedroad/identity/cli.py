"""``pave user ...`` and ``pave can``: local accounts and explained access decisions.

These work on the configured database directly, like a first-start admin command. Each
change is written to the audit log with the actor ``local:<operating system user>``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from pavedroad.cli.output import Format, emit
from pavedroad.identity.policy import Role

if TYPE_CHECKING:
    from pavedroad.identity.service import IdentityService

user_app = typer.Typer(help="Manage local accounts (roles and passwords).", no_args_is_help=True)


def _service() -> IdentityService:
    from pavedroad.cli.main import load_settings
    from pavedroad.core.db import database_for
    from pavedroad.identity.service import IdentityService

    settings = load_settings()
    settings.ensure_home()
    db = database_for(settings)
    db.migrate()
    return IdentityService(db)


@contextmanager
def _audited(action: str, target: str) -> Iterator[IdentityService]:
    """Run a change and record it (success or failure) like the API records its own."""
    import getpass

    from pavedroad.core import audit
    from pavedroad.core.errors import ProblemError

    service = _service()
    event = audit.AuditEvent(
        actor=f"local:{getpass.getuser()}"[:400],
        action=action,
        target=target[:2000],
        outcome="success",
        status=200,
        source_ip="local",
    )
    try:
        yield service
    except ProblemError as exc:
        event.outcome, event.status = "failure", exc.status
        raise
    finally:
        audit.record(service.db, event)


def _read_password(password_stdin: bool) -> str:
    if password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@user_app.command("create")
def create(
    name: str = typer.Argument(..., help="The catalog User's name (e.g. alice)."),
    admin: bool = typer.Option(False, "--admin", help="Same as --role admin."),
    role: Role = typer.Option(Role.member, "--role", help="admin, member or viewer."),
    no_password: bool = typer.Option(False, "--no-password", help="No local sign-in."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Create an account; the password is prompted for (or read from stdin)."""
    password = None if no_password else _read_password(password_stdin)
    with _audited("identity.user.create", f"user:{name.lower()}") as service:
        row = service.create_account(name, Role.admin if admin else role, password)
    typer.echo(f"created {row.role} account {row.name} ({row.user_ref})")


@user_app.command("passwd")
def passwd(
    name: str = typer.Argument(...), password_stdin: bool = typer.Option(False, "--password-stdin")
) -> None:
    """Set an account's password."""
    password = _read_password(password_stdin)
    with _audited("identity.password.change", f"user:{name.lower()}") as service:
        service.set_password(name, password)
    typer.echo(f"password changed for {name}")


@user_app.command("link")
def sign_in_link(name: str = typer.Argument(..., help="The account to sign in as.")) -> None:
    """Print a one-time sign-in link for an account (valid 24 hours, works once)."""
    from pavedroad.cli.main import load_settings
    from pavedroad.identity.sessions import SessionService

    settings = load_settings()
    with _audited("identity.link.create", f"user:{name.lower()}") as service:
        token = SessionService(service.db, settings, service).create_link(name)
    typer.echo(f"{settings.public_url}/sign-in/link/{token}")


@user_app.command("role")
def set_role(name: str = typer.Argument(...), role: Role = typer.Argument(...)) -> None:
    """Change an account's role."""
    with _audited("identity.user.update", f"user:{name.lower()} role={role.value}") as service:
        service.set_role(name, role)
    typer.echo(f"{name} is now {role.value}")


@user_app.command("list")
def list_users(
    fmt: Format = typer.Option(Format.table, "--output", "-o"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List accounts with their roles."""
    accounts = _service().accounts()
    rows = [
        [
            a["name"],
            a["role"],
            "yes" if a["hasPassword"] else "no",
            "yes" if a["inCatalog"] else "no",
        ]
        for a in accounts
    ]
    emit(
        accounts,
        Format.json if as_json else fmt,
        [("name", ""), ("role", ""), ("password", ""), ("in catalog", "")],
        rows,
    )


def can(
    user: str = typer.Argument(..., help="A user name or user ref."),
    permission: str = typer.Argument(..., help="e.g. catalog.entity.delete"),
    entity: str = typer.Argument(
        None, help="[kind:][namespace/]name (kind defaults to component)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Whether USER may do PERMISSION (to ENTITY), and why. Exit 0 if allowed, 1 if not."""
    decision = _service().can(user, permission, entity)
    if as_json:
        from dataclasses import asdict

        emit(asdict(decision), Format.json)
    else:
        typer.echo(f"{'allowed' if decision.allowed else 'denied'}: {decision.reason}")
    raise typer.Exit(0 if decision.allowed else 1)


token_app = typer.Typer(
    help="Manage personal access tokens and groups' service tokens.", no_args_is_help=True
)


@token_app.command("create")
def create_token(
    name: str = typer.Argument(..., help="What the token is for, e.g. 'laptop CLI'."),
    user: str = typer.Option(
        None, "--user", "-u", help="The account the token acts as (or, with --group, its creator)."
    ),
    group: str = typer.Option(
        None, "--group", "-g", help="Make a service token acting as a member of this group."
    ),
    scope: list[str] = typer.Option(
        ["read", "write"], "--scope", "-s", help="read, write or admin (repeat for several)."
    ),
    expires_days: int = typer.Option(
        90, "--expires-days", min=0, help="Days until it expires (0: never)."
    ),
) -> None:
    """Create a personal token (--user) or a group's service token (--group); it is
    printed once and never shown again."""
    from datetime import timedelta

    from pavedroad.cli.output import fail

    if not user and not group:
        fail("name the account with --user, or the group of a service token with --group")
    action = "identity.service_token.create" if group else "identity.token.create"
    with _audited(action, f"group:{group}" if group else f"user:{user}") as service:
        info, secret = service.create_token(
            user or "pave-cli",
            name,
            scope,
            timedelta(days=expires_days) if expires_days else None,
            group=group,
        )
    owner = f"group {info['group']}" if info["group"] else info["account"]
    typer.echo(
        f"created token {info['id']} for {owner} "
        f"(scopes {', '.join(info['scopes'])}, expires {info['expiresAt'] or 'never'})"
    )
    typer.echo(secret)


@token_app.command("list")
def list_tokens(
    user: str = typer.Option(None, "--user", "-u", help="An account's personal tokens."),
    group: str = typer.Option(None, "--group", "-g", help="A group's service tokens."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List an account's tokens, or service tokens (all, or a group's); never secrets."""
    tokens = _service().tokens(user) if user else _service().service_tokens(group)
    rows = [
        [
            t["id"],
            t["group"] or t["account"],
            t["name"],
            ",".join(t["scopes"]),
            t["expiresAt"] or "never",
            "revoked" if t["revokedAt"] else "active",
        ]
        for t in tokens
    ]
    emit(
        tokens,
        Format.json if as_json else Format.table,
        [("id", ""), ("for", ""), ("name", ""), ("scopes", ""), ("expires", ""), ("state", "")],
        rows,
    )


@token_app.command("revoke")
def revoke_token(token_id: str = typer.Argument(...)) -> None:
    """Revoke a token at once."""
    with _audited("identity.token.revoke", f"token_id={token_id}") as service:
        service.revoke_token(token_id)
    typer.echo(f"revoked token {token_id}")


def login(
    url: str = typer.Argument(None, help="The server (default: the configured one)."),
    token_stdin: bool = typer.Option(
        False, "--token-stdin", help="Read a token from standard input."
    ),
    paste: bool = typer.Option(False, "--paste", help="Paste a token instead of approving."),
    device: bool = typer.Option(
        False, "--device", help="Approve in a browser even when standard input is not a terminal."
    ),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Print the approval link instead of opening a browser."
    ),
) -> None:
    """Sign the CLI in. By default a browser opens where you approve this CLI (signed in
    to the portal), and a new personal access token comes back; --paste or --token-stdin
    take a token you created. The token is checked, then stored for your user only
    (mode 0600)."""
    import httpx

    from pavedroad.cli import credentials
    from pavedroad.cli.main import load_settings
    from pavedroad.cli.output import fail

    settings = load_settings()
    base = (url or settings.public_url).rstrip("/")
    if token_stdin or (not sys.stdin.isatty() and not device):
        token = sys.stdin.readline().strip()
    elif paste:
        typer.echo(f"Create a token at {base}/settings or with `pave token create`.")
        token = str(typer.prompt("Token", hide_input=True)).strip()
    else:
        token = _approve_in_browser(base, open_browser=not no_browser)
    try:
        response = httpx.get(
            f"{base}/api/v1/identity/me", headers={"authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {base} ({exc.__class__.__name__})")
    if response.status_code != 200:
        fail("the server did not accept this token (unknown, revoked or expired)")
    me = response.json()
    stored = credentials.save(settings, credentials.Credentials(base, token))
    typer.echo(f"signed in to {base} as {me['name']} ({me['role']}); token kept in {stored}")


def _approve_in_browser(base: str, open_browser: bool) -> str:
    """Start a device grant, show its code, and poll until the browser approves."""
    import socket
    import time
    import webbrowser

    import httpx

    from pavedroad.cli.output import fail

    try:
        started = httpx.post(
            f"{base}/api/v1/identity/device",
            json={"clientName": f"pave CLI on {socket.gethostname()[:60]}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {base} ({exc.__class__.__name__})")
    if started.status_code != 201:
        fail(f"{base} cannot sign a CLI in through the browser (HTTP {started.status_code})")
    grant = started.json()
    typer.echo(f"Approve this CLI at {grant['verificationUriComplete']}")
    typer.echo(f"(check that the page shows the code {grant['userCode']})", err=False)
    if open_browser:
        webbrowser.open(grant["verificationUriComplete"])
    deadline = time.monotonic() + grant["expiresIn"]
    while time.monotonic() < deadline:
        time.sleep(grant["interval"])
        try:
            answer = httpx.post(
                f"{base}/api/v1/identity/device/token",
                json={"deviceCode": grant["deviceCode"]},
                timeout=30,
            )
        except httpx.HTTPError:
            continue  # a blip while waiting; keep polling until the code expires
        if answer.status_code == 200:
            return str(answer.json()["secret"])
        if answer.status_code != 400:
            fail(str(answer.json().get("detail", "the sign-in was refused")))
    fail("the code expired before it was approved; run `pave login` again")


def logout() -> None:
    """Forget the CLI's stored token."""
    from pavedroad.cli import credentials
    from pavedroad.cli.main import load_settings

    forgotten = credentials.forget(load_settings())
    typer.echo("signed out" if forgotten else "not signed in")


def whoami(server: str = typer.Option(None, "--server", envvar="PAVEDROAD_URL")) -> None:
    """Who the CLI is signed in as."""
    from pavedroad.cli.client import ApiClient
    from pavedroad.cli.main import load_settings

    me = ApiClient(load_settings(), server).request("GET", "/api/v1/identity/me")
    typer.echo(f"{me['name']} ({me['role']}), scopes {', '.join(me['scopes'])}")
