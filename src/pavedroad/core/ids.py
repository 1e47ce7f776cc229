"""Identifiers: UUID-shaped, time-ordered (ULIDs), so new rows land at the end of indexes."""

from ulid import ULID


def new_id() -> str:
    """A new UUID-formatted ULID: unique, and sortable by creation time."""
    return str(ULID().to_uuid())
