"""Catalog validation agrees with Backstage's validators, case for case.

Most tables below are Backstage's own test cases, translated (``[7, false]`` becomes
``(7, False)``, ``null`` becomes ``None``); each table names the upstream test file it comes
from, under ``packages/catalog-model/src`` of backstage/backstage unless said otherwise.
Cases marked "extra" are ours: they pin behaviour where Python and JavaScript differ.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from pavedroad.catalog import validation as v
from pavedroad.catalog.processing import EntityPipeline, EntityValidationError
from pavedroad.catalog.refs import EntityRef

from .entities import MINIMAL_SPECS, entity

A63, A64 = "a" * 63, "a" * 64
# A DNS subdomain of exactly 253 characters, and one of 254.
SUBDOMAIN_253 = f"{'a' * 63}.{'a' * 63}.{'a' * 63}.{'a' * 61}"
SUBDOMAIN_254 = f"{'a' * 63}.{'a' * 63}.{'a' * 63}.{'a' * 62}"


def _table(*cases: tuple[Any, bool]) -> list[Any]:
    return [pytest.param(value, expected, id=repr(value)[:40]) for value, expected in cases]


# --- validation/KubernetesValidatorFunctions.test.ts ------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (7, False),
        (None, False),
        ("", False),
        ("a", True),
        ("AZ09", True),
        (A63, True),
        (A64, False),
        ("a-b", False),
        ("a_b", False),
        ("a.b", False),
        ("a/a", True),
        ("a/aAb5C", True),
        ("a-b.c/v1", True),
        ("a--b.c/v1", False),
        (f"{SUBDOMAIN_253}/v1", True),
        (f"{SUBDOMAIN_254}/v1", False),
        (f"a/{A63}", True),
        (f"a/{A64}", False),
        # extra
        ("backstage.io/v1alpha1", True),
        ("a/b/c", False),
        ("v1\n", False),
        ("a/v1\n", False),
    ),
)
def test_is_valid_api_version(value: Any, expected: bool) -> None:
    assert v.is_valid_api_version(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (7, False),
        (None, False),
        ("", False),
        ("a", True),
        ("AZ09", True),
        ("9AZ", False),
        (A63, True),
        (A64, False),
        ("a-b", False),
        # extra
        ("Component\n", False),
        ("Kind_", False),
    ),
)
def test_is_valid_kind(value: Any, expected: bool) -> None:
    assert v.is_valid_kind(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (7, False),
        (None, False),
        ("", False),
        ("a", True),
        ("AZ09", True),
        (A63, True),
        (A64, False),
        ("a/b", False),
        ("a-b", True),
        ("-a-b", False),
        ("a-b-", False),
        ("a--b", True),
        ("a_b", True),
        ("a.b", True),
        ("a..b", True),
        # extra: JavaScript's $ does not match before a trailing newline
        ("orders\n", False),
        ("a-_.b", True),
        ("_a", False),
        ("a b", False),
        ("é", False),
    ),
)
def test_is_valid_object_name(value: Any, expected: bool) -> None:
    assert v.is_valid_object_name(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (7, False),
        (None, False),
        ("", False),
        ("a", True),
        ("AZ09", False),
        (A63, True),
        (A64, False),
        ("a/b", False),
        ("a-b", True),
        ("-a-b", False),
        ("a-b-", False),
        ("a--b", False),
        ("a_b", False),
        ("a.b", False),
        # extra
        ("default\n", False),
    ),
)
def test_is_valid_namespace(value: Any, expected: bool) -> None:
    assert v.is_valid_namespace(value) is expected


KEY_CASES = (
    (7, False),
    (None, False),
    ("", False),
    ("a", True),
    ("AZ09", True),
    (A63, True),
    (A64, False),
    ("a/b", True),
    ("a-b", True),
    ("-a-b", False),
    ("a-b-", False),
    ("a--b", True),
    ("a_b", True),
    ("a.b", True),
    ("a..b", True),
    ("a/a", True),
    ("a-b.c/a", True),
    ("a--b.c/a", False),
    (f"{SUBDOMAIN_253}/a", True),
    (f"{SUBDOMAIN_254}/a", False),
    (f"a/{A63}", True),
    (f"a/{A64}", False),
    # extra
    ("a/b/c", False),
    ("Example.com/a", False),
    ("backstage.io/techdocs-ref", True),
)


@pytest.mark.parametrize(("value", "expected"), _table(*KEY_CASES))
def test_is_valid_label_key(value: Any, expected: bool) -> None:
    assert v.is_valid_label_key(value) is expected


@pytest.mark.parametrize(("value", "expected"), _table(*KEY_CASES))
def test_is_valid_annotation_key(value: Any, expected: bool) -> None:
    assert v.is_valid_annotation_key(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (7, False),
        (None, False),
        ("", True),
        ("a", True),
        ("AZ09", True),
        (A63, True),
        (A64, False),
        ("a/b", False),
        ("a-b", True),
        ("-a-b", False),
        ("a-b-", False),
        ("a--b", True),
        ("a_b", True),
        ("a.b", True),
        ("a..b", True),
    ),
)
def test_is_valid_label_value(value: Any, expected: bool) -> None:
    assert v.is_valid_label_value(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (7, False),
        (None, False),
        ("", True),
        ("a", True),
        ("/" * 6000, True),
        # extra: YAML 1.1 booleans must stay strings to be annotation values
        (True, False),
    ),
)
def test_is_valid_annotation_value(value: Any, expected: bool) -> None:
    assert v.is_valid_annotation_value(value) is expected


# --- makeValidator's isValidTag (no upstream table; FieldFormatEntityPolicy.test.ts) ---


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        ("java", True),
        ("data-service", True),
        ("c++", True),
        ("c#", True),
        ("k8s:prod", True),
        ("Hello World", False),
        ("Java", False),
        ("a_b", False),
        ("a.b", False),
        ("a--b", False),
        ("-a", False),
        ("a-", False),
        ("", False),
        (A63, True),
        (A64, False),
        (7, False),
        (None, False),
        ("java\n", False),
    ),
)
def test_is_valid_tag(value: Any, expected: bool) -> None:
    assert v.is_valid_tag(value) is expected


# --- validation/CommonValidatorFunctions.test.ts ----------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (None, False),
        (7, False),
        ("", False),
        ("a", True),
        ("a-b", True),
        ("-a-b", False),
        ("a-b-", False),
        ("a--b", False),
        ("a_b", False),
        ("adam.bertil.caesar", True),
        ("adam.ber-til.caesar", True),
        ("adam.-bertil.caesar", False),
        ("adam.bertil-.caesar", False),
        ("adam/bertil.caesar", False),
        (f"a.{'b' * 63}.c", True),
        (f"a.{'b' * 64}.c", False),
        (SUBDOMAIN_253, True),
        (SUBDOMAIN_254, False),
    ),
)
def test_is_valid_dns_subdomain(value: Any, expected: bool) -> None:
    assert v.is_valid_dns_subdomain(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (None, False),
        (7, False),
        ("", False),
        ("a", True),
        ("a-b", True),
        ("-a-b", False),
        ("a-b-", False),
        ("a--b", False),
        ("a_b", False),
        (A63, True),
        (A64, False),
    ),
)
def test_is_valid_dns_label(value: Any, expected: bool) -> None:
    assert v.is_valid_dns_label(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (None, False),
        (7, False),
        ("", False),
        ("abc", False),
        ("   abc", False),
        ({}, False),
        ("http://foo", True),
        ("https://www.foo.com/", True),
        ("https://foo.com:8080", True),
        ("https://foo:8080/page", True),
        ("https://foo:8080/sub/page", True),
        ("https://foo:8080/sub/page?query", True),
        ("https://foo:8080/sub/page/?query=value", True),
        ("https://foo:8080/sub/page/?query=value&", True),
        ("https://foo:8080/sub/page/?query=value&another=val", True),
        ("https://foo.com/page#fragment", True),
        ("ftp://ftp.some.domain.com/path", True),
        ("xyz://custom-protocol:4444/path", True),
        # extra: each checked against Node's `new URL(value)`
        ("http://", False),
        ("http:", False),
        ("http:foo", True),
        ("http:\\\\foo", True),
        ("https://foo:65535", True),
        ("https://foo:65536", False),
        ("https://foo:8o", False),
        ("http://exa mple.com", False),
        ("http://ex<ample", False),
        ("http://%zz.com", False),
        ("http://%41.com", True),
        ("http://user:pass@host:8/x", True),
        ("http://user@", False),
        ("http://[::1]:80/", True),
        ("http://[::1", False),
        ("http://[zz]/", False),
        ("http://1.2.3.255/", True),
        ("http://1.2.3.256/", False),
        ("http://foo.1", False),
        ("http://0x7f.1", True),
        ("http://09.1.1.1", False),
        ("http://4294967296", False),
        ("http://h\u00e9llo.com", True),
        ("http://\u3002", True),
        ("http://foo_bar.com", True),
        ("mailto:me@example.com", True),
        ("foo:", True),
        ("data:text/plain,hi", True),
        ("file:///etc/passwd", True),
        ("file://ho st/x", False),
        ("file://[::1]/x", True),
        ("xyz:///p", True),
        ("xyz://a b/", False),
        ("xyz://host:70000/", False),
        ("xyz://@", False),
        ("xyz://:1", False),
        ("1http://x", False),
        ("/path", False),
        ("//host/x", False),
        ("  http://foo  ", True),
        ("\thttp://fo\no", True),
    ),
)
def test_is_valid_url(value: Any, expected: bool) -> None:
    assert v.is_valid_url(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        (None, False),
        (True, False),
        (7, False),
        ({}, False),
        ("", False),
        (" ", False),
        ("    ", False),
        ("abc", True),
        (" abc ", True),
        ("abc xyz", True),
        ("abc xyz abc.", True),
        # extra: what JavaScript's trim() removes, and what it keeps
        ("\u00a0\ufeff\u3000", False),
        ("\x1c", True),
        ("\x85", True),
    ),
)
def test_is_valid_string(value: Any, expected: bool) -> None:
    assert v.is_valid_string(value) is expected


# --- the policies, on the entity of the upstream policy tests ---------------------------

POLICY_ENTITY: dict[str, Any] = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {
        "uid": "e01199ab-08cc-44c2-8e19-5c29ded82521",
        "etag": "lsndfkjsndfkjnsdfkjnsd==",
        "name": "my-component-yay",
        "namespace": "the-namespace",
        "labels": {"backstage.io/custom": "ValueStuff"},
        "annotations": {"example.com/bindings": "are-secret"},
        "tags": ["java", "data-service"],
        "links": [{"url": "https://example.org", "title": "Website", "icon": "website"}],
    },
    "spec": {"custom": "stuff"},
}

DELETE = object()


def _with(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with the dotted ``path`` set to ``value`` (or removed: DELETE)."""
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is DELETE:
        target.pop(last, None)
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


