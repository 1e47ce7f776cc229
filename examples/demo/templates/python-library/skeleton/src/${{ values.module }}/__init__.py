"""The ${{ values.name }} library."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["__version__", "slugify"]
__version__ = "0.1.0"

_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


def slugify(text: str, separator: str = "-") -> str:
    """``text`` as a lowercase ASCII slug for URLs and names: accents dropped, every run
    of other characters one ``separator``, none at either end.

    >>> slugify("Crème brûlée, 2 for £5!")
    'creme-brulee-2-for-5'
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_ALPHANUMERIC.sub(separator, ascii_text.lower()).strip(separator)
