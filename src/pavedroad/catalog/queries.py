"""Reading the catalog: filters, full-text search, ordering, cursor pages, facets,
lookups by ref and uid, relation graphs and ancestry.

Filters are Backstage's filter predicates: ``{"kind": "component"}``,
``{"spec.type": {"$in": [...]}}``, ``{"x": {"$exists": true}}``, ``{"x": {"$hasPrefix": "a"}}``,
``{"metadata.tags": {"$contains": "java"}}``, combined with ``$all``, ``$any`` and ``$not``.
The older ``filter=kind=component,spec.type=service`` query parameters are turned into
predicates by :func:`parse_filters`. Fields are dotted paths (``kind``, ``spec.type``,
``metadata.annotations.x``); ``relations.<type>`` matches relation targets. Values compare
case-insensitively.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from pavedroad.catalog.models import (
    EntityRow,
    LocationRow,
    RelationRow,
    SearchRow,
    SourceRow,
)
from pavedroad.catalog.refs import EntityRef, parse_ref
from pavedroad.core.db import in_chunks
from pavedroad.core.errors import InputError, NotFoundError

Predicate = dict[str, Any] | None

MAX_LIMIT = 1000
SMALL_MATCH = 5000  # up to this many matches, facets are counted from the matches
MAX_PREDICATE_DEPTH = 32
WALK_MAX_ROWS = 5000  # rows an ordered walk may read before sorting the matches is cheaper
DEFAULT_LIMIT = 50


@dataclass
class EntityQuery:
    filter: Predicate = None
    full_text: str = ""
    full_text_fields: list[str] = field(default_factory=list)
    order: list[tuple[str, str]] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT
    fields: list[str] = field(default_factory=list)
    offset: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "filter": self.filter,
            "fullText": self.full_text,
            "fullTextFields": self.full_text_fields,
            "order": self.order,
        }


@dataclass
class Page:
    items: list[dict[str, Any]]
    total: int
    next_cursor: str | None
    prev_cursor: str | None


# -- parsing query parameters --------------------------------------------------------


def parse_filters(raw: Iterable[str]) -> Predicate:
    """Backstage's ``filter`` parameters as a predicate: ``a=b,c=d`` ANDs its conditions,
    repeating the parameter ORs, a key repeated within one filter ORs its values, and a
    key without ``=`` means "has this field"."""
    alternatives: list[dict[str, Any]] = []
    for text in raw:
        conditions: dict[str, list[str] | None] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, has_value, value = part.partition("=")
            key = key.strip()
            if not key:
                raise InputError(f"Invalid filter {text!r}: an empty field name")
            if not has_value:
                conditions.setdefault(key, None)
                continue
            conditions[key] = [*(conditions.get(key) or []), value.strip()]
        parts = [
            {
                key: {"$exists": True}
                if values is None
                else values[0]
                if len(values) == 1
                else {"$in": values}
            }
            for key, values in conditions.items()
        ]
        if parts:
            alternatives.append(parts[0] if len(parts) == 1 else {"$all": parts})
    if not alternatives:
        return None
    return alternatives[0] if len(alternatives) == 1 else {"$any": alternatives}


def parse_order(raw: Iterable[str]) -> list[tuple[str, str]]:
    order = []
    for text in raw:
        name, _, direction = text.partition(",")
        direction = direction.strip().lower() or "asc"
        if direction not in ("asc", "desc"):
            raise InputError(f"Invalid orderField {text!r}: the order must be asc or desc")
        order.append((name.strip(), direction))
    return order


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 0:
        raise InputError("limit must not be negative")
    return min(limit, MAX_LIMIT)


# -- filters as SQL ------------------------------------------------------------------


def filter_clause(predicate: Predicate, correlated: bool = False) -> ColumnElement[bool]:
    """The SQL condition for a filter predicate (everything when ``None``).

    By default each condition is an ``IN (subquery)`` that the database evaluates once
    for all rows: best when few entities match. With ``correlated=True`` each condition
    is an ``EXISTS`` probed per row: best when walking entities in order to fill a page
    from a broad match.
    """
    kinds = _required_kinds(predicate)
    compiler = _FilterCompiler(correlated, kinds)
    kind_conditions = [k for k, _ in _top_conditions(predicate) if k.lower() == "kind"]
    if kinds and len(kind_conditions) == 1 and _has_positive_field(predicate):
        # Every search row carries its entity's kind, so a positive condition on
        # another field, restricted to these kinds, already implies the kind condition.
        compiler.implied_kind = True
    return compiler.clause(predicate, top=True)


def _top_conditions(predicate: Predicate) -> list[tuple[str, Any]]:
    """The field conditions a predicate ANDs at its top level (directly or in ``$all``)."""
    if not isinstance(predicate, dict):
        return []
    found = [(k, v) for k, v in predicate.items() if not k.startswith("$")]
    all_of = predicate.get("$all")
    for item in all_of if isinstance(all_of, list) else []:
        if isinstance(item, dict):
            found.extend((k, v) for k, v in item.items() if not k.startswith("$"))
    return found


def _has_positive_field(predicate: Predicate) -> bool:
    """Whether some top-level condition requires a search row of a field other than kind
    (a value, ``$in``, ``$hasPrefix`` or ``$exists: true``; not a negation)."""
    return any(
        key.lower() not in ("kind", "metadata.uid")
        and not key.lower().startswith("relations.")
        and _is_positive(matcher)
        for key, matcher in _top_conditions(predicate)
    )


def _is_positive(matcher: Any) -> bool:
    if isinstance(matcher, str | int | float | bool):
        return True
    if not isinstance(matcher, dict) or len(matcher) != 1:
        return False
    operator, operand = next(iter(matcher.items()))
    return operator in ("$in", "$hasPrefix") or (operator == "$exists" and operand is True)


class _FilterCompiler:
    def __init__(self, correlated: bool, kinds: list[str] | None = None) -> None:
        self.correlated = correlated
        self.kinds = kinds or []
        self.implied_kind = False

    def clause(
        self, predicate: Predicate, top: bool = False, depth: int = 0
    ) -> ColumnElement[bool]:
        if predicate is None:
            return true()
        if depth > MAX_PREDICATE_DEPTH:
            raise InputError(
                f"The filter predicate is nested deeper than {MAX_PREDICATE_DEPTH} levels"
            )
        if not isinstance(predicate, dict):
            raise InputError("A filter predicate must be an object")
        parts: list[ColumnElement[bool]] = []
        for key, operand in predicate.items():
            if key == "$all" and top:
                items = _predicate_list(key, operand)
                parts.append(
                    and_(true(), *(self.clause(p, top=True, depth=depth + 1) for p in items))
                )
                continue
            if top and self.implied_kind and key.lower() == "kind":
                continue
            if key == "$all":
                items = _predicate_list(key, operand)
                parts.append(and_(true(), *(self.clause(p, depth=depth + 1) for p in items)))
            elif key == "$any":
                items = _predicate_list(key, operand)
                parts.append(or_(false(), *(self.clause(p, depth=depth + 1) for p in items)))
            elif key == "$not":
                parts.append(not_(self.clause(operand, depth=depth + 1)))
            elif key.startswith("$"):
                raise InputError(f"Unknown filter operator {key!r}; use $all, $any or $not")
            else:
                parts.append(self.field(key.lower(), operand))
        return and_(true(), *parts)

    def field(self, key: str, matcher: Any) -> ColumnElement[bool]:
        if isinstance(matcher, dict):
            if len(matcher) != 1:
                raise InputError(f"The matcher for {key!r} must have exactly one operator")
            operator, operand = next(iter(matcher.items()))
            if operator == "$exists":
                present = self.has_value(key, None)
                return present if operand else not_(present)
            if operator == "$in":
                if not isinstance(operand, list):
                    raise InputError(f"$in for {key!r} needs a list")
                return self.has_value(key, [_text(v) for v in operand])
            if operator == "$hasPrefix":
                if not isinstance(operand, str):
                    raise InputError(f"$hasPrefix for {key!r} needs a string")
                return self.has_value(key, None, prefix=operand.lower())
            if operator == "$contains":
                return self.contains(key, operand)
            raise InputError(
                f"Unknown matcher {operator!r} for {key!r}; use $exists, $in, "
                "$hasPrefix or $contains"
            )
        return self.has_value(key, [_text(matcher)])

    def contains(self, key: str, operand: Any, depth: int = 0) -> ColumnElement[bool]:
        """Array fields are indexed one row per item, so containment is a value match."""
        if depth > MAX_PREDICATE_DEPTH:
            raise InputError(
                f"The $contains matcher is nested deeper than {MAX_PREDICATE_DEPTH} levels"
            )
        if isinstance(operand, dict) and len(operand) == 1:
            operator, inner = next(iter(operand.items()))
            if operator in ("$any", "$all") and isinstance(inner, list):
                clauses = [self.contains(key, item, depth + 1) for item in inner]
                return or_(false(), *clauses) if operator == "$any" else and_(true(), *clauses)
            if operator == "$not":
                return not_(self.contains(key, inner, depth + 1))
            return self.field(key, operand)
        return self.has_value(key, [_text(operand)])

    def has_value(
        self, key: str, values: list[str] | None, prefix: str | None = None
    ) -> ColumnElement[bool]:
        if key == "metadata.uid":
            if values is None and prefix is None:
                return true()
            return (
                EntityRow.uid.in_(values)
                if values is not None
                else func.lower(EntityRow.uid).like(_like_prefix(prefix or ""), escape="\\")
            )
        if key.startswith("relations."):
            table, value_column = RelationRow, RelationRow.target_ref
            conditions = [func.lower(RelationRow.type) == key.split(".", 1)[1]]
            link, outer = RelationRow.source_ref, EntityRow.entity_ref
        else:
            table, value_column = SearchRow, SearchRow.value  # type: ignore[assignment]
            conditions = [SearchRow.key == key]
            if self.kinds and key != "kind":
                conditions.append(SearchRow.kind.in_(self.kinds))
            link, outer = SearchRow.entity_uid, EntityRow.uid  # type: ignore[assignment]
        if values is not None:
            conditions.append(value_column.in_(values))
        if prefix is not None:
            conditions.append(value_column.like(_like_prefix(prefix), escape="\\"))
        if self.correlated:
            # Probe this row's few search rows; ``key || ''`` keeps SQLite from choosing
            # the (key, value) index, which would scan every matching row per probe.
            if table is SearchRow:
                conditions[0] = SearchRow.key.op("||")("") == key
            return exists(select(literal(1)).select_from(table).where(link == outer, *conditions))
        return outer.in_(select(link).where(*conditions))


def _too_deep(what: str) -> InputError:
    return InputError(f"The {what} is nested deeper than {MAX_PREDICATE_DEPTH} levels")


def _predicate_list(key: str, operand: Any) -> list[Any]:
    if not isinstance(operand, list):
        raise InputError(f"{key} needs a list of predicates")
    return operand


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value).lower()
    raise InputError(f"Filter values must be strings, numbers or booleans, not {value!r}")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(prefix: str) -> str:
    return _escape_like(prefix) + "%"


def full_text_clause(term: str, fields: Sequence[str]) -> ColumnElement[bool]:
    term = term.strip().lower()
    if not term:
        return true()
    pattern = "%" + _escape_like(term) + "%"
    if fields:
        return EntityRow.uid.in_(
            select(SearchRow.entity_uid).where(
                SearchRow.key.in_([f.lower() for f in fields]),
                SearchRow.value.like(pattern, escape="\\"),
            )
        )
    return EntityRow.search_text.like(pattern, escape="\\")


# -- ordering and cursors ------------------------------------------------------------

_DIRECT_COLUMNS = {
    "metadata.name": EntityRow.name,
    "kind": EntityRow.kind,
    "metadata.namespace": EntityRow.namespace,
    "metadata.uid": EntityRow.uid,
}


def _sort_expression(field_name: str) -> Any:
    column = _DIRECT_COLUMNS.get(field_name.lower())
    if column is not None:
        return func.lower(column) if field_name.lower() != "metadata.uid" else column
    return (
        select(func.min(SearchRow.value))
        .where(SearchRow.entity_uid == EntityRow.uid, SearchRow.key == field_name.lower())
        .correlate(EntityRow)
        .scalar_subquery()
    )


def encode_cursor(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=="))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise InputError(
            "Malformed cursor: pass the nextCursor or prevCursor of an earlier page"
        ) from None
    if not isinstance(payload, dict) or "query" not in payload or "after" not in payload:
        raise InputError("Malformed cursor: pass the nextCursor or prevCursor of an earlier page")
    return payload


def _required_kinds(predicate: Predicate) -> list[str]:
    """The kinds a predicate limits entities to, when it plainly does so."""
    for key, kind in _top_conditions(predicate):
        if key.lower() != "kind":
            continue
        if isinstance(kind, str):
            return [kind.lower()]
        if (
            isinstance(kind, dict)
            and isinstance(kind.get("$in"), list)
            and all(isinstance(k, str) for k in kind["$in"])
        ):
            return [k.lower() for k in kind["$in"]]
    return []


def _resume(
    payload: dict[str, Any], query: EntityQuery
) -> tuple[EntityQuery, list[Any], bool, int | None]:
    """The query, position and direction a cursor holds, checked field by field (a
    cursor comes from the client and may have been edited)."""
    malformed = InputError("Malformed cursor: pass the nextCursor or prevCursor of an earlier page")
    q, after = payload.get("query"), payload.get("after")
    if not isinstance(q, dict) or not isinstance(after, list):
        raise malformed
    order = q.get("order") or []
    full_text, full_text_fields = q.get("fullText") or "", q.get("fullTextFields") or []
    if (
        not isinstance(q.get("filter"), dict | type(None))
        or not isinstance(full_text, str)
        or not isinstance(full_text_fields, list)
        or not all(isinstance(f, str) for f in full_text_fields)
        or not isinstance(order, list)
        or not all(
            isinstance(o, list)
            and len(o) == 2
            and isinstance(o[0], str)
            and o[1] in ("asc", "desc")
            for o in order
        )
        or len(after) != len(order) + 1
        or not all(isinstance(v, str | type(None)) for v in after)
    ):
        raise malformed
    resumed = EntityQuery(
        filter=q.get("filter"),
        full_text=full_text,
        full_text_fields=full_text_fields,
        order=[(name, direction) for name, direction in order],
        limit=query.limit,
        fields=query.fields,
    )
    total = payload.get("totalItems")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        raise malformed
    return resumed, after, bool(payload.get("previous")), total


_T = TypeVar("_T")


class _GenerationCache:
    """A small LRU of values keyed by database, catalog generation and question."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.values: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()

    def get_or_compute(self, key: tuple[Any, ...], compute: Callable[[], _T]) -> _T:
        with self.lock:
            if key in self.values:
                self.values.move_to_end(key)
                return self.values[key]  # type: ignore[no-any-return]
        value = compute()
        with self.lock:
            self.values[key] = value
            while len(self.values) > self.size:
                self.values.popitem(last=False)
        return value