def _mutated(path: str, value: Any) -> dict[str, Any]:
    return _with(POLICY_ENTITY, path, value)


def test_policy_entity_is_valid() -> None:
    assert v.validate_envelope(copy.deepcopy(POLICY_ENTITY)) == []


# entity/policies/NoForeignRootFieldsEntityPolicy.test.ts; relations and status: the
# policy's defaultKnownFields are apiVersion, kind, metadata and spec only.
@pytest.mark.parametrize("field", ["spec2", "relations", "status", "Kind"])
def test_foreign_root_fields_are_rejected(field: str) -> None:
    errors = v.validate_envelope(_mutated(field, {}))
    assert len(errors) == 1 and field in errors[0]


@pytest.mark.parametrize("value", [7, "entity", None, ["a"]])
def test_root_must_be_a_mapping(value: Any) -> None:
    [error] = v.validate_envelope(value)
    assert error.startswith("an entity must be a mapping")


# entity/policies/SchemaValidEntityPolicy.test.ts: (path, new value, accepted?, the field
# the error names). metadata.generation is gone from EntityMeta.schema.json.
@pytest.mark.parametrize(
    ("path", "value", "accepted", "field"),
    [
        ("apiVersion", DELETE, False, "apiVersion"),
        ("apiVersion", 7, False, "apiVersion"),
        ("kind", DELETE, False, "kind"),
        ("kind", 7, False, "kind"),
        ("metadata", DELETE, False, "metadata"),
        ("metadata", 7, False, "metadata"),
        ("metadata.uid", DELETE, True, None),
        ("metadata.uid", 7, False, "uid"),
        ("metadata.uid", "", False, "uid"),
        ("metadata.etag", DELETE, True, None),
        ("metadata.etag", 7, False, "etag"),
        ("metadata.etag", "", False, "etag"),
        ("metadata.name", DELETE, False, "name"),
        ("metadata.name", 7, False, "name"),
        ("metadata.namespace", DELETE, True, None),
        ("metadata.namespace", 7, False, "namespace"),
        ("metadata.description", DELETE, True, None),
        ("metadata.description", 7, False, "description"),
        ("metadata.labels", DELETE, True, None),
        ("metadata.labels", 7, False, "labels"),
        ("metadata.annotations", DELETE, True, None),
        ("metadata.annotations", 7, False, "annotations"),
        ("metadata.tags", 7, False, "tags"),
        ("metadata.links", DELETE, True, None),
        ("metadata.links", [], True, None),
        ("metadata.links", "invalid type", False, "links"),
        ("metadata.links", 123, False, "links"),
        ("metadata.links", {}, False, "links"),
        ("metadata.links", {"url": "https://foo"}, False, "links"),
        ("spec", DELETE, True, None),
        ("spec", 7, False, "spec"),
        # extra: EntityMeta.schema.json
        ("metadata.title", "", False, "title"),
        ("metadata.title", "Orders", True, None),
        ("metadata.tags", [""], False, "tags"),
        ("metadata.labels", {"a": 7}, False, "labels"),
        ("metadata.annotations", {"a": True}, False, "annotations"),
        ("metadata.links", [{"url": "https://x", "type": ""}], False, "links"),
        ("metadata.links", [{"url": "https://x", "type": "admin-dashboard"}], True, None),
        ("metadata.custom", {"any": "thing"}, True, None),
    ],
)
def test_schema_valid_policy(path: str, value: Any, accepted: bool, field: str | None) -> None:
    errors = v.validate_envelope(_mutated(path, value))
    if accepted:
        assert errors == []
    else:
        assert errors and str(field) in " ".join(errors)


