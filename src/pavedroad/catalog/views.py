"""The catalog's portal pages: the entity table with facets, entity pages (with
relation graphs, API definitions, group and user pages) and locations."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from pavedroad.catalog import portal_data
from pavedroad.catalog.api import Catalog
from pavedroad.catalog.portal_data import FacetScope
from pavedroad.catalog.queries import CatalogReader, EntityQuery, Page, Predicate
from pavedroad.catalog.refs import DEFAULT_NAMESPACE, EntityRef, parse_ref
from pavedroad.core.errors import ForbiddenError, InputError, NotFoundError, ProblemError
from pavedroad.core.safeyaml import dump
from pavedroad.identity.access import EntityAccess, entity_access
from pavedroad.identity.http import require
from pavedroad.identity.web import form_token, keep_form_token
from pavedroad.portal.openapi import ApiDigest, DefinitionError, parse_definition
from pavedroad.portal.relation_graph import GraphPicture, layout
from pavedroad.portal.templating import entity_path, entity_url, ref_label, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
TABLE_FIELDS = ["kind", "metadata", "spec.type", "spec.owner", "spec.lifecycle", "spec.profile"]
FACET_TOP = 8
FACET_MAX = 100
RELATED_MAX = 1000
WARM_KINDS = 8
SUGGESTIONS = 6

# The catalog page's notices after an action elsewhere (never text from the URL).
CATALOG_NOTICES = {
    "deleted": "The entity was deleted. If a registered location still defines it, its next "
    "refresh brings it back: remove it from its catalog-info.yaml as well.",
}

# The order related objects are listed in; other relation types follow alphabetically.
RELATION_ORDER = [
    "ownedBy",
    "partOf",
    "hasPart",
    "providesApi",
    "consumesApi",
    "apiProvidedBy",
    "apiConsumedBy",
    "dependsOn",
    "dependencyOf",
    "memberOf",
    "hasMember",
    "childOf",
    "parentOf",
    "ownerOf",
]
# Spec fields the entity page shows in its own places (About, graph, related, tabs).
SHOWN_SPEC_FIELDS = {
    "owner",
    "system",
    "domain",
    "type",
    "lifecycle",
    "profile",
    "parent",
    "children",
    "members",
    "memberOf",
    "definition",
    "target",
    "targets",
    "dependsOn",
    "dependencyOf",
    "providesApis",
    "consumesApis",
    "subcomponentOf",
    "subdomainOf",
}
# Relations the group and user pages show in their own sections.
DEDICATED_RELATIONS = {
    "group": {"hasMember", "parentOf", "childOf", "ownerOf"},
    "user": {"memberOf", "ownerOf"},
}


# -- the catalog table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Facet:
    param: str
    field: str
    label: str
    top: int = FACET_TOP
    ref_kind: str | None = None  # values are refs: show them short

    def display(self, value: str) -> str:
        return ref_label(value, self.ref_kind) if self.ref_kind else value


FACETS = (
    Facet("kind", "kind", "Kind", top=20),
    Facet("type", "spec.type", "Type"),
    Facet("owner", "spec.owner", "Owner", ref_kind="group"),
    Facet("lifecycle", "spec.lifecycle", "Lifecycle"),
    Facet("tag", "metadata.tags", "Tag"),
    Facet("namespace", "metadata.namespace", "Namespace"),
)


@dataclass
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool
    href: str


@dataclass
class FacetView:
    facet: Facet
    values: list[FacetValue]
    more: list[FacetValue]
    omitted: int
    clear_href: str | None


@dataclass
class CatalogSelection:
    """What the table shows: selected facet values (OR within a facet) and the search."""

    values: dict[str, list[str]]
    q: str

    @classmethod
    def from_request(cls, request: Request, q: str) -> CatalogSelection:
        values = {}
        for facet in FACETS:
            chosen = [v.strip() for v in request.query_params.getlist(facet.param) if v.strip()]
            values[facet.param] = list(dict.fromkeys(v[:200] for v in chosen))[:20]
        return cls(values, q.strip()[:200])

    @classmethod
    def empty(cls) -> CatalogSelection:
        return cls({f.param: [] for f in FACETS}, "")

    def filter(self, without: str | None = None) -> Predicate:
        """The catalog predicate: facets AND, the values of one facet OR. Values are
        lower-cased (matching ignores case) so equal selections share cached counts."""
        parts: list[dict[str, Any]] = [
            {f.field: values[0] if len(values) == 1 else {"$in": values}}
            for f in FACETS
            if f.param != without and (values := sorted({v.lower() for v in self.values[f.param]}))
        ]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$all": parts}

    def params(
        self,
        drop: tuple[str, str] | None = None,
        add: tuple[str, str] | None = None,
        without: str | None = None,
    ) -> list[tuple[str, str]]:
        dropped = (drop[0], drop[1].lower()) if drop else None
        pairs = [
            (f.param, v)
            for f in FACETS
            if f.param != without
            for v in self.values[f.param]
            if (f.param, v.lower()) != dropped
        ]
        if add:
            pairs.append(add)
        if self.q:
            pairs.append(("q", self.q))
        return pairs

    def is_selected(self, param: str, value: str) -> bool:
        return value.lower() in {v.lower() for v in self.values[param]}

    @property
    def chips(self) -> list[dict[str, str]]:
        return [
            {
                "label": f.label,
                "value": f.display(v),
                "href": catalog_href(self.params(drop=(f.param, v))),
            }
            for f in FACETS
            for v in self.values[f.param]
        ]

    @property
    def search_clear_href(self) -> str:
        return catalog_href((name, value) for name, value in self.params() if name != "q")

    @property
    def active(self) -> bool:
        return bool(self.q) or any(self.values.values())


def catalog_href(params: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(params))
    return "/catalog" + (f"?{query}" if query else "")


@router.get("/catalog/apis")
def catalog_apis() -> RedirectResponse:
    return RedirectResponse("/catalog?kind=api", status_code=307)


@router.get("/catalog")
def catalog_page(
    request: Request, service: Catalog, q: str = "", cursor: str | None = None, start: str = "0"
) -> Response:
    # Query parameters are read leniently: a page never answers a browser with JSON.
    selection = CatalogSelection.from_request(request, q)
    first = int(start) if start.isdigit() and len(start) < 10 else 0
    notice = CATALOG_NOTICES.get(request.query_params.get("notice", ""))
    with service.reader() as reader:
        query = EntityQuery(
            filter=selection.filter(), full_text=selection.q, limit=PAGE_SIZE, fields=TABLE_FIELDS
        )
        try:
            page = reader.query(query, cursor or None)
        except InputError:
            notice = "That page link no longer works, so this is the first page."
            page, first, cursor = reader.query(query), 0, None
        facets = _facet_views(reader, selection, page)
        portal_data.facet_warmer.warm(service, _warm_plan)
    rows = [_row(entity) for entity in page.items]
    pager = _pager(selection, page, first, cursor or None)
    kind_values = selection.values["kind"]
    heading = "APIs" if [v.lower() for v in kind_values] == ["api"] else "Catalog"
    return render(
        request,
        "catalog/list.html",
        {
            "title": heading,
            "heading": heading,
            "selection": selection,
            "facets": facets,
            "rows": rows,
            "page": page,
            "pager": pager,
            "notice": notice,
            "hidden_params": selection.params(),
        },
    )


def _facet_views(reader: CatalogReader, selection: CatalogSelection, page: Page) -> list[FacetView]:
    counts = _facet_counts(reader, selection)
    views = []
    for facet in FACETS:
        values = _facet_values(facet, counts.get(facet.field, []), selection)
        shown = values[: facet.top] + [v for v in values[facet.top :] if v.selected]
        rest = [v for v in values[facet.top :] if not v.selected]
        clear = (
            catalog_href(selection.params(without=facet.param))
            if selection.values[facet.param]
            else None
        )
        omitted = max(len(rest) - FACET_MAX, 0)
        views.append(FacetView(facet, shown, rest[:FACET_MAX], omitted, clear))
    return views


def _facet_scopes(selection: CatalogSelection) -> list[tuple[FacetScope, list[str]]]:
    """Each facet counts among the entities the other facets select (so a facet
    shows the values one may add to its selection); facets sharing a scope share
    one count."""
    scopes: dict[str, tuple[FacetScope, list[str]]] = {}
    for facet in FACETS:
        scope = FacetScope(selection.filter(without=facet.param), selection.q)
        scopes.setdefault(scope.key(), (scope, []))[1].append(facet.field)
    return list(scopes.values())


def _facet_counts(reader: CatalogReader, selection: CatalogSelection) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for scope, fields in _facet_scopes(selection):
        counts.update(portal_data.facet_counts(reader, scope, fields))
    return counts


def _warm_plan(reader: CatalogReader) -> list[tuple[FacetScope, list[str]]]:
    """What the catalog's first page and its kind pages (APIs, Teams, ...) count."""
    plan = _facet_scopes(CatalogSelection.empty())
    kinds = portal_data.facet_counts(reader, FacetScope(), ["kind"])["kind"]
    for item in sorted(kinds, key=lambda k: -k["count"])[:WARM_KINDS]:
        selection = CatalogSelection.empty()
        selection.values["kind"] = [str(item["value"])]
        plan.extend(
            (scope, fields)
            for scope, fields in _facet_scopes(selection)
            if scope.filter is not None
        )
    return plan


