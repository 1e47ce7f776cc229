"""Kinds: which ``apiVersion``/``kind`` pairs the catalog accepts and the JSON Schema
each must satisfy. Built-in kinds register through the same plugin hook as any other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft7Validator

BACKSTAGE_VERSIONS = ("backstage.io/v1alpha1", "backstage.io/v1beta1")
TEMPLATE_VERSION = "scaffolder.backstage.io/v1beta3"
PLATFORM_VERSION = "pavedroad.dev/v1alpha1"


@dataclass
class KindSchema:
    """A kind of entity: its name, accepted apiVersions and a JSON Schema for the whole
    entity (usually only ``spec`` is constrained; the envelope is checked for all)."""

    kind: str
    api_versions: tuple[str, ...]
    schema: dict[str, Any]
    description: str = ""
    validator: Draft7Validator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        Draft7Validator.check_schema(self.schema)
        self.validator = Draft7Validator(self.schema)

    def accepts(self, api_version: str, kind: str) -> bool:
        return kind == self.kind and api_version in self.api_versions


def _spec_schema(
    kind: str,
    api_versions: tuple[str, ...],
    required: list[str],
    properties: dict[str, Any],
    spec_required: bool = True,
) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["spec"] if spec_required else [],
        "properties": {
            "apiVersion": {"enum": list(api_versions)},
            "kind": {"enum": [kind]},
            "spec": {"type": "object", "required": required, "properties": properties},
        },
    }


_STRING = {"type": "string", "minLength": 1}
_NAME = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"}
_DURATION = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(s|m|h|d)$"}  # 30m, 72h, 7d
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_PROFILE = {
    "type": "object",
    "properties": {
        "displayName": _STRING,
        "email": _STRING,
        "picture": _STRING,
    },
}


_PERMISSIONS = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
}
_TEMPLATE_PARAMETERS = {"type": "object", "properties": {"backstage:permissions": _PERMISSIONS}}
_CONDITION = {"type": ["string", "boolean"]}

# plugins/scaffolder-common/src/Template.v1beta3.schema.json, rule for rule (descriptions
# dropped). A step has no rule for ``each`` there, so any ``each`` value is accepted.
_TEMPLATE_SPEC: dict[str, Any] = {
    "type": _STRING,
    "owner": _STRING,
    "lifecycle": _STRING,
    "parameters": {
        "oneOf": [
            _TEMPLATE_PARAMETERS,
            {"type": "array", "items": _TEMPLATE_PARAMETERS},
        ]
    },
    "secrets": {"type": "object", "properties": {"schema": {"type": "object"}}},
    "presentation": {
        "type": "object",
        "properties": {
            "buttonLabels": {
                "type": "object",
                "properties": {
                    "backButtonText": {"type": "string"},
                    "createButtonText": {"type": "string"},
                    "reviewButtonText": {"type": "string"},
                },
            }
        },
    },
    "EXPERIMENTAL_recovery": {
        "type": "object",
        "properties": {"EXPERIMENTAL_strategy": {"type": "string"}},
    },
    "EXPERIMENTAL_formDecorators": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "input": {"type": "object"}},
        },
    },
    "steps": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["action"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "action": {"type": "string"},
                "input": {"type": "object"},
                "if": _CONDITION,
                "backstage:permissions": _PERMISSIONS,
            },
        },
    },
    "output": {
        "type": "object",
        "properties": {
            "links": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "if": _CONDITION,
                        "url": _STRING,
                        "entityRef": _STRING,
                        "title": _STRING,
                        "icon": _STRING,
                    },
                },
            },
            "text": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "if": _CONDITION,
                        "title": _STRING,
                        "icon": _STRING,
                        "content": {"type": "string"},
                    },
                },
            },
        },
        "additionalProperties": {"type": "string"},
    },
}


def builtin_kinds() -> list[KindSchema]:
    """Backstage's built-in kinds with the rules of its ``*.v1alpha1.schema.json`` files."""
    v = BACKSTAGE_VERSIONS
    return [
        KindSchema(
            "Component",
            v,
            _spec_schema(
                "Component",
                v,
                ["type", "lifecycle", "owner"],
                {
                    "type": _STRING,
                    "lifecycle": _STRING,
                    "owner": _STRING,
                    "system": _STRING,
                    "subcomponentOf": _STRING,
                    "providesApis": _STRINGS,
                    "consumesApis": _STRINGS,
                    "dependsOn": _STRINGS,
                    "dependencyOf": _STRINGS,
                },
            ),
            "A piece of software: a service, website, library or pipeline.",
        ),
        KindSchema(
            "API",
            v,
            _spec_schema(
                "API",
                v,
                ["type", "lifecycle", "owner", "definition"],
                {
                    "type": _STRING,
                    "lifecycle": _STRING,
                    "owner": _STRING,
                    "system": _STRING,
                    "definition": _STRING,
                },
            ),
            "An interface a component provides: OpenAPI, AsyncAPI, GraphQL, gRPC.",
        ),
        KindSchema(
            "Resource",
            v,
            _spec_schema(
                "Resource",
                v,
                ["type", "owner"],
                {
                    "type": _STRING,
                    "owner": _STRING,
                    "dependsOn": _STRINGS,
                    "dependencyOf": _STRINGS,
                    "system": _STRING,
                },
            ),
            "Infrastructure a component needs: a database, bucket or queue.",
        ),
        KindSchema(
            "System",
            v,
            _spec_schema(
                "System",
                v,
                ["owner"],
                {
                    "owner": _STRING,
                    "domain": _STRING,
                    "type": _STRING,
                },
            ),
            "A collection of components, APIs and resources that work together.",
        ),
        KindSchema(
            "Domain",
            v,
            _spec_schema(
                "Domain",
                v,
                ["owner"],
                {
                    "owner": _STRING,
                    "subdomainOf": _STRING,
                    "type": _STRING,
                },
            ),
            "A business area that groups systems.",
        ),
        KindSchema(
            "Group",
            v,
            _spec_schema(
                "Group",
                v,
                ["type", "children"],
                {
                    "type": _STRING,
                    "profile": _PROFILE,
                    "parent": _STRING,
                    "children": {"type": "array", "items": _STRING},
                    "members": _STRINGS,
                },
            ),
            "A team or organisational unit.",
        ),
        KindSchema(
            "User",
            v,
            _spec_schema(
                "User",
                v,
                ["memberOf"],
                {
                    "profile": _PROFILE,
                    "memberOf": {"type": "array", "items": _STRING},
                },
            ),
            "A person.",
        ),
        KindSchema(
            "Location",
            v,
            _spec_schema(
                "Location",
                v,
                [],
                {
                    "type": _STRING,
                    "target": _STRING,
                    "targets": _STRINGS,
                    "presence": {"enum": ["required", "optional"]},
                },
            ),
            "A pointer to more descriptor files.",
        ),
        KindSchema(
            "Template",
            (TEMPLATE_VERSION,),
            _spec_schema(
                "Template",
                (TEMPLATE_VERSION,),
                ["type", "steps"],
                _TEMPLATE_SPEC,
            ),
            "A golden-path template for the scaffolder.",
        ),
    ]


def platform_kinds() -> list[KindSchema]:
    """Pavedroad's own kinds under ``pavedroad.dev/v1alpha1``."""
    p = (PLATFORM_VERSION,)
    return [
        KindSchema(
            "Environment",
            p,
            _spec_schema(
                "Environment",
                p,
                ["type", "owner"],
                {
                    "type": {"enum": ["development", "staging", "production", "preview"]},
                    "description": {"type": "string"},
                    "owner": _STRING,
                    "runtime": {"enum": ["local"]},
                    "promotesFrom": _NAME,
                    "approval": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "approvals": {"type": "integer", "minimum": 1, "maximum": 10},
                            "expiresAfter": _DURATION,
                        },
                    },
                    "autoDeploy": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "minProperties": 1,
                            "maxProperties": 1,
                            "properties": {
                                "defaultBranch": {"const": True},
                                "branch": _STRING,
                            },
                        },
                    },
                    "previews": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"ttl": _DURATION},
                    },
                    "variables": {
                        "type": "object",
                        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
                        "additionalProperties": {"type": ["string", "number", "boolean"]},
                    },
                },
            ),
            "A place releases run: development, staging, production or a preview.",
        ),
    ]
