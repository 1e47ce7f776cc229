"""GitHub Actions' expression language, for ``${{ ... }}`` in ``.pavedroad/pipeline.yaml``.

Pipeline files are modelled on GitHub Actions workflows, so their expressions behave as
GitHub documents them ("Evaluate expressions in workflows and actions", "Contexts"):

* literals ``null``, ``true``, ``false``, numbers as JavaScript's ``Number()`` reads them
  (``711``, ``-9.2``, ``0xff``, ``-2.99e-2``, ``NaN``, ``Infinity``) and ``'single-quoted'``
  strings with ``''`` for a quote;
* context access ``github.ref``, ``matrix['python-version']``, ``steps.build.outputs.v``;
  names and keys are case-insensitive, a missing key is ``null``, and ``*`` filters an
  array or object into a list (``github.event.commits.*.message``);
* operators, from tightest to loosest: ``( )``, ``[ ]`` and ``.``, ``!``,
  ``< <= > >=``, ``== !=``, ``&&``, ``||``.  Comparisons coerce loosely (null and booleans
  to numbers, strings to numbers when compared with one, ``NaN`` equal to nothing) and
  compare strings case-insensitively; ``&&`` and ``||`` return one of their operands;
* the functions ``contains``, ``startsWith``, ``endsWith``, ``format``, ``join``, ``toJSON``,
  ``fromJSON``, ``hashFiles``, ``case`` and the status functions ``success``, ``always``,
  ``cancelled``, ``failure`` (names case-insensitive).

Nothing here runs Python: text is tokenized and parsed by hand and the tree is walked.
Expression length, nesting depth, the size of every string built (``format``, ``join``,
``toJSON``, interpolation) and the time one evaluation takes are bounded by
:class:`ExpressionLimits`; breaking a limit, bad syntax or a failing function raise
:class:`ExpressionError`, whose detail names the column.

Where this differs from GitHub, on purpose: an object or array turned into text (in
``${{ }}`` inside a longer string, ``format``, ``join``) becomes its ``toJSON`` form, where
GitHub writes ``Object`` or ``Array``; numbers become text as JavaScript writes them
(shortest round-trip form) rather than rounded to 15 digits; values nested more than 200
levels (or containing themselves) cannot become JSON; ``format`` placeholders are exactly
``{N}``; a trailing comma in a call is refused.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from pavedroad.core.errors import InputError

__all__ = [
    "KNOWN_CONTEXTS",
    "STATUS_FUNCTIONS",
    "ExpressionError",
    "ExpressionLimits",
    "Functions",
    "JobStatus",
    "StatusFunctions",
    "check",
    "evaluate",
    "evaluate_condition",
    "interpolate",
    "render_value",
    "to_string",
    "truthy",
]

#: The contexts GitHub Actions defines; :func:`check` accepts these names by default.
KNOWN_CONTEXTS: tuple[str, ...] = (
    "env",
    "github",
    "inputs",
    "job",
    "jobs",
    "matrix",
    "needs",
    "runner",
    "secrets",
    "steps",
    "strategy",
    "vars",
)
#: Functions whose presence in an ``if:`` turns off the implied ``success() &&``.
STATUS_FUNCTIONS: frozenset[str] = frozenset({"always", "cancelled", "failure", "success"})

_MAX_ARGUMENTS = 255  # GitHub's limit on a function's arguments
_MAX_JSON_DEPTH = 200  # deeper values (or values that contain themselves) are refused as JSON
_MAX_PROBLEMS = 50  # check() stops there: a text with thousands of errors needs no more
_CACHE_TEXT_LIMIT = 4096  # longer texts are parsed every time rather than kept in the cache


class ExpressionError(InputError):
    """An expression is malformed, breaks a limit or cannot be evaluated.

    ``line`` and ``column`` (1-based, in the text given) say where, when known; they are
    part of the problem+json body too.
    """

    title = "Expression error"
    type_slug = "expression-error"

    def __init__(self, detail: str, *, line: int | None = None, column: int | None = None):
        where = {"line": line, "column": column} if column is not None else {}
        super().__init__(detail, **where)
        self.line = line
        self.column = column


@dataclass(frozen=True)
class ExpressionLimits:
    """How long one expression may be (GitHub's own limit by default), how deeply it may
    nest (GitHub's too), how many characters any string it builds may have, and how long
    one evaluation may take (a text can repeat costly work on large context values)."""

    max_length: int = 21_000
    max_depth: int = 50
    max_value_size: int = 1_000_000
    max_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.max_length < 1 or self.max_value_size < 1 or self.max_seconds <= 0:
            raise ValueError("expression limits must be positive")
        if not 1 <= self.max_depth <= 100:
            raise ValueError("max_depth must be between 1 and 100 (parsing is recursive)")


class StatusFunctions(Protocol):
    """What ``success()``, ``failure()`` and ``cancelled()`` report (``always()`` is true)."""

    def success(self) -> bool: ...

    def failure(self) -> bool: ...

    def cancelled(self) -> bool: ...


class JobStatus(StrEnum):
    """A job's status so far; the simplest :class:`StatusFunctions`."""

    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"

    def success(self) -> bool:
        return self is JobStatus.SUCCESS

    def failure(self) -> bool:
        return self is JobStatus.FAILURE

    def cancelled(self) -> bool:
        return self is JobStatus.CANCELLED


@dataclass(frozen=True)
class Functions:
    """What the caller supplies to functions that depend on where they run.

    ``status`` answers the status functions (only conditions have one); ``hash_files``
    receives ``hashFiles``' patterns and returns the hash (``''`` when nothing matches).
    """

    status: StatusFunctions | None = None
    hash_files: Callable[[Sequence[str]], str] | None = None


_NO_FUNCTIONS = Functions()
_DEFAULT_LIMITS = ExpressionLimits()


# ---------------------------------------------------------------------------- values

_NULL, _BOOLEAN, _NUMBER, _STRING, _ARRAY, _OBJECT = range(6)
_MISSING: Any = object()
_JS_SPACE = "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"  # noqa: E501
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_PREFIXED = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_BASES = {"x": 16, "o": 8, "b": 2}


class _Filtered(list[Any]):
    """The list a ``*`` filter yields: further ``.key`` / ``[i]`` apply to every item."""


class _TooLarge(Exception):
    """A string being built went over ``max_value_size``."""


class _TooDeep(Exception):
    """A value is nested deeper than JSON output allows, or contains itself."""


def _kind(value: Any) -> int:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _BOOLEAN
    if isinstance(value, int | float):
        return _NUMBER
    if isinstance(value, str):
        return _STRING
    if isinstance(value, list | tuple):
        return _ARRAY
    if isinstance(value, Mapping):
        return _OBJECT
    raise ExpressionError(
        f"A value of type {type(value).__name__} cannot be used in an expression; contexts "
        "hold only null, booleans, numbers, strings, arrays and objects"
    )


def truthy(value: Any) -> bool:
    """GitHub's truthiness: ``false``, ``0``, ``-0``, ``NaN``, ``''`` and ``null`` are false."""
    kind = _kind(value)
    if kind == _NULL:
        return False
    if kind in (_BOOLEAN, _STRING):
        return bool(value)
    if kind == _NUMBER:
        return bool(value) and value == value  # NaN is the one value unequal to itself
    return True


def _js_number(text: str) -> float:
    """What JavaScript's ``Number(text)`` gives: GitHub's string-to-number conversion."""
    text = text.strip(_JS_SPACE)
    if not text:
        return 0.0
    if _DECIMAL.fullmatch(text):
        if text.endswith("Infinity"):
            return -math.inf if text.startswith("-") else math.inf
        return float(text)
    if _PREFIXED.fullmatch(text):
        try:
            return float(int(text[2:], _BASES[text[1].lower()]))
        except OverflowError:
            return math.inf
    return math.nan


def _to_number(value: Any) -> int | float:
    kind = _kind(value)
    if kind in (_NULL, _BOOLEAN):
        return 1 if value else 0
    if kind == _NUMBER:
        return value  # type: ignore[no-any-return]
    if kind == _STRING:
        return _js_number(value)
    return math.nan


def _literal_number(value: float) -> int | float:
    """Integral literals evaluate to Python ints (``711`` rather than ``711.0``)."""
    if value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _number_to_string(value: int | float) -> str:
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than Python turns into text; JavaScript says this
            return "Infinity" if value > 0 else "-Infinity"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return _js_float_to_string(value)


def _js_float_to_string(value: float) -> str:
    """JavaScript's ``Number.prototype.toString`` from Python's shortest round-trip digits."""
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits, k = stripped, len(stripped)
    n = exponent + k  # the decimal point sits after the n-th digit
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def to_string(value: Any, *, limit: int = _DEFAULT_LIMITS.max_value_size) -> str:
    """A value as ``${{ }}`` writes it into text: ``null`` as ``''``, booleans as ``true`` and
    ``false``, numbers as JavaScript writes them, arrays and objects as ``toJSON`` does."""
    kind = _kind(value)
    if kind == _NULL:
        return ""
    if kind == _BOOLEAN:
        return "true" if value else "false"
    if kind == _NUMBER:
        return _number_to_string(value)
    if kind == _STRING:
        return value  # type: ignore[no-any-return]
    try:
        return _to_json(value, limit)
    except _TooLarge:
        raise ExpressionError(f"A value is longer than {limit} characters as text") from None
    except _TooDeep:
        raise ExpressionError(_TOO_DEEP_JSON) from None


_TOO_DEEP_JSON = f"A value nests more than {_MAX_JSON_DEPTH} levels deep (or contains itself)"


def _to_json(value: Any, limit: int) -> str:
    """``JSON.stringify(value, null, '  ')``, stopped as soon as it grows over ``limit``."""
    parts: list[str] = []
    size = 0

    def emit(text: str) -> None:
        nonlocal size
        size += len(text)
        if size > limit:
            raise _TooLarge
        parts.append(text)

    def write(item: Any, level: int) -> None:
        if level > _MAX_JSON_DEPTH:
            raise _TooDeep
        kind = _kind(item)
        if kind == _STRING:
            if size + len(item) > limit:
                raise _TooLarge
            emit(json.dumps(item, ensure_ascii=False))
        elif kind == _NUMBER:
            finite = isinstance(item, int) or math.isfinite(item)
            emit(_number_to_string(item) if finite else "null")
        elif kind in (_NULL, _BOOLEAN):
            emit(to_string(item) or "null")
        elif not item:
            emit("[]" if kind == _ARRAY else "{}")
        else:
            inner = "\n" + "  " * (level + 1)
            emit("[" if kind == _ARRAY else "{")
            pairs = enumerate(item) if kind == _ARRAY else enumerate(item.items())
            for index, entry in pairs:
                emit("," + inner if index else inner)
                if kind == _OBJECT:
                    emit(json.dumps(str(entry[0]), ensure_ascii=False) + ": ")
                    entry = entry[1]
                write(entry, level + 1)
            emit("\n" + "  " * level + ("]" if kind == _ARRAY else "}"))

    write(value, 0)
    return "".join(parts)


def _bounded_join(pieces: Iterable[str], limit: int) -> str:
    parts: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > limit:
            raise _TooLarge
        parts.append(piece)
    return "".join(parts)


_DOTLESS_I = "\u0131"


def _fold(text: str) -> str:
    """Upper-case for case-insensitive comparison, leaving the dotless i (U+0131) alone as
    GitHub does."""
    if _DOTLESS_I not in text:
        return text.upper()
    return _DOTLESS_I.join(part.upper() for part in text.split(_DOTLESS_I))


def _lookup(mapping: Mapping[Any, Any], key: str, default: Any = None) -> Any:
    """``mapping[key]``, matching keys case-insensitively as GitHub's dictionaries do."""
    if key in mapping:
        return mapping[key]
    folded = _fold(key)
    for name, value in mapping.items():
        if isinstance(name, str) and _fold(name) == folded:
            return value
    return default


def _coerce(left: Any, right: Any) -> tuple[Any, int, Any, int]:
    """GitHub's loose coercion: like JavaScript's ``==`` without objects to primitives."""
    left_kind, right_kind = _kind(left), _kind(right)
    while left_kind != right_kind:
        # A string meeting a number, or a null or boolean meeting anything, becomes a number
        # (the left one first); arrays and objects are never converted.
        if (left_kind == _STRING and right_kind == _NUMBER) or left_kind in (_NULL, _BOOLEAN):
            left, left_kind = _to_number(left), _NUMBER
        elif right_kind in (_STRING, _NULL, _BOOLEAN) and (
            left_kind == _NUMBER or right_kind != _STRING
        ):
            right, right_kind = _to_number(right), _NUMBER
        else:
            break
    return left, left_kind, right, right_kind


def _equals(left: Any, right: Any) -> bool:
    left, kind, right, right_kind = _coerce(left, right)
    if kind != right_kind:
        return False
    if kind == _NULL:
        return True
    if kind in (_NUMBER, _BOOLEAN):
        return bool(left == right)  # NaN equals nothing, itself included
    if kind == _STRING:
        if left.isascii() and right.isascii() and len(left) != len(right):
            return False  # only non-ASCII text changes length when upper-cased (ß -> SS)
        return _fold(left) == _fold(right)
    return left is right  # arrays and objects: the same instance only


def _greater(left: Any, right: Any) -> bool:
    left, kind, right, right_kind = _coerce(left, right)
    if kind != right_kind:
        return False
    if kind in (_NUMBER, _BOOLEAN):
        return bool(left > right)
    if kind == _STRING:
        return _fold(left) > _fold(right)
    return False


def _less(left: Any, right: Any) -> bool:
    return _greater(right, left)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equals,
    "!=": lambda a, b: not _equals(a, b),
    ">": _greater,
    "<": _less,
    ">=": lambda a, b: _equals(a, b) or _greater(a, b),
    "<=": lambda a, b: _equals(a, b) or _less(a, b),
}


def _index_key(key: Any) -> tuple[str | None, int | None]:
    """The object key and the array index an index value stands for (either may be None)."""
    as_text = to_string(key) if _kind(key) < _ARRAY else None
    number = _to_number(key)
    if isinstance(number, int):
        return as_text, number if number >= 0 else None
    if math.isfinite(number) and number >= 0:
        return as_text, int(number)
    return as_text, None


def _access(target: Any, key: Any) -> Any:
    kind = _kind(target)
    name, index = _index_key(key)
    if kind == _OBJECT:
        return _lookup(target, name) if name is not None else None
    if kind == _ARRAY and index is not None and index < len(target):
        return target[index]
    return None


def _filter_access(items: _Filtered, key: Any) -> _Filtered:
    """``.key`` or ``[i]`` after a ``*``: applied to every item, missing ones left out."""
    name, index = _index_key(key)
    result = _Filtered()
    for item in items:
        kind = _kind(item)
        if kind == _OBJECT and name is not None:
            value = _lookup(item, name, _MISSING)
            if value is not _MISSING:
                result.append(value)
        elif kind == _ARRAY and index is not None and index < len(item):
            result.append(item[index])
    return result


def _star(target: Any) -> _Filtered:
    if isinstance(target, _Filtered):
        result = _Filtered()
        for item in target:
            kind = _kind(item)
            if kind == _ARRAY:
                result.extend(item)
            elif kind == _OBJECT:
                result.extend(item.values())
        return result
    kind = _kind(target)
    if kind == _ARRAY:
        return _Filtered(target)
    if kind == _OBJECT:
        return _Filtered(target.values())
    return _Filtered()


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, _Filtered) else value


