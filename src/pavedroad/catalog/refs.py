"""Entity references: ``[kind:][namespace/]name``, as Backstage writes them.

A reference is compared case-insensitively; its string form is lower-cased
(``component:default/orders``), which is also how relations name their targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pavedroad.core.errors import InputError

DEFAULT_NAMESPACE = "default"


class EntityRefError(InputError):
    title = "Invalid entity reference"
    type_slug = "invalid-entity-ref"


@dataclass(frozen=True)
class EntityRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return self.key

    @cached_property
    def key(self) -> str:
        """The lower-cased string form, used for identity and storage."""
        return f"{self.kind}:{self.namespace}/{self.name}".lower()

    def display(
        self, default_kind: str | None = None, default_namespace: str = DEFAULT_NAMESPACE
    ) -> str:
        """The shortest string that still parses back to this ref in that context."""
        text = (
            self.name
            if self.namespace.lower() == default_namespace
            else f"{self.namespace}/{self.name}"
        )
        if default_kind and self.kind.lower() == default_kind.lower():
            return text
        return f"{self.kind.lower()}:{text}"

    @classmethod
    def of(cls, entity: dict[str, Any]) -> EntityRef:
        metadata = entity.get("metadata") or {}
        return cls(
            kind=str(entity.get("kind", "")),
            namespace=str(metadata.get("namespace") or DEFAULT_NAMESPACE),
            name=str(metadata.get("name", "")),
        )


def parse_ref(
    ref: str | dict[str, Any],
    default_kind: str | None = None,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> EntityRef:
    """Parse a reference string (or ``{kind, namespace, name}`` mapping), as Backstage's
    ``parseEntityRef`` (``packages/catalog-model/src/entity/ref.ts``) does.

    Defaults fill in only parts that are absent (``None``): an empty kind or namespace in a
    mapping is an error, not a default. An empty ``default_namespace`` means ``default``.
    Raises :class:`EntityRefError` when the kind is missing and has no default, or when
    a part is empty.
    """
    default_namespace = default_namespace or DEFAULT_NAMESPACE
    if isinstance(ref, dict):
        kind = _given(ref.get("kind"), default_kind)
        namespace = _given(ref.get("namespace"), default_namespace)
        name = ref.get("name")
        if not isinstance(name, str) or not name:
            raise EntityRefError(f"Entity reference {ref!r} had missing or empty name")
    elif isinstance(ref, str):
        kind, namespace, name = _split(ref, default_kind, default_namespace)
    else:
        raise EntityRefError(f"Entity reference must be a string, not {type(ref).__name__}")
    if not kind:
        raise EntityRefError(
            f'Entity reference "{ref}" had missing or empty kind '
            '(e.g. did not start with "component:" or similar)'
        )
    if not namespace:
        raise EntityRefError(f'Entity reference "{ref}" had missing or empty namespace')
    return EntityRef(str(kind), str(namespace), str(name))


def _given(value: Any, default: str | None) -> Any:
    """JavaScript's ``value ?? default``: only an absent value takes the default."""
    return default if value is None else value


def _split(
    ref: str, default_kind: str | None, default_namespace: str
) -> tuple[str | None, str, str]:
    """Split like Backstage's parseRefString: the first ``:`` before any ``/`` ends the
    kind, the first ``/`` ends the namespace, and the rest is the name."""
    if not ref:
        raise EntityRefError("Entity reference must not be empty")
    colon = ref.find(":")
    slash = ref.find("/")
    if slash != -1 and slash < colon:
        colon = -1
    kind = None if colon == -1 else ref[:colon]
    namespace = None if slash == -1 else ref[colon + 1 : slash]
    name = ref[max(colon + 1, slash + 1) :]
    if kind == "" or namespace == "" or name == "":
        raise EntityRefError(
            f'Entity reference "{ref}" was not on the form [<kind>:][<namespace>/]<name>'
        )
    return kind or default_kind, namespace or default_namespace, name


def document_ref(data: Any) -> str | None:
    """The ref key a (possibly invalid) document names, for error reports; None when it
    names no kind and name."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return None
    ref = EntityRef.of(data)
    return ref.key if ref.kind and ref.name else None


def ref_key(
    ref: str | dict[str, Any],
    default_kind: str | None = None,
    default_namespace: str = DEFAULT_NAMESPACE,
) -> str:
    """The lower-cased string form of a reference."""
    return str(parse_ref(ref, default_kind, default_namespace))
