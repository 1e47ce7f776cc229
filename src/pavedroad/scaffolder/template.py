"""Backstage's ``scaffolder.backstage.io/v1beta3`` Template: parameters, steps and output.

:meth:`TemplateSpec.parse` reads a Template entity and reports every problem at once, each
with its path (``spec.steps[2].id: duplicate id 'publish'``). The parameter pages are JSON
Schemas (draft-07, as Backstage's form uses) carrying ``ui:`` hints for the form:
:func:`fields` turns them into a structure a form can render, :func:`validate_parameters`
checks submitted answers per field, :func:`apply_defaults` fills in defaults, and
:func:`secret_fields` names the answers that must never be stored or logged.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

from pavedroad.core.errors import InputError

__all__ = [
    "API_VERSION",
    "Field",
    "OutputLink",
    "OutputText",
    "Page",
    "Step",
    "TemplateSpec",
    "TemplateSpecError",
    "apply_defaults",
    "fields",
    "secret_fields",
    "template_problems",
    "validate_parameters",
]

API_VERSION = "scaffolder.backstage.io/v1beta3"
MAX_STEPS = 200

# Keys whose value maps names to schemas: their keys are names, never ``ui:`` hints.
_NAMED_SCHEMAS = ("properties", "patternProperties", "definitions", "$defs")
# Keys whose value is data, not schema.
_DATA_KEYS = ("default", "const", "enum", "examples")
_STEP_REF = re.compile(r"""steps\s*(?:\[\s*['"]([^'"]+)['"]\s*\]|\.([A-Za-z_][\w-]*))""")


class TemplateSpecError(InputError):
    """A Template entity is not a valid v1beta3 template; ``problems`` lists every reason."""

    title = "Invalid template"
    type_slug = "invalid-template"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems), problems=problems)
        self.problems = problems


@dataclass(frozen=True)
class Step:
    id: str | None
    name: str | None
    action: str
    input: dict[str, Any]
    if_: bool | str | None = None
    each: Any = None


@dataclass(frozen=True)
class OutputLink:
    title: str | None
    url: str | None
    entity_ref: str | None
    icon: str | None


@dataclass(frozen=True)
class OutputText:
    title: str | None
    content: str
    icon: str | None = None


@dataclass(frozen=True)
class TemplateSpec:
    """A parsed template. ``pages`` keep the schemas as written, ``ui:`` hints included."""

    name: str
    title: str | None
    description: str | None
    type: str | None
    owner: str | None
    tags: tuple[str, ...]
    pages: tuple[dict[str, Any], ...]
    steps: tuple[Step, ...]
    links: tuple[OutputLink, ...] = ()
    text: tuple[OutputText, ...] = ()

    @classmethod
    def parse(
        cls, entity: Mapping[str, Any], known_actions: Collection[str] | None = None
    ) -> TemplateSpec:
        """The template in ``entity``; raises :class:`TemplateSpecError` listing every
        problem. With ``known_actions``, a step naming another action is a problem too."""
        problems = template_problems(entity, known_actions)
        if problems:
            raise TemplateSpecError(problems)
        metadata = entity.get("metadata") or {}
        spec = entity["spec"]
        output = spec.get("output") or {}
        return cls(
            name=str(metadata.get("name", "")),
            title=metadata.get("title"),
            description=metadata.get("description"),
            type=spec.get("type"),
            owner=spec.get("owner"),
            tags=tuple(metadata.get("tags") or ()),
            pages=tuple(_pages(spec.get("parameters"))),
            steps=tuple(
                Step(
                    id=step.get("id"),
                    name=step.get("name"),
                    action=step["action"],
                    input=dict(step.get("input") or {}),
                    if_=step.get("if"),
                    each=step.get("each"),
                )
                for step in spec.get("steps") or ()
            ),
            links=tuple(
                OutputLink(
                    title=link.get("title"),
                    url=link.get("url"),
                    entity_ref=link.get("entityRef"),
                    icon=link.get("icon"),
                )
                for link in output.get("links") or ()
            ),
            text=tuple(
                OutputText(title=t.get("title"), content=t["content"], icon=t.get("icon"))
                for t in output.get("text") or ()
            ),
        )


# --- Problems ------------------------------------------------------------------------------


def _pages(parameters: Any) -> list[dict[str, Any]]:
    if parameters is None:
        return []
    return [dict(parameters)] if isinstance(parameters, Mapping) else list(parameters)


def _json_path(parts: Iterator[Any] | Collection[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def template_problems(
    entity: Mapping[str, Any], known_actions: Collection[str] | None = None
) -> list[str]:
    """Every reason ``entity`` is not a valid v1beta3 template, each with its path."""
    problems: list[str] = []
    if entity.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: expected {API_VERSION!r}, got {entity.get('apiVersion')!r}")
    if entity.get("kind") != "Template":
        problems.append(f"kind: expected 'Template', got {entity.get('kind')!r}")
    spec = entity.get("spec")
    if not isinstance(spec, Mapping):
        return [*problems, "spec: must be an object"]
    problems += _parameter_problems(spec.get("parameters"))
    step_ids = _step_problems(spec.get("steps"), known_actions, problems)
    problems += _output_problems(spec.get("output"), step_ids)
    return problems


def _parameter_problems(parameters: Any) -> list[str]:
    if parameters is None:
        return []
    if not isinstance(parameters, (Mapping, list)):
        return ["spec.parameters: must be an object or a list of objects"]
    problems = []
    pages = [parameters] if isinstance(parameters, Mapping) else parameters
    for index, page in enumerate(pages):
        where = (
            "spec.parameters" if isinstance(parameters, Mapping) else f"spec.parameters[{index}]"
        )
        if not isinstance(page, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        meta = Draft7Validator(Draft7Validator.META_SCHEMA)
        for error in sorted(meta.iter_errors(strip_ui(page)), key=lambda e: list(e.path)):
            problems.append(f"{where}{_json_path(error.absolute_path)}: {error.message}")
    return problems


def _step_problems(
    steps: Any, known_actions: Collection[str] | None, problems: list[str]
) -> set[str]:
    """Adds the steps' problems to ``problems``; returns the ids of the steps."""
    if steps is None:
        return set()
    if not isinstance(steps, list):
        problems.append("spec.steps: must be a list")
        return set()
    if len(steps) > MAX_STEPS:
        problems.append(
            f"spec.steps: a template may have at most {MAX_STEPS} steps, not {len(steps)}"
        )
        return set()
    seen: set[str] = set()
    for index, step in enumerate(steps):
        where = f"spec.steps[{index}]"
        if not isinstance(step, Mapping):
            problems.append(f"{where}: must be an object")
            continue
        step_id = step.get("id")
        if step_id is not None and (not isinstance(step_id, str) or not step_id):
            problems.append(f"{where}.id: must be a non-empty string")
        elif step_id in seen:
            problems.append(f"{where}.id: duplicate id {step_id!r}")
        action = step.get("action")
        if not isinstance(action, str) or not action:
            problems.append(f"{where}.action: is required")
        elif known_actions is not None and action not in known_actions:
            problems.append(f"{where}.action: unknown action {action!r}")
        if step.get("name") is not None and not isinstance(step.get("name"), str):
            problems.append(f"{where}.name: must be a string")
        if step.get("input") is not None and not isinstance(step.get("input"), Mapping):
            problems.append(f"{where}.input: must be an object")
        if "if" in step and not isinstance(step["if"], (bool, str)):
            problems.append(f"{where}.if: must be a boolean or an expression")
        if "each" in step and not isinstance(step["each"], (str, list, Mapping)):
            problems.append(f"{where}.each: must be an expression, a list or an object")
        for ref in _step_refs({k: step.get(k) for k in ("input", "if", "each")}):
            if ref not in seen:
                problems.append(f"{where}: refers to step {ref!r}, which does not run before it")
        if isinstance(step_id, str) and step_id:
            seen.add(step_id)
    return seen


