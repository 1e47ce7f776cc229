"""How an entity is flattened into ``key = value`` rows for filters and facets.

Like Backstage's search table: keys are dotted paths, lower-cased; list items share
their key; values are lower-cased strings of at most 200 characters (longer ones are
not indexed). Relations are not flattened here: filters on ``relations.*`` read the
relations table directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_KEY_LENGTH = 200
MAX_VALUE_LENGTH = 200

FULL_TEXT_FIELDS = (
    ("metadata", "name"),
    ("metadata", "title"),
    ("metadata", "description"),
    ("spec", "type"),
    ("spec", "owner"),
    ("spec", "lifecycle"),
    ("spec", "system"),
)


# Filters on these read the entities table itself; indexing them would only add rows.
NOT_INDEXED = frozenset({"metadata.uid", "metadata.etag"})


def search_rows(entity: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(key, value, original value) rows for one entity."""
    rows = [
        (key, None if value is None else value.lower(), value)
        for key, value in _flatten(entity, "")
        if len(key) <= MAX_KEY_LENGTH
        and (value is None or len(value) <= MAX_VALUE_LENGTH)
        and key not in NOT_INDEXED
    ]
    return list(dict.fromkeys(rows))


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, str | None]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if prefix == "" and key in ("relations", "status"):
                continue
            yield from _flatten(item, f"{prefix}.{key}".lower() if prefix else str(key).lower())
    elif isinstance(value, list):
        for item in value:
            # As Backstage: a string item is also a key of its own, so that a filter can
            # require several (``metadata.tags.java=true,metadata.tags.go=true``).
            if isinstance(item, str):
                yield f"{prefix}.{item.lower()}", "true"
            yield from _flatten(item, prefix)
    elif isinstance(value, bool):
        yield prefix, "true" if value else "false"
    elif isinstance(value, int | float | str):
        yield prefix, str(value)
    elif value is None:
        yield prefix, None


def full_text(entity: dict[str, Any]) -> str:
    """The lower-cased text the catalog's search box matches against."""
    parts = [str(entity.get("kind", ""))]
    for section, key in FULL_TEXT_FIELDS:
        value = (entity.get(section) or {}).get(key)
        if isinstance(value, str):
            parts.append(value)
    parts.extend(str(t) for t in (entity.get("metadata") or {}).get("tags") or [])
    return " ".join(parts).lower()
