"""Backstage-compatible catalog endpoints under ``/api/catalog``.

Same paths, query parameters and JSON shapes as Backstage's catalog backend, so
``@backstage/catalog-client`` and existing scripts work unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pavedroad.catalog.api import Catalog, page_body, split_fields
from pavedroad.catalog.processing import EntityValidationError
from pavedroad.catalog.queries import (
    MAX_LIMIT,
    EntityQuery,
    clamp_limit,
    parse_filters,
    parse_order,
)
from pavedroad.catalog.refs import EntityRef
from pavedroad.core.errors import InputError
from pavedroad.identity.http import require

router = APIRouter(prefix="/api/catalog", tags=["backstage-compatible catalog"])


class BackstageLocationInput(BaseModel):
    type: str = "url"
    target: str = Field(min_length=1, max_length=2048)


class ByRefsInput(BaseModel):
    entityRefs: list[str] = Field(max_length=1000)
    fields: list[str] | None = None


class RefreshRequest(BaseModel):
    entityRef: str


class ValidateRequest(BaseModel):
    entity: Any
    location: str


def _order_params(raw: list[str]) -> list[tuple[str, str]]:
    """Backstage's ``order=asc:metadata.name`` form."""
    result = []
    for text in raw:
        direction, _, field = text.partition(":")
        if not field:
            direction, field = "asc", direction
        result.append(f"{field},{direction}")
    return parse_order(result)