# entity/policies/FieldFormatEntityPolicy.test.ts: (path, new value, accepted?, a piece of
# the error message).
@pytest.mark.parametrize(
    ("path", "value", "accepted", "message"),
    [
        ("apiVersion", "a#b", False, "apiVersion"),
        ("kind", "a#b", False, "kind"),
        ("metadata.name", "a" * 1000, False, "metadata.name"),
        ("metadata.namespace", "a" * 1000, False, "metadata.namespace"),
        ("metadata.labels.a#b", "value", False, "labels.a#b"),
        ("metadata.labels.a", "a#b", False, 'found "a#b"'),
        ("metadata.annotations.a#b", "value", False, "annotations.a#b"),
        ("metadata.tags.1", "Hello World", False, 'tags.1" is not valid'),
        ("metadata.links", [{"url": "http://foo"}, {"url": "https://bar"}], True, None),
        (
            "metadata.links",
            [{"url": "http://good"}, {"url": "invalid"}],
            False,
            'links.1.url" is not valid; expected a string that is a valid url',
        ),
        ("metadata.links", [{"url": "invalid"}], False, 'found "invalid"'),
        ("metadata.links", [{"url": "http://foo", "icon": "dashboard"}], True, None),
        (
            "metadata.links",
            [{"url": "http://foo", "title": " "}],
            False,
            'links.0.title" is not valid; expected a non empty string',
        ),
        (
            "metadata.links",
            [{"url": "http://foo", "title": "good"}, {"url": "http://foo", "title": "\t"}],
            False,
            "links.1.title",
        ),
        ("metadata.links", [{"url": "http://foo", "title": "foo"}], True, None),
        ("metadata.links", [{"url": "http://foo", "icon": "dashboard"}], True, None),
        ("metadata.links", [{"url": "http://foo", "icon": "admin-dashboard"}], True, None),
        ("metadata.links", [{"url": "http://foo", "icon": "foo_dashboard"}], True, None),
        ("metadata.links", [{"url": "http://foo", "icon": "abc xyz"}], False, "links.0.icon"),
        (
            "metadata.links",
            [{"url": "http://foo", "icon": "good"}, {"url": "http://foo", "icon": "not good"}],
            False,
            'links.1.icon" is not valid',
        ),
        # extra
        ("metadata.name", "orders\n", False, "metadata.name"),
        ("metadata.name", "Orders--v2..beta", True, None),
        ("metadata.namespace", "Team", False, "metadata.namespace"),
        ("apiVersion", "Backstage.io/v1", False, "apiVersion"),
        ("metadata.labels", {"example.com/tier": ""}, True, None),
        ("metadata.annotations", {"example.com/json": '{"a": [1, 2]}'}, True, None),
        (
            "metadata.links",
            [{"url": "https://admin.example-org.com", "icon": "-x"}],
            False,
            "links.0.icon",
        ),
    ],
)
def test_field_format_policy(path: str, value: Any, accepted: bool, message: str | None) -> None:
    errors = v.validate_envelope(_mutated(path, value))
    if accepted:
        assert errors == []
    else:
        assert errors and str(message) in " ".join(errors)


