"""The placeholder syntax of Score files: ``${metadata.name}``, ``${resources.db.host}``.

Text is split into literal parts and :class:`Reference` parts. As in Score, ``$$`` is a
literal ``$`` (so ``$${not-a-placeholder}`` reads as ``${not-a-placeholder}``), a ``$``
before anything else stays as written, the first ``}`` closes a placeholder, and ``\\.``
in a placeholder is a dot inside a key (``${metadata.annotations.example\\.com/team}``).
A reference starts with ``metadata`` or ``resources``; anything else is refused here,
with the place it was written, instead of reaching a running workload as literal text.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOTS = ("metadata", "resources")


class PlaceholderSyntaxError(ValueError):
    """A ``${...}`` that is not a placeholder Score understands; the message says why."""


@dataclass(frozen=True)
class Reference:
    """One placeholder: its key path (``("resources", "db", "host")``) and its text."""

    parts: tuple[str, ...]
    text: str

    @property
    def root(self) -> str:
        return self.parts[0]

    @property
    def resource(self) -> str | None:
        """The resource a ``${resources.<name>...}`` placeholder names."""
        return self.parts[1] if self.root == "resources" else None

    @property
    def output(self) -> tuple[str, ...]:
        """The output path after the resource name (empty for ``${resources.<name>}``)."""
        return self.parts[2:] if self.root == "resources" else ()


Part = str | Reference


def parse_template(text: str) -> list[Part]:
    """``"postgres://${resources.db.host}:5432"`` → ``["postgres://", Reference(...),
    ":5432"]``; adjacent literal text is joined. Raises :class:`PlaceholderSyntaxError`."""
    parts: list[Part] = []
    literal: list[str] = []
    index = 0
    while True:
        dollar = text.find("$", index)
        if dollar < 0:
            literal.append(text[index:])
            break
        literal.append(text[index:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            literal.append("$")
            index = dollar + 2
        elif following == "{":
            close = text.find("}", dollar + 2)
            if close < 0:
                raise PlaceholderSyntaxError(
                    f"{_excerpt(text[dollar:])} opens a placeholder that is never closed with "
                    "'}' (write $${ for a literal ${)"
                )
            if "".join(literal):
                parts.append("".join(literal))
            literal = []
            parts.append(parse_reference(text[dollar + 2 : close]))
            index = close + 1
        else:
            literal.append("$")
            index = dollar + 1
    tail = "".join(literal)
    if tail:
        parts.append(tail)
    return parts


def parse_reference(inner: str) -> Reference:
    """The reference inside ``${`` and ``}``."""
    text = "${" + inner + "}"
    if "${" in inner:
        raise PlaceholderSyntaxError(
            f"{_excerpt(text)}: a placeholder cannot hold another placeholder"
        )
    if not inner.strip():
        raise PlaceholderSyntaxError("${} is an empty placeholder (write $${} for a literal ${})")
    parts = tuple(part.replace("\0", ".") for part in inner.replace("\\.", "\0").split("."))
    if any(not part for part in parts):
        raise PlaceholderSyntaxError(f"{_excerpt(text)} has an empty key between dots")
    if parts[0] not in ROOTS:
        raise PlaceholderSyntaxError(
            f"{_excerpt(text)} is not a placeholder: they start with metadata. or "
            "resources. (write $${...} for a literal ${...})"
        )
    if len(parts) == 1:
        what = "metadata key" if parts[0] == "metadata" else "resource"
        raise PlaceholderSyntaxError(f"{_excerpt(text)} names no {what}")
    return Reference(parts, text)


def references(text: str) -> list[Reference]:
    """The placeholders in ``text``, in order."""
    return [part for part in parse_template(text) if isinstance(part, Reference)]


def _excerpt(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
