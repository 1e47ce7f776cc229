"""The one YAML loader: what it refuses, where it says the problem is, and that one broken
document in a stream does not hide the others."""

from __future__ import annotations

import time

import pytest

from pavedroad.core.errors import InputError, PayloadTooLargeError
from pavedroad.core.safeyaml import (
    YamlDocument,
    YamlError,
    YamlLimits,
    YamlTooLargeError,
    dump,
    load_document,
    load_documents,
)


def _only(text: str | bytes, **limits: int) -> YamlDocument:
    [document] = load_documents(text, "catalog-info.yaml", YamlLimits(**limits))
    return document


def _error(text: str | bytes, **limits: int) -> YamlError:
    document = _only(text, **limits)
    assert document.error is not None, f"accepted: {document.data!r}"
    assert document.data is None
    return document.error


# --- plain data -----------------------------------------------------------------------------


def test_loads_plain_data() -> None:
    data = load_document("a: 1\nb: [x, 'y', 2.5, true, null]\nc: {d: e}\n")
    assert data == {"a": 1, "b": ["x", "y", 2.5, True, None], "c": {"d": "e"}}


def test_utf8_bom_and_crlf() -> None:
    assert load_document("\ufeffa: 1\r\nb: 2\r\n".encode()) == {"a": 1, "b": 2}


def test_dump_keeps_key_order_and_unicode() -> None:
    text = dump({"z": 1, "a": ["é", {"k": "v"}]})
    assert text == "z: 1\na:\n- é\n- k: v\n"
    assert load_document(text) == {"z": 1, "a": ["é", {"k": "v"}]}


# --- malformed YAML: line and column ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3, 2, "did not find expected ',' or ']'"),
        ("a:\n  b: 1\n c: 2\n", 3, 2, "did not find expected key"),
        ("a:\n\tb: 1\n", 2, 1, "found character that cannot start any token"),
        ("a: 'open\n", 2, 1, "found unexpected end of stream"),
        ("- a\nb: c\n", 2, 1, "did not find expected '-' indicator"),
    ],
)
def test_malformed_yaml_names_line_and_column(
    text: str, line: int, column: int, message: str
) -> None:
    error = _error(text)
    assert (error.line, error.column) == (line, column)
    assert message in error.message
    assert error.source == "catalog-info.yaml"
    assert error.detail.startswith(f"catalog-info.yaml:{line}:{column}: ")
    assert isinstance(error, InputError) and error.status == 400
    assert error.to_problem()["line"] == line


# --- resource exhaustion ------------------------------------------------------------------

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_is_measured_not_expanded() -> None:
    started = time.perf_counter()
    error = _error(BILLION_LAUGHS)
    assert time.perf_counter() - started < 1
    assert "expands to more than 500000 nodes" in error.message
    assert error.line is not None and 1 <= error.line <= 9


def test_billion_laughs_is_caught_by_the_alias_limit_first_when_lower() -> None:
    small = "a: &a [x, y]\nb: [" + ", ".join(["*a"] * 12) + "]\n"
    assert _only(small).data["b"][11] == ["x", "y"]
    error = _error(small, max_aliases=10)
    assert error.message == "more than 10 aliases"
    assert error.line in (1, 2)


def test_expansion_limit_counts_every_expanded_node() -> None:
    # the mapping, key a, [1, 2, 3] (4 nodes), key b, and [*a, *a] (1 + 2 * 4): 16 nodes
    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"
    assert _only(text, max_nodes=16).error is None
    assert "expands to more than 15 nodes" in _error(text, max_nodes=15).message


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a]\n",
        "a: &a\n  b: *a\n",
        "- &x\n  - &y\n    - *x\n",
        "&top {loop: *top}\n",
    ],
)
def test_recursive_alias(text: str) -> None:
    error = _error(text)
    assert error.message == "recursive alias"
    assert error.line is not None


def test_ten_megabytes_is_refused_before_parsing() -> None:
    # Not even valid YAML: the size check comes first, and fast.
    data = b"a: [" + b"x" * (10 * 1024 * 1024)
    started = time.perf_counter()
    with pytest.raises(YamlTooLargeError) as caught:
        load_documents(data, "big.yaml")
    assert time.perf_counter() - started < 0.5
    error = caught.value
    assert isinstance(error, PayloadTooLargeError) and isinstance(error, YamlError)
    assert error.status == 413 and error.to_problem()["status"] == 413
    assert error.detail == (
        f"big.yaml: file is {len(data)} bytes, over the limit of {1024 * 1024} bytes"
    )
    assert error.line is None
    with pytest.raises(YamlTooLargeError):
        load_document(data, "big.yaml")