def test_field_format_reports_every_broken_field() -> None:
    data = _mutated("kind", "a#b")
    data["metadata"]["name"] = "-bad"
    data["metadata"]["tags"] = ["Java", "ok", "Not Ok"]
    errors = v.validate_envelope(data)
    assert [e.split('"')[1] for e in errors] == ["kind", "metadata.name", "tags.0", "tags.2"]


def test_field_format_message_is_backstages() -> None:
    [error] = v.validate_envelope(_mutated("metadata.name", "a_"))
    assert error == (
        '"metadata.name" is not valid; expected a string that is sequences of '
        "[a-zA-Z0-9] separated by any of [-_.], at most 63 characters in total "
        'but found "a_".'
    )


# --- kinds: the pipeline's kind schemas ----------------------------------------------------


def _errors(pipeline: EntityPipeline, data: dict[str, Any]) -> list[str]:
    try:
        pipeline.validate(data)
    except EntityValidationError as exc:
        return exc.errors
    return []


@pytest.mark.parametrize("kind", sorted(MINIMAL_SPECS))
def test_every_kind_accepts_its_minimal_entity(pipeline: EntityPipeline, kind: str) -> None:
    ref = pipeline.validate(entity(kind))
    assert ref == EntityRef(kind, "default", "orders")


@pytest.mark.parametrize("kind", sorted(set(MINIMAL_SPECS) - {"Template"}))
def test_builtin_kinds_accept_v1beta1(pipeline: EntityPipeline, kind: str) -> None:
    # kinds/*EntityV1alpha1.test.ts: "silently accepts v1beta1 as well"
    assert _errors(pipeline, entity(kind, api_version="backstage.io/v1beta1")) == []