def _facet_values(
    facet: Facet, counts: list[dict[str, Any]], selection: CatalogSelection
) -> list[FacetValue]:
    by_value: dict[str, FacetValue] = {}
    for count in counts:
        value = str(count["value"])
        by_value.setdefault(
            value.lower(), FacetValue(value, facet.display(value), int(count["count"]), False, "")
        )
    for value in selection.values[facet.param]:
        by_value.setdefault(value.lower(), FacetValue(value, facet.display(value), 0, True, ""))
    for item in by_value.values():
        item.selected = selection.is_selected(facet.param, item.value)
        if item.selected:
            item.href = catalog_href(selection.params(drop=(facet.param, item.value)))
        else:
            item.href = catalog_href(selection.params(add=(facet.param, item.value)))
    return sorted(by_value.values(), key=lambda v: (-v.count, v.value.lower()))


def _row(entity: dict[str, Any]) -> dict[str, Any]:
    metadata = _mapping(entity.get("metadata"))
    spec = _mapping(entity.get("spec"))
    namespace = str(metadata.get("namespace") or DEFAULT_NAMESPACE)
    owner = spec.get("owner") if isinstance(spec.get("owner"), str) else None
    tags = [str(t) for t in metadata.get("tags") or [] if isinstance(t, str | int)]
    profile = _mapping(spec.get("profile"))
    return {
        "url": entity_url(entity),
        "name": metadata.get("name"),
        "namespace": namespace,
        "title": metadata.get("title") or profile.get("displayName"),
        "kind": entity.get("kind"),
        "type": spec.get("type"),
        "lifecycle": spec.get("lifecycle"),
        "tags": tags,
        "owner": (
            {
                "label": ref_label(owner, "group", namespace),
                "url": entity_url(owner, "group", namespace),
            }
            if owner
            else None
        ),
        "description": metadata.get("description"),
    }