_GENERATION_CACHE = _GenerationCache()


class CatalogReader:
    """Read-side operations over one database session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- pages -----------------------------------------------------------------------

    def query(self, query: EntityQuery, cursor: str | None = None) -> Page:
        after: list[Any] | None = None
        backwards = False
        known_total: int | None = None
        if cursor:
            query, after, backwards, known_total = _resume(decode_cursor(cursor), query)
        text = full_text_clause(query.full_text, query.full_text_fields)
        where = and_(filter_clause(query.filter), text)
        total = (
            known_total  # later pages keep the first page's count, as Backstage's cursors do
            if known_total is not None
            else self.count(query.filter, query.full_text)
            if not query.full_text_fields
            else self.cached(
                ("count", json.dumps(query.to_dict(), sort_keys=True)),
                lambda: (
                    self.session.scalar(select(func.count()).select_from(EntityRow).where(where))
                    or 0
                ),
            )
        )
        keys = [(_sort_expression(name), direction) for name, direction in query.order]
        keys.append((EntityRow.entity_ref, "asc"))
        walk = not query.order and self._walk_in_order(total, query)
        if walk:
            where = and_(
                filter_clause(query.filter, correlated=True), text, self._kind_range(query.filter)
            )
        statement = self._page_statement(where, keys, after, backwards, query.limit + 1)

        if after is None and query.offset:
            statement = statement.offset(query.offset)
        rows = list(self.session.execute(statement))
        has_more = len(rows) > query.limit
        rows = rows[: query.limit]
        if backwards:
            rows.reverse()
        sort_values = [list(row[1:]) for row in rows]
        entities = self.hydrate([row[0] for row in rows], query.fields)
        base = {"query": query.to_dict(), "totalItems": total}
        next_cursor = prev_cursor = None
        if rows and (has_more or backwards):
            next_cursor = encode_cursor({**base, "after": sort_values[-1], "previous": False})
        if rows and (after is not None) and (not backwards or has_more):
            prev_cursor = encode_cursor({**base, "after": sort_values[0], "previous": True})
        return Page(entities, total, next_cursor, prev_cursor)

    def _kind_range(self, predicate: Predicate) -> ColumnElement[bool]:
        """Refs start with the kind, so a kind filter is a range of the ref index (in
        SQLite's binary collation; other databases plan this well on their own)."""
        kinds = _required_kinds(predicate)
        if not kinds or self.session.get_bind().dialect.name != "sqlite":
            return true()
        return or_(
            *(
                and_(EntityRow.entity_ref >= f"{kind}:", EntityRow.entity_ref < f"{kind};")
                for kind in kinds
            )
        )

    def _walk_in_order(self, matches: int, query: EntityQuery) -> bool:
        """Whether to walk entities in ref order, probing each, until a page is full,
        rather than collecting every match and sorting it (SQLite cannot tell which is
        cheaper). The walk reads about ``limit * scope / matches`` rows, where the scope
        is the kinds the filter names (their range of refs) or the whole catalog."""
        if matches == 0:
            return False
        kinds = {k.lower() for k in _required_kinds(query.filter)}
        if kinds:
            scope = sum(
                f["count"]
                for f in self.facets(["kind"])["kind"]
                if str(f["value"]).lower() in kinds
            )
        else:
            scope = self.count()
        return (query.limit + 1) * scope / matches <= WALK_MAX_ROWS

    def cached(self, key: tuple[str, ...], compute: Callable[[], _T]) -> _T:
        """A value computed once per catalog generation (every catalog write makes a new
        one), shared by every reader of the same database in this process."""
        from pavedroad.catalog.ingestion import catalog_generation

        bind = str(self.session.get_bind().engine.url)
        full_key = (bind, catalog_generation(self.session), *key)
        return _GENERATION_CACHE.get_or_compute(full_key, compute)

    def _page_statement(
        self,
        where: ColumnElement[bool],
        keys: list[tuple[Any, str]],
        after: list[Any] | None,
        backwards: bool,
        limit: int,
    ) -> Select[Any]:
        columns = [EntityRow] + [
            expression.label(f"k{i}") for i, (expression, _) in enumerate(keys)
        ]
        statement = select(*columns).where(where)
        if after is not None:
            if len(after) != len(keys):
                raise InputError("Malformed cursor: it does not match the query's order")
            statement = statement.where(_keyset(keys, after, backwards))
        ordering = []
        for index, (expression, direction) in enumerate(keys):
            ascending = (direction == "asc") != backwards
            if index == len(keys) - 1:  # the entity ref: never NULL, and plain keeps its index
                ordering.append(expression.asc() if ascending else expression.desc())
            else:
                ordering.append(
                    expression.asc().nulls_last() if ascending else expression.desc().nulls_first()
                )
        return statement.order_by(*ordering).limit(limit)

    # -- entities --------------------------------------------------------------------

    def hydrate(
        self, rows: Sequence[EntityRow], fields: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Entities as the API returns them: body plus relations, trimmed to ``fields``."""
        if not rows:
            return []
        want_relations = not fields or any(
            f == "relations" or f.startswith("relations") for f in fields
        )
        relations = self.relations_of([r.entity_ref for r in rows]) if want_relations else {}
        result = []
        for row in rows:
            entity = entity_of(row)
            entity["relations"] = relations.get(row.entity_ref, [])
            result.append(select_fields(entity, fields) if fields else entity)
        return result

    def relations_of(self, refs: list[str]) -> dict[str, list[dict[str, str]]]:
        found: dict[str, list[dict[str, str]]] = defaultdict(list)
        for chunk in in_chunks(refs):
            rows = self.session.execute(
                select(RelationRow.source_ref, RelationRow.type, RelationRow.target_ref)
                .where(RelationRow.source_ref.in_(chunk))
                .distinct()
                .order_by(RelationRow.source_ref, RelationRow.type, RelationRow.target_ref)
            )
            for source, type_, target in rows:
                found[source].append({"type": type_, "targetRef": target})
        return found

    def row_by_ref(self, ref: str | EntityRef) -> EntityRow | None:
        key = str(ref) if isinstance(ref, EntityRef) else parse_ref(ref).key
        return self.session.scalar(select(EntityRow).where(EntityRow.entity_ref == key))

    def get_by_ref(self, ref: str | EntityRef, fields: Sequence[str] = ()) -> dict[str, Any]:
        return self.hydrate([self._existing_row(ref)], fields)[0]

    def _existing_row(self, ref: str | EntityRef) -> EntityRow:
        """The entity's row, or Backstage's NotFoundError wording."""
        row = self.row_by_ref(ref)
        if row is None:
            parsed = ref if isinstance(ref, EntityRef) else parse_ref(ref)
            raise NotFoundError(
                f"No entity named '{parsed.name}' found, with kind "
                f"'{parsed.kind.lower()}' in namespace '{parsed.namespace.lower()}'"
            )
        return row

    def get_by_uid(self, uid: str, fields: Sequence[str] = ()) -> dict[str, Any]:
        row = self.session.get(EntityRow, uid)
        if row is None:
            raise NotFoundError(f"No entity with uid {uid}")
        return self.hydrate([row], fields)[0]

    def get_many(
        self, refs: Sequence[str], fields: Sequence[str] = (), predicate: Predicate = None
    ) -> list[dict[str, Any] | None]:
        """Entities in request order, ``None`` where a ref names nothing (or, with a
        filter, names an entity the filter excludes)."""
        keys: list[str | None] = []
        for ref in refs:
            try:
                keys.append(parse_ref(ref).key)
            except InputError:
                keys.append(None)
        wanted = [k for k in keys if k]
        rows: dict[str, EntityRow] = {}
        for chunk in in_chunks(wanted):
            statement = select(EntityRow).where(
                EntityRow.entity_ref.in_(chunk), filter_clause(predicate)
            )
            for row in self.session.scalars(statement):
                rows[row.entity_ref] = row
        hydrated = dict(zip(rows, self.hydrate(list(rows.values()), fields), strict=True))
        return [hydrated.get(k) if k else None for k in keys]

    def status_of(self, ref: str) -> dict[str, Any]:
        """Processing status: the entity's own errors and its source's errors."""
        row = self.row_by_ref(ref)
        if row is None:
            raise NotFoundError(f"No entity {ref}")
        source = self.session.get(SourceRow, row.source_key)
        return {
            "errors": row.errors,
            "sourceErrors": source.errors if source else [],
            "source": row.source_key,
            "orphan": row.orphan,
            "updatedAt": row.updated_at,
            "refreshedAt": source.refreshed_at if source else None,
            "nextRefreshAt": source.next_refresh_at if source else None,
        }

    # -- facets ----------------------------------------------------------------------

    def facets(
        self, names: Sequence[str], predicate: Predicate = None, full_text: str = ""
    ) -> dict[str, list[dict[str, Any]]]:
        """Counts per value of each field, among the entities matching the filter.

        Cached per catalog generation. A narrow filter (up to ``SMALL_MATCH`` entities) is
        counted from its matches, all fields in one query; a broad one per field, by
        scanning that field's index range."""
        scope = json.dumps([predicate, full_text.strip().lower()], sort_keys=True)
        restricted = predicate is not None or bool(full_text.strip())
        if restricted and len(names) > 1 and self.count(predicate, full_text) <= SMALL_MATCH:
            counts = self.cached(
                ("facets", json.dumps(sorted(names)), scope),
                lambda: self._facets_from_matches(names, predicate, full_text),
            )
            return {name: counts[name] for name in names}
        return {
            name: self.cached(
                ("facet", name, scope), partial(self._facet, name, predicate, full_text)
            )
            for name in names
        }

    def count(self, predicate: Predicate = None, full_text: str = "") -> int:
        """How many entities match (cached per catalog generation)."""
        query = EntityQuery(filter=predicate, full_text=full_text)
        return self.cached(
            ("count", json.dumps(query.to_dict(), sort_keys=True)),
            lambda: (
                self.session.scalar(
                    select(func.count())
                    .select_from(EntityRow)
                    .where(filter_clause(predicate), full_text_clause(full_text, []))
                )
                or 0
            ),
        )

    def _facets_from_matches(
        self, names: Sequence[str], predicate: Predicate, full_text: str
    ) -> dict[str, list[dict[str, Any]]]:
        matches = (
            select(EntityRow.uid.label("uid"))
            .where(filter_clause(predicate), full_text_clause(full_text, []))
            .cte("matches")
        )
        plain = [n for n in names if not n.lower().startswith("relations.")]
        keys = {n.lower(): n for n in plain}
        counts: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        statement = (
            select(SearchRow.key, func.min(SearchRow.original_value), func.count())
            .select_from(matches)
            .join(SearchRow, SearchRow.entity_uid == matches.c.uid)
            .where(SearchRow.key.in_(list(keys)), SearchRow.value.is_not(None))
            .group_by(SearchRow.key, SearchRow.value)
        )
        for key, value, count in self.session.execute(statement) if keys else ():
            counts[keys[key]].append({"value": value, "count": count})
        for name in names:
            if name not in keys:
                counts[name] = self._facet(name, predicate, full_text)
            counts[name].sort(key=lambda c: (str(c["value"]).lower(), str(c["value"])))
        return counts

    def _facet(self, name: str, predicate: Predicate, full_text: str) -> list[dict[str, Any]]:
        restricted = predicate is not None or bool(full_text.strip())
        key = name.lower()
        statement: Select[Any, int]
        if key.startswith("relations."):
            statement = (
                select(RelationRow.target_ref, func.count(func.distinct(RelationRow.source_ref)))
                .where(func.lower(RelationRow.type) == key.split(".", 1)[1])
                .group_by(RelationRow.target_ref)
            )
            if restricted:
                statement = statement.where(
                    RelationRow.source_ref.in_(
                        select(EntityRow.entity_ref).where(
                            filter_clause(predicate), full_text_clause(full_text, [])
                        )
                    )
                )
        else:
            statement = (
                select(func.min(SearchRow.original_value), func.count())
                .where(SearchRow.key == key, SearchRow.value.is_not(None))
                .group_by(SearchRow.value)
            )
            kinds = _required_kinds(predicate)
            if kinds:
                statement = statement.where(SearchRow.kind.in_(kinds))
            only_kinds = (
                bool(kinds)
                and isinstance(predicate, dict)
                and [k.lower() for k in predicate] == ["kind"]
                and not full_text.strip()
            )
            if restricted and not only_kinds:
                statement = statement.where(
                    SearchRow.entity_uid.in_(
                        select(EntityRow.uid).where(
                            filter_clause(predicate), full_text_clause(full_text, [])
                        )
                    )
                )
        counts = [
            {"value": value, "count": count} for value, count in self.session.execute(statement)
        ]
        counts.sort(key=lambda c: (str(c["value"]).lower(), str(c["value"])))
        return counts

    # -- graph and ancestry ------------------------------------------------------------

    def graph(self, ref: str, depth: int = 1, max_nodes: int = 300) -> dict[str, Any]:
        """The entity's neighbourhood: nodes (resolved or not) and edges up to ``depth``."""
        root = parse_ref(ref).key
        if self.row_by_ref(root) is None:
            raise NotFoundError(f"No entity {ref}")
        depth = max(0, min(depth, 5))
        seen = {root: 0}
        edges: set[tuple[str, str, str]] = set()
        frontier = [root]
        for level in range(1, depth + 1):
            if not frontier:
                break
            rows = self.session.execute(
                select(RelationRow.source_ref, RelationRow.type, RelationRow.target_ref)
                .where(RelationRow.source_ref.in_(frontier))
                .distinct()
            )
            next_frontier = []
            for source, type_, target in rows:
                if target not in seen:
                    if len(seen) >= max_nodes:
                        continue
                    seen[target] = level
                    next_frontier.append(target)
                edges.add((source, type_, target))
            frontier = next_frontier
        rows_by_ref = {
            r.entity_ref: r
            for r in self.session.scalars(
                select(EntityRow).where(EntityRow.entity_ref.in_(list(seen)))
            )
        }
        nodes = []
        for key, distance in seen.items():
            row = rows_by_ref.get(key)
            body = json.loads(row.body) if row else None
            parsed = parse_ref(key)
            nodes.append(
                {
                    "ref": key,
                    "kind": row.kind if row else parsed.kind,
                    "name": row.name if row else parsed.name,
                    "namespace": parsed.namespace,
                    "distance": distance,
                    "resolved": row is not None,
                    "title": (body or {}).get("metadata", {}).get("title"),
                    "type": ((body or {}).get("spec") or {}).get("type"),
                }
            )
        return {
            "root": root,
            "nodes": nodes,
            "edges": [{"source": s, "type": t, "target": g} for s, t, g in sorted(edges)],
        }

    def ancestry(self, ref: str) -> dict[str, Any]:
        """The chain from the entity up through the Location entities that led to it."""
        row = self._existing_row(ref)
        items = []
        current: EntityRow | None = row
        seen: set[str] = set()
        while current is not None and current.entity_ref not in seen:
            seen.add(current.entity_ref)
            source = self.session.get(SourceRow, current.source_key)
            parent_ref = source.parent_entity_ref if source else None
            items.append(
                {
                    "entity": self.hydrate([current])[0],
                    "parentEntityRefs": [parent_ref] if parent_ref else [],
                }
            )
            current = self.row_by_ref(parent_ref) if parent_ref else None
        return {"rootEntityRef": row.entity_ref, "items": items}

    # -- locations -----------------------------------------------------------------------

    def locations(self) -> list[LocationRow]:
        return list(self.session.scalars(select(LocationRow).order_by(LocationRow.created_at)))

    def location(self, location_id: str) -> LocationRow:
        row = self.session.get(LocationRow, location_id)
        if row is None:
            raise NotFoundError(f"Found no location with ID {location_id}")
        return row

    def location_status(self, location_id: str) -> dict[str, Any]:
        sources = list(
            self.session.scalars(
                select(SourceRow)
                .where(SourceRow.location_id == location_id)
                .order_by(SourceRow.key)
            )
        )
        entity_count = self.session.scalar(
            select(func.count()).select_from(EntityRow).where(EntityRow.location_id == location_id)
        )
        return {
            "sources": [
                {
                    "key": s.key,
                    "errors": s.errors,
                    "refreshedAt": s.refreshed_at,
                    "nextRefreshAt": s.next_refresh_at,
                }
                for s in sources
                if not s.key.startswith("root:")
            ],
            "entities": entity_count or 0,
            "errors": [e for s in sources for e in s.errors],
        }

    def processing_summary(self) -> dict[str, int]:
        count = func.count()
        return {
            "locations": self.session.scalar(select(count).select_from(LocationRow)) or 0,
            "sources": self.session.scalar(select(func.count()).select_from(SourceRow)) or 0,
            "sources_with_errors": self.session.scalar(
                select(func.count())
                .select_from(SourceRow)
                .where(func.length(func.cast(SourceRow.errors, String)) > 2)
            )
            or 0,
            "orphans": self.session.scalar(
                select(func.count()).select_from(EntityRow).where(EntityRow.orphan.is_(True))
            )
            or 0,
        }

    def entity_refs_of_location(self, location_id: str) -> list[str]:
        return list(
            self.session.scalars(
                select(EntityRow.entity_ref)
                .where(EntityRow.location_id == location_id)
                .order_by(EntityRow.entity_ref)
            )
        )

    def location_by_ref(self, ref: str) -> LocationRow | None:
        row = self.row_by_ref(ref)
        if row is None:
            return None
        return self.session.get(LocationRow, row.location_id) if row.location_id else None


def entity_of(row: EntityRow) -> dict[str, Any]:
    """The stored entity with the row's own ``metadata.uid`` and ``metadata.etag``."""
    entity: dict[str, Any] = json.loads(row.body)
    metadata = entity.setdefault("metadata", {})
    metadata["uid"] = row.uid
    metadata["etag"] = hashlib.sha1(f"{row.uid}:{row.hash}".encode()).hexdigest()
    return entity


def _keyset(keys: list[tuple[Any, str]], after: list[Any], backwards: bool) -> ColumnElement[bool]:
    """Rows strictly after ``after`` in the order the page statement executes.

    Ascending keys sort NULLs last and descending keys NULLs first (see
    ``_page_statement``), so "after" is defined for NULL sort values too.
    """
    clauses = []
    for i, (expression, direction) in enumerate(keys):
        ascending = (direction == "asc") != backwards
        value = after[i]
        if value is None:
            # Ascending keys put NULLs last: nothing sorts after a NULL in such a key.
            beyond = None if ascending else expression.is_not(None)
        elif ascending:
            beyond = or_(expression > value, expression.is_(None))
        else:
            beyond = expression < value
        if beyond is not None:
            clauses.append(and_(*[_equals(keys[j][0], after[j]) for j in range(i)], beyond))
    return or_(*clauses) if clauses else false()


def _equals(expression: Any, value: Any) -> ColumnElement[bool]:
    return expression.is_(None) if value is None else expression == value


def select_fields(entity: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Keep only the named dotted paths (Backstage's ``fields=``)."""
    result: dict[str, Any] = {}
    for path in fields:
        parts = path.split(".")
        source: Any = entity
        for part in parts:
            if not isinstance(source, dict) or part not in source:
                source = _MISSING
                break
            source = source[part]
        if source is _MISSING:
            continue
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = source
    return result


_MISSING = object()