@pytest.mark.parametrize("kind", sorted(MINIMAL_SPECS))
def test_every_kind_requires_a_spec(pipeline: EntityPipeline, kind: str) -> None:
    data = entity(kind)
    del data["spec"]
    assert any("spec" in e for e in _errors(pipeline, data))


# Each kind's required spec fields, from its *.v1alpha1.schema.json (Template:
# plugins/scaffolder-common/src/Template.v1beta3.schema.json).
REQUIRED = [
    ("Component", "type"),
    ("Component", "lifecycle"),
    ("Component", "owner"),
    ("API", "type"),
    ("API", "lifecycle"),
    ("API", "owner"),
    ("API", "definition"),
    ("Resource", "type"),
    ("Resource", "owner"),
    ("System", "owner"),
    ("Domain", "owner"),
    ("Group", "type"),
    ("Group", "children"),
    # User.spec.memberOf is optional in TypeScript only (backstage/backstage#10205:
    # "theoretically - but not practically - optional"): the schema still requires it.
    ("User", "memberOf"),
    ("Template", "type"),
    ("Template", "steps"),
]


@pytest.mark.parametrize(("kind", "field"), REQUIRED)
def test_required_spec_fields(pipeline: EntityPipeline, kind: str, field: str) -> None:
    errors = _errors(pipeline, _with(entity(kind), f"spec.{field}", DELETE))
    assert errors == [f"/spec must have required property '{field}'"]