# ---------------------------------------------------------------------------- lexer


class _Problem(Exception):
    """A syntax problem at an offset of the text being parsed."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _Token(NamedTuple):
    kind: str  # the operator itself, or number/string/ident/true/false/null/eof
    start: int
    end: int
    value: Any = None


_SKIPPED = " \t\r\n"
_SINGLE = frozenset("()[],*")
_OPERATORS = ("!=", "==", "<=", ">=", "&&", "||", "!", "<", ">")
_WORD = re.compile(r"[^()\[\],.!<>=&|\s]*")
_NUMBER_WORD = re.compile(r"[^()\[\],!<>=&|\s]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_KEYWORDS: dict[str, tuple[str, Any]] = {
    "true": ("true", True),
    "false": ("false", False),
    "null": ("null", None),
    "NaN": ("number", math.nan),
    "Infinity": ("number", math.inf),
}
_DEREFERENCEABLE = frozenset({"ident", "]", ")", "*"})


def _lex(source: str, start: int, end: int) -> list[_Token]:
    tokens: list[_Token] = []
    at = start
    while at < end:
        char = source[at]
        if char in _SKIPPED:
            at += 1
            continue
        previous = tokens[-1].kind if tokens else "eof"
        if char in _SINGLE:
            token = _Token(char, at, at + 1)
        elif char == "." and previous in _DEREFERENCEABLE:
            token = _Token(".", at, at + 1)
        elif char in ".+-" or "0" <= char <= "9":
            token = _lex_number(source, at, end)
        elif char == "'":
            token = _lex_string(source, at, end)
        elif char in "!<>=&|":
            token = _lex_operator(source, at, end)
        else:
            token = _lex_word(source, at, end, after_dot=previous == ".")
        tokens.append(token)
        at = token.end
    tokens.append(_Token("eof", end, end))
    return tokens


def _unexpected(lexeme: str, offset: int, hint: str = "") -> _Problem:
    shown = lexeme if len(lexeme) <= 40 else lexeme[:40] + "…"
    return _Problem(f"Unexpected symbol: '{shown}'{hint}", offset)


def _lex_number(source: str, start: int, end: int) -> _Token:
    match = _NUMBER_WORD.match(source, start, end)
    stop = match.end() if match else start + 1
    lexeme = source[start:stop] or source[start]
    value = _js_number(lexeme)
    if math.isnan(value):
        raise _unexpected(lexeme, start)
    return _Token("number", start, start + len(lexeme), _literal_number(value))


def _lex_string(source: str, start: int, end: int) -> _Token:
    at = start + 1
    while True:
        quote = source.find("'", at, end)
        if quote < 0:
            raise _Problem("Unterminated string: a quote (') opens it and none closes it", start)
        if quote + 1 < end and source[quote + 1] == "'":
            at = quote + 2
            continue
        value = source[start + 1 : quote].replace("''", "'")
        return _Token("string", start, quote + 1, value)


def _lex_operator(source: str, start: int, end: int) -> _Token:
    for operator in _OPERATORS:
        if source.startswith(operator, start, end):
            return _Token(operator, start, start + len(operator))
    match = _WORD.match(source, start + 1, end)
    lexeme = source[start : match.end() if match else start + 1]
    raise _unexpected(lexeme, start, " (operators are == != < <= > >= && || and !)")


def _lex_word(source: str, start: int, end: int, *, after_dot: bool) -> _Token:
    match = _WORD.match(source, start, end)
    lexeme = source[start : match.end() if match else start] or source[start]
    stop = start + len(lexeme)
    if not after_dot and lexeme in _KEYWORDS:
        kind, value = _KEYWORDS[lexeme]
        return _Token(kind, start, stop, value)
    if _IDENTIFIER.fullmatch(lexeme):
        return _Token("ident", start, stop, lexeme)
    hint = " (strings use single quotes)" if lexeme.startswith('"') else ""
    raise _unexpected(lexeme, start, hint)


# ---------------------------------------------------------------------------- syntax tree


class _Node:
    __slots__ = ()

    def evaluate(self, ev: _Evaluator) -> Any:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Literal(_Node):
    value: Any

    def evaluate(self, ev: _Evaluator) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class _ContextRef(_Node):
    name: str

    def evaluate(self, ev: _Evaluator) -> Any:
        return _lookup(ev.contexts, self.name)


@dataclass(frozen=True, slots=True)
class _Index(_Node):
    target: _Node
    key: _Node | None  # None for ``*``

    def evaluate(self, ev: _Evaluator) -> Any:
        target = self.target.evaluate(ev)
        ev.tick(0)
        if self.key is None:
            return _star(target)
        key = self.key.evaluate(ev)
        if isinstance(target, _Filtered):
            return _filter_access(target, key)
        return _access(target, key)


@dataclass(frozen=True, slots=True)
class _Not(_Node):
    operand: _Node

    def evaluate(self, ev: _Evaluator) -> Any:
        return not truthy(self.operand.evaluate(ev))


@dataclass(frozen=True, slots=True)
class _Compare(_Node):
    operator: str
    left: _Node
    right: _Node

    def evaluate(self, ev: _Evaluator) -> Any:
        left, right = self.left.evaluate(ev), self.right.evaluate(ev)
        ev.tick(0)
        return _COMPARISONS[self.operator](left, right)


@dataclass(frozen=True, slots=True)
class _Logical(_Node):
    operator: str  # && or ||
    operands: tuple[_Node, ...]

    def evaluate(self, ev: _Evaluator) -> Any:
        stop_when = self.operator == "||"
        result = None
        for operand in self.operands:
            result = operand.evaluate(ev)
            if truthy(result) is stop_when:
                break
        return result


@dataclass(frozen=True, slots=True)
class _Call(_Node):
    name: str  # as written
    args: tuple[_Node, ...]
    offset: int

    def evaluate(self, ev: _Evaluator) -> Any:
        spec = _FUNCTIONS[self.name.lower()]
        args = [arg.evaluate(ev) for arg in self.args]
        ev.tick(self.offset)
        return spec.call(ev, self, args)


@dataclass(frozen=True, slots=True)
class _Template(_Node):
    """Text with ``${{ }}`` inside: GitHub's ``format('text {0}', expression)``."""

    parts: tuple[str | _Node, ...]

    def evaluate(self, ev: _Evaluator) -> Any:
        limit = ev.limits.max_value_size
        try:
            return _bounded_join(self._pieces(ev), limit)
        except _TooLarge:
            raise ev.error(f"The text would be longer than {limit} characters", 0) from None

    def _pieces(self, ev: _Evaluator) -> Iterator[str]:
        for part in self.parts:
            if isinstance(part, str):
                yield part
            else:
                yield ev.text(part.evaluate(ev), 0)
                ev.tick(0)


