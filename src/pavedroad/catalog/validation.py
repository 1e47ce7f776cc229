"""Backstage's entity validation rules, exactly: the envelope, metadata and field formats.

Kind-specific ``spec`` rules live in each kind's JSON Schema (see :mod:`kinds`). The
functions here mirror Backstage's ``KubernetesValidatorFunctions``,
``CommonValidatorFunctions`` and ``makeValidator``; the policies mirror
``NoForeignRootFieldsEntityPolicy``, ``SchemaValidEntityPolicy`` and
``FieldFormatEntityPolicy`` (all in ``packages/catalog-model/src``).

Every pattern is matched with :func:`re.fullmatch`: JavaScript's ``$`` only matches at the
very end, where Python's ``$`` also matches before a trailing newline.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import fastjsonschema
from jsonschema import Draft7Validator

# KubernetesValidatorFunctions.isValidObjectName: /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/
# (separators may repeat: "a--b" and "a..b" are valid names).
_OBJECT_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_LABEL = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_KIND = re.compile(r"[a-zA-Z][a-z0-9A-Z]*")
_API_VERSION_SUFFIX = re.compile(r"[a-z0-9A-Z]+")
# makeValidator's isValidTag.
_TAG = re.compile(r"[a-z0-9:+#]+(-[a-z0-9:+#]+)*")

# NoForeignRootFieldsEntityPolicy's defaultKnownFields. Entity.schema.json also describes
# ``relations`` and ``status``, but the catalog's default policies reject them at the root
# of an entity that is read from a location.
ROOT_FIELDS = ("apiVersion", "kind", "metadata", "spec")


def _full(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None


def is_valid_dns_label(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 63 and _full(_DNS_LABEL, value)


def is_valid_dns_subdomain(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 253
        and all(is_valid_dns_label(part) for part in value.split("."))
    )


def is_valid_object_name(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 63 and _full(_OBJECT_NAME, value)


def _prefix_and_or_suffix(
    value: Any, separator: str, prefix: Callable[[Any], bool], suffix: Callable[[Any], bool]
) -> bool:
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
        value,
        "/",
        is_valid_dns_subdomain,
        lambda v: 1 <= len(v) <= 63 and _full(_API_VERSION_SUFFIX, v),
    )


def is_valid_kind(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 63 and _full(_KIND, value)


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
    return isinstance(value, str) and 1 <= len(value) <= 63 and _full(_TAG, value)


# What JavaScript's String.prototype.trim() removes (WhiteSpace and LineTerminator).
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def is_valid_string(value: Any) -> bool:
    """CommonValidatorFunctions.isValidString: a string that is not blank once trimmed."""
    return isinstance(value, str) and len(value.strip(_JS_WHITESPACE)) >= 1


# --- CommonValidatorFunctions.isValidUrl: does ``new URL(value)`` (WHATWG) accept it? ---

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
_FORBIDDEN_HOST = frozenset("\x00\t\n\r #/:<>?@[\\]^|")
_FORBIDDEN_DOMAIN = _FORBIDDEN_HOST | frozenset(chr(c) for c in range(0x20)) | {"%", "\x7f"}
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))


def is_valid_url(value: Any) -> bool:
    """What the WHATWG URL parser (``new URL(value)`` without a base) accepts.

    An absolute URL needs a scheme; special schemes (``http``, ``https``, ``ws``,
    ``wss``, ``ftp``) need a valid host; a port must be a number up to 65535.
    """
    if not isinstance(value, str):
        return False
    text = re.sub(r"[\t\n\r]", "", value.strip(_C0_OR_SPACE))
    scheme, colon, rest = text.partition(":")
    if not colon or not _full(_SCHEME, scheme):
        return False
    scheme = scheme.lower()
    if scheme == "file":
        return _valid_file_rest(rest)
    if scheme in _SPECIAL_SCHEMES:
        authority = re.split(r"[/\\?#]", rest.lstrip("/\\"), maxsplit=1)[0]
        return _valid_authority(authority, special=True)
    if rest.startswith("//"):
        authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
        return _valid_authority(authority, special=False)
    return True


def _valid_file_rest(rest: str) -> bool:
    if not re.match(r"[/\\]{2}", rest):
        return True
    host = re.split(r"[/\\?#]", rest[2:], maxsplit=1)[0]
    if host.startswith("["):
        return host.endswith("]") and _valid_ipv6(host[1:-1])
    return host == "" or bool(re.fullmatch(r"[A-Za-z][:|]", host)) or _valid_domain(host)


def _valid_authority(authority: str, special: bool) -> bool:
    hostport = authority.rpartition("@")[2]
    if hostport.startswith(":") or (hostport == "" and "@" in authority):
        return False
    if hostport.startswith("["):
        address, bracket, port = hostport[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return False
        return _valid_ipv6(address) and _valid_port(port[1:])
    host, _, port = hostport.partition(":")
    if not _valid_port(port):
        return False
    if not special:
        return not (set(host) & _FORBIDDEN_HOST)
    return host != "" and _valid_domain(host)


def _valid_port(port: str) -> bool:
    return port == "" or (port.isascii() and port.isdigit() and int(port) <= 65535)


def _valid_ipv6(address: str) -> bool:
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


def _valid_domain(host: str) -> bool:
    try:
        domain = ".".join(
            label if label.isascii() else label.encode("idna").decode("ascii")
            for label in re.split(r"[.\u3002\uff0e\uff61]", unquote(host, errors="strict").lower())
        )
    except (UnicodeError, ValueError):
        return False
    if not domain or set(domain) & _FORBIDDEN_DOMAIN:
        return False
    return _valid_ipv4_if_numeric(domain)


def _valid_ipv4_if_numeric(domain: str) -> bool:
    """A host whose last label is a number must be a valid IPv4 address."""
    parts = domain.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]
    if not re.fullmatch(r"[0-9]+|0[xX][0-9A-Fa-f]*", parts[-1]):
        return True
    if len(parts) > 4:
        return False
    numbers = [_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return False
    *head, last = numbers
    return all(n <= 255 for n in head) and last < 256 ** (5 - len(numbers))  # type: ignore[operator]


def _ipv4_number(part: str) -> int | None:
    if re.fullmatch(r"0[xX][0-9A-Fa-f]*", part):
        return int(part[2:] or "0", 16)
    if part.startswith("0") and len(part) > 1:
        return int(part, 8) if re.fullmatch(r"[0-7]+", part) else None
    if re.fullmatch(r"[0-9]+", part):
        return int(part)
    return None


# FieldFormatEntityPolicy's expectation per validator, word for word.
_NAME_EXPECTATION = (
    "a string that is sequences of [a-zA-Z0-9] separated by any of [-_.], "
    "at most 63 characters in total"
)
_EXPECTATIONS = {
    "apiVersion": "a valid prefix and/or suffix",
    "kind": "a string that is a sequence of [a-zA-Z][a-z0-9A-Z], at most 63 characters in total",
    "name": _NAME_EXPECTATION,
    "namespace": "a string that is sequences of [a-z0-9] separated by [-], "
    "at most 63 characters in total",
    "labelKey": "a valid prefix and/or suffix",
    "labelValue": _NAME_EXPECTATION,
    "annotationKey": "a valid prefix and/or suffix",
    "annotationValue": "a string",
    "tag": "a string that is sequences of [a-z0-9+#] separated by [-], "
    "at most 63 characters in total",
    "url": "a string that is a valid url",
    "string": "a non empty string",
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


def compile_schema_check(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """A fast yes/no check for a JSON Schema (compiled to Python code by fastjsonschema)."""
    validate = fastjsonschema.compile(schema)

    def is_valid(instance: Any) -> bool:
        try:
            validate(instance)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return is_valid


# Compiled once for the common, valid case; jsonschema then explains any failure.
_envelope_is_valid = compile_schema_check(ENVELOPE_SCHEMA)


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
        return [
            f'Unknown field "{foreign[0]}" at the root of the entity; '
            f"only {', '.join(ROOT_FIELDS)} are allowed"
        ]
    if not _envelope_is_valid(entity):
        return schema_errors(_envelope_validator, entity)
    return _field_format_errors(entity)


def _field_format_errors(entity: dict[str, Any]) -> list[str]:
    """FieldFormatEntityPolicy: every field format rule, all broken ones reported."""
    errors: list[str] = []
    metadata = entity["metadata"]

    def check(field: str, value: Any, valid: Callable[[Any], bool], expectation: str) -> None:
        if value is None:
            errors.append(f"{field} must have a value")
        elif not valid(value):
            errors.append(
                f'"{field}" is not valid; expected {_EXPECTATIONS[expectation]} '
                f'but found "{value}".'
            )

    check("apiVersion", entity["apiVersion"], is_valid_api_version, "apiVersion")
    check("kind", entity["kind"], is_valid_kind, "kind")
    check("metadata.name", metadata["name"], is_valid_object_name, "name")
    if "namespace" in metadata:
        check("metadata.namespace", metadata["namespace"], is_valid_namespace, "namespace")
    for key, value in (metadata.get("labels") or {}).items():
        check(f"labels.{key}", key, is_valid_label_key, "labelKey")
        check(f"labels.{key}", value, is_valid_label_value, "labelValue")
    for key, value in (metadata.get("annotations") or {}).items():
        check(f"annotations.{key}", key, is_valid_annotation_key, "annotationKey")
        check(f"annotations.{key}", value, is_valid_annotation_value, "annotationValue")
    for index, tag in enumerate(metadata.get("tags") or []):
        check(f"tags.{index}", tag, is_valid_tag, "tag")
    for index, link in enumerate(metadata.get("links") or []):
        check(f"links.{index}.url", link.get("url"), is_valid_url, "url")
        if "title" in link:
            check(f"links.{index}.title", link["title"], is_valid_string, "string")
        if "icon" in link:
            check(f"links.{index}.icon", link["icon"], is_valid_object_name, "name")
    return errors


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
