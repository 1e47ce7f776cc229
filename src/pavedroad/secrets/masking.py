"""The one masking facility every log of the platform goes through.

A :class:`Masker` holds the secret values in scope and replaces every form of each of
them (plain, base64, URL-encoded, JSON-escaped, and each line of a multi-line value)
with :data:`MASK`. :class:`StreamMasker` does the same for output that arrives in
chunks, so a value split across two chunks is still masked. :class:`MaskingFormatter`
and :func:`install_log_masking` put a masker in front of :mod:`logging` handlers, and
:func:`process_masker` is the process-wide masker the secret store feeds.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_MASKED_LENGTH = 4

# Deeper prefix trees are matched by a flat longest-first alternation below this depth,
# which keeps the pattern within what the ``re`` parser handles without deep recursion.
_MAX_NESTING = 24


def forms(value: str) -> set[str]:
    """Every form of ``value`` that must not appear in a log.

    The plain value; base64 of its UTF-8 bytes (standard and URL-safe alphabets, with and
    without ``=`` padding); URL-encoded (``quote(value, safe="")`` and ``quote_plus``);
    JSON-escaped (the inside of ``json.dumps``, with and without ``ensure_ascii``). For a
    multi-line value, also each of its lines (without ``\\r``) and each form of each line,
    since tools often print such values (PEM keys, kubeconfigs) one line at a time.

    Forms shorter than :data:`MIN_MASKED_LENGTH` characters are left out: masking a
    one- or two-character secret would replace every occurrence of those characters in
    every log, making logs unreadable while hiding nothing an attacker could not guess.
    An empty value gives no forms.

    Not covered: base64 of the value as part of a longer base64 string (its encoding
    depends on the bytes before it), hex, and encodings this function does not list.
    """
    if not value:
        return set()
    found = _encodings(value)
    if "\n" in value:
        for line in value.split("\n"):
            found |= _encodings(line.strip("\r"))
    return {form for form in found if len(form) >= MIN_MASKED_LENGTH}


def _encodings(value: str) -> set[str]:
    if not value:
        return set()
    raw = _utf8(value)
    standard = base64.b64encode(raw).decode("ascii")
    urlsafe = base64.urlsafe_b64encode(raw).decode("ascii")
    return {
        value,
        standard,
        standard.rstrip("="),
        urlsafe,
        urlsafe.rstrip("="),
        quote(raw, safe=""),
        quote_plus(raw, safe=""),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }


def _utf8(value: str) -> bytes:
    # Values decoded with surrogateescape (environment, subprocess output) hold the
    # original bytes as lone surrogates; other lone surrogates are kept as encoded.
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _longest_first(words: Iterable[str]) -> str:
    """A pattern matching, at one position, the longest of ``words`` found there.

    The words are arranged as a prefix tree, so matching costs about the length of the
    text rather than the text times the number of words. Children of a node begin with
    different characters, so at most one can match; a greedy optional group tries the
    longer continuation before settling for the word that ends at the node.
    """
    return _subtree(sorted(set(words)), 0)


def _subtree(words: list[str], depth: int) -> str:
    optional = "" in words
    words = [word for word in words if word]
    if not words:
        return ""
    if depth >= _MAX_NESTING:
        branches = [re.escape(word) for word in sorted(words, key=lambda w: (-len(w), w))]
    else:
        branches = []
        for group in _by_first_character(words):
            prefix = _common_prefix(group)
            rest = [word[len(prefix) :] for word in group]
            branches.append(re.escape(prefix) + _subtree(rest, depth + 1))
    if len(branches) == 1 and not optional:
        return branches[0]
    return "(?:" + "|".join(branches) + ")" + ("?" if optional else "")


def _common_prefix(words: list[str]) -> str:
    first, last = min(words), max(words)
    for index, (a, b) in enumerate(zip(first, last, strict=False)):
        if a != b:
            return first[:index]
    return first


def _by_first_character(words: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for word in words:
        groups.setdefault(word[0], []).append(word)
    return list(groups.values())


@dataclass(frozen=True)
class _Compiled:
    pattern: re.Pattern[str] | None
    longest: int
    forms: frozenset[str] = frozenset()


class Masker:
    """Replaces every form of every value it was given with :data:`MASK`.

    Thread-safe: values may be added while other threads mask. The pattern is rebuilt
    lazily, on the first use after the set of forms changed.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._compiled: _Compiled | None = _Compiled(None, 0)
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        """Mask every form of ``value`` (see :func:`forms`) from now on."""
        new = forms(value)
        with self._lock:
            if new <= self._forms:
                return
            self._forms |= new
            self._compiled = None

    def mask(self, text: str) -> str:
        """``text`` with every occurrence of every form replaced by :data:`MASK`.

        Scans left to right; where several forms start at one position, the longest wins.
        """
        pattern = self._current().pattern
        return text if pattern is None else pattern.sub(MASK, text)

    def mask_bytes(self, data: bytes) -> bytes:
        """:meth:`mask` for raw output; bytes that are not UTF-8 come back unchanged."""
        return self.mask(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")

    @property
    def longest(self) -> int:
        """Length of the longest form, 0 if there is none."""
        return self._current().longest

    def __bool__(self) -> bool:
        return self._current().pattern is not None

    def stream(self) -> StreamMasker:
        """A :class:`StreamMasker` for output arriving in chunks."""
        return StreamMasker(self)

    def _current(self) -> _Compiled:
        compiled = self._compiled
        if compiled is not None:
            return compiled
        with self._lock:
            if self._compiled is None:
                self._compiled = _compile(self._forms)
            return self._compiled


def _compile(all_forms: set[str]) -> _Compiled:
    if not all_forms:
        return _Compiled(None, 0)
    pattern = re.compile(_longest_first(all_forms))
    return _Compiled(pattern, max(map(len, all_forms)), frozenset(all_forms))


def _first_possible_start(text: str, start: int, forms: frozenset[str]) -> int:
    """The first position from ``start`` at which a form could begin: the rest of the
    text there begins with a form, or is the beginning of one."""
    for position in range(start, len(text)):
        rest = text[position:]
        if any(form.startswith(rest) or rest.startswith(form) for form in forms):
            return position
    return len(text)


class StreamMasker:
    """Masks a text that arrives in chunks, such as a subprocess's output.

    The output of every :meth:`feed` followed by :meth:`flush` equals
    ``masker.mask(whole_text)`` however the text was split. To get there, :meth:`feed`
    emits only text whose masking no later chunk can change: it holds back only a tail
    that could be the beginning of a form (so at most ``masker.longest - 1``
    characters). Values added to the masker mid-stream apply to text not yet emitted.
    """

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._pending = ""

    def feed(self, chunk: str) -> str:
        """The masked text that is now safe to emit."""
        text = self._pending + chunk
        compiled = self.masker._current()
        if compiled.pattern is None:
            self._pending = ""
            return text
        # A match starting at or before ``last_decided`` cannot grow with more text, since
        # no form is longer than ``longest``; a position after it might start a form that
        # continues into the next chunk, so scanning stops there.
        last_decided = len(text) - compiled.longest
        emitted: list[str] = []
        position = 0
        for match in compiled.pattern.finditer(text):
            if match.start() > last_decided:
                break
            emitted.append(text[position : match.start()])
            emitted.append(MASK)
            position = match.end()
        # Positions between the last match and ``last_decided`` start no form.
        held_from = max(position, last_decided + 1)
        # Of the undecided tail, only what could be the start of a form must wait: a line
        # printed before a pause shows at once unless it ends like a secret begins.
        safe_until = _first_possible_start(text, held_from, compiled.forms)
        emitted.append(text[position:safe_until])
        self._pending = text[safe_until:]
        return "".join(emitted)

    def flush(self) -> str:
        """The rest of the text, masked; the stream can then be fed anew."""
        text, self._pending = self._pending, ""
        return self.masker.mask(text)


class MaskingFormatter(logging.Formatter):
    """A formatter that masks what another formatter produces, traceback included."""

    def __init__(self, inner: logging.Formatter | None, masker: Masker) -> None:
        super().__init__()
        self.inner = inner if inner is not None else logging.Formatter()
        self.masker = masker

    def format(self, record: logging.LogRecord) -> str:
        return self.masker.mask(self.inner.format(record))

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return self.masker.mask(self.inner.formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self.masker.mask(self.inner.formatStack(stack_info))


def install_log_masking(masker: Masker, logger: logging.Logger | None = None) -> None:
    """Mask the output of every handler of ``logger`` (default: the root logger).

    Idempotent: a handler already masked by ``masker`` is left alone. Handlers added to
    the logger afterwards, and handlers of loggers that do not propagate to it, are not
    covered: call this again once logging is configured.
    """
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if _masks_with(handler.formatter, masker):
            continue
        handler.setFormatter(MaskingFormatter(handler.formatter, masker))


def _masks_with(formatter: logging.Formatter | None, masker: Masker) -> bool:
    while isinstance(formatter, MaskingFormatter):
        if formatter.masker is masker:
            return True
        formatter = formatter.inner
    return False


_PROCESS_MASKER = Masker()


def process_masker() -> Masker:
    """The process-wide masker: the secret store adds every value it handles to it."""
    return _PROCESS_MASKER