def _pager(
    selection: CatalogSelection, page: Page, start: int, cursor: str | None
) -> dict[str, Any]:
    first = start + 1 if page.items else 0
    pager: dict[str, Any] = {
        "first": first,
        "last": start + len(page.items),
        "total": page.total,
        "next": None,
        "prev": None,
    }
    if page.next_cursor:
        pager["next"] = catalog_href(
            [
                *selection.params(),
                ("cursor", page.next_cursor),
                ("start", str(start + len(page.items))),
            ]
        )
    if page.prev_cursor and cursor:
        previous_start = max(start - PAGE_SIZE, 0)
        pager["prev"] = catalog_href(
            [*selection.params(), ("cursor", page.prev_cursor), ("start", str(previous_start))]
        )
    if cursor and (pager["prev"] is None or start <= PAGE_SIZE):
        # Back to the first page is a plain link: no cursor needed.
        pager["prev"] = catalog_href(selection.params()) if start <= PAGE_SIZE else pager["prev"]
    return pager


# -- entity pages ------------------------------------------------------------------------------


@dataclass
class Related:
    ref: str
    kind: str
    label: str
    url: str | None
    entity: dict[str, Any] | None

    @property
    def title(self) -> str:
        if not self.entity:
            return self.label
        metadata = self.entity.get("metadata") or {}
        profile = (self.entity.get("spec") or {}).get("profile") or {}
        return str(
            metadata.get("title")
            or (profile.get("displayName") if isinstance(profile, dict) else None)
            or metadata.get("name")
            or self.label
        )

    @property
    def description(self) -> str:
        if not self.entity:
            return ""
        return str((self.entity.get("metadata") or {}).get("description") or "")

    @property
    def spec(self) -> dict[str, Any]:
        spec = (self.entity or {}).get("spec")
        return spec if isinstance(spec, dict) else {}