@pytest.mark.parametrize("kind", ["Location"])
def test_location_spec_may_be_empty(pipeline: EntityPipeline, kind: str) -> None:
    # kinds/LocationEntityV1alpha1.test.ts: "accepts missing type"
    assert _errors(pipeline, entity(kind, spec={})) == []


# kinds/ComponentEntityV1alpha1.test.ts, ApiEntityV1alpha1.test.ts,
# GroupEntityV1alpha1.test.ts, UserEntityV1alpha1.test.ts, LocationEntityV1alpha1.test.ts,
# ResourceEntityV1alpha1.test.ts, SystemEntityV1alpha1.test.ts, DomainEntityV1alpha1.test.ts
# and plugins/scaffolder-common/src/TemplateEntityV1beta3.test.ts:
# (kind, spec field path, new value, accepted?).
FULL_SPECS: dict[str, dict[str, Any]] = {
    "Component": {
        "type": "service",
        "lifecycle": "production",
        "owner": "me",
        "subcomponentOf": "monolith",
        "providesApis": ["api-0"],
        "consumesApis": ["api-0"],
        "dependsOn": ["resource:resource-0", "component:component-0"],
        "dependencyOf": ["component:component-1"],
        "system": "system",
    },
    "API": {
        "type": "openapi",
        "lifecycle": "production",
        "owner": "me",
        "definition": 'openapi: "3.0.0"',
        "system": "system",
    },
    "Resource": {
        "type": "database",
        "owner": "me",
        "dependsOn": ["resource:r"],
        "dependencyOf": ["component:c"],
        "system": "system",
    },
    "System": {"owner": "me", "domain": "domain", "type": "product"},
    "Domain": {"owner": "me", "subdomainOf": "parent-domain", "type": "area"},
    "Group": {
        "type": "squad",
        "profile": {
            "displayName": "Doe Squad",
            "email": "doe@doe.org",
            "picture": "https://doe.org/doe",
        },
        "parent": "group-a",
        "children": ["child-a", "child-b"],
        "members": ["jdoe"],
    },
    "User": {
        "profile": {
            "displayName": "John Doe",
            "email": "john@doe.org",
            "picture": "https://doe.org/john.jpeg",
        },
        "memberOf": ["team-a", "developers"],
    },
    "Location": {
        "type": "url",
        "target": "https://example.com/a.yaml",
        "targets": ["https://example.com/b.yaml"],
        "presence": "optional",
    },
    "Template": {
        "type": "website",
        "owner": "team-b",
        "lifecycle": "production",
        "parameters": {
            "required": ["owner"],
            "properties": {"owner": {"type": "string", "title": "Owner"}},
        },
        "steps": [
            {
                "id": "fetch",
                "name": "Fetch",
                "action": "fetch:plan",
                "input": {"url": "./template"},
                "if": "${{ parameters.owner }}",
            }
        ],
        "output": {"fetchUrl": "${{ steps.fetch.output.targetUrl }}"},
    },
}