# ---------------------------------------------------------------------------- parser


@lru_cache(maxsize=64)
def _folded(names: frozenset[str]) -> frozenset[str]:
    return frozenset(_fold(name) for name in names)


class _Parser:
    """Recursive descent over GitHub's grammar, counting depth as GitHub does."""

    def __init__(
        self, source: str, start: int, end: int, names: frozenset[str] | None, max_depth: int
    ) -> None:
        self.source = source
        self.tokens = _lex(source, start, end)
        self.names = names
        self.folded_names = None if names is None else _folded(names)
        self.max_depth = max_depth
        self.position = 0
        self.depth = 0
        self.uses_status = False
        self.start = start

    def parse(self) -> _Node:
        if self._peek().kind == "eof":
            raise _Problem("Expected an expression, found nothing", self.start)
        node = self._expression()
        token = self._peek()
        if token.kind != "eof":
            raise self._unexpected(token)
        return node

    def _peek(self) -> _Token:
        return self.tokens[self.position]

    def _next(self) -> _Token:
        token = self.tokens[self.position]
        if token.kind != "eof":
            self.position += 1
        return token

    def _match(self, kind: str) -> bool:
        if self._peek().kind == kind:
            self.position += 1
            return True
        return False

    def _expect(self, kind: str) -> None:
        if not self._match(kind):
            raise self._unexpected(self._peek())

    def _unexpected(self, token: _Token) -> _Problem:
        if token.kind == "eof":
            return _Problem("Unexpected end of expression", token.start)
        return _unexpected(self.source[token.start : token.end], token.start)

    def _descend(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise _Problem(
                f"The expression nests deeper than {self.max_depth} levels", self._peek().start
            )

    def _expression(self) -> _Node:
        self._descend()
        try:
            return self._logical("||", self._and)
        finally:
            self.depth -= 1

    def _and(self) -> _Node:
        return self._logical("&&", self._equality)

    def _logical(self, operator: str, operand: Callable[[], _Node]) -> _Node:
        first = operand()
        if self._peek().kind != operator:
            return first
        self._descend()
        try:
            operands = [first]
            while self._match(operator):
                operands.append(operand())
            return _Logical(operator, tuple(operands))
        finally:
            self.depth -= 1

    def _equality(self) -> _Node:
        return self._binary(("==", "!="), self._comparison)

    def _comparison(self) -> _Node:
        return self._binary(("<", "<=", ">", ">="), self._unary)

    def _binary(self, operators: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        node = operand()
        entered = 0
        try:
            while self._peek().kind in operators:
                operator = self._next().kind
                self._descend()
                entered += 1
                node = _Compare(operator, node, operand())
        finally:
            self.depth -= entered
        return node

    def _unary(self) -> _Node:
        if not self._match("!"):
            return self._postfix()
        self._descend()
        try:
            return _Not(self._unary())
        finally:
            self.depth -= 1

    def _postfix(self) -> _Node:
        node, indexable = self._primary()
        entered = 0
        try:
            while indexable and self._peek().kind in ("[", "."):
                self._descend()
                entered += 1
                node = _Index(node, self._index_key())
        finally:
            self.depth -= entered
        return node

    def _index_key(self) -> _Node | None:
        if self._next().kind == "[":
            key = None if self._match("*") else self._expression()
            self._expect("]")
            return key
        token = self._next()
        if token.kind == "ident":
            return _Literal(token.value)
        if token.kind == "*":
            return None
        raise self._unexpected(token)

    def _primary(self) -> tuple[_Node, bool]:
        token = self._next()
        if token.kind in ("true", "false", "null", "number", "string"):
            return _Literal(token.value), False
        if token.kind == "(":
            node = self._expression()
            self._expect(")")
            return node, True
        if token.kind == "ident":
            if self._peek().kind == "(":
                return self._call(token), True
            return self._context(token), True
        raise self._unexpected(token)

    def _context(self, token: _Token) -> _Node:
        if self.folded_names is not None and _fold(token.value) not in self.folded_names:
            known = ", ".join(sorted(self.names or ())) or "none"
            raise _Problem(
                f"Unrecognized named-value: '{token.value}' (known contexts: {known})",
                token.start,
            )
        return _ContextRef(token.value)

    def _call(self, token: _Token) -> _Node:
        self._expect("(")
        args: list[_Node] = []
        if not self._match(")"):
            while True:
                args.append(self._expression())
                if self._match(")"):
                    break
                self._expect(",")
        self._check_call(token, len(args))
        return _Call(token.value, tuple(args), token.start)

    def _check_call(self, token: _Token, count: int) -> None:
        name = token.value.lower()
        spec = _FUNCTIONS.get(name)
        if spec is None:
            known = ", ".join(sorted(s.name for s in _FUNCTIONS.values()))
            raise _Problem(
                f"Unrecognized function: '{token.value}' (known functions: {known})", token.start
            )
        if count < spec.min_args:
            raise _Problem(
                f"Too few parameters supplied: '{token.value}' takes at least {spec.min_args}",
                token.start,
            )
        if count > spec.max_args:
            raise _Problem(
                f"Too many parameters supplied: '{token.value}' takes at most {spec.max_args}",
                token.start,
            )
        if name == "case" and count % 2 == 0:
            raise _Problem(
                "Even number of parameters supplied: 'case' takes pairs of condition and "
                "value, then a default",
                token.start,
            )
        if name in STATUS_FUNCTIONS:
            self.uses_status = True


# ---------------------------------------------------------------------------- evaluation


class _Evaluator:
    """What one evaluation carries: the text (for error positions), the caller's contexts,
    functions and limits, and its deadline."""

    def __init__(
        self,
        source: str,
        contexts: Mapping[str, Any],
        functions: Functions,
        limits: ExpressionLimits,
    ) -> None:
        self.source = source
        self.contexts = contexts
        self.functions = functions
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds

    def tick(self, offset: int) -> None:
        """Stop once the evaluation has run longer than ``max_seconds``."""
        if time.monotonic() > self.deadline:
            raise self.error(f"Evaluating took longer than {self.limits.max_seconds:g} s", offset)

    def error(self, message: str, offset: int) -> ExpressionError:
        return _error(self.source, offset, message)

    def text(self, value: Any, offset: int, what: str = "The text") -> str:
        """``to_string`` within the value limit, its errors placed at ``offset``."""
        limit = self.limits.max_value_size
        try:
            if _kind(value) >= _ARRAY:
                return _to_json(value, limit)
            return to_string(value)
        except _TooLarge:
            raise self.error(f"{what} would be longer than {limit} characters", offset) from None
        except _TooDeep:
            raise self.error(_TOO_DEEP_JSON, offset) from None

    def status(self, call: _Call) -> StatusFunctions:
        if self.functions.status is None:
            raise self.error(
                f"{call.name}() is only available in if: conditions, where the job's status "
                "is known",
                call.offset,
            )
        return self.functions.status


# ---------------------------------------------------------------------------- functions

_FunctionBody = Callable[[_Evaluator, _Call, list[Any]], Any]


class _FunctionSpec(NamedTuple):
    name: str
    min_args: int
    max_args: int
    call: _FunctionBody


def _is_primitive(value: Any) -> bool:
    return _kind(value) < _ARRAY


def _contains(ev: _Evaluator, call: _Call, args: list[Any]) -> bool:
    search, item = args
    if _is_primitive(search):
        return _is_primitive(item) and _fold(to_string(item)) in _fold(to_string(search))
    if _kind(search) == _ARRAY:
        return any(_equals(item, element) for element in search)
    return False


def _affix_test(test: Callable[[str, str], bool]) -> _FunctionBody:
    def body(ev: _Evaluator, call: _Call, args: list[Any]) -> bool:
        text, affix = args
        if not (_is_primitive(text) and _is_primitive(affix)):
            return False
        return test(_fold(to_string(text)), _fold(to_string(affix)))

    return body


def _format(ev: _Evaluator, call: _Call, args: list[Any]) -> str:
    template = ev.text(args[0], call.offset, "format()'s result")
    limit = ev.limits.max_value_size
    try:
        return _bounded_join(_format_pieces(ev, call, template, args[1:]), limit)
    except _TooLarge:
        raise ev.error(
            f"format()'s result would be longer than {limit} characters", call.offset
        ) from None


def _format_pieces(ev: _Evaluator, call: _Call, template: str, values: list[Any]) -> Iterator[str]:
    texts: dict[int, str] = {}
    shown = template if len(template) <= 80 else template[:80] + "…"
    at, left, right = 0, template.find("{"), template.find("}")
    while at < len(template):
        # A brace found earlier stays valid until passed (and -1 stays -1): linear time.
        if 0 <= left < at:
            left = template.find("{", at)
        if 0 <= right < at:
            right = template.find("}", at)
        if left >= 0 and (right < 0 or left < right):
            if template.startswith("{", left + 1):
                yield template[at : left + 1]
                at = left + 2
                continue
            index = _format_index(template, left, right)
            if index is None:
                raise ev.error(f"format() got an invalid format string: '{shown}'", call.offset)
            if index >= len(values):
                raise ev.error(
                    f"format() references more arguments than were supplied: '{shown}'",
                    call.offset,
                )
            if index not in texts:
                texts[index] = ev.text(values[index], call.offset, "format()'s result")
            yield template[at:left]
            yield texts[index]
            at = right + 1
        elif right >= 0:
            if not template.startswith("}", right + 1):
                raise ev.error(f"format() got an invalid format string: '{shown}'", call.offset)
            yield template[at : right + 1]
            at = right + 2
        else:
            yield template[at:]
            break


def _format_index(template: str, left: int, right: int) -> int | None:
    """The argument number in ``{N}``, or None if the braces hold anything else."""
    digits = template[left + 1 : right] if right > left else ""
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    return int(digits) if len(digits) <= 4 else _MAX_ARGUMENTS


def _join(ev: _Evaluator, call: _Call, args: list[Any]) -> str:
    items = args[0]
    if _is_primitive(items):
        return to_string(items)
    if _kind(items) != _ARRAY:
        return ""
    separator = to_string(args[1]) if len(args) > 1 and _is_primitive(args[1]) else ","
    limit = ev.limits.max_value_size

    def pieces() -> Iterator[str]:
        for index, item in enumerate(items):
            if index:
                yield separator
            yield ev.text(item, call.offset, "join()'s result")

    try:
        return _bounded_join(pieces(), limit)
    except _TooLarge:
        raise ev.error(
            f"join()'s result would be longer than {limit} characters", call.offset
        ) from None


def _to_json_function(ev: _Evaluator, call: _Call, args: list[Any]) -> str:
    limit = ev.limits.max_value_size
    try:
        return _to_json(args[0], limit)
    except _TooLarge:
        raise ev.error(
            f"toJSON()'s result would be longer than {limit} characters", call.offset
        ) from None
    except _TooDeep:
        raise ev.error(_TOO_DEEP_JSON, call.offset) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _from_json(ev: _Evaluator, call: _Call, args: list[Any]) -> Any:
    text = ev.text(args[0], call.offset, "fromJSON()'s argument")
    if not text.strip():
        raise ev.error("fromJSON() got an empty string; it needs JSON", call.offset)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ev.error("fromJSON() got JSON nested too deeply", call.offset) from None
    except ValueError as exc:
        raise ev.error(f"fromJSON() got invalid JSON: {exc}", call.offset) from None


def _hash_files(ev: _Evaluator, call: _Call, args: list[Any]) -> str:
    if ev.functions.hash_files is None:
        raise ev.error(
            "hashFiles() is only available in steps, where there is a workspace to hash",
            call.offset,
        )
    patterns = [ev.text(arg, call.offset, "hashFiles()'s pattern") for arg in args]
    return ev.functions.hash_files(patterns)


def _case(ev: _Evaluator, call: _Call, args: list[Any]) -> Any:
    for index in range(0, len(args) - 1, 2):
        if not isinstance(args[index], bool):
            raise ev.error(
                f"case() argument {index + 1} must be true or false, the condition of a pair",
                call.offset,
            )
        if args[index]:
            return args[index + 1]
    return args[-1]


def _status_function(answer: Callable[[StatusFunctions], bool]) -> _FunctionBody:
    def body(ev: _Evaluator, call: _Call, args: list[Any]) -> bool:
        return bool(answer(ev.status(call)))

    return body


_FUNCTIONS: dict[str, _FunctionSpec] = {
    spec.name.lower(): spec
    for spec in (
        _FunctionSpec("contains", 2, 2, _contains),
        _FunctionSpec("startsWith", 2, 2, _affix_test(str.startswith)),
        _FunctionSpec("endsWith", 2, 2, _affix_test(str.endswith)),
        _FunctionSpec("format", 1, _MAX_ARGUMENTS, _format),
        _FunctionSpec("join", 1, 2, _join),
        _FunctionSpec("toJSON", 1, 1, _to_json_function),
        _FunctionSpec("fromJSON", 1, 1, _from_json),
        _FunctionSpec("hashFiles", 1, _MAX_ARGUMENTS, _hash_files),
        _FunctionSpec("case", 3, _MAX_ARGUMENTS, _case),
        _FunctionSpec("success", 0, 0, _status_function(lambda s: s.success())),
        _FunctionSpec("failure", 0, 0, _status_function(lambda s: s.failure())),
        _FunctionSpec("cancelled", 0, 0, _status_function(lambda s: s.cancelled())),
        _FunctionSpec("always", 0, 0, lambda ev, call, args: True),
    )
}


# ---------------------------------------------------------------------------- parsing texts


def _error(source: str, offset: int, message: str) -> ExpressionError:
    """An error placed at ``offset`` of ``source``: the detail names the line (when the
    text has several) and column, and quotes the text around it."""
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset) + 1
    line_start = source.rfind("\n", 0, offset) + 1
    line_end = source.find("\n", offset)
    column = offset - line_start + 1
    text = source[line_start : line_end if line_end >= 0 else len(source)]
    if len(text) > 80:
        first = max(0, column - 40)
        text = ("…" if first else "") + text[first : first + 80] + "…"
    where = f"line {line}, column {column}" if "\n" in source else f"column {column}"
    return ExpressionError(f"{message}, at {where} of: {text}", line=line, column=column)


class _Parsed(NamedTuple):
    node: _Node | None  # None: an empty condition
    uses_status: bool
    lone: _Node | None  # the expression when the text is just one (its value keeps its type)

    @property
    def value_node(self) -> _Node | None:
        return self.lone or self.node


def _parse_range(
    source: str, start: int, end: int, names: frozenset[str] | None, limits: ExpressionLimits
) -> tuple[_Node, bool]:
    if end - start > limits.max_length:
        raise _error(
            source,
            start,
            f"The expression is {end - start} characters long, over the limit of "
            f"{limits.max_length}",
        )
    try:
        parser = _Parser(source, start, end, names, limits.max_depth)
        node = parser.parse()
    except _Problem as problem:
        raise _error(source, problem.offset, problem.message) from None
    except RecursionError:
        raise _error(source, start, "The expression nests too deeply") from None
    return node, parser.uses_status


def _closing_braces(text: str, start: int) -> int:
    """Where the ``}}`` closing an expression begins (``}}`` inside strings do not count)."""
    at = start
    close = text.find("}}", at)
    while close >= 0:
        quote = text.find("'", at, close)
        if quote < 0:
            return close
        at = text.find("'", quote + 1)
        if at < 0:
            return -1
        at += 1
        if close < at:
            close = text.find("}}", at)
    return -1


def _expression_spans(text: str) -> Iterator[tuple[int, int]]:
    """``(open, close)`` of each ``${{ ... }}``: the offsets of ``${{`` and of ``}}``."""
    at = 0
    while (opening := text.find("${{", at)) >= 0:
        closing = _closing_braces(text, opening + 3)
        if closing < 0:
            raise _error(text, opening, "The expression is not closed: '${{' has no '}}'")
        yield opening, closing
        at = closing + 2


def _check_text_size(text: str, limits: ExpressionLimits) -> None:
    if len(text) > limits.max_value_size:
        raise ExpressionError(
            f"The text is {len(text)} characters long, over the limit of {limits.max_value_size}"
        )


def _parse_template(text: str, names: frozenset[str] | None, limits: ExpressionLimits) -> _Parsed:
    _check_text_size(text, limits)
    parts: list[str | _Node] = []
    uses_status = False
    at = 0
    for opening, closing in _expression_spans(text):
        node, status = _parse_range(text, opening + 3, closing, names, limits)
        uses_status = uses_status or status
        if opening > at:
            parts.append(text[at:opening])
        parts.append(node)
        at = closing + 2
    if at < len(text):
        parts.append(text[at:])
    nodes = [part for part in parts if isinstance(part, _Node)]
    lone = len(nodes) == 1 and all(isinstance(p, _Node) or not p.strip() for p in parts)
    return _Parsed(_Template(tuple(parts)), uses_status, nodes[0] if lone else None)


def _parse_condition(text: str, names: frozenset[str] | None, limits: ExpressionLimits) -> _Parsed:
    if not text.strip():
        return _Parsed(None, False, None)
    if "${{" in text:
        return _parse_template(text, names, limits)
    node, uses_status = _parse_range(text, 0, len(text), names, limits)
    return _Parsed(node, uses_status, node)


@lru_cache(maxsize=512)
def _parse_cached(
    mode: str, text: str, names: frozenset[str] | None, limits: ExpressionLimits
) -> _Parsed:
    if mode == "expression":
        node, uses_status = _parse_range(text, 0, len(text), names, limits)
        return _Parsed(node, uses_status, node)
    if mode == "condition":
        return _parse_condition(text, names, limits)
    return _parse_template(text, names, limits)


def _parse(mode: str, text: str, names: frozenset[str], limits: ExpressionLimits) -> _Parsed:
    if len(text) <= _CACHE_TEXT_LIMIT:
        return _parse_cached(mode, text, names, limits)
    return _parse_cached.__wrapped__(mode, text, names, limits)


def _context_names(contexts: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(name for name in contexts if isinstance(name, str))


def _run(ev: _Evaluator, node: _Node) -> Any:
    try:
        return _plain(node.evaluate(ev))
    except RecursionError:
        raise ev.error("The expression nests too deeply to evaluate", 0) from None


# ---------------------------------------------------------------------------- public API


def evaluate(
    expression: str,
    contexts: Mapping[str, Any],
    functions: Functions | None = None,
    *,
    limits: ExpressionLimits = _DEFAULT_LIMITS,
) -> Any:
    """The value of a bare expression (no ``${{ }}``), e.g. ``github.ref == 'main'``.

    Top-level names must be keys of ``contexts``; a missing key below them is ``None``.
    Results are plain Python values (``None``, ``bool``, ``int``/``float``, ``str``, and
    the lists and mappings of the contexts or of ``fromJSON``).
    """
    parsed = _parse("expression", expression, _context_names(contexts), limits)
    assert parsed.node is not None
    ev = _Evaluator(expression, contexts, functions or _NO_FUNCTIONS, limits)
    return _run(ev, parsed.node)


def interpolate(
    text: str,
    contexts: Mapping[str, Any],
    functions: Functions | None = None,
    *,
    limits: ExpressionLimits = _DEFAULT_LIMITS,
) -> str:
    """``text`` with each ``${{ expression }}`` replaced by its value as text
    (see :func:`to_string`); text without ``${{`` comes back unchanged."""
    if "${{" not in text:
        _check_text_size(text, limits)
        return text
    parsed = _parse("template", text, _context_names(contexts), limits)
    assert parsed.node is not None
    ev = _Evaluator(text, contexts, functions or _NO_FUNCTIONS, limits)
    return str(_run(ev, parsed.node))


def render_value(
    text: str,
    contexts: Mapping[str, Any],
    functions: Functions | None = None,
    *,
    limits: ExpressionLimits = _DEFAULT_LIMITS,
) -> Any:
    """A YAML value as GitHub reads it: a text that is exactly one ``${{ expression }}``
    keeps the value's type (``matrix: ${{ fromJSON(...) }}`` gives a mapping); any other
    text is interpolated into a string."""
    if "${{" not in text:
        return interpolate(text, contexts, functions, limits=limits)
    parsed = _parse("template", text, _context_names(contexts), limits)
    assert parsed.value_node is not None
    ev = _Evaluator(text, contexts, functions or _NO_FUNCTIONS, limits)
    return _run(ev, parsed.value_node)


def evaluate_condition(
    text: str,
    contexts: Mapping[str, Any],
    functions: Functions | None = None,
    *,
    implicit_success: bool = True,
    limits: ExpressionLimits = _DEFAULT_LIMITS,
) -> bool:
    """Whether an ``if:`` holds.

    ``text`` is an expression with or without its ``${{ }}``; an empty one means
    ``success()``.  With ``implicit_success`` (GitHub's rule for jobs and steps) a
    condition calling none of ``success()``, ``failure()``, ``cancelled()``, ``always()``
    is read as ``success() && (condition)``, so ``functions.status`` must be given.
    As on GitHub, ``${{ a }} == 'b'`` (an expression and more text) is a non-empty string,
    so always true; :func:`check` with ``condition=True`` reports it.
    """
    parsed = _parse("condition", text, _context_names(contexts), limits)
    ev = _Evaluator(text, contexts, functions or _NO_FUNCTIONS, limits)
    if implicit_success and not parsed.uses_status:
        if ev.functions.status is None:
            raise ev.error(
                "The condition implies success(), which needs the job's status; none was given",
                0,
            )
        if not ev.functions.status.success():
            return False
    if parsed.value_node is None:
        return True
    return truthy(_run(ev, parsed.value_node))


def check(
    text: str,
    *,
    contexts: Iterable[str] | None = KNOWN_CONTEXTS,
    condition: bool = False,
    limits: ExpressionLimits = _DEFAULT_LIMITS,
) -> list[str]:
    """Syntax problems of every ``${{ }}`` in ``text``, without evaluating anything.

    Each problem names its line (for texts of several lines) and column in ``text``.
    Top-level names must be among ``contexts`` (GitHub's contexts by default; ``None``
    accepts any name).  With ``condition=True``, ``text`` is an ``if:``: a bare expression
    is parsed too, and an expression mixed with other text is reported as always true.
    After the first 50 problems the list ends with a note that it stopped.
    """
    names = None if contexts is None else frozenset(contexts)
    if condition and "${{" not in text:
        return _problems(_parse_condition, text, names, limits)
    problems: list[str] = []
    spans: list[tuple[int, int]] = []
    try:
        _check_text_size(text, limits)
        for opening, closing in _expression_spans(text):
            spans.append((opening, closing))
            problems += _problems(_parse_range, text, opening + 3, closing, names, limits)
            if len(problems) >= _MAX_PROBLEMS:
                problems.append(f"(stopped after {_MAX_PROBLEMS} problems)")
                return problems
    except ExpressionError as error:
        problems.append(error.detail)
    if condition and spans and not _is_single(text, spans):
        problems.append(
            _error(
                text,
                0,
                "The condition mixes ${{ }} with other text, so it is a non-empty string and "
                "always true; put the whole condition inside one ${{ }}",
            ).detail
        )
    return problems


def _problems(parse: Callable[..., object], *args: Any) -> list[str]:
    try:
        parse(*args)
    except ExpressionError as error:
        return [error.detail]
    return []


def _is_single(text: str, spans: list[tuple[int, int]]) -> bool:
    if len(spans) != 1:
        return False
    opening, closing = spans[0]
    return not text[:opening].strip() and not text[closing + 2 :].strip()
