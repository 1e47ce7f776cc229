"""Platform events: a durable record of things that happened (``SecretRotated``, ...)
that other layers react to.

:func:`emit` stores the event, then calls the ``pavedroad_event`` hook in this process
(with the database it was stored in, for listeners that act on it).
A layer in another process (a worker) reads the stored events after a cursor with
:func:`since`, so no event is lost when nobody was listening at the time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from pavedroad.core.db import Base, Database
from pavedroad.core.ids import new_id
from pavedroad.core.timeutil import isoformat, utcnow

log = logging.getLogger("pavedroad.events")


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    subject: Mapped[str] = mapped_column(String(1000))
    data: Mapped[str] = mapped_column(Text)


@dataclass(frozen=True)
class Event:
    id: str
    at: datetime
    type: str
    subject: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": isoformat(self.at),
            "type": self.type,
            "subject": self.subject,
            "data": self.data,
        }


def emit(db: Database, type: str, subject: str, data: dict[str, Any]) -> Event:
    event = Event(new_id(), utcnow(), type, subject, data)
    with db.session() as session:
        session.add(
            EventRow(
                id=event.id,
                at=event.at,
                type=type,
                subject=subject[:1000],
                data=json.dumps(data, separators=(",", ":")),
            )
        )
    from pavedroad.core.plugins import plugin_manager

    try:
        plugin_manager().hook.pavedroad_event(event=event, db=db)
    except Exception:  # a listener's bug must not undo what already happened
        log.exception("a pavedroad_event listener failed on %s %s", type, subject)
    return event


def since(
    db: Database, after: str | None = None, type: str | None = None, limit: int = 100
) -> list[Event]:
    """Events in the order they happened, after the event id ``after``."""
    statement = select(EventRow).order_by(EventRow.id).limit(limit)
    if after:
        statement = statement.where(EventRow.id > after)
    if type:
        statement = statement.where(EventRow.type == type)
    with db.read_session() as session:
        return [
            Event(row.id, row.at, row.type, row.subject, json.loads(row.data))
            for row in session.scalars(statement)
        ]
