"""The secret store: versioned, sealed values with check-and-set writes, soft delete,
rollback, generated values with rotation, and master key rotation.

Callers decide who may do what (the API and portal ask the access policy); the store
guarantees the rest: a value is sealed before it leaves the process, a stale expected
version is refused, every value read is on the audit record before it is returned
(and is not returned if the record cannot be written), and every value the store
handles is added to the process's masker so no log of this process shows it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pavedroad.core import audit, events
from pavedroad.core.db import Database
from pavedroad.core.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PayloadTooLargeError,
)
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.secrets.backend import SecretBackend, backend_for
from pavedroad.secrets.crypto import KeyRing, MasterKey, MasterKeyError, Sealed, seal, unseal
from pavedroad.secrets.generate import Generator, format_duration, parse_duration
from pavedroad.secrets.models import SecretRow, SecretVersionRow
from pavedroad.secrets.scopes import SecretScope, check_name
from pavedroad.settings import Settings

log = logging.getLogger("pavedroad.secrets")

MAX_VALUE_BYTES = 64 * 1024
SECRET_ROTATED = "SecretRotated"


@dataclass(frozen=True)
class Write:
    """Who writes, and the version they expect (``0``: the secret must not exist)."""

    actor: str
    expected_version: int | None = None


class SecretStore:
    def __init__(
        self, db: Database, settings: Settings, backend: SecretBackend | None = None
    ) -> None:
        """``backend``: where sealed values go; by default the one ``secrets.backend``
        names among those the plugins offer."""
        self.db = db
        self.backend = backend or backend_for(settings)
        self.versions_kept = settings.secrets.versions_kept
        with db.read_session() as session:
            key_ids = set(session.scalars(select(SecretRow.key_id).distinct()))
        self.keys = KeyRing(
            settings.home,
            settings.master_key.get_secret_value() if settings.master_key else None,
            [k.get_secret_value() for k in settings.previous_master_keys],
            create=not key_ids,
        )
        missing = sorted(k for k in key_ids if not self.keys.has(k))
        if missing:
            raise MasterKeyError(
                f"the master key (id {self.keys.current.id}) is not the one the stored "
                f"secrets were sealed with (id {', '.join(missing)}): set "
                "PAVEDROAD_MASTER_KEY, or restore the key file, to that key"
            )

    # -- writing ---------------------------------------------------------------------------

    def set(
        self,
        scope: SecretScope,
        name: str,
        value: str,
        write: Write,
        rotate_every: str | None = None,
    ) -> dict[str, Any]:
        """A new version with this value (the secret is created at version 1)."""
        return self._write(scope, name, value, "set", write, None, rotate_every)

    def generate(
        self,
        scope: SecretScope,
        name: str,
        generator: Generator,
        write: Write,
        rotate_every: str | None = None,
    ) -> dict[str, Any]:
        """A new version with a generated value; rotation makes new ones the same way."""
        return self._write(
            scope, name, generator.value(), "generated", write, generator, rotate_every
        )

    def rollback(self, scope: SecretScope, name: str, version: int, write: Write) -> dict[str, Any]:
        """A new version holding an earlier version's value."""
        value = self._value(self._row(scope, name), version)
        return self._write(scope, name, value, "rollback", write, None, None, keep_policy=True)

    def rotate(self, scope: SecretScope, name: str, actor: str) -> dict[str, Any]:
        """A newly generated value now (generated secrets only)."""
        row = self._row(scope, name)
        if row.generator is None:
            raise InputError(
                f"{name} was set by hand, so there is nothing to generate: set a new value"
            )
        generator = Generator.from_json(row.generator)
        meta = self._write(
            scope, name, generator.value(), "rotated", Write(actor), None, None, keep_policy=True
        )
        self._announce(scope, name, meta["version"], actor)
        return meta

    def rotate_due(self) -> int:
        """Rotate every generated secret whose rotation is due (the scheduler's job)."""
        with self.db.read_session() as session:
            due = list(
                session.execute(
                    select(SecretRow.entity_ref, SecretRow.environment, SecretRow.name).where(
                        SecretRow.rotation_due_at <= utcnow(),
                        SecretRow.generator.is_not(None),
                        SecretRow.deleted_at.is_(None),
                    )
                )
            )
        rotated = 0
        for entity_ref, environment, name in due:
            try:
                self.rotate(SecretScope(entity_ref, environment), name, "system:rotation")
                rotated += 1
            except Exception:  # one failure must not stop the others; it is retried next round
                log.exception("could not rotate secret %s of %s/%s", name, entity_ref, environment)
        return rotated

    def delete(self, scope: SecretScope, name: str) -> dict[str, Any]:
        """Soft delete: hidden and unreadable until restored; versions are kept."""
        with self.db.session() as session:
            row = self._row(scope, name, session, deleted=None)
            if row.deleted_at is None:
                row.deleted_at = utcnow()
            return _meta(row)

    def restore(self, scope: SecretScope, name: str) -> dict[str, Any]:
        with self.db.session() as session:
            row = self._row(scope, name, session, deleted=True)
            row.deleted_at = None
            return _meta(row)

    def _write(
        self,
        scope: SecretScope,
        name: str,
        value: str,
        origin: str,
        write: Write,
        generator: Generator | None,
        rotate_every: str | None,
        keep_policy: bool = False,
    ) -> dict[str, Any]:
        check_name(name)
        try:
            plaintext = value.encode()
        except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
            raise InputError("a secret value must be valid Unicode text") from None
        if len(plaintext) > MAX_VALUE_BYTES:
            raise PayloadTooLargeError(
                f"a secret value may be at most {MAX_VALUE_BYTES} bytes; this one is "
                f"{len(plaintext)}"
            )
        if not plaintext:
            raise InputError("a secret value cannot be empty")
        period = parse_duration(rotate_every) if rotate_every else None
        from pavedroad.secrets.masking import process_masker

        process_masker().add(value)
        now = utcnow()
        try:
            with self.db.session() as session:
                row = self._locked(session, scope, name)
                if row is None:
                    if write.expected_version not in (None, 0):
                        raise ConflictError(
                            f"{name} ({scope.label}) does not exist, so it is not at version "
                            f"{write.expected_version}"
                        )
                    row, data_key = self._create(session, scope, name, write.actor, now)
                else:
                    if row.deleted_at is not None:
                        raise ConflictError(f"{name} ({scope.label}) is deleted: restore it first")
                    if (
                        write.expected_version is not None
                        and write.expected_version != row.current_version
                    ):
                        raise ConflictError(
                            f"{name} ({scope.label}) is at version {row.current_version}, not "
                            f"{write.expected_version}: someone changed it meanwhile; read it "
                            "again and retry",
                            currentVersion=row.current_version,
                        )
                    data_key = self._data_key(row)
                version = row.current_version + 1
                sealed = seal(data_key, plaintext, _value_context(row.id, version))
                self.backend.put(_address(row.id, version), sealed.to_bytes(), session)
                session.add(
                    SecretVersionRow(
                        secret_id=row.id,
                        version=version,
                        origin=origin,
                        created_by=write.actor,
                        created_at=now,
                    )
                )
                row.current_version = version
                row.updated_by, row.updated_at = write.actor, now
                if not keep_policy:
                    row.generator = generator.to_json() if generator else None
                    row.rotate_every_seconds = period
                if row.rotate_every_seconds:
                    row.rotation_due_at = now + timedelta(seconds=row.rotate_every_seconds)
                else:
                    row.rotation_due_at = None
                self._prune(session, row)
                return _meta(row)
        except IntegrityError:  # two writers created the same secret at once
            raise ConflictError(
                f"{name} ({scope.label}) was created by someone else meanwhile; retry"
            ) from None

    def _create(
        self, session: Session, scope: SecretScope, name: str, actor: str, now: datetime
    ) -> tuple[SecretRow, bytes]:
        from pavedroad.secrets.crypto import new_data_key

        secret_id = new_id()
        data_key = new_data_key()
        key_id, wrapped = self.keys.wrap(data_key, _key_context(secret_id))
        row = SecretRow(
            id=secret_id,
            entity_ref=scope.entity_ref,
            environment=scope.environment,
            name=name,
            current_version=0,
            key_id=key_id,
            wrapped_key_nonce=wrapped.nonce,
            wrapped_key=wrapped.ciphertext,
            backend=self.backend.name,
            created_by=actor,
            created_at=now,
            updated_by=actor,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row, data_key

    def _prune(self, session: Session, row: SecretRow) -> None:
        oldest_kept = row.current_version - self.versions_kept + 1
        if oldest_kept <= 1:
            return
        old = list(
            session.scalars(
                select(SecretVersionRow.version).where(
                    SecretVersionRow.secret_id == row.id, SecretVersionRow.version < oldest_kept
                )
            )
        )
        if old:
            self.backend.delete([_address(row.id, v) for v in old], session)
            session.execute(
                delete(SecretVersionRow).where(
                    SecretVersionRow.secret_id == row.id, SecretVersionRow.version.in_(old)
                )
            )

    def _announce(self, scope: SecretScope, name: str, version: int, actor: str) -> None:
        events.emit(
            self.db,
            SECRET_ROTATED,
            f"{scope.label}/{name}",
            {
                "entity": scope.entity_ref or None,
                "environment": scope.environment or None,
                "name": name,
                "version": version,
                "by": actor,
            },
        )

    # -- reading -------------------------------------------------------------------------------

    def reveal(
        self, scope: SecretScope, name: str, version: int | None, record: audit.AuditEvent
    ) -> tuple[str, dict[str, Any]]:
        """The value (of the current or a given version). The read is recorded first:
        if the audit event cannot be written, nothing is returned."""
        row = self._row(scope, name)
        wanted = version or row.current_version
        value = self._value(row, wanted)  # a failed integrity check is not a read
        record.target = f"{scope.label}/{name} version {wanted}"
        audit.record(self.db, record)
        return value, _meta(row)

    def _value(self, row: SecretRow, version: int) -> str:
        with self.db.read_session() as session:
            kept = session.get(SecretVersionRow, (row.id, version))
            blob = self.backend.get(_address(row.id, version), session) if kept else None
        if blob is None:
            raise NotFoundError(
                f"{row.name} has no version {version}: versions 1 to {row.current_version} "
                f"existed and the last {self.versions_kept} are kept"
            )
        sealed = Sealed.from_bytes(blob)
        what = f"secret {row.name} version {version}"
        value = unseal(self._data_key(row), sealed, _value_context(row.id, version), what).decode()
        from pavedroad.secrets.masking import process_masker

        process_masker().add(value)
        return value

    def _data_key(self, row: SecretRow) -> bytes:
        return self.keys.unwrap(
            row.key_id,
            Sealed(row.wrapped_key_nonce, row.wrapped_key),
            _key_context(row.id),
            f"the data key of secret {row.name}",
        )

    def find(
        self,
        entity: str | None = None,
        environment: str | None = None,
        include_deleted: bool = False,
    ) -> list[dict[str, Any]]:
        """Metadata of the secrets of an entity and/or environment (``entity=""`` and
        ``environment=""``: those not scoped to one); never values."""
        statement = select(SecretRow).order_by(
            SecretRow.entity_ref, SecretRow.environment, SecretRow.name
        )
        if entity is not None:
            statement = statement.where(SecretRow.entity_ref == entity)
        if environment is not None:
            statement = statement.where(SecretRow.environment == environment)
        if not include_deleted:
            statement = statement.where(SecretRow.deleted_at.is_(None))
        with self.db.read_session() as session:
            return [_meta(row) for row in session.scalars(statement)]

    def history(self, scope: SecretScope, name: str) -> list[dict[str, Any]]:
        row = self._row(scope, name, deleted=None)
        with self.db.read_session() as session:
            versions = session.scalars(
                select(SecretVersionRow)
                .where(SecretVersionRow.secret_id == row.id)
                .order_by(SecretVersionRow.version.desc())
            )
            return [
                {
                    "version": v.version,
                    "origin": v.origin,
                    "createdBy": v.created_by,
                    "createdAt": isoformat(v.created_at),
                    "current": v.version == row.current_version,
                }
                for v in versions
            ]

    def metadata(self, scope: SecretScope, name: str) -> dict[str, Any]:
        return _meta(self._row(scope, name, deleted=None))

    # -- values in transit ---------------------------------------------------------------------

    def seal_transient(self, data: bytes, context: str) -> bytes:
        """``data`` sealed with the master key, for a value the platform holds only briefly
        (a template task's secret answers until the task ends); ``context`` binds it to
        its one use."""
        key_id, sealed = self.keys.wrap(data, context.encode())
        return key_id.encode() + b":" + sealed.to_bytes()

    def unseal_transient(self, blob: bytes, context: str) -> bytes:
        key_id, _, sealed = blob.partition(b":")
        return self.keys.unwrap(
            key_id.decode(), Sealed.from_bytes(sealed), context.encode(), "a sealed task value"
        )

    # -- the master key ------------------------------------------------------------------------

    def rotate_master_key(self, new: MasterKey | None = None) -> int:
        """Seal every data key with a new master key; values stay as they are. The new
        key becomes current first (see :meth:`KeyRing.install`), so the data keys are
        readable throughout: by the old key until re-sealed, by the new one after."""
        new = new or MasterKey.generate()
        self.keys.install(new)
        rewrapped = 0
        with self.db.read_session() as session:
            ids = list(session.scalars(select(SecretRow.id).where(SecretRow.key_id != new.id)))
        for secret_id in ids:
            with self.db.session() as session:
                row = session.get(SecretRow, secret_id)
                if row is None or row.key_id == new.id:
                    continue
                data_key = self._data_key(row)
                key_id, wrapped = self.keys.wrap(data_key, _key_context(row.id))
                row.key_id, row.wrapped_key_nonce, row.wrapped_key = (
                    key_id,
                    wrapped.nonce,
                    wrapped.ciphertext,
                )
                rewrapped += 1
        return rewrapped

    def key_ids(self) -> dict[str, int]:
        """How many secrets each master key id seals."""
        with self.db.read_session() as session:
            return dict(
                session.execute(
                    select(SecretRow.key_id, func.count()).group_by(SecretRow.key_id)
                ).all()
            )

    # -- rows ----------------------------------------------------------------------------------

    def _locked(self, session: Session, scope: SecretScope, name: str) -> SecretRow | None:
        return session.scalar(_by_name(scope, name).with_for_update())

    def _row(
        self,
        scope: SecretScope,
        name: str,
        session: Session | None = None,
        deleted: bool | None = False,
    ) -> SecretRow:
        """The secret; ``deleted``: False refuses a deleted one, True requires one, None
        takes either."""
        check_name(name)
        if session is None:
            with self.db.read_session() as reading:
                row = reading.scalar(_by_name(scope, name))
        else:
            row = session.scalar(_by_name(scope, name).with_for_update())
        if row is None:
            raise NotFoundError(f"there is no secret {name} ({scope.label})")
        if deleted is False and row.deleted_at is not None:
            raise NotFoundError(f"{name} ({scope.label}) is deleted; restore it to use it")
        if deleted is True and row.deleted_at is None:
            raise ConflictError(f"{name} ({scope.label}) is not deleted")
        return row


def _by_name(scope: SecretScope, name: str) -> Any:
    return select(SecretRow).where(
        SecretRow.entity_ref == scope.entity_ref,
        SecretRow.environment == scope.environment,
        SecretRow.name == name,
    )


def _address(secret_id: str, version: int) -> str:
    return f"{secret_id}/{version}"


def _key_context(secret_id: str) -> bytes:
    return f"pavedroad-data-key:{secret_id}".encode()


def _value_context(secret_id: str, version: int) -> bytes:
    return f"pavedroad-secret:{secret_id}:{version}".encode()


def _meta(row: SecretRow) -> dict[str, Any]:
    due = as_utc(row.rotation_due_at) if row.rotation_due_at else None
    return {
        "name": row.name,
        "entity": row.entity_ref or None,
        "environment": row.environment or None,
        "version": row.current_version,
        "generated": row.generator is not None,
        "rotateEvery": format_duration(row.rotate_every_seconds)
        if row.rotate_every_seconds
        else None,
        "rotationDueAt": isoformat(due),
        "rotationOverdue": bool(due and due <= utcnow()),
        "createdBy": row.created_by,
        "createdAt": isoformat(row.created_at),
        "updatedBy": row.updated_by,
        "updatedAt": isoformat(row.updated_at),
        "deletedAt": isoformat(row.deleted_at),
        "backend": row.backend,
    }
