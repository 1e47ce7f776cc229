"""Where sealed secret values are kept.

Values are sealed (encrypted with the secret's data key) before any backend sees them,
so a backend only keeps opaque bytes by address (``<secret id>/<version>``). The
built-in :class:`DatabaseBackend` keeps them in the platform's database, so every
server replica reads the same values; a plugin adds another (Vault, a cloud secret
manager) through the ``pavedroad_secret_backends`` hook and ``secrets.backend``.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import delete
from sqlalchemy.orm import Session

from pavedroad.core.errors import ProblemError
from pavedroad.secrets.models import SecretValueRow


class BackendError(ProblemError):
    """The configured backend is not installed: the platform does not start."""

    status = 500
    title = "Secret backend problem"
    type_slug = "secret-backend"


class SecretBackend(Protocol):
    name: str

    def put(self, address: str, sealed: bytes, session: Session) -> None:
        """Keep ``sealed`` at ``address`` (``session`` is the write transaction of the
        secret's metadata: a backend in the same database should use it)."""

    def get(self, address: str, session: Session) -> bytes | None: ...

    def delete(self, addresses: list[str], session: Session) -> None: ...


class DatabaseBackend:
    name = "database"

    def put(self, address: str, sealed: bytes, session: Session) -> None:
        session.merge(SecretValueRow(address=address, sealed=sealed))

    def get(self, address: str, session: Session) -> bytes | None:
        row = session.get(SecretValueRow, address)
        return row.sealed if row else None

    def delete(self, addresses: list[str], session: Session) -> None:
        if addresses:
            session.execute(delete(SecretValueRow).where(SecretValueRow.address.in_(addresses)))


def backend_for(settings: Any) -> SecretBackend:
    """The backend ``secrets.backend`` names, among those the plugins offer."""
    from pavedroad.core.plugins import plugin_manager

    offered: dict[str, SecretBackend] = {}
    for backends in plugin_manager().hook.pavedroad_secret_backends(settings=settings):
        for backend in backends or []:
            offered.setdefault(backend.name, backend)
    wanted = settings.secrets.backend
    if wanted not in offered:
        raise BackendError(
            f"secrets.backend is {wanted!r}, but the installed plugins offer only "
            f"{', '.join(sorted(offered))}"
        )
    return offered[wanted]
