"""The audit log: an append-only record of every change and every refusal.

Routes that change something carry a dotted permission-style name
(``catalog.location.create``); :class:`AuditMiddleware` records each request to such a
route after it is answered: when, who, what, to which target (a route may name it in
``request.state.audit_target``), the outcome, the source address and the request id.
Nothing here can update or delete an event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Request
from sqlalchemy import DateTime, String, Text, and_, or_, select
from sqlalchemy.orm import Mapped, mapped_column
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from pavedroad.core.db import Base, Database
from pavedroad.core.errors import NotFoundError
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import isoformat, utcnow

log = logging.getLogger("pavedroad.audit")
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(400), index=True)
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int]
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


@dataclass
class AuditEvent:
    actor: str
    action: str
    target: str
    outcome: str
    status: int
    source_ip: str | None = None
    request_id: str | None = None


def record(db: Database, event: AuditEvent) -> None:
    values = {
        key: _printable(value) if isinstance(value, str) else value
        for key, value in event.__dict__.items()
    }
    with db.session() as session:
        session.add(AuditEventRow(id=new_id(), at=utcnow(), **values))


def _printable(text: str) -> str:
    """Control characters (a newline in a hostile name) are escaped, so one event is
    one line in every export and viewer."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


DENIED = (401, 403, 429)  # 429: refused for too many wrong passwords


def outcome_of(status: int) -> str:
    if status in DENIED:
        return "denied"
    return "success" if status < 400 else "failure"


def search(
    db: Database,
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    limit: int = 100,
    before: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first, filtered; ``before`` is an event id to page past."""
    statement = (
        select(AuditEventRow)
        .order_by(AuditEventRow.at.desc(), AuditEventRow.id.desc())
        .limit(limit)
    )
    if actor:
        statement = statement.where(AuditEventRow.actor == actor)
    if action:
        statement = statement.where(AuditEventRow.action.like(action.replace("*", "%")))
    if outcome:
        statement = statement.where(AuditEventRow.outcome == outcome)
    if before:
        with db.read_session() as session:
            anchor = session.get(AuditEventRow, before)
        if anchor is None:
            raise NotFoundError(f"no audit event {before}")
        statement = statement.where(
            or_(
                AuditEventRow.at < anchor.at,
                and_(AuditEventRow.at == anchor.at, AuditEventRow.id < anchor.id),
            )
        )
    with db.read_session() as session:
        return [as_dict(row) for row in session.scalars(statement)]


def as_dict(row: AuditEventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": isoformat(row.at),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "status": row.status,
        "sourceIp": row.source_ip,
        "requestId": row.request_id,
    }


def as_json_lines(events: list[dict[str, Any]]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event, separators=(",", ":")) + "\n"


class AuditMiddleware(BaseHTTPMiddleware):
    """Records every request to a named (mutating) route once it has been answered, and
    every refusal (401, 403, 429) of any request, reads included."""

    def __init__(self, app: Any, db: Database) -> None:
        super().__init__(app)
        self.db = db

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        action = getattr(route, "name", "") or ""
        named_change = request.method in MUTATING and "." in action
        refused = response.status_code in DENIED and not getattr(
            request.state, "refusal_recorded", False
        )
        if named_change or refused:
            params = request.scope.get("path_params") or {}
            target = (
                getattr(request.state, "audit_target", None)
                or ", ".join(f"{k}={v}" for k, v in params.items())
                or request.url.path
            )
            event = AuditEvent(
                actor=getattr(request.state, "actor_name", None) or "anonymous",
                action=action if "." in action else f"{request.method} {request.url.path}"[:100],
                target=target[:2000],
                outcome=outcome_of(response.status_code),
                status=response.status_code,
                source_ip=request.client.host if request.client else None,
                request_id=getattr(request.state, "request_id", None),
            )
            try:
                record(self.db, event)
            except Exception:  # the change happened; losing its record must be loud
                log.exception("could not write the audit event for %s %s", action, target)
        return response