@dataclass
class EntityPage:
    entity: dict[str, Any]
    ref: EntityRef
    status: dict[str, Any]
    graph: GraphPicture
    related: list[tuple[str, list[Related]]]
    domain: Related | None = None
    group: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)
    api: dict[str, Any] = field(default_factory=dict)
    other_spec: list[tuple[str, str, bool]] = field(default_factory=list)
    yaml: str = ""


# Short notices after an action on an entity page (never text from the URL itself).
ENTITY_NOTICES = {
    "refreshed": ("good", "Refreshed: its source was read again just now."),
    "refreshed-with-errors": (
        "warn",
        "Refreshed, but reading its source reported errors; see the Status tab.",
    ),
}


@router.get("/catalog/{namespace}/{kind}/{name}")
def entity_page(
    request: Request,
    service: Catalog,
    namespace: str,
    kind: str,
    name: str,
    who: str | None = None,
    notice: str | None = None,
) -> Response:
    ref = EntityRef(kind, namespace, name)
    with service.reader() as reader:
        row = reader.row_by_ref(ref)
        if row is None:
            return _entity_not_found(request, reader, ref)
        entity = reader.hydrate([row])[0]
        page = _entity_page(reader, entity, EntityRef.of(entity))
        access = _access(request, reader, page.ref.key, who)
        owners = portal_data.entities_by_ref(reader.session, access.owners)
    # With access control off anonymous visitors may change things: their forms need a token.
    anonymous_forms = {} if access.enforced else {"csrf_token": form_token(request)}
    response = render(
        request,
        "catalog/entity.html",
        {
            **anonymous_forms,
            "title": _display_title(entity),
            "page": page,
            "entity": entity,
            "metadata": entity.get("metadata") or {},
            "spec": _mapping(entity.get("spec")),
            "kind": str(entity.get("kind", "")),
            "display_title": _display_title(entity),
            "api_url": "/api/v1/catalog/entities/{}/{}/{}".format(
                *(_quote(p) for p in (page.ref.kind, page.ref.namespace, page.ref.name))
            ),
            "access": access,
            "owners": [_related(owner, owners) for owner in access.owners],
            "actions_url": entity_path(page.ref.kind, page.ref.namespace, page.ref.name),
            "notice": ENTITY_NOTICES.get(notice or ""),
        },
    )
    return keep_form_token(request, response)


def _access(request: Request, reader: CatalogReader, key: str, who: str | None) -> EntityAccess:
    return entity_access(
        reader,
        request.app.state.identity,
        request.state.actor,
        key,
        enforced=request.app.state.settings.auth.required,
        who=who,
    )


