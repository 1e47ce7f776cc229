"""Entity references parse as Backstage's ``parseEntityRef`` parses them.

Cases follow ``packages/catalog-model/src/entity/ref.test.ts`` of backstage/backstage. Its
older "rejects bad inputs" cases (``a:b:c``, ``a/b/c``...) predate the current
``parseRefString`` in ``ref.ts``, which splits on the first ``:`` before any ``/`` and on the
first ``/``, and keeps the rest as the name: those cases are now names with ``:`` or ``/``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pavedroad.catalog.refs import DEFAULT_NAMESPACE, EntityRef, EntityRefError, parse_ref, ref_key
from pavedroad.core.errors import InputError


def _parts(ref: EntityRef) -> tuple[str, str, str]:
    return ref.kind, ref.namespace, ref.name


# ref.test.ts "handles some omissions" (with the defaults parseEntityRef now applies)
@pytest.mark.parametrize(
    ("ref", "default_kind", "expected"),
    [
        ("a:b/c", None, ("a", "b", "c")),
        ("b/c", "x", ("x", "b", "c")),
        ("a:c", None, ("a", DEFAULT_NAMESPACE, "c")),
        ("c", "x", ("x", DEFAULT_NAMESPACE, "c")),
    ],
)
def test_handles_some_omissions(
    ref: str, default_kind: str | None, expected: tuple[str, str, str]
) -> None:
    assert _parts(parse_ref(ref, default_kind)) == expected


@pytest.mark.parametrize("ref", ["b/c", "c"])
def test_missing_kind_without_default_is_an_error(ref: str) -> None:
    with pytest.raises(EntityRefError, match="had missing or empty kind"):
        parse_ref(ref)


# ref.test.ts "adds defaults where necessary to strings"
@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("a:b/c", ("a", "b", "c")),
        ("b/c", ("x", "b", "c")),
        ("a:c", ("a", "y", "c")),
        ("c", ("x", "y", "c")),
    ],
)
def test_adds_defaults_to_strings(ref: str, expected: tuple[str, str, str]) -> None:
    assert _parts(parse_ref(ref, "x", "y")) == expected


# ref.test.ts "rejects empty parts in strings"
@pytest.mark.parametrize(
    "ref",
    [
        ":b/c",
        "a:/c",
        "a:b/",  # one is empty
        "a:/",
        ":b/",
        ":/c",  # two are empty
        ":/",  # three are empty
        "/c",
        "b/",
        ":c",
        "a:",  # one is left out, one empty
        "",  # nothing at all
    ],
)
def test_rejects_empty_parts_in_strings(ref: str) -> None:
    with pytest.raises(EntityRefError):
        parse_ref(ref, "x", "y")


# ref.test.ts "rejects bad inputs"
@pytest.mark.parametrize("ref", [None, 7, 1.5, ["a:b/c"], True])
def test_rejects_bad_inputs(ref: Any) -> None:
    with pytest.raises(EntityRefError):
        parse_ref(ref, "x")


# ref.ts parseRefString: the first ':' before any '/' ends the kind, the first '/' ends
# the namespace, the rest is the name.
@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("a:b:c", ("a", "y", "b:c")),
        ("a/b/c", ("x", "a", "b/c")),
        ("a/b:c", ("x", "a", "b:c")),
        ("a:b/c/d", ("a", "b", "c/d")),
        ("a:b/c:d", ("a", "b", "c:d")),
        ("url:https://example.com/x", ("url", "https:", "/example.com/x")),
    ],
)
def test_names_may_hold_colons_and_slashes(ref: str, expected: tuple[str, str, str]) -> None:
    assert _parts(parse_ref(ref, "x", "y")) == expected


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("a::", ("a", DEFAULT_NAMESPACE, ":")),
        ("a:b//", ("a", "b", "/")),
        ("b/:", ("x", "b", ":")),
    ],
)
def test_only_the_first_separators_split(ref: str, expected: tuple[str, str, str]) -> None:
    assert _parts(parse_ref(ref, "x")) == expected


# ref.test.ts "rejects empty parts in compounds"
@pytest.mark.parametrize(
    "ref",
    [
        {"kind": "", "namespace": "b", "name": "c"},
        {"kind": "a", "namespace": "", "name": "c"},
        {"kind": "a", "namespace": "b", "name": ""},
        {"kind": "", "namespace": "", "name": "c"},
        {"kind": "", "namespace": "b", "name": ""},
        {"kind": "a", "namespace": "", "name": ""},
        {"kind": "", "namespace": "", "name": ""},
        {"namespace": "", "name": "c"},
        {"namespace": "b", "name": ""},
        {"kind": "", "name": "c"},
        {"kind": "a", "name": ""},
        {},
    ],
)
def test_rejects_empty_parts_in_compounds(ref: dict[str, Any]) -> None:
    with pytest.raises(EntityRefError):
        parse_ref(ref)


# ref.test.ts "adds defaults where necessary to compounds"
@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({"kind": "a", "namespace": "b", "name": "c"}, ("a", "b", "c")),
        ({"namespace": "b", "name": "c"}, ("x", "b", "c")),
        ({"kind": "a", "name": "c"}, ("a", "y", "c")),
        ({"name": "c"}, ("x", "y", "c")),
        ({"kind": None, "namespace": None, "name": "c"}, ("x", "y", "c")),
    ],
)
def test_adds_defaults_to_compounds(ref: dict[str, Any], expected: tuple[str, str, str]) -> None:
    assert _parts(parse_ref(ref, "x", "y")) == expected


# ref.test.ts: "empty strings are errors, not defaults"
@pytest.mark.parametrize(
    ("ref", "part"),
    [
        ({"kind": "", "namespace": "b", "name": "c"}, "kind"),
        ({"kind": "a", "namespace": "", "name": "c"}, "namespace"),
    ],
)
def test_empty_strings_are_errors_not_defaults(ref: dict[str, Any], part: str) -> None:
    with pytest.raises(EntityRefError, match=f"missing or empty {part}"):
        parse_ref(ref, "x", "y")


def test_empty_default_namespace_means_default() -> None:
    # ref.ts: `context?.defaultNamespace || DEFAULT_NAMESPACE`
    assert _parts(parse_ref("a:c", None, "")) == ("a", DEFAULT_NAMESPACE, "c")
    assert _parts(parse_ref({"kind": "a", "name": "c"}, None, "")) == ("a", "default", "c")


def test_parts_keep_their_case_and_the_key_is_lower_case() -> None:
    ref = parse_ref("Component:Payments/Orders-API")
    assert _parts(ref) == ("Component", "Payments", "Orders-API")
    assert ref.key == str(ref) == "component:payments/orders-api"


@pytest.mark.parametrize(
    ("ref", "default_kind", "default_namespace", "expected"),
    [
        ("orders", "Component", "default", "component:default/orders"),
        ("Group:Team-A", None, "ops", "group:ops/team-a"),
        ("ops/team-a", "Group", "default", "group:ops/team-a"),
        ({"kind": "API", "namespace": "Pay", "name": "Orders"}, None, "default", "api:pay/orders"),
        ("user:default/jdoe", "Group", "ops", "user:default/jdoe"),
    ],
)
def test_ref_key(ref: Any, default_kind: str | None, default_namespace: str, expected: str) -> None:
    assert ref_key(ref, default_kind, default_namespace) == expected


def test_key_round_trips_through_parse() -> None:
    for text in ["a:b/c", "a:b/c:d", "a:b/c/d", "x:y/b:c"]:
        ref = parse_ref(text)
        assert parse_ref(ref.key) == EntityRef(*(p.lower() for p in _parts(ref)))


def test_errors_are_input_errors_with_the_backstage_message() -> None:
    with pytest.raises(EntityRefError) as caught:
        parse_ref("orders")
    assert isinstance(caught.value, InputError)
    assert caught.value.status == 400
    assert caught.value.detail == (
        'Entity reference "orders" had missing or empty kind '
        '(e.g. did not start with "component:" or similar)'
    )
    with pytest.raises(EntityRefError) as caught:
        parse_ref("a:/c")
    assert caught.value.detail == (
        'Entity reference "a:/c" was not on the form [<kind>:][<namespace>/]<name>'
    )


def test_entity_ref_of_an_entity() -> None:
    assert EntityRef.of({"kind": "Component", "metadata": {"name": "orders"}}) == EntityRef(
        "Component", "default", "orders"
    )
    assert EntityRef.of({"kind": "API", "metadata": {"name": "a", "namespace": "ops"}}) == (
        EntityRef("API", "ops", "a")
    )


@pytest.mark.parametrize(
    ("ref", "default_kind", "default_namespace", "expected"),
    [
        ("component:default/orders", "Component", "default", "orders"),
        ("component:default/orders", None, "default", "component:orders"),
        ("component:ops/orders", "component", "default", "ops/orders"),
        ("component:ops/orders", "Group", "ops", "component:orders"),
    ],
)
def test_display_is_the_shortest_form_that_parses_back(
    ref: str, default_kind: str | None, default_namespace: str, expected: str
) -> None:
    parsed = parse_ref(ref)
    shown = parsed.display(default_kind, default_namespace)
    assert shown == expected
    assert parse_ref(shown, default_kind or "x", default_namespace).key == parsed.key
