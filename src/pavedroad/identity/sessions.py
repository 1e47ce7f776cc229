"""Portal sessions, one-time sign-in links and the password rate limit.

A session cookie holds a random session id and an HMAC over it, so a tampered cookie
is refused before the database is asked. The database keeps only a hash of the id,
with the session's account, expiry and CSRF token; signing out marks the row revoked,
so a copied cookie dies with the session. One-time sign-in links (the first admin's)
and the failed-password ledger live here too: all three are about starting a session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import DateTime, String, delete, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from pavedroad.core.db import Base, Database
from pavedroad.core.errors import InputError, TooManyRequestsError
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import as_utc, utcnow
from pavedroad.identity.service import AuthenticationError, IdentityService, secret_digest
from pavedroad.settings import Settings

SESSION_COOKIE = "pavedroad_session"
PRE_SESSION_COOKIE = "pavedroad_csrf"  # the CSRF token of a browser not yet signed in
SIGN_IN_LINK_TTL = timedelta(hours=24)
LAST_SEEN_GRANULARITY = timedelta(minutes=1)


class SessionRow(Base):
    __tablename__ = "identity_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(63), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(16))
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SignInLinkRow(Base):
    __tablename__ = "identity_sign_in_links"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SignInFailureRow(Base):
    """One wrong password: who was tried, from where, when."""

    __tablename__ = "identity_sign_in_failures"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account: Mapped[str] = mapped_column(String(400))
    source_ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Signer:
    """HMAC-SHA256 signatures with an issue time: ``value.timestamp.signature``."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, value: str) -> str:
        payload = f"{value}.{int(time.time())}"
        return f"{payload}.{self._mac(payload)}"

    def unsign(self, signed: str, max_age_seconds: float | None = None) -> str | None:
        """The value, or ``None`` when the signature is wrong or older than allowed."""
        payload, _, signature = signed.rpartition(".")
        value, _, issued = payload.rpartition(".")
        if not value or not issued.isdigit():
            return None
        if not hmac.compare_digest(signature, self._mac(payload)):
            return None
        if max_age_seconds is not None and time.time() - int(issued) > max_age_seconds:
            return None
        return value


def secret_key(settings: Settings) -> bytes:
    """The configured key, else one kept in the home folder (created once, mode 0600)."""
    if settings.auth.secret_key:
        return settings.auth.secret_key.encode()
    path = settings.ensure_home() / "session.key"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable key; delete it to have a new one made")
    return key.encode()


@dataclass(frozen=True)
class WebSession:
    id_hash: str
    account: str
    csrf_token: str
    expires_at: datetime


