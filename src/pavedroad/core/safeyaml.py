"""The one YAML loader every part of the platform uses.

It refuses what makes YAML dangerous or ambiguous: files over the size cap, alias
bombs, deep nesting, recursive aliases, duplicate keys and any tag that would build a
Python object. Multi-document streams are split on document markers first, so one
malformed document does not hide the others. Every error names the source, line and
column (1-based).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from pavedroad.core.errors import InputError, PayloadTooLargeError

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ALIASES = 100
DEFAULT_MAX_NODES = 500_000

_DOCUMENT_MARKER = re.compile(r"^(?:---|\.\.\.)(?=[ \t\r]|$)", re.MULTILINE)
_BLANK_OR_COMMENT = re.compile(r"^\s*(?:#.*)?$")


@dataclass(frozen=True)
class YamlLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_aliases: int = DEFAULT_MAX_ALIASES
    max_nodes: int = DEFAULT_MAX_NODES


class YamlError(InputError):
    """A YAML document that cannot be accepted, with where it went wrong."""

    title = "Invalid YAML"
    type_slug = "invalid-yaml"

    def __init__(
        self, message: str, source: str, line: int | None = None, column: int | None = None
    ) -> None:
        where = source if line is None else f"{source}:{line}:{column or 1}"
        super().__init__(f"{where}: {message}", source=source, line=line, column=column)
        self.message = message
        self.source = source
        self.line = line
        self.column = column


class YamlTooLargeError(YamlError, PayloadTooLargeError):
    status = 413


@dataclass
class YamlDocument:
    """One document of a stream: its data, or the error that stopped it, and the line
    where its content starts (or where the broken document begins)."""

    data: Any
    line: int
    error: YamlError | None = None


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loading with YAML 1.2's core schema (as Backstage reads catalog files):
    only ``true``/``false`` are booleans, dates stay strings, ``<<`` is an ordinary key,
    mapping keys are strings, and duplicate keys are refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, dict | list):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be scalars", key_node.start_mark
                )
            key = _key_text(key)
            if key in result:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            result[key] = self.construct_object(value_node, deep=deep)
        return result

    def construct_core_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        return sign * int(digits, 10)


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return key if isinstance(key, str) else str(key)


_Loader.yaml_implicit_resolvers = {}
_CORE_SCHEMA = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]
for _tag, _pattern, _first in _CORE_SCHEMA:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_core_int)


def _check_shape(node: yaml.Node, source: str, limits: YamlLimits) -> None:
    """Bound the depth, alias count and expanded size of a composed node graph.

    Aliases are shared node objects, so a collection met twice is an alias use. Sizes
    and heights are memoised per collection: a billion-laughs document is measured, not
    expanded. Recursion stops at ``max_depth``, far below Python's own limit.
    """
    measured: dict[int, tuple[int, int]] = {}  # id -> (expanded size, height)
    active: set[int] = set()
    scalars: set[int] = set()
    aliases = 0

    def measure(current: yaml.Node, depth: int) -> tuple[int, int]:
        nonlocal aliases
        if depth > limits.max_depth:
            raise _node_error(f"nesting deeper than {limits.max_depth} levels", current, source)
        key = id(current)
        if isinstance(current, yaml.ScalarNode):
            if key in scalars:
                aliases += 1
                if aliases > limits.max_aliases:
                    raise _node_error(f"more than {limits.max_aliases} aliases", current, source)
            scalars.add(key)
            return 1, 1
        if key in active:
            raise _node_error("recursive alias", current, source)
        if key in measured:
            aliases += 1
            if aliases > limits.max_aliases:
                raise _node_error(f"more than {limits.max_aliases} aliases", current, source)
            size, height = measured[key]
            if depth + height - 1 > limits.max_depth:
                raise _node_error(f"nesting deeper than {limits.max_depth} levels", current, source)
            return size, height
        active.add(key)
        children = (
            [n for pair in current.value for n in pair]
            if isinstance(current, yaml.MappingNode)
            else current.value
        )
        size, height = 1, 1
        for child in children:
            child_size, child_height = measure(child, depth + 1)
            size += child_size
            height = max(height, child_height + 1)
        if size > limits.max_nodes:
            raise _node_error(
                f"document expands to more than {limits.max_nodes} nodes "
                "(alias expansion too large)",
                current,
                source,
            )
        active.discard(key)
        measured[key] = (size, height)
        return size, height

    measure(node, 1)


def _node_error(message: str, node: yaml.Node, source: str) -> YamlError:
    mark = node.start_mark
    return YamlError(message, source, mark.line + 1, mark.column + 1)


def _decode(data: bytes | str, source: str, limits: YamlLimits) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > limits.max_bytes:
        raise YamlTooLargeError(
            f"file is {len(raw)} bytes, over the limit of {limits.max_bytes} bytes", source
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlError(f"not valid UTF-8 (byte {exc.start})", source) from None


def _split_documents(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first line index, text) for each document chunk of a stream."""
    starts = [m.start() for m in _DOCUMENT_MARKER.finditer(text)]
    bounds = [0, *starts, len(text)]
    pending_preamble = ""
    for begin, end in itertools.pairwise(bounds):
        chunk = text[begin:end]
        if chunk.startswith("..."):
            chunk = " " * 3 + chunk[3:]
        body = chunk if not chunk.startswith("---") else chunk[3:]
        if all(
            _BLANK_OR_COMMENT.match(line) or line.startswith("%") for line in body.splitlines()
        ) and not chunk.startswith("---"):
            pending_preamble += chunk
            continue
        if chunk.startswith("---") and not body.strip():
            continue
        first_line = text.count("\n", 0, begin)
        if pending_preamble:
            first_line -= pending_preamble.count("\n")
            chunk = pending_preamble + chunk
            pending_preamble = ""
        yield first_line, chunk