def test_size_limit_counts_utf8_bytes_of_text() -> None:
    text = "a: " + "é" * 10  # 23 bytes in UTF-8, 13 characters
    assert load_document(text, limits=YamlLimits(max_bytes=23)) == {"a": "é" * 10}
    with pytest.raises(YamlTooLargeError):
        load_document(text, limits=YamlLimits(max_bytes=22))


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 10_000 + "]" * 10_000 + "\n",  # flow
        "a: " + "{b: " * 10_000 + "c" + "}" * 10_000 + "\n",  # flow mappings
        "- " * 10_000 + "x\n",  # block sequences, one per level
    ],
)
def test_ten_thousand_levels_of_nesting(text: str) -> None:
    started = time.perf_counter()
    error = _error(text)
    assert time.perf_counter() - started < 2
    assert "nesting" in error.message
    assert error.line == 1 and error.column is not None


def test_block_mapping_nesting_over_the_depth_limit() -> None:
    text = "".join(" " * i + "k:\n" for i in range(80)) + " " * 80 + "v\n"
    error = _error(text)
    assert error.message == "nesting deeper than 64 levels"
    assert error.line is not None and error.line > 60


def test_depth_limit_boundary() -> None:
    assert _only("[" * 64 + "]" * 64).error is None
    assert _error("[" * 65 + "]" * 65).message == "nesting deeper than 64 levels"
    assert _error("[" * 11 + "]" * 11, max_depth=10).message == "nesting deeper than 10 levels"


# --- ambiguity and unsafe tags ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "line", "column"),
    [
        ("a: 1\nb: 2\na: 3\n", "a", 3, 1),
        ("spec:\n  owner: x\n  type: y\n  owner: z\n", "owner", 4, 3),
        ("{a: 1, a: 2}\n", "a", 1, 8),
        ("1: x\n1: y\n", "1", 2, 1),
    ],
)
def test_duplicate_keys_name_the_line(text: str, key: object, line: int, column: int) -> None:
    error = _error(text)
    assert error.message == f"duplicate key {key!r}"
    assert (error.line, error.column) == (line, column)


def test_same_key_in_different_mappings_is_fine() -> None:
    assert load_document("a: {k: 1}\nb: {k: 2}\n") == {"a": {"k": 1}, "b": {"k": 2}}


def test_collection_keys_are_refused() -> None:
    assert _error("? [a, b]\n: 1\n").message == "mapping keys must be scalars"


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("a: !!python/object:os.system {}\n", "!!python/object:os.system"),
        ("a: !!python/object/apply:os.system ['echo pwned']\n", "!!python/object/apply:os.system"),
        ("a: !!python/object/new:os.system [x]\n", "!!python/object/new:os.system"),
        ("a: !!python/name:os.system\n", "!!python/name:os.system"),
        ("a: !!python/module:os\n", "!!python/module:os"),
        ("a: !!python/tuple [1, 2]\n", "!!python/tuple"),
        ("a: !custom x\n", "!custom"),
    ],
)
def test_python_and_unknown_tags_are_refused(text: str, tag: str) -> None:
    error = _error(text)
    assert error.message == f"tag {tag} is not allowed (only plain YAML data is accepted)"
    assert (error.line, error.column) == (1, 4)


@pytest.mark.parametrize(
    ("data", "byte"),
    [
        (b"a: \xff\xfe\n", 3),
        (b"name: caf\xe9\n", 9),
        (b"\xc3", 0),
    ],
)
def test_non_utf8_bytes(data: bytes, byte: int) -> None:
    with pytest.raises(YamlError) as caught:
        load_documents(data, "latin1.yaml")
    assert caught.value.message == f"not valid UTF-8 (byte {byte})"
    assert caught.value.detail == f"latin1.yaml: not valid UTF-8 (byte {byte})"
    assert caught.value.status == 400


# --- multi-document streams ----------------------------------------------------------------

STREAM = """\
# leading comment
apiVersion: a/v1
kind: One
---
kind: Two
list: [1, 2
---
# third
kind: Three
kind: Again
---
kind: Four
extra: |
  ---
  not a marker
...
---
kind: Five
"""


