"""A readable digest of an OpenAPI (3.x, or Swagger 2.0) definition for the API page.

The definition is untrusted: local ``$ref``s are followed with a depth cap and cycle
detection, everything else is read defensively (a wrong type is skipped, never an
error), and the whole digest is bounded in size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pavedroad.core.safeyaml import YamlError, load_document

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
MAX_SCHEMA_DEPTH = 6
MAX_SCHEMA_NODES = 4000
MAX_OPERATIONS = 500
# Swagger 2.0 puts a non-body parameter's schema on the parameter itself.
SWAGGER_SCHEMA_KEYS = ("type", "format", "items", "enum", "default")


class DefinitionError(Exception):
    """The definition is not an OpenAPI document the page can show."""


@dataclass
class Schema:
    """One node of a schema tree, ready to print."""

    type: str
    name: str | None = None
    required: bool = False
    description: str = ""
    ref: str | None = None
    format: str | None = None
    enum: list[str] = field(default_factory=list)
    default: str | None = None
    example: str | None = None
    nullable: bool = False
    deprecated: bool = False
    note: str | None = None
    children: list[Schema] = field(default_factory=list)
    variants: list[Schema] = field(default_factory=list)
    variant_kind: str | None = None


@dataclass
class Parameter:
    name: str
    location: str
    required: bool
    description: str
    schema: Schema | None
    deprecated: bool = False


@dataclass
class Content:
    media_type: str
    schema: Schema | None


@dataclass
class Response:
    status: str
    description: str
    contents: list[Content]


@dataclass
class RequestBody:
    required: bool
    description: str
    contents: list[Content]


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    description: str
    operation_id: str | None
    deprecated: bool
    tags: list[str]
    parameters: list[Parameter]
    request_body: RequestBody | None
    responses: list[Response]

    @property
    def anchor(self) -> str:
        text = f"op-{self.method}-{self.path}"
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")


@dataclass
class Server:
    url: str
    description: str


@dataclass
class ApiDigest:
    title: str
    version: str
    description: str
    spec_version: str
    servers: list[Server]
    operations: list[Operation]
    truncated: bool = False

    @property
    def tags(self) -> list[str]:
        return list(dict.fromkeys(t for op in self.operations for t in op.tags))


def parse_definition(text: Any, source: str = "definition") -> ApiDigest:
    """The digest of an OpenAPI definition given as JSON or YAML text (or parsed data)."""
    if isinstance(text, str):
        try:
            document = load_document(text, source)
        except YamlError as exc:
            raise DefinitionError(str(exc)) from None
    else:
        document = text
    if not isinstance(document, dict):
        raise DefinitionError("the definition is not a mapping")
    version = str(document.get("openapi") or document.get("swagger") or "")
    if not version:
        raise DefinitionError("the definition has no 'openapi' (or 'swagger') version field")
    return _Digester(document, swagger=version.startswith("2")).digest(version)


class _Digester:
    def __init__(self, document: dict[str, Any], swagger: bool) -> None:
        self.document = document
        self.swagger = swagger
        self.nodes = 0

    def digest(self, version: str) -> ApiDigest:
        info = _mapping(self.document.get("info"))
        operations, truncated = self.operations()
        return ApiDigest(
            title=_text(info.get("title")),
            version=_text(info.get("version")),
            description=_text(info.get("description")),
            spec_version=version,
            servers=self.servers(),
            operations=operations,
            truncated=truncated or self.nodes >= MAX_SCHEMA_NODES,
        )

    # -- references --------------------------------------------------------------------

    def resolve(self, value: Any, seen: frozenset[str] = frozenset()) -> tuple[Any, str | None]:
        """Follow local ``$ref``s; returns the target and the last ref's name."""
        name = None
        for _ in range(MAX_SCHEMA_DEPTH * 2):
            if not isinstance(value, dict) or not isinstance(value.get("$ref"), str):
                return value, name
            ref = value["$ref"]
            if ref in seen or not ref.startswith("#/"):
                return value, name
            seen = seen | {ref}
            name = ref.rsplit("/", 1)[-1]
            value = self._pointer(ref)
        return value, name

    def _pointer(self, ref: str) -> Any:
        target: Any = self.document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                return None
        return target

    # -- servers and operations ------------------------------------------------------

    def servers(self) -> list[Server]:
        if self.swagger:
            host = _text(self.document.get("host"))
            if not host:
                return []
            schemes = [s for s in _list(self.document.get("schemes")) if isinstance(s, str)] or [
                "https"
            ]
            base = _text(self.document.get("basePath"))
            return [Server(f"{scheme}://{host}{base}", "") for scheme in schemes]
        return [
            Server(_text(s.get("url")), _text(s.get("description")))
            for s in _list(self.document.get("servers"))
            if isinstance(s, dict)
        ]

    def operations(self) -> tuple[list[Operation], bool]:
        result: list[Operation] = []
        for path, item in _mapping(self.document.get("paths")).items():
            item, _ = self.resolve(item)
            if not isinstance(item, dict):
                continue
            shared = _list(item.get("parameters"))
            for method in METHODS:
                operation = item.get(method)
                if not isinstance(operation, dict):
                    continue
                if len(result) >= MAX_OPERATIONS:
                    return result, True
                result.append(self.operation(method, str(path), operation, shared))
        return result, False

    def operation(
        self, method: str, path: str, data: dict[str, Any], shared: list[Any]
    ) -> Operation:
        parameters = self.parameters([*shared, *_list(data.get("parameters"))])
        body = self.request_body(data)
        if self.swagger:
            body_params = [p for p in parameters if p.location == "body"]
            parameters = [p for p in parameters if p.location != "body"]
            if body_params and body is None:
                first = body_params[0]
                consumes = _list(data.get("consumes") or self.document.get("consumes")) or [
                    "application/json"
                ]
                body = RequestBody(
                    first.required, first.description, [Content(str(consumes[0]), first.schema)]
                )
        return Operation(
            method=method,
            path=path,
            summary=_text(data.get("summary")),
            description=_text(data.get("description")),
            operation_id=_text(data.get("operationId")) or None,
            deprecated=data.get("deprecated") is True,
            tags=[str(t) for t in _list(data.get("tags")) if isinstance(t, str | int)],
            parameters=parameters,
            request_body=body,
            responses=self.responses(data),
        )

    def parameters(self, raw: list[Any]) -> list[Parameter]:
        merged: dict[tuple[str, str], Parameter] = {}
        for item in raw:
            item, _ = self.resolve(item)
            if not isinstance(item, dict):
                continue
            location = _text(item.get("in"))
            schema_data = item.get("schema")
            if schema_data is None and self.swagger and location != "body":
                schema_data = {k: v for k, v in item.items() if k in SWAGGER_SCHEMA_KEYS}
            if schema_data is None and isinstance(item.get("content"), dict):
                first = next(iter(item["content"].values()), None)
                schema_data = first.get("schema") if isinstance(first, dict) else None
            parameter = Parameter(
                name=_text(item.get("name")),
                location=location,
                required=item.get("required") is True or location == "path",
                description=_text(item.get("description")),
                schema=self.schema(schema_data) if schema_data is not None else None,
                deprecated=item.get("deprecated") is True,
            )
            merged[(parameter.name, location)] = parameter  # operation-level wins
        return list(merged.values())

    def request_body(self, data: dict[str, Any]) -> RequestBody | None:
        body, _ = self.resolve(data.get("requestBody"))
        if not isinstance(body, dict):
            return None
        return RequestBody(
            body.get("required") is True,
            _text(body.get("description")),
            self.contents(body.get("content")),
        )

    def responses(self, data: dict[str, Any]) -> list[Response]:
        result = []
        for status, response in _mapping(data.get("responses")).items():
            response, _ = self.resolve(response)
            if not isinstance(response, dict):
                continue
            if self.swagger:
                schema = response.get("schema")
                contents = [Content("", self.schema(schema))] if schema is not None else []
            else:
                contents = self.contents(response.get("content"))
            result.append(Response(str(status), _text(response.get("description")), contents))
        return sorted(result, key=lambda r: (r.status == "default", r.status))

    def contents(self, raw: Any) -> list[Content]:
        return [
            Content(
                str(media_type),
                self.schema(item.get("schema"))
                if isinstance(item, dict) and item.get("schema") is not None
                else None,
            )
            for media_type, item in _mapping(raw).items()
        ]

    # -- schemas ----------------------------------------------------------------------

    def schema(
        self,
        raw: Any,
        name: str | None = None,
        required: bool = False,
        depth: int = 0,
        seen: frozenset[str] = frozenset(),
    ) -> Schema:
        self.nodes += 1
        data, ref = self.resolve(raw, seen)
        if isinstance(raw, dict) and isinstance(raw.get("$ref"), str):
            if raw["$ref"] in seen:
                return Schema(
                    type=ref or "object",
                    name=name,
                    required=required,
                    ref=raw["$ref"].rsplit("/", 1)[-1],
                    note="recursive: shown above",
                )
            seen = seen | {raw["$ref"]}
        if not isinstance(data, dict):
            return Schema(type="any", name=name, required=required, ref=ref)
        node = Schema(
            type=_type_label(data),
            name=name,
            required=required,
            ref=ref,
            description=_text(data.get("description")) or _text(data.get("title")),
            format=_text(data.get("format")) or None,
            enum=[_scalar(v) for v in _list(data.get("enum"))][:50],
            default=_scalar(data["default"]) if "default" in data else None,
            example=_scalar(data["example"]) if "example" in data else None,
            nullable=data.get("nullable") is True,
            deprecated=data.get("deprecated") is True,
        )
        if depth >= MAX_SCHEMA_DEPTH or self.nodes >= MAX_SCHEMA_NODES:
            if _has_children(data):
                node.note = "nested deeper than shown"
            return node
        self._children(node, data, depth, seen)
        return node

    def _children(
        self, node: Schema, data: dict[str, Any], depth: int, seen: frozenset[str]
    ) -> None:
        for combinator in ("allOf", "oneOf", "anyOf"):
            options = _list(data.get(combinator))
            if options:
                node.variant_kind = combinator
                node.variants = [self.schema(o, depth=depth + 1, seen=seen) for o in options[:20]]
                break
        items = data.get("items")
        if items is not None:
            item = self.schema(items, depth=depth + 1, seen=seen)
            node.type = f"array of {item.ref or item.type}"
            if item.children or item.variants or item.enum:
                node.children = item.children
                node.variants, node.variant_kind = item.variants, item.variant_kind
                node.enum = node.enum or item.enum
            return
        required = {r for r in _list(data.get("required")) if isinstance(r, str)}
        for prop_name, prop in list(_mapping(data.get("properties")).items())[:200]:
            node.children.append(
                self.schema(prop, str(prop_name), prop_name in required, depth + 1, seen)
            )
        extra = data.get("additionalProperties")
        if isinstance(extra, dict):
            node.children.append(self.schema(extra, "{key}", False, depth + 1, seen))


def _type_label(data: dict[str, Any]) -> str:
    value = data.get("type")
    if isinstance(value, list):
        return " | ".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    if "properties" in data:
        return "object"
    if "items" in data:
        return "array"
    for combinator, label in (("allOf", "all of"), ("oneOf", "one of"), ("anyOf", "any of")):
        if combinator in data:
            return label
    return "any"


def _has_children(data: dict[str, Any]) -> bool:
    return any(k in data for k in ("properties", "items", "allOf", "oneOf", "anyOf"))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, default=str)[:200]
    return str(value)[:200]