@router.get("/entities", summary="All matching entities as a bare array")
def entities(
    service: Catalog,
    filter: list[str] | None = Query(None),
    fields: list[str] | None = Query(None),
    limit: Annotated[int | None, Query(ge=0)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    after: str | None = None,
    order: list[str] | None = Query(None),
) -> Response:
    """Without ``limit``, every match (as Backstage answers); with it, one page and a
    ``link`` header to the next."""
    query = EntityQuery(
        filter=parse_filters(filter or []),
        order=_order_params(order or []),
        limit=clamp_limit(limit if limit is not None else MAX_LIMIT),
        fields=split_fields(fields),
        offset=offset or 0,
    )
    items: list[Any] = []
    with service.reader() as reader:
        page = reader.query(query, after)
        items.extend(page.items)
        while limit is None and page.next_cursor:
            page = reader.query(query, page.next_cursor)
            items.extend(page.items)
    headers = {}
    if page.next_cursor and limit is not None:
        headers["link"] = f'<?after={page.next_cursor}>; rel="next"'
    return JSONResponse(items, headers=headers)


@router.get("/entities/by-query", summary="A page of matching entities with a cursor")
def by_query(
    service: Catalog,
    filter: list[str] | None = Query(None),
    fields: list[str] | None = Query(None),
    orderField: list[str] | None = Query(None),
    fullTextFilterTerm: str = "",
    fullTextFilterFields: list[str] | None = Query(None),
    limit: Annotated[int | None, Query(ge=0)] = None,
    offset: Annotated[int | None, Query(ge=0)] = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = EntityQuery(
        filter=parse_filters(filter or []),
        full_text=fullTextFilterTerm,
        full_text_fields=split_fields(fullTextFilterFields),
        order=parse_order(orderField or []),
        limit=clamp_limit(limit if limit is not None else 20),
        fields=split_fields(fields),
        offset=offset or 0,
    )
    with service.reader() as reader:
        return page_body(reader.query(query, cursor))


class FullTextFilterInput(BaseModel):
    term: str = Field(default="", max_length=200)
    fields: list[str] | None = None


class PredicateQueryInput(BaseModel):
    query: dict[str, Any] | None = None
    cursor: str | None = None
    limit: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    orderBy: list[dict[str, str]] | None = None
    fullTextFilter: FullTextFilterInput | None = None
    fields: list[str] | None = None
    totalItems: bool | None = None


class PredicateFacetsInput(BaseModel):
    facets: list[str] = Field(min_length=1)
    query: dict[str, Any] | None = None


@router.post("/entities/by-query", summary="A page of entities matching a filter predicate")
def by_predicate(service: Catalog, body: PredicateQueryInput) -> dict[str, Any]:
    full_text = body.fullTextFilter or FullTextFilterInput()
    order = parse_order(f"{o.get('field', '')},{o.get('order', 'asc')}" for o in body.orderBy or [])
    query = EntityQuery(
        filter=body.query,
        full_text=full_text.term,
        full_text_fields=full_text.fields or [],
        order=order,
        limit=clamp_limit(body.limit if body.limit is not None else 20),
        fields=body.fields or [],
        offset=body.offset or 0,
    )
    with service.reader() as reader:
        return page_body(reader.query(query, body.cursor))


@router.post("/entity-facets", summary="Facet counts over entities matching a filter predicate")
def facets_by_predicate(service: Catalog, body: PredicateFacetsInput) -> dict[str, Any]:
    with service.reader() as reader:
        return {"facets": reader.facets(body.facets, body.query)}


@router.get("/entities/by-uid/{uid}")
def by_uid(service: Catalog, uid: str) -> dict[str, Any]:
    with service.reader() as reader:
        return reader.get_by_uid(uid)


@router.delete("/entities/by-uid/{uid}", status_code=204, name="catalog.entity.delete")
def delete_by_uid(service: Catalog, request: Request, uid: str) -> Response:
    with service.reader() as reader:
        entity = reader.get_by_uid(uid, ["kind", "metadata.name", "metadata.namespace"])
    require(request, "catalog.entity.delete", str(EntityRef.of(entity)))
    service.delete_entity(uid)
    return Response(status_code=204)


@router.get("/entities/by-name/{kind}/{namespace}/{name}")
def by_name(service: Catalog, kind: str, namespace: str, name: str) -> dict[str, Any]:
    with service.reader() as reader:
        return reader.get_by_ref(EntityRef(kind, namespace, name))


@router.get("/entities/by-name/{kind}/{namespace}/{name}/ancestry")
def ancestry(service: Catalog, kind: str, namespace: str, name: str) -> dict[str, Any]:
    with service.reader() as reader:
        return reader.ancestry(str(EntityRef(kind, namespace, name)))


@router.post("/entities/by-refs")
def by_refs(
    service: Catalog,
    body: ByRefsInput,
    fields: list[str] | None = Query(None),
    filter: list[str] | None = Query(None),
) -> dict[str, Any]:
    wanted = body.fields or split_fields(fields)
    with service.reader() as reader:
        return {"items": reader.get_many(body.entityRefs, wanted, parse_filters(filter or []))}


@router.get("/entity-facets")
def entity_facets(
    service: Catalog, facet: list[str] = Query(...), filter: list[str] | None = Query(None)
) -> dict[str, Any]:
    with service.reader() as reader:
        return {"facets": reader.facets(facet, parse_filters(filter or []))}


@router.get("/locations")
def locations(service: Catalog) -> list[dict[str, Any]]:
    with service.reader() as reader:
        return [
            {"data": {"id": r.id, "type": r.type, "target": r.target}} for r in reader.locations()
        ]


@router.get("/locations/by-entity/{kind}/{namespace}/{name}")
def location_by_entity(service: Catalog, kind: str, namespace: str, name: str) -> dict[str, Any]:
    with service.reader() as reader:
        reader.get_by_ref(EntityRef(kind, namespace, name))
        row = reader.location_by_ref(str(EntityRef(kind, namespace, name)))
    if row is None:
        raise InputError("this entity does not belong to a registered location")
    return {"id": row.id, "type": row.type, "target": row.target}


@router.get("/locations/{location_id}")
def location(service: Catalog, location_id: str) -> dict[str, Any]:
    with service.reader() as reader:
        row = reader.location(location_id)
    return {"id": row.id, "type": row.type, "target": row.target}


@router.post("/locations", status_code=201, name="catalog.location.create")
def add_location(
    service: Catalog,
    request: Request,
    body: BackstageLocationInput,
    response: Response,
    dryRun: bool = False,
) -> dict[str, Any]:
    require(request, "catalog.location.create")
    if dryRun:
        entities, _errors = service.preview_location(body.type, body.target)
        response.status_code = 200
        return {
            "location": {"id": "", "type": body.type, "target": body.target},
            "entities": entities,
            "exists": False,
        }
    row, entities = service.register_location(body.type, body.target)
    return {
        "location": {"id": row.id, "type": row.type, "target": row.target},
        "entities": entities,
    }


@router.delete("/locations/{location_id}", status_code=204, name="catalog.location.delete")
def delete_location(service: Catalog, request: Request, location_id: str) -> Response:
    require(request, "catalog.location.delete")
    service.unregister_location(location_id)
    return Response(status_code=204)


@router.post("/refresh", status_code=200, name="catalog.entity.refresh")
def refresh(service: Catalog, request: Request, body: RefreshRequest) -> Response:
    require(request, "catalog.entity.refresh", body.entityRef)
    service.refresh_entity(body.entityRef)
    return Response(status_code=200)


@router.post("/validate-entity")
def validate_entity(service: Catalog, body: ValidateRequest) -> Response:
    try:
        service.validate_entity(body.entity, body.location)
    except EntityValidationError as exc:
        errors = [
            {
                "name": "InputError",
                "message": message,
                "cause": {"name": "TypeError", "message": message},
            }
            for message in exc.errors
        ]
        return JSONResponse({"errors": errors}, status_code=400)
    return Response(status_code=200)