def test_one_broken_document_does_not_hide_the_others() -> None:
    documents = load_documents(STREAM, "all.yaml")
    assert [d.data and d.data["kind"] for d in documents] == ["One", None, None, "Four", "Five"]
    assert [d.line for d in documents] == [2, 4, 7, 12, 18]
    two, three = documents[1].error, documents[2].error
    assert two is not None and "did not find expected ',' or ']'" in two.message
    assert (two.line, two.column) == (7, 1)  # where the next document begins
    assert three is not None and three.detail == "all.yaml:10:1: duplicate key 'kind'"
    assert documents[3].data["extra"] == "---\nnot a marker\n"


def test_errors_in_later_documents_keep_absolute_lines() -> None:
    text = "a: 1\n---\nb: 2\n---\nc: 3\nd: [\n"
    documents = load_documents(text)
    # a valid document's line is its first content line; a broken one's, its marker's
    assert [d.line for d in documents] == [1, 3, 4]
    assert documents[2].error is not None and documents[2].error.line == 7


def test_document_marker_inside_a_block_scalar() -> None:
    text = "a: |\n  ---\n  text\n  ...\nb: >\n  foo\n  --- bar\n---\nc: 3\n"
    documents = load_documents(text)
    assert [(d.line, d.data) for d in documents] == [
        (1, {"a": "---\ntext\n...\n", "b": "foo --- bar\n"}),
        (9, {"c": 3}),
    ]


def test_document_end_markers_and_directives() -> None:
    documents = load_documents("%YAML 1.1\n---\na: 1\n...\n---\nb: 2\n")
    assert [(d.line, d.data) for d in documents] == [(3, {"a": 1}), (6, {"b": 2})]


@pytest.mark.parametrize(
    "text",
    [
        "---\n---\n# only a comment\n---\na: 1\n---\n",
        "a: 1\n---\n",
        "---\na: 1\n...\n---\n...\n",
    ],
)
def test_empty_documents_are_skipped(text: str) -> None:
    assert [d.data for d in load_documents(text)] == [{"a": 1}]


def test_empty_documents_are_skipped_in_a_broken_stream() -> None:
    text = "---\n---\na: [\n---\n\n---\nb: 1\n---\n"
    documents = load_documents(text)
    assert [(d.data, d.error is not None) for d in documents] == [(None, True), ({"b": 1}, False)]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n", "---\n", "---\n...\n"])
def test_nothing_but_empty_documents(text: str) -> None:
    assert load_document(text) is None
    assert all(d.data is None and d.error is None for d in load_documents(text))


# --- load_document --------------------------------------------------------------------------


def test_load_document_raises_the_documents_error() -> None:
    with pytest.raises(YamlError) as caught:
        load_document("a: 1\nb: [\n", "one.yaml")
    assert caught.value.detail.startswith("one.yaml:3:1: ")


def test_load_document_raises_on_several_documents() -> None:
    with pytest.raises(YamlError) as caught:
        load_document("a: 1\n---\nb: 2\n", "one.yaml")
    assert caught.value.message == "expected one document, found several"
    assert caught.value.line == 3


def test_load_document_raises_for_a_later_broken_document() -> None:
    with pytest.raises(YamlError, match="duplicate key 'x'"):
        load_document("a: 1\n---\nx: 1\nx: 2\n")


def test_load_document_refuses_unsafe_tags_and_bombs() -> None:
    with pytest.raises(YamlError, match="not allowed"):
        load_document("!!python/object/apply:os.system ['true']")
    with pytest.raises(YamlError, match="expands to more than"):
        load_document(BILLION_LAUGHS)
    with pytest.raises(YamlError, match="recursive alias"):
        load_document("a: &a [*a]")


# --- parity with Backstage's parser ----------------------------------------------------
# Backstage reads catalog files with the `yaml` package (YAML 1.2 core schema, merge keys
# off, uniqueKeys on, maxAliasCount 100): plugins/catalog-backend/src/modules/util/parse.ts.


def test_aliases_to_scalars_count() -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    assert _error(text).message == "more than 100 aliases"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: yes", {"a": "yes"}),
        ("a: off", {"a": "off"}),
        ("a: 2021-01-01", {"a": "2021-01-01"}),
        ("a: 1:20", {"a": "1:20"}),
        ("a: 1_000", {"a": "1_000"}),
        ("1: a", {"1": "a"}),
        ("b: &b {x: 1}\nm: {<<: *b}", {"b": {"x": 1}, "m": {"<<": {"x": 1}}}),
    ],
)
def test_yaml_1_2_core_schema(text: str, expected: object) -> None:
    assert load_document(text) == expected