KIND_CASES: list[tuple[str, str, Any, bool]] = [
    *[
        (k, f, value, ok)
        for k, fields in {
            "Component": ["type", "lifecycle", "owner"],
            "API": ["type", "lifecycle", "owner", "definition"],
            "Resource": ["type", "owner"],
            "System": ["owner"],
            "Domain": ["owner"],
            "Group": ["type"],
        }.items()
        for f in fields
        for value, ok in ((7, False), ("", False))
    ],
    *[
        (k, f, value, ok)
        for k, fields in {
            "Component": ["subcomponentOf", "system"],
            "API": ["system"],
            "Resource": ["system"],
            "System": ["domain", "type"],
            "Domain": ["subdomainOf", "type"],
            "Group": ["parent"],
            "Location": ["type", "target"],
            "Template": ["owner", "lifecycle"],
        }.items()
        for f in fields
        for value, ok in ((DELETE, True), (7, False), ("", False))
    ],
    *[
        (k, f, value, ok)
        for k, fields in {
            "Component": ["providesApis", "consumesApis", "dependsOn", "dependencyOf"],
            "Resource": ["dependsOn", "dependencyOf"],
            "Group": ["members"],
            "Location": ["targets"],
        }.items()
        for f in fields
        for value, ok in (
            (DELETE, True),
            ([], True),
            ([""], False),
            ([None], False),
            ("single", False),
            (7, False),
        )
    ],
    # Group children and User memberOf are required arrays that may be empty.
    ("Group", "children", [], True),
    ("Group", "children", [""], False),
    ("Group", "children", [None], False),
    ("Group", "children", "child-a", False),
    ("User", "memberOf", [], True),
    ("User", "memberOf", 7, False),
    ("User", "memberOf", None, False),
    ("User", "memberOf", [7], False),
    ("User", "memberOf", [""], False),
    # profiles
    *[
        (k, f"profile.{f}", value, ok)
        for k in ("Group", "User")
        for f in ("displayName", "email", "picture")
        for value, ok in ((DELETE, True), (7, False), ("", False))
    ],
    ("Group", "profile", DELETE, True),
    ("Group", "profile", 7, False),
    ("Group", "profile.foo", "data", True),
    ("User", "profile", 7, False),
    ("User", "profile.foo", "data", True),
    ("User", "foo", "data", True),
    # Location: presence is "required" or "optional"
    ("Location", "presence", "required", True),
    ("Location", "presence", "maybe", False),
    ("Location", "presence", "", False),
    ("Location", "presence", True, False),
    # Template
    ("Template", "type", "hallo", True),
    ("Template", "type", "", False),
    ("Template", "parameters", DELETE, True),
    ("Template", "output", DELETE, True),
    ("Template", "steps.0.id", DELETE, True),
    ("Template", "steps.0.name", DELETE, True),
    ("Template", "steps.0.action", DELETE, False),
    ("Template", "steps.0.if", DELETE, True),
    ("Template", "steps.0.if", True, True),
    ("Template", "steps.0.if", "", True),
    ("Template", "steps.0.if", 5, False),
    ("Template", "owner", 5, False),
    # Template, extra (Template.v1beta3.schema.json)
    ("Template", "steps", [], True),
    ("Template", "steps", {}, False),
    ("Template", "steps.0", "fetch:plain", False),
    ("Template", "steps.0.input", "x", False),
    ("Template", "steps.0.each", "${{ parameters.items }}", True),
    ("Template", "steps.0.each", {"any": "thing"}, True),
    ("Template", "steps.0.backstage:permissions", {"tags": ["a"]}, True),
    ("Template", "steps.0.backstage:permissions", {"tags": "a"}, False),
    ("Template", "parameters", [{"title": "One"}, {"title": "Two"}], True),
    ("Template", "parameters", "x", False),
    ("Template", "parameters", ["x"], False),
    ("Template", "parameters", {"backstage:permissions": {"tags": [1]}}, False),
    ("Template", "output", {"a": {"b": 1}}, False),
    ("Template", "output", {"a": ["b"]}, False),
    ("Template", "output", {"links": [{"url": "https://x", "title": "X"}]}, True),
    ("Template", "output", {"links": "https://x"}, False),
    ("Template", "output", {"links": [{"url": ""}]}, False),
    ("Template", "output", {"text": [{"title": "T", "content": "**hi**"}]}, True),
    ("Template", "output", {"text": [{"content": 7}]}, False),
    ("Template", "EXPERIMENTAL_formDecorators", [{"id": "d", "input": {}}], True),
    ("Template", "EXPERIMENTAL_formDecorators", [7], False),
    ("Template", "EXPERIMENTAL_recovery", {"EXPERIMENTAL_strategy": "startOver"}, True),
    ("Template", "presentation", {"buttonLabels": {"createButtonText": 7}}, False),
    ("Template", "secrets", {"schema": {"type": "object"}}, True),
    ("Template", "secrets", {"schema": "x"}, False),
    ("Template", "anything", {"goes": True}, True),
    ("Component", "custom", {"fields": "allowed"}, True),
]


def _case_id(case: tuple[str, str, Any, bool]) -> str:
    kind, path, value, _ = case
    return f"{kind}-{path}-{'missing' if value is DELETE else value!r}"[:70]


