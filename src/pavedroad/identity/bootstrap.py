"""First start: there is always someone who can sign in.

``pave up`` on an empty database creates the ``admin`` account. Its password comes
from ``PAVEDROAD_ADMIN_PASSWORD``; without one, a one-time sign-in link is printed on
every start until an admin has signed in or has a password. ``pave up --demo`` gives
each demo user an account with a generated password, kept in
``$PAVEDROAD_HOME/demo-accounts.txt`` (mode 0600) and printed at start.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from pavedroad.core import audit
from pavedroad.identity.models import AccountRow
from pavedroad.identity.policy import Role
from pavedroad.identity.service import IdentityService
from pavedroad.identity.sessions import SessionRow, SessionService

FIRST_ADMIN = "admin"
DEMO_ACCOUNTS_FILE = "demo-accounts.txt"
# Demo users with a role other than member (see examples/demo/org/users.yaml).
DEMO_ROLES = {"alice": Role.admin, "liam": Role.viewer}


@dataclass(frozen=True)
class DemoAccount:
    name: str
    role: str
    password: str


def ensure_first_admin(
    identity: IdentityService, sessions: SessionService, public_url: str, password: str | None
) -> str | None:
    """Create the first admin if there is none; the sign-in link to print, if any."""
    with identity.db.read_session() as session:
        admins = list(session.scalars(select(AccountRow).where(AccountRow.role == Role.admin)))
        signed_in = session.scalar(
            select(func.count())
            .select_from(SessionRow)
            .where(SessionRow.account.in_([a.name for a in admins]))
        )
    if not admins:
        identity.create_account(FIRST_ADMIN, Role.admin, password)
        _record(identity, "identity.user.create", FIRST_ADMIN)
        if password:
            return None
        first = FIRST_ADMIN
    elif signed_in or any(a.password_hash for a in admins):
        return None
    else:
        first = admins[0].name
    return f"{public_url}/sign-in/link/{sessions.create_link(first)}"


def ensure_demo_accounts(
    identity: IdentityService, home: Path, users: list[str]
) -> list[DemoAccount]:
    """An account for every demo user, with the password kept in the home folder."""
    path = home / DEMO_ACCOUNTS_FILE
    known = _read_demo_accounts(path)
    existing = {a["name"] for a in identity.accounts()}
    for name in users:
        if name in existing and name in known:
            continue
        role = DEMO_ROLES.get(name, Role.member)
        password = secrets.token_urlsafe(9)
        if name in existing:
            identity.set_password(name, password)
            _record(identity, "identity.password.change", name)
        else:
            identity.create_account(name, role, password)
            _record(identity, "identity.user.create", name)
        known[name] = DemoAccount(name, role.value, password)
    _write_demo_accounts(path, known)
    return [known[name] for name in users]


def _record(identity: IdentityService, action: str, account: str) -> None:
    audit.record(
        identity.db,
        audit.AuditEvent(
            actor="system:first-start",
            action=action,
            target=f"user:{account}",
            outcome="success",
            status=200,
            source_ip="local",
        ),
    )


def _read_demo_accounts(path: Path) -> dict[str, DemoAccount]:
    if not path.is_file():
        return {}
    found: dict[str, DemoAccount] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            found[parts[0]] = DemoAccount(*parts)
    return found


def _write_demo_accounts(path: Path, accounts: dict[str, DemoAccount]) -> None:
    text = "# demo accounts: name role password\n" + "".join(
        f"{a.name} {a.role} {a.password}\n" for a in accounts.values()
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
