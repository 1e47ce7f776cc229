"""What ``slugify`` makes of typical and awkward input."""

from __future__ import annotations

import doctest

import pytest

import ${{ values.module }}
from ${{ values.module }} import slugify


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Hello World", "hello-world"),
        ("  Trim me  ", "trim-me"),
        ("Crème brûlée", "creme-brulee"),
        ("one---two___three", "one-two-three"),
        ("Already-a-slug-42", "already-a-slug-42"),
        ("", ""),
        ("!!!", ""),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_slugify_with_another_separator() -> None:
    assert slugify("Stock levels: Q3", separator="_") == "stock_levels_q3"


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(${{ values.module }}).failed == 0


def test_version_is_set() -> None:
    assert ${{ values.module }}.__version__ == "0.1.0"
