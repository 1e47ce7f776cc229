"""Accounts and access decisions: what the CLI, API and later layers call."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from pavedroad.catalog.queries import CatalogReader
from pavedroad.catalog.refs import parse_ref
from pavedroad.catalog.validation import is_valid_object_name
from pavedroad.core.db import Database
from pavedroad.core.errors import ConflictError, InputError, NotFoundError, ProblemError
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.identity.models import AccountRow, TokenRow
from pavedroad.identity.policy import Actor, Decision, Role, decide

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "pvd_"
SCOPES = ("read", "write", "admin")
LAST_USED_GRANULARITY = timedelta(minutes=1)
_hasher = PasswordHasher()


class IdentityService:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def _reader(self) -> Iterator[CatalogReader]:
        with self.db.read_session() as session:
            yield CatalogReader(session)

    # -- accounts ----------------------------------------------------------------------

    def create_account(self, name: str, role: Role, password: str | None = None) -> AccountRow:
        """A local account for the catalog User ``name`` (which may be ingested later)."""
        if not is_valid_object_name(name):
            raise InputError(
                f"{name!r} is not a valid user name: use letters, digits and "
                "-_. between them, at most 63 characters"
            )
        row = AccountRow(
            id=new_id(),
            name=name.lower(),
            user_ref=f"user:default/{name.lower()}",
            role=role.value,
            password_hash=_hash(password) if password else None,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            raise ConflictError(f"an account named {name!r} already exists") from None
        return row

    def set_password(self, name: str, password: str) -> None:
        self._update(name, password_hash=_hash(password))

    def set_role(self, name: str, role: Role) -> None:
        self._update(name, role=role.value)

    def _update(self, name: str, **values: Any) -> None:
        with self.db.session() as session:
            row = session.scalar(select(AccountRow).where(AccountRow.name == name.lower()))
            if row is None:
                raise NotFoundError(f"no account named {name!r}; create it with `pave user create`")
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = utcnow()

    def accounts(self) -> list[dict[str, Any]]:
        with self.db.read_session() as session:
            rows = list(session.scalars(select(AccountRow).order_by(AccountRow.name)))
        with self._reader() as reader:
            found = reader.get_many([r.user_ref for r in rows], ["kind"])
        in_catalog = {r.user_ref for r, entity in zip(rows, found, strict=True) if entity}
        return [
            {
                "name": r.name,
                "userRef": r.user_ref,
                "role": r.role,
                "hasPassword": r.password_hash is not None,
                "disabled": r.disabled,
                "inCatalog": r.user_ref in in_catalog,
                "createdAt": isoformat(r.created_at),
            }
            for r in rows
        ]

    def has_password(self, name: str) -> bool:
        return self._account(name).password_hash is not None

    def verify_password(self, name: str, password: str) -> bool:
        with self.db.read_session() as session:
            row = session.scalar(select(AccountRow).where(AccountRow.name == name.lower()))
        if row is None or row.password_hash is None or row.disabled:
            _hasher.hash(password)  # same work either way: no timing hint that the name exists
            return False
        try:
            return _hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    # -- tokens ----------------------------------------------------------------------------

    def create_token(
        self,
        account: str,
        name: str,
        scopes: list[str],
        expires_in: timedelta | None = None,
        group: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """A new token for ``account`` (or, with ``group``, a service token of that group
        created by ``account``); the secret is returned once and never stored."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise InputError(
                f"token scopes must be some of {', '.join(SCOPES)}; got "
                f"{', '.join(unknown) or 'none'}"
            )
        if not name.strip() or len(name) > 100:
            raise InputError("a token needs a name of 1 to 100 characters")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InputError("a token's lifetime must be positive")
        group_ref = self._group(group) if group else None
        if group_ref is None:
            self._account(account)
        secret = secrets.token_urlsafe(32)
        row = TokenRow(
            id=new_id(),
            account=account.lower(),
            group_ref=group_ref,
            name=name.strip(),
            scopes=",".join(sorted(set(scopes))),
            secret_hash=secret_digest(secret),
            created_at=utcnow(),
            expires_at=utcnow() + expires_in if expires_in else None,
        )
        with self.db.session() as session:
            session.add(row)
        return _token_dict(row), f"{TOKEN_PREFIX}{row.id.replace('-', '')}_{secret}"

    def _group(self, group: str) -> str:
        ref = parse_ref(group, "group")
        if ref.kind != "group":
            raise InputError(f"service tokens belong to a group; {group!r} is a {ref.kind}")
        with self._reader() as reader:
            if reader.row_by_ref(ref.key) is None:
                raise NotFoundError(f"there is no group {ref.key} in the catalog")
        return ref.key

    def service_tokens(self, group: str | None = None) -> list[dict[str, Any]]:
        statement = select(TokenRow).where(TokenRow.group_ref.is_not(None))
        if group:
            statement = statement.where(TokenRow.group_ref == parse_ref(group, "group").key)
        with self.db.read_session() as session:
            rows = session.scalars(statement.order_by(TokenRow.created_at))
            return [_token_dict(row) for row in rows]

    def token(self, token_id: str) -> dict[str, Any]:
        with self.db.read_session() as session:
            row = session.get(TokenRow, token_id)
        if row is None:
            raise NotFoundError(f"no token {token_id}")
        return _token_dict(row)

    def tokens(self, account: str) -> list[dict[str, Any]]:
        with self.db.read_session() as session:
            rows = session.scalars(
                select(TokenRow)
                .where(TokenRow.account == account.lower(), TokenRow.group_ref.is_(None))
                .order_by(TokenRow.created_at)
            )
            return [_token_dict(row) for row in rows]

    def revoke_token(self, token_id: str) -> None:
        with self.db.session() as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                raise NotFoundError(f"no token {token_id}")
            row.revoked_at = row.revoked_at or utcnow()

    def authenticate(self, presented: str) -> tuple[Actor, frozenset[str]]:
        """The actor and scopes of a bearer token; :class:`AuthenticationError` if the
        token is malformed, unknown, revoked or expired (one message for all)."""
        refused = AuthenticationError("the token is not valid (unknown, revoked or expired)")
        if not presented.startswith(TOKEN_PREFIX) or presented.count("_") < 2:
            raise refused
        raw_id, _, secret = presented[len(TOKEN_PREFIX) :].partition("_")
        if len(raw_id) != 32 or not all(c in "0123456789abcdef" for c in raw_id):
            raise refused
        token_id = f"{raw_id[:8]}-{raw_id[8:12]}-{raw_id[12:16]}-{raw_id[16:20]}-{raw_id[20:]}"
        with self.db.read_session() as session:
            row = session.get(TokenRow, token_id)
        valid = row is not None and hmac.compare_digest(row.secret_hash, secret_digest(secret))
        now = utcnow()
        if (
            not valid
            or row is None
            or row.revoked_at is not None
            or (row.expires_at is not None and as_utc(row.expires_at) <= now)
        ):
            raise refused
        # Record use at most once a minute: a write per request would queue every
        # authenticated read behind SQLite's single writer.
        if row.last_used_at is None or now - as_utc(row.last_used_at) > LAST_USED_GRANULARITY:
            with self.db.session() as session:
                session.execute(
                    update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=now)
                )
        scopes = frozenset(row.scopes.split(","))
        if row.group_ref is not None:
            return Actor(f"token:{row.id}", Role.member, None, row.group_ref), scopes
        return self.actor(row.account), scopes

    def _account(self, name: str) -> AccountRow:
        with self.db.read_session() as session:
            row = session.scalar(select(AccountRow).where(AccountRow.name == name.lower()))
        if row is None:
            raise NotFoundError(f"no account named {name!r}; create it with `pave user create`")
        return row

    # -- decisions -----------------------------------------------------------------------

    def actor(self, name: str) -> Actor:
        """The account's role, or ``member`` for a catalog User without an account."""
        key = name.lower().removeprefix("user:default/").removeprefix("user:")
        with self.db.read_session() as session:
            row = session.scalar(select(AccountRow).where(AccountRow.name == key))
        if row is not None:
            return Actor(row.name, Role(row.role), row.user_ref)
        user_ref = f"user:default/{key}"
        with self._reader() as reader:
            if reader.row_by_ref(user_ref) is None:
                raise NotFoundError(f"no user {name!r}: neither an account nor a catalog User")
        return Actor(key, Role.member, user_ref)

    def can(self, user: str, permission: str, entity: str | None = None) -> Decision:
        actor = self.actor(user)
        with self._reader() as reader:
            return decide(reader, actor, permission, entity)


class AuthenticationError(ProblemError):
    status = 401
    title = "Not signed in"
    type_slug = "unauthenticated"


def secret_digest(secret: str) -> str:
    """How random secrets (tokens, session ids, sign-in links, device codes) are kept:
    they carry 256 random bits, so a fast hash is enough (unlike passwords)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _token_dict(row: TokenRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "account": row.account,
        "group": row.group_ref,
        "name": row.name,
        "scopes": row.scopes.split(","),
        "createdAt": isoformat(row.created_at),
        "expiresAt": isoformat(row.expires_at),
        "revokedAt": isoformat(row.revoked_at),
        "lastUsedAt": isoformat(row.last_used_at),
    }


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)