def _parse_chunk(
    chunk: str, first_line: int, source: str, limits: YamlLimits
) -> tuple[Any, int] | None:
    """One document's data and the line it starts on (None for an empty document)."""
    loader = _Loader("\n" * first_line + chunk)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_shape(node, source, limits)
        return loader.construct_document(node), node.start_mark.line + 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = _describe(exc)
        if mark is None:
            raise YamlError(message, source) from None
        raise YamlError(message, source, mark.line + 1, mark.column + 1) from None
    except yaml.YAMLError as exc:
        raise YamlError(str(exc), source) from None
    finally:
        loader.dispose()


def _describe(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "invalid YAML"
    if "could not determine a constructor for the tag" in problem:
        tag = problem.split("'")[1] if "'" in problem else "?"
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        return f"tag {tag} is not allowed (only plain YAML data is accepted)"
    if exc.context and exc.problem:
        return f"{exc.problem} ({exc.context})"
    return problem


def load_documents(
    data: bytes | str, source: str = "<input>", limits: YamlLimits | None = None
) -> list[YamlDocument]:
    """Parse every document of a stream; errors are per document.

    A stream over the size cap or not in UTF-8 raises instead: no document of it is read.
    """
    limits = limits or YamlLimits()
    text = _decode(data, source, limits)
    try:
        return _parse_stream(text, source, limits)
    except YamlError:
        pass  # find which documents are broken, and keep the others
    documents: list[YamlDocument] = []
    for first_line, chunk in _split_documents(text):
        try:
            parsed = _parse_chunk(chunk, first_line, source, limits)
        except YamlError as error:
            documents.append(YamlDocument(None, first_line + 1, error))
            continue
        if parsed is not None and parsed[0] is not None:
            documents.append(YamlDocument(*parsed))
    return documents


def _parse_stream(text: str, source: str, limits: YamlLimits) -> list[YamlDocument]:
    """The fast path: the whole stream in one parser, when every document is valid."""
    loader = _Loader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _check_shape(node, source, limits)
            data = loader.construct_document(node)
            if data is not None:  # empty documents are skipped, as Backstage does
                documents.append(YamlDocument(data, node.start_mark.line + 1))
    except yaml.YAMLError:
        raise YamlError("stream has an invalid document", source) from None
    finally:
        loader.dispose()
    return documents


def load_document(
    data: bytes | str, source: str = "<input>", limits: YamlLimits | None = None
) -> Any:
    """Parse a single-document stream, raising :class:`YamlError` on any problem."""
    documents = load_documents(data, source, limits)
    for document in documents:
        if document.error:
            raise document.error
    if len(documents) > 1:
        raise YamlError("expected one document, found several", source, documents[1].line)
    return documents[0].data if documents else None


def dump(data: Any) -> str:
    """Serialise plain data as block-style YAML, keys in their given order."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(
        data, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