@router.post("/catalog/{namespace}/{kind}/{name}/refresh", name="catalog.entity.refresh")
def refresh_entity(
    request: Request, service: Catalog, namespace: str, kind: str, name: str
) -> Response:
    """Re-read the entity's source now (the API's ``POST /refresh`` for one entity)."""
    ref = EntityRef(kind, namespace, name)
    request.state.audit_target = ref.key
    refused = _refused(request, service, ref, "catalog.entity.refresh")
    if refused is not None:
        return refused
    try:
        report = service.refresh_entity(ref.key)
    except ProblemError as exc:
        from pavedroad.portal.views import error_page

        return error_page(request, exc.status, "Refresh failed", exc.detail)
    notice = "refreshed-with-errors" if report.errors else "refreshed"
    return RedirectResponse(
        f"{entity_path(ref.kind, ref.namespace, ref.name)}?notice={notice}", status_code=303
    )


@router.post("/catalog/{namespace}/{kind}/{name}/delete", name="catalog.entity.delete")
def delete_entity(
    request: Request, service: Catalog, namespace: str, kind: str, name: str
) -> Response:
    """Remove the entity now, as the API's ``DELETE /entities/by-uid/{uid}`` does."""
    ref = EntityRef(kind, namespace, name)
    request.state.audit_target = ref.key
    refused = _refused(request, service, ref, "catalog.entity.delete")
    if refused is not None:
        return refused
    with service.reader() as reader:
        row = reader.row_by_ref(ref)
    if row is not None:  # gone already (a second click): the outcome is the same
        service.delete_entity(row.uid)
    return RedirectResponse("/catalog?notice=deleted", status_code=303)


def _refused(
    request: Request, service: Catalog, ref: EntityRef, permission_name: str
) -> Response | None:
    """A page refusing the action (404, 403), or ``None`` when it may go ahead. The
    button is only shown to those allowed; the check here is the one that counts."""
    from pavedroad.portal.views import error_page

    with service.reader() as reader:
        if reader.row_by_ref(ref) is None:
            return _entity_not_found(request, reader, ref)
    try:
        require(request, permission_name, ref.key)
    except ForbiddenError as exc:
        return error_page(request, exc.status, "Not allowed", exc.detail)
    return None


def _entity_page(reader: CatalogReader, entity: dict[str, Any], ref: EntityRef) -> EntityPage:
    key = ref.key
    relations = [r for r in entity.get("relations") or [] if isinstance(r, dict)][:RELATED_MAX]
    targets = [str(r["targetRef"]) for r in relations]
    spec = _mapping(entity.get("spec"))
    system_key = _ref_key(spec.get("system"), "system", ref.namespace)
    wanted = [*targets, *([system_key] if system_key else [])]
    bodies = portal_data.entities_by_ref(reader.session, wanted)
    kind = ref.kind.lower()
    skip = DEDICATED_RELATIONS.get(kind, set())
    page = EntityPage(
        entity=entity,
        ref=ref,
        status=reader.status_of(key),
        graph=layout(reader.graph(key, depth=1), entity_url),
        related=_group_related([r for r in relations if r["type"] not in skip], bodies),
        other_spec=_other_spec(spec),
        yaml=dump({k: v for k, v in entity.items() if k != "relations"}),
    )
    page.domain = _domain(spec, bodies.get(system_key or ""), ref, kind)
    if kind == "group":
        page.group = _group_sections(relations, bodies)
    elif kind == "user":
        page.user = _user_sections(reader, relations, bodies)
    elif kind == "api":
        page.api = _api_definition(spec, key)
    return page