@pytest.mark.parametrize(
    ("kind", "path", "value", "accepted"),
    [pytest.param(*case, id=_case_id(case)) for case in KIND_CASES],
)
def test_kind_spec_rules(
    pipeline: EntityPipeline, kind: str, path: str, value: Any, accepted: bool
) -> None:
    # Backstage's rules for the kinds alone: the scaffolder's check of Template steps
    # against this platform's actions is tested with the scaffolder.
    pipeline = EntityPipeline(
        pipeline.kinds, [p for p in pipeline.processors if p.name != "scaffolder-templates"]
    )
    base = entity(kind, spec=FULL_SPECS[kind])
    assert _errors(pipeline, base) == []
    errors = _errors(pipeline, _with(base, f"spec.{path}", value))
    if accepted:
        assert errors == []
    else:
        assert errors and path.split(".")[-1] in " ".join(errors)


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("backstage.io/v1beta0", "Component"),  # "ignores unknown apiVersion"
        ("backstage.io/v1alpha1", "Wizard"),  # "ignores unknown kind"
        ("backstage.io/v1alpha1", "component"),  # kinds are case-sensitive
        ("scaffolder.backstage.io/v1beta3", "Component"),
        ("backstage.io/v1beta1", "Template"),
        ("scaffolder.backstage.io/v1beta2", "Template"),
        ("pavedroad.dev/v1alpha1", "Component"),
    ],
)
def test_unknown_kind_or_api_version(pipeline: EntityPipeline, api_version: str, kind: str) -> None:
    data = entity("Component", api_version=api_version)
    data["kind"] = kind
    with pytest.raises(EntityValidationError) as caught:
        pipeline.validate(data)
    [message] = caught.value.errors
    assert message.startswith(f"Unsupported kind {kind!r} with apiVersion {api_version!r}")
    for known in (
        "Component (backstage.io/v1alpha1/backstage.io/v1beta1)",
        "Template (scaffolder.backstage.io/v1beta3)",
        "Location",
        "User",
        "Group",
    ):
        assert known in message
    assert caught.value.ref == f"{kind.lower()}:default/orders"


def test_envelope_errors_come_before_kind_errors(pipeline: EntityPipeline) -> None:
    data = entity("Component")
    data["metadata"]["name"] = "-bad"
    data["kind"] = "Wizard"
    errors = _errors(pipeline, data)
    assert len(errors) == 1 and "metadata.name" in errors[0]


def test_validation_error_names_the_entity(pipeline: EntityPipeline) -> None:
    with pytest.raises(EntityValidationError) as caught:
        pipeline.validate(_with(entity("Component", namespace="ops"), "spec.owner", ""))
    assert caught.value.ref == "component:ops/orders"
    assert "component:ops/orders" in caught.value.detail
    assert caught.value.status == 400


# --- processing: DefaultNamespaceEntityPolicy and the whole pipeline -----------------------


def test_missing_namespace_becomes_default(process: Callable[..., Any]) -> None:
    # entity/policies/DefaultNamespaceEntityPolicy.ts
    processed = process(entity("Component"))
    assert processed.entity["metadata"]["namespace"] == "default"
    assert processed.ref == EntityRef("Component", "default", "orders")


def test_given_namespace_is_kept(process: Callable[..., Any]) -> None:
    processed = process(entity("Component", namespace="payments"))
    assert processed.ref.key == "component:payments/orders"


@pytest.mark.parametrize("namespace", ["", None, "Payments", "a_b"])
def test_bad_namespace_is_not_replaced_by_the_default(
    process: Callable[..., Any], namespace: Any
) -> None:
    with pytest.raises(EntityValidationError) as caught:
        process(entity("Component", namespace=namespace))
    assert "namespace" in " ".join(caught.value.errors)


@pytest.mark.parametrize("field", ["relations", "status"])
def test_process_rejects_relations_and_status_in_descriptor(
    process: Callable[..., Any], field: str
) -> None:
    data = entity("Component")
    data[field] = [] if field == "relations" else {}
    with pytest.raises(EntityValidationError) as caught:
        process(data)
    assert field in caught.value.errors[0]