def _output_problems(output: Any, step_ids: set[str]) -> list[str]:
    if output is None:
        return []
    if not isinstance(output, Mapping):
        return ["spec.output: must be an object"]
    problems = []
    links = output.get("links")
    if links is not None and not isinstance(links, list):
        problems.append("spec.output.links: must be a list")
    for index, link in enumerate(links if isinstance(links, list) else ()):
        if not isinstance(link, Mapping):
            problems.append(f"spec.output.links[{index}]: must be an object")
        elif not link.get("url") and not link.get("entityRef"):
            problems.append(f"spec.output.links[{index}]: needs a url or an entityRef")
    text = output.get("text")
    if text is not None and not isinstance(text, list):
        problems.append("spec.output.text: must be a list")
    for index, item in enumerate(text if isinstance(text, list) else ()):
        if not isinstance(item, Mapping) or not isinstance(item.get("content"), str):
            problems.append(f"spec.output.text[{index}].content: is required")
    for ref in sorted(set(_step_refs(output)) - step_ids):
        problems.append(f"spec.output: refers to step {ref!r}, which does not exist")
    return problems


def _step_refs(value: Any) -> Iterator[str]:
    """The step ids that ``steps['x']`` / ``steps.x`` expressions in ``value`` refer to."""
    if isinstance(value, str):
        if "${{" in value:
            for match in _STEP_REF.finditer(value):
                yield match.group(1) or match.group(2)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _step_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _step_refs(item)


