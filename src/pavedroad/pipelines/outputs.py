"""The files a step writes to talk back to the runner, as GitHub Actions' file commands.

``$PAVEDROAD_OUTPUT`` (GitHub's ``$GITHUB_OUTPUT``) sets the step's outputs and
``$PAVEDROAD_ENV`` (``$GITHUB_ENV``) adds variables to the environment of later steps,
both in either form::

    name=value            the value is the rest of the line
    name<<DELIMITER       the value is the lines that follow, up to a line that is
    line one              exactly DELIMITER (without its final newline)
    DELIMITER

``$PAVEDROAD_PATH`` (``$GITHUB_PATH``) holds one folder per line, put in front of
``PATH`` for later steps. A malformed file fails the step, as on GitHub.
"""

from __future__ import annotations

import re
from pathlib import Path

from pavedroad.core.errors import InputError

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_ENV_PREFIX = "PAVEDROAD_"
DEFAULT_MAX_BYTES = 1024 * 1024


class FileCommandError(InputError):
    """A step wrote a file command the runner cannot read."""

    title = "Invalid step file command"
    type_slug = "file-command"


def parse_assignments(text: str, what: str = "$PAVEDROAD_OUTPUT") -> dict[str, str]:
    """The ``name=value`` and ``name<<DELIMITER`` entries of ``text``; a later entry
    for a name replaces an earlier one. Blank lines are skipped; ``\\r\\n`` line ends
    are read as ``\\n``."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file
    lines = [line.removesuffix("\r") for line in lines]
    values: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        index += 1
        if not line.strip():
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line[:equals], line[equals + 1 :]
        elif heredoc >= 0:
            name, delimiter = line[:heredoc], line[heredoc + 2 :]
            if not delimiter:
                raise FileCommandError(f"{what} line {number}: {name}<< has no delimiter")
            try:
                end = lines.index(delimiter, index)
            except ValueError:
                raise FileCommandError(
                    f"{what} line {number}: no line {delimiter!r} ends the value of {name!r}"
                ) from None
            value = "\n".join(lines[index:end])
            index = end + 1
        else:
            raise FileCommandError(
                f"{what} line {number}: expected name=value or name<<DELIMITER, "
                f"got {_shorten(line)!r}"
            )
        if not name:
            raise FileCommandError(f"{what} line {number}: the name is empty")
        if "\x00" in name or "\x00" in value:
            raise FileCommandError(f"{what} line {number}: a NUL character is not allowed")
        values[name] = value
    return values


def parse_env_assignments(text: str, what: str = "$PAVEDROAD_ENV") -> dict[str, str]:
    """:func:`parse_assignments` for environment variables: names must be valid
    variable names and may not start with ``PAVEDROAD_`` (the runner sets those)."""
    values = parse_assignments(text, what)
    for name in values:
        if not ENV_NAME.fullmatch(name):
            raise FileCommandError(
                f"{what}: {_shorten(name)!r} is not an environment variable name "
                "(letters, digits and _, not starting with a digit)"
            )
        if name.upper().startswith(RESERVED_ENV_PREFIX):
            raise FileCommandError(
                f"{what}: {name} cannot be set: {RESERVED_ENV_PREFIX}* variables belong "
                "to the runner"
            )
    return values


def parse_path_lines(text: str, what: str = "$PAVEDROAD_PATH") -> list[str]:
    """The folders of a ``$PAVEDROAD_PATH`` file, in order, blank lines skipped."""
    folders: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        folder = line.removesuffix("\r").strip()
        if not folder:
            continue
        if "\x00" in folder or ":" in folder:
            raise FileCommandError(
                f"{what} line {number}: a folder cannot contain ':' or a NUL character"
            )
        folders.append(folder)
    return folders


def read_command_file(path: Path, what: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The text of a file command, '' when the step did not write it."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        return ""
    if len(data) > max_bytes:
        raise FileCommandError(f"{what} is larger than {max_bytes} bytes")
    return data.decode("utf-8", errors="replace")


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
