"""The audit log's API: ``GET /api/v1/audit`` (JSON, or JSON lines to export)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from pavedroad.core import audit
from pavedroad.identity.http import require

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", summary="Audit events, newest first", response_model=None)
def list_events(
    request: Request,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="exact, or with * wildcards")] = None,
    outcome: Literal["success", "failure", "denied"] | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    before: Annotated[str | None, Query(description="an event id: older events only")] = None,
    format: Literal["json", "jsonl"] = "json",
) -> Any:
    """Admins only (``audit.read``)."""
    require(request, "audit.read")
    events = audit.search(
        request.app.state.db,
        actor=actor,
        action=action,
        outcome=outcome,
        limit=limit,
        before=before,
    )
    if format == "jsonl":
        return StreamingResponse(
            audit.as_json_lines(events),
            media_type="application/x-ndjson",
            headers={"content-disposition": "attachment; filename=audit.jsonl"},
        )
    return {"items": events}
