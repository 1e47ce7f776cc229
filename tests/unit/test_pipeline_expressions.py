"""Pipeline ``${{ }}`` expressions evaluate as GitHub Actions documents them, report bad
syntax with its column, and stay bounded on hostile input."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

import pytest

from pavedroad.core.errors import InputError
from pavedroad.pipelines.expressions import (
    KNOWN_CONTEXTS,
    STATUS_FUNCTIONS,
    ExpressionError,
    ExpressionLimits,
    Functions,
    JobStatus,
    check,
    evaluate,
    evaluate_condition,
    interpolate,
    render_value,
    to_string,
    truthy,
)

CONTEXTS: dict[str, Any] = {
    "github": {
        "ref": "refs/heads/main",
        "ref_name": "main",
        "run_number": 42,
        "event": {
            "commits": [
                {"message": "Fix bug", "author": {"name": "Ann"}},
                {"message": "Add feature", "author": {"name": "Bob"}},
                {"id": "no message here"},
            ],
            "labels": {"first": {"name": "bug"}, "second": {"name": "docs"}},
        },
    },
    "env": {"CI": "true", "EMPTY": "", "COUNT": "3", "Mixed_Case": "yes", "RATIO": "0.5"},
    "matrix": {"python-version": "3.12", "os": "ubuntu-latest", "node": 20},
    "steps": {"build": {"outputs": {"version": "1.4.2"}, "outcome": "success"}},
    "needs": {"test": {"result": "success", "outputs": {"coverage": "91"}}},
    "vars": {"LIST": '["a", "b"]', "OBJECT": '{"x": {"y": [1, 2]}}'},
}


def value(expression: str, contexts: dict[str, Any] | None = None) -> Any:
    return evaluate(expression, CONTEXTS if contexts is None else contexts)


def condition(text: str, status: JobStatus = JobStatus.SUCCESS, **kwargs: Any) -> bool:
    return evaluate_condition(text, CONTEXTS, Functions(status=status), **kwargs)


def error_of(expression: str, contexts: dict[str, Any] | None = None) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        value(expression, contexts)
    return caught.value


# ---------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("null", None),
        ("true", True),
        ("false", False),
        ("711", 711),
        ("-9.2", -9.2),
        ("0xff", 255),
        ("0XFF", 255),
        ("0o17", 15),
        ("0b101", 5),
        ("-2.99e-2", -0.0299),
        ("1e3", 1000),
        ("1E+2", 100),
        (".5", 0.5),
        ("+7", 7),
        ("1.", 1),
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
        ("'Mona the Octocat'", "Mona the Octocat"),
        ("'It''s open source!'", "It's open source!"),
        ("''''''", "''"),
        ("''", ""),
        ("'multi\nline'", "multi\nline"),
        ("'${{ not nested }}'", "${{ not nested }}"),
    ],
)
def test_literals(expression: str, expected: Any) -> None:
    result = value(expression)
    assert result == expected
    assert type(result) is type(expected)


def test_nan_literal() -> None:
    assert math.isnan(value("NaN"))


@pytest.mark.parametrize("expression", ["0x", "1abc", "-", "1.2.3", "0xfg", "-0xff", "1_000"])
def test_malformed_numbers_are_unexpected_symbols(expression: str) -> None:
    assert "Unexpected symbol" in error_of(expression).detail


# ---------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # && binds tighter than ||
        ("true || false && false", True),
        ("(true || false) && false", False),
        ("false && false || true", True),
        # == binds tighter than &&
        ("1 == 1 && 2 == 2", True),
        ("1 == 2 && 2", False),
        # < binds tighter than ==
        ("1 < 2 == 2 > 1", True),
        ("1 < 2 == false", False),
        # ! binds tighter than comparisons, and postfix access tighter than !
        ("!true == false", True),
        ("!1 < 1", True),  # (!1) < 1: false < 1
        ("!github.ref", False),
        ("!(1 == 2)", True),
        ("!!'x'", True),
        # comparisons chain left to right
        ("1 < 2 < 3", True),  # true < 3
        ("3 > 2 > 1", False),  # true > 1 is 1 > 1
        # grouping
        ("((((1))))", 1),
        ("(github).ref", "refs/heads/main"),
    ],
)
def test_precedence(expression: str, expected: Any) -> None:
    assert value(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 && 'x'", "x"),
        ("0 && 'x'", 0),
        ("'' && 'x'", ""),
        ("null || 'default'", "default"),
        ("'' || 'fallback'", "fallback"),
        ("env.CI || 'no'", "true"),
        ("false || 0 || ''", ""),
        ("'a' && 'b' && 'c'", "c"),
        ("'a' && null && 'c'", None),
        ("github.ref == 'refs/heads/main' && 'prod' || 'dev'", "prod"),
        ("github.ref == 'refs/heads/next' && 'prod' || 'dev'", "dev"),
        ("matrix.missing || matrix.node", 20),
    ],
)
def test_and_or_return_an_operand(expression: str, expected: Any) -> None:
    result = value(expression)
    assert result == expected
    assert type(result) is type(expected)


def test_and_or_short_circuit() -> None:
    # The right side would fail if evaluated.
    assert value("false && fromJSON('')") is False
    assert value("true || fromJSON('')") is True


# GitHub's coercion table: null -> 0, booleans -> 0/1, strings -> Number(), arrays and
# objects are never converted; strings compare case-insensitively; NaN equals nothing.
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("null == 0", True),
        ("null == false", True),
        ("null == ''", True),
        ("null == null", True),
        ("null == 'null'", False),
        ("true == 1", True),
        ("true == '1'", True),
        ("true == 2", False),
        ("false == 0", True),
        ("false == '0'", True),
        ("false == ''", True),
        ("'true' == true", False),
        ("'' == 0", True),
        ("'  ' == 0", True),
        ("' 1\n' == 1", True),
        ("1 == '1'", True),
        ("1 == '1.0'", True),
        ("'1' == '1.0'", False),
        ("16 == '0x10'", True),
        ("100 == '1e2'", True),
        ("'Infinity' == Infinity", True),
        ("'abc' == 0", False),
        ("'abc' == 'ABC'", True),
        ("'straße' == 'STRASSE'", True),
        ("'abc' != 'ABC'", False),
        ("NaN == NaN", False),
        ("NaN != NaN", True),
        ("'abc' == NaN", False),
        ("-0 == 0", True),
        ("github == github", True),
        ("github.event.commits == github.event.commits", True),
        ("fromJSON('[]') == fromJSON('[]')", False),
        ("fromJSON('{}') == fromJSON('{}')", False),
        ("fromJSON('[]') == ''", False),
        ("fromJSON('[]') == 0", False),
        ("null == fromJSON('[]')", False),
        ("matrix.node == '20'", True),
        ("steps.build.outputs.version == '1.4.2'", True),
        ("env.COUNT == 3", True),
        ("env.RATIO == 0.5", True),
    ],
)
def test_loose_equality(expression: str, expected: bool) -> None:
    assert value(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 2", True),
        ("2 >= 3", False),
        ("'a' < 'B'", True),
        ("'B' > 'a'", True),
        ("'abc' >= 'ABC'", True),
        ("'abc' <= 'ABC'", True),
        ("'10' > '9'", False),  # two strings compare as text
        ("'10' > 9", True),  # a string and a number compare as numbers
        ("false < true", True),
        ("true > false", True),
        ("true > 0", True),
        ("null < 1", True),
        ("null < null", False),
        ("null <= null", True),
        ("null >= 0", True),
        ("NaN < 1", False),
        ("NaN > 1", False),
        ("NaN >= NaN", False),
        ("'abc' < 1", False),
        ("fromJSON('[]') < 1", False),
        ("github < github", False),
        ("github <= github", True),  # same instance, so equal
        ("needs.test.outputs.coverage >= 90", True),
        ("-Infinity < -1e308", True),
    ],
)
def test_ordering(expression: str, expected: bool) -> None:
    assert value(expression) is expected


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (None, False),
        (False, False),
        (0, False),
        (-0.0, False),
        (math.nan, False),
        ("", False),
        (True, True),
        (1, True),
        (-1.5, True),
        ("0", True),
        ("false", True),
        ([], True),
        ({}, True),
    ],
)
def test_truthiness(item: Any, expected: bool) -> None:
    assert truthy(item) is expected
    assert value("!!x", {"x": item}) is expected


# ---------------------------------------------------------------------------- contexts


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("github.ref", "refs/heads/main"),
        ("github['ref']", "refs/heads/main"),
        ("github['r' == 'r' && 'ref']", "refs/heads/main"),
        ("steps.build.outputs.version", "1.4.2"),
        ("needs.test.result", "success"),
        ("matrix['python-version']", "3.12"),
        ("matrix[format('{0}-version', 'python')]", "3.12"),
        ("matrix.python-version", "3.12"),
        # names and keys are case-insensitive
        ("GitHub.REF", "refs/heads/main"),
        ("env.mixed_case", "yes"),
        ("ENV['MIXED_CASE']", "yes"),
        # missing keys and lookups below them are null
        ("github.nope", None),
        ("github.nope.deeper.still", None),
        ("steps.deploy.outputs.url", None),
        ("github.ref.length", None),
        ("github.ref[0]", None),
        # arrays take numbers, numeric strings, and floor fractions
        ("github.event.commits[0].message", "Fix bug"),
        ("github.event.commits['1'].message", "Add feature"),
        ("github.event.commits[1.9].message", "Add feature"),
        ("github.event.commits[3]", None),
        ("github.event.commits[-1]", None),
        ("github.event.commits['first']", None),
        ("fromJSON(vars.OBJECT).x.y[1]", 2),
        ("fromJSON(vars.LIST)[0]", "a"),
        # objects take numbers as their text
        ('fromJSON(\'{"1": "one"}\')[1]', "one"),
        ('fromJSON(\'{"1.5": "x"}\')[1.5]', "x"),
        ("fromJSON('{\"true\": 1}')[true]", 1),
    ],
)
def test_context_access(expression: str, expected: Any) -> None:
    assert value(expression) == expected


def test_values_come_back_as_the_same_objects() -> None:
    assert value("github.event") is CONTEXTS["github"]["event"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("github.event.commits.*.message", ["Fix bug", "Add feature"]),
        ("github.event.commits[*].message", ["Fix bug", "Add feature"]),
        ("github.event.commits.*.author.name", ["Ann", "Bob"]),
        ("github.event.commits.*.AUTHOR.Name", ["Ann", "Bob"]),
        ("github.event.labels.*.name", ["bug", "docs"]),
        ("github.event.commits.*.nothing", []),
        ("github.event.commits.*.message[0]", []),  # strings cannot be indexed
        ("fromJSON('[[1, 2], [3], 4]').*[0]", [1, 3]),
        ("fromJSON('[[1, 2], [3], {\"a\": 5}]').*.*", [1, 2, 3, 5]),
        ("fromJSON('[1, 2]').*", [1, 2]),
        ("github.ref.*", []),
        ("github.nope.*.x", []),
        ('fromJSON(\'{"a": {"b": 1}, "c": {"b": 2}}\').*.b', [1, 2]),
    ],
)
def test_star_filters_yield_lists(expression: str, expected: list[Any]) -> None:
    result = value(expression)
    assert result == expected
    assert type(result) is list


def test_star_filters_feed_functions() -> None:
    assert value("contains(github.event.commits.*.message, 'fix BUG')") is True
    assert value("contains(github.event.commits.*.message, 'Fix')") is False
    assert value("join(github.event.commits.*.author.name, ' & ')") == "Ann & Bob"
    assert value("toJSON(github.event.labels.*.name)") == '[\n  "bug",\n  "docs"\n]'


# ---------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("contains('Hello world', 'llo')", True),
        ("contains('Hello world', 'WORLD')", True),
        ("contains('Hello world', 'planet')", False),
        ("contains(12345, 34)", True),
        ("contains(true, 'ru')", True),
        ("contains(null, '')", True),
        ("contains(fromJSON('[\"bug\", \"help wanted\"]'), 'BUG')", True),
        ("contains(fromJSON('[1, 2]'), '2')", True),
        ("contains(fromJSON('[1, 2]'), 3)", False),
        ("contains(fromJSON('[]'), null)", False),
        ("contains(fromJSON('[null]'), 0)", True),
        ("contains(github, 'ref')", False),
        ("contains('abc', fromJSON('[]'))", False),
        ("startsWith('Hello world', 'he')", True),
        ("startsWith(github.ref, 'refs/heads/')", True),
        ("startsWith('Hello', 'world')", False),
        ("startsWith(fromJSON('[1]'), '1')", False),
        ("endsWith('Hello world', 'WORLD')", True),
        ("endsWith('Hello world', 'Hello')", False),
        ("endsWith(1.5, '.5')", True),
        ("format('Hello {0} {1} {2}', 'Mona', 'the', 'Octocat')", "Hello Mona the Octocat"),
        ("format('{{Hello {0} {1} {2}!}}', 'Mona', 'the', 'Octocat')", "{Hello Mona the Octocat!}"),
        ("format('{0}{0}{1}', 'a', 'b')", "aab"),
        ("format('{1}-{0}', 1, 2)", "2-1"),
        ("format('{0}|{1}|{2}|{3}', null, true, 1.50, 0xff)", "|true|1.5|255"),
        ("format('no placeholders')", "no placeholders"),
        ("format('{{}}')", "{}"),
        ("format('{{0}}', 'x')", "{0}"),
        ("format('{0}', fromJSON('[1]'))", "[\n  1\n]"),
        ('join(fromJSON(\'["a", "b", "c"]\'))', "a,b,c"),
        ('join(fromJSON(\'["a", "b", "c"]\'), \' | \')', "a | b | c"),
        ("join(fromJSON('[1, true, null, \"x\"]'), '-')", "1-true--x"),
        ("join(fromJSON('[]'), '-')", ""),
        ("join('single')", "single"),
        ("join(42)", "42"),
        ("join(github)", ""),
        ('join(fromJSON(\'["a", "b"]\'), null)', "ab"),
        ("toJSON('text')", '"text"'),
        ("toJSON(null)", "null"),
        ("toJSON(1.0)", "1"),
        (
            'toJSON(fromJSON(\'{"a": [1, {}], "b": []}\'))',
            '{\n  "a": [\n    1,\n    {}\n  ],\n  "b": []\n}',
        ),
        ("toJSON(github.event.commits[0].author)", '{\n  "name": "Ann"\n}'),
        ("toJSON('ünïcode \"q\"')", '"ünïcode \\"q\\""'),
        ("fromJSON('true')", True),
        ("fromJSON('12')", 12),
        ("fromJSON(' \"x\" ')", "x"),
        ("fromJSON('null')", None),
        ("fromJSON(needs.test.outputs.coverage) > 90", True),
        ("fromJSON(toJSON(fromJSON(vars.OBJECT))).x.y[0]", 1),
        ("case(github.ref == 'refs/heads/main', 'prod', 'dev')", "prod"),
        ("case(false, 1, false, 2, 'default')", "default"),
        ("case(false, 1, true, 2, 3)", 2),
        # function names are case-insensitive
        ("TOJSON(1)", "1"),
        ("Contains('abc', 'B')", True),
        ("fromjson('[1]')[0]", 1),
        ("STARTSWITH('abc', 'A')", True),
    ],
)
def test_functions(expression: str, expected: Any) -> None:
    assert value(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("format('{0} {1}', 'only one')", "references more arguments than were supplied"),
        ("format('{0}')", "references more arguments than were supplied"),
        ("format('{', 1)", "invalid format string"),
        ("format('}', 1)", "invalid format string"),
        ("format('{x}', 1)", "invalid format string"),
        ("format('{ 0}', 1)", "invalid format string"),
        ("fromJSON('')", "empty string"),
        ("fromJSON(env.EMPTY)", "empty string"),
        ("fromJSON('{')", "invalid JSON"),
        ("fromJSON('NaN')", "invalid JSON"),
        ("fromJSON('[1,]')", "invalid JSON"),
        ("case(1, 'a', 'b')", "must be true or false"),
        ("hashFiles('**/*.lock')", "hashFiles() is only available in steps"),
        ("success()", "success() is only available in if: conditions"),
        ("Failure()", "Failure() is only available in if: conditions"),
    ],
)
def test_function_errors_say_what_went_wrong(expression: str, message: str) -> None:
    error = error_of(expression)
    assert message in error.detail
    assert error.column == 1


def test_hash_files_delegates_to_the_caller() -> None:
    seen: list[Sequence[str]] = []

    def hash_files(patterns: Sequence[str]) -> str:
        seen.append(list(patterns))
        return "abc123"

    functions = Functions(hash_files=hash_files)
    result = evaluate(
        "format('deps-{0}', hashFiles('**/uv.lock', 'pyproject.toml'))", {}, functions
    )
    assert result == "deps-abc123"
    assert seen == [["**/uv.lock", "pyproject.toml"]]


class RunStatus:
    """A status object other than JobStatus: what a job with ``needs`` would pass."""

    def __init__(self, failed: bool) -> None:
        self.failed = failed

    def success(self) -> bool:
        return not self.failed

    def failure(self) -> bool:
        return self.failed

    def cancelled(self) -> bool:
        return False


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (JobStatus.SUCCESS, [True, False, False, True]),
        (JobStatus.FAILURE, [False, True, False, True]),
        (JobStatus.CANCELLED, [False, False, True, True]),
        (RunStatus(failed=True), [False, True, False, True]),
    ],
)
def test_status_functions_ask_the_callers_status(status: Any, expected: list[bool]) -> None:
    functions = Functions(status=status)
    names = ["success()", "failure()", "cancelled()", "always()"]
    assert [evaluate(name, {}, functions) for name in names] == expected


def test_status_function_names() -> None:
    assert {"success", "failure", "cancelled", "always"} == STATUS_FUNCTIONS


# ---------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no expressions here", "no expressions here"),
        ("{{ not ours }} and $VAR", "{{ not ours }} and $VAR"),
        ("${{ github.ref_name }}", "main"),
        ("  ${{ github.ref_name }}  ", "  main  "),
        ("v${{ steps.build.outputs.version }}-${{ github.run_number }}", "v1.4.2-42"),
        ("[${{ null }}] [${{ github.nope }}]", "[] []"),
        ("${{ true }}/${{ false }}", "true/false"),
        ("${{ 711 }} ${{ 1.0 }} ${{ 1.50 }} ${{ -9.2 }} ${{ 0xff }}", "711 1 1.5 -9.2 255"),
        ("${{ 0.1 }} ${{ 1e21 }} ${{ 1e-7 }} ${{ 123e-20 }}", "0.1 1e+21 1e-7 1.23e-18"),
        ("${{ 1e20 }} ${{ 0.000001 }} ${{ -0 }}", "100000000000000000000 0.000001 0"),
        ("${{ NaN }} ${{ Infinity }} ${{ -Infinity }}", "NaN Infinity -Infinity"),
        ("${{ github.event.commits[0].author }}", '{\n  "name": "Ann"\n}'),
        ("${{ github.event.commits.*.author.name }}", '[\n  "Ann",\n  "Bob"\n]'),
        ("${{ '}}' }}", "}}"),
        ("${{ 'a ''${{ quoted }}'' b' }}", "a '${{ quoted }}' b"),
        ("$${{ 1 }}", "$1"),
        ("${{1}}${{2}}${{3}}", "123"),
        ("line1\n${{ matrix.os }}\nline3", "line1\nubuntu-latest\nline3"),
    ],
)
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, CONTEXTS) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${{ fromJSON(vars.LIST) }}", ["a", "b"]),
        ("  ${{ matrix.node }}\n", 20),
        ("${{ github.event.commits.*.author.name }}", ["Ann", "Bob"]),
        ("${{ null }}", None),
        ("node ${{ matrix.node }}", "node 20"),
        ("plain", "plain"),
    ],
)
def test_render_value_keeps_the_type_of_a_lone_expression(text: str, expected: Any) -> None:
    result = render_value(text, CONTEXTS)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (3.0, "3"),
        (2.5, "2.5"),
        (10**30, str(10**30)),
        ("text", "text"),
        ([], "[]"),
        ({"a": None}, '{\n  "a": null\n}'),
        ((1, "x"), '[\n  1,\n  "x"\n]'),
        ({"n": math.nan}, '{\n  "n": null\n}'),
    ],
)
def test_to_string(item: Any, expected: str) -> None:
    assert to_string(item) == expected


# ---------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("text", "status", "expected"),
    [
        # an empty if: means success()
        ("", JobStatus.SUCCESS, True),
        ("  ", JobStatus.FAILURE, False),
        # without a status function, success() && (...) is implied
        ("github.ref == 'refs/heads/main'", JobStatus.SUCCESS, True),
        ("github.ref == 'refs/heads/main'", JobStatus.FAILURE, False),
        ("github.ref == 'refs/heads/main'", JobStatus.CANCELLED, False),
        ("${{ github.ref == 'refs/heads/main' }}", JobStatus.FAILURE, False),
        ("${{ github.ref == 'refs/heads/next' }}", JobStatus.SUCCESS, False),
        ("github.ref_name", JobStatus.SUCCESS, True),
        ("0", JobStatus.SUCCESS, False),
        ("'false'", JobStatus.SUCCESS, True),  # a non-empty string is true
        ("${{ false }}", JobStatus.SUCCESS, False),
        # with one, the condition stands alone
        ("always()", JobStatus.FAILURE, True),
        ("always()", JobStatus.CANCELLED, True),
        ("failure()", JobStatus.FAILURE, True),
        ("failure()", JobStatus.SUCCESS, False),
        ("cancelled()", JobStatus.CANCELLED, True),
        ("!cancelled()", JobStatus.FAILURE, True),
        ("always() && github.ref == 'refs/heads/next'", JobStatus.FAILURE, False),
        ("failure() && steps.build.outcome == 'success'", JobStatus.FAILURE, True),
        ("${{ success() || failure() }}", JobStatus.FAILURE, True),
        ("${{ ALWAYS() }}", JobStatus.CANCELLED, True),
        # GitHub's pitfall: an expression mixed with text is a non-empty string
        ("${{ false }} && true", JobStatus.SUCCESS, True),
        ("${{ github.ref }} == 'nope'", JobStatus.SUCCESS, True),
        ("${{ github.ref }} == 'nope'", JobStatus.FAILURE, False),
    ],
)
def test_conditions(text: str, status: JobStatus, expected: bool) -> None:
    assert condition(text, status) is expected


def test_implied_success_skips_the_rest_of_the_condition() -> None:
    # The expression would fail if it ran; a failed job never gets that far.
    assert condition("fromJSON('')", JobStatus.FAILURE) is False


def test_implicit_success_can_be_turned_off() -> None:
    assert evaluate_condition("github.ref_name == 'main'", CONTEXTS, implicit_success=False)
    assert condition("github.ref_name == 'main'", JobStatus.FAILURE, implicit_success=False)
    assert evaluate_condition("", CONTEXTS, implicit_success=False) is True


def test_implied_success_needs_a_status() -> None:
    with pytest.raises(ExpressionError, match=r"implies success\(\).*status"):
        evaluate_condition("github.ref_name == 'main'", CONTEXTS)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("expression", "message", "column"),
    [
        ("github.ref = 'x'", "Unexpected symbol: '='", 12),
        ("a & b", "Unexpected symbol: '&'", 3),
        ("github.ref | 'x'", "Unexpected symbol: '|'", 12),
        ('"double"', "Unexpected symbol: '\"double\"' (strings use single quotes)", 1),
        ("'unterminated", "Unterminated string", 1),
        ("1 2", "Unexpected symbol: '2'", 3),
        ("github.ref)", "Unexpected symbol: ')'", 11),
        ("'abc'[0]", "Unexpected symbol: '['", 6),
        ("(1", "Unexpected end of expression", 3),
        ("github.", "Unexpected end of expression", 8),
        ("github.ref ==", "Unexpected end of expression", 14),
        ("github.[0]", "Unexpected symbol: '['", 8),
        ("github..ref", "Unexpected symbol: '.ref'", 8),
        ("contains('a' 'b')", "Unexpected symbol: ''b''", 14),
        ("contains('a', 'b',)", "Unexpected symbol: ')'", 19),
        ("github[*x]", "Unexpected symbol: 'x'", 9),
        ("", "Expected an expression, found nothing", 1),
        ("   ", "Expected an expression, found nothing", 1),
        ("${{ github.ref }}", "Unexpected symbol: '${{'", 1),
        ("github.ref $", "Unexpected symbol: '$'", 12),
        ("gitlab.ref", "Unrecognized named-value: 'gitlab'", 1),
        ("1 == foo(1)", "Unrecognized function: 'foo'", 6),
        ("contains('a')", "Too few parameters supplied: 'contains' takes at least 2", 1),
        ("toJSON(1, 2)", "Too many parameters supplied: 'toJSON' takes at most 1", 1),
        ("success(1)", "Too many parameters supplied", 1),
        ("case(true, 1)", "Too few parameters supplied", 1),
        ("case(true, 1, false, 2)", "Even number of parameters supplied", 1),
    ],
)
def test_syntax_errors_name_the_problem_and_column(
    expression: str, message: str, column: int
) -> None:
    error = error_of(expression)
    assert message in error.detail
    assert error.column == column
    assert f"column {column}" in error.detail
    assert isinstance(error, InputError)
    problem = error.to_problem()
    assert problem["status"] == 400
    assert problem["column"] == column
    assert problem["type"].endswith("/expression-error")


def test_unknown_context_lists_the_known_ones() -> None:
    error = error_of("gitlab.ref")
    assert "known contexts: env, github, matrix, needs, steps, vars" in error.detail


def test_unknown_function_is_named_with_the_known_ones() -> None:
    error = error_of("toYAML(github)")
    assert "Unrecognized function: 'toYAML'" in error.detail
    assert "fromJSON" in error.detail and "hashFiles" in error.detail


def test_errors_in_longer_texts_give_line_and_column() -> None:
    text = "echo start\necho ${{ github.ref == }}\n"
    with pytest.raises(ExpressionError) as caught:
        interpolate(text, CONTEXTS)
    assert (caught.value.line, caught.value.column) == (2, 24)
    assert "line 2, column 24" in caught.value.detail
    assert "echo ${{ github.ref == }}" in caught.value.detail


def test_evaluation_errors_point_at_the_function() -> None:
    with pytest.raises(ExpressionError) as caught:
        interpolate("x=${{ fromJSON('{') }}", CONTEXTS)
    assert caught.value.column == 7


def test_unsupported_context_values_are_refused_clearly() -> None:
    error = error_of("x.y == 1", {"x": {"y": object()}})
    assert "A value of type object cannot be used in an expression" in error.detail


# ---------------------------------------------------------------------------- check


def test_check_accepts_valid_text() -> None:
    text = "echo ${{ github.ref }} ${{ format('{0}', matrix.os) }} ${{ hashFiles('x') }}"
    assert check(text) == []
    assert check("no expressions") == []
    assert check("success() && github.ref == 'x'", condition=True) == []


def test_check_reports_every_problem_with_its_column() -> None:
    text = "${{ a = b }} ok ${{ github.ref }} ${{ foo(1) }} ${{ contains(1) }} ${{ }}"
    problems = check(text)
    assert len(problems) == 4
    assert problems[0].startswith("Unexpected symbol: '=' (operators are")
    assert "column 7" in problems[0]
    assert problems[1].startswith("Unrecognized function: 'foo'")
    assert "column 39" in problems[1]
    assert problems[2].startswith("Too few parameters supplied: 'contains'")
    assert "column 53" in problems[2]
    assert problems[3].startswith("Expected an expression")
    assert "column 71" in problems[3]


def test_check_reports_an_unclosed_expression_last() -> None:
    problems = check("${{ 1 = 2 }} then ${{ github.ref")
    assert len(problems) == 2
    assert "The expression is not closed" in problems[1]
    assert "column 19" in problems[1]
    assert check("${{ '}}' ")[0].startswith("The expression is not closed")


def test_check_knows_github_contexts_by_default() -> None:
    for name in KNOWN_CONTEXTS:
        assert check(f"${{{{ {name}.anything }}}}") == []
    assert "Unrecognized named-value: 'gitlab'" in check("${{ gitlab.x }}")[0]
    assert check("${{ gitlab.x }}", contexts=None) == []
    assert check("${{ gitlab.x }}", contexts=["gitlab"]) == []
    assert check("${{ github.x }}", contexts=["gitlab"]) != []


def test_check_conditions() -> None:
    assert "column 12" in check("github.ref = 'x'", condition=True)[0]
    problems = check("${{ github.ref }} == 'refs/heads/main'", condition=True)
    assert len(problems) == 1
    assert "always true" in problems[0]
    assert check("  ${{ github.ref == 'x' }}  ", condition=True) == []
    assert check("", condition=True) == []


def test_check_stops_after_many_problems() -> None:
    problems = check("${{ = }}" * 1000)
    assert len(problems) == 51
    assert problems[-1] == "(stopped after 50 problems)"


# ---------------------------------------------------------------------------- limits


def test_expression_length_limit() -> None:
    limits = ExpressionLimits(max_length=20)
    assert evaluate("'" + "x" * 18 + "'", {}, limits=limits) == "x" * 18
    with pytest.raises(ExpressionError, match="22 characters long, over the limit of 20"):
        evaluate("'" + "x" * 20 + "'", {}, limits=limits)
    with pytest.raises(ExpressionError, match="over the limit of 21000"):
        evaluate("'" + "x" * 21_000 + "'", {})


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 60 + "1" + ")" * 60,
        "!" * 60 + "true",
        "github" + ".a" * 60,
        "github" + "['a']" * 60,
        " == ".join(["1"] * 60),
        "toJSON(" * 60 + "1" + ")" * 60,
    ],
)
def test_nesting_depth_limit(expression: str) -> None:
    with pytest.raises(ExpressionError, match="nests deeper than 50 levels"):
        value(expression)


def test_nesting_within_the_limit_works() -> None:
    assert value("(" * 40 + "1" + ")" * 40) == 1
    assert value("!" * 40 + "true") is True
    assert value(" && ".join(["true"] * 1000)) is True  # a flat chain does not nest
    assert value(" || ".join(["false"] * 1000)) is False
    assert evaluate("((1))", {}, limits=ExpressionLimits(max_depth=3)) == 1
    with pytest.raises(ExpressionError, match="deeper than 2 levels"):
        evaluate("((1))", {}, limits=ExpressionLimits(max_depth=2))


@pytest.mark.parametrize(
    ("expression", "what"),
    [
        ("format('{0}{0}{0}', env.big)", "format()'s result"),
        ("join(env.list, env.big)", "join()'s result"),
        ("toJSON(env.list)", "toJSON()'s result"),
        ("join(fromJSON('[[1], [2], [3]]'), env.big)", "join()'s result"),
    ],
)
def test_value_size_limit(expression: str, what: str) -> None:
    contexts = {"env": {"big": "x" * 40, "list": ["y" * 30] * 3}}
    limits = ExpressionLimits(max_value_size=100)
    message = re.escape(f"{what} would be longer than 100 characters")
    with pytest.raises(ExpressionError, match=message):
        evaluate(expression, contexts, limits=limits)


def test_interpolation_size_limit() -> None:
    limits = ExpressionLimits(max_value_size=100)
    contexts = {"env": {"big": "x" * 60}}
    assert len(interpolate("${{ env.big }}", contexts, limits=limits)) == 60
    with pytest.raises(ExpressionError, match="longer than 100 characters"):
        interpolate("${{ env.big }}${{ env.big }}", contexts, limits=limits)
    with pytest.raises(ExpressionError, match="The text is 101 characters long"):
        interpolate("x" * 101, contexts, limits=limits)


@pytest.mark.parametrize(
    "limits",
    [
        {"max_length": 0},
        {"max_value_size": -1},
        {"max_depth": 0},
        {"max_depth": 1000},
        {"max_seconds": 0},
    ],
)
def test_limits_are_validated(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ExpressionLimits(**limits)


# ---------------------------------------------------------------------------- hostile input

SELF: dict[str, Any] = {}
SELF["self"] = SELF
HOSTILE_CONTEXTS: dict[str, Any] = {
    "env": {
        "braces": "{{" * 400_000,
        "placeholders": "{0}" * 300_000,
        "deep": "[" * 100_000 + "]" * 100_000,
        "digits": "1" * 1_000_000,
        "hex": "0x" + "f" * 500_000,
        "text": "ab" * 400_000,
        "many": list(range(300_000)),
        "cycle": SELF,
    }
}


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 20_000,
        "(" * 10_000 + ")" * 10_000,
        "!" * 20_000,
        "env" + ".a" * 10_000,
        "1 == " * 4_000 + "1",
        "'" + "a" * 20_900,
        "a" * 22_000,
        "format(env.placeholders, 'xxxx')",
        "toJSON(fromJSON('" + "[" * 300 + "]" * 300 + "'))",
        "fromJSON(env.deep)",
        "toJSON(env.cycle)",
        "format('{0}', env.cycle)",
        "join(env.many, env.text)",
        "toJSON(env.many)",
        "success()",
    ],
)
def test_hostile_expressions_fail_fast(expression: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError):
        evaluate(expression, HOSTILE_CONTEXTS)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'" + "''" * 10_000 + "'", "'" * 10_000),
        (" && ".join(["true"] * 2_600), True),
        ("env.digits == 1", False),
        ("env.hex == Infinity", True),
        ("0x" + "f" * 20_000, math.inf),
        ("contains(env.text, 'ba') && contains(env.text, env.text)", True),
        ("startsWith(env.text, env.text) && endsWith(env.text, 'AB')", True),
        ("env.text == env.text", True),
        ("env." + "a" * 20_000, None),
    ],
)
def test_hostile_but_valid_expressions_finish_fast(expression: str, expected: Any) -> None:
    started = time.monotonic()
    assert evaluate(expression, HOSTILE_CONTEXTS) == expected
    assert time.monotonic() - started < 1.5


def test_hostile_format_strings_finish_fast() -> None:
    started = time.monotonic()
    assert evaluate("format(env.braces)", HOSTILE_CONTEXTS) == "{" * 400_000
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "text",
    [
        "${{" * 300_000,
        "${{ '" + "x" * 900_000,
        "${{ 1 }} " + "${{ '" * 100_000,
        "x ${{ env.cycle }}",
        "x" * 1_000_001,
    ],
)
def test_hostile_texts_fail_fast(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError):
        interpolate(text, HOSTILE_CONTEXTS)
    with pytest.raises(ExpressionError):
        evaluate_condition(text, HOSTILE_CONTEXTS, Functions(status=JobStatus.SUCCESS))
    assert time.monotonic() - started < 3


def test_many_expressions_in_one_text_finish_fast() -> None:
    text = "${{ env.text == 'x' }} " * 20_000
    started = time.monotonic()
    assert interpolate(text, HOSTILE_CONTEXTS) == "false " * 20_000
    assert len(check("${{ github.ref }}" * 20_000)) == 0
    assert time.monotonic() - started < 3


def test_evaluation_time_limit() -> None:
    text = "${{ contains(env.text, 'zz') }}" * 5_000
    limits = ExpressionLimits(max_seconds=0.05)
    started = time.monotonic()
    with pytest.raises(ExpressionError, match=r"Evaluating took longer than 0\.05 s"):
        interpolate(text, HOSTILE_CONTEXTS, limits=limits)
    assert time.monotonic() - started < 1
