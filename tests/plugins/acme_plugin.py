"""A tiny third-party Pavedroad plugin, used by tests/integration/test_plugins.py.

It adds a ``Dashboard`` kind (``acme.example/v1``) through ``pavedroad_catalog_kinds``
and a processor that checks dashboard URLs and relates a dashboard to the components it
shows (``shows`` / ``shownBy``) and to its owner (``ownedBy`` / ``ownerOf``). The test
installs it the way pip would: the module plus a ``.dist-info`` folder whose
``entry_points.txt`` declares it in the ``pavedroad.plugins`` group.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pavedroad.catalog.kinds import KindSchema
from pavedroad.catalog.processing import EntityProcessor, Relation
from pavedroad.catalog.refs import EntityRef, parse_ref
from pavedroad.core.hookspecs import hookimpl

API_VERSION = "acme.example/v1"

DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "apiVersion": {"enum": [API_VERSION]},
        "kind": {"enum": ["Dashboard"]},
        "spec": {
            "type": "object",
            "required": ["owner", "url"],
            "additionalProperties": False,
            "properties": {
                "owner": {"type": "string", "minLength": 1},
                "url": {"type": "string", "minLength": 1},
                "shows": {"type": "array", "items": {"type": "string", "minLength": 1}},
            },
        },
    },
}


@hookimpl
def pavedroad_catalog_kinds() -> list[KindSchema]:
    return [
        KindSchema(
            "Dashboard",
            (API_VERSION,),
            DASHBOARD_SCHEMA,
            "A monitoring dashboard (from the acme test plugin).",
        )
    ]


class DashboardProcessor(EntityProcessor):
    name = "acme-dashboards"

    def validate(self, entity: dict[str, Any]) -> list[str]:
        if entity.get("kind") != "Dashboard":
            return []
        url = (entity.get("spec") or {}).get("url")
        if isinstance(url, str) and not url.startswith("https://"):
            return [f"/spec/url must be an https URL, got {url!r}"]
        return []

    def relations(self, entity: dict[str, Any], ref: EntityRef) -> Iterable[Relation]:
        if ref.kind != "Dashboard":
            return
        spec = entity["spec"]
        owner = parse_ref(spec["owner"], "Group", ref.namespace).key
        yield Relation(ref.key, "ownedBy", owner)
        yield Relation(owner, "ownerOf", ref.key)
        for shown in spec.get("shows") or []:
            target = parse_ref(shown, "Component", ref.namespace).key
            yield Relation(ref.key, "shows", target)
            yield Relation(target, "shownBy", ref.key)


@hookimpl
def pavedroad_catalog_processors(settings: Any) -> list[EntityProcessor]:
    return [DashboardProcessor()]
