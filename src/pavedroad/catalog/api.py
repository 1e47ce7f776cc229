"""The catalog's own REST API, under ``/api/v1/catalog``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from pavedroad.catalog.queries import (
    EntityQuery,
    Page,
    clamp_limit,
    parse_filters,
    parse_order,
)
from pavedroad.catalog.refs import EntityRef
from pavedroad.catalog.service import CatalogService
from pavedroad.core.timeutil import isoformat
from pavedroad.identity.http import require

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])


def catalog(request: Request) -> CatalogService:
    return request.app.state.catalog  # type: ignore[no-any-return]


Catalog = Annotated[CatalogService, Depends(catalog)]


class LocationInput(BaseModel):
    type: Literal["url", "file"] = "url"
    target: str = Field(min_length=1, max_length=2048)


class RefsInput(BaseModel):
    refs: list[str] = Field(max_length=1000)
    fields: list[str] | None = None


class RefreshInput(BaseModel):
    entityRef: str | None = None
    locationId: str | None = None


class ValidateInput(BaseModel):
    entity: Any
    location: str | None = None


def split_fields(values: list[str] | None) -> list[str]:
    return [f.strip() for v in values or [] for f in v.split(",") if f.strip()]


def page_body(page: Page) -> dict[str, Any]:
    page_info: dict[str, str] = {}
    if page.next_cursor:
        page_info["nextCursor"] = page.next_cursor
    if page.prev_cursor:
        page_info["prevCursor"] = page.prev_cursor
    return {"items": page.items, "totalItems": page.total, "pageInfo": page_info}


def location_out(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "target": row.target,
        "origin": row.origin,
        "createdAt": isoformat(row.created_at),
    }


@router.get("/entities", summary="List and search entities")
def list_entities(
    service: Catalog,
    filter: Annotated[
        list[str] | None, Query(description="field=value[,field=value]; repeat to OR")
    ] = None,
    q: Annotated[str, Query(max_length=200, description="full-text search")] = "",
    order: Annotated[list[str] | None, Query(description="field[,asc|desc]")] = None,
    fields: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = EntityQuery(
        filter=parse_filters(filter or []),
        full_text=q,
        order=parse_order(order or []),
        limit=clamp_limit(limit),
        fields=split_fields(fields),
    )
    with service.reader() as reader:
        return page_body(reader.query(query, cursor))


@router.get("/entities/by-uid/{uid}", summary="Get an entity by uid")
def get_by_uid(
    service: Catalog, uid: str, fields: list[str] | None = Query(None)
) -> dict[str, Any]:
    with service.reader() as reader:
        return reader.get_by_uid(uid, split_fields(fields))


@router.post("/entities/by-refs", summary="Get many entities by ref, in request order")
def get_by_refs(service: Catalog, body: RefsInput) -> dict[str, Any]:
    with service.reader() as reader:
        return {"items": reader.get_many(body.refs, body.fields or [])}


@router.get("/entities/{kind}/{namespace}/{name}", summary="Get an entity by ref")
def get_entity(
    service: Catalog, kind: str, namespace: str, name: str, fields: list[str] | None = Query(None)
) -> dict[str, Any]:
    with service.reader() as reader:
        return reader.get_by_ref(EntityRef(kind, namespace, name), split_fields(fields))


@router.get("/entities/{kind}/{namespace}/{name}/relations", summary="The entity's relation graph")
def get_graph(
    service: Catalog,
    kind: str,
    namespace: str,
    name: str,
    depth: Annotated[int, Query(ge=0, le=5)] = 1,
) -> dict[str, Any]:
    with service.reader() as reader:
        return reader.graph(str(EntityRef(kind, namespace, name)), depth)


@router.get("/entities/{kind}/{namespace}/{name}/status", summary="Processing status and errors")
def get_status(service: Catalog, kind: str, namespace: str, name: str) -> dict[str, Any]:
    with service.reader() as reader:
        status = reader.status_of(str(EntityRef(kind, namespace, name)))
    return {k: isoformat(v) if hasattr(v, "isoformat") else v for k, v in status.items()}


@router.get("/entities/{kind}/{namespace}/{name}/ancestry", summary="Locations that led to it")
def get_ancestry(service: Catalog, kind: str, namespace: str, name: str) -> dict[str, Any]:
    with service.reader() as reader:
        return reader.ancestry(str(EntityRef(kind, namespace, name)))


@router.get("/facets", summary="Counts of each value of the given fields")
def get_facets(
    service: Catalog,
    facet: Annotated[list[str], Query(min_length=1)],
    filter: list[str] | None = Query(None),
    q: str = "",
) -> dict[str, Any]:
    with service.reader() as reader:
        return {"facets": reader.facets(facet, parse_filters(filter or []), q)}


@router.get("/kinds", summary="The kinds the catalog accepts")
def get_kinds(service: Catalog) -> list[dict[str, Any]]:
    return [
        {
            "kind": k.kind,
            "apiVersions": list(k.api_versions),
            "description": k.description,
            "schema": k.schema,
        }
        for k in service.ingester.pipeline.kinds
    ]


@router.get("/locations", summary="Registered and configured locations")
def get_locations(service: Catalog) -> list[dict[str, Any]]:
    with service.reader() as reader:
        return [
            location_out(row) | {"status": reader.location_status(row.id)}
            for row in reader.locations()
        ]


@router.post(
    "/locations",
    status_code=201,
    summary="Register a location and ingest it",
    name="catalog.location.create",
)
def post_location(
    service: Catalog,
    request: Request,
    body: LocationInput,
    response: Response,
    dryRun: bool = False,
) -> dict[str, Any]:
    require(request, "catalog.location.create")
    if dryRun:
        entities, errors = service.preview_location(body.type, body.target)
        response.status_code = 200
        return {
            "location": {"type": body.type, "target": body.target},
            "entities": entities,
            "errors": errors,
        }
    row, entities = service.register_location(body.type, body.target)
    with service.reader() as reader:
        status = reader.location_status(row.id)
    return {"location": location_out(row), "entities": entities, "errors": status["errors"]}


@router.get("/locations/{location_id}", summary="One location and its processing status")
def get_location(service: Catalog, location_id: str) -> dict[str, Any]:
    with service.reader() as reader:
        row = reader.location(location_id)
        return location_out(row) | {"status": reader.location_status(row.id)}


@router.delete(
    "/locations/{location_id}",
    status_code=204,
    summary="Unregister a location and its entities",
    name="catalog.location.delete",
)
def delete_location(service: Catalog, request: Request, location_id: str) -> Response:
    require(request, "catalog.location.delete")
    service.unregister_location(location_id)
    return Response(status_code=204)


@router.post(
    "/refresh",
    summary="Re-read an entity's source or a whole location now",
    name="catalog.entity.refresh",
)
def post_refresh(service: Catalog, request: Request, body: RefreshInput) -> dict[str, Any]:
    from pavedroad.core.errors import InputError

    if body.entityRef:
        require(request, "catalog.entity.refresh", body.entityRef)
        report = service.refresh_entity(body.entityRef)
    elif body.locationId:
        require(request, "catalog.location.create")  # re-reading a location changes no rights
        report = service.refresh_location(body.locationId)
    else:
        raise InputError("give entityRef or locationId")
    return {
        "sources": report.sources,
        "written": report.written,
        "unchanged": report.unchanged,
        "orphaned": report.orphaned,
        "errors": report.errors,
    }


@router.post("/validate", summary="Validate an entity without saving it")
def post_validate(service: Catalog, body: Annotated[ValidateInput, Body()]) -> dict[str, Any]:
    entity = service.validate_entity(body.entity, body.location)
    return {"valid": True, "entity": entity}
