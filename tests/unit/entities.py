"""Entities for the unit tests: a minimal valid entity of every kind."""

from __future__ import annotations

import copy
from typing import Any

BACKSTAGE = "backstage.io/v1alpha1"

# A valid example of every kind, with only its required spec fields.
MINIMAL_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "Component": (BACKSTAGE, {"type": "service", "lifecycle": "production", "owner": "team-a"}),
    "API": (
        BACKSTAGE,
        {
            "type": "openapi",
            "lifecycle": "production",
            "owner": "team-a",
            "definition": "openapi: 3.0.0",
        },
    ),
    "Resource": (BACKSTAGE, {"type": "database", "owner": "team-a"}),
    "System": (BACKSTAGE, {"owner": "team-a"}),
    "Domain": (BACKSTAGE, {"owner": "team-a"}),
    "Group": (BACKSTAGE, {"type": "team", "children": []}),
    "User": (BACKSTAGE, {"memberOf": []}),
    "Location": (BACKSTAGE, {}),
    "Template": (
        "scaffolder.backstage.io/v1beta3",
        {"type": "service", "steps": [{"action": "fetch:plain", "input": {"url": "./skeleton"}}]},
    ),
}


def entity(
    kind: str = "Component",
    name: str = "orders",
    spec: dict[str, Any] | None = None,
    api_version: str | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    """A minimal valid entity of ``kind``; ``spec`` replaces the minimal spec."""
    default_version, minimal = MINIMAL_SPECS[kind]
    return {
        "apiVersion": api_version or default_version,
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": copy.deepcopy(minimal) if spec is None else spec,
    }