def _other_spec(spec: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Spec fields shown nowhere else: (name, text, whether the text is a YAML block)."""
    fields = []
    for key, value in spec.items():
        if key in SHOWN_SPEC_FIELDS or value is None:
            continue
        if isinstance(value, str | int | float | bool):
            fields.append(
                (str(key), str(value).lower() if isinstance(value, bool) else str(value), False)
            )
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            fields.append((str(key), ", ".join(str(v) for v in value), False))
        else:
            fields.append((str(key), dump(value).rstrip(), True))
    return fields


def _related(ref: str, bodies: dict[str, dict[str, Any]]) -> Related:
    body = bodies.get(ref)
    parsed = parse_ref(ref)
    return Related(
        ref=ref,
        kind=str(body.get("kind")) if body else parsed.kind,
        label=parsed.display(parsed.kind),
        url=entity_url(body) if body else None,
        entity=body,
    )


def _group_related(
    relations: list[dict[str, Any]], bodies: dict[str, dict[str, Any]]
) -> list[tuple[str, list[Related]]]:
    grouped: dict[str, list[Related]] = defaultdict(list)
    for relation in relations:
        grouped[str(relation["type"])].append(_related(str(relation["targetRef"]), bodies))
    order = {name: i for i, name in enumerate(RELATION_ORDER)}
    return sorted(
        grouped.items(), key=lambda item: (order.get(item[0], len(order)), item[0].lower())
    )


def _domain(
    spec: dict[str, Any], system: dict[str, Any] | None, ref: EntityRef, kind: str
) -> Related | None:
    """The domain an entity belongs to: its own (systems) or its system's."""
    if kind == "system":
        domain = spec.get("domain")
    elif system is not None:
        domain = (system.get("spec") or {}).get("domain")
    else:
        return None
    key = _ref_key(domain, "domain", ref.namespace)
    return (
        Related(
            ref=key,
            kind="Domain",
            label=parse_ref(key).display("domain"),
            url=entity_url(key),
            entity=None,
        )
        if key
        else None
    )


def _group_sections(
    relations: list[dict[str, Any]], bodies: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    def targets(type_: str) -> list[Related]:
        return [_related(str(r["targetRef"]), bodies) for r in relations if r["type"] == type_]

    owned = targets("ownerOf")
    return {
        "members": targets("hasMember"),
        "parents": targets("childOf"),
        "children": targets("parentOf"),
        "owned": _by_kind(owned),
        "owned_count": len(owned),
    }


def _user_sections(
    reader: CatalogReader, relations: list[dict[str, Any]], bodies: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    groups = [_related(str(r["targetRef"]), bodies) for r in relations if r["type"] == "memberOf"]
    owned = [_related(str(r["targetRef"]), bodies) for r in relations if r["type"] == "ownerOf"]
    pairs = portal_data.relation_targets(reader.session, [g.ref for g in groups], "ownerOf")
    group_bodies = portal_data.entities_by_ref(reader.session, [t for _, t in pairs])
    through: list[dict[str, Any]] = []
    for group in groups:
        items = [_related(target, group_bodies) for source, target in pairs if source == group.ref]
        if items:
            through.append({"group": group, "owned": _by_kind(items), "count": len(items)})
    return {
        "groups": groups,
        "owned": _by_kind(owned),
        "owned_count": len(owned),
        "through": through,
    }


def _by_kind(items: list[Related]) -> list[tuple[str, list[Related]]]:
    grouped: dict[str, list[Related]] = defaultdict(list)
    for item in items:
        grouped[item.kind].append(item)
    return sorted(grouped.items(), key=lambda pair: pair[0].lower())


def _api_definition(spec: dict[str, Any], key: str) -> dict[str, Any]:
    definition = spec.get("definition")
    raw = definition if isinstance(definition, str) else dump(definition) if definition else ""
    api_type = str(spec.get("type") or "").lower()
    result: dict[str, Any] = {"type": api_type, "raw": raw, "digest": None, "error": None}
    if api_type == "openapi" and raw:
        try:
            digest: ApiDigest = parse_definition(raw, source=f"{key} spec.definition")
            result["digest"] = digest
        except DefinitionError as exc:
            result["error"] = str(exc)
    return result


@dataclass(frozen=True)
class EntityTab:
    """A tab of an entity's page (``ci``, ``secrets``, ``deployments``): the entity and
    where the page and the tab are."""

    ref: EntityRef
    title: str
    tab: str = ""

    @property
    def entity_url(self) -> str:
        return entity_path(self.ref.kind, self.ref.namespace, self.ref.name)

    @property
    def url(self) -> str:
        return f"{self.entity_url}/{self.tab}"


def tab_entity(
    request: Request, namespace: str, kind: str, name: str
) -> tuple[EntityRef, str] | Response:
    """What an entity page's tab (Secrets, CI, ...) is about: the entity's ref and title,
    or the page saying it is not in the catalog."""
    ref = EntityRef(kind, namespace, name)
    with request.app.state.catalog.reader() as reader:
        row = reader.row_by_ref(ref)
        entity = reader.hydrate([row])[0] if row is not None else None
    if entity is None:
        return render(
            request,
            "portal/not_found.html",
            {
                "title": "Not found",
                "message": f"No {kind.lower()} named '{name}' in namespace '{namespace}'.",
                "hint": "It may have been renamed or removed from its catalog-info.yaml.",
            },
            status_code=404,
        )
    metadata = entity.get("metadata") or {}
    return EntityRef.of(entity), str(metadata.get("title") or metadata.get("name"))


def _entity_not_found(request: Request, reader: CatalogReader, ref: EntityRef) -> Response:
    suggestions = _similar(reader, ref.name)
    return render(
        request,
        "portal/not_found.html",
        {
            "title": "Not found",
            "message": f"No {ref.kind.lower()} named '{ref.name}' in namespace '{ref.namespace}'.",
            "hint": "It may have been renamed or removed from its catalog-info.yaml, or its "
            "location has not been registered yet.",
            "search": ref.name,
            "suggestions": [_row(e) for e in suggestions],
        },
        status_code=404,
    )


def _similar(reader: CatalogReader, name: str) -> list[dict[str, Any]]:
    """Entities named like ``name``: the whole name, else its longest word."""
    words = sorted((w for w in re.split(r"[^A-Za-z0-9]+", name) if len(w) >= 3), key=len)
    for term in dict.fromkeys([name.strip()[:100], *reversed(words)]):
        if term:
            found = reader.query(
                EntityQuery(full_text=term, limit=SUGGESTIONS, fields=TABLE_FIELDS)
            ).items
            if found:
                return found
    return []


def _display_title(entity: dict[str, Any]) -> str:
    metadata = entity.get("metadata") or {}
    profile = _mapping(_mapping(entity.get("spec")).get("profile"))
    display = profile.get("displayName")
    return str(metadata.get("title") or display or metadata.get("name") or "")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ref_key(value: Any, default_kind: str, namespace: str) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_ref(value, default_kind, namespace).key
    except InputError:
        return None


def _quote(part: str) -> str:
    return quote(part, safe="")


# -- locations -----------------------------------------------------------------------------------


@router.get("/locations")
def locations_page(request: Request, service: Catalog) -> Response:
    with service.reader() as reader:
        locations = [
            {"row": row, "status": reader.location_status(row.id)} for row in reader.locations()
        ]
        summary = reader.processing_summary()
    return render(
        request,
        "catalog/locations.html",
        {"title": "Locations", "locations": locations, "summary": summary},
    )


@router.get("/locations/{location_id}")
def location_page(request: Request, service: Catalog, location_id: str) -> Response:
    with service.reader() as reader:
        try:
            row = reader.location(location_id)
        except NotFoundError:
            return render(
                request,
                "portal/not_found.html",
                {
                    "title": "Not found",
                    "message": f"No location with id '{location_id}'.",
                    "hint": "It may have been unregistered.",
                    "back": ("/locations", "All locations"),
                },
                status_code=404,
            )
        status = reader.location_status(row.id)
        entities = portal_data.location_entities(reader.session, row.id)
    return render(
        request,
        "catalog/location.html",
        {
            "title": f"Location {row.target}",
            "location": row,
            "status": status,
            "entities": [_row(e) for e in entities],
        },
    )
