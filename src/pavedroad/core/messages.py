"""Wording shared by every message about what a user wrote (pipeline files, Score
workloads): how a value is named, and the nearest of the names that were expected."""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable
from typing import Any


def describe(value: Any) -> str:
    """How a message names a value the user wrote: ``the number 3``, ``a list``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'steps'?)`` for the closest choice, or an empty string."""
    if not isinstance(word, str):
        return ""
    # Bounded: a hostile file with thousands of names must not make this quadratic.
    match = difflib.get_close_matches(word, list(itertools.islice(choices, 200)), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
