"""The file commands a step writes: $PAVEDROAD_OUTPUT, $PAVEDROAD_ENV, $PAVEDROAD_PATH."""

from __future__ import annotations

from pathlib import Path

import pytest

from pavedroad.pipelines.outputs import (
    FileCommandError,
    parse_assignments,
    parse_env_assignments,
    parse_path_lines,
    read_command_file,
)


def test_name_value_lines() -> None:
    text = "greeting=hello\nempty=\nequation=a=b\n\nspaced = kept as is \n"
    assert parse_assignments(text) == {
        "greeting": "hello",
        "empty": "",
        "equation": "a=b",
        "spaced ": " kept as is ",
    }


def test_heredoc_values_keep_their_lines() -> None:
    text = "notes<<EOF\nfirst line\n\nthird = line\nEOF\nafter=1\n"
    assert parse_assignments(text) == {"notes": "first line\n\nthird = line", "after": "1"}


def test_heredoc_with_an_empty_value_and_a_delimiter_holding_equals() -> None:
    assert parse_assignments("x<<E=F\nE=F\n") == {"x": ""}


def test_equals_before_heredoc_marker_is_a_plain_value() -> None:
    assert parse_assignments("a=b<<c\n") == {"a": "b<<c"}


def test_crlf_line_ends_are_read_as_newlines() -> None:
    text = "a=1\r\nlong<<END\r\none\r\ntwo\r\nEND\r\n"
    assert parse_assignments(text) == {"a": "1", "long": "one\ntwo"}


def test_a_later_line_replaces_an_earlier_one() -> None:
    assert parse_assignments("v=1\nv=2\n") == {"v": "2"}


def test_file_without_final_newline() -> None:
    assert parse_assignments("a=1") == {"a": "1"}
    assert parse_assignments("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just text\n", "expected name=value or name<<DELIMITER"),
        ("=value\n", "the name is empty"),
        ("x<<EOF\nnever closed\n", "no line 'EOF' ends the value of 'x'"),
        ("x<<\n", "has no delimiter"),
        ("x=a\x00b\n", "NUL"),
    ],
)
def test_malformed_files_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(FileCommandError) as raised:
        parse_assignments(text)
    assert message in raised.value.detail
    assert "line 1" in raised.value.detail


def test_env_names_must_be_variable_names() -> None:
    assert parse_env_assignments("GOOD_1=x\n_under=y\n") == {"GOOD_1": "x", "_under": "y"}
    for bad in ("1ABC=x\n", "A-B=x\n", "A B=x\n"):
        with pytest.raises(FileCommandError, match="not an environment variable name"):
            parse_env_assignments(bad)


def test_env_cannot_set_the_runners_variables() -> None:
    with pytest.raises(FileCommandError, match="belong to the runner"):
        parse_env_assignments("PAVEDROAD_OUTPUT=/etc/passwd\n")
    with pytest.raises(FileCommandError, match="belong to the runner"):
        parse_env_assignments("pavedroad_sha<<X\nabc\nX\n")


def test_path_lines() -> None:
    assert parse_path_lines("/opt/tool/bin\n\n  /usr/local/go/bin \r\n") == [
        "/opt/tool/bin",
        "/usr/local/go/bin",
    ]
    with pytest.raises(FileCommandError, match="line 2"):
        parse_path_lines("/ok\n/a:/b\n")


def test_reading_a_file_command(tmp_path: Path) -> None:
    assert read_command_file(tmp_path / "missing", "$PAVEDROAD_OUTPUT") == ""
    written = tmp_path / "output"
    written.write_bytes(b"a=\xff\n")
    assert parse_assignments(read_command_file(written, "$PAVEDROAD_OUTPUT")) == {"a": "\ufffd"}
    written.write_bytes(b"x" * 101)
    with pytest.raises(FileCommandError, match="larger than 100 bytes"):
        read_command_file(written, "$PAVEDROAD_OUTPUT", max_bytes=100)
