"""``${{ ... }}`` expressions render as Backstage renders them, and hostile ones fail fast."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pavedroad.scaffolder.expressions import (
    ExpressionLimits,
    TemplateError,
    render_cookiecutter,
    render_text,
    render_value,
)

CONTEXT: dict[str, Any] = {
    "parameters": {
        "name": "orders",
        "owner": "group:team-a",
        "repoUrl": "git.example.com?owner=team-a&repo=orders",
        "tags": ["python", "web"],
        "items": "a parameter named like a dict method",
        "private": True,
        "replicas": 3,
        "service": {"port": 8080},
    },
    "steps": {"fetch": {"output": {"path": "./app", "files": 12}}},
    "user": {"entity": {"metadata": {"name": "ann"}}},
    "secrets": {"token": "s3cret"},
    "each": {"key": "k", "value": "v"},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${{ parameters.name }}", "orders"),
        ("svc-${{ parameters.name | upper }}!", "svc-ORDERS!"),
        ("${{ steps['fetch'].output.path }}", "./app"),
        ("${{ steps.fetch.output.files }}", 12),
        ("${{ user.entity.metadata.name }}", "ann"),
        ("${{ each.value }}", "v"),
        ("${{ secrets.token }}", "s3cret"),
        ("${{ parameters.items }}", "a parameter named like a dict method"),
        ("${{ parameters.tags }}", ["python", "web"]),
        ("${{ parameters.private }}", True),
        ("${{ parameters.service }}", {"port": 8080}),
        ("  ${{ parameters.replicas }}  ", 3),
        ("${{ parameters.name ~ '-' ~ parameters.replicas }}", "orders-3"),
        ("${{ 'yes' if parameters.private else 'no' }}", "yes"),
        ("${{ parameters.missing | default('fallback') }}", "fallback"),
        ("${{ parameters.missing is defined }}", False),
        ("${{ parameters.name.toUpperCase() }}", "ORDERS"),
        ("${{ parameters.name.startsWith('ord') }}", True),
        ("${{ parameters.tags.length }}", 2),
        ("${{ parameters.tags | join(',') }}", "python,web"),
        ("no expression {{ here }} {% if x %}", "no expression {{ here }} {% if x %}"),
        ("${{ '}}' }}", "}}"),
    ],
)
def test_renders_backstage_expressions(template: str, expected: Any) -> None:
    assert render_value(template, CONTEXT) == expected


def test_values_inside_text_render_as_backstage_does() -> None:
    text = "${{ parameters.private }} ${{ parameters.tags }} ${{ parameters.service }} ${{ x }}"
    assert render_value(text, {**CONTEXT, "x": None}) == 'true python,web {"port": 8080} '


def test_recurses_into_lists_and_mapping_values_not_keys() -> None:
    value = {
        "${{ parameters.name }}": ["${{ parameters.replicas }}", {"n": "x${{ parameters.name }}"}],
        "flag": False,
    }
    assert render_value(value, CONTEXT) == {
        "${{ parameters.name }}": [3, {"n": "xorders"}],
        "flag": False,
    }


def test_filters() -> None:
    assert render_value("${{ parameters.repoUrl | parseRepoUrl }}", CONTEXT) == {
        "host": "git.example.com",
        "owner": "team-a",
        "repo": "orders",
    }
    assert render_value("${{ parameters.repoUrl | projectSlug }}", CONTEXT) == "team-a/orders"
    assert render_value("${{ parameters.owner | parseEntityRef }}", CONTEXT) == {
        "kind": "group",
        "namespace": "default",
        "name": "team-a",
    }
    ref = "${{ 'team-b' | parseEntityRef({'defaultKind': 'group', 'defaultNamespace': 'x'}) }}"
    assert render_value(ref, CONTEXT) == {"kind": "group", "namespace": "x", "name": "team-b"}
    assert render_value("${{ parameters.owner | parseEntityRef | pick('name') }}", CONTEXT) == (
        "team-a"
    )


def test_filter_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="parseRepoUrl"):
        render_value("${{ 'no-query' | parseRepoUrl }}", CONTEXT)
    with pytest.raises(TemplateError, match="missing or empty kind"):
        render_value("${{ 'team-b' | parseEntityRef }}", CONTEXT)


@pytest.mark.parametrize(
    ("template", "missing"),
    [
        ("${{ parameters.nme }}", "parameters.nme"),
        ("name: ${{ parameters.nme }}", "parameters.nme"),
        ("${{ parameters.nme.first }}", "parameters.nme"),
        ("${{ steps['publish'].output.remoteUrl }}", "steps.publish"),
        ("${{ parameters.tags[5] }}", "parameters.tags[5]"),
        ("${{ (parameters.a | default('')) ~ parameters.b }}", "parameters.b"),
        ("${{ nothing }}", "nothing"),
    ],
)
def test_undefined_references_name_the_path(template: str, missing: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_value(template, CONTEXT)
    assert caught.value.detail == f"{missing} is not defined"


def test_render_text_keeps_everything_but_expressions() -> None:
    text = "# ${{ values.name }}\n{% raw %}{{ jinja }}{# c #}\nport: ${{ values.port }}\n"
    assert render_text(text, {"values": {"name": "orders", "port": 80}}) == (
        "# orders\n{% raw %}{{ jinja }}{# c #}\nport: 80\n"
    )
    assert render_text("${{ values.port }}", {"values": {"port": 80}}) == "80"


def test_cookiecutter_compat_renders_jinja_syntax() -> None:
    text = "{% for t in cookiecutter.tags %}{{ t }}{{ ',' if not loop.last else '' }}{% endfor %}\n"
    text += "{{ cookiecutter.name | upper }} {{ cookiecutter.meta | jsonify }}"
    values = {"tags": ["a", "b"], "name": "orders", "meta": {"x": 1}}
    assert render_cookiecutter(text, values) == 'a,b\nORDERS {"x": 1}'


# --- Hostile templates ---------------------------------------------------------------------

ESCAPES = [
    "${{ ''.__class__.__mro__[1].__subclasses__() }}",
    "${{ ''.__class__ }}",
    "${{ parameters.__class__ }}",
    "${{ parameters['__class__'] }}",
    "${{ cycler.__init__.__globals__ }}",
    "${{ joiner.__init__.__globals__ }}",
    "${{ namespace.__init__.__globals__ }}",
    "${{ self._TemplateReference__context }}",
    "${{ self }}",
    "${{ lipsum.__globals__ }}",
    "${{ config }}",
    "${{ config.items() }}",
    "${{ range.__globals__['__builtins__'] }}",
    "${{ parameters.name|attr('__class__') }}",
    "${{ '{0.__class__}'.format(parameters) }}",
    "${{ '{0.__class__.__init__.__globals__}'.format_map(parameters) }}",
    "${{ '%s' % parameters }}",
    "${{ ''.join }}",
    "${{ ''.join(['__cla', 'ss__']) }}",
    "${{ range }}",
    "${{ [range] }}",
    "${{ parameters.tags.append('x') }}",
    "${{ parameters.service.update({'port': 1}) }}",
    "${{ parameters.service.pop('port') }}",
    "${{ parameters.tags.__setitem__(0, 'x') }}",
    "text ${{ self }}",
]

BOMBS = [
    "${{ 'x' * 10**10 }}",
    "${{ 10**10 * 'x' }}",
    "${{ ['x'] * 10**10 }}",
    "${{ (['x' * 1000000] * 1000000) | join }}",
    "${{ ('x' * 1000000) ~ ('x' * 1000000) }}",
    "${{ range(10**10) | list }}",
    "${{ 2 ** 10000000 }}",
    "${{ 'ab' | center(10**9) }}",
    "${{ 'ab' | indent(10**9) }}",
    "${{ ('a' * 1000000) | replace('a', 'bb') }}",
    "${{ ('x' * 1000000) + ('x' * 1000000) }}",
    "${{ ('x' * 1000000).ljust(10**9) }}",
    "${{ " + "(" * 10000 + "1" + ")" * 10000 + " }}",
    "${{ " + "[" * 10000 + "]" * 10000 + " }}",
]


@pytest.mark.parametrize("template", ESCAPES + BOMBS)
def test_hostile_expressions_fail_fast_with_a_template_error(template: str) -> None:
    before = {key: repr(value) for key, value in CONTEXT.items()}
    started = time.monotonic()
    with pytest.raises(TemplateError):
        render_value(template, CONTEXT)
    assert time.monotonic() - started < 1.5
    assert {key: repr(value) for key, value in CONTEXT.items()} == before


def test_escape_errors_say_what_was_refused() -> None:
    with pytest.raises(TemplateError, match=r"'__class__'.*not allowed"):
        render_value("${{ ''.__class__ }}", CONTEXT)
    with pytest.raises(TemplateError, match="'format' of a str is not available"):
        render_value("${{ '{0.__class__}'.format(parameters) }}", CONTEXT)
    with pytest.raises(TemplateError, match="the limit is 1000000"):
        render_value("${{ 'x' * 10**10 }}", CONTEXT)


def test_output_is_limited_in_total() -> None:
    limits = ExpressionLimits(max_output_chars=100)
    with pytest.raises(TemplateError, match="longer than 100 characters"):
        render_text("x" * 60 + "${{ values.s }}", {"values": {"s": "y" * 60}}, limits)
    with pytest.raises(TemplateError, match="longer than 100 characters"):
        render_value(["${{ values.s }}"] * 2, {"values": {"s": "y" * 60}}, limits)


def test_time_is_limited_even_in_cookiecutter_loops() -> None:
    limits = ExpressionLimits(max_seconds=0.2)
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"longer than 0\.2 s"):
        render_cookiecutter(loops, {}, limits)
    assert time.monotonic() - started < 1


def test_cookiecutter_recursion_fails_cleanly() -> None:
    macro = "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"
    with pytest.raises(TemplateError):
        render_cookiecutter(macro, {})
    doubling = "{% set a = 'x' * 900000 %}{% set b = a ~ a %}{{ b }}"
    with pytest.raises(TemplateError):
        render_cookiecutter(doubling, {})
