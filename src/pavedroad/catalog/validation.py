"""Backstage's entity validation rules, exactly: the envelope, metadata and field formats.

Kind-specific ``spec`` rules live in each kind's JSON Schema (see :mod:`kinds`). The
functions here mirror Backstage's ``KubernetesValidatorFunctions`` and
``CommonValidatorFunctions``; the policies mirror ``NoForeignRootFieldsEntityPolicy``,
``SchemaValidEntityPolicy`` and ``FieldFormatEntityPolicy``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jsonschema import Draft7Validator

_OBJECT_NAME = re.compile(r"^([a-zA-Z0-9]+[-_.])*[a-zA-Z0-9]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_KIND = re.compile(r"^[a-zA-Z][a-z0-9A-Z]*$")
_API_VERSION_SUFFIX = re.compile(r"^[a-z0-9A-Z]+$")
_TAG = re.compile(r"^[a-z0-9:+#]+(-[a-z0-9:+#]+)*$")

ROOT_FIELDS = ("apiVersion", "kind", "metadata", "spec", "relations", "status")


def is_valid_dns_label(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 63 and bool(_DNS_LABEL.match(value))


def is_valid_dns_subdomain(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 253
        and all(is_valid_dns_label(part) for part in value.split("."))
    )


def is_valid_object_name(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 63 and bool(_OBJECT_NAME.match(value))


def _prefix_and_or_suffix(value: Any, separator: str, prefix: Callable[[Any], bool],
                          suffix: Callable[[Any], bool]) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split(separator)
    if len(parts) == 1:
        return suffix(parts[0])
    if len(parts) == 2:
        return prefix(parts[0]) and suffix(parts[1])
    return False


def is_valid_api_version(value: Any) -> bool:
    return _prefix_and_or_suffix(
        value, "/", is_valid_dns_subdomain,
        lambda v: 1 <= len(v) <= 63 and bool(_API_VERSION_SUFFIX.match(v)),
    )


def is_valid_kind(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 63 and bool(_KIND.match(value))


def is_valid_namespace(value: Any) -> bool:
    return is_valid_dns_label(value)


def is_valid_label_key(value: Any) -> bool:
    return _prefix_and_or_suffix(value, "/", is_valid_dns_subdomain, is_valid_object_name)


def is_valid_label_value(value: Any) -> bool:
    return value == "" or is_valid_object_name(value)


def is_valid_annotation_key(value: Any) -> bool:
    return _prefix_and_or_suffix(value, "/", is_valid_dns_subdomain, is_valid_object_name)


def is_valid_annotation_value(value: Any) -> bool:
    return isinstance(value, str)


def is_valid_tag(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 63 and bool(_TAG.match(value))


_EXPECTATIONS = {
    "apiVersion": "a string that is a sequence of [a-zA-Z0-9] of at most 63 characters, "
    "optionally prefixed by a DNS subdomain and a slash",
    "kind": "a string that is a sequence of [a-zA-Z][a-z0-9A-Z], at most 63 characters in total",
    "name": "a string that is sequences of [a-zA-Z0-9] separated by any of [-_.], "
    "at most 63 characters in total",
    "namespace": "a string that is sequences of [a-z0-9] separated by [-], "
    "at most 63 characters in total",
    "labelKey": "a valid prefix and/or suffix",
    "labelValue": "a string that is sequences of [a-zA-Z0-9] separated by any of [-_.], "
    "at most 63 characters in total",
    "annotationKey": "a valid prefix and/or suffix",
    "annotationValue": "a string",
    "tag": "a string that is sequences of [a-z0-9+#] separated by [-], "
    "at most 63 characters in total",
}

ENVELOPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "properties": {
        "apiVersion": {"type": "string", "minLength": 1},
        "kind": {"type": "string", "minLength": 1},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "uid": {"type": "string", "minLength": 1},
                "etag": {"type": "string", "minLength": 1},
                "name": {"type": "string", "minLength": 1},
                "namespace": {"type": "string", "minLength": 1},
                "title": {"type": "string", "minLength": 1},
                "description": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "links": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["url"],
                        "properties": {
                            "url": {"type": "string", "minLength": 1},
                            "title": {"type": "string", "minLength": 1},
                            "icon": {"type": "string", "minLength": 1},
                            "type": {"type": "string", "minLength": 1},
                        },
                    },
                },
            },
            "additionalProperties": True,
        },
        "spec": {"type": "object"},
        "relations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "targetRef"],
                "properties": {
                    "type": {"type": "string", "minLength": 1},
                    "targetRef": {"type": "string", "minLength": 1},
                },
            },
        },
        "status": {"type": "object"},
    },
}

_envelope_validator = Draft7Validator(ENVELOPE_SCHEMA)


def schema_errors(validator: Draft7Validator, entity: Any) -> list[str]:
    """Validation messages in Backstage's ``/path must ...`` form, deterministic order."""
    errors = sorted(validator.iter_errors(entity), key=lambda e: (list(e.absolute_path), e.message))
    return [_describe_schema_error(e) for e in errors]


def _describe_schema_error(error: Any) -> str:
    path = "/" + "/".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"{path if path != '/' else ''} must have required property '{missing}'".strip()
    if error.validator == "type":
        return f"{path} must be {error.validator_value}"
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{path} must be equal to one of the allowed values: {allowed}"
    if error.validator == "minLength":
        return f"{path} must NOT have fewer than {error.validator_value} characters"
    if error.validator == "additionalProperties":
        return f"{path} must NOT have additional properties ({error.message})"
    return f"{path} {error.message}"


def validate_envelope(entity: Any) -> list[str]:
    """Errors in the parts every entity shares; an empty list means valid."""
    if not isinstance(entity, dict):
        return [f"an entity must be a mapping, not {_type_name(entity)}"]
    foreign = [key for key in entity if key not in ROOT_FIELDS]
    if foreign:
        return [f'Unknown field "{foreign[0]}" at the root of the entity; '
                f"only {', '.join(ROOT_FIELDS)} are allowed"]
    errors = schema_errors(_envelope_validator, entity)
    if errors:
        return errors
    return _field_format_errors(entity)


def _field_format_errors(entity: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    metadata = entity["metadata"]

    def check(field: str, value: Any, valid: Callable[[Any], bool], expectation: str) -> None:
        if not valid(value):
            errors.append(f'"{field}" is not valid; expected {_EXPECTATIONS[expectation]} '
                          f'but found "{value}".')

    check("apiVersion", entity["apiVersion"], is_valid_api_version, "apiVersion")
    check("kind", entity["kind"], is_valid_kind, "kind")
    check("metadata.name", metadata["name"], is_valid_object_name, "name")
    if "namespace" in metadata:
        check("metadata.namespace", metadata["namespace"], is_valid_namespace, "namespace")
    for key, value in (metadata.get("labels") or {}).items():
        check("labels.key", key, is_valid_label_key, "labelKey")
        check(f"labels.{key}", value, is_valid_label_value, "labelValue")
    for key, value in (metadata.get("annotations") or {}).items():
        check("annotations.key", key, is_valid_annotation_key, "annotationKey")
        check(f"annotations.{key}", value, is_valid_annotation_value, "annotationValue")
    for index, tag in enumerate(metadata.get("tags") or []):
        check(f"tags.{index}", tag, is_valid_tag, "tag")
    return errors


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