# --- Schemas -------------------------------------------------------------------------------


def strip_ui(schema: Any) -> Any:
    """``schema`` without its ``ui:`` hints, for a JSON Schema validator."""
    if isinstance(schema, list):
        return [strip_ui(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    stripped: dict[str, Any] = {}
    for key, value in schema.items():
        if isinstance(key, str) and key.startswith("ui:"):
            continue
        if key in _DATA_KEYS:
            stripped[key] = value
        elif key in _NAMED_SCHEMAS and isinstance(value, Mapping):
            stripped[key] = {name: strip_ui(sub) for name, sub in value.items()}
        else:
            stripped[key] = strip_ui(value)
    return stripped


@dataclass(frozen=True)
class Field:
    """One form field. ``ui`` holds the hints without their prefix (``field``, ``widget``,
    ``help``, ``autofocus``, ``options``...); ``fields`` the properties of an object;
    ``items`` the element of an array."""

    name: str
    path: str
    type: str | None
    title: str | None
    description: str | None
    enum: tuple[Any, ...] | None
    enum_names: tuple[str, ...] | None
    default: Any
    required: bool
    secret: bool
    ui: dict[str, Any]
    schema: dict[str, Any]
    fields: tuple[Field, ...] = ()
    items: Field | None = None


@dataclass(frozen=True)
class Page:
    title: str | None
    description: str | None
    fields: tuple[Field, ...] = field(default_factory=tuple)


def _is_secret(schema: Mapping[str, Any]) -> bool:
    return schema.get("ui:field") == "Secret" or schema.get("ui:widget") == "password"


def _field(name: str, path: str, schema: Mapping[str, Any], required: bool) -> Field:
    schema_type = schema.get("type")
    properties = schema.get("properties")
    children: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
    needed = set(schema.get("required") or ())
    items = schema.get("items")
    enum = schema.get("enum")
    enum_names = schema.get("enumNames") or schema.get("ui:enumNames")
    return Field(
        name=name,
        path=path,
        type=schema_type if isinstance(schema_type, str) else None,
        title=schema.get("title"),
        description=schema.get("description"),
        enum=tuple(enum) if isinstance(enum, list) else None,
        enum_names=tuple(enum_names) if isinstance(enum_names, list) else None,
        default=schema.get("default"),
        required=required,
        secret=_is_secret(schema),
        ui={key[3:]: value for key, value in schema.items() if key.startswith("ui:")},
        schema=strip_ui(schema),
        fields=tuple(
            _field(child, f"{path}.{child}", sub, child in needed)
            for child, sub in children.items()
            if isinstance(sub, Mapping)
        ),
        items=_field("items", f"{path}[]", items, False) if isinstance(items, Mapping) else None,
    )


def fields(spec: TemplateSpec) -> list[Page]:
    """The form: one :class:`Page` per parameter page, its fields in the written order."""
    pages = []
    for page in spec.pages:
        properties = page.get("properties") or {}
        required = set(page.get("required") or ())
        pages.append(
            Page(
                title=page.get("title"),
                description=page.get("description"),
                fields=tuple(
                    _field(name, name, schema, name in required)
                    for name, schema in properties.items()
                    if isinstance(schema, Mapping)
                ),
            )
        )
    return pages


def _walk(fields_: Collection[Field]) -> Iterator[Field]:
    for item in fields_:
        yield item
        yield from _walk(item.fields)


def secret_fields(spec: TemplateSpec) -> set[str]:
    """Paths (``token``, ``auth.password``) of the answers given through a Secret field or a
    password widget."""
    return {item.path for page in fields(spec) for item in _walk(page.fields) if item.secret}


# --- Answers -------------------------------------------------------------------------------


def _with_defaults(schema: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(values)
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return result
    for name, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        if name not in result and "default" in sub:
            result[name] = sub["default"]
        if isinstance(result.get(name), Mapping):
            result[name] = _with_defaults(sub, result[name])
    return result


def apply_defaults(spec: TemplateSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every absent property that has a ``default`` set to it, on every page
    and in nested objects."""
    result = dict(values)
    for page in spec.pages:
        result = _with_defaults(page, result)
    return result


def _message(error: ValidationError, secret: bool) -> str:
    """A short message that never repeats the value (it may be a secret)."""
    rule, expected = error.validator, error.validator_value
    if rule == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        return "must be of type " + " or ".join(map(str, types))
    if rule == "enum":
        return "must be one of: " + ", ".join(map(str, expected or ()))
    messages = {
        "required": "is required",
        "const": f"must be {expected!r}",
        "pattern": f"must match the pattern {expected}",
        "format": f"must be a valid {expected}",
        "minLength": f"must be at least {expected} characters long",
        "maxLength": f"must be at most {expected} characters long",
        "minimum": f"must be at least {expected}",
        "maximum": f"must be at most {expected}",
        "exclusiveMinimum": f"must be greater than {expected}",
        "exclusiveMaximum": f"must be less than {expected}",
        "multipleOf": f"must be a multiple of {expected}",
        "minItems": f"must have at least {expected} items",
        "maxItems": f"must have at most {expected} items",
        "uniqueItems": "must not contain the same item twice",
    }
    if rule in messages:
        return messages[str(rule)]
    return "is not valid" if secret else error.message


def _error_path(error: ValidationError) -> str:
    parts = list(error.absolute_path)
    if error.validator == "required":
        missing = [
            name
            for name in error.validator_value
            if isinstance(error.instance, Mapping)
            and name not in error.instance
            and repr(name) in error.message
        ]
        parts += missing[:1]
    return _json_path(parts).lstrip(".")


def validate_parameters(spec: TemplateSpec, values: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per-field problems with the answers (defaults applied first), on every page: field path
    (``name``, ``service.port``, ``tags[1]``; ``""`` for the form as a whole) → messages.
    Empty when the answers are valid."""
    answers = apply_defaults(spec, values)
    secrets = secret_fields(spec)
    problems: dict[str, list[str]] = {}
    for page in spec.pages:
        validator = Draft7Validator(strip_ui(page), format_checker=Draft7Validator.FORMAT_CHECKER)
        for error in validator.iter_errors(answers):
            path = _error_path(error)
            message = _message(error, path in secrets)
            if message not in problems.setdefault(path, []):
                problems[path].append(message)
    return problems