class SessionService:
    def __init__(self, db: Database, settings: Settings, identity: IdentityService) -> None:
        self.db = db
        self.identity = identity
        self.signer = Signer(secret_key(settings))
        self.lifetime = timedelta(hours=settings.auth.session_hours)
        self.max_failures = settings.auth.max_failed_sign_ins
        self.failure_window = timedelta(minutes=settings.auth.failed_sign_in_window_minutes)

    # -- sessions ----------------------------------------------------------------------

    def start(self, account: str, via: str, source_ip: str | None) -> tuple[str, WebSession]:
        """A new session; returns the cookie value (shown to the browser only)."""
        session_id = secrets.token_urlsafe(32)
        now = utcnow()
        row = SessionRow(
            id_hash=secret_digest(session_id),
            account=account.lower(),
            csrf_token=secrets.token_urlsafe(32),
            via=via,
            source_ip=source_ip,
            created_at=now,
            expires_at=now + self.lifetime,
            last_seen_at=now,
        )
        with self.db.session() as session:
            session.add(row)
        return self.signer.sign(session_id), _web_session(row)

    def resolve(self, cookie: str) -> WebSession | None:
        """The live session a cookie names; ``None`` if forged, ended or expired."""
        session_id = self.signer.unsign(cookie)
        if session_id is None:
            return None
        id_hash = secret_digest(session_id)
        with self.db.read_session() as session:
            row = session.get(SessionRow, id_hash)
        now = utcnow()
        if row is None or row.revoked_at is not None or as_utc(row.expires_at) <= now:
            return None
        if now - as_utc(row.last_seen_at) > LAST_SEEN_GRANULARITY:
            with self.db.session() as session:
                session.execute(
                    update(SessionRow).where(SessionRow.id_hash == id_hash).values(last_seen_at=now)
                )
        return _web_session(row)

    def end(self, web_session: WebSession) -> None:
        with self.db.session() as session:
            session.execute(
                update(SessionRow)
                .where(SessionRow.id_hash == web_session.id_hash)
                .values(revoked_at=utcnow())
            )

    def end_all(self, account: str) -> int:
        """End every live session of an account (after a password change, say)."""
        with self.db.session() as session:
            result = session.execute(
                update(SessionRow)
                .where(SessionRow.account == account.lower(), SessionRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- passwords, with a limit on wrong guesses -----------------------------------------

    def check_password(self, account: str, password: str, source_ip: str) -> None:
        """Raise unless the password is right; after ``max_failed_sign_ins`` wrong ones
        for this account from this address within the window, refuse without checking."""
        key = account.strip().lower()[:400]
        since = utcnow() - self.failure_window
        with self.db.read_session() as session:
            failures, oldest = session.execute(
                select(func.count(), func.min(SignInFailureRow.at)).where(
                    SignInFailureRow.account == key,
                    SignInFailureRow.source_ip == source_ip,
                    SignInFailureRow.at > since,
                )
            ).one()
        if failures >= self.max_failures:
            retry = int((as_utc(oldest) + self.failure_window - utcnow()).total_seconds()) + 1
            raise TooManyRequestsError(
                f"too many wrong passwords for {account} from this address; "
                f"try again in {max(retry, 1)} seconds",
                retryAfter=max(retry, 1),
            )
        if self.identity.verify_password(key, password):
            with self.db.session() as session:
                session.execute(
                    delete(SignInFailureRow).where(
                        SignInFailureRow.account == key, SignInFailureRow.source_ip == source_ip
                    )
                )
            return
        with self.db.session() as session:
            session.add(
                SignInFailureRow(id=new_id(), account=key, source_ip=source_ip, at=utcnow())
            )
        raise AuthenticationError("wrong user name or password")

    def change_password(self, account: str, current: str | None, new: str, source_ip: str) -> None:
        """Set a password, checking the current one (within the wrong-password limit)
        when there is one; every session of the account ends."""
        if self.identity.has_password(account):
            if not current:
                raise InputError("enter your current password")
            try:
                self.check_password(account, current, source_ip)
            except AuthenticationError:  # too many wrong ones (429) passes through as it is
                raise InputError("the current password is wrong") from None
        self.identity.set_password(account, new)
        self.end_all(account)

    # -- one-time sign-in links ----------------------------------------------------------

    def create_link(self, account: str, ttl: timedelta = SIGN_IN_LINK_TTL) -> str:
        self.identity.actor(account)  # the account must exist
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.session() as session:
            session.add(
                SignInLinkRow(
                    id_hash=secret_digest(token),
                    account=account.lower(),
                    created_at=now,
                    expires_at=now + ttl,
                )
            )
        return token

    def use_link(self, token: str) -> str:
        """The account a link signs in as; the link is spent by this call."""
        id_hash = secret_digest(token)
        with self.db.session() as session:
            row = session.get(SignInLinkRow, id_hash)
            live = row is not None and as_utc(row.expires_at) > utcnow()
            # Only one of two simultaneous uses can flip used_at from NULL.
            spent = session.execute(
                update(SignInLinkRow)
                .where(SignInLinkRow.id_hash == id_hash, SignInLinkRow.used_at.is_(None))
                .values(used_at=utcnow())
            )
            if row is None or not live or not spent.rowcount:  # type: ignore[attr-defined]
                raise AuthenticationError(
                    "this sign-in link is not valid: it was used already, has expired or "
                    "never existed; `pave user link NAME` makes a new one"
                )
            return row.account


def _web_session(row: SessionRow) -> WebSession:
    return WebSession(row.id_hash, row.account, row.csrf_token, as_utc(row.expires_at))
